//! `prune`: what a policy keeps and deletes (or would, without `--yes`),
//! one line each or a `--json` report; a failed deletion exits 2.

use std::io::{self, Write};
use std::process::ExitCode;

use crate::args::{s3_options, use_keys};
use crate::cli::PruneArgs;
use crate::exit::EXIT_OTHER;
use crate::metrics::with_outcome;
use crate::report;
use crate::streams::print_json;
use crate::ui;

/// `prune`; with `--metrics-file`, its outcome is written whatever ends it.
pub fn prune(mut a: PruneArgs) -> anyhow::Result<ExitCode> {
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
