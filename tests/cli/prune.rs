//! `ls` and `prune` of a local directory of archives: restic-style
//! retention rules, a dry run unless --yes, nothing but archives touched.

use std::fs;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use crate::support::*;

/// 2026-11-02T00:00:00Z, a Monday, in seconds.
const MON: u64 = 1_793_577_600;
const DAY: u64 = 86_400;

fn set_mtime(path: &Path, secs: u64) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// One archive a day at 02:00 for `days` days, named by their day, plus
/// things that are not archives.
fn shelf(t: &Path, days: u64) -> (std::path::PathBuf, Vec<String>) {
    let data = tiny_data(t);
    let dir = t.join("backups");
    fs::create_dir(&dir).unwrap();
    let one = t.join("one.tar.zst");
    create(&data, &one);
    let mut names = Vec::new();
    for d in 0..days {
        let name = format!("sydradb-day{d:02}.tar.zst");
        fs::copy(&one, dir.join(&name)).unwrap();
        set_mtime(&dir.join(&name), MON + d * DAY + 2 * 3600);
        names.push(name);
    }
    fs::write(dir.join("notes.tar.zst"), b"not an archive").unwrap();
    fs::write(dir.join("readme.txt"), b"x").unwrap();
    std::os::unix::fs::symlink(dir.join(&names[0]), dir.join("link.tar.zst")).unwrap();
    (dir, names)
}

