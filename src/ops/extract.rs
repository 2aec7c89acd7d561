//! `extract`: some files out of an archive, without the rest.
//!
//! The command composes `crate::extract`: a version-2 archive is read
//! at offsets through its index, an incremental through its chain (every
//! file from the archive of the chain that holds it), anything else whole
//! as a stream; the files are staged, checked, then published.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::extract::stage::Stage;
use crate::extract::stream::StreamSink;
use crate::extract::{AtOffsets, ExtractSummary, ExtractTo, Patterns, by_index};
use crate::format::head::EntryKind;
use crate::read::source::RandomSource;
use crate::read::{Depth, read_end};
use crate::store::location::Location;

/// What to extract and where.
#[derive(Debug, Clone)]
pub struct ExtractOptions {
    /// Archive paths or globs (`*` and `?` within a path component); a
    /// directory's pattern takes everything below it. Empty: everything.
    pub patterns: Vec<String>,
    /// The destination.
    pub to: ExtractTo,
    /// Replace existing files.
    pub force: bool,
    /// For an incremental: bases it may have been made on, besides where
    /// it recorded them.
    pub bases: Vec<Location>,
}

/// Extracts from the archive at `loc`.
pub fn extract(loc: &Location, opts: &ExtractOptions) -> Result<ExtractSummary> {
    let reader = crate::read::source::open_archive(loc, None)?;
    if reader.is_encrypted() && matches!(opts.to, ExtractTo::Stdout) {
        return Err(Error::Refused(format!(
            "{loc} is encrypted: extracting to stdout would stage the plaintext in the temporary directory; use -o FILE or -C DIR"
        )));
    }
    let src = reader.random_access()?;
    let mut stage = Stage::new(&opts.to, opts.force)?;
    let mut pats = Patterns::new(&opts.patterns);
    let got = match &src {
        Some(src) => match read_end(src.size, &mut |at, buf| src.read_at(at, buf), &src.shown) {
            Ok(Some((tail, _, _))) if tail.version == crate::format::incremental::VERSION3 => {
                by_chain(loc, &opts.bases, &mut pats, &mut stage).map(Some)
            }
            Ok(Some((tail, meta, table))) => {
                by_index(src, &tail, &table, meta.first_paths, &mut pats, &mut stage).map(Some)
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        },
        None => Ok(None),
    };
    let mut summary = match got {
        Ok(Some(s)) => s,
        Ok(None) => {
            // Read whole: version 1, or not at offsets.
            let mut sink = StreamSink::new(pats, &stage);
            let read = reader.read_into(Depth::Full, &mut sink);
            let (files, bytes) = stage.streamed();
            pats = sink.into_patterns();
            match read {
                Ok(r) if r.info.base.is_some() => {
                    return Err(stage.abandon(Error::Refused(format!(
                        "{loc} is an incremental archive: extract from it where it can be read at offsets (a file or an object), so that its bases are found"
                    ))));
                }
                Ok(r) => ExtractSummary {
                    files,
                    bytes,
                    read_bytes: r.bytes,
                    streamed: true,
                    ..ExtractSummary::default()
                },
                Err(e) => return Err(stage.abandon(e)),
            }
        }
        Err(e) => return Err(stage.abandon(e)),
    };
    if let Err(e) = pats.check_all_used() {
        return Err(stage.abandon(e));
    }
    if let Some(src) = &src
        && !summary.streamed
        && summary.reads == 0
    {
        (summary.reads, summary.read_bytes) = src.counts();
    }
    summary.dirs = stage.publish()?;
    Ok(summary)
}

/// Extracts the wanted files of the whole tree an incremental's chain
/// describes: each from the archive of the chain that holds it, read at
/// offsets (an appended WAL file from its base's file and its tail),
/// checked against the SHA-256 the tree records for it.
fn by_chain(
    loc: &Location,
    bases: &[Location],
    pats: &mut Patterns,
    stage: &mut Stage,
) -> Result<ExtractSummary> {
    let links = crate::chain::open_chain(loc, bases)?;
    let mut summary = ExtractSummary::default();
    for e in crate::chain::state(&links)? {
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
        crate::chain::write_content(&links, &e, &mut |buf| {
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

/// A file or an object read at offsets, as extracting by the index reads
/// one.
impl AtOffsets for RandomSource {
    fn read_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        RandomSource::read_at(self, at, buf)
    }

    fn stream(&self, at: u64, end: u64) -> Result<Box<dyn std::io::Read + '_>> {
        RandomSource::stream(self, at, end)
    }

    fn shown(&self) -> &str {
        &self.shown
    }
}
