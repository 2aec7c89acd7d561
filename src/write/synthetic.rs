//! Synthetic archives, made in memory by the real writer: millions of
//! files for tests and benchmarks of memory and speed that no test
//! machine should create on disk.

use std::io::Write;
use std::path::Path;

use crate::error::Result;
use crate::format::frame::{TAG_HEAD, write_skippable_json};
use crate::format::head::{Entry, EntryKind};
use crate::format::v2::{Head2, MAX_HEAD2_BODY};
use crate::sydradb::live;
use crate::sydradb::scan::Captured;

use super::end::seal;
use super::frames::Frames;
use super::hash::HashWriter;
use super::members::{Members, Source};
use super::{DEFAULT_FRAME_BYTES, OnError};

/// Writes a synthetic archive to `out`: the layout's top level and
/// `files` segment files of `file_bytes` bytes each (deterministic,
/// compressible content), `per_dir` to an hour directory, made in memory
/// by the real writer. For tests and benchmarks of memory and speed at
/// file counts no test machine should create on disk; returns the
/// archive's size and SHA-256.
pub fn write_synthetic<W: Write>(
    out: W,
    files: u64,
    file_bytes: usize,
    per_dir: u64,
    threads: u32,
) -> Result<(W, u64, [u8; 32])> {
    let name = Path::new("synthetic");
    let on_error = OnError {
        out_name: name,
        level: 3,
        threads,
    };
    let wrap = |e| on_error.wrap(e);
    let mut w = HashWriter::new(out, name);
    let head = Head2::new(
        1_800_000_000_000,
        "synthetic".into(),
        3,
        DEFAULT_FRAME_BYTES as u64,
    );
    write_skippable_json(&mut w, &TAG_HEAD, &head, MAX_HEAD2_BODY).map_err(wrap)?;
    let frames = Frames::new(w, 3, threads, DEFAULT_FRAME_BYTES).map_err(wrap)?;
    let mut m = Members::new(frames, None, &on_error);
    let e = |path: String, kind: EntryKind, size: u64| Entry {
        path,
        kind,
        size,
        mode: if kind == EntryKind::Dir { 0o755 } else { 0o644 },
        mtime: 1_800_000_000,
        mtime_nsec: 0,
    };
    let bytes = |seed: u64, n: usize| -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|i| {
                if i % 8 == 0 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                }
                // Half predictable, half not: about as compressible as
                // segments are.
                if i % 2 == 0 {
                    (x >> (i % 8 * 8)) as u8
                } else {
                    (i / 64) as u8
                }
            })
            .collect()
    };
    let file = |m: &mut Members<'_, '_, W>, path: String, data: Vec<u8>| {
        let en = e(path, EntryKind::File, data.len() as u64);
        m.file(
            &en,
            name,
            Source::Captured(Captured::Settled(live::Content::Bytes(data))),
        )
    };
    file(&mut m, "MANIFEST".into(), b"{}\n".to_vec())?;
    m.dir(&e("segments".into(), EntryKind::Dir, 0))?;
    let per_dir = per_dir.max(1);
    let mut i = 0u64;
    let mut hour = 1_748_736_000u64;
    while i < files {
        m.dir(&e(format!("segments/{hour}"), EntryKind::Dir, 0))?;
        for _ in 0..per_dir.min(files - i) {
            file(
                &mut m,
                format!("segments/{hour}/{i:012x}-{hour}.seg"),
                bytes(i, file_bytes),
            )?;
            i += 1;
        }
        hour += 3600;
    }
    file(&mut m, "tags.json".into(), b"{}".to_vec())?;
    m.dir(&e("wal".into(), EntryKind::Dir, 0))?;
    file(&mut m, "wal/current.wal".into(), Vec::new())?;
    m.finish()?;
    let (w, sealed) = seal(m, crate::format::v2::VERSION2, &[], &[], &[], &on_error)?;
    Ok((w, sealed.bytes, sealed.sha256))
}
