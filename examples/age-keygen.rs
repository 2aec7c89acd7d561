//! Makes a new age X25519 identity, as `age-keygen` does (for tests and
//! demos of encrypted archives): with `-o FILE`, the identity goes to
//! FILE (created, mode 0600, never over an existing file) and only the
//! recipient is printed; without it, both go to stdout.
//!
//! ```text
//! cargo run --example age-keygen -- -o key.txt     # prints the recipient
//! cargo run --example age-keygen > key.txt         # as age-keygen
//! ```

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use age::secrecy::ExposeSecret;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.as_slice() {
        [] => None,
        [o, path] if o == "-o" => Some(path.clone()),
        _ => {
            eprintln!("usage: age-keygen [-o FILE]");
            std::process::exit(2);
        }
    };
    let id = age::x25519::Identity::generate();
    let text = format!(
        "# public key: {}\n{}\n",
        id.to_public(),
        id.to_string().expose_secret()
    );
    match out {
        None => print!("{text}"),
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{path}: {e}")))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            println!("{}", id.to_public());
        }
    }
    Ok(())
}
