//! Data dirs for the tests, made with the project's own generator.

use std::path::{Path, PathBuf};

use sydra_archive::sydradb::{FixtureSpec, Server, generate};

use super::runner::*;

/// A small generated data dir: 3 series, 2 hours, 10-minute flushes.
pub fn small_data(dir: &Path) -> PathBuf {
    let d = dir.join("data");
    generate(
        &d,
        &FixtureSpec {
            series: 3,
            duration_s: 2 * 3600,
            flush_s: 600,
            wal_rotate_bytes: 20_000,
            ..FixtureSpec::default()
        },
    )
    .unwrap();
    d
}

/// The simulated server writing on into a [`small_data`] dir: the same
/// series, from the hour after the generated two.
pub fn small_server(data: &Path) -> Server {
    Server::new(
        data,
        &FixtureSpec {
            series: 3,
            flush_s: 600,
            wal_rotate_bytes: 20_000,
            ..Default::default()
        },
        1_748_736_000 + 2 * 3600,
    )
}

/// A tiny data dir: a handful of small files (archives of a few KB).
pub fn tiny_data(dir: &Path) -> PathBuf {
    let d = dir.join("tiny");
    std::fs::create_dir_all(d.join("wal")).unwrap();
    std::fs::create_dir_all(d.join("segments/3600")).unwrap();
    std::fs::write(
        d.join("MANIFEST"),
        b"{\"path\":\"segments/3600/1-3600-3600-1.seg\"}\n",
    )
    .unwrap();
    std::fs::write(d.join("tags.json"), b"{\"a=b\":[1]}").unwrap();
    let mut wal = Vec::new();
    for i in 0..3 {
        wal.extend(sydra_archive::sydradb::wal_record(
            1,
            3600 + i * 10,
            i as f64,
        ));
    }
    std::fs::write(d.join("wal/current.wal"), &wal).unwrap();
    let seg = sydra_archive::sydradb::encode_segment(1, 3600, &[(3600, 0.0), (3610, 1.0)]);
    std::fs::write(d.join("segments/3600/1-3600-3610-1.seg"), seg).unwrap();
    d
}

/// A data dir that takes a noticeable time to archive and restore.
pub fn medium_data(dir: &Path) -> PathBuf {
    let d = dir.join("medium");
    generate(
        &d,
        &FixtureSpec {
            series: 20,
            duration_s: 36 * 3600,
            flush_s: 900,
            wal_rotate_bytes: 4 << 20,
            ..FixtureSpec::default()
        },
    )
    .unwrap();
    d
}

/// Creates an archive of `data` at `out` through the binary.
pub fn create(data: &Path, out: &Path) {
    let o = run(&["create", p(data), "-o", p(out), "-q"]);
    expect_code(&o, 0);
}
