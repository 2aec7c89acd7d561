//! Generates a SydraDB data directory with the project's fixture generator.
//!
//! ```text
//! cargo run --release --example generate -- OUT_DIR [--seed N] [--series N]
//!     [--hours N] [--interval S] [--flush S] [--rotate-mib N]
//! ```
//! `--flush 3600` writes one segment per series per hour; smaller values
//! write more, smaller segments (e.g. `--flush 36` makes 100 per hour).

use std::path::PathBuf;

use anyhow::{Context, bail};
use sydra_archive::sydradb::{FixtureSpec, generate};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let mut spec = FixtureSpec::default();
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> anyhow::Result<i64> {
            args.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--seed" => spec.seed = num("--seed")? as u64,
            "--series" => spec.series = num("--series")? as u32,
            "--hours" => spec.duration_s = num("--hours")? * 3600,
            "--interval" => spec.interval_s = num("--interval")?,
            "--flush" => spec.flush_s = num("--flush")?,
            "--rotate-mib" => spec.wal_rotate_bytes = num("--rotate-mib")? as u64 * 1024 * 1024,
            s if s.starts_with('-') => bail!("unknown option {s}"),
            s => out = Some(PathBuf::from(s)),
        }
    }
    let out = out.context("usage: generate OUT_DIR [--seed N] [--series N] [--hours N] [--interval S] [--flush S] [--rotate-mib N]")?;
    if out.exists() {
        bail!("{} exists; refusing to generate into it", out.display());
    }
    let stats = generate(&out, &spec).with_context(|| format!("generating {}", out.display()))?;
    println!(
        "{}: {} files, {} bytes, {} points, {} segments, {} wal files",
        out.display(),
        stats.files,
        stats.bytes,
        stats.points,
        stats.segments,
        stats.wal_files
    );
    Ok(())
}
