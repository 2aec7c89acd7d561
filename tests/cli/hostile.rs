//! Hostile archives: refused with exit 1 by verify and restore, in bounded
//! time and memory, with nothing written anywhere.

use std::fs;
use std::path::Path;

use crate::support::*;

#[test]
fn hostile_archives_are_refused_by_verify_and_restore() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    for (name, bytes) in hostile_archives() {
        let f = t.path().join(format!("{name}.tar.zst"));
        fs::write(&f, &bytes).unwrap();

        let o = run_bounded(&["verify", p(&f)]);
        assert_eq!(code(&o), 1, "verify {name}: {}", stderr(&o));
        assert_eq!(stderr(&o).lines().count(), 1, "{name}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(reason(name)),
            "verify {name} refused for another reason: {}",
            stderr(&o)
        );
        // --quick does not decompress: it proves the bytes are the ones
        // the writer sealed, and HEAD/SUMS/frames sound, but it cannot
        // judge tar members under a footer a hostile writer computed.
        let data_only = [
            "symlink",
            "hardlink",
            "chardev",
            "blockdev",
            "fifo",
            "member-not-in-head",
            "head-entry-not-in-tar",
            "member-larger-than-head",
            "tampered-recomputed-footer",
        ];
        let o = run_bounded(&["verify", "--quick", p(&f)]);
        let want = if data_only.contains(&name) { 0 } else { 1 };
        assert_eq!(code(&o), want, "verify --quick {name}: {}", stderr(&o));

        let target = work.join("data");
        let o = run_bounded(&["restore", p(&f), p(&target)]);
        assert_eq!(code(&o), 1, "restore {name}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(reason(name)),
            "restore {name} refused for another reason: {}",
            stderr(&o)
        );
        assert!(!target.exists(), "{name}: target created");
        assert_eq!(
            fs::read_dir(&work).unwrap().count(),
            0,
            "{name}: left {:?}",
            leftovers(&work)
        );
        assert!(
            !Path::new("/tmp/sydra-archive-escape").exists(),
            "{name} escaped"
        );
        assert!(!t.path().join("escape").exists(), "{name} escaped");
    }
}

#[test]
fn a_one_terabyte_member_is_refused_at_its_header() {
    let (_, bytes) = hostile_archives()
        .into_iter()
        .find(|(n, _)| *n == "member-larger-than-head")
        .unwrap();
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("tb.tar.zst");
    fs::write(&f, &bytes).unwrap();
    for args in [
        vec!["verify", p(&f)],
        vec!["restore", p(&f), p(&t.path().join("d"))],
    ] {
        let o = run_bounded(&args);
        assert_eq!(code(&o), 1);
        assert!(
            stderr(&o).contains("1099511627776 bytes but HEAD declares 33"),
            "{}",
            stderr(&o)
        );
    }
    assert!(!t.path().join("d").exists());
}
