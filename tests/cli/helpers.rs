//! Shared helpers: fixtures from the project's generator, running the
//! binary, and an independent archive builder for crafted (hostile) input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};
use sydra_archive::fixture::{FixtureSpec, generate};

pub const SKIP_MAGIC: u32 = 0x184D_2A53;

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sydra-archive"))
}

/// Runs the binary with `args`, stdin closed.
pub fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sydra-archive")
}

/// Runs the binary with `input` on stdin.
pub fn run_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data); // the reader may stop early
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts the exit code, showing stderr when it differs.
#[track_caller]
pub fn expect_code(o: &Output, want: i32) {
    assert_eq!(
        code(o),
        want,
        "stderr: {}\nstdout: {}",
        stderr(o),
        stdout(o)
    );
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A small generated data dir: 3 series, 2 hours, 10-minute flushes.
pub fn small_data(dir: &Path) -> PathBuf {
    let d = dir.join("data");
    generate(
        &d,
        &FixtureSpec {
            series: 3,
            duration_s: 2 * 3600,
            flush_s: 600,
            wal_rotate_bytes: 20_000,
            ..FixtureSpec::default()
        },
    )
    .unwrap();
    d
}

/// A tiny data dir: a handful of small files (archives of a few KB).
pub fn tiny_data(dir: &Path) -> PathBuf {
    let d = dir.join("tiny");
    std::fs::create_dir_all(d.join("wal")).unwrap();
    std::fs::create_dir_all(d.join("segments/3600")).unwrap();
    std::fs::write(
        d.join("MANIFEST"),
        b"{\"path\":\"segments/3600/1-3600-3600-1.seg\"}\n",
    )
    .unwrap();
    std::fs::write(d.join("tags.json"), b"{\"a=b\":[1]}").unwrap();
    let mut wal = Vec::new();
    for i in 0..3 {
        wal.extend(sydra_archive::sydradb::wal_record(
            1,
            3600 + i * 10,
            i as f64,
        ));
    }
    std::fs::write(d.join("wal/current.wal"), &wal).unwrap();
    let seg = sydra_archive::sydradb::encode_segment(1, 3600, &[(3600, 0.0), (3610, 1.0)]);
    std::fs::write(d.join("segments/3600/1-3600-3610-1.seg"), seg).unwrap();
    d
}

/// Creates an archive of `data` at `out` through the binary.
pub fn create(data: &Path, out: &Path) {
    let o = run(&["create", p(data), "-o", p(out), "-q"]);
    expect_code(&o, 0);
}

pub fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn skippable(tag: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut v = SKIP_MAGIC.to_le_bytes().to_vec();
    v.extend(((body.len() + 8) as u32).to_le_bytes());
    v.extend(tag);
    v.extend(body);
    v
}

/// Appends a correct FOOT to `body`.
pub fn seal(mut body: Vec<u8>) -> Vec<u8> {
    let digest = sha256(&body);
    let len = body.len() as u64;
    let mut foot = SKIP_MAGIC.to_le_bytes().to_vec();
    foot.extend(56u32.to_le_bytes());
    foot.extend(b"SYDRFOOT");
    foot.extend(1u32.to_le_bytes());
    foot.extend(0u32.to_le_bytes());
    foot.extend(len.to_le_bytes());
    foot.extend(digest);
    body.extend(foot);
    body
}

/// One tar member for [`craft`].
pub struct Member {
    pub path: String,
    pub kind: u8, // tar typeflag: b'0' file, b'5' dir, b'2' symlink...
    pub data: Vec<u8>,
    pub link: String,
}

pub fn file(path: &str, data: &[u8]) -> Member {
    Member {
        path: path.into(),
        kind: b'0',
        data: data.to_vec(),
        link: String::new(),
    }
}

pub fn dir(path: &str) -> Member {
    Member {
        path: path.into(),
        kind: b'5',
        data: Vec::new(),
        link: String::new(),
    }
}

/// A raw ustar stream, written by hand (independent of the tar crate) so
/// tests can put anything in it.
pub fn raw_tar(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let mut h = [0u8; 512];
        let name = m.path.as_bytes();
        assert!(name.len() <= 100, "test paths fit the name field");
        h[..name.len()].copy_from_slice(name);
        let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
            let s = format!("{v:0w$o}\0", w = len - 1);
            h[at..at + len].copy_from_slice(s.as_bytes());
        };
        octal(&mut h, 100, 8, 0o644);
        octal(&mut h, 108, 8, 0);
        octal(&mut h, 116, 8, 0);
        octal(&mut h, 124, 12, m.data.len() as u64);
        octal(&mut h, 136, 12, 1);
        h[156] = m.kind;
        h[157..157 + m.link.len()].copy_from_slice(m.link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let s = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(s.as_bytes());
        out.extend(h);
        out.extend(&m.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend([0u8; 1024]);
    out
}

/// HEAD JSON declaring `members` as they are.
pub fn head_for(members: &[Member]) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = members
        .iter()
        .map(|m| {
            serde_json::json!({
                "path": m.path,
                "type": if m.kind == b'5' { "dir" } else { "file" },
                "size": m.data.len(),
                "mode": 420,
                "mtime": 1
            })
        })
        .collect();
    let total: usize = members
        .iter()
        .filter(|m| m.kind != b'5')
        .map(|m| m.data.len())
        .sum();
    serde_json::json!({
        "format": "sydra-archive", "version": 1, "created_unix_ms": 1,
        "tool": "test", "source": "test", "zstd_level": 3,
        "entries": entries, "total_bytes": total
    })
}

/// SUMS JSON with the true digests of `members`' files.
pub fn sums_for(members: &[Member]) -> serde_json::Value {
    let files: Vec<serde_json::Value> = members
        .iter()
        .filter(|m| m.kind != b'5')
        .map(|m| serde_json::json!({"path": m.path, "size": m.data.len(), "sha256": hex(&sha256(&m.data))}))
        .collect();
    serde_json::json!({ "files": files })
}

/// A complete, correctly sealed archive from parts.
pub fn craft(head: &serde_json::Value, tar: &[u8], sums: &serde_json::Value) -> Vec<u8> {
    let mut body = skippable(b"SYDRHEAD", &serde_json::to_vec(head).unwrap());
    body.extend(zstd::encode_all(tar, 3).unwrap());
    body.extend(skippable(b"SYDRSUMS", &serde_json::to_vec(sums).unwrap()));
    seal(body)
}

/// A well-formed crafted archive of the given members.
pub fn craft_members(members: &[Member]) -> Vec<u8> {
    craft(&head_for(members), &raw_tar(members), &sums_for(members))
}

/// Splits an archive into (HEAD body, DATA bytes, SUMS body, FOOT bytes)
/// with an independent parser (zstd's own frame-size function).
pub fn split(a: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let skip = |at: usize, tag: &[u8]| -> (Vec<u8>, usize) {
        assert_eq!(
            u32::from_le_bytes(a[at..at + 4].try_into().unwrap()),
            SKIP_MAGIC
        );
        let n = u32::from_le_bytes(a[at + 4..at + 8].try_into().unwrap()) as usize;
        assert_eq!(&a[at + 8..at + 16], tag);
        (a[at + 16..at + 8 + n].to_vec(), at + 8 + n)
    };
    let (head, mut at) = skip(0, b"SYDRHEAD");
    let data_start = at;
    while u32::from_le_bytes(a[at..at + 4].try_into().unwrap()) == 0xFD2F_B528 {
        at += zstd::zstd_safe::find_frame_compressed_size(&a[at..]).unwrap();
    }
    let data = a[data_start..at].to_vec();
    let (sums, end) = skip(at, b"SYDRSUMS");
    assert_eq!(end, a.len() - 64);
    (head, data, sums, a[end..].to_vec())
}
