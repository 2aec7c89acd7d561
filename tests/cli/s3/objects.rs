//! One archive as an object: a round trip through S3 (stock tar reads
//! the stored bytes), corrupted or truncated objects, access failures, and
//! encrypted archives.

use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

use super::server::*;

#[test]
fn round_trip_through_s3() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let key = "sydradb/2026-11-22.tar.zst";

    let o = s3.run(&["create", p(&data), "-o", &url(key), "--json"]);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["archive"], url(key));
    assert_eq!(j["object"]["url"], url(key));
    assert_eq!(j["object"]["sha256_in_metadata"], true);
    let sha = j["sha256"].as_str().unwrap().to_string();

    // The stored bytes are the archive the JSON describes, and stock tools read them.
    let stored = std::fs::read(s3.object_file(key)).unwrap();
    assert_eq!(hex(&sha256(&stored)), sha);
    assert_eq!(stored.len() as u64, j["bytes"].as_u64().unwrap());
    let local = t.path().join("local.tar.zst");
    std::fs::write(&local, &stored).unwrap();
    let x = t.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let tar = Command::new("tar")
        .args(["--zstd", "-xf", p(&local), "-C", p(&x)])
        .status()
        .unwrap();
    assert!(tar.success());
    assert_eq!(tree_digest_seconds(&x), tree_digest_seconds(&data));

    for args in [
        vec!["verify", &url(key) as &str],
        vec!["verify", "--quick", &url(key)],
        vec!["verify", "--deep", &url(key)],
    ] {
        let o = s3.run(&args);
        expect_code(&o, 0);
        assert!(stdout(&o).contains(&sha), "{}", stdout(&o));
    }
    let o = s3.run(&["list", &url(key)]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("MANIFEST"));
    let o = s3.run(&["list", "--sha256", &url(key)]);
    expect_code(&o, 0);
    assert_eq!(
        stdout(&o).lines().count() as u64,
        j["files"].as_u64().unwrap()
    );

    let target = t.path().join("restored");
    let o = s3.run(&["restore", &url(key), p(&target), "--json"]);
    expect_code(&o, 0);
    assert_eq!(json(&o)["sha256"], sha.as_str());
    assert_eq!(tree_digest(&target), tree_digest(&data));

    // An existing object is kept unless --force.
    let o = s3.run(&["create", p(&data), "-o", &url(key)]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = s3.run(&["create", p(&data), "-o", &url(key), "--force", "-q"]);
    expect_code(&o, 0);

    // The endpoint flag overrides the environment.
    let o = s3
        .cmd()
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .args(["verify", "--quick", "--endpoint", &s3.endpoint(), &url(key)])
        .output()
        .unwrap();
    expect_code(&o, 0);

    // A prefix (ending in /) names the archive by its creation time.
    let o = s3
        .cmd()
        .env("SOURCE_DATE_EPOCH", "1795653307")
        .args([
            "create",
            p(&data),
            "-o",
            &format!("s3://{BUCKET}/dir/"),
            "--json",
        ])
        .output()
        .unwrap();
    expect_code(&o, 0);
    let named = "dir/sydradb-20261126T003507Z.tar.zst";
    assert_eq!(json(&o)["archive"], url(named));
    expect_code(&s3.run(&["verify", &url(named)]), 0);
    let o = s3.run(&["ls", &format!("s3://{BUCKET}/dir/"), "--json"]);
    expect_code(&o, 0);
    assert_eq!(json(&o)["archives"][0]["key"], named);
    // Another of the same second takes the next free name, as in a
    // directory (a watch shipping twice a second does).
    let o = s3
        .cmd()
        .env("SOURCE_DATE_EPOCH", "1795653307")
        .args(["create", p(&data), "-o", &format!("s3://{BUCKET}/dir/")])
        .args(["--incremental", "--json"])
        .output()
        .unwrap();
    expect_code(&o, 0);
    assert_eq!(
        json(&o)["archive"],
        url("dir/sydradb-20261126T003507Z-2.tar.zst")
    );
    // A third, in the same second: on the second one (the newest by its
    // HEAD time, though S3 dates both to the second), not the first.
    let o = s3
        .cmd()
        .env("SOURCE_DATE_EPOCH", "1795653307")
        .args(["create", p(&data), "-o", &format!("s3://{BUCKET}/dir/")])
        .args(["--incremental", "--json"])
        .output()
        .unwrap();
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["archive"], url("dir/sydradb-20261126T003507Z-3.tar.zst"));
    assert!(j["base"].to_string().contains("Z-2.tar.zst"), "{j}");
}

