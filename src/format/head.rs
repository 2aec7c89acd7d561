//! HEAD: the JSON header that lists every entry before the data.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::path;

/// The `format` value of every archive.
pub const FORMAT_NAME: &str = "sydra-archive";
/// The format version this build writes and reads.
pub const VERSION: u64 = 1;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

impl EntryKind {
    /// The word used in HEAD and in listings.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
        }
    }
}

/// One archive member, as HEAD declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative `/`-separated path.
    pub path: String,
    /// File or directory.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// Nanoseconds past `mtime` (below 1,000,000,000); 0 where the archive
    /// holds whole seconds only (version 1, and archives written before
    /// records carried them).
    /// Never in a version-1 HEAD (which has whole seconds): not read
    /// from one, nor written.
    #[serde(skip)]
    pub mtime_nsec: u32,
}

impl Entry {
    /// Its modification time (a negative `mtime` is taken as the epoch).
    pub fn modified(&self) -> std::time::SystemTime {
        std::time::UNIX_EPOCH
            + std::time::Duration::new(
                self.mtime.max(0) as u64,
                self.mtime_nsec.min(crate::format::v2::MAX_NSEC),
            )
    }
}

/// The decoded HEAD frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Head {
    /// Always `sydra-archive`.
    pub format: String,
    /// Always 1 for this format.
    pub version: u64,
    /// When the archive was written.
    pub created_unix_ms: u64,
    /// The writer, e.g. `sydra-archive 0.1.0`.
    pub tool: String,
    /// The data directory as given to `create`.
    pub source: String,
    /// The zstd level used.
    pub zstd_level: i32,
    /// Every member, in archive order.
    pub entries: Vec<Entry>,
    /// Sum of the sizes of all file entries.
    pub total_bytes: u64,
    /// Top-level names left out of the archive (informational).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// The WAL position captured: per WAL file, the size seen, the bytes
    /// archived, the whole records they hold and any damaged records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wal: Vec<WalPosition>,
    /// Problems found while the data dir was scanned (informational).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Compares archive paths component by component (the order of a tree
/// walk with each directory's names sorted by bytes).
fn tree_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

fn check_format(format: Option<&str>) -> Result<()> {
    match format {
        Some(FORMAT_NAME) => Ok(()),
        _ => Err(Error::corrupt(
            "HEAD does not declare format \"sydra-archive\"",
        )),
    }
}

fn check_version(version: Option<u64>) -> Result<()> {
    match version {
        Some(VERSION) => Ok(()),
        Some(v) => Err(Error::UnsupportedVersion(v)),
        None => Err(Error::corrupt("HEAD has no numeric version")),
    }
}

#[derive(Deserialize)]
struct Probe {
    format: Option<serde_json::Value>,
    version: Option<serde_json::Value>,
}

