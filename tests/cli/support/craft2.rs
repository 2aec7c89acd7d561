//! An independent version-2 archive writer and splitter, for crafted
//! (broken, hostile) input and for checking what `create` writes byte by
//! byte: it shares no code with the library.

use super::craft::{Member, SKIP_MAGIC, dir, file, hex, raw_tar, sha256, skippable};

pub const ZSTD_MAGIC: u32 = 0xFD2F_B528;

/// One index record, as FORMAT.md A.4 lays it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub dir: bool,
    pub path: String,
    pub mode: u32,
    pub mtime: u64,
    /// Kinds 2 and 3 (A.4): nanoseconds past `mtime`.
    pub nsec: Option<u32>,
    pub size: u64,
    pub frame: u64,
    pub offset: u64,
    pub sha256: [u8; 32],
}

impl Rec {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.dir) + if self.nsec.is_some() { 2 } else { 0 });
        out.extend((self.path.len() as u16).to_le_bytes());
        out.extend(self.path.as_bytes());
        out.extend(self.mode.to_le_bytes());
        out.extend(self.mtime.to_le_bytes());
        if let Some(n) = self.nsec {
            out.extend(n.to_le_bytes());
        }
        for v in [self.size, self.frame, self.offset] {
            out.extend(v.to_le_bytes());
        }
        if !self.dir {
            out.extend(self.sha256);
        }
    }
}

/// Decodes a block's records.
pub fn decode_records(mut b: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    let u64at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
    while !b.is_empty() {
        let dir = b[0] & 1 == 1;
        let n = u16::from_le_bytes([b[1], b[2]]) as usize;
        let path = String::from_utf8(b[3..3 + n].to_vec()).unwrap();
        let mut at = 3 + n;
        let mode = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let mtime = u64at(b, at + 4);
        at += 12;
        let nsec = (b[0] & 2 == 2).then(|| {
            at += 4;
            u32::from_le_bytes(b[at - 4..at].try_into().unwrap())
        });
        let mut r = Rec {
            dir,
            path,
            mode,
            mtime,
            nsec,
            size: u64at(b, at),
            frame: u64at(b, at + 8),
            offset: u64at(b, at + 16),
            sha256: [0; 32],
        };
        let mut len = at + 24;
        if !dir {
            r.sha256 = b[len..len + 32].try_into().unwrap();
            len += 32;
        }
        out.push(r);
        b = &b[len..];
    }
    out
}

/// A change to one part of a crafted archive.
pub type Hook<T> = Box<dyn Fn(&mut T)>;

/// A version-2 archive being crafted: each part can be changed before
/// [`Craft2::build`] seals it (TABLE, META and TAIL are computed from what
/// is built unless overridden).
pub struct Craft2 {
    pub head: serde_json::Value,
    /// The tar stream.
    pub tar: Vec<u8>,
    /// Where the tar stream is cut into frames.
    pub cuts: Vec<usize>,
    /// Changes the records computed from the tar before they are written.
    pub records: Hook<Vec<Rec>>,
    /// Changes the INDEX frame body (records count, raw length, zstd frame).
    pub block: Hook<Vec<u8>>,
    /// Changes META.
    pub meta: Hook<serde_json::Value>,
    /// Changes TABLE's body (given TABLE's own offset).
    #[allow(clippy::type_complexity)]
    pub table: Box<dyn Fn(&mut Vec<u8>, u64)>,
    /// Changes TAIL (its 128 bytes) after it is computed.
    pub tail: Hook<[u8; 128]>,
}

impl Craft2 {
    pub fn new(members: &[Member]) -> Self {
        Craft2 {
            head: serde_json::json!({
                "format": "sydra-archive", "version": 2, "created_unix_ms": 1,
                "tool": "test", "source": "test", "zstd_level": 3, "frame_bytes": 2097152
            }),
            tar: raw_tar(members),
            cuts: Vec::new(),
            records: Box::new(|_| {}),
            block: Box::new(|_| {}),
            meta: Box::new(|_| {}),
            table: Box::new(|_, _| {}),
            tail: Box::new(|_| {}),
        }
    }

