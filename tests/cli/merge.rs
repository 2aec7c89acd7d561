//! `merge`: the full archive of an incremental's chain, from the chain
//! alone. Against a full `create` of the same moment (the same index but
//! for frame offsets, the same restored tree), with frames copied whole;
//! its refusals, each with its reason; a corrupt source that fails the
//! merge with nothing published; encrypted chains; SIGKILL at every step
//! of a merge and of the prune after it. (Every kind of change the chain
//! model knows is merged by the differential test, `chain_model`.)

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::*;

/// A data dir and a chain of `links` archives of it in `dir` (a full and
/// incrementals, 15 minutes of the simulated server each, WAL files
/// rotating), with frames of 16 KiB so that a chain has many. Returns
/// the data dir and the archives, oldest first.
fn chain(dir: &Path, links: usize, extra: &[&str]) -> (PathBuf, Vec<PathBuf>) {
    let data = small_data(dir);
    let mut server = small_server(&data);
    let shelf = dir.join("shelf");
    fs::create_dir_all(&shelf).unwrap();
    let mut archives: Vec<PathBuf> = Vec::new();
    for k in 0..links {
        if k > 0 {
            server.run(900).unwrap();
        }
        let out = shelf.join(format!("c{k}.tar.zst"));
        let mut args = vec!["create", p(&data), "-o", p(&out), "-q", "--frame-kib", "16"];
        if let Some(b) = archives.last() {
            args.extend(["--base", p(b)]);
        }
        args.extend(extra);
        expect_code(&run(&args), 0);
        archives.push(out);
    }
    (data, archives)
}

fn restored(archive: &Path, to: &Path, extra: &[&str]) -> String {
    let mut args = vec!["restore", p(archive), p(to), "-q"];
    args.extend(extra);
    expect_code(&run(&args), 0);
    tree_digest(to)
}

#[test]
fn a_merged_chain_is_the_full_archive_of_its_moment() {
    let t = tempfile::tempdir().unwrap();
    let (data, links) = chain(t.path(), 6, &[]);
    let merged = t.path().join("merged.tar.zst");
    let o = run(&[
        "merge",
        p(&links[5]),
        "-o",
        p(&merged),
        "--json",
        "--frame-kib",
        "16",
    ]);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["kind"], "full");
    assert_eq!(j["chain"].as_array().unwrap().len(), 6);
    // Most of it was copied as compressed frames.
    assert!(j["copied_frames"].as_u64().unwrap() > 5, "{j}");
    assert!(j["kept_members"].as_u64().unwrap() > 0, "{j}");
    expect_code(&run(&["verify", "--deep", p(&merged)]), 0);
    // Stock tools read it as they read any archive.
    let z = std::process::Command::new("zstd")
        .args(["-t", "-q", p(&merged)])
        .output()
        .unwrap();
    assert!(
        z.status.success(),
        "zstd -t: {}",
        String::from_utf8_lossy(&z.stderr)
    );
    let x = t.path().join("tar-x");
    fs::create_dir(&x).unwrap();
    let tx = std::process::Command::new("tar")
        .args(["--zstd", "-xf", p(&merged), "-C", p(&x)])
        .output()
        .unwrap();
    assert!(
        tx.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&tx.stderr)
    );
    let d = std::process::Command::new("diff")
        .args(["-r", p(&data), p(&x)])
        .output()
        .unwrap();
    assert!(
        d.status.success(),
        "diff -r: {}",
        String::from_utf8_lossy(&d.stdout)
    );
    // The same index as a full create of the data dir now (paths, kinds,
    // sizes, modes, mtimes to the nanosecond, digests).
    let full = t.path().join("full.tar.zst");
    expect_code(
        &run(&[
            "create",
            p(&data),
            "-o",
            p(&full),
            "-q",
            "--frame-kib",
            "16",
        ]),
        0,
    );
    let listed = |a: &Path| {
        let o = run(&["list", "--json", p(a)]);
        expect_code(&o, 0);
        json(&o)["entries"].clone()
    };
    assert_eq!(listed(&merged), listed(&full));
    // The same tree as the chain's restore, and as the data dir.
    let from_merged = restored(&merged, &t.path().join("r1"), &[]);
    assert_eq!(from_merged, restored(&links[5], &t.path().join("r2"), &[]));
    assert_eq!(from_merged, tree_digest(&data));
    // Dated by the newest archive's moment; sizes within a percent.
    let head_time = |a: &Path| {
        let o = run(&["list", "--json", p(a)]);
        json(&o)["created_unix_ms"].clone()
    };
    assert_eq!(head_time(&merged), head_time(&links[5]));
    let (m, f) = (
        fs::metadata(&merged).unwrap().len(),
        fs::metadata(&full).unwrap().len(),
    );
    assert!(m * 100 <= f * 101, "merged {m} bytes, created {f}");
}

