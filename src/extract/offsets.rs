//! Extracting from a version-2 archive read at offsets: the INDEX blocks
//! that can hold a match (each checked against its TABLE row), then only
//! the data frames that hold the wanted members, each member checked
//! against its header and SHA-256.

use std::io::{self, BufReader, Read};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::extract::ExtractSummary;
use crate::extract::blocks::Blocks;
use crate::extract::patterns::Patterns;
use crate::extract::stage::Stage;
use crate::format::head::EntryKind;
use crate::format::v2::{Record, Tail};
use crate::read::source::RandomSource;
use crate::read::table_rows;

/// The tar stream from one data frame on, and where in it we are.
struct Cursor<'s> {
    frame: u64,
    pos: u64,
    dec: zstd::stream::read::Decoder<'static, BufReader<Box<dyn Read + 's>>>,
}

/// Extracts the wanted members of a version-2 archive read at offsets.
pub fn by_index(
    src: &RandomSource,
    tail: &Tail,
    table: &[u8],
    first_paths: Option<Vec<String>>,
    pats: &mut Patterns,
    stage: &mut Stage,
) -> Result<ExtractSummary> {
    let mut summary = ExtractSummary::default();
    let mut cursor: Option<Cursor<'_>> = None;
    // One index side for all blocks: tree order and frame offsets are
    // checked across them. The wanted records of each block are taken
    // out after it.
    let wanted: std::rc::Rc<std::cell::RefCell<Vec<Record>>> = Default::default();
    let keep = std::rc::Rc::clone(&wanted);
    let pats_prefixes = pats.prefixes();
    let on_record: crate::read::index::OnRecord<'_> = Box::new(move |rec: &Record| {
        if pats.wants(&rec.path) {
            keep.borrow_mut().push(rec.clone());
        }
        Ok(())
    });
    // Every block read: the whole tree order is checked; some: the strict
    // order of the records read.
    let mut index = if pats_prefixes.is_none() {
        crate::read::index::IndexSide::checking(Some(on_record))
    } else {
        crate::read::index::IndexSide::checking_some(Some(on_record))
    }
    .expect_nsec(tail.nsec());
    let rows = table_rows(table, tail.table_offset, 0)?;
    if let Some(f) = &first_paths
        && f.len() != rows.len()
    {
        return Err(Error::corrupt(format!(
            "META lists {} first paths for {} INDEX blocks",
            f.len(),
            rows.len()
        )));
    }
    if let Some(f) = &first_paths
        && f.windows(2)
            .any(|w| w[0].split('/').cmp(w[1].split('/')) != std::cmp::Ordering::Less)
    {
        return Err(Error::corrupt("META's first paths are not in tree order"));
    }
    let mut blocks = Blocks::new(src, &rows, first_paths);
    // Only the blocks that can hold a match, found by their first paths
    // (records are in tree order), when every pattern has a literal start.
    let selected: Vec<usize> = match pats_prefixes {
        None => (0..rows.len()).collect(),
        Some(prefixes) => {
            let mut sel = std::collections::BTreeSet::new();
            for p in &prefixes {
                sel.extend(blocks.covering(p)?);
            }
            sel.into_iter().collect()
        }
    };
    for i in selected {
        let r = rows[i];
        let body = blocks.body(i)?;
        // The block's records, checked, the wanted ones kept (a block
        // holds at most 65,536).
        index.block(r.offset, r.len, &body)?;
        let taken = std::mem::take(&mut *wanted.borrow_mut());
        for rec in taken {
            // Before a byte is read, a file that may not be replaced.
            if rec.kind == EntryKind::File {
                stage.check_target(&rec.path)?;
            }
            let reuse = cursor
                .as_ref()
                .is_some_and(|c| c.frame == rec.frame && c.pos <= rec.offset);
            if !reuse {
                let stream = src.stream(rec.frame, tail.table_offset)?;
                // Small reads: the decoder pulls only what the member needs.
                let mut dec = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(
                    16 * 1024,
                    stream,
                ))
                .map_err(|e| Error::io("decode", &src.shown, e))?;
                dec.window_log_max(crate::format::frame::MAX_WINDOW_LOG)
                    .map_err(|e| Error::io("decode", &src.shown, e))?;
                cursor = Some(Cursor {
                    frame: rec.frame,
                    pos: 0,
                    dec,
                });
            }
            let c = cursor.as_mut().expect("set above");
            let corrupt = |what: String| Error::corrupt(format!("{}: {what}", rec.path));
            let skip = rec.offset - c.pos;
            let skipped = io::copy(&mut (&mut c.dec).take(skip), &mut io::sink())
                .map_err(|e| corrupt(format!("data frame: {e}")))?;
            let mut h = [0u8; 512];
            if skipped != skip {
                return Err(corrupt("the data ends before its member".into()));
            }
            if let Err(e) = c.dec.read_exact(&mut h) {
                // A source's own archive fault (a chunk of an encrypted
                // archive that does not authenticate) says more.
                return Err(match Error::from_carrier(e) {
                    Ok(ours) if ours.is_archive_fault() => ours,
                    _ => corrupt("the data ends before its member".into()),
                });
            }
            c.pos = rec.offset + 512;
            crate::read::index::check_header(&h, &rec).map_err(&corrupt)?;
            let e = rec.entry();
            if rec.kind == EntryKind::Dir {
                stage.dir(&e)?;
                continue;
            }
            let mut out = stage.file(&e)?;
            let mut hasher = Sha256::new();
            let mut left = rec.size;
            let mut buf = vec![0u8; 256 * 1024];
            while left > 0 {
                let n = (left as usize).min(buf.len());
                c.dec
                    .read_exact(&mut buf[..n])
                    .map_err(|err| corrupt(format!("data frame: {err}")))?;
                hasher.update(&buf[..n]);
                out.write(&buf[..n])?;
                left -= n as u64;
            }
            c.pos += rec.size;
            if hasher.finalize().as_slice() != rec.sha256 {
                return Err(corrupt(
                    "content does not match its SHA-256 in the index".into(),
                ));
            }
            out.finish(&e)?;
            summary.files += 1;
            summary.bytes += rec.size;
        }
    }
    Ok(summary)
}
