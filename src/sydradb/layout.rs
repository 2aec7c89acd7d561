//! What each file of a SydraDB data directory is, for the checks it gets.
//! (Which names an archive may hold at all is the format's path rule,
//! [`crate::format::path`].)

/// What a file is to SydraDB, for the checks it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `MANIFEST`: newline-terminated JSON objects.
    Manifest,
    /// `tags.json`: one JSON object.
    Tags,
    /// `wal/*.wal`: WAL records.
    Wal,
    /// `segments/<hour>/*.seg`: a SYSEG2/SYSEG1 segment.
    Segment,
    /// Anything else inside the layout: archived without checks.
    Other,
}

/// Classifies an archive path.
pub fn kind_of(path: &str) -> FileKind {
    if path == "MANIFEST" {
        FileKind::Manifest
    } else if path == "tags.json" {
        FileKind::Tags
    } else if path.starts_with("wal/") && path.ends_with(".wal") {
        FileKind::Wal
    } else if path.starts_with("segments/") && path.ends_with(".seg") {
        FileKind::Segment
    } else {
        FileKind::Other
    }
}