#[test]
fn corrupted_or_truncated_objects_fail_verification() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let key = "c.tar.zst";
    expect_code(&s3.run(&["create", p(&data), "-o", &url(key), "-q"]), 0);
    let file = s3.object_file(key);
    let good = std::fs::read(&file).unwrap();

    // One flipped byte in the middle of the data.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&file, &bad).unwrap();
    for args in [
        vec!["verify", &url(key) as &str],
        vec!["verify", "--quick", &url(key)],
    ] {
        let o = s3.run(&args);
        expect_code(&o, 1);
        assert!(stderr(&o).contains("corrupt"), "{}", stderr(&o));
    }
    let target = t.path().join("r");
    let o = s3.run(&["restore", &url(key), p(&target)]);
    expect_code(&o, 1);
    assert!(!target.exists());
    assert_eq!(leftovers(t.path()), Vec::<String>::new());

    // Whole bytes, but the SHA-256 recorded at upload disagrees (the
    // object was replaced by other means): a mismatch is an archive fault.
    std::fs::write(&file, &good).unwrap();
    expect_code(&s3.run(&["verify", &url(key)]), 0);
    let meta = s3
        .all_files()
        .into_iter()
        .map(|f| s3.root.path().join(f))
        .find(|f| std::fs::read_to_string(f).is_ok_and(|s| s.contains("sydra-archive-sha256")))
        .expect("the object's metadata file");
    let text = std::fs::read_to_string(&meta).unwrap();
    let recorded = hex(&sha256(&good));
    assert!(text.contains(&recorded), "{text}");
    std::fs::write(&meta, text.replace(&recorded, &"0".repeat(64))).unwrap();
    let o = s3.run(&["verify", "--quick", &url(key)]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("object metadata recorded"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&meta, text).unwrap();

    // Truncated: the ranged read of FOOT fails before anything streams.
    std::fs::write(&file, &good[..good.len() - 100]).unwrap();
    let o = s3.run(&["verify", "--quick", &url(key)]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("FOOT") || stderr(&o).contains("footer"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn access_failures_exit_2_with_one_clear_line() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());

    // Wrong credentials, for every command that reaches the store.
    for args in [
        vec!["create", p(&data), "-o", &url("w.tar.zst")],
        vec!["verify", &url("w.tar.zst")],
        vec!["ls", &url("")],
    ] {
        let o = s3
            .cmd()
            .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
            .args(&args)
            .output()
            .unwrap();
        expect_code(&o, 2);
        let err = stderr(&o);
        assert!(err.contains("access denied"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(!s3.object_file("w.tar.zst").exists());

    // An endpoint nobody listens on: exit 2, in bounded time.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    for args in [
        vec!["create", p(&data), "-o", &url("u.tar.zst")],
        vec!["verify", &url("u.tar.zst")],
    ] {
        let started = Instant::now();
        let o = s3
            .cmd()
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .args(&args)
            .output()
            .unwrap();
        expect_code(&o, 2);
        assert!(started.elapsed() < Duration::from_secs(30));
        let err = stderr(&o);
        assert!(err.contains("error sending request"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn encrypted_archives_in_object_storage() {
    use age::secrecy::ExposeSecret;
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let id = age::x25519::Identity::generate();
    let key = t.path().join("key.txt");
    std::fs::write(&key, format!("{}\n", id.to_string().expose_secret())).unwrap();
    let r = id.to_public().to_string();
    let o = s3
        .cmd()
        .args(["create", p(&data), "-o", &url("enc/"), "-r", &r, "--json"])
        .output()
        .unwrap();
    expect_code(&o, 0);
    let j = json(&o);
    let archive = j["archive"].as_str().unwrap().to_string();
    assert!(archive.ends_with(".tar.zst.age"), "{archive}");
    // The object is the ciphertext, and its metadata holds its SHA-256.
    let key_name = archive.trim_start_matches("s3://backups/");
    let stored = std::fs::read(s3.object_file(key_name)).unwrap();
    assert!(stored.starts_with(b"age-encryption.org/v1\n"));
    assert_eq!(j["sha256"], hex(&sha256(&stored)));
    let o = s3.run(&["verify", &archive, "-i", p(&key)]);
    expect_code(&o, 0);
    let o = s3.run(&["verify", &archive]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("give --identity"), "{}", stderr(&o));
    // Random access through the chunks: one file, a few ranged GETs.
    let out = t.path().join("m");
    let o = s3.run(&[
        "extract",
        &archive,
        "MANIFEST",
        "-o",
        p(&out),
        "-i",
        p(&key),
        "--json",
    ]);
    expect_code(&o, 0);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(data.join("MANIFEST")).unwrap()
    );
    let r2 = t.path().join("r");
    expect_code(
        &s3.run(&["restore", &archive, p(&r2), "-i", p(&key), "-q"]),
        0,
    );
    assert_eq!(tree_digest(&r2), tree_digest(&data));
    // ls and prune see it (with the key: its HEAD is inside).
    let o = s3.run(&["ls", &url("enc/"), "-i", p(&key), "--json"]);
    expect_code(&o, 0);
    assert_eq!(
        json(&o)["archives"].as_array().unwrap().len(),
        1,
        "{}",
        stdout(&o)
    );
}
