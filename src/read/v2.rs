//! Reading a version-2 archive after its HEAD: DATA with its INDEX blocks,
//! then TABLE, META and TAIL, each checked against what was seen before
//! it (see `FORMAT.md`, "Reading").

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::frame::{SKIPPABLE_MAGIC, check_skippable_header};
use crate::format::head::EntryKind;
use crate::format::v2::{
    Head2, MAX_BLOCK_BODY, MAX_META_BODY, Meta, ROW_LEN, Row, TAG_INDEX, TAG_META, TAG_TABLE,
    TAIL_LEN, Tail,
};
use crate::read::data::DataDecoder;
use crate::read::expect::Rebuild;
use crate::read::frames::{peek_magic, walk_zstd_run};
use crate::read::index::{Counted, IndexSide, read_index_frame};
use crate::read::input::Input;
use crate::read::{Depth, Info, ReadSummary, Sink, Visit, read_data};

/// Reads the rest of a version-2 archive into `sink`, to `depth`.
pub(super) fn read<R: Read, S: Sink>(
    input: &mut Input<R>,
    head: Head2,
    depth: Depth,
    sink: &mut S,
    threads: usize,
) -> Result<ReadSummary> {
    match depth {
        Depth::Full => {
            let mut rebuild = Rebuild::default();
            rebuild.incremental = head.is_incremental();
            let to_sink = &*sink;
            let mut index = IndexSide::hashing().members_seen(rebuild.members.clone());
            if to_sink.wants_records() {
                index = index.on_record(Box::new(move |rec| to_sink.record(rec)));
            }
            let dec = DataDecoder::new(input)?.with_index(index).parallel(threads);
            let (frames, mut dec) = read_data(dec, &mut rebuild, &*sink)?;
            let index = dec.take_index().expect("the index side stays");
            drop(dec);
            if rebuild.digest() != index.content.clone().finalize().as_slice()
                || rebuild.records != index.records
            {
                return Err(Error::corrupt(
                    "the index does not match the tar members (their paths, sizes, modes, times, places or digests)",
                ));
            }
            finish(input, &head, index, rebuild.counted, frames)
        }
        Depth::Quick => quick(input, &head, None),
    }
}

/// Lists a version-2 archive from its index as it streams by.
pub(super) fn list<R: Read>(
    input: &mut Input<R>,
    head: Head2,
    visit: &mut Visit<'_>,
) -> Result<ReadSummary> {
    let on_record = Box::new(|rec: &crate::format::v2::Record| {
        visit(
            &rec.entry(),
            (rec.kind == EntryKind::File).then_some(&rec.sha256),
        )
    });
    quick(input, &head, Some(on_record))
}

/// `verify --quick` of a version-2 archive: every frame walked, not
/// decompressed; every INDEX block decompressed and its records checked
/// on their own (and handed to `on_record`).
fn quick<'a, R: Read>(
    input: &mut Input<R>,
    head: &Head2,
    on_record: Option<crate::read::index::OnRecord<'a>>,
) -> Result<ReadSummary> {
    let mut index = IndexSide::checking(on_record).incremental(head.is_incremental());
    let mut frames = 0u64;
    loop {
        frames += walk_zstd_run(input)?;
        if !at_tag(input, &TAG_INDEX)? {
            break;
        }
        let (at, len, body) = read_index_frame(input)?;
        index.block(at, len, &body)?;
    }
    if frames == 0 {
        return Err(Error::corrupt("no zstd data frame after HEAD"));
    }
    let seen = index.counted().expect("a checking index side counts");
    finish(input, head, index, seen, frames)
}

fn at_tag<R: Read>(input: &mut Input<R>, tag: &[u8; 8]) -> Result<bool> {
    if peek_magic(input)? != Some(SKIPPABLE_MAGIC) {
        return Ok(false);
    }
    let b = input.peek(16)?;
    Ok(b.len() == 16 && &b[8..16] == tag)
}

