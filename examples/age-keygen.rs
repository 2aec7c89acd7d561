//! Prints a new age X25519 identity and its recipient, as `age-keygen`
//! does (for tests and demos of encrypted archives).
//!
//! ```text
//! cargo run --example age-keygen > key.txt
//! ```

use age::secrecy::ExposeSecret;

fn main() {
    let id = age::x25519::Identity::generate();
    println!("# public key: {}", id.to_public());
    println!("{}", id.to_string().expose_secret());
}
