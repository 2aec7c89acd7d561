//! Fuzz the archive reader: any input must give Ok or an error — never a
//! panic, a hang, an allocation driven by a declared length, or a member
//! handed on that HEAD did not declare.
#![no_main]

use std::path::Path;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use sydra_archive::{Entry, EntryKind, Head};
use sydra_archive::check_path;
use sydra_archive::{Depth, FileSink, Sink, read_archive};

/// A sink that checks the reader's promises to restore.
#[derive(Default)]
struct Checker {
    declared: Vec<Entry>,
    dirs_seen: Mutex<usize>,
}

struct CheckFile {
    size: u64,
    seen: u64,
}

impl Checker {
    fn expect(&self, e: &Entry) {
        assert!(self.declared.contains(e), "only HEAD-declared members");
        assert!(check_path(&e.path, e.kind == EntryKind::Dir).is_ok());
    }
}

impl Sink for Checker {
    type File = CheckFile;
    fn head(&mut self, head: &Head) -> sydra_archive::Result<()> {
        head.validate().expect("reader hands on only valid HEADs");
        self.declared = head.entries.clone();
        Ok(())
    }
    fn dir(&self, e: &Entry) -> sydra_archive::Result<()> {
        self.expect(e);
        *self.dirs_seen.lock().unwrap() += 1;
        Ok(())
    }
    fn file(&self, e: &Entry) -> sydra_archive::Result<CheckFile> {
        self.expect(e);
        Ok(CheckFile { size: e.size, seen: 0 })
    }
}

impl FileSink for CheckFile {
    fn write(&mut self, data: &[u8]) -> sydra_archive::Result<()> {
        self.seen += data.len() as u64;
        assert!(self.seen <= self.size, "never more than declared");
        Ok(())
    }
    fn finish(self, e: &Entry) -> sydra_archive::Result<()> {
        assert_eq!(self.size, self.seen);
        assert_eq!(e.size, self.seen);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = read_archive(data, Path::new("fuzz"), Depth::Full, &mut Checker::default());
    let _ = read_archive(data, Path::new("fuzz"), Depth::Quick, &mut Checker::default());
});
