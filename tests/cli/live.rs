//! Backing up a running server: a simulated SydraDB writer process runs
//! while `create` runs again and again; every archive must restore to a
//! data dir the server would start on.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sydra_archive::sydradb::{check_wal, decode_segment, encode_segment, wal_record};

use crate::support::*;

/// The simulated server. It does what the real one does, with the windows
/// between its steps made wide: WAL records appended with three `write()`
/// calls, segments created and written in two steps, MANIFEST rewritten in
/// place, tags.json truncated then rewritten, and WAL rotation by rename.
/// Runs until killed; started by [`start_server`] as a separate process.
#[test]
#[ignore = "the simulated SydraDB server, started as a child process by the live tests"]
fn simulated_server() {
    let Some(dir) = std::env::var_os("SYDRA_SIM_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let ids: Vec<u64> = (0..4)
        .map(|i| 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 11))
        .collect();
    let mut ts: i64 = 1_900_000_000;
    let mut wall_ms: u64 = 1_795_400_000_000;
    let mut pending: Vec<Vec<(i64, f64)>> = vec![Vec::new(); ids.len()];
    let open_wal = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("wal/current.wal"))
            .unwrap()
    };
    let mut wal = open_wal();
    let nap = |us| std::thread::sleep(Duration::from_micros(us));
    let mut n: u64 = 0;
    loop {
        n += 1;
        let i = (n as usize) % ids.len();
        if i == 0 {
            ts += 10;
        }
        let v = (n % 97) as f64 * 0.25;
        let rec = wal_record(ids[i], ts, v);
        wal.write_all(&rec[..4]).unwrap();
        nap(30);
        wal.write_all(&rec[4..29]).unwrap();
        nap(30);
        wal.write_all(&rec[29..]).unwrap();
        pending[i].push((ts, v));

        if n.is_multiple_of(7) {
            // tags.json: truncate, then write.
            let mut f = File::create(dir.join("tags.json")).unwrap();
            nap(200);
            f.write_all(
                format!(
                    "{{\"host=sim\":[{}]}}",
                    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
                )
                .as_bytes(),
            )
            .unwrap();
        }
        if n.is_multiple_of(40) {
            // Flush: one segment per series, header first, then the body.
            let hour = ts.div_euclid(3600) * 3600;
            let hdir = dir.join(format!("segments/{hour}"));
            fs::create_dir_all(&hdir).unwrap();
            let mut last = String::new();
            for (k, pts) in pending.iter_mut().enumerate() {
                if pts.is_empty() {
                    continue;
                }
                wall_ms += 2;
                let name = format!(
                    "{:x}-{}-{}-{wall_ms}.seg",
                    ids[k],
                    pts[0].0,
                    pts[pts.len() - 1].0
                );
                let seg = encode_segment(ids[k], hour, pts);
                let mut f = File::create(hdir.join(&name)).unwrap();
                f.write_all(&seg[..44]).unwrap();
                nap(300);
                f.write_all(&seg[44..]).unwrap();
                last = format!(
                    "{{\"series_id\":{},\"hour_bucket\":{hour},\"start_ts\":{},\"end_ts\":{},\"count\":{},\"path\":\"segments/{hour}/{name}\"}}\n",
                    ids[k],
                    pts[0].0,
                    pts[pts.len() - 1].0,
                    pts.len()
                );
                pts.clear();
            }
            // MANIFEST rewritten in place (truncate, then write).
            let mut m = OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(dir.join("MANIFEST"))
                .unwrap();
            nap(200);
            m.write_all(last.as_bytes()).unwrap();
            // Rotation once current.wal is big enough.
            if wal.metadata().unwrap().len() >= 16 * 1024 {
                drop(wal);
                wall_ms += 1;
                fs::rename(
                    dir.join("wal/current.wal"),
                    dir.join(format!("wal/{wall_ms}.wal")),
                )
                .unwrap();
                wal = open_wal();
            }
        }
    }
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_server(dir: &Path) -> Server {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "live::simulated_server",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SYDRA_SIM_DIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Server(child)
}

