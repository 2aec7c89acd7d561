//! Goes on writing a generated SydraDB data directory as a running server
//! would (the project's simulated server): for benchmarks of incremental
//! archives.
//!
//! ```text
//! cargo run --release --example advance -- DIR --from-ts T --seconds N
//!     [--series N] [--interval S] [--flush S] [--rotate-mib N] [--seed N]
//!     [--compact HOUR] [--drop HOUR]
//! ```
//! `--from-ts` is the first timestamp to write (the generator's data ends
//! at its start plus its hours); `--compact` replaces an hour directory's
//! segments by one per series, `--drop` removes one (retention).

use std::path::PathBuf;

use anyhow::{Context, bail};
use sydra_archive::sydradb::{FixtureSpec, Server};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir: Option<PathBuf> = None;
    let mut spec = FixtureSpec::default();
    let (mut from, mut seconds) = (None, 3600i64);
    let (mut compact, mut drop) = (None, None);
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
            "--interval" => spec.interval_s = num("--interval")?,
            "--flush" => spec.flush_s = num("--flush")?,
            "--rotate-mib" => spec.wal_rotate_bytes = num("--rotate-mib")? as u64 * 1024 * 1024,
            "--from-ts" => from = Some(num("--from-ts")?),
            "--seconds" => seconds = num("--seconds")?,
            "--compact" => compact = Some(num("--compact")?),
            "--drop" => drop = Some(num("--drop")?),
            s if s.starts_with('-') => bail!("unknown option {s}"),
            s => dir = Some(PathBuf::from(s)),
        }
    }
    let dir = dir.context("usage: advance DIR --from-ts T [--seconds N] [...]")?;
    let from = from.context("--from-ts is needed")?;
    let mut server = Server::new(&dir, &spec, from);
    server
        .run(seconds)
        .with_context(|| format!("writing {}", dir.display()))?;
    if let Some(h) = compact {
        server.compact(h).context("compacting")?;
    }
    if let Some(h) = drop {
        server.drop_hour(h).context("dropping an hour")?;
    }
    println!("{}", server.next_ts);
    Ok(())
}
