//! Fuzz the archive reader: any input must give Ok or an error — never a
//! panic, a hang, an allocation driven by a declared length, or a member
//! handed on that HEAD did not declare.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sydra_archive::head::{Entry, EntryKind, Head};
use sydra_archive::layout::check_path;
use sydra_archive::read::{Depth, Sink, read_archive};

/// A sink that checks the reader's promises to restore.
#[derive(Default)]
struct Checker {
    declared: Vec<Entry>,
    next: usize,
    current: Option<(u64, u64)>, // (declared size, bytes seen)
}

impl Checker {
    fn expect(&mut self, e: &Entry) {
        assert_eq!(&self.declared[self.next], e, "members come in HEAD order");
        self.next += 1;
        assert!(check_path(&e.path, e.kind == EntryKind::Dir).is_ok());
    }
}

impl Sink for Checker {
    fn head(&mut self, head: &Head) -> sydra_archive::Result<()> {
        head.validate().expect("reader hands on only valid HEADs");
        self.declared = head.entries.clone();
        Ok(())
    }
    fn dir(&mut self, e: &Entry) -> sydra_archive::Result<()> {
        self.expect(e);
        Ok(())
    }
    fn file_start(&mut self, e: &Entry) -> sydra_archive::Result<()> {
        self.expect(e);
        self.current = Some((e.size, 0));
        Ok(())
    }
    fn file_data(&mut self, data: &[u8]) -> sydra_archive::Result<()> {
        let (size, seen) = self.current.as_mut().expect("inside a file");
        *seen += data.len() as u64;
        assert!(*seen <= *size, "never more than declared");
        Ok(())
    }
    fn file_end(&mut self, _e: &Entry) -> sydra_archive::Result<()> {
        let (size, seen) = self.current.take().expect("inside a file");
        assert_eq!(size, seen);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = read_archive(data, Path::new("fuzz"), Depth::Full, &mut Checker::default());
    let _ = read_archive(data, Path::new("fuzz"), Depth::Quick, &mut Checker::default());
});
