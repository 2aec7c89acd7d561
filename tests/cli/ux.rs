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
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
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
