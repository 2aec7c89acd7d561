//! `create`: the arguments turned into a call of the library's
//! `create_on` (the base chosen for `--incremental`, the output named in
//! a directory or under a prefix, encryption, progress), the result and
//! the `--metrics-file` written.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use sydra_archive::{CreateOptions, Error, Location, Output, Progress, hex};

use crate::args::{location, s3_options, use_keys};
use crate::cli::CreateArgs;
use crate::metrics::is_local_file;
use crate::report;
use crate::streams::{StdClosed, print_json};
use crate::ui::{self, Display};

/// `create`; with `--metrics-file`, the metrics of the run are written
/// whatever ends it (an error before the archive is started too).
pub fn create(a: CreateArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if let Some(path) = &a.metrics_file {
        // Before anything is written: a metrics file that cannot be
        // written, or that is the archive written or its base, is refused.
        let local = is_local_file;
        let mut others: Vec<(&str, &Path)> = Vec::new();
        if local(&a.output) {
            others.push(("the archive written", &a.output));
        }
        if let Some(b) = a.base.as_deref().filter(|b| local(b)) {
            others.push(("the base archive", b));
        }
        sydra_archive::Metrics::check_file(path, &others)?;
    }
    let result = create_run(&a, std_closed, started);
    if let Some(path) = &a.metrics_file {
        let m = match &result {
            Ok(s) => sydra_archive::Metrics::success(s, started.elapsed().as_secs_f64()),
            Err(_) => sydra_archive::Metrics::failure(),
        };
        if let Err(e) = m.write_to(path) {
            say!("sydra-archive: warning: {e}");
        }
    }
    result.map(|_| ExitCode::SUCCESS)
}

fn create_run(
    a: &CreateArgs,
    std_closed: StdClosed,
    started: Instant,
) -> anyhow::Result<sydra_archive::CreateSummary> {
    let to_stdout = a.output == Path::new("-");
    std_closed.check(&a.output, false)?;
    if a.json && !to_stdout {
        std_closed.check_results("the --json report")?;
    }
    // The creation time names an archive written into a directory or
    // under a prefix (`-o DIR/`), and goes into HEAD.
    let created_unix_ms = source_date_epoch_ms()?.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    });
    use_keys(&a.identities, a.passphrase_file.as_deref())?;
    let sealed = sydra_archive::Recipients::new(
        &a.recipients,
        &a.recipients_files,
        a.passphrase_file.as_deref(),
    )?;
    let (output, archive) =
        output_for(&a.output, a.force, &a.s3, created_unix_ms, sealed.is_some())?;
    if !a.quiet {
        if sealed.is_none() && archive.ends_with(".age") {
            say!(
                "sydra-archive: warning: {archive} is named .age but is not encrypted (give -r, -R or --passphrase-file to encrypt)"
            );
        } else if sealed.is_some() && archive != "-" && !archive.ends_with(".age") {
            say!(
                "sydra-archive: note: {archive} is encrypted (age); the usual name ends in .tar.zst.age"
            );
        }
    }
    let mut _shelf_lock = None;
    let base = match (&a.base, a.incremental) {
        (Some(b), _) => Some(location(b, &a.s3)?),
        (None, true) => {
            let shelf = a.output.to_string_lossy();
            if !shelf.ends_with('/') {
                return Err(Error::Refused(format!(
                    "--incremental takes the base from the archives in OUT's directory: OUT must end in / (got {shelf})"
                ))
                .into());
            }
            // Held from the choice of the base to the publication: a
            // prune of this directory waits (see `store::lock`).
            _shelf_lock = sydra_archive::lock_for_create(&shelf, &s3_options(&a.s3))?;
            let (base, note) = sydra_archive::choose_base(&shelf, &s3_options(&a.s3), a.max_chain)?;
            if let Some(note) = note
                && !a.quiet
            {
                say!("sydra-archive: {note}");
            }
            base
        }
        (None, false) => None,
    };
    let s = match create_to(a, base.as_ref(), sealed.as_ref(), &output, created_unix_ms) {
        // --incremental writes a full archive where an incremental cannot
        // be written: the nightly backup goes on.
        Err(Error::NotIncremental(why)) if a.base.is_none() && base.is_some() => {
            if !a.quiet {
                say!("sydra-archive: cannot write an incremental: {why}; writing a full archive");
            }
            create_to(a, None, sealed.as_ref(), &output, created_unix_ms)?
        }
        r => r?,
    };
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        print_json(to_stdout, &report::CreateReport::new(&archive, &s, secs))?;
    }
    if !a.quiet {
        ui::create_notes(&s);
        if !a.json {
            let parts = match &s.uploaded {
                Some(u) => format!(" ({})", ui::count(u.parts as u64, "part", "parts")),
                None => String::new(),
            };
            say!(
                "sydra-archive: wrote {archive}{parts}: {}, {} -> {} in {secs:.2}s, sha256 {}",
                ui::count(s.files, "file", "files"),
                ui::count(s.data_bytes, "data byte", "data bytes"),
                ui::count(s.bytes, "byte", "bytes"),
                hex(&s.sha256)
            );
        }
    }
    Ok(s)
}

/// Runs `create` of `a` to `output`, with progress as asked.
fn create_to(
    a: &CreateArgs,
    base: Option<&Location>,
    sealed: Option<&sydra_archive::Recipients>,
    output: &Output,
    created_unix_ms: u64,
) -> sydra_archive::Result<sydra_archive::CreateSummary> {
    let progress = Arc::new(Progress::default());
    let display = Display::start("create", a.progress, a.quiet, &progress);
    // A progress total costs a walk of the data dir before the archive is
    // written: only when progress is shown.
    let opts = CreateOptions {
        level: a.level,
        threads: a.threads,
        created_unix_ms: Some(created_unix_ms),
        progress: display.shown().then(|| progress.clone()),
        frame_bytes: a.frame_kib as usize * 1024,
    };
    let result = sydra_archive::create_on(&a.data_dir, base, sealed, output, &opts);
    display.finish();
    result
}

/// Where `-o OUT` writes and its name in reports (see
/// [`sydra_archive::output_for`]).
pub(crate) fn output_for(
    output: &Path,
    force: bool,
    s3: &crate::cli::S3Args,
    created_unix_ms: u64,
    encrypted: bool,
) -> anyhow::Result<(Output, String)> {
    Ok(sydra_archive::output_for(
        output,
        force,
        &crate::args::s3_options(s3),
        created_unix_ms,
        encrypted,
    )?)
}

/// HEAD's creation time from `SOURCE_DATE_EPOCH` (seconds), if set.
pub(crate) fn source_date_epoch_ms() -> anyhow::Result<Option<u64>> {
    let Ok(s) = std::env::var("SOURCE_DATE_EPOCH") else {
        return Ok(None);
    };
    let secs = s
        .trim()
        .parse::<u64>()
        .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds"))?;
    // Up to 9999-12-31T23:59:59Z: archive names keep four-digit years.
    const MAX_SECS: u64 = 253_402_300_799;
    if secs > MAX_SECS {
        return Err(Error::Refused(format!(
            "SOURCE_DATE_EPOCH={} is too large (at most {MAX_SECS} seconds, 9999-12-31)",
            s.trim()
        ))
        .into());
    }
    let ms = secs * 1000;
    Ok(Some(ms))
}
