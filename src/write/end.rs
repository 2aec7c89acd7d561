//! The end of an archive whose DATA and INDEX frames are written: TABLE,
//! META and TAIL (which holds the SHA-256 of everything before it).

use std::io::Write;

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::format::frame::{write_skippable, write_skippable_json};
use crate::format::v2::{MAX_META_BODY, Meta, TAG_META, TAG_TABLE, Tail};

use super::OnError;
use super::members::Members;

/// What [`seal`] wrote.
pub(super) struct Sealed {
    pub(super) bytes: u64,
    pub(super) sha256: [u8; 32],
    pub(super) files: u64,
    pub(super) dirs: u64,
    pub(super) data_bytes: u64,
}

/// Ends an archive whose DATA and INDEX frames are written: TABLE, META
/// and TAIL. Returns the output writer.
pub(super) fn seal<W: Write>(
    m: Members<'_, '_, W>,
    version: u64,
    skipped: &[String],
    wal: &[crate::format::head::WalPosition],
    warnings: &[String],
    on_error: &OnError<'_>,
) -> Result<(W, Sealed)> {
    let wrap = |e| on_error.wrap(e);
    let Members {
        frames,
        index,
        files,
        dirs,
        data_bytes,
        ..
    } = m;
    let data_frames = frames.frames();
    let mut w = frames.into_out();

    // TABLE, META: hashed together for TAIL.
    let table_offset = w.count;
    let mut meta_hash = Sha256::new();
    let mut table = Vec::with_capacity(index.rows.len() * 64);
    for r in &index.rows {
        table.extend(r.encode());
    }
    let mut framed = Vec::with_capacity(16 + table.len());
    write_skippable(&mut framed, &TAG_TABLE, &table).map_err(wrap)?;
    meta_hash.update(&framed);
    w.write_all(&framed).map_err(wrap)?;
    let meta = Meta {
        files,
        dirs,
        total_bytes: data_bytes,
        frames: data_frames,
        skipped: skipped.to_vec(),
        wal: wal.to_vec(),
        warnings: warnings.to_vec(),
        first_paths: index.first_paths,
    };
    let meta_offset = w.count;
    let mut framed = Vec::new();
    write_skippable_json(&mut framed, &TAG_META, &meta, MAX_META_BODY).map_err(wrap)?;
    meta_hash.update(&framed);
    w.write_all(&framed).map_err(wrap)?;
    let tail = Tail {
        version,
        // Every record this writer makes carries its nanoseconds.
        flags: crate::format::v2::FLAG_NSEC,
        table_offset,
        meta_offset,
        body_len: w.count,
        entries: index.entries,
        blocks: index.rows.len() as u64,
        meta_sha256: meta_hash.finalize().into(),
        body_sha256: w.hasher.clone().finalize().into(),
    };
    w.write_all(&tail.encode()).map_err(wrap)?;
    w.flush().map_err(wrap)?;
    let bytes = w.count;
    let sha256: [u8; 32] = w.hasher.finalize().into();
    Ok((
        w.inner,
        Sealed {
            bytes,
            sha256,
            files,
            dirs,
            data_bytes,
        },
    ))
}
