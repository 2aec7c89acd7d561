//! Shared helpers: fixtures from the project's generator, running the
//! binary, and an independent archive builder for crafted (hostile) input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};
use sydra_archive::sydradb::{FixtureSpec, generate};

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
    /// Size written in the tar header when it should differ from the data.
    pub declared: Option<u64>,
}

pub fn file(path: &str, data: &[u8]) -> Member {
    Member {
        path: path.into(),
        kind: b'0',
        data: data.to_vec(),
        link: String::new(),
        declared: None,
    }
}

pub fn dir(path: &str) -> Member {
    Member {
        path: path.into(),
        kind: b'5',
        data: Vec::new(),
        link: String::new(),
        declared: None,
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
        let size = m.declared.unwrap_or(m.data.len() as u64);
        if size < 8u64.pow(11) {
            octal(&mut h, 124, 12, size);
        } else {
            // GNU base-256 for sizes of 8 GiB and more.
            h[124] = 0x80;
            h[128..136].copy_from_slice(&size.to_be_bytes());
        }
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

/// A data dir that takes a noticeable time to archive and restore.
pub fn medium_data(dir: &Path) -> PathBuf {
    let d = dir.join("medium");
    generate(
        &d,
        &FixtureSpec {
            series: 20,
            duration_s: 36 * 3600,
            flush_s: 900,
            wal_rotate_bytes: 4 << 20,
            ..FixtureSpec::default()
        },
    )
    .unwrap();
    d
}

/// A digest of a whole tree: every path, type, mode, mtime and content,
/// in name order. Two trees with the same digest are the same to SydraDB.
pub fn tree_digest(root: &Path) -> String {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    fn walk(root: &Path, rel: &Path, h: &mut Sha256) {
        let mut names: Vec<_> = std::fs::read_dir(root.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            let r = rel.join(&n);
            let m = std::fs::symlink_metadata(root.join(&r)).unwrap();
            h.update(r.to_str().unwrap().as_bytes());
            h.update(format!("|{:o}|{}|", m.permissions().mode(), m.mtime()).as_bytes());
            if m.is_dir() {
                h.update(b"dir\n");
                walk(root, &r, h);
            } else {
                h.update(std::fs::read(root.join(&r)).unwrap());
                h.update(b"\n");
            }
        }
    }
    let mut h = Sha256::new();
    walk(root, Path::new(""), &mut h);
    hex(&h.finalize())
}

/// Names in `dir` that look like staging or temporary leftovers.
pub fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".sydra-staging.") || n.contains(".sydra-tmp."))
        .collect()
}

