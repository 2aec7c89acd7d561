//! Operator experience: progress on terminals only, NDJSON progress, help
//! texts (golden files), completions and the man page.

use std::fs;
use std::path::Path;

use crate::support::*;

#[test]
fn a_terminal_sees_a_progress_bar() {
    let t = tempfile::tempdir().unwrap();
    let data = medium_data(t.path());
    let out = t.path().join("a.tar.zst");
    let o = run_in_pty(&["create", p(&data), "-o", p(&out), "--level", "9"]);
    expect_code(&o, 0);
    let seen = stdout(&o);
    assert!(seen.contains("ETA") && seen.contains("create"), "{seen}");
    assert!(
        seen.contains("sydra-archive: wrote"),
        "summary line: {seen}"
    );
    for cmd in [
        vec!["verify", p(&out)],
        vec!["restore", p(&out), p(&t.path().join("r"))],
    ] {
        let o = run_in_pty(&cmd);
        expect_code(&o, 0);
        assert!(stdout(&o).contains("ETA"), "{cmd:?}: {}", stdout(&o));
    }
    // -q: no bar even on a terminal.
    let o = run_in_pty(&["verify", "-q", p(&out)]);
    expect_code(&o, 0);
    assert!(!stdout(&o).contains("ETA"), "{}", stdout(&o));
}

#[test]
fn no_terminal_no_progress() {
    let t = tempfile::tempdir().unwrap();
    let data = medium_data(t.path());
    let out = t.path().join("a.tar.zst");
    let o = run(&["create", p(&data), "-o", p(&out)]);
    expect_code(&o, 0);
    let err = stderr(&o);
    assert!(!err.contains("ETA") && !err.contains('\u{1b}'), "{err}");
    assert_eq!(err.lines().count(), 1, "only the summary: {err}");
    let o = run(&["restore", p(&out), p(&t.path().join("r"))]);
    assert!(!stderr(&o).contains('\u{1b}'));
}

#[test]
fn progress_json_is_ndjson_on_stderr() {
    let t = tempfile::tempdir().unwrap();
    let data = small_data(t.path());
    let out = t.path().join("a.tar.zst");
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&out),
        "--progress",
        "json",
        "-q",
    ]);
    expect_code(&o, 0);
    let events: Vec<serde_json::Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert_eq!(events.first().unwrap()["event"], "started");
    // The start says how much there is to do (once known).
    assert!(
        events.first().unwrap()["total_bytes"].as_u64().unwrap() > 0,
        "{events:?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["command"], "create");
    assert!(last["total_bytes"].as_u64().unwrap() > 0);
    assert_eq!(last["done_bytes"], last["total_bytes"]);
    assert!(o.stdout.is_empty());
    for args in [
        vec!["verify", "--progress", "json", p(&out)],
        vec![
            "restore",
            "--progress",
            "json",
            "-q",
            p(&out),
            p(&t.path().join("r")),
        ],
    ] {
        let o = run(&args);
        expect_code(&o, 0);
        let first: serde_json::Value =
            serde_json::from_str(stderr(&o).lines().next().unwrap()).unwrap();
        assert_eq!(first["event"], "started");
        assert_eq!(
            first["total_bytes"].as_u64().unwrap(),
            fs::metadata(&out).unwrap().len(),
            "{args:?}"
        );
        let last: serde_json::Value =
            serde_json::from_str(stderr(&o).lines().last().unwrap()).unwrap();
        assert_eq!(last["event"], "finished");
        assert_eq!(
            last["done_bytes"].as_u64().unwrap(),
            fs::metadata(&out).unwrap().len()
        );
    }
}

/// Help texts are part of the interface: any change shows up here. Run
/// with UPDATE_GOLDEN=1 to accept a change.
#[test]
fn help_texts_match_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for cmd in [
        "",
        "create",
        "verify",
        "list",
        "restore",
        "extract",
        "merge",
        "watch",
        "ls",
        "prune",
        "completions",
        "man",
    ] {
        let mut args: Vec<&str> = cmd.split_whitespace().collect();
        args.push("--help");
        let o = run(&args);
        expect_code(&o, 0);
        let name = if cmd.is_empty() {
            "help.txt".to_string()
        } else {
            format!("help-{cmd}.txt")
        };
        let file = dir.join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            fs::write(&file, &o.stdout).unwrap();
        }
        let want = fs::read_to_string(&file)
            .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", file.display()));
        assert_eq!(
            stdout(&o),
            want,
            "{cmd} --help changed; run with UPDATE_GOLDEN=1 to accept"
        );
        if !cmd.is_empty() {
            assert!(want.contains("Example"), "{cmd} --help has examples");
        }
    }
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let o = run(&["completions", shell]);
        expect_code(&o, 0);
        assert!(
            stdout(&o).contains("sydra-archive") && stdout(&o).contains("restore"),
            "{shell}"
        );
    }
    expect_code(&run(&["completions", "tcsh-not-a-shell"]), 2);
    let o = run(&["man"]);
    expect_code(&o, 0);
    let man = stdout(&o);
    assert!(
        man.contains(".TH sydra-archive 1") && man.contains(".SH NAME"),
        "{man}"
    );
    assert!(man.contains("Exit codes"));
}

