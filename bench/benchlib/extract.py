"""extract from a local archive file: one segment and one hour directory,
with the tool's read counts and strace's.
"""
import json
import os
import re
import shutil
import subprocess

from benchlib.common import BIN, ROOT, alternate, run


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
