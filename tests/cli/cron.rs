//! The cron/systemd recipe itself (`examples/cron/sydradb-backup.sh`, which
//! the README shows): run against a temporary data dir and backup dir,
//! silent and recorded when all is well, loud and recorded when the
//! archive of a damaged data dir does not pass `verify --deep`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use crate::support::*;

struct Recipe {
    data: PathBuf,
    backups: PathBuf,
    metrics: PathBuf,
}

impl Recipe {
    fn run(&self, create_flags: &str) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/cron/sydradb-backup.sh");
        std::process::Command::new("sh")
            .arg(script)
            .env("SYDRADB_DATA", &self.data)
            .env("BACKUP_DIR", &self.backups)
            .env("METRICS_DIR", &self.metrics)
            .env("SYDRA_ARCHIVE", env!("CARGO_BIN_EXE_sydra-archive"))
            .env("CREATE_FLAGS", create_flags)
            .env("KEEP", "--keep-last 5")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    /// The value of `metric` in the step's metrics file.
    fn metric(&self, file: &str, metric: &str) -> String {
        let text = fs::read_to_string(self.metrics.join(file)).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{metric} ")))
            .unwrap_or_else(|| panic!("no {metric} in {file}: {text}"))
            .to_string()
    }

    fn archives(&self) -> usize {
        fs::read_dir(&self.backups)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tar.zst")
            })
            .count()
    }
}

const CREATE: &str = "sydra_archive.prom";
const VERIFY: &str = "sydra_archive_verify.prom";
const PRUNE: &str = "sydra_archive_prune.prom";

#[test]
fn the_backup_script_is_silent_when_well_and_loud_when_not() {
    let t = tempfile::tempdir().unwrap();
    let r = Recipe {
        data: small_data(t.path()),
        backups: t.path().join("backups"),
        metrics: t.path().join("textfile"),
    };
    fs::create_dir(&r.backups).unwrap();
    fs::create_dir(&r.metrics).unwrap();

    // Clean: a full archive, then an incremental on it (verified with
    // its chain too), each silent, each step recorded as a success.
    for (i, flags) in ["", "--incremental"].into_iter().enumerate() {
        let o = r.run(flags);
        assert_eq!(code(&o), 0, "run {i}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "run {i}");
        assert_eq!(stdout(&o), "", "run {i}");
        for (file, prefix) in [
            (CREATE, "sydra_archive"),
            (VERIFY, "sydra_archive_verify"),
            (PRUNE, "sydra_archive_prune"),
        ] {
            assert_eq!(r.metric(file, &format!("{prefix}_last_run_success")), "1");
        }
        assert_eq!(r.archives(), i + 1);
    }
    let pruned_at = r.metric(PRUNE, "sydra_archive_prune_last_run_timestamp_seconds");

    // A segment cut short (as a crash mid-write leaves it), not being
    // written: create archives it as it is; verify --deep flags it.
    let seg = fs::read_dir(r.data.join("segments"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let f = fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(50).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    drop(f);
    std::thread::sleep(Duration::from_millis(1100));
    let o = r.run("--incremental");
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("sydradb-backup: verify --deep failed (exit 1): ")
            && lines[0].contains("1 problem"),
        "{lines:?}"
    );
    assert_eq!(r.metric(CREATE, "sydra_archive_last_run_success"), "1");
    assert_eq!(
        r.metric(VERIFY, "sydra_archive_verify_last_run_success"),
        "0"
    );
    // The last success is still there, for "no good backup for a day".
    r.metric(
        VERIFY,
        "sydra_archive_verify_last_success_timestamp_seconds",
    );
    // Prune did not run: a bad archive pushes no good one out.
    assert_eq!(
        r.metric(PRUNE, "sydra_archive_prune_last_run_timestamp_seconds"),
        pruned_at
    );
    assert_eq!(r.archives(), 3);

    // The archive verified is no metrics file: refused, untouched.
    let newest = fs::read_dir(&r.backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tar.zst"))
        .max()
        .unwrap();
    let before = fs::read(&newest).unwrap();
    let o = run(&["verify", p(&newest), "--metrics-file", p(&newest)]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("the archive read: writing the metrics would replace it"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(&newest).unwrap(), before);

    // A data dir that is gone: create fails, and says so.
    fs::rename(&r.data, t.path().join("elsewhere")).unwrap();
    let o = r.run("");
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("sydradb-backup: create failed (exit 2): sydra-archive: "),
        "{lines:?}"
    );
    assert_eq!(r.metric(CREATE, "sydra_archive_last_run_success"), "0");
}
