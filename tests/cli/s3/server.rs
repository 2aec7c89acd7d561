//! A real S3 server for the tests: s3s-fs on loopback serving one
//! bucket from a temporary directory (or a `skipped:` note when it is not
//! installed), the binary run against it, and the bucket's files on disk.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

pub(super) const BUCKET: &str = "backups";
pub(crate) const KEY_ID: &str = "sydra-test-key";
pub(crate) const SECRET: &str = "sydra-test-secret";

/// A running s3s-fs serving one bucket from a temporary directory.
pub(crate) struct Server {
    pub(super) child: Child,
    pub(super) port: u16,
    pub(super) root: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn s3s_fs() -> Option<PathBuf> {
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
    pub(super) fn start() -> Option<Server> {
        let Some(exe) = s3s_fs() else {
            if std::env::var_os("SYDRA_ARCHIVE_REQUIRE_S3").is_some() {
                panic!("s3s-fs is required (SYDRA_ARCHIVE_REQUIRE_S3) but not installed");
            }
            skip(
                "s3s-fs not found (set SYDRA_ARCHIVE_S3S_FS, or cargo install s3s-fs --version 0.14.1 --features binary; SYDRA_ARCHIVE_REQUIRE_S3=1 fails instead)",
            );
            return None;
        };
        Some(Server::launch(&exe))
    }

    /// Starts s3s-fs at `exe` on a free loopback port, serving [`BUCKET`]
    /// from a temporary directory, and waits until it listens.
    pub(crate) fn launch(exe: &std::path::Path) -> Server {
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
        server
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The binary, with the standard AWS environment pointing here.
    pub(super) fn cmd(&self) -> Command {
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

    pub(super) fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run sydra-archive")
    }

    /// Stores `bytes` at `key` with a plain PUT (not through the tool).
    pub(super) fn put(&self, key: &str, bytes: &[u8]) {
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
            .block_on(store.put(&ObjPath::parse(key).unwrap(), bytes.to_vec().into()))
            .unwrap();
    }

    /// Where s3s-fs keeps the bytes of `key`.
    pub(super) fn object_file(&self, key: &str) -> PathBuf {
        self.root.path().join(BUCKET).join(key)
    }

    /// Files of the store other than the bucket's objects (metadata and
    /// unfinished multipart uploads), for leak checks.
    pub(super) fn all_files(&self) -> Vec<String> {
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
    pub(super) fn settled_files(&self) -> Vec<String> {
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

pub(super) fn url(key: &str) -> String {
    format!("s3://{BUCKET}/{key}")
}
