//! The docs cannot go stale: every fenced block marked ```` ```sh tested ````
//! in README.md and docs/ runs, as a bash script (`set -eu`, `pipefail`),
//! each in a fresh directory holding `data/` (a copy of fixtures/sample)
//! and `examples/cron/` (the repository's cron script), with this build's `sydra-archive`
//! first on PATH, HOME pointing into the directory and no `AWS_*`
//! variable of the caller. A block fails the test when it exits non-zero.
//!
//! And nothing shown escapes that: a ```` ```sh ```` or ```` ```bash ````
//! block (or `shell`, `console`, `zsh`) that is not marked `tested`, in
//! README.md or a page of docs/ (the developer pages FORMAT, ARCHITECTURE
//! and PERFORMANCE aside), fails the test too. What is not a command (a
//! unit file, a crontab line, output) takes a fence of its own kind
//! (`ini`, `crontab`, `text`). README.md alone may mark a block
//! ```` ```sh untested ````, for the commands no test can run there (the
//! install, `cargo test` itself, the benchmarks); the user guides in docs/
//! may not.
//!
//! Words after `tested` say what a block needs beyond a shell:
//! - `s3`: an S3 server. The block runs against s3s-fs on loopback (found
//!   as the S3 tests find and start it, tests/cli/s3/server.rs) with the bucket `backups` and the
//!   standard environment set (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, keys,
//!   `AWS_REGION`). Without s3s-fs the block is skipped with a visible
//!   `skipped: ...` line, unless `SYDRA_ARCHIVE_REQUIRE_S3=1` (CI) makes
//!   that a failure.
//! - `aws`: the AWS CLI (`aws`), which CI does not install; skipped with a
//!   visible line when it is not on PATH.
//! - `age`: `age-keygen` and `age`, the stock tools. When they are not
//!   installed the block gets stand-ins built from this crate's examples
//!   (examples/age-keygen.rs, examples/age-decrypt.rs: the `age` crate's
//!   own key generation and decryptor) taking the arguments the docs use
//!   (`age-keygen -o FILE`, `age-keygen -y FILE`, `age -d -i FILE [FILE]`),
//!   and a note says so.
//! - `sydradb`: the SydraDB server, which no test machine runs. The block
//!   gets a stand-in `sydradb` that checks `--data-dir DIR` holds a data
//!   dir's layout and then stays up until it is killed, as a server would:
//!   what the block proves is its own steps, not that SydraDB starts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::s3::server::{KEY_ID, SECRET, Server, s3s_fs};
use crate::support::*;

/// The languages of a fence that shows shell commands.
const SHELLS: &[&str] = &["sh", "bash", "shell", "console", "zsh"];

/// What a tested block may ask for (the words after `tested`).
const NEEDS: &[&str] = &["s3", "aws", "age", "sydradb"];

/// Pages for developers, not user guides: their fences are not run.
const NOT_CHECKED: &[&str] = &["FORMAT.md", "ARCHITECTURE.md", "PERFORMANCE.md"];

/// A fenced block of a Markdown file.
#[derive(Debug, PartialEq)]
struct Block {
    /// The line of its opening fence (1-based).
    line: usize,
    /// The info string's words (`["sh", "tested", "s3"]`).
    info: Vec<String>,
    body: String,
}

impl Block {
    fn is_shell(&self) -> bool {
        self.info
            .first()
            .is_some_and(|lang| SHELLS.contains(&lang.as_str()))
    }

    fn is_tested(&self) -> bool {
        self.is_shell() && self.info.get(1).is_some_and(|w| w == "tested")
    }

    /// Marked as shown but not run (README.md only).
    fn is_untested(&self) -> bool {
        self.is_shell() && self.info.get(1).is_some_and(|w| w == "untested")
    }

    /// The words after `tested`.
    fn needs(&self) -> &[String] {
        &self.info[2.min(self.info.len())..]
    }
}

/// Every fenced block of a Markdown file (```` ``` ```` or `~~~` fences of
/// any length; a block is closed by a fence of the same character at
/// least as long, with nothing after it).
fn blocks(text: &str) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut open: Option<(char, usize, Block)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let fence = |c: char| t.chars().take_while(|&x| x == c).count();
        match &mut open {
            None => {
                for c in ['`', '~'] {
                    let n = fence(c);
                    if n >= 3 {
                        let info = t[n..].split_whitespace().map(String::from).collect();
                        let block = Block {
                            line: i + 1,
                            info,
                            body: String::new(),
                        };
                        open = Some((c, n, block));
                        break;
                    }
                }
            }
            Some((c, n, _)) if fence(*c) >= *n && t[fence(*c)..].trim().is_empty() => {
                out.push(open.take().expect("open").2);
            }
            Some((_, _, block)) => {
                block.body.push_str(line);
                block.body.push('\n');
            }
        }
    }
    match open {
        Some((_, _, b)) => Err(format!("the block opened at line {} is not closed", b.line)),
        None => Ok(out),
    }
}

