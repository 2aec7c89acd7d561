"""How the tool scales: with the file count, the DATA frame size, millions
of entries, one hour directory of a million files, and decoding threads.
"""
import os
import subprocess

from benchlib.common import (BIN, LAYOUT, SYN, Scratch, alternate, du, generate, report,
                             restore_cases, run, sh, size_line, small_set)


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
