//! `ls`: the archives of a directory or a prefix, one line each (kind,
//! base, restorable, latest) or a `--json` report.

use std::io::{self, Write};
use std::process::ExitCode;

use crate::args::{s3_options, use_keys};
use crate::cli::LsArgs;
use crate::report;
use crate::streams::StdClosed;
use crate::ui;

pub fn ls(a: LsArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    use_keys(&a.keys.identities, a.keys.passphrase_file.as_deref())?;
    std_closed.check_results("the listing")?;
    let shelf = sydra_archive::Shelf::parse(&a.url, &s3_options(&a.s3))?;
    let url = shelf.shown();
    let listing = sydra_archive::ls(&shelf)?;
    if a.points {
        return points(&a, &url, &listing);
    }
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

/// `ls --points`: the restorable points, newest first, with their age.
fn points(a: &LsArgs, url: &str, listing: &sydra_archive::Listing) -> anyhow::Result<ExitCode> {
    let points = sydra_archive::points(listing);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut out = io::BufWriter::new(io::stdout().lock());
    if a.json {
        serde_json::to_writer(
            &mut out,
            &report::PointsReport {
                prefix: url.to_string(),
                points: points
                    .iter()
                    .map(|point| report::PointReport {
                        point,
                        age_s: (now - point.unix_ms) as f64 / 1000.0,
                    })
                    .collect(),
            },
        )?;
        out.write_all(b"\n")?;
    } else {
        for p in &points {
            writeln!(
                out,
                "{}  {:>9} ago  {}  ({})",
                p.time,
                ui::age((now - p.unix_ms).max(0) as u64 / 1000),
                ui::escape_name(&p.archive),
                ui::count(p.archives.len() as u64, "archive", "archives"),
            )?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
