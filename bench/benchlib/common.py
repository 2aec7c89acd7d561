"""What every benchmark shares: the binaries' paths, running and timing a
command (wall clock and peak RSS), making and measuring data sets, running
cases alternately, reports, and fresh restore targets.
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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


def size_line(ours, theirs, nfiles, target):
    sa, sb = os.path.getsize(ours), os.path.getsize(theirs)
    verdict = "ok" if sa / sb <= target else "MISSED"
    print(f"  size ({nfiles} files): sydra-archive {sa} bytes, tar|zstd {sb} bytes: {sa / sb:.3f}x "
          f"(target <= {target}x: {verdict}); {(sa - sb) / nfiles:.0f} bytes more per file")


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
