//! sydra-archive: one verifiable `.tar.zst` file from a SydraDB data
//! directory, and back.
//!
//! The formats (`docs/FORMAT.md`): version 2 (what `create` writes) is a
//! HEAD skippable frame, the tar stream in independent zstd frames cut at
//! member boundaries, INDEX blocks (every member's path, kind, size,
//! mode, mtime, SHA-256, frame and offset), TABLE, META and a 128-byte
//! TAIL holding the SHA-256 of everything before it. Version 3 is an
//! incremental: a version-2 archive whose HEAD names its base (SHA-256,
//! size, TAIL digest, location, depth) and whose last members say what
//! else changed (`changes.ndjson`, WAL tails). Version 1 (HEAD, DATA,
//! SUMS, FOOT) is still read. Stock `zstd` and `tar` read all of them.
//!
//! The tree shows the architecture (`docs/ARCHITECTURE.md`); each folder
//! is one concern and may import only the ones listed before it:
//! - `error`, `sys`, `progress`: the error type, every libc call (by
//!   concern: stat, directories, renames, removals, space, the process),
//!   byte counters
//! - `format`: the bytes on disk (frames, HEAD, INDEX, TABLE, META, TAIL,
//!   version 1's SUMS and FOOT, incremental operations, path rules)
//! - `store`: where archives live (paths, atomic publish, cleanup, the
//!   shelf lock, the descriptor pool, the verified-digest cache, age, S3)
//! - `read`: checking an archive as a stream (input, decoding, sinks,
//!   workers, an incremental's own members), and `read/source`: an archive
//!   opened wherever it is (a path, stdin, an object; encrypted or not),
//!   read as a stream or at offsets
//! - [`sydradb`]: SydraDB's own formats, checks (and the sink that runs
//!   them for `verify --deep`), live capture, fixtures
//! - `write`: writing an archive (full or incremental, encrypted or not)
//!   to any `Write`
//! - `chain`: the one model of a chain (what each incremental means on
//!   its base's tree) and its links (archives opened at offsets and
//!   authenticated by the SHA-256 the link above recorded; their records,
//!   operations and members; where bases are and what is recorded of them)
//! - `shelf`: a directory or `s3://` prefix of archives (listed with each
//!   one's base; the newest restorable archive, the base of the next
//!   incremental)
//! - `metrics`: the node_exporter textfile of the last run
//!   (`--metrics-file`), written atomically
//! - `extract`: taking some files out of an archive (patterns, the INDEX
//!   blocks that can hold them, members read at offsets, from a stream or
//!   through a chain, staged and published all or none)
//! - `restore`: rebuilding a data dir (the target checked, the locked
//!   staging tree, a chain opened and modelled, its incrementals applied,
//!   published by rename or swap)
//! - `ops`: the commands, one file each (`create`, `verify` and `list`,
//!   `restore`, `extract`, `prune`; `ls` is the shelf's listing), each
//!   composing the folders above
//!
//! Everything a caller needs is re-exported here.

#![deny(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod chain;
mod error;
mod extract;
mod format;
mod merge;
mod metrics;
mod ops;
mod progress;
mod read;
mod restore;
mod shelf;
mod store;
pub mod sydradb;
mod sys;
mod write;

