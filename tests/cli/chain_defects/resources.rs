//! Defects in the resources a run takes: a sixty-link chain read in a
//! fixed pool of descriptors and linear reads, and a tampered META whose
//! huge size is corruption, not a full disk.

use std::fs;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use sydra_archive::sydradb::wal_record;

use crate::support::*;

use super::helpers::{append, full_digest, refused};

/// Runs the binary with RLIMIT_NOFILE at `n`.
fn run_nofile(args: &[&str], n: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let mut c = bin();
    c.args(args).stdin(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        c.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(child, Duration::from_secs(60))
}

// ---------------------------------------------------------------------
// 10. Long chains: a fixed pool of descriptors, linear reads.

#[test]
fn d10_a_sixty_link_chain_reads_in_few_descriptors_and_linear_reads() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let wal = data.join("wal/current.wal");
    let shelf = t.path().join("chain");
    fs::create_dir(&shelf).unwrap();
    let mut links = vec![shelf.join("a00.tar.zst")];
    create(&data, &links[0]);
    for i in 1..60 {
        append(&wal, &wal_record(1, 10_000 + i, i as f64));
        let next = shelf.join(format!("a{i:02}.tar.zst"));
        let o = run(&[
            "create",
            p(&data),
            "-o",
            p(&next),
            "--base",
            p(&links[i as usize - 1]),
            "-q",
        ]);
        expect_code(&o, 0);
        links.push(next);
    }
    let last = links.last().unwrap();
    let limit = 48;
    let o = run_nofile(&["list", p(last)], limit);
    expect_code(&o, 0);
    let o = run_nofile(&["verify", "--chain", p(last)], limit);
    expect_code(&o, 0);
    assert!(
        stderr(&o).contains("chain of 60 archives"),
        "{}",
        stderr(&o)
    );
    let x = t.path().join("x");
    expect_code(&run_nofile(&["extract", p(last), "-C", p(&x)], limit), 0);
    assert_eq!(
        fs::read(x.join("wal/current.wal")).unwrap(),
        fs::read(&wal).unwrap()
    );
    let r = t.path().join("r");
    expect_code(&run_nofile(&["restore", p(last), p(&r), "-q"], limit), 0);
    assert_eq!(tree_digest(&r), full_digest(&data, t.path(), "1"));
    // Reads of a file appended in every link: 20 links, then 60.
    let reads = |link: &Path, tag: &str| {
        let o = run(&[
            "extract",
            p(link),
            "wal/current.wal",
            "-o",
            p(&t.path().join(tag)),
            "--json",
        ]);
        expect_code(&o, 0);
        json(&o)["reads"].as_u64().unwrap()
    };
    // Linear: the reads each 20 links add do not grow with the chain (a
    // walk of the chain per link would add 5/3 as many from 40 to 60 as
    // from 20 to 40, and read 9 times as much at 60 as at 20). Not
    // r60 < 3 * r20: the fixed code reads about 15 per link less 11 (289
    // at 20, 889 at 60), linear but just over 3x; one read per link of
    // slack.
    let r20 = reads(&links[19], "w20");
    let r40 = reads(&links[39], "w40");
    let r60 = reads(last, "w60");
    assert!(r20 > 0 && r40 > r20 && r60 > r40, "{r20} {r40} {r60}");
    assert!(
        (r60 - r40) * 4 <= (r40 - r20) * 5 && r60 <= 3 * r20 + 60,
        "reads grow faster than the chain: {r20} for 20 links, {r40} for 40, {r60} for 60"
    );
}

// ---------------------------------------------------------------------
// 17. A tampered META that claims a huge size.

#[test]
fn d17_a_tampered_meta_claiming_a_huge_size_is_corrupt_not_a_full_disk() {
    let t = tempfile::tempdir().unwrap();
    let huge = |m: &mut serde_json::Value| m["total_bytes"] = serde_json::json!(1u64 << 60);
    // META changed after TAIL was written: the body no longer hashes to
    // what TAIL records.
    let mut c = Craft2::new(&members());
    c.meta = Box::new(huge);
    c.tail = Box::new(|t| t[96] ^= 0x01);
    let a = t.path().join("tampered.tar.zst");
    fs::write(&a, c.build()).unwrap();
    let r = t.path().join("r");
    let o = run(&["restore", p(&a), p(&r)]);
    refused(
        &o,
        1,
        &["does not hash to what its TAIL records"],
        "restore of a tampered META",
    );
    assert!(
        !stderr(&o).contains("not enough free space"),
        "{}",
        stderr(&o)
    );
    assert!(!r.exists());
    // The control: the same META sealed by its TAIL is believed.
    let mut c = Craft2::new(&members());
    c.meta = Box::new(huge);
    fs::write(&a, c.build()).unwrap();
    let o = run(&["restore", p(&a), p(&r)]);
    refused(
        &o,
        2,
        &["not enough free space"],
        "restore of a sealed META",
    );
}
