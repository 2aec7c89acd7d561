//! `--metrics-file`: a metrics file that cannot be written, or that is an
//! archive the command reads or writes, is refused first; the outcome is
//! written whatever ends the command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Whether an archive argument names a local file (not `-`, an s3://
/// URL or a directory with its `/`).
pub fn is_local_file(p: &Path) -> bool {
    p != Path::new("-")
        && !p.to_string_lossy().starts_with(sydra_archive::S3_SCHEME)
        && !p.as_os_str().as_encoded_bytes().ends_with(b"/")
}

/// Runs `run`; with `metrics_file` (refused first if it cannot be
/// written or is `archive`), writes whether it ended in success.
pub fn with_outcome(
    metrics_file: Option<PathBuf>,
    archive: Option<&Path>,
    outcome: fn(bool) -> sydra_archive::Outcome,
    run: impl FnOnce() -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let Some(path) = metrics_file else {
        return run();
    };
    let mut others: Vec<(&str, &Path)> = Vec::new();
    if let Some(a) = archive.filter(|a| is_local_file(a)) {
        others.push(("the archive read", a));
    }
    sydra_archive::Metrics::check_file(&path, &others)?;
    let result = run();
    let ok = matches!(&result, Ok(c) if *c == ExitCode::SUCCESS);
    if let Err(e) = outcome(ok).write_to(&path) {
        say!("sydra-archive: warning: {e}");
    }
    result
}