/// TABLE, META and TAIL, checked against the INDEX blocks and the data
/// seen (`seen`, `frames`).
fn finish<R: Read>(
    input: &mut Input<R>,
    head: &Head2,
    index: IndexSide<'_>,
    seen: Counted,
    frames: u64,
) -> Result<ReadSummary> {
    let table_offset = input.position();
    let mut meta_hash = Sha256::new();
    let max_table = index
        .blocks
        .checked_mul(ROW_LEN as u64)
        .ok_or_else(|| Error::corrupt("too many INDEX blocks"))?;
    let mut h = [0u8; 16];
    if input.peek(16)?.len() < 16 {
        return Err(Error::corrupt(
            "truncated: archive ends before its TABLE frame",
        ));
    }
    input.read_exact(&mut h, "the TABLE frame header")?;
    // Any length is read as a number only; one that is not the rows of
    // the blocks seen is refused before a byte of the body is read.
    let len = check_skippable_header(&h, &TAG_TABLE, u64::from(u32::MAX), table_offset)?;
    if len != max_table {
        return Err(Error::corrupt(format!(
            "TABLE lists {} blocks but the archive holds {} INDEX blocks",
            len / ROW_LEN as u64,
            index.blocks
        )));
    }
    meta_hash.update(h);
    let mut rows = Sha256::new();
    let mut row = [0u8; ROW_LEN];
    for _ in 0..index.blocks {
        input.read_exact(&mut row, "the TABLE frame")?;
        rows.update(row);
        meta_hash.update(row);
    }
    if rows.finalize() != index.rows.clone().finalize() {
        return Err(Error::corrupt(
            "TABLE does not describe the INDEX blocks the archive holds",
        ));
    }

    let meta_offset = input.position();
    input.read_exact(&mut h, "the META frame header")?;
    let len = check_skippable_header(&h, &TAG_META, MAX_META_BODY, meta_offset)?;
    let body = input.read_vec(len, "the META frame")?;
    meta_hash.update(h);
    meta_hash.update(&body);
    let meta = Meta::parse(&body)?;
    meta.check_first_paths(index.blocks, index.firsts.digest())?;
    if (meta.files, meta.dirs, meta.total_bytes, meta.frames)
        != (seen.files, seen.dirs, seen.bytes, frames)
    {
        return Err(Error::corrupt(format!(
            "META counts {} files, {} directories, {} bytes in {} frames, the archive holds {}, {}, {} in {}",
            meta.files,
            meta.dirs,
            meta.total_bytes,
            meta.frames,
            seen.files,
            seen.dirs,
            seen.bytes,
            frames
        )));
    }

    let body_len = input.position();
    let body_mark = input.mark();
    if input.at_eof()? {
        return Err(Error::corrupt(
            "missing TAIL frame: archive ends after META",
        ));
    }
    let mut tail = [0u8; TAIL_LEN];
    input.read_exact(&mut tail, "the TAIL frame")?;
    let tail = Tail::decode(&tail)?;
    index.check_nsec(&tail)?;
    if tail.version != head.version {
        return Err(Error::corrupt(format!(
            "TAIL says version {} but HEAD says version {}",
            tail.version, head.version
        )));
    }
    if !input.at_eof()? {
        return Err(Error::corrupt("bytes after the TAIL frame"));
    }
    if (tail.table_offset, tail.meta_offset, tail.body_len) != (table_offset, meta_offset, body_len)
    {
        return Err(Error::corrupt(
            "TAIL's offsets do not match where TABLE, META and TAIL are",
        ));
    }
    if (tail.entries, tail.blocks) != (index.records, index.blocks) {
        return Err(Error::corrupt(format!(
            "TAIL declares {} entries in {} blocks, the index holds {} in {}",
            tail.entries, tail.blocks, index.records, index.blocks
        )));
    }
    if tail.meta_sha256 != meta_hash.finalize().as_slice() {
        return Err(Error::corrupt(
            "TABLE and META do not match TAIL's SHA-256 (corrupted or tampered)",
        ));
    }
    let body_sha = input.resolve(body_mark)?;
    if tail.body_sha256 != body_sha {
        return Err(Error::corrupt(
            "archive SHA-256 does not match TAIL (corrupted or tampered)",
        ));
    }
    Ok(ReadSummary {
        info: Info::of_head2(head, &meta),
        bytes: input.position(),
        sha256: input.digest()?,
        frames,
    })
}

