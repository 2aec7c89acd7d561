"""merge: a synthetic full of a chain (one full archive and 24 incrementals,
an hour of the simulated server each) against a full create of the same
tree from the data dir: time, peak RSS, size; the newest 10 incrementals
merged into one (--onto): time per link, size against theirs; and a
restore of the merged full against one of the created full.
"""
import os
import shutil
import subprocess

from benchlib.common import ADV, BIN, Scratch, alternate, report, run


def merge(big, hours, interval, work, runs):
    print("\n## merge (a full and 24 incrementals into one full archive)")
    d = os.path.join(work, "merge-data")
    out = os.path.join(work, "merge-out")
    cache = os.path.join(work, "merge-cache")
    for p in (d, out, cache):
        if os.path.isdir(p):
            shutil.rmtree(p)
    os.makedirs(out)
    env = dict(os.environ, SYDRA_ARCHIVE_CACHE_DIR=cache)
    subprocess.run(["cp", "-a", big, d], check=True)
    next_ts = 1_748_736_000 + hours * 3600
    adv = [ADV, d, "--series", "100", "--flush", "3600", "--interval", str(interval),
           "--rotate-mib", "64", "--seconds", "3600"]
    chain = [os.path.join(out, "c0.tar.zst")]
    run([BIN, "create", d, "-o", chain[0], "-q"], env=env)
    for k in range(1, 25):
        next_ts = int(subprocess.run(adv + ["--from-ts", str(next_ts)], check=True,
                                     capture_output=True, text=True).stdout)
        ck = os.path.join(out, f"c{k}.tar.zst")
        run([BIN, "create", d, "-o", ck, "--base", chain[-1], "-q"], env=env)
        chain.append(ck)
    sizes = [os.path.getsize(c) for c in chain]
    print(f"  chain: full {sizes[0]} bytes, 24 incrementals {sum(sizes[1:])} bytes in all")
    merged, full = os.path.join(out, "merged.tar.zst"), os.path.join(out, "full.tar.zst")
    res = alternate(runs, [
        ("merge (25 links -> full)",
         lambda: run([BIN, "merge", chain[-1], "-o", merged, "--force", "-q"], env=env)),
        ("create (full, same tree)", lambda: run([BIN, "create", d, "-o", full, "--force", "-q"], env=env)),
    ])
    report("merge of a 25-link chain vs a full create of the same tree", res, [
        ("merge / create", "merge (25 links -> full)", "create (full, same tree)", 0.35),
    ])
    rss = res["merge (25 links -> full)"][1] / 1024
    print(f"  merge peak RSS {rss:.1f} MiB (target <= 64 MiB: {'ok' if rss <= 64 else 'MISSED'})")
    sm, sf = os.path.getsize(merged), os.path.getsize(full)
    print(f"  size: merged {sm} bytes, created {sf} bytes: {sm / sf:.4f}x (target <= 1.01x: "
          f"{'ok' if sm / sf <= 1.01 else 'MISSED'})")
    # Compaction: the newest 10 incrementals into one, on the 14th.
    onto = os.path.join(out, "c15-c24.tar.zst")
    res = alternate(runs, [
        ("merge --onto (10 incrementals -> 1)",
         lambda: run([BIN, "merge", chain[-1], "--onto", chain[14], "-o", onto, "--force", "-q"],
                     env=env)),
    ])
    report("merge --onto: 10 incrementals into one", res, [])
    t = res["merge --onto (10 incrementals -> 1)"][0]
    print(f"  per link: {t / 10:.3f} s (target <= 0.2 s: {'ok' if t / 10 <= 0.2 else 'MISSED'})")
    so, ssum = os.path.getsize(onto), sum(sizes[15:])
    print(f"  size: {so} bytes for {ssum} bytes of incrementals: {so / ssum:.3f}x (target <= 1.05x: "
          f"{'ok' if so / ssum <= 1.05 else 'MISSED'})")
    scratch = Scratch(work, "merge-restore")
    res = alternate(runs, [
        ("restore of the merged full",
         lambda: run([BIN, "restore", merged, scratch.fresh(), "-q"], env=env)),
        ("restore of the created full",
         lambda: run([BIN, "restore", full, scratch.fresh(), "-q"], env=env)),
    ])
    report("restore of the merged full vs of a created one", res, [
        ("restore merged / restore created", "restore of the merged full",
         "restore of the created full", 1.05),
    ])
    scratch.remove()
    shutil.rmtree(d)
    shutil.rmtree(out)