    /// Records of a tar stream cut at `cuts`, for frames at `offsets`.
    fn records_of(&self, frame_at: &[(usize, u64)]) -> Vec<Rec> {
        let mut out = Vec::new();
        let mut p = 0usize;
        let t = &self.tar;
        while p + 512 <= t.len() && t[p..p + 512].iter().any(|&b| b != 0) {
            let h = &t[p..p + 512];
            let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
            let path = String::from_utf8_lossy(&h[..name_end])
                .trim_end_matches('/')
                .to_string();
            let octal = |s: &[u8]| {
                let s = std::str::from_utf8(s)
                    .unwrap()
                    .trim_matches(|c| c == '\0' || c == ' ');
                u64::from_str_radix(s, 8).unwrap_or(0)
            };
            let size = if h[124] & 0x80 != 0 {
                u64::from_be_bytes(h[128..136].try_into().unwrap())
            } else {
                octal(&h[124..136])
            };
            let dir = h[156] == b'5';
            let (fstart, foff) = frame_at
                .iter()
                .rev()
                .find(|(start, _)| *start <= p)
                .copied()
                .unwrap();
            let data = &t[p + 512..(p + 512 + size as usize).min(t.len())];
            out.push(Rec {
                dir,
                path,
                mode: octal(&h[100..108]) as u32,
                mtime: octal(&h[136..148]),
                nsec: None,
                size,
                frame: foff,
                offset: (p - fstart) as u64,
                sha256: if dir { [0; 32] } else { sha256(data) },
            });
            p += 512 + (size as usize).div_ceil(512) * 512;
        }
        out
    }