#[doc(hidden)] // for the fuzz target and tests: the chain model on trees in memory
pub use chain::apply_level;
#[doc(hidden)]
pub use chain::reference::reference_level;
pub use error::{Error, Result};
pub use extract::{ExtractSummary, ExtractTo};
pub use format::footer::{FOOT_LEN, Footer};
pub use format::head::{Entry, EntryKind, Head};
pub use format::incremental::{BaseRef, Change, StateEntry};
pub use format::path::check_path;
pub use format::sums::hex;
pub use merge::MergeCounts;
pub use metrics::{Metrics, Outcome, WatchMetrics};
pub use ops::create::{Output, create, create_on};
pub use ops::extract::{ExtractOptions, extract};
pub use ops::merge::{MergeSummary, created_unix_ms, merge};
pub use ops::output::output_for;
pub use ops::prune::{Kept, Pruned, prune};
pub use ops::restore::{RestoreOptions, RestoreSummary, restore};
pub use ops::verify::{
    ChainVisit, DeepSummary, list, list_chain, verify, verify_chain, verify_deep,
};
pub use ops::watch::{Levels, WatchEvent, WatchOptions, WatchStats, watch};
pub use progress::Progress;
pub use read::{
    Depth, FileSink, Info, NullSink, Plan, ReadSummary, Sink, Visit, list_archive, list_from_end,
    read_archive, read_archive_with,
};
pub use shelf::latest::{Chosen, choose_base, newest_restorable, restorable};
pub use shelf::points::{Point, parse_time, points, restorable_at};
pub use shelf::{Shelf, ls};
pub use store::cleanup::{install_signal_handlers, set_signal_exit_code};
pub use store::crypt::{Identities, Recipients, set_identities};
pub use store::location::Location;
pub use store::lock::{ShelfLock, lock_for_create, lock_shelf};
pub use store::retention::{Policy, Reason, timestamped_name, utc_time};
pub use store::s3::{
    Listed, Listing, Remote, RequestCounts, S3Options, S3Url, SCHEME as S3_SCHEME, Uploaded,
    request_counts,
};
pub use sydradb::deep::Problem;
pub use sydradb::live::WalPosition;
pub use sys::{closed_std_fds, record_closed_std_fds};
pub use write::{CreateOptions, CreateSummary, write_archive, write_synthetic};

/// The layering the tree shows, checked: each folder imports only the
/// folders before it (and itself), so there is no import circle and
/// `format` depends on nothing but `error`.
#[cfg(test)]
mod architecture {
    /// Top-level modules, each with what it may import.
    const LAYERS: &[(&str, &[&str])] = &[
        ("error", &[]),
        ("sys", &[]),
        ("progress", &[]),
        ("format", &["error"]),
        ("store", &["error", "sys", "format"]),
        ("read", &["error", "progress", "format", "store"]),
        ("sydradb", &["error", "sys", "format", "read"]),
        (
            "write",
            &["error", "sys", "progress", "format", "store", "sydradb"],
        ),
        ("chain", &["error", "format", "store", "read"]),
        ("shelf", &["error", "format", "store", "chain"]),
        ("metrics", &["error", "store", "write"]),
        (
            "extract",
            &["error", "sys", "format", "store", "read", "chain"],
        ),
        (
            "merge",
            &["error", "format", "store", "read", "chain", "write"],
        ),
        (
            "restore",
            &[
                "error", "sys", "progress", "format", "store", "read", "write", "chain",
            ],
        ),
        (
            "ops",
            &[
                "error", "sys", "progress", "format", "store", "read", "sydradb", "write", "chain",
                "shelf", "metrics", "extract", "restore", "merge",
            ],
        ),
    ];

    fn sources(module: &str) -> Vec<(std::path::PathBuf, String)> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let file = src.join(format!("{module}.rs"));
        let mut out = Vec::new();
        if file.exists() {
            out.push((file.clone(), std::fs::read_to_string(&file).unwrap()));
        }
        let mut dirs = vec![src.join(module)];
        while let Some(d) = dirs.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    out.push((p, text));
                }
            }
        }
        out
    }

    #[test]
    fn each_folder_imports_only_the_layers_below_it() {
        for (module, allowed) in LAYERS {
            let files = sources(module);
            assert!(!files.is_empty(), "no sources for {module}");
            for (path, text) in files {
                for (i, _) in text.match_indices("crate::") {
                    let used: String = text[i + 7..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    assert!(
                        used == *module || allowed.contains(&used.as_str()),
                        "{} imports crate::{used}, which {module} may not",
                        path.display()
                    );
                }
            }
        }
    }
}