/// A read error: ours when the reader carried one (a ranged GET's),
/// else an I/O error on `name`.
fn carried(e: std::io::Error, name: &str) -> Error {
    Error::from_carrier(e).unwrap_or_else(|e| Error::io("read", name, e))
}

/// Most TABLE bytes read into memory from an archive's end (a row per
/// INDEX block of about 10,000 entries: 16 MiB covers billions).
const MAX_TABLE_IN_MEMORY: u64 = 16 * 1024 * 1024;

/// The end of a version-2 archive that can be read at any offset: TAIL,
/// then TABLE's rows and META, checked against TAIL's digest before any
/// of them is used. `None` when the archive does not end with a TAIL.
pub fn read_end(
    size: u64,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    name: &str,
) -> Result<Option<(Tail, Meta, Vec<u8>)>> {
    let io = |e| carried(e, name);
    if size < TAIL_LEN as u64 {
        return Ok(None);
    }
    // One read for the end of most archives: TABLE, META and TAIL usually
    // fit in the last 64 KiB (never more than a sixteenth of the archive).
    let guess = (size / 16).clamp(TAIL_LEN as u64, 64 * 1024).min(size);
    let mut last = vec![0u8; guess as usize];
    read_at(size - guess, &mut last).map_err(io)?;
    let t: [u8; TAIL_LEN] = last[last.len() - TAIL_LEN..].try_into().expect("128 bytes");
    if !Tail::is_tail(&t) {
        return Ok(None);
    }
    let tail = Tail::decode(&t)?;
    tail.check_size(size, name)?;
    // Tail::decode bounds META and ties TABLE's length to `blocks`.
    let table_len = tail.meta_offset - tail.table_offset;
    if table_len > MAX_TABLE_IN_MEMORY {
        return Err(Error::corrupt(format!(
            "TABLE of {table_len} bytes is over the {MAX_TABLE_IN_MEMORY} this reader takes"
        )));
    }
    let start = size - guess;
    let mut end = if tail.table_offset >= start {
        let from = (tail.table_offset - start) as usize;
        last[from..last.len() - TAIL_LEN].to_vec()
    } else {
        let mut end = vec![0u8; (tail.body_len - tail.table_offset) as usize];
        read_at(tail.table_offset, &mut end).map_err(io)?;
        end
    };
    drop(last);
    if tail.meta_sha256 != Sha256::digest(&end).as_slice() {
        return Err(Error::corrupt(
            "TABLE and META do not match TAIL's SHA-256 (corrupted or tampered)",
        ));
    }
    let split = table_len as usize;
    let th: [u8; 16] = end[..16].try_into().expect("TABLE is at least 16 bytes");
    let rows = check_skippable_header(&th, &TAG_TABLE, table_len, tail.table_offset)?;
    let mh: [u8; 16] = end[split..split + 16]
        .try_into()
        .expect("META is at least 16 bytes");
    let len = check_skippable_header(&mh, &TAG_META, MAX_META_BODY, tail.meta_offset)?;
    if rows + 16 != table_len || len + 16 != (end.len() - split) as u64 {
        return Err(Error::corrupt(
            "TABLE and META frames do not end where TAIL says",
        ));
    }
    let meta = Meta::parse(&end[split + 16..])?;
    end.truncate(split);
    end.drain(..16);
    Ok(Some((tail, meta, end)))
}

/// Reads a version-2 archive's plan (its totals) from its end, where the
/// source can be read at any offset (see [`list_from_end`]).
pub fn plan_from_end(
    size: u64,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    name: &str,
) -> Result<Option<Meta>> {
    Ok(read_end(size, read_at, name)?.map(|(_, meta, _)| meta))
}

/// TABLE's rows (`table`, its body), each checked to point at a place of
/// its own between `data_start` and TABLE (`table_offset`).
pub fn table_rows(table: &[u8], table_offset: u64, data_start: u64) -> Result<Vec<Row>> {
    let mut rows = Vec::with_capacity(table.len() / ROW_LEN);
    let mut next_free = data_start;
    for (i, row) in table.chunks_exact(ROW_LEN).enumerate() {
        let r = Row::decode(row.try_into().expect("a whole row"));
        let bad = |why: &str| Error::corrupt(format!("TABLE row {}: {why}", i + 1));
        let end = r
            .offset
            .checked_add(r.len)
            .ok_or_else(|| bad("impossible length"))?;
        if r.offset < next_free || end > table_offset || r.len < 16 + 8 {
            return Err(bad("points outside the data or at another block"));
        }
        if r.len > 16 + MAX_BLOCK_BODY {
            return Err(bad("block larger than the limit"));
        }
        next_free = end;
        rows.push(r);
    }
    Ok(rows)
}

