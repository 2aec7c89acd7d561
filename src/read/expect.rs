//! What each tar member is checked against before a byte of it is handed
//! on: the next HEAD entry of a version-1 archive ([`HeadExpect`]), or the
//! rules every member obeys on its own plus the index record it must have
//! in a version-2 archive ([`Rebuild`]).

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::head::{Entry, EntryKind, Head};
use crate::format::path::check_path;
use crate::format::v2::{Record, TreeOrder};
use crate::read::index::Counted;

/// A tar member as its headers describe it.
pub struct Seen<'m> {
    /// Its path (GNU long name and pax path applied).
    pub path: std::borrow::Cow<'m, [u8]>,
    /// File or directory (anything else was refused).
    pub kind: EntryKind,
    /// Size.
    pub size: u64,
    /// Mode bits of the header.
    pub mode: u32,
    /// Modification time of the header.
    pub mtime: u64,
    /// Archive offset of the frame holding its header block, and the
    /// block's offset in that frame's content.
    pub frame: Option<(u64, u64)>,
}

impl Seen<'_> {
    /// The path with one trailing `/` of a directory removed.
    fn path(&self) -> &[u8] {
        let p: &[u8] = &self.path;
        if self.kind == EntryKind::Dir && p.len() > 1 && p.ends_with(b"/") {
            &p[..p.len() - 1]
        } else {
            p
        }
    }

    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// Checks members in order and collects their digests.
pub trait Expect {
    /// Checks the next member; returns the entry to hand on.
    fn member(&mut self, m: &Seen<'_>) -> Result<Entry>;
    /// The digest of file number `file` (in any order).
    fn digest(&mut self, file: usize, sha256: [u8; 32]) -> Result<()>;
    /// Records or digests still waiting.
    fn waiting(&self) -> usize;
    /// No more members (and every digest is in).
    fn end(&mut self) -> Result<()>;
}

/// A version-1 archive: each member is the next HEAD entry.
pub struct HeadExpect<'h> {
    head: &'h Head,
    idx: usize,
    digests: Vec<[u8; 32]>,
}

impl<'h> HeadExpect<'h> {
    pub fn new(head: &'h Head) -> Self {
        HeadExpect {
            head,
            idx: 0,
            digests: vec![[0u8; 32]; head.file_count()],
        }
    }

    /// The digest of every file, in order.
    pub fn into_digests(self) -> Vec<[u8; 32]> {
        self.digests
    }
}

impl Expect for HeadExpect<'_> {
    fn member(&mut self, m: &Seen<'_>) -> Result<Entry> {
        let shown = m.shown();
        let Some(want) = self.head.entries.get(self.idx) else {
            return Err(Error::hostile(shown, "tar member not listed in HEAD"));
        };
        if m.path() != want.path.as_bytes() {
            return Err(Error::hostile(
                shown,
                format!("tar member does not match HEAD entry {:?}", want.path),
            ));
        }
        if m.kind != want.kind {
            return Err(Error::hostile(
                shown,
                format!(
                    "tar member is a {} but HEAD says {}",
                    m.kind.as_str(),
                    want.kind.as_str()
                ),
            ));
        }
        if m.size != want.size {
            return Err(Error::hostile(
                shown,
                format!(
                    "tar member is {} bytes but HEAD declares {}",
                    m.size, want.size
                ),
            ));
        }
        self.idx += 1;
        Ok(want.clone())
    }

    fn digest(&mut self, file: usize, sha256: [u8; 32]) -> Result<()> {
        match self.digests.get_mut(file) {
            Some(d) => {
                *d = sha256;
                Ok(())
            }
            None => Err(Error::corrupt("more files than HEAD lists")),
        }
    }

    fn waiting(&self) -> usize {
        0
    }

    fn end(&mut self) -> Result<()> {
        match self.head.entries.get(self.idx) {
            Some(missing) => Err(Error::hostile(
                &missing.path,
                "HEAD entry missing from the tar stream",
            )),
            None => Ok(()),
        }
    }
}

