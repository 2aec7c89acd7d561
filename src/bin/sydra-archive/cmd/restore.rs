//! `restore` (of an archive, or of the newest restorable one in a
//! directory or under a prefix): what it did, kept and left, on stderr or
//! as a `--json` report.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use sydra_archive::{Error, Location, Progress, RestoreOptions, S3Options, hex};

use crate::args::{bases, read_location, s3_options, use_keys};
use crate::cli::RestoreArgs;
use crate::exit::one_line;
use crate::report;
use crate::streams::{StdClosed, print_json};
use crate::ui::{self, Display};

pub fn restore(a: RestoreArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    use_keys(&a.keys.identities, a.keys.passphrase_file.as_deref())?;
    let started = Instant::now();
    std_closed.check_reader(&a.archive, a.json)?;
    let mut chain_bases = bases(&a.chain, &a.s3)?;
    if a.at.is_some() && !a.archive.as_os_str().as_encoded_bytes().ends_with(b"/") {
        return Err(Error::Refused(format!(
            "--at chooses among the archives of a directory or prefix: ARCHIVE must end in / (got {})",
            a.archive.display()
        ))
        .into());
    }
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
    let chosen = match &a.at {
        Some(t) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            let at = sydra_archive::parse_time(t, now)?;
            sydra_archive::restorable_at(&shelf, chain_bases, Some(at))
        }
        None => sydra_archive::newest_restorable(&shelf, chain_bases),
    };
    let (loc, skipped, chain) = match chosen {
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
        match &a.at {
            Some(t) => say!(
                "sydra-archive: restoring {loc}, the newest point at or before {t} restorable there{newer}"
            ),
            None => say!("sydra-archive: restoring the newest restorable archive {loc}{newer}"),
        }
    }
    Ok((loc, skipped, chain))
}
