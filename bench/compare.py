#!/usr/bin/env python3
"""Benchmark sydra-archive against the standard tools, side by side.

Makes the data sets with the project's own generator, runs the standard
pipelines and sydra-archive alternately (A B C A B C ...), and prints
medians, the ratios the targets are stated in, archive sizes and peak RSS.
Timings are wall-clock medians; these machines are noisy, so compare ratios
from one run of this script, not numbers across runs.

  bench/compare.sh                      # 1x data sets, 3 runs each
  bench/compare.sh --scale 0.1 --runs 5
  bench/compare.sh --scale 4 --only create,verify
  bench/compare.sh --only files --small-files 1000000  # 100,000 vs 1,000,000 files
  bench/compare.sh --only frames                       # size and speed per frame size
  bench/compare.sh --only synthetic                    # verify/list at 0.1, 1, 10 M entries
  bench/compare.sh --only onedir                       # 1,000,000 segments in one hour dir
  bench/compare.sh --only threads                      # verify/restore: one decoding thread vs all cores
  bench/compare.sh --only extract                      # one segment, one hour dir: reads, bytes (strace), time
  bench/compare.sh --only s3                           # s3s-fs on loopback: restore/verify vs a local file, extract
  bench/compare.sh --only incremental                  # one hour added: create --base vs create, size; chain of 7 restore
  bench/compare.sh --only encrypt                      # create and restore encrypted to an age key vs not
  bench/compare.sh --only chain                        # 30-link chain: create --base (link authentication) vs create,
                                                       # verify --chain --read-data vs verify of each link; 1,000 links
"""
import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "sydra-archive")
GEN = os.path.join(ROOT, "target", "release", "examples", "generate")
SYN = os.path.join(ROOT, "target", "release", "examples", "synthetic")
ADV = os.path.join(ROOT, "target", "release", "examples", "advance")
KEYGEN = os.path.join(ROOT, "target", "release", "examples", "age-keygen")
LAYOUT = ["MANIFEST", "segments", "tags.json", "wal"]


def sh(cmd):
    """Runs a shell pipeline; returns (seconds, peak RSS KB of the biggest process)."""
    return run(["bash", "-o", "pipefail", "-c", cmd])


TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
RSS_FILE = os.path.join(ROOT, "target", "bench-rss.txt")


def run(argv, env=None):
    """Runs argv; returns (seconds, peak RSS in KB of the largest process
    in it, as GNU time reports it; 0 when /usr/bin/time is missing)."""
    if TIME:
        argv = [TIME, "-f", "%M", "-o", RSS_FILE] + argv
    t0 = time.perf_counter()
    code = subprocess.run(argv, stdout=subprocess.DEVNULL, env=env).returncode
    dt = time.perf_counter() - t0
    if code != 0:
        sys.exit(f"failed ({code}): {' '.join(argv)}")
    rss = int(open(RSS_FILE).read().split()[-1]) if TIME else 0
    return dt, rss


def generate(path, series, hours, flush, interval=10):
    if os.path.isdir(path):
        return
    tmp = path + ".partial"
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    subprocess.run([GEN, tmp, "--series", str(series), "--hours", str(hours),
                    "--flush", str(flush), "--interval", str(interval)],
                   check=True, stdout=subprocess.DEVNULL)
    os.rename(tmp, path)


def du(path):
    total, files = 0, 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            total += os.lstat(os.path.join(dirpath, n)).st_size
            files += 1
    return total, files


def alternate(runs, cases):
    """cases: list of (name, fn returning (secs, rss)). Runs them in turn."""
    res = {name: [] for name, _ in cases}
    for _ in range(runs):
        for name, fn in cases:
            res[name].append(fn())
    return {k: (statistics.median(t for t, _ in v), max(r for _, r in v)) for k, v in res.items()}