/// Runs the binary with at most 512 MiB of address space and a 60 s limit.
pub fn run_bounded(args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    let mut c = bin();
    c.args(args).stdin(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 512 << 20,
                rlim_max: 512 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let watchdog = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            if start.elapsed() > std::time::Duration::from_secs(60) {
                // SAFETY: kill(2) on our child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(!watchdog.join().unwrap(), "{args:?} ran for over 60 s");
    out
}

pub fn good() -> Vec<Member> {
    vec![
        file("MANIFEST", b"{}\n"),
        dir("wal"),
        file("wal/current.wal", &[1u8; 33]),
    ]
}

/// Every kind of hostile or broken archive the readers must refuse with exit 1.
pub fn hostile_archives() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for (name, bad) in [
        ("dotdot", "wal/../../escape"),
        ("absolute", "/tmp/sydra-archive-escape"),
        ("outside-layout", "other/file"),
        ("double-slash", "wal//x"),
        ("dot", "wal/./x"),
        ("trailing-slash", "wal/x/"),
    ] {
        v.push((name, craft_members(&[dir("wal"), file(bad, b"x")])));
    }
    for (name, kind) in [
        ("symlink", b'2'),
        ("hardlink", b'1'),
        ("chardev", b'3'),
        ("blockdev", b'4'),
        ("fifo", b'6'),
    ] {
        // Declared in HEAD as an empty file; the tar member is something else.
        let mut m = good();
        m[2] = Member {
            path: "wal/current.wal".into(),
            kind,
            data: Vec::new(),
            link: "/etc/passwd".into(),
            declared: None,
        };
        let mut head = head_for(&m);
        head["entries"][2]["type"] = serde_json::json!("file");
        v.push((name, craft(&head, &raw_tar(&m), &sums_for(&m))));
    }
    {
        // HEAD itself declares a symlink.
        let m = good();
        let mut head = head_for(&m);
        head["entries"][2]["type"] = serde_json::json!("symlink");
        v.push(("head-symlink", craft(&head, &raw_tar(&m), &sums_for(&m))));
    }
    v.push((
        "duplicate",
        craft_members(&[dir("wal"), file("wal/a", b"x"), file("wal/a", b"y")]),
    ));
    {
        let m = good();
        let mut head = head_for(&m[..2]);
        head["total_bytes"] = serde_json::json!(3);
        v.push((
            "member-not-in-head",
            craft(&head, &raw_tar(&m), &sums_for(&m[..2])),
        ));
        v.push((
            "head-entry-not-in-tar",
            craft(&head_for(&m), &raw_tar(&m[..2]), &sums_for(&m)),
        ));
    }
    {
        // A member that claims 1 TB where HEAD declares 33 bytes; only a
        // little zero data follows.
        let m = good();
        let mut big = good();
        big[2].declared = Some(1 << 40);
        big[2].data = vec![0u8; 4096];
        let mut tar = raw_tar(&big);
        tar.truncate(tar.len() - 1024);
        v.push((
            "member-larger-than-head",
            craft(&head_for(&m), &tar, &sums_for(&m)),
        ));
    }
    {
        let mut body = SKIP_MAGIC.to_le_bytes().to_vec();
        body.extend(u32::MAX.to_le_bytes());
        body.extend(b"SYDRHEAD{}");
        v.push(("absurd-head-length", seal(body)));
        let m = good();
        let mut body = skippable(b"SYDRHEAD", &serde_json::to_vec(&head_for(&m)).unwrap());
        body.extend(zstd::encode_all(&raw_tar(&m)[..], 3).unwrap());
        let mut sums = SKIP_MAGIC.to_le_bytes().to_vec();
        sums.extend(u32::MAX.to_le_bytes());
        sums.extend(b"SYDRSUMS{}");
        body.extend(sums);
        v.push(("absurd-sums-length", seal(body)));
    }
    {
        let m = good();
        let tar = zstd::encode_all(&raw_tar(&m)[..], 3).unwrap();
        let mut body = skippable(
            b"SYDRHEAD",
            b"{\"format\": \"sydra-archive\", \"version\": 1, \"entries\": [",
        );
        body.extend(&tar);
        body.extend(skippable(
            b"SYDRSUMS",
            &serde_json::to_vec(&sums_for(&m)).unwrap(),
        ));
        v.push(("head-invalid-json", seal(body)));
        let mut body = skippable(b"SYDRHEAD", &serde_json::to_vec(&head_for(&m)).unwrap());
        body.extend(&tar);
        body.extend(skippable(b"SYDRSUMS", b"[[[["));
        v.push(("sums-invalid-json", seal(body)));
    }
    {
        // A DATA frame whose header asks for a 256 MiB window.
        let m = good();
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        enc.window_log(28).unwrap();
        enc.long_distance_matching(true).unwrap();
        std::io::Write::write_all(&mut enc, &raw_tar(&m)).unwrap();
        let frame = enc.finish().unwrap();
        let mut body = skippable(b"SYDRHEAD", &serde_json::to_vec(&head_for(&m)).unwrap());
        body.extend(frame);
        body.extend(skippable(
            b"SYDRSUMS",
            &serde_json::to_vec(&sums_for(&m)).unwrap(),
        ));
        v.push(("huge-window", seal(body)));
    }
    {
        let m = good();
        let mut t = good();
        t[2].data[7] ^= 0xff;
        v.push((
            "tampered-recomputed-footer",
            craft(&head_for(&m), &raw_tar(&t), &sums_for(&m)),
        ));
    }
    let ok = craft_members(&good());
    let mut after = ok.clone();
    after.extend(b"\0");
    v.push(("bytes-after-foot", after));
    v.push(("truncated-end", ok[..ok.len() - 1].to_vec()));
    v.push(("truncated-middle", ok[..ok.len() / 2].to_vec()));
    v.push(("empty", Vec::new()));
    v.push(("one-byte", vec![0x53]));
    v.push(("sixteen-bytes", ok[..16].to_vec()));
    v.push(("foot-only", ok[ok.len() - 64..].to_vec()));
    v
}

/// Runs the binary with stdin, stdout and stderr on a pseudo-terminal
/// (python's pty module); the output is what the terminal saw.
pub fn run_in_pty(args: &[&str]) -> Output {
    let script = r#"
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b""
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    Command::new("python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_sydra-archive")])
        .args(args)
        .output()
        .unwrap()
}

/// Files and directories below `d` (not counting `d`).
pub fn count_tree(d: &Path) -> (u64, u64) {
    let (mut files, mut dirs) = (0, 0);
    for e in std::fs::read_dir(d).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            let (f, s) = count_tree(&e.path());
            files += f;
            dirs += 1 + s;
        } else {
            files += 1;
        }
    }
    (files, dirs)
}
