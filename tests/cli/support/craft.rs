//! An independent archive writer, for crafted (broken, hostile) input:
//! it shares no code with the library's writer.

use sha2::{Digest, Sha256};

pub const SKIP_MAGIC: u32 = 0x184D_2A53;

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
#[derive(Clone)]
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

pub fn good() -> Vec<Member> {
    vec![
        file("MANIFEST", b"{}\n"),
        dir("wal"),
        file("wal/current.wal", &[1u8; 33]),
    ]
}