#[test]
fn what_merge_refuses_it_names() {
    let t = tempfile::tempdir().unwrap();
    let (_, links) = chain(t.path(), 2, &[]);
    let out = t.path().join("m.tar.zst");
    // A full archive has nothing to merge.
    let o = run(&["merge", p(&links[0]), "-o", p(&out)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("is a full archive already"),
        "{}",
        stderr(&o)
    );
    // Nor is an archive of the chain replaced, even with --force.
    let o = run(&["merge", p(&links[1]), "-o", p(&links[0]), "--force"]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("of the chain being merged"),
        "{}",
        stderr(&o)
    );
    // An existing output without --force.
    fs::write(&out, b"x").unwrap();
    let o = run(&["merge", p(&links[1]), "-o", p(&out)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), b"x");
}

/// Flips one byte at `at` of the file `f`.
fn flip(f: &Path, at: u64) {
    let mut b = fs::read(f).unwrap();
    b[at as usize] ^= 0x5a;
    fs::write(f, b).unwrap();
}

#[test]
fn a_corrupt_archive_of_the_chain_fails_the_merge_and_nothing_is_published() {
    let t = tempfile::tempdir().unwrap();
    let (_, links) = chain(t.path(), 3, &[]);
    let shelf = links[0].parent().unwrap().to_path_buf();
    let out = t.path().join("m.tar.zst");
    // A byte of the full archive's data (a frame that is copied whole):
    // its whole SHA-256 is no longer the one the link above recorded.
    let full = fs::read(&links[0]).unwrap();
    let saved = full.clone();
    flip(&links[0], full.len() as u64 / 3);
    let o = bin()
        .args(["merge", p(&links[2]), "-o", p(&out)])
        .env("SYDRA_ARCHIVE_CACHE_DIR", "off")
        .output()
        .unwrap();
    expect_code(&o, 1);
    assert!(stderr(&o).contains("hashes to"), "{}", stderr(&o));
    assert!(!out.exists());
    fs::write(&links[0], saved).unwrap();
    // A byte of the newest archive's data: its own member does not decode
    // or hash to its record.
    let top = fs::read(&links[2]).unwrap();
    flip(&links[2], 200);
    let o = run(&["merge", p(&links[2]), "-o", p(&out)]);
    expect_code(&o, 1);
    assert!(!out.exists());
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
    assert!(leftovers(&shelf).is_empty());
    fs::write(&links[2], top).unwrap();
    expect_code(&run(&["merge", p(&links[2]), "-o", p(&out), "-q"]), 0);
}

#[test]
fn an_encrypted_chain_merges_into_an_encrypted_full() {
    use age::secrecy::ExposeSecret;
    let t = tempfile::tempdir().unwrap();
    let id = age::x25519::Identity::generate();
    let key = t.path().join("key.txt");
    fs::write(&key, format!("{}\n", id.to_string().expose_secret())).unwrap();
    let recipient = id.to_public().to_string();
    let (data, links) = chain(t.path(), 3, &["-r", &recipient, "-i", p(&key)]);
    let out = t.path().join("m.tar.zst.age");
    let o = run(&["merge", p(&links[2]), "-o", p(&out), "-i", p(&key)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("is encrypted: encrypt the merged archive too"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    let o = run(&[
        "merge",
        p(&links[2]),
        "-o",
        p(&out),
        "-i",
        p(&key),
        "-r",
        &recipient,
        "--json",
    ]);
    expect_code(&o, 0);
    assert_eq!(json(&o)["encrypted"], true);
    assert!(
        fs::read(&out)
            .unwrap()
            .starts_with(b"age-encryption.org/v1")
    );
    let got = restored(&out, &t.path().join("r"), &["-i", p(&key)]);
    assert_eq!(got, tree_digest(&data));
}

#[test]
fn a_merge_killed_at_any_step_publishes_nothing_and_the_next_one_cleans_up() {
    let t = tempfile::tempdir().unwrap();
    let (data, links) = chain(t.path(), 3, &[]);
    let out_dir = t.path().join("out");
    fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("m.tar.zst");
    let want = tree_digest(&data);
    // Steps are members and copied frames: kill at each, up to the first
    // run that finishes.
    let mut step = 0;
    loop {
        let o = bin()
            .args([
                "merge",
                p(&links[2]),
                "-o",
                p(&out),
                "-q",
                "--frame-kib",
                "16",
            ])
            .env("SYDRA_ARCHIVE_TEST_KILL_AT_STEP", step.to_string())
            .output()
            .unwrap();
        if o.status.success() {
            break;
        }
        assert!(!out.exists(), "published after a kill at step {step}");
        step += 1;
        assert!(step < 10_000, "merge never finished");
    }
    assert!(step > 20, "only {step} steps");
    assert_eq!(restored(&out, &t.path().join("r"), &[]), want);
    // The killed runs' temporaries go with a later run once they are
    // old enough to be sure no run is starting on them (2 s): some went
    // with the runs above on a slow machine; one more killed run now
    // leaves one that only the next run can remove.
    let o = bin()
        .args(["merge", p(&links[2]), "-o", p(&out), "--force", "-q"])
        .args(["--frame-kib", "16"])
        .env("SYDRA_ARCHIVE_TEST_KILL_AT_STEP", (step / 2).to_string())
        .output()
        .unwrap();
    assert!(!o.status.success());
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let o = run(&["merge", p(&links[2]), "-o", p(&out), "--force", "--json"]);
    expect_code(&o, 0);
    let removed = json(&o)["removed_stale_temps"].as_array().unwrap().len();
    assert!((1..=step + 1).contains(&removed), "{removed} of {step}");
    assert!(leftovers(&out_dir).is_empty(), "{:?}", leftovers(&out_dir));
}

#[test]
fn prune_after_a_merge_keeps_a_restorable_point_at_every_step() {
    let t = tempfile::tempdir().unwrap();
    let (data, links) = chain(t.path(), 4, &[]);
    let shelf = links[0].parent().unwrap().to_path_buf();
    let want = tree_digest(&data);
    let merged = shelf.join("merged.tar.zst");
    expect_code(&run(&["merge", p(&links[3]), "-o", p(&merged), "-q"]), 0);
    // Newest by modification time: the merged full.
    let pristine = t.path().join("pristine");
    fs::create_dir(&pristine).unwrap();
    for e in fs::read_dir(&shelf).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), pristine.join(e.file_name())).unwrap();
    }
    let mut step = 0;
    loop {
        let o = bin()
            .args(["prune", p(&shelf), "--keep-last", "1", "--yes"])
            .env("SYDRA_ARCHIVE_TEST_KILL_AT_REMOVAL", step.to_string())
            .output()
            .unwrap();
        // Whatever is left, the newest restorable point is the tree.
        let r = t.path().join(format!("r{step}"));
        let dir_arg = format!("{}/", shelf.display());
        expect_code(&run(&["restore", &dir_arg, p(&r), "-q"]), 0);
        assert_eq!(tree_digest(&r), want, "after a kill at step {step}");
        fs::remove_dir_all(&r).unwrap();
        // And every archive left is whole (bases go after what is on them).
        for a in archive_names(&shelf) {
            let o = run(&["verify", "--chain", p(&shelf.join(a)), "-q"]);
            assert!(o.status.success(), "step {step}: {}", stderr(&o));
        }
        if o.status.success() {
            break;
        }
        // Back to the shelf before the prune, for the next step.
        for e in fs::read_dir(&shelf).unwrap() {
            fs::remove_file(e.unwrap().path()).unwrap();
        }
        for e in fs::read_dir(&pristine).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), shelf.join(e.file_name())).unwrap();
        }
        // The copies must list the merged full as the newest.
        let now = std::time::SystemTime::now();
        fs::File::options()
            .write(true)
            .open(&merged)
            .unwrap()
            .set_modified(now + std::time::Duration::from_secs(60))
            .unwrap();
        step += 1;
        assert!(step < 100, "prune never finished");
    }
    assert!(step >= 4, "only {step} steps");
    assert_eq!(archive_names(&shelf), ["merged.tar.zst"]);
}