#[test]
fn ls_lists_archives_newest_first_and_names_the_others() {
    let t = tempfile::tempdir().unwrap();
    let (dir, names) = shelf(t.path(), 3);
    let o = run(&["ls", p(&dir), "--json"]);
    expect_code(&o, 0);
    let j = json(&o);
    let listed: Vec<&str> = j["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [&names[2], &names[1], &names[0]]);
    let others = j["others"].as_array().unwrap();
    assert_eq!(others.len(), 2, "{j}");
    let text = format!("{j}");
    assert!(text.contains("it is a symlink"), "{text}");
    assert!(text.contains("notes.tar.zst"), "{text}");
}

#[test]
fn prune_keeps_what_the_rules_keep_and_deletes_only_with_yes() {
    let t = tempfile::tempdir().unwrap();
    // 20 days: Mon 2026-11-02 .. Sat 2026-11-21.
    let (dir, names) = shelf(t.path(), 20);
    let policy = [
        "--keep-last",
        "2",
        "--keep-daily",
        "4",
        "--keep-weekly",
        "3",
        "--keep-monthly",
        "1",
    ];
    let mut args = vec!["prune", p(&dir), "--json"];
    args.extend(policy);
    let o = run(&args);
    expect_code(&o, 0);
    let j = json(&o);
    assert_eq!(j["dry_run"], true);
    let kept: Vec<(String, Vec<String>)> = j["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["key"].as_str().unwrap().to_string(),
                k["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    // The last 2 and 4 days (19..16), the newest of weeks 47, 46, 45
    // (days 19, 13, 6) and of November (19).
    let want: Vec<&str> = [19, 18, 17, 16, 13, 6]
        .iter()
        .map(|d: &usize| names[*d].as_str())
        .collect();
    assert_eq!(
        kept.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        want
    );
    assert_eq!(
        kept[0].1,
        [
            "last",
            "daily 2026-11-21",
            "weekly 2026-W47",
            "monthly 2026-11"
        ]
    );
    assert_eq!(kept[4].1, ["weekly 2026-W46"]);
    assert_eq!(j["deleted"].as_array().unwrap().len(), 14);
    // A dry run deletes nothing.
    for n in &names {
        assert!(dir.join(n).exists(), "{n}");
    }
    let o = run(&args[..2]
        .iter()
        .chain(&args[3..])
        .copied()
        .collect::<Vec<_>>());
    assert!(stderr(&o).contains("dry run"), "{}", stderr(&o));

    let mut args = vec!["prune", p(&dir), "--yes"];
    args.extend(policy);
    let o = run(&args);
    expect_code(&o, 0);
    assert!(
        stdout(&o).contains("(last, daily 2026-11-21"),
        "{}",
        stdout(&o)
    );
    for (d, n) in names.iter().enumerate() {
        assert_eq!(
            dir.join(n).exists(),
            [19, 18, 17, 16, 13, 6].contains(&d),
            "{n}"
        );
    }
    for other in ["notes.tar.zst", "readme.txt", "link.tar.zst"] {
        assert!(
            dir.join(other).symlink_metadata().is_ok(),
            "{other} was touched"
        );
    }
}

#[test]
fn an_empty_policy_or_a_missing_directory_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let (dir, names) = shelf(t.path(), 2);
    let o = run(&["prune", p(&dir), "--yes"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("policy is empty"), "{}", stderr(&o));
    for n in &names {
        assert!(dir.join(n).exists());
    }
    let o = run(&["prune", p(&t.path().join("nope")), "--keep-last", "1"]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}

#[test]
fn create_into_a_directory_names_by_time_and_writes_metrics() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let dir = t.path().join("nightly");
    fs::create_dir(&dir).unwrap();
    let metrics = t.path().join("sydra.prom");
    let out = format!("{}/", dir.display());
    let o = bin()
        .env("SOURCE_DATE_EPOCH", "1795653307")
        .args(["create", p(&data), "-o", &out, "--json"])
        .args(["--metrics-file", p(&metrics)])
        .output()
        .unwrap();
    expect_code(&o, 0);
    let name = "sydradb-20261126T003507Z.tar.zst";
    assert_eq!(json(&o)["archive"], format!("{out}{name}"));
    expect_code(&run(&["verify", p(&dir.join(name))]), 0);
    let text = fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("sydra_archive_last_run_success 1\n"),
        "{text}"
    );
    let size = fs::metadata(dir.join(name)).unwrap().len();
    assert!(
        text.contains(&format!(
            "sydra_archive_last_success_bytes{{kind=\"full\"}} {size}\n"
        )),
        "{text}"
    );
    assert_eq!(
        fs::metadata(&metrics).unwrap().permissions().mode() & 0o777,
        0o644
    );
    // A failed run (its data dir is gone) says so and keeps the last
    // success's figures; nothing is left beside the file.
    let gone = t.path().join("gone");
    let o = bin()
        .env("SOURCE_DATE_EPOCH", "1795653307")
        .args(["create", p(&gone), "-o", &out, "-q"])
        .args(["--metrics-file", p(&metrics)])
        .output()
        .unwrap();
    expect_code(&o, 2);
    assert!(stderr(&o).contains("gone"), "{}", stderr(&o));
    let after = fs::read_to_string(&metrics).unwrap();
    assert!(
        after.contains("sydra_archive_last_run_success 0\n"),
        "{after}"
    );
    assert!(after.contains(&format!(
        "sydra_archive_last_success_bytes{{kind=\"full\"}} {size}\n"
    )));
    assert_eq!(leftovers(t.path()), Vec::<String>::new());
    // Not there: refused, saying why.
    let o = run(&[
        "create",
        p(&data),
        "-o",
        &format!("{}/nope/", dir.display()),
    ]);
    expect_code(&o, 2);
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

/// Names that are not UTF-8 are left alone (a lossy name could name
/// another file), and a file replaced after it was listed is not deleted.
/// (Found by a review.)
#[test]
fn odd_names_and_replaced_files_are_left_alone() {
    use std::os::unix::ffi::OsStrExt;
    let t = tempfile::tempdir().unwrap();
    let (dir, names) = shelf(t.path(), 1);
    let odd = dir.join(std::ffi::OsStr::from_bytes(b"old\xff.tar.zst"));
    fs::copy(dir.join(&names[0]), &odd).unwrap();
    set_mtime(&odd, MON - DAY);
    // What a lossy reading of the odd name would name.
    let precious = dir.join("old\u{fffd}.tar.zst");
    fs::write(&precious, b"precious").unwrap();
    let o = run(&["prune", p(&dir), "--keep-last", "1", "--yes"]);
    expect_code(&o, 0);
    assert!(odd.exists() && precious.exists() && dir.join(&names[0]).exists());
    assert!(stderr(&o).contains("not UTF-8"), "{}", stderr(&o));

    // Listed, then replaced by another file under the same name: refused.
    let shelf = sydra_archive::Shelf::parse(p(&dir), &Default::default()).unwrap();
    let listing = sydra_archive::ls(&shelf).unwrap();
    let listed = listing.archives.iter().find(|l| l.key == names[0]).unwrap();
    let fresh = t.path().join("fresh");
    fs::copy(dir.join(&names[0]), &fresh).unwrap();
    fs::rename(&fresh, dir.join(&names[0])).unwrap();
    let e = shelf.delete(listed).unwrap_err();
    assert!(e.to_string().contains("changed since it was listed"), "{e}");
    assert!(dir.join(&names[0]).exists());
    let hidden: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .as_bytes()
                .starts_with(b".sydra-prune")
        })
        .collect();
    assert!(hidden.is_empty());
    // The listing of the unchanged file deletes it.
    let listing = sydra_archive::ls(&shelf).unwrap();
    let listed = listing.archives.iter().find(|l| l.key == names[0]).unwrap();
    shelf.delete(listed).unwrap();
    assert!(!dir.join(&names[0]).exists());
}

/// The metrics say a run failed whatever stopped it, and a metrics path
/// that is a FIFO or holds junk neither hangs nor blocks later writes.
#[test]
fn metrics_record_every_failure_and_survive_a_bad_file() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let metrics = t.path().join("m.prom");
    let out = t.path().join("a.tar.zst");
    let with_metrics = |args: &[&str]| {
        let mut c = bin();
        c.args(args).args(["--metrics-file", p(&metrics), "-q"]);
        c.output().unwrap()
    };
    expect_code(&with_metrics(&["create", p(&data), "-o", p(&out)]), 0);
    // An error before the archive is started (a missing directory).
    let o = with_metrics(&[
        "create",
        p(&data),
        "-o",
        &format!("{}/", p(&t.path().join("gone"))),
    ]);
    expect_code(&o, 2);
    let text = fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("sydra_archive_last_run_success 0\n"),
        "{text}"
    );
    assert!(
        text.contains("sydra_archive_last_success_bytes{kind=\"full\"}"),
        "{text}"
    );
    // Junk in the file: the next run still writes it.
    fs::write(&metrics, b"\xff\xfe not metrics\n").unwrap();
    expect_code(
        &with_metrics(&["create", p(&data), "-o", p(&out), "--force"]),
        0,
    );
    let text = fs::read_to_string(&metrics).unwrap();
    assert!(
        text.contains("sydra_archive_last_run_success 1\n"),
        "{text}"
    );
    // A FIFO at the path: a warning, no hang, for a success and a failure.
    fs::remove_file(&metrics).unwrap();
    let c = std::ffi::CString::new(p(&metrics)).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let o = with_metrics(&["create", p(&data), "-o", p(&out), "--force"]);
    expect_code(&o, 0);
    assert!(stderr(&o).contains("warning"), "{}", stderr(&o));
    let o = with_metrics(&[
        "create",
        p(&t.path().join("nope")),
        "-o",
        p(&out),
        "--force",
    ]);
    expect_code(&o, 2);
}

