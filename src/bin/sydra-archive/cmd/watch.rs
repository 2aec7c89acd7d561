//! `watch`: the arguments turned into a call of the library's `watch`,
//! one line (or one JSON object) per point, and the metrics file
//! rewritten after each point and each tick.

use std::io::Write;
use std::process::ExitCode;

use sydra_archive::{CreateOptions, WatchEvent, WatchOptions, hex};

use crate::args::{s3_options, use_keys};
use crate::cli::WatchArgs;
use crate::streams::StdClosed;
use crate::ui;

pub fn watch(a: WatchArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    if a.json {
        std_closed.check_results("the --json lines")?;
    }
    use_keys(&a.identities, a.passphrase_file.as_deref())?;
    let sealed = sydra_archive::Recipients::new(
        &a.recipients,
        &a.recipients_files,
        a.passphrase_file.as_deref(),
    )?;
    if let Some(path) = &a.metrics_file {
        sydra_archive::Metrics::check_file(path, &[])?;
    }
    // Each point continues the chain: with recipients alone, the points
    // already shipped could not be read, and every point would be full.
    let has_identity = !a.identities.is_empty()
        || a.passphrase_file.is_some()
        || std::env::var_os("SYDRA_ARCHIVE_IDENTITY_FILE").is_some_and(|f| !f.is_empty());
    if sealed.is_some() && !has_identity {
        return Err(sydra_archive::Error::Refused(
            "watch encrypts its points to -r/-R: give -i with a key that decrypts them too (each point is made on the one before; without it every point would be a full archive)".into(),
        )
        .into());
    }
    // Stopped by its service manager: the point in progress is abandoned
    // (nothing half-written stays), every point shipped is whole.
    sydra_archive::set_signal_exit_code(0);
    let levels = match &a.levels {
        Some(l) => Some(sydra_archive::Levels::new(
            l.0.clone(),
            a.keep.as_ref().map(|k| k.0.clone()),
        )?),
        None => None,
    };
    let opts = WatchOptions {
        every: a.every,
        full_every: Some(a.full_every),
        max_chain: a
            .max_chain
            .unwrap_or(if levels.is_some() { 12 } else { 1000 }),
        create: CreateOptions {
            level: a.level,
            threads: a.threads,
            ..CreateOptions::default()
        },
        points: a.points,
        once: a.once,
        s3: s3_options(&a.s3),
        levels,
    };
    let metrics_file = a.metrics_file.clone();
    let mut on = |ev: &WatchEvent<'_>, st: &sydra_archive::WatchStats| {
        match ev {
            WatchEvent::Shipped {
                archive,
                summary,
                note,
                seconds,
                requests,
            } => {
                let kind = if summary.base.is_some() {
                    "incremental"
                } else {
                    "full"
                };
                if a.json {
                    let line = serde_json::json!({
                        "event": "point",
                        "archive": archive,
                        "kind": kind,
                        "bytes": summary.bytes,
                        "files": summary.files,
                        "sha256": hex(&summary.sha256),
                        "seconds": seconds,
                        "note": note,
                        "points": st.points,
                        "requests": requests,
                    });
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                } else if !a.quiet {
                    let why = note.map_or(String::new(), |n| format!(" ({n})"));
                    say!(
                        "sydra-archive: shipped {archive}: {kind}{why}, {} in {seconds:.2}s",
                        ui::count(summary.bytes, "byte", "bytes")
                    );
                }
            }
            // With --once, the error is the command's own.
            WatchEvent::Failed(_) if a.once => {}
            WatchEvent::Failed(e) => {
                if a.json {
                    let line = serde_json::json!({
                        "event": "failed",
                        "error": e.to_string(),
                        "failing": st.failing,
                    });
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                }
                say!(
                    "sydra-archive: a point failed ({} in a row; retried at the next tick): {e}",
                    st.failing
                );
            }
            WatchEvent::Unchanged => {
                if a.json {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{}", serde_json::json!({"event": "unchanged"}))
                        .and_then(|()| out.flush());
                } else if !a.quiet {
                    say!("sydra-archive: nothing changed since the newest point");
                }
            }
            WatchEvent::Started | WatchEvent::Idle => {}
            WatchEvent::Warning(w) => {
                if a.json {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(
                        out,
                        "{}",
                        serde_json::json!({"event": "warning", "message": w})
                    )
                    .and_then(|()| out.flush());
                }
                say!("sydra-archive: warning: {w}");
            }
            WatchEvent::Expired(gone) => {
                if a.json {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(
                        out,
                        "{}",
                        serde_json::json!({"event": "expired", "archives": gone})
                    )
                    .and_then(|()| out.flush());
                } else if !a.quiet {
                    say!(
                        "sydra-archive: expired {}",
                        ui::count(gone.len() as u64, "archive", "archives")
                    );
                }
            }
        }
        if let Some(path) = &metrics_file {
            let m = sydra_archive::WatchMetrics {
                newest_unix_ms: st.newest_unix_ms,
                points: st.points,
                fulls: st.fulls,
                bytes: st.bytes,
                failures: st.failures,
                failing: st.failing,
                ticks: st.ticks,
                requests: st.requests,
            };
            if let Err(e) = m.write_to(path) {
                say!("sydra-archive: warning: {e}");
            }
        }
    };
    let sealed_ref = sealed.as_ref();
    sydra_archive::watch(&a.data_dir, &a.output, sealed_ref, &opts, &mut on)?;
    Ok(ExitCode::SUCCESS)
}