#[test]
fn merge_onto_writes_one_incremental_for_the_archives_above_its_base() {
    let t = tempfile::tempdir().unwrap();
    let (data, links) = chain(t.path(), 6, &[]);
    let shelf = links[0].parent().unwrap().to_path_buf();
    let out = shelf.join("c2-c5.tar.zst");
    let o = run(&[
        "merge",
        p(&links[5]),
        "--onto",
        p(&links[2]),
        "-o",
        p(&out),
        "--json",
    ]);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["kind"], "incremental", "{j}");
    assert_eq!(j["base"]["location"], "c2.tar.zst", "{j}");
    assert_eq!(j["chain"].as_array().unwrap().len(), 6);
    // WAL files that grew over three archives: one append each, one tail.
    assert!(j["operations"].as_u64().unwrap() >= 1, "{j}");
    expect_code(&run(&["verify", "--chain", p(&out)]), 0);
    assert_eq!(restored(&out, &t.path().join("r"), &[]), tree_digest(&data));
    // No larger than the archives it stands for.
    let sum: u64 = links[3..]
        .iter()
        .map(|l| fs::metadata(l).unwrap().len())
        .sum();
    let size = fs::metadata(&out).unwrap().len();
    assert!(size * 100 <= sum * 105, "{size} bytes for {sum}");
    // The next incremental goes on it like on any archive.
    let next = shelf.join("c6.tar.zst");
    expect_code(
        &run(&["create", p(&data), "--base", p(&out), "-o", p(&next), "-q"]),
        0,
    );
    assert_eq!(
        restored(&next, &t.path().join("r2"), &[]),
        tree_digest(&data)
    );

    // Refused: a BASE outside the chain, and the archive itself.
    let other = t.path().join("other.tar.zst");
    create(&data, &other);
    let x = t.path().join("x.tar.zst");
    let o = run(&["merge", p(&links[5]), "--onto", p(&other), "-o", p(&x)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("is not an archive of the chain of"),
        "{}",
        stderr(&o)
    );
    let o = run(&["merge", p(&links[5]), "--onto", p(&links[5]), "-o", p(&x)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("there is nothing above it to merge"),
        "{}",
        stderr(&o)
    );
    assert!(!x.exists());
}

/// A byte of the full archive changed under an unchanged stat (bit rot)
/// while the verified-digest cache vouches for it: the frames copied are
/// hashed as they are read, and the merge fails before publishing.
#[test]
fn bit_rot_the_digest_cache_cannot_see_fails_the_merge() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let t = tempfile::tempdir().unwrap();
    let (_, links) = chain(t.path(), 3, &[]);
    let cache = t.path().join("cache");
    fs::create_dir(&cache).unwrap();
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o700)).unwrap();
    let full = fs::read(&links[0]).unwrap();
    let sha = hex(&sha256(&full));
    flip(&links[0], full.len() as u64 / 2);
    // The cache says the changed file is the archive recorded.
    let m = fs::metadata(&links[0]).unwrap();
    let key = format!(
        "f:{}:{}:{}:{}.{}:{}.{}",
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    );
    let entries = cache.join("verified-v1");
    fs::write(&entries, format!("{key} {sha}\n")).unwrap();
    fs::set_permissions(&entries, fs::Permissions::from_mode(0o600)).unwrap();
    let out = t.path().join("m.tar.zst");
    let o = bin()
        .args(["merge", p(&links[2]), "-o", p(&out)])
        .env("SYDRA_ARCHIVE_CACHE_DIR", &cache)
        .output()
        .unwrap();
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("corrupted or replaced while it was merged"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn the_newest_archive_is_checked_whole_against_its_tail() {
    let t = tempfile::tempdir().unwrap();
    let (_, links) = chain(t.path(), 2, &[]);
    // A digit of HEAD's time: covered by nothing but TAIL's digest.
    let mut b = fs::read(&links[1]).unwrap();
    let at = b
        .windows(17)
        .position(|w| w == b"\"created_unix_ms\"")
        .unwrap()
        + 19;
    b[at] = if b[at] == b'1' { b'2' } else { b'1' };
    fs::write(&links[1], b).unwrap();
    let out = t.path().join("m.tar.zst");
    let o = run(&["merge", p(&links[1]), "-o", p(&out)]);
    expect_code(&o, 1);
    assert!(stderr(&o).contains("does not match TAIL"), "{}", stderr(&o));
    assert!(!out.exists());
    // And stdin is no chain.
    let o = run(&["merge", "-", "-o", p(&out)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("not - (stdin)"), "{}", stderr(&o));
}
