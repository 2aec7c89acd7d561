//! The argument groups several commands share (keys, bases, reads,
//! object storage), and the durations `watch` takes.

use std::path::PathBuf;

use clap::Args;

/// What decrypts an encrypted archive.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Encryption")]
pub struct KeyArgs {
    /// An age identity file (age-keygen's format) or an unencrypted SSH
    /// private key (ssh-ed25519, ssh-rsa) that decrypts encrypted archives
    /// (repeatable; else SYDRA_ARCHIVE_IDENTITY_FILE).
    #[arg(long = "identity", short = 'i', value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    /// A file whose first line is the passphrase of archives encrypted
    /// with one (else SYDRA_ARCHIVE_PASSPHRASE_FILE).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// Where an incremental archive's bases are, besides where it recorded
/// them.
#[derive(Debug, Args, Clone, Default)]
pub struct ChainArgs {
    /// For an incremental archive: a base it may have been made on (a path
    /// or s3://; repeatable). Used only if it is the archive recorded (its
    /// size and SHA-256); otherwise bases are looked for where recorded.
    #[arg(long = "base", value_name = "PATH_OR_URL")]
    pub bases: Vec<PathBuf>,
}

/// How an archive is read: decoding threads, and ranged GETs in flight for
/// an object.
#[derive(Debug, Args, Clone, Default)]
pub struct ReadArgs {
    /// Threads decoding data frames; 0 means the cores left by hashing
    /// (cores - 2, at least 1), 1 decodes on the reading thread.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub threads: u32,
    /// Ranged GETs in flight when reading an s3:// object whole (1: one
    /// streaming GET).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub concurrency: u32,
}

/// Object-storage settings; the standard AWS_* environment supplies the
/// rest (credentials, AWS_ALLOW_HTTP...).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Object storage")]
pub struct S3Args {
    /// S3 endpoint URL (overrides AWS_ENDPOINT_URL); http:// allows plain http.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// S3 region (overrides AWS_REGION).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
}

/// Durations given as one argument, separated by commas.
#[derive(Debug, Clone)]
pub struct Durations(pub Vec<std::time::Duration>);

/// Durations separated by commas, one at least.
pub(super) fn parse_duration_list(s: &str) -> Result<Durations, String> {
    s.split(',')
        .map(parse_duration)
        .collect::<Result<Vec<_>, _>>()
        .map(Durations)
}

/// A duration: a number and a unit (`ms`, `s`, `m`, `h`, `d`).
pub(super) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let at = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} has no unit (ms, s, m, h, d)"))?;
    let (n, unit) = s.split_at(at);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a number and a unit"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    let d = std::time::Duration::from_millis(n.saturating_mul(ms));
    if d < std::time::Duration::from_millis(100) {
        return Err(format!("{s:?} is shorter than 100ms"));
    }
    if d > std::time::Duration::from_secs(366 * 86_400) {
        return Err(format!("{s:?} is longer than 366d"));
    }
    Ok(d)
}
