#!/usr/bin/env python3
"""Requests and bytes of `watch` against object storage, and what they
cost at AWS S3 Standard (us-east-1) prices: a copy of the bench's big set
is watched into an s3s-fs prefix on loopback (its first point, a full
archive, shipped before the measured run) while examples/advance writes
SECONDS_PER_TICK of the simulated server (100 series) every wall-clock
second for DURATION seconds, at the default `--every 10s`, then the same
with `--levels 5m,1h,1d`, then QUIET seconds with no write at all. The
requests are watch's own counters (its --metrics-file), checked against
the request lines a proxy between watch and the server saw.

    bench/watch-cost.py [--every 10s] [--duration 180] [--quiet 120]
                        [--work target/bench]

Build first: cargo build --release --bins --examples (bench/compare.sh
does, and makes target/bench/big-720h-10s); s3s-fs in target/tools/bin
(.ci/run installs it), on PATH, or --s3s-fs.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from benchlib.s3 import CountingProxy  # noqa: E402

R = os.path.join(ROOT, "target", "release")
BIN = os.path.join(R, "sydra-archive")
METHODS = ["PUT", "POST", "LIST", "GET", "HEAD", "DELETE"]
# AWS S3 Standard, us-east-1: per 1,000 requests, and per GB-month.
PRICE_A, PRICE_B, PRICE_GB_MONTH = 0.005, 0.0004, 0.023
CLASS_A, CLASS_B = ("PUT", "POST", "LIST"), ("GET", "HEAD")


def metrics(path):
    out = {}
    try:
        for line in open(path):
            if line.startswith("#") or not line.strip():
                continue
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    except FileNotFoundError:
        pass
    return out


def counts(m):
    c = {k: m.get(f'sydra_archive_watch_requests_total{{method="{k}"}}', 0.0) for k in METHODS}
    c["up"] = m.get('sydra_archive_watch_request_bytes_total{direction="up"}', 0.0)
    c["down"] = m.get('sydra_archive_watch_request_bytes_total{direction="down"}', 0.0)
    return c


def start_s3s(exe, root):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port), "--access-key", "k",
                               "--secret-key", "s", root], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return server, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("s3s-fs did not start")


def run_one(label, data, url, env, a, levels, writes, seconds):
    """Runs watch for `seconds` (with or without writes); returns the
    counters' change, the seconds measured, the points and the proxy's
    request lines."""
    w = os.path.join(a.work, "watch-cost")
    prom, events = os.path.join(w, f"{label}.prom"), os.path.join(w, f"{label}.ndjson")
    argv = [BIN, "watch", data, "-o", url, "--every", a.every, "--metrics-file", prom, "--json"]
    if levels:
        argv += ["--levels", levels]
    proxy = env["proxy"]
    with open(events, "w") as out:
        watcher = subprocess.Popen(argv, env=env["env"], stdout=out)
        # Measured from the first write of the metrics file (after the
        # start's one listing of the destination).
        while "sydra_archive_watch_ticks_total" not in metrics(prom):
            time.sleep(0.05)
        m0, p0, t0 = counts(metrics(prom)), proxy.requests, time.time()
        ts = env["ts"]
        nxt = t0
        while time.time() - t0 < seconds:
            if writes:
                out_ = subprocess.run([os.path.join(R, "examples", "advance"), data, "--series", "100",
                                       "--flush", "3600", "--interval", "10", "--rotate-mib", "64",
                                       "--seconds", str(a.seconds_per_tick), "--from-ts", str(ts)],
                                      capture_output=True, text=True, check=True)
                ts = int(out_.stdout)
            nxt += 1
            while time.time() < nxt:
                time.sleep(0.01)
        env["ts"] = ts
        # The point of the last write, and its expiry, are let finish: the
        # tick after the one that shipped it has nothing to ship.
        end_ticks = metrics(prom).get("sydra_archive_watch_ticks_total", 0)
        if writes:
            while metrics(prom).get("sydra_archive_watch_ticks_total", 0) < end_ticks + 2:
                time.sleep(0.05)
        m = metrics(prom)
        m1, p1, t1 = counts(m), proxy.requests, time.time()
        watcher.send_signal(signal.SIGTERM)
        watcher.wait()
    points = [json.loads(x) for x in open(events) if '"event":"point"' in x]
    delta = {k: m1[k] - m0[k] for k in m1}
    return delta, t1 - t0, points, p1 - p0


def report(label, delta, secs, points, proxied):
    per_h = {k: v * 3600 / secs for k, v in delta.items()}
    a_h = sum(per_h[k] for k in CLASS_A)
    b_h = sum(per_h[k] for k in CLASS_B)
    day = (a_h * PRICE_A + b_h * PRICE_B) / 1000 * 24
    total = sum(delta[k] for k in METHODS)
    print(f"\n## {label}: {secs:.0f} s, {len(points)} points, {total:.0f} requests "
          f"(the proxy saw {proxied} request lines)")
    print("requests per hour: " + ", ".join(f"{k} {per_h[k]:.0f}" for k in METHODS)
          + f" (class A {a_h:.0f}, class B {b_h:.0f})")
    print(f"bytes per hour: up {per_h['up'] / 1e6:.1f} MB, down {per_h['down'] / 1e6:.1f} MB")
    if points:
        first, last = points[0]["requests"], points[-1]["requests"]
        print(f"per point: first {sum(first[k.lower()] for k in METHODS)} requests "
              f"({first['get']} GET), last {sum(last[k.lower()] for k in METHODS)} "
              f"({last['get']} GET); mean {sum(p['bytes'] for p in points) / len(points) / 1e3:.0f} kB "
              f"archive")
        for i, p in enumerate(points):
            r = p["requests"]
            print(f"  point {i + 1}: {p['kind']} {p['bytes'] / 1e3:.0f} kB in {p['seconds']:.1f} s; "
                  + " ".join(f"{k} {r[k.lower()]}" for k in METHODS)
                  + f"; up {r['bytes_up'] / 1e3:.0f} kB, down {r['bytes_down'] / 1e6:.1f} MB")
    gb_month = per_h["up"] * 24 * 30 / 1e9
    print(f"cost: ${day:.4f} a day, ${day * 30:.2f} a month in requests "
          f"(= {day * 30 / PRICE_GB_MONTH:.1f} GB-months of storage at ${PRICE_GB_MONTH}); "
          f"{gb_month:.1f} GB uploaded a month (${gb_month * PRICE_GB_MONTH:.2f} a month "
          f"if all were kept for a month)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--every", default="10s")
    ap.add_argument("--duration", type=int, default=180, help="seconds of writes per run")
    ap.add_argument("--quiet", type=int, default=120, help="seconds without writes")
    ap.add_argument("--seconds-per-tick", type=int, default=10,
                    help="simulated seconds written per wall-clock second")
    ap.add_argument("--work", default=os.path.join(ROOT, "target", "bench"))
    ap.add_argument("--big", help="the data set (default WORK/big-720h-10s)")
    ap.add_argument("--s3s-fs", default=os.path.join(ROOT, "target", "tools", "bin", "s3s-fs"))
    a = ap.parse_args()
    big = a.big or os.path.join(a.work, "big-720h-10s")
    if not os.path.isdir(big):
        raise SystemExit(f"{big} missing: run bench/compare.sh once first")
    exe = a.s3s_fs if os.access(a.s3s_fs, os.X_OK) else shutil.which("s3s-fs")
    if not exe:
        raise SystemExit("no s3s-fs (.ci/run installs it in target/tools/bin)")
    w = os.path.join(a.work, "watch-cost")
    if os.path.isdir(w):
        shutil.rmtree(w)
    os.makedirs(os.path.join(w, "s3", "bench"))
    server, port = start_s3s(exe, os.path.join(w, "s3"))
    proxy = CountingProxy(port)
    env = dict(os.environ, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s", AWS_REGION="us-east-1",
               AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}", AWS_ALLOW_HTTP="true",
               SYDRA_ARCHIVE_CACHE_DIR=os.path.join(w, "cache"))
    ctx = {"env": env, "proxy": proxy, "ts": 1_748_736_000 + 720 * 3600}
    print(f"watch --every {a.every} of a copy of {big} into s3s-fs on loopback; writes: "
          f"{a.seconds_per_tick} simulated s of 100 series every wall-clock second; prices: "
          f"class A ${PRICE_A}/1,000, class B ${PRICE_B}/1,000, DELETE free, "
          f"${PRICE_GB_MONTH}/GB-month")
    try:
        for label, levels in (("default", None), ("levels 5m,1h,1d", "5m,1h,1d")):
            data = os.path.join(w, "data")
            if os.path.isdir(data):
                shutil.rmtree(data)
            subprocess.run(["cp", "-a", big, data], check=True)
            url = f"s3://bench/{label.replace(' ', '-').replace(',', '-')}/"
            # The first point (a full archive of the whole set) first.
            once = [BIN, "watch", data, "-o", url, "--once", "-q"]
            subprocess.run(once + (["--levels", levels] if levels else []), env=env, check=True)
            delta, secs, points, proxied = run_one(label.split()[0], data, url, ctx, a, levels, True,
                                                   a.duration)
            report(f"writes, {label}", delta, secs, points, proxied)
        delta, secs, points, proxied = run_one("quiet", data, url, ctx, a, "5m,1h,1d", False, a.quiet)
        report("no writes", delta, secs, points, proxied)
    finally:
        server.terminate()
        server.wait()
    shutil.rmtree(w)


if __name__ == "__main__":
    main()
