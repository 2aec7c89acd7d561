//! The `sydra-archive` binary: parse arguments, call the library, map the
//! result to an exit code (0 ok, 1 bad archive, 2 anything else).

mod cli;
mod ui;

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use serde_json::json;
use sydra_archive::progress::Progress;
use sydra_archive::sums::hex;
use sydra_archive::{CreateOptions, Depth, Error, Output, RestoreOptions};

use cli::{Cli, Command, CreateArgs, ListArgs, LsArgs, PruneArgs, RestoreArgs, S3Args, VerifyArgs};
use sydra_archive::Location;
use sydra_archive::remote::{Remote, S3Options, S3Url};
use ui::Display;

const EXIT_ARCHIVE: u8 = 1;
const EXIT_OTHER: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = sydra_archive::cleanup::install_signal_handlers(i32::from(EXIT_OTHER)) {
        eprintln!("sydra-archive: cannot install signal handlers: {e}");
        return ExitCode::from(EXIT_OTHER);
    }
    let result = match cli.command {
        Command::Create(a) => create(a),
        Command::Verify(a) => verify(a),
        Command::List(a) => list(a),
        Command::Restore(a) => restore(a),
        Command::Ls(a) => ls(a),
        Command::Prune(a) => prune(a),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "sydra-archive", &mut io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => man(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::from(EXIT_OTHER);
            }
            eprintln!("sydra-archive: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
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
    }
}

/// An archive argument: `s3://…` is an object, anything else a path.
fn location(arg: &Path, s3: &S3Args) -> anyhow::Result<Location> {
    Ok(Location::parse(arg, &s3_options(s3))?)
}

fn print_json(to_stderr: bool, v: &serde_json::Value) -> anyhow::Result<()> {
    let text = format!("{v}\n");
    if to_stderr {
        io::stderr().write_all(text.as_bytes())?;
    } else {
        io::stdout().write_all(text.as_bytes())?;
    }
    Ok(())
}

