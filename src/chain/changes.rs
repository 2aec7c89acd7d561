//! A link's operations (`changes.ndjson`), each checked, in strict tree
//! order: small ones read whole, larger ones decoded once into a shared
//! spill file and read back at offsets.

use std::io::{BufRead, BufReader, Read};
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::format::incremental::{CHANGES_PATH, Change, ChangeOrder, MAX_CHANGE_LINE};

use super::link::Link;

impl Link {
    /// The operations of an incremental, in order. Small ones (most: a
    /// night's changes) are read whole at once, so a merge of a long
    /// chain holds no decoder per archive; larger ones stream.
    pub fn changes(&self) -> Result<Changes<Box<dyn Read + '_>>> {
        self.changes_in(None)
    }

    /// [`Link::changes`], larger ones decoded into `spill` first (made
    /// then if there is none yet).
    pub fn changes_in(
        &self,
        spill: Option<&mut Option<Rc<Spill>>>,
    ) -> Result<Changes<Box<dyn Read + '_>>> {
        let Some(rec) = self.find_last(CHANGES_PATH)? else {
            return Err(Error::corrupt(format!(
                "{} is an incremental archive without its {CHANGES_PATH}",
                self.loc
            )));
        };
        let mut member = self.member(&rec)?;
        if rec.size > SMALL_CHANGES {
            return Ok(match spill {
                None => Changes::new(Box::new(member)),
                Some(slot) => {
                    if slot.is_none() {
                        *slot = Some(Rc::new(Spill::new()?));
                    }
                    let spill = slot.as_ref().expect("made");
                    let (at, end) = spill.put(&mut member, &self.loc.to_string())?;
                    Changes::new(Box::new(SpillRange {
                        spill: Rc::clone(spill),
                        at,
                        end,
                    }))
                }
            });
        }
        let mut all = Vec::with_capacity(rec.size as usize);
        member
            .read_to_end(&mut all)
            .map_err(|e| crate::error::from_io(e, "read", &self.loc.name()))?;
        Ok(Changes::new(Box::new(std::io::Cursor::new(all))))
    }
}

/// Operations up to this size are read whole (see [`Link::changes`]).
const SMALL_CHANGES: u64 = 16 * 1024;

/// Larger operations of a chain's links, decoded once into one unlinked
/// temporary file and read back at offsets: a merge of a long chain
/// holds no decoder, and no descriptor, per archive.
pub struct Spill {
    file: std::fs::File,
    end: std::cell::Cell<u64>,
}

impl Spill {
    /// A new, empty spill file (in `$TMPDIR`).
    pub fn new() -> Result<Spill> {
        let file = tempfile::tempfile().map_err(|e| {
            Error::io("create a temporary file for", CHANGES_PATH, e).also(format!(
                "the temporary directory is {} ($TMPDIR)",
                std::env::temp_dir().display()
            ))
        })?;
        Ok(Spill {
            file,
            end: std::cell::Cell::new(0),
        })
    }

    /// Appends all of `r`; returns where it landed.
    fn put(&self, r: &mut dyn Read, name: &str) -> Result<(u64, u64)> {
        use std::os::unix::fs::FileExt;
        let start = self.end.get();
        let mut at = start;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(crate::error::from_io(e, "read", name.as_ref())),
            };
            self.file
                .write_all_at(&buf[..n], at)
                .map_err(|e| Error::io("write", "a temporary file", e))?;
            at += n as u64;
        }
        self.end.set(at);
        Ok((start, at))
    }
}

/// A range of the spill file.
struct SpillRange {
    spill: Rc<Spill>,
    at: u64,
    end: u64,
}

impl Read for SpillRange {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = (buf.len() as u64).min(self.end - self.at) as usize;
        if n == 0 {
            return Ok(0);
        }
        let got = self.spill.file.read_at(&mut buf[..n], self.at)?;
        self.at += got as u64;
        Ok(got)
    }
}

/// An incremental's operations, each checked, in strict tree order.
pub struct Changes<R> {
    lines: BufReader<R>,
    order: ChangeOrder,
    line: Vec<u8>,
}

impl<R: Read> Changes<R> {
    /// The operations read from `r` (the content of [`CHANGES_PATH`]).
    pub fn new(r: R) -> Self {
        Changes {
            lines: BufReader::with_capacity(8 * 1024, r),
            order: ChangeOrder::default(),
            line: Vec::new(),
        }
    }
}

impl<R: Read> Iterator for Changes<R> {
    type Item = Result<Change>;

    fn next(&mut self) -> Option<Result<Change>> {
        self.line.clear();
        let got = (&mut self.lines)
            .take(MAX_CHANGE_LINE as u64 + 1)
            .read_until(b'\n', &mut self.line);
        match got {
            Err(e) => return Some(Err(crate::error::from_io(e, "read", CHANGES_PATH.as_ref()))),
            Ok(0) => return None,
            Ok(_) => {}
        }
        if self.line.last() != Some(&b'\n') {
            return Some(Err(Error::corrupt(format!(
                "{CHANGES_PATH}: a line longer than {MAX_CHANGE_LINE} bytes, or the last one without its newline"
            ))));
        }
        Some(self.order.next(&self.line[..self.line.len() - 1]))
    }
}