#[test]
fn an_archive_that_cannot_be_deleted_keeps_its_chain() {
    if !root_tests("chattr +i makes one deletion fail") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let dir = t.path().join("backups");
    fs::create_dir(&dir).unwrap();
    // A full, two incrementals on it, and a newer full.
    let full = dir.join("a-full.tar.zst");
    let (inc1, inc2) = (dir.join("b-inc1.tar.zst"), dir.join("c-inc2.tar.zst"));
    create(&data, &full);
    for (i, (out, base)) in [(&inc1, &full), (&inc2, &inc1)].into_iter().enumerate() {
        fs::write(data.join("tags.json"), format!("{{\"i=\":[{i}]}}")).unwrap();
        let o = run(&["create", p(&data), "-o", p(out), "--base", p(base), "-q"]);
        expect_code(&o, 0);
    }
    let newest = dir.join("d-full.tar.zst");
    create(&data, &newest);
    for (i, f) in [&full, &inc1, &inc2, &newest].into_iter().enumerate() {
        set_mtime(f, MON + i as u64 * DAY);
    }
    // The deepest one cannot go: its bases stay, said as failed too.
    let chattr = |flag: &str| {
        let ok = std::process::Command::new("chattr")
            .args([flag, p(&inc2)])
            .status();
        assert!(ok.unwrap().success(), "chattr {flag}");
    };
    chattr("+i");
    let o = run(&["prune", p(&dir), "--keep-last", "1", "--yes", "--json"]);
    chattr("-i");
    assert!(!o.status.success(), "{}", stderr(&o));
    let j = json(&o);
    let failed = j["failed"].to_string();
    assert!(
        failed.contains("c-inc2") && failed.contains("b-inc1"),
        "{j}"
    );
    assert!(
        failed.contains("an archive made on it could not be deleted"),
        "{j}"
    );
    for f in [&full, &inc1, &inc2, &newest] {
        assert!(f.exists(), "{} deleted", f.display());
        let o = run(&["verify", "--chain", p(f), "-q"]);
        assert!(o.status.success(), "{}: {}", f.display(), stderr(&o));
    }
}
