//! Object storage against a real S3 server on loopback: `s3s-fs` (from
//! crates.io; `.ci/run` installs it). Without it each of these tests
//! passes after writing a `skipped: ...` line that a plain `cargo test`
//! shows (see `support::skip`), unless `SYDRA_ARCHIVE_REQUIRE_S3=1` makes
//! its absence a failure.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::support::*;

const BUCKET: &str = "backups";
const KEY_ID: &str = "sydra-test-key";
const SECRET: &str = "sydra-test-secret";

/// A running s3s-fs serving one bucket from a temporary directory.
struct Server {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SYDRA_ARCHIVE_S3S_FS") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
}

impl Server {
    /// Starts a server, or returns `None` (with a note) when s3s-fs is not
    /// installed and not required.
    fn start() -> Option<Server> {
        let Some(exe) = s3s_fs() else {
            if std::env::var_os("SYDRA_ARCHIVE_REQUIRE_S3").is_some() {
                panic!("s3s-fs is required (SYDRA_ARCHIVE_REQUIRE_S3) but not installed");
            }
            skip(
                "s3s-fs not found (set SYDRA_ARCHIVE_S3S_FS, or cargo install s3s-fs --version 0.14.1 --features binary; SYDRA_ARCHIVE_REQUIRE_S3=1 fails instead)",
            );
            return None;
        };
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(exe)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", KEY_ID, "--secret-key", SECRET])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("S3_DEBUG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stdout(if std::env::var_os("S3_DEBUG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("start s3s-fs");
        let server = Server { child, port, root };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The binary, with the standard AWS environment pointing here.
    fn cmd(&self) -> Command {
        let mut c = bin();
        c.env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", self.endpoint())
            .env("AWS_ALLOW_HTTP", "true")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run sydra-archive")
    }

    /// Stores `bytes` at `key` with a plain PUT (not through the tool).
    fn put(&self, key: &str, bytes: &[u8]) {
        use object_store::{ObjectStoreExt, aws::AmazonS3Builder, path::Path as ObjPath};
        let store = AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id(KEY_ID)
            .with_secret_access_key(SECRET)
            .build()
            .unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(store.put(&ObjPath::from(key), bytes.to_vec().into()))
            .unwrap();
    }

    /// Where s3s-fs keeps the bytes of `key`.
    fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// Files of the store other than the bucket's objects (metadata and
    /// unfinished multipart uploads), for leak checks.
    fn all_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(
                        e.path()
                            .strip_prefix(self.root.path())
                            .unwrap()
                            .display()
                            .to_string(),
                    );
                }
            }
        }
        out.sort();
        out
    }

    /// The server's files once it has finished with requests still in
    /// flight: s3s-fs writes each part to a `.tmp.*` file first, and a
    /// client that died mid-part leaves one until the server notices the
    /// dropped connection. Waits up to 20 s for those to go; any still
    /// there after that are kept in the list, so a leak shows up.
    fn settled_files(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let files = self.all_files();
            let in_flight = files.iter().any(|f| f.starts_with(".tmp."));
            if !in_flight || Instant::now() > deadline {
                return files;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Takes one from `left` if any is left.
fn take_one(left: &AtomicUsize) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
        .is_ok()
}

/// A TCP relay in front of the server on `server_port`; returns its port.
/// On each connection, every chunk towards the server is first shown to
/// `up` and every chunk towards the client to `down`, with the bytes the
/// connection carried that way so far (this chunk included) and the
/// chunk's size; `false` cuts the connection.
fn relay<U, D>(server_port: u16, up: U, down: D) -> u16
where
    U: Fn(usize, usize) -> bool + Send + Sync + 'static,
    D: Fn(usize, usize) -> bool + Send + Sync + 'static,
{
    fn pump(mut from: TcpStream, mut to: TcpStream, each: &dyn Fn(usize, usize) -> bool) {
        use std::io::{Read, Write};
        let mut buf = vec![0u8; 16 * 1024];
        let mut carried = 0usize;
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            carried += n;
            if !each(carried, n) || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = from.shutdown(std::net::Shutdown::Both);
        let _ = to.shutdown(std::net::Shutdown::Both);
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (up, down) = (Arc::new(up), Arc::new(down));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else {
                continue;
            };
            let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (up, down) = (up.clone(), down.clone());
            std::thread::spawn(move || pump(client, server, &*up));
            std::thread::spawn(move || pump(s2, c2, &*down));
        }
    });
    port
}

