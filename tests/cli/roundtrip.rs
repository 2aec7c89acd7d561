//! Round trips: create, verify, zstd -t, tar --zstd -xf and diff -r agree.

use std::fs;
use std::path::Path;
use std::process::Command;

use sydra_archive::sydradb::{FixtureSpec, generate};

use crate::support::*;

fn stock_tools_agree(data: &Path, archive: &Path, scratch: &Path) {
    let o = run(&["verify", p(archive)]);
    expect_code(&o, 0);
    let o = run(&["verify", "--quick", p(archive)]);
    expect_code(&o, 0);
    let z = Command::new("zstd")
        .args(["-t", "-q", p(archive)])
        .output()
        .unwrap();
    assert!(
        z.status.success(),
        "zstd -t: {}",
        String::from_utf8_lossy(&z.stderr)
    );
    let x = scratch.join("extracted");
    fs::create_dir(&x).unwrap();
    let t = Command::new("tar")
        .args(["--zstd", "-xf", p(archive), "-C", p(&x)])
        .output()
        .unwrap();
    assert!(
        t.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&t.stderr)
    );
    let d = Command::new("diff")
        .args(["-r", p(data), p(&x)])
        .output()
        .unwrap();
    assert!(
        d.status.success(),
        "diff -r: {}",
        String::from_utf8_lossy(&d.stdout)
    );
}

#[test]
fn small_dir_round_trips_through_stock_tools() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let out = t.path().join("a.tar.zst");
    create(&data, &out);
    stock_tools_agree(&data, &out, t.path());
}

#[test]
fn tens_of_thousands_of_files_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("big");
    // 25 series, 1-minute flushes, 14 hours: 21,000 segment files in 14 hour dirs.
    let stats = generate(
        &data,
        &FixtureSpec {
            series: 25,
            duration_s: 14 * 3600,
            flush_s: 60,
            interval_s: 10,
            wal_rotate_bytes: 1 << 20,
            ..FixtureSpec::default()
        },
    )
    .unwrap();
    assert!(stats.files > 20_000, "{stats:?}");
    let out = t.path().join("big.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&out), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["files"].as_u64().unwrap(), stats.files);
    stock_tools_agree(&data, &out, t.path());
}

#[test]
fn stdout_and_stdin() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let o = run(&["create", p(&data), "-o", "-", "--json"]);
    expect_code(&o, 0);
    let archive = o.stdout.clone();
    // --json goes to stderr when the archive is on stdout.
    let v: serde_json::Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert_eq!(v["bytes"].as_u64().unwrap(), archive.len() as u64);
    assert_eq!(v["sha256"].as_str().unwrap(), hex(&sha256(&archive)));

    let o = run_stdin(&["verify", "-", "--json"], &archive);
    expect_code(&o, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()["ok"],
        true
    );
    let o = run_stdin(&["verify", "--quick", "-"], &archive);
    expect_code(&o, 0);
    let o = run_stdin(&["list", "-"], &archive);
    expect_code(&o, 0);
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.ends_with(" MANIFEST") && l.starts_with("file"))
    );

    let mut cut = archive.clone();
    cut.truncate(archive.len() - 1);
    let o = run_stdin(&["verify", "-"], &cut);
    expect_code(&o, 1);
    let o = run_stdin(&["verify", "--quick", "-"], &cut);
    expect_code(&o, 1);

    // A named pipe (as `<(curl …)` gives) is read once, like stdin, by
    // full and quick verify.
    let fifo = t.path().join("fifo");
    let c = std::ffi::CString::new(p(&fifo)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for args in [vec!["verify"], vec!["verify", "--quick"]] {
        let feeder = {
            let (fifo, archive) = (fifo.clone(), archive.clone());
            std::thread::spawn(move || fs::write(fifo, archive))
        };
        let mut a = args.clone();
        a.push(p(&fifo));
        let o = run(&a);
        expect_code(&o, 0);
        feeder.join().unwrap().unwrap();
    }

    // The same archive written to a file is byte-identical in length and valid.
    let out = t.path().join("f.tar.zst");
    fs::write(&out, &archive).unwrap();
    stock_tools_agree(&data, &out, t.path());
}

