"""Object storage: s3s-fs on loopback, restore and verify of an object
against a local file, and extract through a proxy that counts requests and
bytes.
"""
import os
import re
import shutil
import socket
import subprocess
import threading
import time

from benchlib.common import BIN, ROOT, Scratch, alternate, report, run
from benchlib.extract import extract_json, pick_targets


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
