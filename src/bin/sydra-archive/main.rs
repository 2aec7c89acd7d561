//! The `sydra-archive` binary: parse arguments, call the library, map the
//! result to an exit code (0 ok, 1 bad archive, 2 anything else).

mod cli;
mod report;
mod ui;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use sydra_archive::Progress;
use sydra_archive::hex;
use sydra_archive::{CreateOptions, Depth, Entry, Error, Output, RestoreOptions};

use cli::{
    ChainArgs, Cli, Command, CreateArgs, ExtractArgs, ListArgs, LsArgs, ManArgs, PruneArgs,
    ReadArgs, RestoreArgs, S3Args, VerifyArgs,
};
use sydra_archive::Location;
use sydra_archive::S3Options;
use ui::Display;

/// Writes one line to stderr. A closed or full stderr is not a reason to
/// panic or to change the exit code: the line is dropped.
/// Control characters (a newline or an escape in a file name) are escaped,
/// so a line is always one line and cannot forge another or drive the
/// terminal.
macro_rules! say {
    ($($arg:tt)*) => {
        ui::say(format_args!($($arg)*))
    };
}

const EXIT_ARCHIVE: u8 = 1;
const EXIT_OTHER: u8 = 2;

/// The command thread's stack (see `main`).
const STACK_BYTES: usize = 256 << 20;

/// Runs one command.
fn run(command: Command, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create(a) => create(a, std_closed),
        Command::Verify(a) => verify(a, std_closed),
        Command::List(a) => list(a, std_closed),
        Command::Restore(a) => restore(a, std_closed),
        Command::Extract(a) => extract(a, std_closed),
        Command::Ls(a) => ls(a, std_closed),
        Command::Prune(a) => prune(a),
        Command::Completions { shell } => {
            // Generated into memory: clap_complete panics on a failed write.
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "sydra-archive", &mut script);
            io::stdout()
                .write_all(&script)
                .and_then(|()| io::stdout().flush())
                .map(|()| ExitCode::SUCCESS)
                .map_err(anyhow::Error::from)
        }
        Command::Man(a) => man(a),
    }
}

fn main() -> ExitCode {
    // A closed stdout is no place for an archive (nor a closed stdin a
    // source of one): `-` is refused for them below.
    let closed = sydra_archive::closed_std_fds();
    let cli = Cli::parse();
    let std_closed = StdClosed {
        stdin: closed[0],
        stdout: closed[1],
    };
    if let Err(e) = sydra_archive::install_signal_handlers(i32::from(EXIT_OTHER)) {
        say!("sydra-archive: cannot install signal handlers: {e}");
        return ExitCode::from(EXIT_OTHER);
    }
    // A chain's tree is a stream merged level by level, one nested
    // iterator per archive: a 1,000-link chain runs deep. The command runs
    // on a thread whose stack is large enough for that in any build (only
    // the pages used are ever committed).
    let worker = std::thread::Builder::new()
        .name("main".into())
        .stack_size(STACK_BYTES)
        .spawn(move || run(cli.command, std_closed));
    let result = match worker.map(|h| h.join()) {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => Err(anyhow::Error::from(e).context("cannot start the command's thread")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::from(EXIT_OTHER);
            }
            say!("sydra-archive: {}", one_line(&e));

            ExitCode::from(exit_code(&e))
        }
    }
}

/// Which standard streams were closed when the process started.
#[derive(Debug, Clone, Copy)]
struct StdClosed {
    stdin: bool,
    stdout: bool,
}

impl StdClosed {
    /// Refuses, before any work, a command whose result (`what`) goes to
    /// a stdout that was closed: it would be lost while the command
    /// reported success.
    fn check_results(&self, what: &str) -> anyhow::Result<()> {
        if self.stdout {
            return Err(
                Error::Refused(format!("stdout is closed; {what} would go nowhere")).into(),
            );
        }
        Ok(())
    }