    pub fn build(&self) -> Vec<u8> {
        let mut a = skippable(b"SYDRHEAD", &serde_json::to_vec(&self.head).unwrap());
        let mut bounds = vec![0];
        bounds.extend(self.cuts.iter().copied());
        bounds.push(self.tar.len());
        let mut frame_at = Vec::new();
        for w in bounds.windows(2) {
            frame_at.push((w[0], a.len() as u64));
            let mut enc = zstd::bulk::Compressor::new(3).unwrap();
            enc.include_checksum(true).unwrap();
            a.extend(enc.compress(&self.tar[w[0]..w[1]]).unwrap());
        }
        let mut recs = self.records_of(&frame_at);
        (self.records)(&mut recs);
        let mut raw = Vec::new();
        for r in &recs {
            r.encode(&mut raw);
        }
        let mut body = (recs.len() as u32).to_le_bytes().to_vec();
        body.extend((raw.len() as u32).to_le_bytes());
        body.extend(zstd::bulk::compress(&raw, 3).unwrap());
        (self.block)(&mut body);
        let block_at = a.len() as u64;
        a.extend(skippable(b"SYDRINDX", &body));
        let mut table = block_at.to_le_bytes().to_vec();
        table.extend((16 + body.len() as u64).to_le_bytes());
        table.extend((recs.len() as u64).to_le_bytes());
        table.extend((raw.len() as u64).to_le_bytes());
        table.extend(sha256(&body));
        let table_offset = a.len() as u64;
        (self.table)(&mut table, table_offset);
        a.extend(skippable(b"SYDRTABL", &table));
        let files: Vec<&Rec> = recs.iter().filter(|r| !r.dir).collect();
        let mut meta = serde_json::json!({
            "files": files.len(),
            "dirs": recs.len() - files.len(),
            "total_bytes": files.iter().map(|r| r.size).sum::<u64>(),
            "frames": bounds.len() - 1,
        });
        (self.meta)(&mut meta);
        let meta_offset = a.len() as u64;
        a.extend(skippable(b"SYDRMETA", &serde_json::to_vec(&meta).unwrap()));
        let body_len = a.len() as u64;
        let mut tail = [0u8; 128];
        tail[..4].copy_from_slice(&SKIP_MAGIC.to_le_bytes());
        tail[4..8].copy_from_slice(&120u32.to_le_bytes());
        tail[8..16].copy_from_slice(b"SYDRTAIL");
        tail[16..20].copy_from_slice(&2u32.to_le_bytes());
        // Flag bit 0: the records carry nanoseconds (all or none do).
        let nsec = recs.iter().any(|r| r.nsec.is_some());
        tail[20..24].copy_from_slice(&u32::from(nsec).to_le_bytes());
        let fields = [table_offset, meta_offset, body_len, recs.len() as u64, 1];
        for (i, v) in fields.iter().enumerate() {
            tail[24 + 8 * i..32 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        tail[64..96].copy_from_slice(&sha256(&a[table_offset as usize..]));
        tail[96..].copy_from_slice(&sha256(&a));
        (self.tail)(&mut tail);
        a.extend(tail);
        a
    }
}

/// A well-formed crafted version-2 archive of `members`.
pub fn craft2(members: &[Member]) -> Vec<u8> {
    Craft2::new(members).build()
}

/// A version-2 archive taken apart by an independent parser.
#[derive(Debug)]
pub struct Parts {
    pub head: serde_json::Value,
    /// (archive offset, frame bytes) of each data frame.
    pub data: Vec<(u64, Vec<u8>)>,
    /// (archive offset, body) of each INDEX frame.
    pub index: Vec<(u64, Vec<u8>)>,
    pub table_offset: u64,
    pub table: Vec<u8>,
    pub meta_offset: u64,
    pub meta: serde_json::Value,
    pub tail: Vec<u8>,
}

impl Parts {
    /// Every record of every INDEX block, in order.
    pub fn records(&self) -> Vec<Rec> {
        let mut out = Vec::new();
        for (_, body) in &self.index {
            let raw = zstd::decode_all(&body[8..]).unwrap();
            assert_eq!(
                raw.len() as u32,
                u32::from_le_bytes(body[4..8].try_into().unwrap())
            );
            let recs = decode_records(&raw);
            assert_eq!(
                recs.len() as u32,
                u32::from_le_bytes(body[..4].try_into().unwrap())
            );
            out.extend(recs);
        }
        out
    }

    /// The tar stream (every data frame decoded on its own).
    pub fn tar(&self) -> Vec<u8> {
        let mut t = Vec::new();
        for (_, f) in &self.data {
            t.extend(zstd::decode_all(&f[..]).unwrap());
        }
        t
    }
}

/// Splits a version-2 archive with zstd's own frame-size function.
pub fn split2(a: &[u8]) -> Parts {
    let u32at = |at: usize| u32::from_le_bytes(a[at..at + 4].try_into().unwrap());
    let skip = |at: usize, tag: &[u8]| -> (Vec<u8>, usize) {
        assert_eq!(u32at(at), SKIP_MAGIC, "skippable frame at {at}");
        let n = u32at(at + 4) as usize;
        assert_eq!(&a[at + 8..at + 16], tag, "tag at {at}");
        (a[at + 16..at + 8 + n].to_vec(), at + 8 + n)
    };
    let (head, mut at) = skip(0, b"SYDRHEAD");
    let mut data = Vec::new();
    let mut index = Vec::new();
    loop {
        if u32at(at) == ZSTD_MAGIC {
            let n = zstd::zstd_safe::find_frame_compressed_size(&a[at..]).unwrap();
            data.push((at as u64, a[at..at + n].to_vec()));
            at += n;
        } else if &a[at + 8..at + 16] == b"SYDRINDX" {
            let (body, next) = skip(at, b"SYDRINDX");
            index.push((at as u64, body));
            at = next;
        } else {
            break;
        }
    }
    let table_offset = at as u64;
    let (table, at) = skip(at, b"SYDRTABL");
    let meta_offset = at as u64;
    let (meta, at) = skip(at, b"SYDRMETA");
    assert_eq!(at, a.len() - 128, "TAIL is the last 128 bytes");
    Parts {
        head: serde_json::from_slice(&head).unwrap(),
        data,
        index,
        table_offset,
        table,
        meta_offset,
        meta: serde_json::from_slice(&meta).unwrap(),
        tail: a[at..].to_vec(),
    }
}

/// The hex digest of a record (for messages).
pub fn rec_sha(r: &Rec) -> String {
    hex(&r.sha256)
}

/// A small well-formed data dir as members: MANIFEST, two segments in
/// an hour directory, a WAL file.
pub fn members() -> Vec<Member> {
    vec![
        file("MANIFEST", b"{}\n"),
        dir("segments"),
        dir("segments/3600"),
        file("segments/3600/a.seg", &[7u8; 3000]),
        file("segments/3600/b.seg", &[9u8; 700]),
        dir("wal"),
        file("wal/current.wal", &[1u8; 33]),
    ]
}

/// An incremental crafted by hand on the base `base` (an archive file):
/// its own members hold `changes` and `tails`, plus `members`.
pub fn crafted_on(
    base: &std::path::Path,
    members: &[Member],
    changes: &str,
    tails: &[(&str, &[u8])],
) -> Vec<u8> {
    let b = std::fs::read(base).unwrap();
    let mut all = members.to_vec();
    all.push(dir("x-sydra-incremental"));
    all.push(file(
        "x-sydra-incremental/changes.ndjson",
        changes.as_bytes(),
    ));
    if !tails.is_empty() {
        all.push(dir("x-sydra-incremental/wal-tails"));
        for (name, data) in tails {
            all.push(file(&format!("x-sydra-incremental/wal-tails/{name}"), data));
        }
    }
    let mut c = Craft2::new(&all);
    c.head["version"] = serde_json::json!(3);
    c.head["base"] = serde_json::json!({
        "sha256": hex(&sha256(&b)),
        "size": b.len(),
        "body_sha256": hex(&b[b.len() - 32..]),
        "location": base.file_name().unwrap().to_str().unwrap(),
        "depth": 1,
    });
    c.tail = Box::new(|t| t[16] = 3);
    c.build()
}