/// A version-2 archive: each member is checked on its own, and the index
/// records the members make are hashed in order as their digests arrive.
pub struct Rebuild {
    order: TreeOrder,
    /// Records waiting for their digest (files) or for those before them.
    pending: VecDeque<(Record, Option<usize>)>,
    /// Digests that came before their record reached the front.
    early: HashMap<usize, [u8; 32]>,
    files_seen: usize,
    hasher: Sha256,
    encoded: Vec<u8>,
    /// Records hashed.
    pub records: u64,
    /// Files, directories and file bytes seen.
    pub counted: Counted,
    /// Paths of an incremental archive (version 3) are allowed.
    pub incremental: bool,
    /// Members handed on so far, shared with the index side (an INDEX
    /// block lists only members before it).
    pub members: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Rebuild {
    fn default() -> Self {
        Rebuild {
            order: TreeOrder::default(),
            pending: VecDeque::new(),
            early: HashMap::new(),
            files_seen: 0,
            hasher: Sha256::new(),
            encoded: Vec::new(),
            members: Default::default(),
            records: 0,
            counted: Counted::default(),
            incremental: false,
        }
    }
}

impl Rebuild {
    /// SHA-256 of the records rebuilt, once every digest is in.
    pub fn digest(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }

    fn settle(&mut self) {
        while let Some((_, file)) = self.pending.front() {
            let sha = match file {
                None => [0u8; 32],
                Some(n) => match self.early.remove(n) {
                    Some(d) => d,
                    None => break,
                },
            };
            let (mut rec, _) = self.pending.pop_front().expect("front exists");
            rec.sha256 = sha;
            self.encoded.clear();
            rec.encode(&mut self.encoded);
            self.hasher.update(&self.encoded);
            self.records += 1;
        }
    }
}

impl Expect for Rebuild {
    fn member(&mut self, m: &Seen<'_>) -> Result<Entry> {
        self.members
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shown = m.shown();
        let Ok(path) = std::str::from_utf8(m.path()) else {
            return Err(Error::hostile(shown, "path is not valid UTF-8"));
        };
        let is_dir = m.kind == EntryKind::Dir;
        if self.incremental {
            crate::format::incremental::check_incremental_path(path, is_dir)
        } else {
            check_path(path, is_dir)
        }
        .map_err(|why| Error::hostile(path, why))?;
        self.order
            .next(path, m.kind)
            .map_err(|why| Error::hostile(path, why))?;
        if is_dir && m.size != 0 {
            return Err(Error::hostile(path, "directory with a non-zero size"));
        }
        if m.mtime > i64::MAX as u64 {
            return Err(Error::hostile(path, "impossible mtime"));
        }
        let Some((frame, offset)) = m.frame else {
            return Err(Error::corrupt(format!(
                "tar member {path:?} is not inside a data frame"
            )));
        };
        let file = (!is_dir).then(|| {
            self.files_seen += 1;
            self.files_seen - 1
        });
        self.counted.add(m.kind, m.size)?;
        let rec = Record {
            path: path.to_string(),
            kind: m.kind,
            mode: m.mode,
            mtime: m.mtime,
            // A tar header holds whole seconds: compared as such (FORMAT.md A.4).
            mtime_nsec: None,
            size: m.size,
            frame,
            offset,
            sha256: [0; 32],
        };
        let entry = rec.entry();
        self.pending.push_back((rec, file));
        self.settle();
        Ok(entry)
    }

    fn digest(&mut self, file: usize, sha256: [u8; 32]) -> Result<()> {
        self.early.insert(file, sha256);
        self.settle();
        Ok(())
    }

    fn waiting(&self) -> usize {
        self.pending.len()
    }

    fn end(&mut self) -> Result<()> {
        self.settle();
        if !self.pending.is_empty() {
            return Err(Error::corrupt("a file's digest never arrived"));
        }
        Ok(())
    }
}