/// Bytes in every WAL file of `dir` (rotation renames, never removes).
fn wal_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir.join("wal"))
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Waits until the WAL files of `dir` hold `bytes` bytes: the server is
/// writing. The deadline only turns a dead server into a failure.
fn wait_for_wal(dir: &Path, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while wal_bytes(dir) < bytes {
        assert!(Instant::now() < deadline, "the server is not writing");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What SydraDB checks at startup, done directly on a restored data dir.
fn assert_server_would_start(dir: &Path) {
    let tags = fs::read(dir.join("tags.json")).unwrap();
    assert!(!tags.is_empty(), "empty tags.json");
    let v: serde_json::Value = serde_json::from_slice(&tags).unwrap();
    assert!(v.is_object());
    let manifest = fs::read_to_string(dir.join("MANIFEST")).unwrap();
    for line in manifest.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    assert!(manifest.is_empty() || manifest.ends_with('\n'));
    for e in fs::read_dir(dir.join("wal")).unwrap() {
        let p = e.unwrap().path();
        check_wal(&fs::read(&p).unwrap())
            .unwrap_or_else(|(off, why)| panic!("{}: {why} at {off}", p.display()));
    }
    for h in fs::read_dir(dir.join("segments")).unwrap() {
        for s in fs::read_dir(h.unwrap().path()).unwrap() {
            let p = s.unwrap().path();
            decode_segment(&fs::read(&p).unwrap())
                .unwrap_or_else(|(off, why)| panic!("{}: {why} at {off}", p.display()));
        }
    }
}

fn total_records(v: &serde_json::Value) -> u64 {
    v["wal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["records"].as_u64().unwrap())
        .sum()
}

#[test]
fn backups_of_a_running_server_restore_to_a_startable_data_dir() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let server = start_server(&data);
    let rec_len = wal_record(1, 1, 0.0).len() as u64;
    let start_bytes = wal_bytes(&data);
    wait_for_wal(&data, start_bytes + rec_len);
    let mut last_records = 0;
    let mut first_records = None;
    let mut first_bytes = 0;
    for round in 0..8 {
        if round == 7 {
            // The server has written more than 100 records since the
            // first archive (a wait on the data, not on the clock).
            wait_for_wal(&data, first_bytes + 102 * rec_len);
        }
        let out = t.path().join(format!("live-{round}.tar.zst"));
        let o = run(&["create", p(&data), "-o", p(&out), "--json"]);
        expect_code(&o, 0);
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let records = total_records(&v);
        assert!(
            records >= last_records,
            "WAL position went back: {records} < {last_records}"
        );
        last_records = records;
        if first_records.is_none() {
            first_records = Some(records);
            first_bytes = wal_bytes(&data);
        }

        let o = run(&["verify", "--deep", p(&out)]);
        assert_eq!(code(&o), 0, "round {round}: {}", stderr(&o));
        let target = t.path().join(format!("restored-{round}"));
        expect_code(&run(&["restore", p(&out), p(&target), "-q"]), 0);
        assert_server_would_start(&target);
        fs::remove_dir_all(&target).unwrap();
    }
    drop(server);
    assert!(
        last_records > first_records.unwrap() + 100,
        "the server was not writing"
    );
    let wal_files = fs::read_dir(data.join("wal")).unwrap().count();
    assert!(
        wal_files > 3,
        "the server never rotated its WAL ({wal_files} files)"
    );
    // The WAL position in HEAD orders archives of one database.
    let o = run(&["list", "--json", p(&t.path().join("live-7.tar.zst"))]);
    let head: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(total_records(&head), last_records);
}

#[test]
fn verify_deep_flags_what_the_server_would_refuse() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let good = t.path().join("good.tar.zst");
    create(&data, &good);
    let o = run(&["verify", "--deep", p(&good)]);
    expect_code(&o, 0);
    assert!(
        stdout(&o).contains("fully verified, SydraDB files decoded"),
        "{}",
        stdout(&o)
    );

    // A torn WAL tail, an empty tags.json and a half-written segment, in
    // an archive written by a plain tar-like writer (no live checks).
    let mut wal = fs::read(data.join("wal/current.wal")).unwrap();
    wal.extend(&wal_record(1, 5, 5.0)[..20]);
    let seg = fs::read(data.join("segments/3600/1-3600-3610-1.seg")).unwrap();
    let m = vec![
        file("MANIFEST", b"{}\n"),
        dir("segments"),
        dir("segments/3600"),
        file("segments/3600/1-3600-3610-1.seg", &seg[..50]),
        file("tags.json", b""),
        dir("wal"),
        file("wal/current.wal", &wal),
    ];
    let bad = t.path().join("bad.tar.zst");
    fs::write(&bad, craft_members(&m)).unwrap();
    expect_code(&run(&["verify", p(&bad)]), 0);
    let o = run(&["verify", "--deep", "--json", p(&bad)]);
    expect_code(&o, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ok"], false);
    let paths: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "segments/3600/1-3600-3610-1.seg",
            "tags.json",
            "wal/current.wal"
        ]
    );
    assert_eq!(v["problems"][2]["offset"], 99);
    assert!(
        stderr(&o).contains("wal/current.wal: offset 99"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn torn_wal_tail_is_cut_and_recorded_in_head() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let mut f = OpenOptions::new()
        .append(true)
        .open(data.join("wal/current.wal"))
        .unwrap();
    f.write_all(&wal_record(1, 99, 1.0)[..10]).unwrap();
    drop(f);
    let out = t.path().join("a.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&out), "--json"]);
    expect_code(&o, 0);
    assert!(stderr(&o).contains("left out 10 bytes"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["wal"][0]["size_seen"], 109);
    assert_eq!(v["wal"][0]["archived"], 99);
    assert_eq!(v["wal"][0]["records"], 3);
    let head: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["list", "--json", p(&out)]))).unwrap();
    assert_eq!(head["wal"], v["wal"]);
    assert!(
        head["warnings"][0]
            .as_str()
            .unwrap()
            .contains("left out 10 bytes")
    );
    expect_code(&run(&["verify", "--deep", p(&out)]), 0);
}