/// A TCP proxy in front of the server that cuts connections once they
/// have carried 1 MiB towards the server (that is, during a part upload),
/// `budget` times; small requests (start, complete, abort) pass.
struct FaultyProxy {
    port: u16,
    cut: Arc<AtomicUsize>,
}

impl FaultyProxy {
    fn start(server_port: u16, budget: usize) -> FaultyProxy {
        let cut = Arc::new(AtomicUsize::new(0));
        let left = AtomicUsize::new(budget);
        let counter = cut.clone();
        let up = move |carried: usize, _: usize| {
            if carried > 1 << 20 && take_one(&left) {
                counter.fetch_add(1, Ordering::SeqCst);
                return false;
            }
            true
        };
        let port = relay(server_port, up, |_, _| true);
        FaultyProxy { port, cut }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn url(key: &str) -> String {
    format!("s3://{BUCKET}/{key}")
}

/// A data dir whose archive is about `mib` MiB: the tiny layout plus
/// incompressible segment files over the 16 MiB read-buffer limit, dated
/// an hour back so nothing treats them as being written.
fn incompressible_data(dir: &Path, mib: usize) -> PathBuf {
    let d = tiny_data(dir);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut left = mib << 20;
    let mut n = 0;
    let old = SystemTime::now() - Duration::from_secs(3600);
    while left > 0 {
        let size = left.min(30 << 20);
        let mut buf = vec![0u8; size];
        for chunk in buf.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        let path = d.join(format!("segments/3600/{}-3600-3610-{n}.seg", 100 + n));
        std::fs::write(&path, &buf).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        left -= size;
        n += 1;
    }
    d
}

/// Waits for `child` and returns its exit code and peak RSS in KiB, read
/// from its own `VmHWM` while it runs. (`wait4`'s `ru_maxrss` would count
/// the test process too: a spawned child inherits its parent's peak at exec.)
fn wait_rss(mut child: Child) -> (i32, u64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().expect("exited normally"), peak);
        }
        if let Ok(s) = std::fs::read_to_string(&status_file)
            && let Some(kib) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

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
    assert_eq!(tree_digest(&x), tree_digest(&data));

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
}

#[test]
fn multipart_upload_of_300_mib_stays_within_128_mib() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = incompressible_data(t.path(), 300);
    let key = "big.tar.zst";
    let mut child = s3
        .cmd()
        .args(["create", p(&data), "-o", &url(key), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read_all = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            r.read_to_string(&mut s).unwrap();
            s
        })
    };
    let outs = read_all(Box::new(child.stdout.take().unwrap()));
    let errs = read_all(Box::new(child.stderr.take().unwrap()));
    let (code, rss_kib) = wait_rss(child);
    let (out, err) = (outs.join().unwrap(), errs.join().unwrap());
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let bytes = j["bytes"].as_u64().unwrap();
    assert!(bytes > 300 << 20, "{bytes}");
    let parts = j["object"]["parts"].as_u64().unwrap();
    let part_size = j["object"]["part_size"].as_u64().unwrap();
    assert_eq!(parts, bytes.div_ceil(part_size), "{j}");
    assert!(parts >= 30, "{parts}");
    eprintln!("300 MiB upload: {parts} parts of {part_size} bytes, peak RSS {rss_kib} KiB");
    assert!(
        rss_kib > 4 * 1024,
        "peak RSS was not measured: {rss_kib} KiB"
    );
    assert!(rss_kib < 128 * 1024, "peak RSS {rss_kib} KiB");
    // What arrived is whole.
    let o = s3.run(&["verify", &url(key)]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains(j["sha256"].as_str().unwrap()));
}

