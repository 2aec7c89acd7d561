"""Incremental archives on the big set: one hour added (size against tar |
zstd of what changed, time against a full create), and a chain of 7
restored against one full archive.
"""
import os
import shutil
import subprocess

from benchlib.common import ADV, BIN, Scratch, alternate, report, run, sh


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
