//! `extract`: some files out of an archive, without the rest.
//!
//! The command composes `crate::extract`: a version-2 archive is read
//! at offsets through its index, an incremental through its chain (every
//! file from the archive of the chain that holds it), anything else whole
//! as a stream; the files are staged, checked, then published.

use crate::error::{Error, Result};
use crate::extract::stage::Stage;
use crate::extract::stream::StreamSink;
use crate::extract::{ExtractSummary, ExtractTo, Patterns, by_chain, by_index};
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