#[test]
fn symlinked_wal_is_followed_and_reported() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let elsewhere = t.path().join("wal-disk");
    fs::rename(data.join("wal"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, data.join("wal")).unwrap();
    let out = t.path().join("a.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&out), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["followed"], serde_json::json!(["wal"]));
    assert!(
        stderr(&o).contains("followed symlink \"wal\""),
        "{}",
        stderr(&o)
    );
    let o = run(&["list", p(&out), "--json"]);
    let head: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let wal = head["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "wal")
        .unwrap();
    assert_eq!(wal["type"], "dir");
    assert!(
        head["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "wal/current.wal")
    );
}

#[test]
fn list_json_is_the_index() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let out = t.path().join("a.tar.zst");
    create(&data, &out);
    let o = run(&["list", p(&out), "--json"]);
    expect_code(&o, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let parts = split2(&fs::read(&out).unwrap());
    let recs = parts.records();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), recs.len());
    for (e, r) in entries.iter().zip(&recs) {
        assert_eq!(e["path"], r.path);
        assert_eq!(e["type"], if r.dir { "dir" } else { "file" });
        assert_eq!(e["size"], r.size);
        if !r.dir {
            assert_eq!(e["sha256"].as_str().unwrap(), rec_sha(r));
        }
    }
    for k in [
        "format",
        "version",
        "created_unix_ms",
        "tool",
        "source",
        "zstd_level",
    ] {
        assert_eq!(v[k], parts.head[k], "{k}");
    }
    for k in ["files", "dirs", "total_bytes", "wal"] {
        assert_eq!(v[k], parts.meta[k], "{k}");
    }
    let o = run(&["list", p(&out)]);
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), recs.len());
    assert!(lines[0].starts_with("file") && lines[0].ends_with("MANIFEST"));
    // The same listing from a pipe (streamed, checked at the end).
    let piped = Command::new(env!("CARGO_BIN_EXE_sydra-archive"))
        .args(["list", "-"])
        .stdin(fs::File::open(&out).unwrap())
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert_eq!(String::from_utf8(piped.stdout).unwrap(), stdout(&o));
}

#[test]
fn list_sha256_checks_out_with_sha256sum_after_gnu_tar() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    fs::write(data.join("wal/odd\\name.wal"), b"backslash").unwrap();
    let out = t.path().join("a.tar.zst");
    create(&data, &out);
    let o = run(&["list", "--sha256", p(&out)]);
    expect_code(&o, 0);
    let sums = t.path().join("SHA256SUMS");
    fs::write(&sums, &o.stdout).unwrap();
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.ends_with("  MANIFEST") && l.len() == 64 + 2 + 8)
    );
    let x = t.path().join("x");
    fs::create_dir(&x).unwrap();
    let tar = Command::new("tar")
        .args(["--zstd", "-xf", p(&out), "-C", p(&x)])
        .status()
        .unwrap();
    assert!(tar.success());
    let check = Command::new("sha256sum")
        .args(["-c", "--quiet", p(&sums)])
        .current_dir(&x)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // The sums come from the index alone (TAIL, TABLE, META and the
    // INDEX blocks are read, not the data): a corrupted index prints no
    // sums at all.
    let good = fs::read(&out).unwrap();
    let parts = split2(&good);
    let mut bytes = good.clone();
    bytes[parts.index[0].0 as usize + 40] ^= 1;
    fs::write(&out, &bytes).unwrap();
    let o = run(&["list", "--sha256", p(&out)]);
    expect_code(&o, 1);
    assert!(o.stdout.is_empty());
    // Damaged data is not read: the sums printed are the index's, and the
    // files a stock tool extracts are checked against them (and `verify`
    // refuses the archive).
    let mut bytes = good.clone();
    let (at, frame) = &parts.data[0];
    bytes[*at as usize + frame.len() / 2] ^= 1;
    fs::write(&out, &bytes).unwrap();
    let o = run(&["list", "--sha256", p(&out)]);
    expect_code(&o, 0);
    assert_eq!(o.stdout, fs::read(&sums).unwrap());
    expect_code(&run(&["verify", p(&out)]), 1);
}
