//! Decrypts an age file from stdin to stdout with the identities in the
//! files given, as `age -d -i FILE` does, with the `age` crate's own
//! decryptor (the tests use it as the stock tool when no `age` or `rage`
//! command is installed).
//!
//! ```text
//! cargo run --example age-decrypt -- KEY_FILE... < backup.tar.zst.age | tar --zstd -xf -
//! ```

use std::io::{Read, Write};

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let mut identities: Vec<Box<dyn age::Identity>> = Vec::new();
    for f in std::env::args().skip(1) {
        let file =
            age::IdentityFile::from_file(f.clone()).with_context(|| format!("reading {f}"))?;
        for id in file
            .into_identities()
            .with_context(|| format!("using {f}"))?
        {
            identities.push(id);
        }
    }
    let d = age::Decryptor::new(std::io::stdin().lock()).context("not an age file")?;
    let mut r = d
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .context("no identity decrypts it")?;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf).context("decrypting")?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    out.flush()?;
    Ok(())
}
