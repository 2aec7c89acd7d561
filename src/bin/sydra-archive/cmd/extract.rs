//! `extract`: to a directory, a file or stdout; what was read, on stderr
//! or as a `--json` report.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

use crate::args::{bases, point_location, use_keys};
use crate::cli::ExtractArgs;
use crate::report;
use crate::streams::{StdClosed, print_json};
use crate::ui;

pub fn extract(a: ExtractArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
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
    let mut chain_bases = bases(&a.chain, &a.s3)?;
    let loc = point_location(&a.archive, a.at.as_deref(), &a.s3, &mut chain_bases)?;
    let s = sydra_archive::extract(
        &loc,
        &sydra_archive::ExtractOptions {
            patterns: a.patterns.clone(),
            to,
            force: a.force,
            bases: chain_bases,
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