fn create(a: CreateArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let to_stdout = a.output == Path::new("-");
    let output = match location(&a.output, &a.s3)? {
        _ if to_stdout => Output::Stdout,
        Location::S3 { url, options } => Output::S3 {
            url,
            options,
            force: a.force,
        },
        Location::Local(path) => Output::File {
            path,
            force: a.force,
        },
    };
    let created_unix_ms = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => Some(
            s.trim()
                .parse::<u64>()
                .context("SOURCE_DATE_EPOCH is not a number of seconds")?
                * 1000,
        ),
        Err(_) => None,
    };
    let progress = Arc::new(Progress::default());
    let opts = CreateOptions {
        level: a.level,
        threads: a.threads,
        created_unix_ms,
        progress: Some(progress.clone()),
    };
    let display = Display::start("create", a.progress, a.quiet, &progress);
    let result = sydra_archive::create(&a.data_dir, &output, &opts);
    display.finish();
    let s = result?;
    let secs = started.elapsed().as_secs_f64();
    let archive = a.output.display().to_string();
    if a.json {
        print_json(
            to_stdout,
            &json!({
                "archive": archive,
                "bytes": s.bytes,
                "sha256": hex(&s.sha256),
                "files": s.files,
                "dirs": s.dirs,
                "data_bytes": s.data_bytes,
                "skipped": s.skipped,
                "followed": s.followed,
                "removed_stale_temps": s.removed_stale,
                "threads": s.threads,
                "wal": s.wal,
                "warnings": s.warnings,
                "seconds": secs,
                "object": s.uploaded.as_ref().map(|u| json!({
                    "url": u.url,
                    "parts": u.parts,
                    "part_size": u.plan.base,
                    "parts_in_flight": u.plan.in_flight,
                    "e_tag": u.e_tag,
                    "sha256_in_metadata": u.sha256_in_metadata,
                })),
            }),
        )?;
    }
    if !a.quiet {
        for name in &s.skipped {
            eprintln!("sydra-archive: skipped {name:?} (not part of the SydraDB layout)");
        }
        for name in &s.followed {
            eprintln!("sydra-archive: followed symlink {name:?}");
        }
        for p in &s.removed_stale {
            eprintln!(
                "sydra-archive: removed stale temporary file {}",
                p.display()
            );
        }
        for w in &s.warnings {
            eprintln!("sydra-archive: warning: {w}");
        }
        if !a.json {
            let parts = match &s.uploaded {
                Some(u) => format!(" ({} parts)", u.parts),
                None => String::new(),
            };
            eprintln!(
                "sydra-archive: wrote {archive}{parts}: {} files, {} data bytes -> {} bytes in {secs:.2}s, sha256 {}",
                s.files,
                s.data_bytes,
                s.bytes,
                hex(&s.sha256)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn verify(a: VerifyArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let depth = if a.quick { Depth::Quick } else { Depth::Full };
    let loc = location(&a.archive, &a.s3)?;
    let progress = Arc::new(Progress::default());
    let display = Display::start("verify", a.progress, a.quiet, &progress);
    let result = if a.deep {
        sydra_archive::deep::verify_deep(&loc, Some(progress.clone()))
            .map(|(s, problems, total)| (s, Some((problems, total))))
    } else {
        sydra_archive::verify(&loc, depth, Some(progress.clone())).map(|s| (s, None))
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
        Ok((s, Some((problems, total)))) if total > 0 => {
            if a.json {
                print_json(
                    false,
                    &json!({
                        "ok": false,
                        "archive": archive,
                        "mode": mode,
                        "error": format!("{total} problem(s) SydraDB would trip over"),
                        "problems": problems,
                        "problem_count": total,
                        "sha256": hex(&s.sha256),
                    }),
                )?;
            }
            for p in &problems {
                eprintln!(
                    "sydra-archive: {}: offset {}: {}",
                    p.path, p.offset, p.reason
                );
            }
            eprintln!(
                "sydra-archive: verify --deep {archive}: {total} problem(s); a data dir restored from it would not start cleanly"
            );
            Ok(ExitCode::from(EXIT_ARCHIVE))
        }
        Ok((s, _)) => {
            let files = s.head.file_count();
            if a.json {
                print_json(
                    false,
                    &json!({
                        "ok": true,
                        "archive": archive,
                        "mode": mode,
                        "bytes": s.bytes,
                        "sha256": hex(&s.sha256),
                        "files": files,
                        "entries": s.head.entries.len(),
                        "data_bytes": s.head.total_bytes,
                        "frames": s.frames,
                        "seconds": secs,
                    }),
                )?;
            } else {
                writeln!(
                    io::stdout(),
                    "ok {archive}: {} ({files} files, {} data bytes, {} archive bytes, sha256 {}) in {secs:.2}s",
                    match mode {
                        "quick" => "quick check",
                        "deep" => "fully verified, SydraDB files decoded",
                        _ => "fully verified",
                    },
                    s.head.total_bytes,
                    s.bytes,
                    hex(&s.sha256)
                )?;
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
                print_json(
                    false,
                    &json!({"ok": false, "archive": archive, "error": e.to_string()}),
                )?;
            }
            eprintln!("sydra-archive: verify {archive}: {e}");
            Ok(ExitCode::from(code))
        }
    }
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let loc = location(&a.archive, &a.s3)?;
    if a.sha256 {
        let (head, sums) = sydra_archive::verify::list_sha256(&loc)?;
        let mut out = io::BufWriter::new(io::stdout().lock());
        let files = head
            .entries
            .iter()
            .filter(|e| e.kind == sydra_archive::EntryKind::File);
        for (e, d) in files.zip(&sums) {
            // sha256sum's own escape for names with a backslash or newline.
            if e.path.contains(['\\', '\n']) {
                let name = e.path.replace('\\', "\\\\").replace('\n', "\\n");
                writeln!(out, "\\{}  {name}", hex(d))?;
            } else {
                writeln!(out, "{}  {}", hex(d), e.path)?;
            }
        }
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let head = sydra_archive::list(&loc)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    if a.json {
        serde_json::to_writer(&mut out, &head)?;
        out.write_all(b"\n")?;
    } else {
        for e in &head.entries {
            writeln!(out, "{:<4} {:>12} {}", e.kind.as_str(), e.size, e.path)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn restore(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let loc = location(&a.archive, &a.s3)?;
    let progress = Arc::new(Progress::default());
    let display = Display::start("restore", a.progress, a.quiet, &progress);
    let result = sydra_archive::restore(
        &loc,
        &a.data_dir,
        &RestoreOptions {
            force: a.force,
            progress: Some(progress.clone()),
        },
    );
    display.finish();
    let s = result?;
    let secs = started.elapsed().as_secs_f64();
    let archive = loc.to_string();
    if a.json {
        print_json(
            false,
            &json!({
                "archive": archive,
                "data_dir": s.data_dir,
                "bytes": s.read.bytes,
                "sha256": hex(&s.read.sha256),
                "files": s.read.head.file_count(),
                "entries": s.read.head.entries.len(),
                "data_bytes": s.read.head.total_bytes,
                "kept_old": s.kept_old,
                "removed_leftovers": s.removed_leftovers,
                "reported_leftovers": s.reported_leftovers,
                "warnings": s.warnings,
                "seconds": secs,
            }),
        )?;
    }
    if !a.quiet {
        for p in &s.removed_leftovers {
            eprintln!(
                "sydra-archive: removed unfinished staging directory {} of a killed run",
                p.display()
            );
        }
        for p in &s.reported_leftovers {
            eprintln!(
                "sydra-archive: {} was left by a killed restore and may hold a data dir; inspect it and remove it yourself",
                p.display()
            );
        }
        for w in &s.warnings {
            eprintln!("sydra-archive: warning: {w}");
        }
        if let Some(k) = &s.kept_old {
            eprintln!(
                "sydra-archive: previous contents of {} kept at {}",
                s.data_dir.display(),
                k.display()
            );
        }
        if !a.json {
            eprintln!(
                "sydra-archive: restored {archive} into {}: {} files, {} data bytes, verified, in {secs:.2}s, sha256 {}",
                s.data_dir.display(),
                s.read.head.file_count(),
                s.read.head.total_bytes,
                hex(&s.read.sha256)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ls(a: LsArgs) -> anyhow::Result<ExitCode> {
    let url = S3Url::parse(&a.url)?;
    let listing = sydra_archive::remote::ls(&Remote::connect(&url, &s3_options(&a.s3))?)?;
    for (obj, why) in &listing.others {
        eprintln!("sydra-archive: {obj} is not a sydra-archive: {why}");
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    if a.json {
        let others: Vec<_> = listing
            .others
            .iter()
            .map(|(url, why)| json!({"url": url, "reason": why}))
            .collect();
        serde_json::to_writer(
            &mut out,
            &json!({"prefix": url.to_string(), "archives": listing.archives, "others": others}),
        )?;
        out.write_all(b"\n")?;
    } else {
        for l in &listing.archives {
            writeln!(
                out,
                "{}  {:>14}  {}",
                ui::utc_time(l.modified_unix_ms),
                l.size,
                l.url
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn prune(a: PruneArgs) -> anyhow::Result<ExitCode> {
    let url = S3Url::parse(&a.url)?;
    let keep = usize::try_from(a.keep_last).unwrap_or(usize::MAX);
    let p = sydra_archive::remote::prune(&Remote::connect(&url, &s3_options(&a.s3))?, keep, a.yes)?;
    for (obj, why) in &p.others {
        eprintln!("sydra-archive: left {obj} alone: not a sydra-archive: {why}");
    }
    if a.json {
        print_json(
            false,
            &json!({
                "prefix": url.to_string(),
                "dry_run": p.dry_run,
                "kept": p.kept,
                "deleted": p.deleted,
            }),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    let verb = if p.dry_run { "would delete" } else { "deleted" };
    let rows = p.kept.iter().map(|l| ("keep", l));
    for (what, l) in rows.chain(p.deleted.iter().map(|l| (verb, l))) {
        writeln!(
            out,
            "{what:<7} {}  {}",
            ui::utc_time(l.modified_unix_ms),
            l.url
        )?;
    }
    out.flush()?;
    let freed: u64 = p.deleted.iter().map(|l| l.size).sum();
    if p.dry_run {
        eprintln!(
            "sydra-archive: dry run on {url}: would keep {}, delete {} archive(s) ({freed} bytes); add --yes to delete them",
            p.kept.len(),
            p.deleted.len()
        );
    } else {
        eprintln!(
            "sydra-archive: pruned {url}: kept {}, deleted {} archive(s) ({freed} bytes)",
            p.kept.len(),
            p.deleted.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn man() -> anyhow::Result<ExitCode> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let mut out = io::stdout().lock();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