/// Starts `create` of a 300 MiB data dir to `key` and waits until parts
/// are being uploaded; returns the child and what it says on stderr besides
/// progress events.
fn start_big_upload(
    s3: &Server,
    data: &Path,
    key: &str,
) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = s3
        .cmd()
        .args(["create", p(data), "-o", &url(key), "--progress", "json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Progress events tell when a good share of the data has gone in.
    let err = child.stderr.take().unwrap();
    let mut lines = BufReader::new(err).lines();
    loop {
        let line = lines
            .next()
            .expect("create ended before uploading")
            .unwrap();
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if v["done_bytes"].as_u64().unwrap_or(0) > 100 << 20 {
            break;
        }
    }
    // Keep draining stderr so the child never blocks on it; hand back the rest.
    let rest = std::thread::spawn(move || {
        lines
            .map_while(|l| l.ok())
            .filter(|l| !l.starts_with('{'))
            .collect::<Vec<_>>()
            .join("\n")
    });
    (child, rest)
}

#[test]
fn killed_or_interrupted_uploads_leave_no_object() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = incompressible_data(t.path(), 300);

    // SIGKILL: the upload is never completed, so nothing is at the key.
    let (mut child, _) = start_big_upload(&s3, &data, "killed.tar.zst");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!s3.object_file("killed.tar.zst").exists());
    let o = s3.run(&["verify", &url("killed.tar.zst")]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("no such object"), "{}", stderr(&o));

    // SIGTERM or SIGINT: the upload is aborted, its parts are gone, exit 2.
    let before = s3.settled_files();
    for (sig, key) in [
        (libc::SIGTERM, "termed.tar.zst"),
        (libc::SIGINT, "inted.tar.zst"),
    ] {
        let (mut child, said) = start_big_upload(&s3, &data, key);
        let pid = child.id() as libc::pid_t;
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(2));
        let said = said.join().unwrap();
        assert!(
            said.contains(&format!("aborted the unfinished upload to {}", url(key))),
            "{said}"
        );
        assert!(!s3.object_file(key).exists());
        assert_eq!(
            s3.settled_files(),
            before,
            "the aborted upload left parts behind"
        );
    }
    let o = s3.run(&["ls", &url("")]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), "", "no archive should be listed");
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
fn ls_and_prune_touch_only_archives() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let names = [
        "db/2026-11-20.tar.zst",
        "db/2026-11-21.tar.zst",
        "db/2026-11-22.tar.zst",
    ];
    for n in names {
        expect_code(&s3.run(&["create", p(&data), "-o", &url(n), "-q"]), 0);
        // Distinct upload times (the store keeps whole seconds).
        std::thread::sleep(Duration::from_millis(1100));
    }
    // Objects that are not archives: a .tar.zst that is not ours, a
    // different name, and an archive in a deeper "directory".
    s3.put(
        "db/foreign.tar.zst",
        &[b"not an archive at all. ".as_slice(); 8].concat(),
    );
    s3.put("db/short.tar.zst", b"short");
    s3.put("db/notes.txt", b"keep me");
    expect_code(
        &s3.run(&["create", p(&data), "-o", &url("db/deeper/x.tar.zst"), "-q"]),
        0,
    );

    let o = s3.run(&["ls", "--json", &url("db/")]);
    expect_code(&o, 0);
    let j = json(&o);
    let listed: Vec<&str> = j["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "db/2026-11-22.tar.zst",
            "db/2026-11-21.tar.zst",
            "db/2026-11-20.tar.zst"
        ]
    );
    assert_eq!(j["others"][0]["url"], url("db/foreign.tar.zst"));
    assert_eq!(j["others"][1]["url"], url("db/short.tar.zst"));
    assert!(j["archives"][0]["sha256"].as_str().unwrap().len() == 64);
    let o = s3.run(&["ls", &url("db")]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o).lines().count(), 3);
    assert!(
        stderr(&o).contains("foreign.tar.zst is not a sydra-archive"),
        "{}",
        stderr(&o)
    );

    // A dry run deletes nothing.
    let o = s3.run(&["prune", &url("db/"), "--keep-last", "1"]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("would delete"), "{}", stdout(&o));
    assert_eq!(
        stdout(&o).lines().filter(|l| l.starts_with("keep")).count(),
        1
    );
    assert!(stderr(&o).contains("dry run"), "{}", stderr(&o));
    for n in names {
        assert!(s3.object_file(n).exists(), "{n}");
    }
    // --keep-last 0, an empty policy, is refused.
    let o = s3.run(&["prune", &url("db/"), "--keep-last", "0", "--yes"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("policy is empty"), "{}", stderr(&o));

    let o = s3.run(&["prune", &url("db/"), "--keep-last", "1", "--yes", "--json"]);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["dry_run"], false);
    assert_eq!(j["deleted"].as_array().unwrap().len(), 2);
    assert_eq!(j["kept"][0]["reasons"], serde_json::json!(["last"]));
    assert!(s3.object_file(names[2]).exists());
    assert!(!s3.object_file(names[0]).exists());
    assert!(!s3.object_file(names[1]).exists());
    for other in [
        "db/foreign.tar.zst",
        "db/short.tar.zst",
        "db/notes.txt",
        "db/deeper/x.tar.zst",
    ] {
        assert!(s3.object_file(other).exists(), "{other} was touched");
    }
}

