//! The standard streams: which were closed when the process started (`-`
//! is refused for them), and the `--json` report written to one.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Context;
use sydra_archive::Error;

/// Which standard streams were closed when the process started.
#[derive(Debug, Clone, Copy)]
pub struct StdClosed {
    pub stdin: bool,
    pub stdout: bool,
}

impl StdClosed {
    /// Refuses, before any work, a command whose result (`what`) goes to
    /// a stdout that was closed: it would be lost while the command
    /// reported success.
    pub fn check_results(&self, what: &str) -> anyhow::Result<()> {
        if self.stdout {
            return Err(
                Error::Refused(format!("stdout is closed; {what} would go nowhere")).into(),
            );
        }
        Ok(())
    }

    /// Refuses to use `-` (stdin or stdout) when that stream was closed.
    pub fn check(&self, arg: &Path, reading: bool) -> anyhow::Result<()> {
        if arg != Path::new("-") {
            return Ok(());
        }
        if reading && self.stdin {
            return Err(
                Error::Refused("stdin is closed; there is no archive to read".into()).into(),
            );
        }
        if !reading && self.stdout {
            return Err(Error::Refused(
                "stdout is closed; the archive would go nowhere (use -o FILE)".into(),
            )
            .into());
        }
        Ok(())
    }

    /// The checks of a command that reads `archive` and, with `--json`,
    /// reports on stdout.
    pub fn check_reader(&self, archive: &Path, json: bool) -> anyhow::Result<()> {
        self.check(archive, true)?;
        if json {
            self.check_results("the --json report")?;
        }
        Ok(())
    }
}

pub fn print_json(to_stderr: bool, v: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = format!("{}\n", serde_json::to_string(v)?);
    let written = if to_stderr {
        io::stderr().write_all(text.as_bytes())
    } else {
        io::stdout()
            .write_all(text.as_bytes())
            .and_then(|()| io::stdout().flush())
    };
    written.with_context(|| {
        let to = if to_stderr { "stderr" } else { "stdout" };
        format!("cannot write the --json report to {to}")
    })
}
