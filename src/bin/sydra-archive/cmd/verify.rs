//! `verify` (quick, full, deep, and of a chain): the result as a line on
//! stdout or a `--json` report; a bad archive exits 1.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use sydra_archive::{Depth, Progress};

use crate::args::{bases, read_location, use_keys};
use crate::cli::VerifyArgs;
use crate::exit::{EXIT_ARCHIVE, EXIT_OTHER};
use crate::metrics::with_outcome;
use crate::report;
use crate::streams::{StdClosed, print_json};
use crate::ui::{self, Display};

/// `verify`; with `--metrics-file`, its outcome is written whatever ends it.
pub fn verify(mut a: VerifyArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
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
