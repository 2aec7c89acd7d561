//! Extracting from an incremental: the whole tree its chain describes,
//! each wanted file read at offsets from the archive of the chain that
//! holds it (an appended WAL file from its base's file and its tails),
//! checked against the size and SHA-256 the tree records for it.

use sha2::{Digest, Sha256};

use crate::chain::{open_chain, state, write_content};
use crate::error::{Error, Result};
use crate::extract::ExtractSummary;
use crate::extract::patterns::Patterns;
use crate::extract::stage::Stage;
use crate::format::head::EntryKind;
use crate::store::location::Location;

/// Extracts the wanted files of the whole tree an incremental's chain
/// describes: each from the archive of the chain that holds it, read at
/// offsets (an appended WAL file from its base's file and its tail),
/// checked against the SHA-256 the tree records for it.
pub fn by_chain(
    loc: &Location,
    bases: &[Location],
    pats: &mut Patterns,
    stage: &mut Stage,
) -> Result<ExtractSummary> {
    let links = open_chain(loc, bases)?;
    let mut summary = ExtractSummary::default();
    for e in state(&links)? {
        let e = e?;
        if !pats.wants(&e.path) {
            continue;
        }
        let entry = e.entry();
        if e.kind == EntryKind::Dir {
            stage.dir(&entry)?;
            continue;
        }
        stage.check_target(&e.path)?;
        let mut out = stage.file(&entry)?;
        let mut hasher = Sha256::new();
        let mut len = 0u64;
        write_content(&links, &e, &mut |buf| {
            hasher.update(buf);
            len += buf.len() as u64;
            out.write(buf)
        })?;
        if len != e.size || hasher.finalize().as_slice() != e.sha256 {
            return Err(Error::corrupt(format!(
                "{}: its content does not match the size and SHA-256 its chain records",
                e.path
            )));
        }
        out.finish(&entry)?;
        summary.files += 1;
        summary.bytes += e.size;
    }
    for l in &links {
        let (reads, bytes) = l.src.counts();
        summary.reads += reads;
        summary.read_bytes += bytes;
    }
    summary.streamed = false;
    Ok(summary)
}