/// The long options a `--help` text lists.
fn long_options(help: &str) -> Vec<String> {
    let mut v: Vec<String> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2 && w.as_bytes()[2].is_ascii_lowercase())
        .map(String::from)
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn every_command_has_a_man_page_with_every_option() {
    let top = stdout(&run(&["--help"]));
    let commands: Vec<&str> = top
        .split("Commands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 9, "{commands:?}");
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("man/man1");
    let o = run(&["man", "--dir", p(&dir)]);
    expect_code(&o, 0);
    assert_eq!(stdout(&o), "");
    let mut written: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    let mut want: Vec<String> = commands
        .iter()
        .map(|c| format!("sydra-archive-{c}.1"))
        .chain(["sydra-archive.1".to_string()])
        .collect();
    want.sort();
    assert_eq!(written, want);
    for c in std::iter::once("").chain(commands.iter().copied()) {
        let (args, name) = if c.is_empty() {
            (vec!["man"], "sydra-archive".to_string())
        } else {
            (vec!["man", c], format!("sydra-archive-{c}"))
        };
        let o = run(&args);
        expect_code(&o, 0);
        let page = stdout(&o);
        assert_eq!(
            fs::read_to_string(dir.join(format!("{name}.1"))).unwrap(),
            page
        );
        assert!(page.contains(&format!(".TH {name} 1")), "{page}");
        let text = page.replace("\\-", "-");
        let mut help = vec![c, "--help"];
        help.retain(|a| !a.is_empty());
        for opt in long_options(&stdout(&run(&help))) {
            assert!(text.contains(&opt), "{name}(1) does not mention {opt}");
        }
    }
    let top = stdout(&run(&["man"]));
    assert!(top.contains("sydra\\-archive\\-restore(1)"), "{top}");
    let o = run(&["man", "nosuch"]);
    expect_code(&o, 2);
    assert!(
        stderr(&o).contains("no command nosuch: man pages are for create, verify"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "");
}

/// The `--json` reports are a public interface: each has exactly the
/// fields the README's "JSON output" section lists.
#[test]
fn json_reports_have_the_documented_fields() {
    fn keys(v: &serde_json::Value) -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }
    fn want(fields: &str) -> Vec<String> {
        let mut k: Vec<String> = fields.split_whitespace().map(String::from).collect();
        k.sort();
        k
    }
    let readme = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/json-and-exit-codes.md"
    ))
    .unwrap();
    let documented = |report: &str| -> Vec<String> {
        // A README line "- `report`: `a`, `b`, ..." lists the fields.
        let line = readme
            .lines()
            .find(|l| l.starts_with(&format!("- `{report}`:")))
            .unwrap_or_else(|| panic!("README documents no {report} report"));
        let fields: String = line
            .split_once(':')
            .unwrap()
            .1
            .split('`')
            .skip(1)
            .step_by(2)
            .collect::<Vec<_>>()
            .join(" ");
        want(&fields)
    };
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let out = t.path().join("a.tar.zst");
    let json = |args: &[&str], code: i32| -> serde_json::Value {
        let o = run(args);
        expect_code(&o, code);
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let v = json(&["create", p(&data), "-o", p(&out), "--json"], 0);
    assert_eq!(keys(&v), documented("create --json"));
    let v = json(&["verify", p(&out), "--json"], 0);
    assert_eq!(keys(&v), documented("verify --json"));
    let v = json(&["list", p(&out), "--json"], 0);
    assert_eq!(keys(&v), documented("list --json"));
    let v = json(
        &[
            "extract",
            p(&out),
            "tags.json",
            "-C",
            p(&t.path().join("x")),
            "--json",
        ],
        0,
    );
    assert_eq!(keys(&v), documented("extract --json"));
    let v = json(&["restore", p(&out), p(&t.path().join("r")), "--json"], 0);
    assert_eq!(keys(&v), documented("restore --json"));
    let bad = t.path().join("bad.tar.zst");
    std::fs::write(&bad, b"not an archive").unwrap();
    let v = json(&["verify", p(&bad), "--json"], 1);
    assert_eq!(keys(&v), documented("verify --json (failed)"));
    // A torn WAL tail: create archives it (cut), --deep finds nothing; a
    // crafted archive with a torn WAL is what --deep reports.
    let members = vec![
        file("MANIFEST", b"{}\n"),
        dir("wal"),
        file("wal/current.wal", &[1u8; 20]),
    ];
    let torn = t.path().join("torn.tar.zst");
    std::fs::write(&torn, craft_members(&members)).unwrap();
    let v = json(&["verify", "--deep", p(&torn), "--json"], 1);
    assert_eq!(keys(&v), documented("verify --deep --json (problems)"));
}