impl Head {
    /// Encodes HEAD as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("HEAD serializes")
    }

    /// Decodes and validates a HEAD body: format name, version, and every
    /// structural rule ([`Head::validate`]).
    pub fn parse(body: &[u8]) -> Result<Head> {
        // One pass in the usual case; only a HEAD that does not decode is
        // probed again, to say whether it is another format or version.
        let head = match serde_json::from_slice::<Head>(body) {
            Ok(head) => head,
            Err(e) => {
                let probe: Probe = serde_json::from_slice(body)
                    .map_err(|e| Error::corrupt(format!("HEAD is not valid JSON: {e}")))?;
                check_format(probe.format.as_ref().and_then(|v| v.as_str()))?;
                check_version(probe.version.as_ref().and_then(|v| v.as_u64()))?;
                return Err(Error::corrupt(format!(
                    "HEAD does not match format version 1: {e}"
                )));
            }
        };
        check_format(Some(&head.format))?;
        check_version(Some(head.version))?;
        head.validate()?;
        Ok(head)
    }

    /// Checks the rules every HEAD obeys: legal canonical paths inside the
    /// layout, no duplicates, every directory before its contents, directory
    /// sizes 0, and `total_bytes` equal to the sum of file sizes.
    pub fn validate(&self) -> Result<()> {
        // Paths in strictly increasing order (component by component, as
        // writers list a tree) cannot repeat; only a HEAD out of that order
        // needs the set of paths seen.
        let mut seen: Option<HashSet<&str>> = None;
        let mut dirs: HashSet<&str> = HashSet::new();
        let mut last_parent: Option<&str> = None;
        let mut total: u64 = 0;
        for (i, e) in self.entries.iter().enumerate() {
            let is_dir = e.kind == EntryKind::Dir;
            path::check_path(&e.path, is_dir).map_err(|why| Error::hostile(&e.path, why))?;
            if e.mtime < 0 {
                return Err(Error::corrupt(format!(
                    "HEAD entry {:?} has a negative mtime {}",
                    e.path, e.mtime
                )));
            }
            let fresh = match &mut seen {
                Some(seen) => seen.insert(e.path.as_str()),
                None if i == 0 || tree_order(&self.entries[i - 1].path, &e.path).is_lt() => true,
                None => {
                    let mut set: HashSet<&str> = HashSet::with_capacity(self.entries.len());
                    set.extend(self.entries[..i].iter().map(|e| e.path.as_str()));
                    seen.insert(set).insert(e.path.as_str())
                }
            };
            if !fresh {
                return Err(Error::hostile(&e.path, "duplicate path in HEAD"));
            }
            let parent = path::parent(&e.path);
            if let Some(parent) = parent
                && parent != last_parent.unwrap_or("")
                && !dirs.contains(parent)
            {
                return Err(Error::hostile(
                    &e.path,
                    format!("parent directory {parent:?} is not declared before it"),
                ));
            }
            last_parent = parent;
            if is_dir {
                if e.size != 0 {
                    return Err(Error::hostile(&e.path, "directory with a non-zero size"));
                }
                dirs.insert(&e.path);
            } else {
                total = total
                    .checked_add(e.size)
                    .ok_or_else(|| Error::corrupt("HEAD sizes overflow"))?;
            }
        }
        if total != self.total_bytes {
            return Err(Error::corrupt(format!(
                "HEAD total_bytes {} does not equal the sum of file sizes {total}",
                self.total_bytes
            )));
        }
        Ok(())
    }

    /// Number of file entries.
    pub fn file_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .count()
    }
}

/// What `create`'s WAL pre-pass found in one WAL file, as HEAD records
/// it: the position of the WAL captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalPosition {
    /// Archive path.
    pub path: String,
    /// Size when it was opened.
    pub size_seen: u64,
    /// Bytes archived: up to the last whole record whose CRC matches.
    pub archived: u64,
    /// Whole records with matching CRCs in the archived part.
    pub records: u64,
    /// Offsets of damaged records kept in the archived part (damage on
    /// disk, not a live write).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<u64>,
}

impl WalPosition {
    /// Bytes left out at the end (an incomplete record being appended).
    pub fn cut_bytes(&self) -> u64 {
        self.size_seen - self.archived
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn entry(path: &str, kind: EntryKind, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind,
            size,
            mode: 0o644,
            mtime: 1,
            mtime_nsec: 0,
        }
    }

