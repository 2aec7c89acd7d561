//! The docs cannot go stale: every fenced block marked ```` ```sh tested ````
//! in README.md and docs/ runs, in order, as a bash script (`set -eu`,
//! `pipefail`) in a fresh directory holding `data/` (a copy of
//! fixtures/sample), with this build's `sydra-archive` first on PATH and
//! HOME pointing into the directory. A block fails the test when it exits
//! non-zero.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// The tested blocks of a Markdown file: (first line number, script).
fn tested_blocks(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match &mut current {
            None if line.trim_start() == "```sh tested" => current = Some((i + 2, String::new())),
            Some(_) if line.trim_start() == "```" => out.push(current.take().expect("open")),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    assert!(current.is_none(), "a tested block is not closed");
    out
}

fn docs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut dirs = vec![root.join("docs")];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

fn copy_tree(from: &Path, to: &Path) {
    let o = Command::new("cp")
        .args(["-a", p(from), p(to)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn every_tested_shell_block_in_the_docs_runs() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sydra-archive"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample");
    let mut ran = 0;
    for file in docs() {
        let text = fs::read_to_string(&file).unwrap();
        for (line, script) in tested_blocks(&text) {
            let t = tempfile::tempdir().unwrap();
            copy_tree(&sample, &t.path().join("data"));
            let o = Command::new("bash")
                .args(["-euo", "pipefail", "-c", &script])
                .current_dir(t.path())
                .env("PATH", &path)
                .env("HOME", t.path())
                .env("SYDRA_ARCHIVE_CACHE_DIR", t.path().join(".cache"))
                .env_remove("SOURCE_DATE_EPOCH")
                .env_remove("SYDRA_ARCHIVE_IDENTITY_FILE")
                .env_remove("SYDRA_ARCHIVE_PASSPHRASE_FILE")
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{}:{line}: the block exited {:?}\n--- script\n{script}--- stdout\n{}--- stderr\n{}",
                file.display(),
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran > 0, "no tested block found");
}

#[test]
fn blocks_are_found() {
    let text = "a\n```sh tested\necho 1\necho 2\n```\n```sh\nuntested\n```\n";
    assert_eq!(
        tested_blocks(text),
        vec![(3, "echo 1\necho 2\n".to_string())]
    );
}
