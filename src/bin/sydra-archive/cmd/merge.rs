//! `merge`: the arguments turned into a call of the library's `merge`
//! (the output named in a directory or under a prefix, encryption), and
//! its result printed.

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use std::sync::Arc;

use sydra_archive::{CreateOptions, Progress, hex};

use crate::args::{bases, location, point_location, read_location, use_keys};
use crate::cli::{MergeArgs, ReadArgs};
use crate::cmd::create::{output_for, source_date_epoch_ms};
use crate::report;
use crate::streams::{StdClosed, print_json};
use crate::ui::{self, Display};

pub fn merge(a: MergeArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let to_stdout = a.output == Path::new("-");
    std_closed.check(&a.output, false)?;
    if a.json && !to_stdout {
        std_closed.check_results("the --json report")?;
    }
    use_keys(&a.identities, a.passphrase_file.as_deref())?;
    if a.archive == Path::new("-") {
        return Err(sydra_archive::Error::Refused(
            "merge reads the archives of a chain at offsets: give a file or an s3:// URL, not - (stdin)"
                .into(),
        )
        .into());
    }
    let mut chain_bases = bases(&a.chain, &a.s3)?;
    // DIR/ or a prefix: the newest restorable point there.
    let archive = if a.archive.as_os_str().as_encoded_bytes().ends_with(b"/") {
        point_location(&a.archive, None, &a.s3, &mut chain_bases)?
    } else {
        read_location(&a.archive, &a.s3, &ReadArgs::default())?
    };
    // The merged archive is of the newest archive's moment: dated and
    // named by it.
    let created_unix_ms = match source_date_epoch_ms()? {
        Some(ms) => ms,
        None => sydra_archive::created_unix_ms(&archive)?,
    };
    let sealed = sydra_archive::Recipients::new(
        &a.recipients,
        &a.recipients_files,
        a.passphrase_file.as_deref(),
    )?;
    let (output, shown) = output_for(&a.output, a.force, &a.s3, created_unix_ms, sealed.is_some())?;
    let progress = Arc::new(Progress::default());
    let display = Display::start("merge", a.progress, a.quiet, &progress);
    let opts = CreateOptions {
        level: a.level,
        threads: a.threads,
        created_unix_ms: Some(created_unix_ms),
        progress: display.shown().then(|| progress.clone()),
        frame_bytes: a.frame_kib as usize * 1024,
    };
    let onto = match &a.onto {
        Some(b) => Some(location(b, &a.s3)?),
        None => None,
    };
    let m = sydra_archive::merge(
        &archive,
        onto.as_ref(),
        &chain_bases,
        sealed.as_ref(),
        &output,
        &opts,
    );
    display.finish();
    let m = m?;
    let s = &m.archive;
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        print_json(
            to_stdout,
            &report::MergeReport {
                archive: report::CreateReport::new(&shown, s, secs),
                chain: m.chain.clone(),
                kept_members: m.counts.kept,
                copied_frames: m.counts.copied_frames,
                operations: m.counts.operations,
            },
        )?;
    }
    if !a.quiet && !a.json && a.onto.is_some() {
        say!(
            "sydra-archive: merged {} into {shown}, an incremental on {}: {}, {}, {} in {secs:.2}s, sha256 {}",
            ui::count(m.counts.archives, "archive", "archives"),
            s.base.as_ref().map_or("-", |b| b.location.as_str()),
            ui::count(m.counts.kept, "member", "members"),
            ui::count(m.counts.operations, "operation", "operations"),
            ui::count(s.bytes, "byte", "bytes"),
            hex(&s.sha256)
        );
    } else if !a.quiet && !a.json {
        say!(
            "sydra-archive: merged {} into {shown}: {}, {} -> {} in {secs:.2}s ({} copied whole), sha256 {}",
            ui::count(m.chain.len() as u64, "archive", "archives"),
            ui::count(s.files, "file", "files"),
            ui::count(s.data_bytes, "data byte", "data bytes"),
            ui::count(s.bytes, "byte", "bytes"),
            ui::count(m.counts.copied_frames, "frame", "frames"),
            hex(&s.sha256)
        );
    }
    Ok(ExitCode::SUCCESS)
}