/// README.md and the pages of docs/ (sorted), the developer pages aside.
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
            } else if p.extension().is_some_and(|x| x == "md")
                && !NOT_CHECKED.iter().any(|n| p.file_name().unwrap() == *n)
            {
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

/// Whether `name` is a command on `path` (a PATH value).
fn on_path(name: &str, path: &str) -> bool {
    std::env::split_paths(path).any(|d| d.join(name).is_file())
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A directory of stand-ins for `age-keygen` and `age` built from the
/// crate's examples, for the machines that have not the stock tools.
fn age_stand_ins(dir: &Path) -> PathBuf {
    let built = Command::new(env!("CARGO"))
        .args(["build", "-q", "--example", "age-keygen"])
        .args(["--example", "age-decrypt"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(built.success(), "cargo build --example age-keygen failed");
    // The examples land beside the binary: target/<profile>/examples.
    let examples = Path::new(env!("CARGO_BIN_EXE_sydra-archive"))
        .parent()
        .unwrap()
        .join("examples");
    let bin = dir.join("age-bin");
    fs::create_dir_all(&bin).unwrap();
    write_script(
        &bin.join("age-keygen"),
        &format!(
            "#!/bin/sh\n\
             # Stand-in for age-keygen (not installed): examples/age-keygen.rs, which\n\
             # writes the identity file age-keygen writes; -y FILE prints the\n\
             # recipient that file names in its '# public key:' line.\n\
             case \"${{1:-}}\" in\n\
             -y) exec sed -n 's/^# public key: //p' \"$2\" ;;\n\
             -o) r=$('{0}' \"$@\") && echo \"Public key: $r\" >&2 ;;\n\
             *) exec '{0}' \"$@\" ;;\n\
             esac\n",
            examples.join("age-keygen").display()
        ),
    );
    write_script(
        &bin.join("age"),
        &format!(
            "#!/bin/sh\n\
             # Stand-in for age -d (not installed): examples/age-decrypt.rs.\n\
             [ \"${{1:-}}\" = -d ] || {{ echo 'age stand-in: only -d' >&2; exit 2; }}\n\
             shift; ids=''\n\
             while [ \"${{1:-}}\" = -i ]; do ids=\"$ids $2\"; shift 2; done\n\
             if [ $# -gt 0 ]; then exec <\"$1\"; fi\n\
             exec '{}' $ids\n",
            examples.join("age-decrypt").display()
        ),
    );
    bin
}

/// A directory holding a stand-in for the SydraDB server.
fn sydradb_stand_in(dir: &Path) -> PathBuf {
    let bin = dir.join("sydradb-bin");
    fs::create_dir_all(&bin).unwrap();
    write_script(
        &bin.join("sydradb"),
        "#!/bin/sh\n\
         # Stand-in for the SydraDB server (no test machine runs one): takes\n\
         # --data-dir DIR, refuses a DIR without a data dir's layout, then\n\
         # stays up until it is killed (its output closed, so that a block\n\
         # that fails before it kills it does not hang the test on it).\n\
         [ \"${1:-}\" = --data-dir ] || { echo 'sydradb stand-in: --data-dir DIR' >&2; exit 2; }\n\
         for f in MANIFEST tags.json wal segments; do\n\
           [ -e \"$2/$f\" ] || { echo \"sydradb stand-in: no $f in $2\" >&2; exit 1; }\n\
         done\n\
         exec sleep 600 </dev/null >/dev/null 2>&1\n",
    );
    bin
}

/// The standard AWS environment for a block, pointing at `s3` (s3s-fs
/// serving the bucket `backups`, started as the S3 tests start it).
fn s3_env(s3: &Server) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
}

/// Runs one tested block in a fresh directory; `Ok(Some(why))` when it
/// was skipped, `Err(report)` when it failed.
fn run_block(file: &Path, b: &Block) -> Result<Option<String>, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let here = format!("{}:{}", file.strip_prefix(root).unwrap().display(), b.line);
    let t = tempfile::tempdir().unwrap();
    copy_tree(&root.join("fixtures/sample"), &t.path().join("data"));
    fs::create_dir(t.path().join("examples")).unwrap();
    copy_tree(&root.join("examples/cron"), &t.path().join("examples/cron"));
    let tools = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_sydra-archive"))
        .parent()
        .unwrap();
    let mut path = vec![bin_dir.to_path_buf()];
    let caller_path = std::env::var("PATH").unwrap_or_default();
    let mut env: Vec<(&str, String)> = Vec::new();
    let mut _s3 = None;
    for need in b.needs() {
        match need.as_str() {
            "s3" => {
                let Some(exe) = s3s_fs() else {
                    if std::env::var_os("SYDRA_ARCHIVE_REQUIRE_S3").is_some() {
                        return Err(format!(
                            "{here}: s3s-fs is required (SYDRA_ARCHIVE_REQUIRE_S3) but not installed"
                        ));
                    }
                    return Ok(Some(format!(
                        "{here}: s3s-fs not found (set SYDRA_ARCHIVE_S3S_FS, or cargo install s3s-fs --version 0.14.1 --features binary; SYDRA_ARCHIVE_REQUIRE_S3=1 fails instead)"
                    )));
                };
                let s3 = Server::launch(&exe);
                env.extend(s3_env(&s3));
                _s3 = Some(s3);
            }
            "aws" if !on_path("aws", &caller_path) => {
                return Ok(Some(format!("{here}: the AWS CLI (aws) is not installed")));
            }
            "aws" => {}
            "age" if on_path("age", &caller_path) && on_path("age-keygen", &caller_path) => {}
            "age" => {
                path.push(age_stand_ins(tools.path()));
                note(&format!(
                    "{here}: age or age-keygen not installed: ran with stand-ins from examples/age-keygen.rs and examples/age-decrypt.rs"
                ));
            }
            "sydradb" => path.push(sydradb_stand_in(tools.path())),
            other => return Err(format!("{here}: unknown word after `tested`: {other}")),
        }
    }
    let mut path = std::env::join_paths(&path).unwrap();
    path.push(":");
    path.push(&caller_path);
    // A failing command names its line in the file; the trap's own line
    // is the script's first, so the block's first line is LINENO 2.
    let script = format!(
        "trap 'echo \"{}:$((LINENO + {})): exit $?: $BASH_COMMAND\" >&2' ERR\n{}",
        file.strip_prefix(root).unwrap().display(),
        b.line - 1,
        b.body
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", &script])
        .current_dir(t.path())
        .stdin(Stdio::null())
        .env("PATH", path)
        .env("HOME", t.path())
        .env("SYDRA_ARCHIVE_CACHE_DIR", t.path().join(".cache"))
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("SYDRA_ARCHIVE_IDENTITY_FILE")
        .env_remove("SYDRA_ARCHIVE_PASSPHRASE_FILE");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env);
    let o = cmd.output().unwrap();
    if o.status.success() {
        return Ok(None);
    }
    Err(format!(
        "{here}: the block exited {}\n--- script\n{}--- stdout\n{}--- stderr\n{}",
        o.status
            .code()
            .map_or_else(|| format!("{:?}", o.status), |c| c.to_string()),
        b.body,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    ))
}

/// A line on the process's stderr that a passing test still shows (see
/// `support::skip`).
fn note(what: &str) {
    let line = format!("note: {what}\n");
    // SAFETY: write(2) of a valid buffer to fd 2.
    let _ = unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

#[test]
fn every_shell_block_in_the_docs_is_tested_and_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in docs() {
        let name = file.strip_prefix(root).unwrap().display().to_string();
        let text = fs::read_to_string(&file).unwrap();
        let blocks = match blocks(&text) {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        for b in &blocks {
            let untested_here = name == "README.md" && b.is_untested() && b.info.len() == 2;
            if b.is_shell() && !b.is_tested() && !untested_here {
                failures.push(format!(
                    "{name}:{}: a ```{} block that is not marked tested (```{} tested): every command the docs show runs in this test",
                    b.line,
                    b.info.join(" "),
                    b.info[0]
                ));
            } else if b.is_tested() && !b.needs().iter().all(|w| NEEDS.contains(&w.as_str())) {
                failures.push(format!(
                    "{name}:{}: unknown word after `tested` in ```{} (known: {})",
                    b.line,
                    b.info.join(" "),
                    NEEDS.join(", ")
                ));
            }
        }
        for b in blocks.iter().filter(|b| b.is_tested()) {
            match run_block(&file, b) {
                Ok(None) => ran += 1,
                Ok(Some(why)) => skip(&why),
                Err(report) => failures.push(report),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure(s) in the docs:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(ran > 0, "no tested block found");
}

#[test]
fn blocks_are_found_and_told_apart() {
    let text = "a\n```sh tested s3\necho 1\n  ```\n```sh\nuntested\n```\n````text\n```sh\n````\n~~~bash\nx\n~~~\n```\n```\n";
    let b = blocks(text).unwrap();
    let got: Vec<_> = b
        .iter()
        .map(|b| (b.line, b.info.join(" "), b.body.as_str(), b.is_tested()))
        .collect();
    assert_eq!(
        got,
        vec![
            (2, "sh tested s3".into(), "echo 1\n", true),
            (5, "sh".into(), "untested\n", false),
            (8, "text".into(), "```sh\n", false),
            (11, "bash".into(), "x\n", false),
            (14, "".into(), "", false),
        ]
    );
    assert!(b[1].is_shell() && b[3].is_shell() && !b[2].is_shell() && !b[4].is_shell());
    assert!(!b[1].is_untested() && blocks("```sh untested\nx\n```\n").unwrap()[0].is_untested());
    assert_eq!(b[0].needs(), ["s3"]);
    assert!(blocks("```sh tested\nx\n").is_err());
}