/// Reads the INDEX frame of row `r` (TABLE row `i`, from 0) and returns
/// its body once it matches the row: length, SHA-256 and counts.
pub fn read_block(
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    r: &Row,
    i: usize,
    name: &str,
) -> Result<Vec<u8>> {
    let bad = |why: &str| Error::corrupt(format!("TABLE row {}: {why}", i + 1));
    let mut frame = vec![0u8; r.len as usize];
    read_at(r.offset, &mut frame).map_err(|e| carried(e, name))?;
    let fh: [u8; 16] = frame[..16].try_into().expect("at least 24 bytes");
    let blen = check_skippable_header(&fh, &TAG_INDEX, MAX_BLOCK_BODY, r.offset)?;
    if blen + 16 != r.len || Sha256::digest(&frame[16..]).as_slice() != r.sha256 {
        return Err(bad(
            "the INDEX frame does not match its row (corrupted or tampered)",
        ));
    }
    let opening: [u8; 8] = frame[16..24].try_into().expect("at least 24 bytes");
    if crate::format::v2::parse_block_opening(&opening)? != (r.records, r.raw_len) {
        return Err(bad("its counts differ from the block's"));
    }
    frame.drain(..16);
    Ok(frame)
}

/// Lists a version-2 archive that can be read at any offset from its
/// index alone: TAIL, TABLE and META (checked against TAIL's digest),
/// then each INDEX frame (checked against its TABLE row, and its records
/// checked and counted) before a record of it is handed to `visit`. HEAD
/// is read for what the archive says about itself (covered only by the
/// whole archive's digest, which this does not read). `None` when the
/// archive does not end with a TAIL (version 1). This checks the index,
/// not the data: `verify` checks the data.
pub fn list_from_end(
    size: u64,
    read_at: &mut dyn FnMut(u64, &mut [u8]) -> std::io::Result<()>,
    name: &str,
    visit: &mut Visit<'_>,
) -> Result<Option<Info>> {
    let Some((tail, meta, table)) = read_end(size, read_at, name)? else {
        return Ok(None);
    };
    let io = |e| carried(e, name);

    let mut h = [0u8; 16];
    read_at(0, &mut h).map_err(io)?;
    let len = check_skippable_header(
        &h,
        &crate::format::frame::TAG_HEAD,
        crate::format::v2::MAX_HEAD2_BODY,
        0,
    )?;
    let mut body = vec![0u8; len as usize];
    read_at(16, &mut body).map_err(io)?;
    let head = Head2::parse(&body)?;
    let data_start = 16 + len;

    let mut index = IndexSide::checking(Some(Box::new(|rec: &crate::format::v2::Record| {
        visit(
            &rec.entry(),
            (rec.kind == EntryKind::File).then_some(&rec.sha256),
        )
    })))
    .incremental(head.is_incremental())
    .expect_nsec(tail.nsec());
    if tail.version != head.version {
        return Err(Error::corrupt(format!(
            "TAIL says version {} but HEAD says version {}",
            tail.version, head.version
        )));
    }
    for (i, r) in table_rows(&table, tail.table_offset, data_start)?
        .iter()
        .enumerate()
    {
        let body = read_block(read_at, r, i, name)?;
        index.block(r.offset, r.len, &body)?;
    }
    let c = index.counted().expect("a checking index side counts");
    meta.check_first_paths(index.blocks, index.firsts.digest())?;
    if index.records != tail.entries
        || (c.files, c.dirs, c.bytes) != (meta.files, meta.dirs, meta.total_bytes)
    {
        return Err(Error::corrupt(
            "the index does not hold what TAIL and META count",
        ));
    }
    Ok(Some(Info::of_head2(&head, &meta)))
}
