//! Writes a synthetic version-2 archive of many small segment files, made
//! in memory by the real writer (for benchmarks of memory and speed at
//! file counts no machine should create on disk).
//!
//! ```text
//! cargo run --release --example synthetic -- OUT FILES [--bytes N] [--per-dir N]
//! ```

use std::path::PathBuf;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut pos: Vec<String> = Vec::new();
    let mut bytes = 60usize;
    let mut per_dir = 1_000_000u64;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bytes" => bytes = args.next().context("--bytes needs a value")?.parse()?,
            "--per-dir" => per_dir = args.next().context("--per-dir needs a value")?.parse()?,
            s if s.starts_with('-') => bail!("unknown option {s}"),
            s => pos.push(s.to_string()),
        }
    }
    let [out, files] = &pos[..] else {
        bail!("usage: synthetic OUT FILES [--bytes N] [--per-dir N]");
    };
    let out = PathBuf::from(out);
    if out.exists() {
        bail!("{} exists; refusing to overwrite it", out.display());
    }
    let files: u64 = files.parse().context("FILES must be a number")?;
    let f = std::fs::File::create(&out).with_context(|| format!("create {}", out.display()))?;
    let w = std::io::BufWriter::with_capacity(1 << 20, f);
    let (w, size, sha) = sydra_archive::write_synthetic(w, files, bytes, per_dir, 0)?;
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("write {}", out.display()))?;
    println!(
        "{}: {files} files, {size} bytes, sha256 {}",
        out.display(),
        sydra_archive::hex(&sha)
    );
    Ok(())
}
