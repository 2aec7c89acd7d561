//! Fuzz the archive reader (both versions) and the index listing: any
//! input must give Ok or an error — never a panic, a hang, an allocation
//! driven by a declared length, a member handed on that breaks the path
//! rules, or more bytes than a member declares.
#![no_main]

use std::path::Path;
use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use sydra_archive::check_path;
use sydra_archive::{
    Depth, FileSink, Sink, list_archive, list_from_end, read_archive, read_archive_with,
};
use sydra_archive::{Entry, EntryKind};

/// A sink that checks the reader's promises to restore.
#[derive(Default)]
struct Checker {
    dirs_seen: Mutex<usize>,
}

struct CheckFile {
    size: u64,
    seen: u64,
}

impl Checker {
    fn expect(&self, e: &Entry) {
        assert!(check_path(&e.path, e.kind == EntryKind::Dir).is_ok());
    }
}

impl Sink for Checker {
    type File = CheckFile;
    fn dir(&self, e: &Entry) -> sydra_archive::Result<()> {
        self.expect(e);
        *self.dirs_seen.lock().unwrap() += 1;
        Ok(())
    }
    fn file(&self, e: &Entry) -> sydra_archive::Result<CheckFile> {
        self.expect(e);
        Ok(CheckFile {
            size: e.size,
            seen: 0,
        })
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
    let _ = read_archive(
        data,
        Path::new("fuzz"),
        Depth::Full,
        &mut Checker::default(),
    );
    // Data frames decoded apart (whatever the fuzzing machine's cores).
    let _ = read_archive_with(
        data,
        Path::new("fuzz"),
        Depth::Full,
        &mut Checker::default(),
        2,
    );
    let _ = read_archive(
        data,
        Path::new("fuzz"),
        Depth::Quick,
        &mut Checker::default(),
    );
    let mut listed = |e: &Entry, _: Option<&[u8; 32]>| {
        assert!(check_path(&e.path, e.kind == EntryKind::Dir).is_ok());
        Ok(())
    };
    let _ = list_archive(data, Path::new("fuzz"), true, &mut listed);
    // The index read with reads at offsets, as from a file or an object.
    let mut read_at = |at: u64, buf: &mut [u8]| -> std::io::Result<()> {
        let at = usize::try_from(at).map_err(std::io::Error::other)?;
        let end = at.checked_add(buf.len()).filter(|&e| e <= data.len());
        let end = end.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(&data[at..end]);
        Ok(())
    };
    let _ = list_from_end(data.len() as u64, &mut read_at, "fuzz", &mut listed);
});