    /// Refuses to use `-` (stdin or stdout) when that stream was closed.
    fn check(&self, arg: &Path, reading: bool) -> anyhow::Result<()> {
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
    fn check_reader(&self, archive: &Path, json: bool) -> anyhow::Result<()> {
        self.check(archive, true)?;
        if json {
            self.check_results("the --json report")?;
        }
        Ok(())
    }
}

/// The error and its causes on one line, each cause once: the library's
/// messages already end with the OS error they wrap.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<Error>() {
        Some(err) if err.is_archive_fault() => EXIT_ARCHIVE,
        _ => EXIT_OTHER,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}

fn s3_options(a: &S3Args) -> S3Options {
    S3Options {
        endpoint: a.endpoint.clone(),
        region: a.region.clone(),
        concurrency: 0,
    }
}

/// An archive argument read whole, with `read`'s concurrency for objects.
fn read_location(arg: &Path, s3: &S3Args, read: &ReadArgs) -> anyhow::Result<Location> {
    let opts = S3Options {
        concurrency: read.concurrency as usize,
        ..s3_options(s3)
    };
    Ok(Location::parse(arg, &opts)?)
}

/// Sets the identities this run decrypts archives with: `--identity`
/// files (else `SYDRA_ARCHIVE_IDENTITY_FILE`) and `--passphrase-file`
/// (else `SYDRA_ARCHIVE_PASSPHRASE_FILE`). Only to decrypt: `create`
/// encrypts with `--passphrase-file` alone.
fn use_keys(identities: &[PathBuf], passphrase_file: Option<&Path>) -> anyhow::Result<()> {
    let env_file = |name: &str| std::env::var_os(name).filter(|f| !f.is_empty());
    let mut from_env = None;
    if passphrase_file.is_none()
        && let Some(f) = env_file("SYDRA_ARCHIVE_PASSPHRASE_FILE")
    {
        // As for the identity file below: one that cannot be read fails
        // only the runs that need it.
        match sydra_archive::Identities::new(&[], Some(Path::new(&f))) {
            Ok(_) => from_env = Some(PathBuf::from(f)),
            Err(e) => say!("sydra-archive: warning: SYDRA_ARCHIVE_PASSPHRASE_FILE: {e}"),
        }
    }
    let passphrase_file = passphrase_file.or(from_env.as_deref());
    if identities.is_empty()
        && let Some(f) = env_file("SYDRA_ARCHIVE_IDENTITY_FILE")
    {
        // From the environment, a key that cannot be read fails only the
        // runs that need one (an unencrypted archive needs none).
        match sydra_archive::Identities::new(&[PathBuf::from(&f)], passphrase_file) {
            Ok(ids) => sydra_archive::set_identities(ids),
            Err(e) => {
                say!("sydra-archive: warning: SYDRA_ARCHIVE_IDENTITY_FILE: {e}");
                sydra_archive::set_identities(sydra_archive::Identities::new(
                    &[],
                    passphrase_file,
                )?);
            }
        }
        return Ok(());
    }
    sydra_archive::set_identities(sydra_archive::Identities::new(identities, passphrase_file)?);
    Ok(())
}

/// The `--base` arguments.
fn bases(c: &ChainArgs, s3: &S3Args) -> anyhow::Result<Vec<Location>> {
    c.bases.iter().map(|b| location(b, s3)).collect()
}

/// An archive argument: `s3://…` is an object, anything else a path.
fn location(arg: &Path, s3: &S3Args) -> anyhow::Result<Location> {
    Ok(Location::parse(arg, &s3_options(s3))?)
}