#[test]
fn failed_parts_are_retried_and_a_failed_upload_is_aborted() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = incompressible_data(t.path(), 40);

    // Two part uploads cut mid-way: retried, and the object is whole.
    let proxy = FaultyProxy::start(s3.port, 2);
    let o = s3
        .cmd()
        .args(["create", p(&data), "-o", &url("retried.tar.zst"), "--json"])
        .args(["--endpoint", &proxy.endpoint()])
        .output()
        .unwrap();
    expect_code(&o, 0);
    assert_eq!(proxy.cut.load(Ordering::SeqCst), 2);
    let sha = json(&o)["sha256"].as_str().unwrap().to_string();
    let o = s3.run(&["verify", &url("retried.tar.zst")]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains(&sha));

    // Every part upload cut: create gives up (exit 2, one line), aborts
    // the upload, and leaves neither an object nor parts.
    let before = s3.settled_files();
    let proxy = FaultyProxy::start(s3.port, usize::MAX);
    let started = Instant::now();
    let o = s3
        .cmd()
        .args(["create", p(&data), "-o", &url("failed.tar.zst")])
        .args(["--endpoint", &proxy.endpoint()])
        .output()
        .unwrap();
    expect_code(&o, 2);
    assert!(started.elapsed() < Duration::from_secs(90));
    let err = stderr(&o);
    assert!(
        err.contains("cannot upload a part to s3://backups/failed.tar.zst"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(proxy.cut.load(Ordering::SeqCst) > 5);
    assert!(!s3.object_file("failed.tar.zst").exists());
    assert_eq!(
        s3.settled_files(),
        before,
        "the failed upload left parts behind"
    );
}

#[test]
fn extract_from_an_object_reads_only_what_it_needs() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let key = "sydradb/extract.tar.zst";
    let o = s3.run(&[
        "create",
        p(&data),
        "-o",
        &url(key),
        "-q",
        "--frame-kib",
        "4",
    ]);
    expect_code(&o, 0);
    let dest = t.path().join("x");
    let o = s3.run(&[
        "extract",
        &url(key),
        "tags.json",
        "wal/*.wal",
        "-C",
        p(&dest),
        "--json",
    ]);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["streamed"], false);
    // The probe, TAIL, TABLE+META, the INDEX block and one ranged read per
    // run of frames that holds a wanted file.
    assert!(j["reads"].as_u64().unwrap() <= 10, "{j}");
    // Every extracted file equals the source: the WAL files by the glob,
    // the segments by their directory.
    assert_eq!(
        std::fs::read(dest.join("tags.json")).unwrap(),
        std::fs::read(data.join("tags.json")).unwrap()
    );
    let o = s3.run(&["extract", &url(key), "segments", "-C", p(&dest)]);
    expect_code(&o, 0);
    for d in ["wal", "segments"] {
        assert_eq!(
            tree_digest(&dest.join(d)),
            tree_digest(&data.join(d)),
            "{d}"
        );
    }

    // A tampered INDEX block: refused before any data frame is fetched,
    // nothing written.
    let file = s3.object_file(key);
    let good = std::fs::read(&file).unwrap();
    let parts = split2(&good);
    let mut bad = good.clone();
    bad[parts.index[0].0 as usize + 30] ^= 1;
    std::fs::write(&file, &bad).unwrap();
    let dest2 = t.path().join("tampered");
    let o = s3.run(&["extract", &url(key), "tags.json", "-C", p(&dest2)]);
    expect_code(&o, 1);
    assert!(
        stderr(&o).contains("does not match its row"),
        "{}",
        stderr(&o)
    );
    assert!(!dest2.join("tags.json").exists());
    std::fs::write(&file, &good).unwrap();
    // A pattern that matches nothing: exit 2, nothing written.
    let o = s3.run(&["extract", &url(key), "nope", "-C", p(&t.path().join("y"))]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("\"nope\" matches nothing"),
        "{}",
        stderr(&o)
    );
}

