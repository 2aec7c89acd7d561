//! Incremental archives: chains built against a simulated server writer
//! restore byte-identical to a full archive of the same moment; broken
//! bases fail cleanly; stock tools never see a WAL tail under the WAL's
//! name; prune keeps every base a kept archive needs.
//!
//! One concern a file: [`chains`] (what chains carry and how they restore,
//! `-o DIR/ --incremental --max-chain` and prune), [`bases`] (bases that
//! are missing, different, unusable, followed only to a local regular
//! file, or absent from a pipe) and [`faults`] (hostile, damaged or
//! killed incrementals). This file holds the helpers they share.

mod bases;
mod chains;
mod faults;

use std::path::{Path, PathBuf};

use sydra_archive::sydradb::{FixtureSpec, Server, generate};

use crate::support::*;

fn spec() -> FixtureSpec {
    FixtureSpec {
        series: 4,
        duration_s: 3 * 3600,
        flush_s: 600,
        wal_rotate_bytes: 12_000,
        ..FixtureSpec::default()
    }
}

/// A generated data dir and a server that goes on writing it.
fn live(t: &Path) -> (PathBuf, Server) {
    let d = t.join("data");
    let s = spec();
    generate(&d, &s).unwrap();
    let next = s.start_ts + s.duration_s;
    let server = Server::new(&d, &s, next);
    (d, server)
}

fn create_on(data: &Path, out: &Path, base: &Path) -> std::process::Output {
    run(&["create", p(data), "-o", p(out), "--base", p(base), "--json"])
}

/// Restores `archive` into `dir` and returns the tree's digest.
fn restored(archive: &Path, dir: &Path) -> String {
    let o = run(&["restore", p(archive), p(dir), "-q"]);
    expect_code(&o, 0);
    tree_digest(dir)
}