fn print_json(to_stderr: bool, v: &impl serde::Serialize) -> anyhow::Result<()> {
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

/// `create`; with `--metrics-file`, the metrics of the run are written
/// whatever ends it (an error before the archive is started too).
fn create(a: CreateArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
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

/// Whether an archive argument names a local file (not `-`, an s3://
/// URL or a directory with its `/`).
fn is_local_file(p: &Path) -> bool {
    p != Path::new("-")
        && !p.to_string_lossy().starts_with(sydra_archive::S3_SCHEME)
        && !p.as_os_str().as_encoded_bytes().ends_with(b"/")
}

/// Runs `run`; with `metrics_file` (refused first if it cannot be
/// written or is `archive`), writes whether it ended in success.
fn with_outcome(
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
    let (output, archive) = create_output(a, created_unix_ms, sealed.is_some())?;
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
            if !shelf.starts_with(sydra_archive::S3_SCHEME) {
                _shelf_lock = sydra_archive::lock_shelf(Path::new(shelf.as_ref()), false)?;
            }
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

/// Where `create -o` writes (stdout, an object or a file) and its name in
/// reports. An `OUT` ending in `/` is a directory or a prefix: the
/// archive is named there by its creation time (UTC).
fn create_output(
    a: &CreateArgs,
    created_unix_ms: u64,
    encrypted: bool,
) -> anyhow::Result<(Output, String)> {
    if a.output == Path::new("-") {
        return Ok((Output::Stdout, "-".into()));
    }
    let mut out = a.output.clone();
    if a.output.as_os_str().as_encoded_bytes().ends_with(b"/") {
        let mut name = sydra_archive::timestamped_name(created_unix_ms as i64);
        if encrypted {
            name.push_str(".age");
        }
        if !a
            .output
            .to_string_lossy()
            .starts_with(sydra_archive::S3_SCHEME)
            && !a.output.is_dir()
        {
            // `f/` of a file fails with ENOTDIR: look at `f`.
            let bare = a.output.to_string_lossy().trim_end_matches('/').to_string();
            let what = if std::fs::symlink_metadata(&bare).is_ok() {
                "is not a directory"
            } else {
                "does not exist"
            };
            return Err(Error::Refused(format!(
                "{} {what} (an OUT ending in / names an existing directory or an s3:// prefix)",
                a.output.display()
            ))
            .into());
        }
        let mut joined = a.output.clone().into_os_string();
        joined.push(&name);
        out = PathBuf::from(joined);
        // Never over an archive already there (two runs in one second, or
        // a fixed SOURCE_DATE_EPOCH): the next free `-N` before the
        // suffix. A race with another run is refused at publication.
        if !a
            .output
            .to_string_lossy()
            .starts_with(sydra_archive::S3_SCHEME)
        {
            let (stem, ext) = name.split_at(name.find(".tar.zst").unwrap_or(name.len()));
            let mut n = 1;
            while std::fs::symlink_metadata(&out).is_ok() && n < 1000 {
                n += 1;
                let mut joined = a.output.clone().into_os_string();
                joined.push(format!("{stem}-{n}{ext}"));
                out = PathBuf::from(joined);
            }
        }
    }
    let shown = out.display().to_string();
    Ok(match location(&out, &a.s3)? {
        Location::S3 { url, options } => (
            Output::S3 {
                url,
                options,
                force: a.force,
            },
            shown,
        ),
        Location::Local(path) => (
            Output::File {
                path,
                force: a.force,
            },
            shown,
        ),
    })
}

/// HEAD's creation time from `SOURCE_DATE_EPOCH` (seconds), if set.
fn source_date_epoch_ms() -> anyhow::Result<Option<u64>> {
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

/// `verify`; with `--metrics-file`, its outcome is written whatever ends it.
fn verify(mut a: VerifyArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    let archive = a.archive.clone();
    with_outcome(
        a.metrics_file.take(),
        Some(&archive),
        sydra_archive::Outcome::verify,
        || verify_run(a, std_closed),
    )
}

fn verify_run(a: VerifyArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    use_keys(&a.keys.identities, a.keys.passphrase_file.as_deref())?;
    let started = Instant::now();
    std_closed.check_reader(&a.archive, a.json)?;
    let loc = read_location(&a.archive, &a.s3, &a.read)?;
    let progress = Arc::new(Progress::default());
    let display = Display::start("verify", a.progress, a.quiet, &progress);
    let threads = a.read.threads as usize;
    let chain_bases = bases(&a.chain, &a.s3)?;
    let result = if a.deep {
        sydra_archive::verify_deep(&loc, Some(progress.clone()), threads)
            .map(|d| (d.read.clone(), Some(d)))
    } else {
        let depth = if a.quick { Depth::Quick } else { Depth::Full };
        sydra_archive::verify(&loc, depth, Some(progress.clone()), threads).and_then(|s| {
            if a.check_chain {
                let chain =
                    sydra_archive::verify_chain(&loc, &chain_bases, a.read_data, threads)?;
                if !a.quiet && !a.json && chain.len() > 1 {
                    let what = if a.read_data {
                        "every byte of every base read and checked, each the archive recorded (whole SHA-256), the operations fit them"
                    } else {
                        "each base present and the archive recorded (whole SHA-256), the operations fit them; the bases' data frames were not decompressed (--read-data does)"
                    };
                    say!(
                        "sydra-archive: chain of {} archives, {what}: {}",
                        chain.len(),
                        chain.join(" <- ")
                    );
                }
            }
            Ok((s, None))
        })
    };
    display.finish();
    let secs = started.elapsed().as_secs_f64();
    let archive = loc.to_string();
    let mode = if a.deep {
        "deep"
    } else if a.quick {
        "quick"
    } else {
        "full"
    };
    match result {
        Ok((_, Some(deep))) if deep.problem_count > 0 => {
            if a.json {
                print_json(false, &report::VerifyReport::problems(&archive, &deep))?;
            }
            ui::deep_problems(&archive, &deep);
            Ok(ExitCode::from(EXIT_ARCHIVE))
        }
        Ok((s, _)) => {
            if a.json {
                print_json(false, &report::VerifyReport::ok(&archive, mode, &s, secs))?;
            } else if !a.quiet {
                writeln!(
                    io::stdout(),
                    "{}",
                    ui::verified_line(&archive, mode, &s, secs)
                )
                .context("cannot write the result to stdout")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let code = if e.is_archive_fault() {
                EXIT_ARCHIVE
            } else {
                EXIT_OTHER
            };
            if a.json {
                print_json(false, &report::VerifyReport::failed(&archive, &e))?;
            }
            say!("sydra-archive: verify {archive}: {e}");
            Ok(ExitCode::from(code))
        }
    }
}

fn list(a: ListArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    use_keys(&a.keys.identities, a.keys.passphrase_file.as_deref())?;
    std_closed.check(&a.archive, true)?;
    std_closed.check_results("the listing")?;
    let loc = location(&a.archive, &a.s3)?;
    let bases = bases(&a.chain, &a.s3)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    // Entries are written as they are read: nothing holds the list. A
    // failed write stops the listing and is reported as such.
    let mut write_failed: Option<io::Error> = None;
    let mut first = true;
    let (json, sha256) = (a.json, a.sha256);
    let listed = {
        let mut visit =
            |e: &Entry, d: Option<&[u8; 32]>, carried: Option<bool>| -> sydra_archive::Result<()> {
                let wrote = if sha256 {
                    d.map_or(Ok(()), |d| write_sha256_line(&mut out, e, d))
                } else if json {
                    write_json_entry(&mut out, e, d, carried, std::mem::take(&mut first))
                } else {
                    write_list_line(&mut out, e, carried)
                };
                wrote.map_err(|err| {
                    write_failed = Some(err);
                    sydra_archive::Error::Interrupted
                })
            };
        sydra_archive::list_chain(&loc, sha256, &a.patterns, &bases, &mut visit)
    };
    if let Some(e) = write_failed {
        return Err(anyhow::Error::new(e).context("cannot write the listing to stdout"));
    }
    let (info, chain) = listed.with_context(|| format!("list {loc}"))?;
    let ended = if json {
        report::write_list_end(&mut out, &info, &chain, first)
    } else {
        Ok(())
    };
    ended
        .and_then(|()| out.flush())
        .context("cannot write the listing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `list --sha256`: one `sha256sum -c` line.
fn write_sha256_line(out: &mut impl Write, e: &Entry, d: &[u8; 32]) -> io::Result<()> {
    if e.kind != sydra_archive::EntryKind::File {
        return Ok(());
    }
    // sha256sum's own escape for names with a backslash or newline.
    if e.path.contains(['\\', '\n']) {
        let name = e.path.replace('\\', "\\\\").replace('\n', "\\n");
        writeln!(out, "\\{}  {name}", hex(d))
    } else {
        writeln!(out, "{}  {}", hex(d), e.path)
    }
}

/// `list`: one line per entry; of an incremental's whole tree, `+`
/// before what the archive itself carries.
fn write_list_line(out: &mut impl Write, e: &Entry, carried: Option<bool>) -> io::Result<()> {
    let mark = match carried {
        None => "",
        Some(true) => "+ ",
        Some(false) => "  ",
    };
    writeln!(
        out,
        "{:<4} {:>12} {mark}{}",
        e.kind.as_str(),
        e.size,
        ui::escape_name(&e.path)
    )
}

/// `list --json`: one entry of the `entries` array (the entries come
/// first, what the archive says about itself after them: a version-2
/// archive says it at its end).
fn write_json_entry(
    out: &mut impl Write,
    e: &Entry,
    d: Option<&[u8; 32]>,
    carried: Option<bool>,
    first: bool,
) -> io::Result<()> {
    out.write_all(if first { b"{\"entries\":[" } else { b"," })?;
    let mut entry = report::ListEntry::new(e, d);
    entry.carried = carried;
    serde_json::to_writer(&mut *out, &entry)?;
    Ok(())
}

fn restore(a: RestoreArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    use_keys(&a.keys.identities, a.keys.passphrase_file.as_deref())?;
    let started = Instant::now();
    std_closed.check_reader(&a.archive, a.json)?;
    let mut chain_bases = bases(&a.chain, &a.s3)?;
    let (loc, skipped) = if a.archive.as_os_str().as_encoded_bytes().ends_with(b"/") {
        let (loc, skipped, chain) = newest_restorable(&a, &chain_bases)?;
        // The chain as found there (a renamed base included).
        chain_bases.extend(chain);
        (loc, skipped)
    } else {
        (read_location(&a.archive, &a.s3, &a.read)?, Vec::new())
    };
    let progress = Arc::new(Progress::default());
    let display = Display::start("restore", a.progress, a.quiet, &progress);
    let result = sydra_archive::restore(
        &loc,
        &a.data_dir,
        &RestoreOptions {
            force: a.force,
            progress: Some(progress.clone()),
            threads: a.read.threads as usize,
            bases: chain_bases,
        },
    );
    display.finish();
    let s = result.with_context(|| format!("restore {loc}"))?;
    let chosen_from = a
        .archive
        .as_os_str()
        .as_encoded_bytes()
        .ends_with(b"/")
        .then(|| a.archive.display().to_string());
    let secs = started.elapsed().as_secs_f64();
    let archive = loc.to_string();
    // The data dir is replaced: a report that cannot be written is a
    // warning, not a failure (a script would retry a restore that is done).
    if a.json
        && let Err(e) = print_json(
            false,
            &report::RestoreReport {
                archive: archive.clone(),
                data_dir: s.data_dir.clone(),
                bytes: s.read.bytes,
                sha256: hex(&s.read.sha256),
                files: s.read.info.files,
                entries: s.read.info.entries(),
                data_bytes: s.read.info.total_bytes,
                kept_old: s.kept_old.clone(),
                removed_leftovers: s.removed_leftovers.clone(),
                reported_leftovers: s.reported_leftovers.clone(),
                warnings: s.warnings.clone(),
                seconds: secs,
                chain: s.chain.clone(),
                chosen_from,
                skipped: skipped
                    .iter()
                    .map(|(url, why)| report::Other { url, reason: why })
                    .collect(),
            },
        )
    {
        say!("sydra-archive: warning: restored, but {}", one_line(&e));
    }
    if !a.quiet {
        for p in &s.removed_leftovers {
            say!(
                "sydra-archive: removed unfinished staging directory {} of a killed run",
                p.display()
            );
        }
        for p in &s.reported_leftovers {
            say!(
                "sydra-archive: {} was left by a killed restore and may hold a data dir; inspect it and remove it yourself",
                p.display()
            );
        }
        for w in &s.warnings {
            say!("sydra-archive: warning: {w}");
        }
        if let Some(k) = &s.kept_old {
            say!(
                "sydra-archive: previous contents of {} kept at {}",
                s.data_dir.display(),
                k.display()
            );
        }
        if !a.json && s.chain.len() > 1 {
            say!(
                "sydra-archive: restored the chain of {} archives {} into {}, each verified, in {secs:.2}s; {archive}: sha256 {}",
                s.chain.len(),
                s.chain.join(" <- "),
                s.data_dir.display(),
                hex(&s.read.sha256)
            );
        } else if !a.json {
            say!(
                "sydra-archive: restored {archive} into {}: {}, {}, verified, in {secs:.2}s, sha256 {}",
                s.data_dir.display(),
                ui::count(s.read.info.files, "file", "files"),
                ui::count(s.read.info.total_bytes, "data byte", "data bytes"),
                hex(&s.read.sha256)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `restore DIR/`: the newest restorable archive there (see
/// [`sydra_archive::newest_restorable`]); the ones skipped are said on
/// stderr, one line each, and the one chosen.
fn newest_restorable(
    a: &RestoreArgs,
    chain_bases: &[Location],
) -> anyhow::Result<sydra_archive::Chosen> {
    let opts = S3Options {
        concurrency: a.read.concurrency as usize,
        ..s3_options(&a.s3)
    };
    let shown = a.archive.to_string_lossy();
    let shelf = sydra_archive::Shelf::parse(&shown, &opts)?;
    let say_skipped = |skipped: &[(String, String)]| {
        for (url, why) in skipped {
            say!("sydra-archive: skipped {}: {why}", ui::escape_name(url));
        }
    };
    let (loc, skipped, chain) = match sydra_archive::newest_restorable(&shelf, chain_bases) {
        Ok(r) => r,
        Err(e) => {
            // Of several, each is said on its line; the error sums up.
            if let Error::NoneRestorable { skipped, shelf } = &e
                && skipped.len() > 1
            {
                say_skipped(skipped);
                return Err(Error::Refused(format!(
                    "no restorable archive in {shelf}: all {} archives were skipped",
                    skipped.len()
                ))
                .into());
            }
            return Err(e.into());
        }
    };
    if !a.quiet {
        say_skipped(&skipped);
        let newer = match skipped.len() {
            0 => String::new(),
            n => format!(
                " ({} skipped: {})",
                ui::count(n as u64, "newer archive", "newer archives"),
                skipped
                    .iter()
                    .map(|(url, _)| ui::escape_name(url))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        say!("sydra-archive: restoring the newest restorable archive {loc}{newer}");
    }
    Ok((loc, skipped, chain))
}

fn extract(a: ExtractArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    use_keys(&a.keys.identities, a.keys.passphrase_file.as_deref())?;
    let started = Instant::now();
    std_closed.check_reader(&a.archive, a.json)?;
    let to_stdout = a.output.as_deref() == Some(Path::new("-"));
    let to = match (&a.directory, &a.output) {
        (_, Some(o)) if to_stdout => {
            std_closed.check(o, false)?;
            sydra_archive::ExtractTo::Stdout
        }
        (_, Some(o)) => sydra_archive::ExtractTo::File(o.clone()),
        (Some(d), None) => sydra_archive::ExtractTo::Dir(d.clone()),
        (None, None) => anyhow::bail!("give -C DIR or -o OUT"),
    };
    let loc = location(&a.archive, &a.s3)?;
    let s = sydra_archive::extract(
        &loc,
        &sydra_archive::ExtractOptions {
            patterns: a.patterns.clone(),
            to,
            force: a.force,
            bases: bases(&a.chain, &a.s3)?,
        },
    )
    .with_context(|| format!("extract {loc}"))?;
    let secs = started.elapsed().as_secs_f64();
    if s.streamed && !a.quiet {
        say!(
            "sydra-archive: {loc} has no index to read at offsets (a version-1 archive, or a pipe): it was read whole"
        );
    }
    if a.json {
        print_json(
            to_stdout,
            &report::ExtractReport::new(&loc.to_string(), &s, secs),
        )?;
    } else if !a.quiet {
        say!(
            "sydra-archive: extracted {} ({}) from {loc}, checked, in {secs:.2}s; read {} in {}",
            ui::count(s.files, "file", "files"),
            ui::count(s.bytes, "data byte", "data bytes"),
            ui::count(s.read_bytes, "archive byte", "archive bytes"),
            ui::count(s.reads, "read", "reads")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn ls(a: LsArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    use_keys(&a.keys.identities, a.keys.passphrase_file.as_deref())?;
    std_closed.check_results("the listing")?;
    let shelf = sydra_archive::Shelf::parse(&a.url, &s3_options(&a.s3))?;
    let url = shelf.shown();
    let listing = sydra_archive::ls(&shelf)?;
    let restorable = sydra_archive::restorable(&listing);
    let latest = restorable.iter().position(|r| *r);
    if !a.quiet {
        for (obj, why) in &listing.others {
            say!("sydra-archive: {obj} is not a sydra-archive: {why}");
        }
        for t in &listing.stale {
            say!(
                "sydra-archive: {} is the temporary file of a killed run (removed by the next prune --yes or create here)",
                ui::escape_name(t)
            );
        }
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    if a.json {
        let others = listing
            .others
            .iter()
            .map(|(url, why)| report::Other { url, reason: why })
            .collect();
        serde_json::to_writer(
            &mut out,
            &report::LsReport {
                prefix: url.to_string(),
                archives: listing
                    .archives
                    .iter()
                    .zip(&restorable)
                    .map(|(archive, &restorable)| report::LsArchive {
                        archive,
                        restorable,
                    })
                    .collect(),
                latest: latest.map(|i| listing.archives[i].url.as_str()),
                others,
                stale: &listing.stale,
            },
        )?;
        out.write_all(b"\n")?;
    } else {
        for (i, l) in listing.archives.iter().enumerate() {
            let mark = match (latest == Some(i), restorable[i], l.chain_known) {
                (true, _, _) => "  [latest]",
                (false, true, _) => "",
                (false, false, false) => "  [chain unknown]",
                (false, false, true) => "  [chain incomplete]",
            };
            let (kind, base) = match &l.base {
                // A passphrase archive listed without the passphrase.
                None if !l.chain_known => ("encrypted", String::new()),
                None => ("full", String::new()),
                Some(b) => (
                    "incremental",
                    format!("  (on {})", ui::escape_name(&b.location)),
                ),
            };
            writeln!(
                out,
                "{}  {:>14}  {kind:<11}  {}{base}{mark}",
                sydra_archive::utc_time(l.modified_unix_ms),
                l.size,
                ui::escape_name(&l.url)
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `prune`; with `--metrics-file`, its outcome is written whatever ends it.
fn prune(mut a: PruneArgs) -> anyhow::Result<ExitCode> {
    with_outcome(
        a.metrics_file.take(),
        None,
        sydra_archive::Outcome::prune,
        || prune_run(a),
    )
}

fn prune_run(a: PruneArgs) -> anyhow::Result<ExitCode> {
    use_keys(&a.keys.identities, a.keys.passphrase_file.as_deref())?;
    let policy = sydra_archive::Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
    };
    policy.check()?;
    let shelf = sydra_archive::Shelf::parse(&a.url, &s3_options(&a.s3))?;
    let url = shelf.shown();
    let p = sydra_archive::prune(&shelf, &policy, a.yes)?;
    if !a.quiet {
        for (obj, why) in &p.others {
            say!("sydra-archive: left {obj} alone: not a sydra-archive: {why}");
        }
    }
    for t in &p.stale {
        let verb = if p.dry_run { "would remove" } else { "removed" };
        say!(
            "sydra-archive: {verb} {}, the temporary file of a killed run",
            ui::escape_name(t)
        );
    }
    for (obj, base) in &p.missing_bases {
        say!(
            "sydra-archive: warning: {} is kept, but its base {} is not among the archives here (elsewhere, or gone): it cannot be restored without it",
            ui::escape_name(obj),
            ui::escape_name(base)
        );
    }
    if a.json {
        print_json(
            false,
            &report::PruneReport {
                prefix: url.to_string(),
                dry_run: p.dry_run,
                kept: p
                    .kept
                    .iter()
                    .map(|k| report::KeptReport {
                        archive: &k.archive,
                        reasons: k.reasons.iter().map(ToString::to_string).collect(),
                    })
                    .collect(),
                deleted: &p.deleted,
                failed: p
                    .failed
                    .iter()
                    .map(|(l, why)| report::Other {
                        url: &l.url,
                        reason: why,
                    })
                    .collect(),
                others: p
                    .others
                    .iter()
                    .map(|(url, why)| report::Other { url, reason: why })
                    .collect(),
                missing_bases: p
                    .missing_bases
                    .iter()
                    .map(|(url, base)| report::Other { url, reason: base })
                    .collect(),
                stale: &p.stale,
            },
        )?;
        return Ok(prune_code(&p));
    }
    let say_failed = || {
        for (l, why) in &p.failed {
            say!(
                "sydra-archive: could not delete {}: {why}",
                ui::escape_name(&l.url)
            );
        }
    };
    if a.quiet {
        say_failed();
        return Ok(prune_code(&p));
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    let verb = if p.dry_run { "would delete" } else { "deleted" };
    for k in &p.kept {
        let why: Vec<String> = k.reasons.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "{:<12} {}  {}  ({})",
            "keep",
            sydra_archive::utc_time(k.archive.modified_unix_ms),
            ui::escape_name(&k.archive.url),
            why.join(", ")
        )?;
    }
    for l in &p.deleted {
        writeln!(
            out,
            "{verb:<12} {}  {}",
            sydra_archive::utc_time(l.modified_unix_ms),
            ui::escape_name(&l.url)
        )?;
    }
    out.flush()?;
    say_failed();
    let freed: u64 = p.deleted.iter().map(|l| l.size).sum();
    if p.dry_run {
        say!(
            "sydra-archive: dry run on {url}: would keep {}, delete {} ({}); add --yes to delete them",
            p.kept.len(),
            ui::count(p.deleted.len() as u64, "archive", "archives"),
            ui::count(freed, "byte", "bytes")
        );
    } else {
        say!(
            "sydra-archive: pruned {url}: kept {}, deleted {} ({})",
            p.kept.len(),
            ui::count(p.deleted.len() as u64, "archive", "archives"),
            ui::count(freed, "byte", "bytes")
        );
    }
    Ok(prune_code(&p))
}

/// 2 when a deletion failed (the others were done and reported).
fn prune_code(p: &sydra_archive::Pruned) -> ExitCode {
    if p.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_OTHER)
    }
}

/// The man pages, from the command tree: `(name, roff)`, the top page
/// (`sydra-archive`) first, then `sydra-archive-COMMAND` for each command.
fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    // Built, each command is named `sydra-archive-COMMAND` and its usage
    // `sydra-archive COMMAND`.
    cmd.build();
    let mut pages = Vec::new();
    for c in std::iter::once(&cmd).chain(cmd.get_subcommands().filter(|c| !c.is_hide_set())) {
        let man = clap_mangen::Man::new(c.clone())
            .source(format!("sydra-archive {}", env!("CARGO_PKG_VERSION")));
        let name = c.get_display_name().unwrap_or(c.get_name()).to_string();
        let mut roff = Vec::new();
        man.render(&mut roff)?;
        pages.push((name, roff));
    }
    Ok(pages)
}

fn man(a: ManArgs) -> anyhow::Result<ExitCode> {
    let pages = man_pages()?;
    if let Some(dir) = &a.dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        for (name, roff) in &pages {
            let path = dir.join(format!("{name}.1"));
            std::fs::write(&path, roff).map_err(|e| Error::io("write", &path, e))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let want = match &a.command {
        None => "sydra-archive".to_string(),
        Some(c) => format!("sydra-archive-{c}"),
    };
    let Some((_, roff)) = pages.iter().find(|(name, _)| *name == want) else {
        let commands: Vec<&str> = pages[1..]
            .iter()
            .map(|(n, _)| n.trim_start_matches("sydra-archive-"))
            .collect();
        return Err(Error::Refused(format!(
            "no command {}: man pages are for {}",
            a.command.as_deref().unwrap_or_default(),
            commands.join(", ")
        ))
        .into());
    };
    let mut out = io::stdout().lock();
    out.write_all(roff)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