/// A TCP proxy in front of the server that holds every response byte
/// after the first `after` (towards the client) until it is opened: a
/// command reading through it can be paused mid-read, deterministically.
/// It also cuts `cuts` responses after their first 256 KiB.
struct GateProxy {
    port: u16,
    gate: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    holding: Arc<std::sync::atomic::AtomicBool>,
    cut: Arc<AtomicUsize>,
}

impl GateProxy {
    fn start(server_port: u16, after: usize) -> GateProxy {
        GateProxy::start_cutting(server_port, after, 0)
    }

    fn start_cutting(server_port: u16, after: usize, cuts: usize) -> GateProxy {
        let cut = Arc::new(AtomicUsize::new(0));
        let left = AtomicUsize::new(cuts);
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let holding = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let carried = AtomicUsize::new(0);
        let (g, h, counter) = (gate.clone(), holding.clone(), cut.clone());
        let down = move |here: usize, n: usize| {
            if here > 256 << 10 && take_one(&left) {
                counter.fetch_add(1, Ordering::SeqCst);
                return false;
            }
            if carried.fetch_add(n, Ordering::SeqCst) + n > after {
                let (lock, cv) = &*g;
                let mut open = lock.lock().unwrap();
                while !*open {
                    h.store(true, Ordering::SeqCst);
                    open = cv.wait(open).unwrap();
                }
            }
            true
        };
        let port = relay(server_port, |_, _| true, down);
        GateProxy {
            port,
            gate,
            holding,
            cut,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until a response is held.
    fn wait_holding(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.holding.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "nothing reached the gate");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn open(&self) {
        let (lock, cv) = &*self.gate;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// An object overwritten while `verify` and `restore` fetch it with
/// several ranged GETs in flight: the command fails saying the object
/// changed (nothing restored, nothing left behind); no two versions are
/// mixed. A proxy holds the responses once 4 MiB of the 64 MiB came
/// through; the object is replaced meanwhile by a much smaller archive:
/// no timing is assumed. (S3 refuses the GETs after the overwrite by the
/// ETag they are pinned to, 412; s3s-fs ignores If-Match on GET, so here
/// the ranges past the new end are refused, 416: both read as a change.)
#[test]
fn an_object_overwritten_mid_read_fails_cleanly() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = incompressible_data(t.path(), 64);
    let other = small_data(t.path());
    let key = "moving.tar.zst";
    let restore_to = t.path().join("restored");
    let server_port: u16 = s3.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    for cmd in ["verify", "restore"] {
        expect_code(
            &s3.run(&["create", p(&data), "-o", &url(key), "-q", "--force"]),
            0,
        );
        let gate = GateProxy::start(server_port, 4 << 20);
        let u = url(key);
        let mut args = vec![cmd, &u as &str, "--concurrency", "4", "--progress", "none"];
        if cmd == "restore" {
            args.push(p(&restore_to));
        }
        let child = s3
            .cmd()
            .env("AWS_ENDPOINT_URL", gate.endpoint())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        gate.wait_holding();
        expect_code(
            &s3.run(&["create", p(&other), "-o", &url(key), "-q", "--force"]),
            0,
        );
        gate.open();
        let o = child.wait_with_output().unwrap();
        expect_code(&o, 2);
        assert!(
            stderr(&o).contains("changed while it was being read"),
            "{cmd}: {}",
            stderr(&o)
        );
        assert!(!restore_to.exists());
        assert_eq!(leftovers(t.path()), Vec::<String>::new());
    }
}

/// Responses cut mid-body: each piece of a download is retried on its
/// own, and the archive still verifies and restores whole; the restore
/// from an object stays within 64 MiB with 8 GETs in flight.
#[test]
fn cut_downloads_are_retried_piece_by_piece() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = incompressible_data(t.path(), 24);
    let key = "cut.tar.zst";
    expect_code(&s3.run(&["create", p(&data), "-o", &url(key), "-q"]), 0);
    let server_port: u16 = s3.endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let gate = GateProxy::start_cutting(server_port, usize::MAX, 3);
    let o = s3
        .cmd()
        .env("AWS_ENDPOINT_URL", gate.endpoint())
        .args(["verify", &url(key), "--concurrency", "4"])
        .output()
        .unwrap();
    expect_code(&o, 0);
    assert_eq!(gate.cut.load(Ordering::SeqCst), 3);
    let dest = t.path().join("restored");
    let child = s3
        .cmd()
        .args(["restore", &url(key), p(&dest), "-q", "--concurrency", "8"])
        .spawn()
        .unwrap();
    let (code, peak_kib) = wait_rss(child);
    assert_eq!(code, 0);
    assert!(peak_kib <= 64 * 1024, "restore peaked at {peak_kib} KiB");
    assert_eq!(tree_digest(&dest), tree_digest(&data));
}

#[test]
fn incremental_chains_in_object_storage() {
    let Some(s3) = Server::start() else { return };
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let mut server = sydra_archive::sydradb::Server::new(
        &data,
        &sydra_archive::sydradb::FixtureSpec {
            series: 3,
            flush_s: 600,
            wal_rotate_bytes: 20_000,
            ..Default::default()
        },
        1_748_736_000 + 2 * 3600,
    );
    // Two chains under one prefix, each named by its time; the second
    // full starts at --max-chain 3.
    let mut kinds = Vec::new();
    for k in 0..5u64 {
        server.run(900).unwrap();
        let o = s3
            .cmd()
            .args(["create", p(&data), "-o", &url("db/"), "--incremental"])
            .args(["--max-chain", "3", "--json"])
            .env("SOURCE_DATE_EPOCH", (1_793_577_600 + k * 3600).to_string())
            .output()
            .unwrap();
        expect_code(&o, 0);
        kinds.push(json(&o)["kind"].as_str().unwrap().to_string());
        // Distinct upload times (the store keeps whole seconds).
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(
        kinds,
        ["full", "incremental", "incremental", "full", "incremental"]
    );
    let ls = json(&s3.run(&["ls", "--json", &url("db/")]));
    let keys: Vec<String> = ls["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 5);
    assert_eq!(
        ls["archives"][0]["base"]["location"].as_str().unwrap(),
        keys[1].rsplit('/').next().unwrap(),
        "{ls}"
    );
    let newest = url(&keys[0]);
    // Restore, list and extract read the chain from the store; the tree
    // is the data dir's.
    let r = t.path().join("r");
    expect_code(&s3.run(&["restore", &newest, p(&r), "-q"]), 0);
    let f = t.path().join("f.tar.zst");
    create(&data, &f);
    let rf = t.path().join("rf");
    expect_code(&run(&["restore", p(&f), p(&rf), "-q"]), 0);
    assert_eq!(tree_digest(&r), tree_digest(&rf));
    expect_code(&s3.run(&["verify", "--chain", &newest]), 0);
    let x = t.path().join("x");
    let o = s3.run(&["extract", &newest, "wal", "-C", p(&x), "--json"]);
    expect_code(&o, 0);
    for e in std::fs::read_dir(data.join("wal")).unwrap() {
        let e = e.unwrap();
        assert_eq!(
            std::fs::read(e.path()).unwrap(),
            std::fs::read(x.join("wal").join(e.file_name())).unwrap()
        );
    }

    // Keeping the newest keeps its chain; with --yes the older chain goes.
    let o = s3.run(&["prune", &url("db/"), "--keep-last", "1", "--yes", "--json"]);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["kept"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(j["deleted"].as_array().unwrap().len(), 3, "{j}");
    assert!(format!("{j}").contains("base of"), "{j}");
    assert!(s3.object_file(&keys[1]).exists());
    let r2 = t.path().join("r2");
    expect_code(&s3.run(&["restore", &newest, p(&r2), "-q"]), 0);
    assert_eq!(tree_digest(&r2), tree_digest(&rf));

    // A base that is gone is named, and nothing is restored.
    std::fs::remove_file(s3.object_file(&keys[1])).unwrap();
    let r3 = t.path().join("r3");
    let o = s3.run(&["restore", &newest, p(&r3)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("is missing; give it with --base"),
        "{}",
        stderr(&o)
    );
    assert!(!r3.exists());
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
