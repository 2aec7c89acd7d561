#!/usr/bin/env python3
"""RPO of `watch` under writes: a copy of the bench's big set is watched
(`--levels 5m,1h,1d`; its first point, a full archive, shipped before the
measured run) while examples/advance writes SECONDS_PER_TICK of the
simulated server (100 series) every wall-clock second for DURATION
seconds; the age of the newest point is sampled every second from the
metrics file, and watch's own CPU and peak RSS are read from GNU time.

    bench/watch-rpo.py [--every 10s] [--duration 60] [--work target/bench]

Build first: cargo build --release --bins --examples (bench/compare.sh
does, and makes target/bench/big-720h-10s).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R = os.path.join(ROOT, "target", "release")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", default="10s")
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--seconds-per-tick", type=int, default=10,
                    help="simulated seconds written per wall-clock second")
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "bench"))
    a = ap.parse_args()
    big = os.path.join(a.work, "big-720h-10s")
    if not os.path.isdir(big):
        raise SystemExit(f"{big} missing: run bench/compare.sh once first")
    w = os.path.join(a.work, "watch-rpo")
    if os.path.isdir(w):
        shutil.rmtree(w)
    os.makedirs(os.path.join(w, "dest"))
    data = os.path.join(w, "data")
    subprocess.run(["cp", "-a", big, data], check=True)
    env = dict(os.environ, SYDRA_ARCHIVE_CACHE_DIR=os.path.join(w, "cache"))
    prom, timing = os.path.join(w, "watch.prom"), os.path.join(w, "time.txt")
    # The first point (a full archive of the whole set) is shipped first:
    # what is measured is the steady state.
    subprocess.run([os.path.join(R, "sydra-archive"), "watch", data, "-o",
                    os.path.join(w, "dest") + "/", "--once", "--levels", "5m,1h,1d", "-q"],
                   env=env, check=True)
    watcher = subprocess.Popen(
        ["/usr/bin/time", "-f", "%U %S %M", "-o", timing, os.path.join(R, "sydra-archive"),
         "watch", data, "-o", os.path.join(w, "dest") + "/", "--every", a.every,
         "--levels", "5m,1h,1d", "--metrics-file", prom, "-q"], env=env)
    ts = 1_748_736_000 + 720 * 3600
    ages = []
    t0 = time.time()
    nxt = t0
    while time.time() - t0 < a.duration:
        out = subprocess.run([os.path.join(R, "examples", "advance"), data, "--series", "100",
                              "--flush", "3600", "--interval", "10", "--rotate-mib", "64",
                              "--seconds", str(a.seconds_per_tick), "--from-ts", str(ts)],
                             capture_output=True, text=True, check=True)
        ts = int(out.stdout)
        nxt += 1
        while time.time() < nxt:
            time.sleep(0.01)
        try:
            for line in open(prom):
                if line.startswith("sydra_archive_watch_newest_point_timestamp_seconds"):
                    ages.append(time.time() - float(line.split()[1]))
        except FileNotFoundError:
            pass
    # SIGTERM to watch itself (GNU time's child, not time): it ends with 0.
    subprocess.run(["pkill", "-TERM", "-P", str(watcher.pid)])
    watcher.wait()
    user, sys_, rss = open(timing).read().split()
    wall = time.time() - t0
    ages = sorted(ages[5:])
    p99 = ages[max(0, int(len(ages) * 0.99) - 1)]
    print(f"watch --every {a.every}: {len(ages)} samples, RPO median {statistics.median(ages):.2f} s, "
          f"p99 {p99:.2f} s (target <= 2x the interval); CPU {float(user) + float(sys_):.2f} s in "
          f"{wall:.0f} s ({(float(user) + float(sys_)) / wall * 100:.1f}% of a core, target <= 10%), "
          f"peak RSS {int(rss) / 1024:.1f} MiB (target <= 64 MiB); "
          f"{len(os.listdir(os.path.join(w, 'dest')))} archives at DEST")
    shutil.rmtree(w)


if __name__ == "__main__":
    main()
