"""Chains: create --base on a 30-link chain of the big set, verify --chain
--read-data against verify of each link, and 1,000 links of a tiny set
within 128 descriptors.
"""
import json
import os
import shutil
import subprocess

from benchlib.common import ADV, BIN, GEN, alternate, report, run, sh


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
