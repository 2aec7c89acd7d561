//! `watch --levels`: SIGKILL at every deletion step of its retention
//! leaves every archive's chain whole and the newest point restorable,
//! and the next run goes on.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::*;

fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_kill_at_every_step_of_the_retention_loses_no_point() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let (dest, cache) = (t.path().join("dest"), t.path().join("cache"));
    fs::create_dir(&dest).unwrap();
    let d = format!("{}/", dest.display());
    let once = |kill_at: Option<usize>| -> Output {
        let mut c = bin();
        c.args(["watch", p(&data), "-o", &d, "--once", "-q"])
            .args([
                "--levels",
                "1s,2s",
                "--keep",
                "1s,1s,1s",
                "--max-chain",
                "6",
            ])
            .env("SYDRA_ARCHIVE_CACHE_DIR", &cache);
        if let Some(n) = kill_at {
            c.env("SYDRA_ARCHIVE_TEST_KILL_AT_REMOVAL", n.to_string());
        }
        c.output().unwrap()
    };
    // A history of points, anchors and a full archive, some a second
    // apart; then everything older than every --keep (a lower bound:
    // a loaded machine only makes them older).
    for i in 0..6 {
        fs::write(data.join("tags.json"), format!("{{\"i\":{i}}}")).unwrap();
        expect_code(&once(None), 0);
        if i % 2 == 1 {
            std::thread::sleep(Duration::from_millis(1100));
        }
    }
    std::thread::sleep(Duration::from_millis(2100));
    let before = archive_names(&dest).len();
    let pristine = t.path().join("pristine");
    copy_dir(&dest, &pristine);
    fs::write(data.join("tags.json"), "{\"i\":\"last\"}").unwrap();
    let want = tree_digest(&data);
    let mut step = 0;
    loop {
        let o = once(Some(step));
        // Whatever was deleted so far: the newest point is the data dir,
        // and every archive left is whole.
        let r = t.path().join("r");
        let _ = fs::remove_dir_all(&r);
        expect_code(&run(&["restore", &d, p(&r), "-q"]), 0);
        assert_eq!(tree_digest(&r), want, "after a kill at step {step}");
        for a in archive_names(&dest) {
            let o = run(&["verify", "--chain", p(&dest.join(&a)), "-q"]);
            assert!(o.status.success(), "step {step}: {a}: {}", stderr(&o));
        }
        if o.status.success() {
            break;
        }
        assert_eq!(o.status.signal(), Some(9), "step {step}: {}", stderr(&o));
        copy_dir(&pristine, &dest);
        step += 1;
        assert!(step < 100, "the retention never finished");
    }
    assert!(step >= 4, "only {step} steps");
    let left = archive_names(&dest).len();
    assert!(left < before, "nothing expired: {left} of {}", before + 1);
    // The next run on the expired destination goes on from it.
    fs::write(data.join("tags.json"), "{\"i\":\"after\"}").unwrap();
    expect_code(&once(None), 0);
    let r = t.path().join("r2");
    expect_code(&run(&["restore", &d, p(&r), "-q"]), 0);
    assert_eq!(tree_digest(&r), tree_digest(&data));
}