    pub(crate) fn sample() -> Head {
        Head {
            format: FORMAT_NAME.into(),
            version: 1,
            created_unix_ms: 5,
            tool: "t".into(),
            source: "s".into(),
            zstd_level: 3,
            entries: vec![
                entry("MANIFEST", EntryKind::File, 3),
                entry("wal", EntryKind::Dir, 0),
                entry("wal/current.wal", EntryKind::File, 33),
            ],
            total_bytes: 36,
            skipped: vec![],
            wal: vec![],
            warnings: vec![],
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let json = h.to_json();
        let text = std::str::from_utf8(&json).unwrap();
        assert!(text.contains(r#""type":"file""#), "{text}");
        let back = Head::parse(&json).unwrap();
        assert_eq!(back.entries, h.entries);
    }

    #[test]
    fn unknown_fields_are_ignored_and_versions_checked() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["future_field"] = serde_json::json!({"x": 1});
        assert!(Head::parse(&serde_json::to_vec(&v).unwrap()).is_ok());
        let parse = |v: &serde_json::Value| Head::parse(&serde_json::to_vec(v).unwrap());
        // Another version is named as such, whether or not it decodes as v1.
        v["version"] = serde_json::json!(2);
        let e = parse(&v).unwrap_err();
        assert!(matches!(e, Error::UnsupportedVersion(2)), "{e}");
        v["entries"] = serde_json::json!("different shape");
        let e = parse(&v).unwrap_err();
        assert!(matches!(e, Error::UnsupportedVersion(2)), "{e}");
        // Version 1 in another shape is a corrupt v1 HEAD.
        v["version"] = serde_json::json!(1);
        let e = parse(&v).unwrap_err();
        assert!(
            e.to_string().contains("does not match format version 1"),
            "{e}"
        );
        // Another format is refused before its version is looked at.
        for entries in [sample_entries(), serde_json::json!("different shape")] {
            v["entries"] = entries;
            v["format"] = serde_json::json!("tarball");
            v["version"] = serde_json::json!(7);
            let e = parse(&v).unwrap_err();
            assert!(e.to_string().contains("does not declare format"), "{e}");
        }
    }

    fn sample_entries() -> serde_json::Value {
        serde_json::to_value(&sample().entries).unwrap()
    }

    #[test]
    fn structural_rules() {
        let mut h = sample();
        h.entries.swap(1, 2); // file before its directory
        assert!(h.validate().is_err());

        let mut h = sample();
        h.entries.push(entry("MANIFEST", EntryKind::File, 0));
        assert!(h.validate().unwrap_err().to_string().contains("duplicate"));

        let mut h = sample();
        h.total_bytes += 1;
        assert!(h.validate().is_err());

        let mut h = sample();
        h.entries[2].path = "wal/../../etc/x".into();
        assert!(h.validate().unwrap_err().is_archive_fault());

        assert!(Head::parse(b"not json").is_err());
        assert!(Head::parse(br#"{"format":"tar","version":1}"#).is_err());
    }

    /// A HEAD in tree order, then the same entries shuffled and duplicated
    /// in ways that only the set of seen paths can catch.
    #[test]
    fn duplicates_are_found_in_and_out_of_tree_order() {
        let tree = || {
            let mut h = sample();
            h.entries = vec![
                entry("MANIFEST", EntryKind::File, 3),
                entry("segments", EntryKind::Dir, 0),
                entry("segments/1", EntryKind::Dir, 0),
                entry("segments/1/a", EntryKind::File, 10),
                entry("segments/1-2", EntryKind::Dir, 0),
                entry("segments/1-2/b", EntryKind::File, 20),
                entry("segments/10", EntryKind::Dir, 0),
                entry("wal", EntryKind::Dir, 0),
                entry("wal/current.wal", EntryKind::File, 3),
            ];
            h.total_bytes = 36;
            h
        };
        tree().validate().unwrap();
        assert!(tree_order("segments/1/a", "segments/1-2").is_lt());
        assert!(tree_order("segments/1-2", "segments/1/a").is_gt());

        // Out of tree order but legal (parents first, no repeats): accepted.
        let mut h = tree();
        h.entries.swap(2, 4);
        h.entries.swap(3, 5);
        h.validate().unwrap();

        let dup = |h: &mut Head, i: usize, at: usize| {
            let e = h.entries[i].clone();
            h.total_bytes += e.size;
            h.entries.insert(at, e);
        };
        // Next to itself, later after other entries, and after the order
        // broke elsewhere first.
        for (i, at) in [(3, 4), (3, 8), (0, 9), (5, 9)] {
            let mut h = tree();
            dup(&mut h, i, at);
            let e = h.validate().unwrap_err();
            assert!(e.to_string().contains("duplicate"), "{i}->{at}: {e}");
        }
        let mut h = tree();
        h.entries.swap(2, 4);
        h.entries.swap(3, 5);
        dup(&mut h, 5, 8);
        assert!(h.validate().unwrap_err().to_string().contains("duplicate"));
    }
}