/// Two archives of `data` in `dir`, named by distinct times.
fn two_archives(data: &Path, dir: &Path) -> Vec<std::path::PathBuf> {
    fs::create_dir_all(dir).unwrap();
    let mut made = Vec::new();
    for epoch in ["1793577600", "1793581200"] {
        let o = bin()
            .args(["create", p(data), "-o", &format!("{}/", p(dir)), "-q"])
            .env("SOURCE_DATE_EPOCH", epoch)
            .output()
            .unwrap();
        expect_code(&o, 0);
    }
    for e in fs::read_dir(dir).unwrap() {
        made.push(e.unwrap().path());
    }
    made.sort();
    made
}

#[test]
fn verify_quiet_prints_nothing_on_success_and_the_reason_on_failure() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a = t.path().join("a.tar.zst");
    create(&data, &a);
    let o = run(&["verify", "-q", p(&a)]);
    expect_code(&o, 0);
    assert_eq!((stdout(&o), stderr(&o)), (String::new(), String::new()));
    // Without -q, the result line.
    let o = run(&["verify", p(&a)]);
    assert!(stdout(&o).starts_with("ok "), "{}", stdout(&o));
    // A failure still says why, with -q.
    let mut bytes = fs::read(&a).unwrap();
    bytes.truncate(bytes.len() - 10);
    let cut = t.path().join("cut.tar.zst");
    fs::write(&cut, &bytes).unwrap();
    let o = run(&["verify", "-q", p(&cut)]);
    expect_code(&o, 1);
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).starts_with(&format!("sydra-archive: verify {}: ", p(&cut))),
        "{}",
        stderr(&o)
    );
}

#[test]
fn prune_quiet_prints_nothing_but_errors() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let dir = t.path().join("shelf");
    let made = two_archives(&data, &dir);
    assert_eq!(made.len(), 2);
    // The dry run speaks without -q...
    let o = run(&["prune", p(&dir), "--keep-last", "1"]);
    expect_code(&o, 0);
    assert!(stdout(&o).contains("would delete"), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("would keep 1, delete 1 archive (")
            && !stderr(&o).contains("archive(s)"),
        "{}",
        stderr(&o)
    );
    // ...and with -q (short and long) says nothing, and still deletes.
    for q in ["-q", "--quiet"] {
        let o = run(&["prune", p(&dir), "--keep-last", "1", q]);
        expect_code(&o, 0);
        assert_eq!((stdout(&o), stderr(&o)), (String::new(), String::new()));
    }
    let o = run(&["prune", p(&dir), "--keep-last", "1", "--yes", "-q"]);
    expect_code(&o, 0);
    assert_eq!((stdout(&o), stderr(&o)), (String::new(), String::new()));
    assert!(!made[0].exists() && made[1].exists(), "{made:?}");
}

#[test]
fn a_metrics_file_in_a_missing_directory_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let out = t.path().join("a.tar.zst");
    let metrics = t.path().join("gone/m.prom");
    let o = run(&[
        "create",
        p(&data),
        "-o",
        p(&out),
        "--metrics-file",
        p(&metrics),
    ]);
    expect_code(&o, 2);
    assert_eq!(
        stderr(&o),
        format!(
            "sydra-archive: cannot write the metrics file {}: directory {} does not exist\n",
            p(&metrics),
            p(&t.path().join("gone"))
        )
    );
    // Refused before anything was written.
    assert!(!out.exists());
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
}

