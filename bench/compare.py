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
  bench/compare.sh --only merge                        # a 25-link chain merged into a full vs create; restore of each
  bench/compare.sh --only chain                        # 30-link chain: create --base (link authentication) vs create,
                                                       # verify --chain --read-data vs verify of each link; 1,000 links

The benchmarks live in bench/benchlib/, one concern a module (common,
scale, extract, s3, incremental, merge, chains, encrypt); this file parses the
arguments and runs the create, verify and restore comparisons and the
ones --only names.
"""
import argparse
import os
import subprocess

from benchlib.chains import chains
from benchlib.common import (BIN, LAYOUT, ROOT, Scratch, alternate, du, generate, report,
                             restore_cases, run, sh, size_line, small_set)
from benchlib.encrypt import encrypted
from benchlib.extract import extract_local
from benchlib.incremental import incremental
from benchlib.merge import merge
from benchlib.s3 import s3_bench
from benchlib.scale import files_scaling, frame_sizes, one_dir, synthetic, threads


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
    if "merge" in only:
        merge(big, hours, interval, a.work, a.runs)


if __name__ == "__main__":
    main()