def report(title, res, ratios):
    print(f"\n## {title}")
    for k, (t, rss) in res.items():
        print(f"  {k:<44} median {t:7.3f} s   peak RSS {rss / 1024:7.1f} MiB")
    for label, a, b, target in ratios:
        r = res[a][0] / res[b][0]
        verdict = "ok" if r <= target else "MISSED"
        print(f"  ratio {label:<52} {r:5.2f}x  (target <= {target}x: {verdict})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="data size relative to the 1.15 GB set")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "bench"))
    ap.add_argument("--only", default="create,restore,verify")
    ap.add_argument("--small-files", type=int, default=100_000,
                    help="files in the small-file restore set (0 to skip)")
    a = ap.parse_args()
    only = set(a.only.split(","))
    subprocess.run(["cargo", "build", "--release", "-q", "--bins", "--examples"], cwd=ROOT, check=True)
    os.makedirs(a.work, exist_ok=True)
    print(f"# sydra-archive benchmark: {os.cpu_count()} cores, scale {a.scale}, {a.runs} runs, "
          f"{subprocess.run(['zstd', '--version'], capture_output=True, text=True).stdout.strip()}")

    # Below 1x, fewer hours (and files); above, the same 72,000 files with
    # denser points (a shorter interval): a format v1 HEAD holds at most
    # about 118,000 entries.
    if a.scale <= 1:
        hours, interval = max(1, round(720 * a.scale)), 10
    else:
        hours, interval = 720, max(1, round(10 / a.scale))
    big = os.path.join(a.work, f"big-{hours}h-{interval}s")
    generate(big, 100, hours, 3600, interval)
    size, files = du(big)
    print(f"data set: {big}: {files} files, {size / 1e9:.2f} GB (100 series x {hours} h at {interval} s, "
          "one segment per series per hour)")
    out = os.path.join(a.work, "out")
    os.makedirs(out, exist_ok=True)
    A, B, C = (os.path.join(out, n) for n in ("sydra.tar.zst", "bare.tar.zst", "checked.tar.zst"))
    tar_in = f"tar -cf - -C {big} {' '.join(LAYOUT)}"
    # The archives the restore and verify runs read.
    run([BIN, "create", big, "-o", A, "--force", "-q"])
    sh(f"{tar_in} | zstd -3 -T0 -q > {B}")

    if "create" in only:
        res = alternate(a.runs, [
            ("sydra-archive create", lambda: run([BIN, "create", big, "-o", A, "--force", "-q"])),
            ("tar | zstd -3 -T0 | tee | sha256sum", lambda: sh(f"{tar_in} | zstd -3 -T0 -q | tee {C} | sha256sum")),
            ("tar | zstd -3 -T0", lambda: sh(f"{tar_in} | zstd -3 -T0 -q > {B}")),
        ])
        report("create (level 3, all cores, every file hashed)", res, [
            ("create / checksummed pipeline", "sydra-archive create", "tar | zstd -3 -T0 | tee | sha256sum", 1.0),
            ("create / bare pipeline", "sydra-archive create", "tar | zstd -3 -T0", 1.10),
        ])
        sa, sb = os.path.getsize(A), os.path.getsize(B)
        print(f"  size: sydra-archive {sa} bytes, tar|zstd {sb} bytes: {sa / sb:.3f}x (target <= 1.02x)")

    if "verify" in only:
        res = alternate(a.runs, [
            ("sydra-archive verify --quick", lambda: run([BIN, "verify", "--quick", A])),
            ("sha256sum", lambda: run(["sha256sum", A])),
            ("sydra-archive verify", lambda: run([BIN, "verify", A])),
            ("zstd -t", lambda: run(["zstd", "-t", "-q", B])),
        ])
        report("verify", res, [
            ("verify --quick / sha256sum", "sydra-archive verify --quick", "sha256sum", 0.3),
            ("verify / zstd -t", "sydra-archive verify", "zstd -t", 1.0),
        ])

    restore_sets = [("restore (verified, durable)", A, B)] if "restore" in only else []
    if "restore" in only and a.small_files:
        small = small_set(a.work, a.small_files)
        _, nfiles = du(small)
        SA, SB = os.path.join(out, "small-sydra.tar.zst"), os.path.join(out, "small-bare.tar.zst")
        run([BIN, "create", small, "-o", SA, "--force", "-q"])
        sh(f"tar -cf - -C {small} {' '.join(LAYOUT)} | zstd -3 -T0 -q > {SB}")
        size_line(SA, SB, nfiles, 1.15)
        restore_sets.append((f"restore of {nfiles} small files in hour dirs of 5,000", SA, SB))
    scratch = Scratch(a.work, "restore")
    for title, sa_path, sb_path in restore_sets:
        res = alternate(a.runs, restore_cases(scratch, sa_path, sb_path))
        target = 0.7 if "small" in title else 1.0
        report(title, res, [("restore / zstd -dc | tar -x && sync", "sydra-archive restore",
                             "zstd -dc | tar -x && sync", target)])
    scratch.remove()

    if "files" in only and a.small_files:
        files_scaling(a.work, out, a.small_files, a.runs)
    if "frames" in only:
        frame_sizes(big, out, a.runs)
    if "synthetic" in only:
        synthetic(a.work, a.runs)
    if "onedir" in only:
        one_dir(a.work, out, a.runs)
    if "threads" in only:
        threads(a.work, A, a.runs)
    if "extract" in only:
        extract_local(big, A, a.work, a.runs)
    if "s3" in only:
        s3_bench(big, A, a.work, a.runs)
    if "incremental" in only:
        incremental(big, hours, interval, a.work, a.runs)
    if "encrypt" in only:
        encrypted(big, a.work, a.runs)
    if "chain" in only:
        chains(big, hours, interval, a.work, a.runs)


def chains(big, hours, interval, work, runs):
    """Chains: a 30-link chain of the big set, one hour of the simulated
    server per link; `create --base` on its newest link (every base's whole
    SHA-256 checked: from the verified-digest cache, and without it)
    against a full `create`; `verify --chain --read-data` against `verify`
    of each link. Then 1,000 links of a tiny set, a WAL file appended in
    every link: list, verify --chain, extract and restore in a process
    allowed 128 descriptors, with their reads and peak RSS."""
    print("\n## chains")
    d = os.path.join(work, "chain-data")
    out = os.path.join(work, "chain-out")
    cache = os.path.join(work, "chain-cache")
    for p in (d, out, cache):
        if os.path.isdir(p):
            shutil.rmtree(p)
    os.makedirs(out)
    env = dict(os.environ, SYDRA_ARCHIVE_CACHE_DIR=cache)
    cold = dict(os.environ, SYDRA_ARCHIVE_CACHE_DIR="off")
    subprocess.run(["cp", "-a", big, d], check=True)
    next_ts = 1_748_736_000 + hours * 3600
    adv = [ADV, d, "--series", "100", "--flush", "3600", "--interval", str(interval),
           "--rotate-mib", "64", "--seconds", "3600"]
    chain = [os.path.join(out, "c0.tar.zst")]
    run([BIN, "create", d, "-o", chain[0], "-q"], env=env)
    for k in range(1, 30):
        next_ts = int(subprocess.run(adv + ["--from-ts", str(next_ts)], check=True,
                                     capture_output=True, text=True).stdout)
        ck = os.path.join(out, f"c{k}.tar.zst")
        run([BIN, "create", d, "-o", ck, "--base", chain[-1], "-q"], env=env)
        chain.append(ck)
    next_ts = int(subprocess.run(adv + ["--from-ts", str(next_ts)], check=True,
                                 capture_output=True, text=True).stdout)
    nxt, full = os.path.join(out, "next.tar.zst"), os.path.join(out, "full.tar.zst")
    res = alternate(runs, [
        ("create --base, link 31 (digests cached)",
         lambda: run([BIN, "create", d, "-o", nxt, "--base", chain[-1], "--force", "-q"], env=env)),
        ("create --base, link 31 (every base hashed)",
         lambda: run([BIN, "create", d, "-o", nxt, "--base", chain[-1], "--force", "-q"], env=cold)),
        ("create (full, same tree)", lambda: run([BIN, "create", d, "-o", full, "--force", "-q"], env=env)),
    ])
    report("create --base on a 30-link chain vs a full create", res, [
        ("create --base (cached) / create", "create --base, link 31 (digests cached)", "create (full, same tree)", 0.3),
        ("create --base (no cache) / create", "create --base, link 31 (every base hashed)",
         "create (full, same tree)", 0.5),
    ])
    links = " ".join(chain)
    res = alternate(runs, [
        ("verify --chain --read-data (30 links)",
         lambda: run([BIN, "verify", "--chain", "--read-data", "-q", chain[-1]], env=env)),
        ("verify of each link, one after another",
         lambda: sh(f"for f in {links}; do {BIN} verify -q $f >/dev/null || exit 1; done")),
    ])
    report("verify --chain --read-data vs verify of each link", res, [
        ("--read-data / sum of verify", "verify --chain --read-data (30 links)",
         "verify of each link, one after another", 1.1)])
    shutil.rmtree(d)
    shutil.rmtree(out)

    # 1,000 links of a tiny set.
    t = os.path.join(work, "chain-tiny")
    tout = os.path.join(work, "chain-tiny-out")
    for p in (t, tout):
        if os.path.isdir(p):
            shutil.rmtree(p)
    os.makedirs(tout)
    subprocess.run([GEN, t, "--series", "2", "--hours", "1", "--flush", "3600"], check=True,
                   stdout=subprocess.DEVNULL)
    ts = 1_748_736_000 + 3600
    tadv = [ADV, t, "--series", "2", "--flush", "3600", "--interval", "10", "--seconds", "20"]
    prev = os.path.join(tout, "c0.tar.zst")
    run([BIN, "create", t, "-o", prev, "-q"], env=env)
    for k in range(1, 1001):
        ts = int(subprocess.run(tadv + ["--from-ts", str(ts)], check=True,
                                capture_output=True, text=True).stdout)
        ck = os.path.join(tout, f"c{k}.tar.zst")
        if k == 1000:
            o = subprocess.run([BIN, "create", t, "-o", ck, "--base", prev, "-q"], env=env,
                               capture_output=True, text=True)
            print(f"  create --base on link 1,000 (depth 1,000): exit {o.returncode}: {o.stderr.strip()}")
            break
        run([BIN, "create", t, "-o", ck, "--base", prev, "-q"], env=env)
        prev = ck
    lim = ["prlimit", "--nofile=128:128"]
    for name, argv in [
        ("list", [BIN, "list", prev]),
        ("verify --chain", [BIN, "verify", "--chain", "-q", prev]),
        ("restore", [BIN, "restore", prev, os.path.join(tout, "r"), "-q"]),
    ]:
        secs, rss = run(lim + argv, env=env)
        print(f"  {name} of 1,000 links (128 descriptors allowed): {secs:.2f} s, peak RSS {rss / 1024:.1f} MiB "
              f"(target <= 64 MiB: {'ok' if rss <= 64 * 1024 else 'MISSED'})")
    o = subprocess.run(lim + [BIN, "extract", prev, "wal/current.wal", "-C", os.path.join(tout, "x"), "--json"],
                       env=env, capture_output=True, text=True, check=True)
    j = json.loads(o.stdout.strip().splitlines()[-1] if o.stdout.strip() else o.stderr.strip().splitlines()[-1])
    print(f"  extract of wal/current.wal (appended in every link): {j['reads']} reads, "
          f"{j['read_bytes']} bytes, {j['seconds']:.2f} s")
    shutil.rmtree(t)
    shutil.rmtree(tout)


def encrypted(big, work, runs):
    """create and restore of the big set encrypted to an age X25519 key,
    against the same unencrypted, alternating; peak RSS."""
    out = os.path.join(work, "enc-out")
    os.makedirs(out, exist_ok=True)
    key = os.path.join(out, "key.txt")
    text = subprocess.run([KEYGEN], check=True, capture_output=True, text=True).stdout
    open(key, "w").write(text)
    recipient = text.splitlines()[0].split(": ")[1]
    plain, sealed = os.path.join(out, "plain.tar.zst"), os.path.join(out, "sealed.tar.zst.age")
    res = alternate(runs, [
        ("create, encrypted (age X25519)", lambda: run([BIN, "create", big, "-o", sealed, "-r", recipient, "--force", "-q"])),
        ("create", lambda: run([BIN, "create", big, "-o", plain, "--force", "-q"])),
    ])
    report("create encrypted vs not", res, [("encrypted / plain", "create, encrypted (age X25519)", "create", 1.05)])
    print(f"  sizes: encrypted {os.path.getsize(sealed)} bytes, plain {os.path.getsize(plain)} bytes")
    scratch = Scratch(work, "enc-restore")

    def settled(argv):
        # The previous restore's writeback must not land in this one.
        subprocess.run(["sync"], check=True)
        return run(argv)

    res = alternate(runs, [
        ("restore, encrypted", lambda: settled([BIN, "restore", sealed, scratch.fresh(), "-i", key, "-q"])),
        ("restore", lambda: settled([BIN, "restore", plain, scratch.fresh(), "-q"])),
    ])
    report("restore encrypted vs not", res, [("encrypted / plain", "restore, encrypted", "restore", 1.05)])
    scratch.remove()


def snapshot(root):
    """path -> (size, mtime_ns) of every file below root."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def changed_files(root, before, after, stage):
    """Copies into `stage` what changed between two snapshots of `root`:
    new and rewritten files whole, and of each WAL file only the bytes
    appended since (a rotated file: past the old current.wal it continues).
    Returns (files, bytes)."""
    old_current = before.get("wal/current.wal", (0, 0))[0]
    files = total = 0
    for path, (size, mtime) in sorted(after.items()):
        if before.get(path) == (size, mtime):
            continue
        skip = 0
        if path.startswith("wal/"):
            if path in before and before[path][0] <= size:
                skip = before[path][0]
            elif path not in before and path != "wal/current.wal":
                skip = min(old_current, size)
        dst = os.path.join(stage, path)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(os.path.join(root, path), "rb") as f, open(dst, "wb") as g:
            f.seek(skip)
            data = f.read()
            g.write(data)
        files += 1
        total += len(data)
    return files, total


def incremental(big, hours, interval, work, runs):
    """Incremental archives on the big set: one hour of data added (WAL
    appended or rotated, a segment per series, MANIFEST and tags.json
    rewritten): size against `tar | zstd -3` of just what changed, and
    `create --base` against a full `create`; then five more hours, and a
    restore of the chain of 7 (a full and 6 incrementals) against a restore
    of one full archive of the same tree."""
    print("\n## incremental archives (one hour added to the set)")
    d = os.path.join(work, "incr-data")
    out = os.path.join(work, "incr-out")
    for p in (d, out):
        if os.path.isdir(p):
            shutil.rmtree(p)
    os.makedirs(out)
    # A copy with every time kept: the archive of the set is the base.
    subprocess.run(["cp", "-a", big, d], check=True)
    next_ts = 1_748_736_000 + hours * 3600
    adv = [ADV, d, "--series", "100", "--flush", "3600", "--interval", str(interval),
           "--rotate-mib", "64", "--seconds", "3600"]
    chain = [os.path.join(out, "c0.tar.zst")]
    run([BIN, "create", d, "-o", chain[0], "-q"])
    before = snapshot(d)
    next_ts = int(subprocess.run(adv + ["--from-ts", str(next_ts)], check=True,
                                 capture_output=True, text=True).stdout)
    after = snapshot(d)
    stage = os.path.join(out, "changed")
    nfiles, nbytes = changed_files(d, before, after, stage)
    theirs = os.path.join(out, "changed.tar.zst")
    sh(f"tar -cf - -C {stage} . | zstd -3 -T0 -q > {theirs}")
    i1, f1 = os.path.join(out, "c1.tar.zst"), os.path.join(out, "full1.tar.zst")
    res = alternate(runs, [
        ("create --base (one hour added)", lambda: run([BIN, "create", d, "-o", i1, "--base", chain[0], "--force", "-q"])),
        ("create (full, same tree)", lambda: run([BIN, "create", d, "-o", f1, "--force", "-q"])),
    ])
    report("create --base after one hour", res, [
        ("create --base / create", "create --base (one hour added)", "create (full, same tree)", 0.3)])
    si, st = os.path.getsize(i1), os.path.getsize(theirs)
    print(f"  what changed: {nfiles} files, {nbytes} bytes (new files whole, appended WAL bytes only)")
    r = si / st
    print(f"  size: incremental {si} bytes, tar | zstd -3 of what changed {st} bytes: {r:.3f}x "
          f"(target <= 1.1x: {'ok' if r <= 1.1 else 'MISSED'}); full archive {os.path.getsize(f1)} bytes")
    chain.append(i1)
    for k in range(2, 7):
        next_ts = int(subprocess.run(adv + ["--from-ts", str(next_ts)], check=True,
                                     capture_output=True, text=True).stdout)
        ik = os.path.join(out, f"c{k}.tar.zst")
        run([BIN, "create", d, "-o", ik, "--base", chain[-1], "-q"])
        chain.append(ik)
    full = os.path.join(out, "full6.tar.zst")
    run([BIN, "create", d, "-o", full, "-q"])
    sizes = [os.path.getsize(c) for c in chain]
    print(f"  chain of {len(chain)}: {sizes[0]} bytes full + {sum(sizes[1:])} bytes in {len(chain) - 1} "
          f"incrementals; one full archive of the same tree: {os.path.getsize(full)} bytes")
    scratch = Scratch(work, "incr-restore")
    a, b = scratch.fresh(), scratch.fresh()
    run([BIN, "restore", chain[-1], a, "-q"])
    run([BIN, "restore", full, b, "-q"])
    same = subprocess.run(["diff", "-r", "-q", a, b], capture_output=True).returncode == 0
    print(f"  the chain restores the same tree as the full archive: {'yes' if same else 'NO'}")
    res = alternate(runs, [
        ("restore of the chain of 7", lambda: run([BIN, "restore", chain[-1], scratch.fresh(), "-q"])),
        ("restore of one full archive", lambda: run([BIN, "restore", full, scratch.fresh(), "-q"])),
    ])
    report("restore of a chain of 7 (full + 6 incrementals) vs one full archive", res, [
        ("chain / full", "restore of the chain of 7", "restore of one full archive", 1.2)])
    rss = res["restore of the chain of 7"][1] / 1024
    print(f"  peak RSS of the chain restore: {rss:.1f} MiB (target <= 64 MiB: {'ok' if rss <= 64 else 'MISSED'})")
    scratch.remove()
    shutil.rmtree(d)


def threads(work, archive, runs):
    """verify and restore with one decoding thread and with one per core
    (the default, 0, is cores - 2: one on a 2-core machine)."""
    res = alternate(runs, [
        ("verify --threads 1", lambda: run([BIN, "verify", "--threads", "1", archive])),
        ("verify (all cores)", lambda: run([BIN, "verify", "--threads", str(os.cpu_count()), archive])),
    ])
    report(f"verify: decoding on one thread vs {os.cpu_count()} cores", res, [
        ("all cores / one thread (a speed-up is < 1)", "verify (all cores)", "verify --threads 1", 1.0)])
    scratch = Scratch(work, "threads")
    res = alternate(runs, [
        ("restore --threads 1", lambda: run([BIN, "restore", "--threads", "1", archive, scratch.fresh(), "-q"])),
        ("restore (all cores)", lambda: run([BIN, "restore", "--threads", str(os.cpu_count()), archive,
                                             scratch.fresh(), "-q"])),
    ])
    scratch.remove()
    report(f"restore: decoding on one thread vs {os.cpu_count()} cores", res, [
        ("all cores / one thread (a speed-up is < 1)", "restore (all cores)", "restore --threads 1", 1.0)])


def pick_targets(big):
    """A segment file in the middle hour of the set, and that hour's directory."""
    segs = os.path.join(big, "segments")
    hours = sorted(os.listdir(segs))
    hour = hours[len(hours) // 2]
    files = sorted(os.listdir(os.path.join(segs, hour)))
    return f"segments/{hour}/{files[len(files) // 2]}", f"segments/{hour}"


def strace_bytes(argv):
    """Bytes every read-like system call of argv returned (its whole run:
    the archive, and a little of /proc and libraries), counted by strace."""
    log = os.path.join(ROOT, "target", "bench-strace.txt")
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=read,pread64,readv,preadv", "-o", log] + argv,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    total, calls = 0, 0
    for line in open(log):
        m = re.search(r"= (\d+)$", line.strip())
        if m:
            total += int(m.group(1))
            calls += 1
    return total, calls


def extract_json(argv, env=None):
    p = subprocess.run(argv + ["--json", "--force"], capture_output=True, text=True, env=env, check=True)
    return json.loads(p.stdout)


def extract_local(big, archive, work, runs):
    """extract of one segment and of one hour directory from the archive
    file: reads and bytes (the tool's count, and strace's of every read
    system call), time and peak RSS."""
    size = os.path.getsize(archive)
    one, hour = pick_targets(big)
    dest = os.path.join(work, "extract-out")
    print(f"\n## extract from a {size / 1e6:.0f} MB archive file")
    for label, pat in (("one segment", one), ("one hour directory", hour)):
        argv = [BIN, "extract", archive, pat, "-C", dest]
        j = extract_json(argv)
        straced, calls = strace_bytes(argv + ["--force"]) if shutil.which("strace") else (0, 0)
        res = alternate(runs, [(label, lambda: run(argv + ["--force", "-q"]))])
        t, rss = res[label]
        print(f"  {label} ({pat}): {j['files']} files, {j['reads']} reads, {j['read_bytes']} bytes "
              f"= {100 * j['read_bytes'] / size:.2f}% of the archive (strace: {straced} bytes in "
              f"{calls} read calls, all files); median {t:.3f} s, peak RSS {rss / 1024:.1f} MiB")
    shutil.rmtree(dest, ignore_errors=True)


class CountingProxy:
    """A TCP proxy that counts requests (HTTP request lines) and the bytes
    sent back to the client, headers included: what went over the wire."""

    def __init__(self, port):
        self.port_to, self.requests, self.bytes = port, 0, 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            c, _ = self.sock.accept()
            s = socket.create_connection(("127.0.0.1", self.port_to))
            threading.Thread(target=self.pump, args=(c, s, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(s, c, False), daemon=True).start()

    def pump(self, a, b, up):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                with self.lock:
                    if up:
                        self.requests += len(re.findall(rb"(?:^|\r\n)(?:GET|PUT|POST|HEAD|DELETE) /", d))
                    else:
                        self.bytes += len(d)
                b.sendall(d)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def reset(self):
        with self.lock:
            self.requests, self.bytes = 0, 0


def s3_bench(big, archive, work, runs):
    """s3s-fs on loopback: restore and verify of the object against the
    same archive as a local file, and extract of one segment (time, GETs and
    bytes counted by a proxy between the tool and the server)."""
    exe = os.path.join(ROOT, "target", "tools", "bin", "s3s-fs")
    if not os.access(exe, os.X_OK):
        exe = shutil.which("s3s-fs")
    if not exe:
        print("\n## s3: skipped (no s3s-fs; .ci/run installs it in target/tools/bin)")
        return
    root = os.path.join(work, f"s3root-{time.time_ns()}")
    os.makedirs(os.path.join(root, "bench"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port), "--access-key", "k",
                               "--secret-key", "s", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        env = dict(os.environ, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_REGION="us-east-1",
                   AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ALLOW_HTTP="true")
        url = "s3://bench/sydra.tar.zst"
        run([BIN, "create", big, "-o", url, "--force", "-q"], env=env)
        local = os.path.join(work, "out", "s3-same.tar.zst")
        subprocess.run([BIN, "create", big, "-o", local, "--force", "-q"], check=True)
        size = os.path.getsize(local)
        print(f"\n## object storage: s3s-fs on loopback, a {size / 1e6:.0f} MB archive")
        scratch = Scratch(work, "s3")
        res = alternate(runs, [
            ("restore (local file)", lambda: run([BIN, "restore", local, scratch.fresh(), "-q"])),
            ("restore s3:// (8 GETs in flight)", lambda: run([BIN, "restore", url, scratch.fresh(), "-q"], env=env)),
            ("restore s3:// --concurrency 1", lambda: run([BIN, "restore", url, scratch.fresh(), "-q",
                                                           "--concurrency", "1"], env=env)),
        ])
        scratch.remove()
        report("restore from an object vs from a local file", res, [
            ("s3 / local file", "restore s3:// (8 GETs in flight)", "restore (local file)", 1.2),
            ("s3 --concurrency 1 / local file", "restore s3:// --concurrency 1", "restore (local file)", 1.2)])
        res = alternate(runs, [
            ("verify (local file)", lambda: run([BIN, "verify", local])),
            ("verify s3:// (8 GETs in flight)", lambda: run([BIN, "verify", url], env=env)),
        ])
        report("verify from an object vs from a local file", res, [
            ("s3 / local file", "verify s3:// (8 GETs in flight)", "verify (local file)", 1.2)])
        proxy = CountingProxy(port)
        penv = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}")
        one, hour = pick_targets(big)
        dest = os.path.join(work, "extract-s3")
        for label, pat in (("one segment", one), ("one hour directory", hour)):
            argv = [BIN, "extract", url, pat, "-C", dest]
            proxy.reset()
            j = extract_json(argv, env=penv)
            gets, wire = proxy.requests, proxy.bytes
            res = alternate(runs, [(label, lambda: run(argv + ["--force", "-q"], env=env))])
            t, rss = res[label]
            verdict = "ok" if t < 1.0 or label != "one segment" else "MISSED"
            print(f"  extract {label} ({pat}) from s3://: {j['files']} files; the tool: {j['reads']} reads, "
                  f"{j['read_bytes']} bytes; the proxy: {gets} requests, {wire} bytes sent back "
                  f"({100 * wire / size:.2f}% of the object, headers included); median {t:.3f} s "
                  f"(target < 1 s for one segment: {verdict}), peak RSS {rss / 1024:.1f} MiB")
        shutil.rmtree(dest, ignore_errors=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(root, ignore_errors=True)


def size_line(ours, theirs, nfiles, target):
    sa, sb = os.path.getsize(ours), os.path.getsize(theirs)
    verdict = "ok" if sa / sb <= target else "MISSED"
    print(f"  size ({nfiles} files): sydra-archive {sa} bytes, tar|zstd {sb} bytes: {sa / sb:.3f}x "
          f"(target <= {target}x: {verdict}); {(sa - sb) / nfiles:.0f} bytes more per file")


def frame_sizes(big, out, runs):
    """Archive size and create time for each DATA frame size."""
    print("\n## frame size (tar bytes per independent zstd frame), on the big set")
    cases = []
    for kib in (1024, 2048, 4096, 8192, 16384):
        path = os.path.join(out, f"frames-{kib}.tar.zst")
        cases.append((f"{kib // 1024} MiB", path,
                      lambda kib=kib, path=path: run([BIN, "create", big, "-o", path, "--force", "-q",
                                                      "--frame-kib", str(kib)])))
    res = alternate(runs, [(n, f) for n, _, f in cases])
    bare = os.path.join(out, "bare.tar.zst")
    for name, path, _ in cases:
        t, rss = res[name]
        print(f"  {name:>6}: {os.path.getsize(path)} bytes ({os.path.getsize(path) / os.path.getsize(bare):.4f}x "
              f"tar|zstd), create {t:.2f} s, peak RSS {rss / 1024:.0f} MiB")


def synthetic(work, runs):
    """verify and list of synthetic archives of 0.1, 1 and 10 million
    entries (made in memory by the real writer): time and peak RSS."""
    print("\n## many entries: synthetic archives (40-byte files, one hour dir per million)")
    for n in (100_000, 1_000_000, 10_000_000):
        path = os.path.join(work, f"synthetic-{n}.tar.zst")
        if not os.path.exists(path):
            subprocess.run([SYN, path, str(n), "--bytes", "40"], check=True, stdout=subprocess.DEVNULL)
        res = alternate(runs, [
            ("verify", lambda: run([BIN, "verify", path])),
            ("verify --quick", lambda: run([BIN, "verify", "--quick", path])),
            ("verify - (pipe)", lambda: sh(f"{BIN} verify - < {path}")),
            ("list --json", lambda: sh(f"{BIN} list --json {path} > /dev/null")),
            ("list --sha256", lambda: sh(f"{BIN} list --sha256 {path} > /dev/null")),
        ])
        print(f"  {n:>10} entries, {os.path.getsize(path) / 1e6:.0f} MB: " + ", ".join(
            f"{k} {t:.2f} s / {rss / 1024:.0f} MiB" for k, (t, rss) in res.items()))


def one_dir(work, out, runs):
    """A data dir whose one hour directory holds about 1,000,000 segments
    (1,112 series flushed every 4 s for an hour)."""
    src = os.path.join(work, "onedir-1m")
    generate(src, 1112, 1, 4, 1)
    size, nfiles = du(src)
    print(f"\n## one hour directory of {nfiles} files, {size / 1e6:.0f} MB")
    SA, SB = os.path.join(out, "onedir-sydra.tar.zst"), os.path.join(out, "onedir-bare.tar.zst")
    tar_in = f"tar -cf - -C {src} {' '.join(LAYOUT)}"
    res = alternate(runs, [
        ("create", lambda: run([BIN, "create", src, "-o", SA, "--force", "-q"])),
        ("tar | zstd -3 -T0 | tee | sha256sum", lambda: sh(f"{tar_in} | zstd -3 -T0 -q | tee {SB} | sha256sum")),
        ("verify", lambda: run([BIN, "verify", SA])),
        ("zstd -t", lambda: run(["zstd", "-t", "-q", SB])),
        ("list --sha256", lambda: sh(f"{BIN} list --sha256 {SA} > /dev/null")),
    ])
    report("one hour directory", res, [
        ("create / checksummed pipeline", "create", "tar | zstd -3 -T0 | tee | sha256sum", 1.0),
        ("verify / zstd -t", "verify", "zstd -t", 1.0),
    ])
    size_line(SA, SB, nfiles, 1.15)


class Scratch:
    """Fresh restore targets in one directory. Each run restores into a new
    directory, and nothing is deleted until all timed runs are done
    (deleting a big tree on this ext4, mounted with discard, slows file
    creation down for a while)."""

    def __init__(self, work, prefix):
        self.root = os.path.join(work, f"{prefix}-{time.time_ns()}")
        os.makedirs(self.root)
        self.n = 0

    def fresh(self):
        self.n += 1
        return os.path.join(self.root, str(self.n))

    def remove(self):
        shutil.rmtree(self.root)


def restore_cases(scratch, sa_path, sb_path):
    """Our verified, durable restore and `zstd -dc | tar -x && sync`, each
    into a fresh directory."""
    def ours():
        return run([BIN, "restore", sa_path, scratch.fresh(), "-q"])

    def theirs():
        d = scratch.fresh()
        return sh(f"mkdir {d} && zstd -dc {sb_path} | tar -x -C {d} && sync")

    return [("sydra-archive restore", ours), ("zstd -dc | tar -x && sync", theirs)]


def small_set(work, files):
    """The small-file set of about `files` files: 100 series flushed 50
    times an hour, so 5,000 files per hour directory."""
    hours = max(1, files // 5000)
    path = os.path.join(work, f"small-{hours}h")
    generate(path, 100, hours, 72)
    return path


def files_scaling(work, out, files, runs):
    """Time and peak RSS of create, verify and restore at `files` / 10 and
    `files` small files, against the standard tools: how they scale with
    the file count at a fixed size per file."""
    print("\n## scaling with the file count (small segment files, hour dirs of 5,000)")
    rows = []
    scratch = Scratch(work, "files")
    for count in (files // 10, files):
        src = small_set(work, count)
        size, nfiles = du(src)
        SA, SB = os.path.join(out, "files-sydra.tar.zst"), os.path.join(out, "files-bare.tar.zst")
        tar_in = f"tar -cf - -C {src} {' '.join(LAYOUT)}"
        run([BIN, "create", src, "-o", SA, "--force", "-q"])
        sh(f"{tar_in} | zstd -3 -T0 -q > {SB}")
        size_line(SA, SB, nfiles, 1.15)
        # Restores in a round of their own, as above: their writeback must
        # not land in the middle of the create and verify runs.
        res = alternate(runs, [
            ("create", lambda: run([BIN, "create", src, "-o", SA, "--force", "-q"])),
            ("tar | zstd -3 -T0 | tee | sha256sum", lambda: sh(f"{tar_in} | zstd -3 -T0 -q | tee {SB} | sha256sum")),
            ("verify", lambda: run([BIN, "verify", SA])),
            ("zstd -t", lambda: run(["zstd", "-t", "-q", SB])),
        ])
        res.update(alternate(runs, restore_cases(scratch, SA, SB)))
        rows.append((nfiles, size, res))
        print(f"  {nfiles} files, {size / 1e6:.1f} MB: " + ", ".join(
            f"{k} {t:.2f} s / {rss / 1024:.0f} MiB" for k, (t, rss) in res.items()))
    scratch.remove()
    (f1, _, r1), (f2, _, r2) = rows
    print(f"  {f2 / f1:.1f}x the files:")
    for ours, theirs in (("create", "tar | zstd -3 -T0 | tee | sha256sum"), ("verify", "zstd -t"),
                         ("sydra-archive restore", "zstd -dc | tar -x && sync")):
        print(f"    {ours:<21} time {r2[ours][0] / r1[ours][0]:5.1f}x (theirs {r2[theirs][0] / r1[theirs][0]:5.1f}x), "
              f"ratio to theirs {r1[ours][0] / r1[theirs][0]:.2f}x -> {r2[ours][0] / r2[theirs][0]:.2f}x, "
              f"peak RSS {r1[ours][1] / 1024:.0f} -> {r2[ours][1] / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