#[test]
fn a_metrics_file_that_is_the_archive_or_its_base_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let base = t.path().join("base.tar.zst");
    create(&data, &base);
    let before = fs::read(&base).unwrap();
    let out = t.path().join("a.tar.zst");
    // The same file by another path: through `.` and a symlinked
    // directory, and a hard link.
    let link_dir = t.path().join("here");
    std::os::unix::fs::symlink(t.path(), &link_dir).unwrap();
    let hard = t.path().join("hard.prom");
    fs::hard_link(&base, &hard).unwrap();
    let dotted = format!("{}/./a.tar.zst", p(t.path()));
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (p(&out).into(), vec![], "a.tar.zst"),
        (dotted.clone(), vec![], "a.tar.zst"),
        (p(&link_dir.join("a.tar.zst")).into(), vec![], "a.tar.zst"),
        (
            p(&base).into(),
            vec!["--base".into(), p(&base).into()],
            "base.tar.zst",
        ),
        (
            p(&link_dir.join("base.tar.zst")).into(),
            vec!["--base".into(), p(&base).into()],
            "base.tar.zst",
        ),
        (
            p(&hard).into(),
            vec!["--base".into(), p(&base).into()],
            "base.tar.zst",
        ),
    ];
    for (metrics, extra, clash) in cases {
        let o = bin()
            .args([
                "create",
                p(&data),
                "-o",
                p(&out),
                "--metrics-file",
                &metrics,
            ])
            .args(&extra)
            .output()
            .unwrap();
        expect_code(&o, 2);
        let what = if extra.is_empty() {
            "the archive written"
        } else {
            "the base archive"
        };
        let err = stderr(&o);
        assert!(
            err.starts_with(&format!("sydra-archive: the metrics file {metrics} is "))
                && err.contains(&format!(
                    "{clash}, {what}: writing the metrics would replace it"
                ))
                && err.lines().count() == 1,
            "{metrics}: {err}"
        );
        assert!(!out.exists(), "{metrics}: the archive was written");
        assert_eq!(fs::read(&base).unwrap(), before, "{metrics}");
    }
}

#[test]
fn counts_agree_with_their_nouns() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a = t.path().join("a.tar.zst");
    create(&data, &a);
    let o = run(&["extract", p(&a), "MANIFEST", "-C", p(&t.path().join("x1"))]);
    expect_code(&o, 0);
    assert!(
        stderr(&o).starts_with("sydra-archive: extracted 1 file ("),
        "{}",
        stderr(&o)
    );
    let o = run(&["extract", p(&a), "-C", p(&t.path().join("x2"))]);
    expect_code(&o, 0);
    assert!(
        stderr(&o).starts_with("sydra-archive: extracted 4 files ("),
        "{}",
        stderr(&o)
    );
    for o in [
        run(&["verify", p(&a)]),
        run(&["create", p(&data), "-o", p(&t.path().join("b.tar.zst"))]),
        run(&["restore", p(&a), p(&t.path().join("r"))]),
    ] {
        expect_code(&o, 0);
        let all = stdout(&o) + &stderr(&o);
        assert!(all.contains("4 files, "), "{all}");
        assert!(!all.contains(" 1 files") && !all.contains("(s)"), "{all}");
    }
}

#[test]
fn an_output_that_is_a_directory_says_how_to_write_into_it() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let dir = t.path().join("backups");
    fs::create_dir(&dir).unwrap();
    for force in [false, true] {
        let mut c = bin();
        c.args(["create", p(&data), "-o", p(&dir)]);
        if force {
            c.arg("--force");
        }
        let o = c.output().unwrap();
        expect_code(&o, 2);
        assert_eq!(
            stderr(&o),
            format!(
                "sydra-archive: {} is a directory; to put a timestamped archive in it, write {}/\n",
                p(&dir),
                p(&dir)
            )
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
    }
    // As the hint says.
    let o = run(&["create", p(&data), "-o", &format!("{}/", p(&dir)), "-q"]);
    expect_code(&o, 0);
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
}

/// `restore -` of an incremental names the archive it read, not a
/// staging directory of its own.
#[test]
fn restore_of_an_incremental_from_stdin_names_stdin() {
    let t = tempfile::tempdir().unwrap();
    let data = tiny_data(t.path());
    let a0 = t.path().join("a0.tar.zst");
    let a1 = t.path().join("a1.tar.zst");
    expect_code(&run(&["create", p(&data), "-o", p(&a0), "-q"]), 0);
    fs::write(data.join("tags.json"), b"{\"changed\":[2]}").unwrap();
    expect_code(
        &run(&["create", p(&data), "-o", p(&a1), "--base", p(&a0), "-q"]),
        0,
    );
    let o = run_stdin(
        &["restore", "-", p(&t.path().join("r"))],
        &fs::read(&a1).unwrap(),
    );
    expect_code(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("- is an incremental archive"), "{e}");
    assert!(!e.contains("sydra-staging"), "{e}");
}
