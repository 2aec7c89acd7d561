//! Command-line arguments (the binary's only parsing code).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::ui::ProgressMode;

mod groups;

pub use groups::{ChainArgs, Durations, KeyArgs, ReadArgs, S3Args};
use groups::{parse_duration, parse_duration_list};

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the archive failed verification (corrupt, truncated, tampered, hostile,
     unsupported version, or not an archive at all)
  2  every other failure (usage, I/O, refusals, interruption by SIGINT/SIGTERM)";

/// Turn a SydraDB data directory into one verifiable .tar.zst archive, and check it.
#[derive(Debug, Parser)]
#[command(name = "sydra-archive", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Archive MANIFEST, tags.json, wal/ and segments/ of a data directory.
    #[command(after_help = concat!(
        "Examples:\n",
        "  sydra-archive create /var/lib/sydradb -o backup.tar.zst\n",
        "  sydra-archive create /var/lib/sydradb -o - | ssh host 'cat > backup.tar.zst'\n",
        "  sydra-archive create /var/lib/sydradb -o s3://backups/sydradb/$(date +%F).tar.zst\n\n",
        "The output file is written to a temporary sibling, fsynced and renamed into\n",
        "place: it is never seen half written. An s3:// object is uploaded in parts and\n",
        "completed only once whole. Stock tools read the result:\n",
        "  tar --zstd -xf backup.tar.zst     zstd -t backup.tar.zst\n\n",
        "Exit codes: 0 success, 1 archive failed verification, 2 any other failure."
    ))]
    Create(CreateArgs),
    /// Prove an archive whole without writing anything.
    #[command(after_help = concat!(
        "Examples:\n",
        "  sydra-archive verify backup.tar.zst\n",
        "  sydra-archive verify --quick backup.tar.zst\n",
        "  sydra-archive verify --deep backup.tar.zst\n",
        "  sydra-archive verify s3://bucket/backup.tar.zst\n\n",
        "Full verification decompresses everything and checks every tar member against\n",
        "its index record, every file against its SHA-256, and the archive's SHA-256\n",
        "against TAIL. --quick checks every frame's structure, the index, TABLE, META and\n",
        "the TAIL hash without decompressing. --chain also proves every base of an\n",
        "incremental is the archive recorded; --read-data also decodes every base.\n\n",
        "Exit codes: 0 verified, 1 archive failed verification, 2 any other failure."
    ))]
    Verify(VerifyArgs),
    /// Show the entries an archive's index declares (does not verify data).
    #[command(after_help = concat!(
        "Examples:\n",
        "  sydra-archive list backup.tar.zst\n",
        "  sydra-archive list --json backup.tar.zst | jq '.entries | length'\n",
        "  sydra-archive list --sha256 backup.tar.zst > SHA256SUMS\n",
        "  tar --zstd -xf backup.tar.zst -C dir && (cd dir && sha256sum -c ../SHA256SUMS)\n\n",
        "Exit codes: 0 success, 1 the index is corrupt or hostile, 2 any other failure."
    ))]
    List(ListArgs),
    /// Rebuild a data directory from an archive, verified before anything changes.
    #[command(after_help = concat!(
        "Examples:\n",
        "  sydra-archive restore backup.tar.zst /var/lib/sydradb\n",
        "  sydra-archive restore --force backup.tar.zst /var/lib/sydradb\n",
        "  sydra-archive restore s3://bucket/backup.tar.zst /var/lib/sydradb\n",
        "  sydra-archive restore /backup/sydradb/ /var/lib/sydradb\n\n",
        "ARCHIVE ending in / is a directory or an s3:// prefix: the newest archive\n",
        "there whose whole chain is found and can be decrypted is restored; each newer\n",
        "one is skipped with the reason on stderr.\n\n",
        "The archive is extracted into a staging directory beside DATA_DIR, verified\n",
        "completely, made durable, and only then renamed into place. With --force over\n",
        "existing data the two are swapped atomically and the old tree is kept beside\n",
        "DATA_DIR as DATA_DIR.pre-restore.<unix-ms>; nothing is ever deleted.\n\n",
        "Exit codes: 0 restored, 1 archive failed verification, 2 any other failure."
    ))]
    Restore(RestoreArgs),
    /// Ship a data dir as it changes: a point (an incremental) every --every.
    #[command(after_help = concat!(
        "Examples:\n",
        "  sydra-archive watch /var/lib/sydradb -o /backup/sydradb/\n",
        "  sydra-archive watch /var/lib/sydradb -o s3://backups/sydradb/ --every 30s --json\n",
        "  sydra-archive watch /var/lib/sydradb -o /backup/sydradb/ --once   # from cron\n\n",
        "Every --every, the data dir's metadata is looked at (stats only, no request);\n",
        "when it changed since the last point, a point is shipped: an incremental on\n",
        "the newest archive at DEST (a full one when there is none, the chain is\n",
        "--max-chain long or its full is older than --full-every), published atomically.\n",
        "A failed point is retried at the next tick. SIGTERM or SIGINT abandons the\n",
        "point in progress (nothing half-written stays) and exits 0; after SIGKILL the\n",
        "next start continues the chain found at DEST. restore DEST/ --at TIME restores\n",
        "any point.\n\n",
        "Exit codes: 0 stopped, 2 DEST cannot be used (a point that fails is retried)."
    ))]
    Watch(WatchArgs),
    /// Write the full archive of an incremental's chain, from the chain alone.
    #[command(after_help = concat!(
        "Examples:\n",
        "  sydra-archive merge /backup/sydradb/newest.tar.zst -o /backup/sydradb/\n",
        "  sydra-archive merge s3://bucket/db/newest.tar.zst -o s3://bucket/db/merged.tar.zst\n",
        "  sydra-archive merge day/23h.tar.zst --onto day/00h.tar.zst -o day/merged.tar.zst\n\n",
        "The tree ARCHIVE's chain describes (what restore of ARCHIVE would restore)\n",
        "written as one full archive, without the data dir: data frames of the full\n",
        "archive that the tree keeps whole are copied as they are; only what the\n",
        "incrementals changed is compressed again. Every archive of the chain is\n",
        "checked against the SHA-256 the one above it recorded first. The output is\n",
        "published like create's (atomically; an upload completed only once whole).\n",
        "With --onto BASE: one incremental on BASE, equivalent to every archive of the\n",
        "chain above it (WAL tails of several archives made one).\n\n",
        "Exit codes: 0 written, 1 an archive of the chain failed verification, 2 any\n",
        "other failure."
    ))]
    Merge(MergeArgs),
    /// Extract some files of an archive, reading only what holds them.
    #[command(after_help = concat!(
        "Examples:\n",
        "  sydra-archive extract backup.tar.zst tags.json MANIFEST -C /tmp/inspect\n",
        "  sydra-archive extract backup.tar.zst 'segments/1748736000/*' -C /tmp/hour\n",
        "  sydra-archive extract s3://bucket/backup.tar.zst wal/current.wal -o current.wal\n\n",
        "PATTERN is an archive path or a glob (* and ? within one path component); a\n",
        "directory takes everything below it; none means everything. From a version-2\n",
        "archive in a file or an object only the index and the frames that hold the\n",
        "wanted files are read; a version-1 archive or a pipe is read whole. Every\n",
        "file is checked against its SHA-256 before any is moved into place, and an\n",
        "existing file is not replaced without --force.\n\n",
        "Exit codes: 0 extracted, 1 archive failed verification, 2 any other failure\n",
        "(a pattern that matches nothing, an existing file)."
    ))]
    Extract(ExtractArgs),
    /// List the archives in a directory or under an s3:// prefix, newest first.
    #[command(after_help = concat!(
        "Examples:\n",
        "  sydra-archive ls /backup/sydradb\n",
        "  sydra-archive ls s3://backups/sydradb/\n",
        "  sydra-archive ls --json s3://backups/sydradb/ | jq -r '.archives[0].url'\n\n",
        "Lists the files (objects) directly in the directory (under the prefix) whose\n",
        "name ends in .tar.zst and whose last bytes are a sydra-archive trailer\n",
        "matching the size (one read each). Other .tar.zst entries are reported on\n",
        "stderr (not with -q).\n\n",
        "An archive is restorable here when its chain is complete among the archives\n",
        "listed (a full archive always is; an incremental when its base, found as prune\n",
        "finds it, is); its data and keys are not checked. The newest restorable one is\n",
        "marked [latest] (\"latest\" in --json; restore DIR/ also opens each chain).\n\n",
        "Exit codes: 0 success, 2 any failure."
    ))]
    Ls(LsArgs),
    /// Delete the archives a retention policy does not keep, in a directory or under an s3:// prefix (a dry run unless --yes).
    #[command(after_help = concat!(
        "Examples:\n",
        "  sydra-archive prune /backup/sydradb --keep-daily 7 --keep-weekly 4 --keep-monthly 12\n",
        "  sydra-archive prune s3://backups/sydradb/ --keep-last 14 --yes\n\n",
        "Rules as restic's forget: --keep-last N keeps the N newest; --keep-hourly,\n",
        "--keep-daily, --keep-weekly (ISO weeks) and --keep-monthly N keep the newest\n",
        "archive of each of the N most recent periods (UTC) that have archives. Rules\n",
        "add up; at least one is required. An archive a kept one is based on is kept\n",
        "too, and said so. Considers exactly what `ls` shows (archives, by\n",
        "modification time); never touches anything else. Without --yes it only\n",
        "prints what it would delete.\n\n",
        "Exit codes: 0 success, 2 any failure."
    ))]
    Prune(PruneArgs),
    /// Print a shell completion script on stdout.
    #[command(
        after_help = "Example:\n  sydra-archive completions bash > /etc/bash_completion.d/sydra-archive"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff) on stdout, or write every page into a directory.
    #[command(after_help = concat!(
        "Examples:\n",
        "  sydra-archive man --dir ~/.local/share/man/man1     then: man sydra-archive-create\n",
        "  sydra-archive man restore | man -l -\n\n",
        "The pages are generated from the command line itself: sydra-archive(1), and\n",
        "sydra-archive-COMMAND(1) for each command, with every option."
    ))]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print, sydra-archive-COMMAND(1); without
    /// it, sydra-archive(1).
    #[arg(value_name = "COMMAND", conflicts_with = "dir")]
    pub command: Option<String>,
    /// Write every page into DIR (created if absent): sydra-archive.1,
    /// sydra-archive-create.1, ... (existing pages are replaced).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The SydraDB data directory to archive.
    pub data_dir: PathBuf,
    /// Output archive path, - for stdout (refused when stdout is a
    /// terminal), or s3://bucket/key; ending in / (a directory or an
    /// s3:// prefix), the archive is named there sydradb-<UTC time>.tar.zst.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
    /// zstd compression level.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub level: i32,
    /// Compression threads; 0 means one per core.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub threads: u32,
    /// Tar bytes per independent DATA frame, in KiB (for measurements).
    #[arg(long, hide = true, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(4..=65536))]
    pub frame_kib: u32,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// Write an incremental archive: only what changed since the archive
    /// PREV (a path or s3://; a full or an incremental, whose own bases
    /// must be where it recorded them).
    #[arg(long, value_name = "PREV", conflicts_with = "incremental")]
    pub base: Option<PathBuf>,
    /// With OUT ending in /: an incremental on the newest archive there, or
    /// a full one when there is none or its chain holds --max-chain archives.
    #[arg(long)]
    pub incremental: bool,
    /// Most archives in a chain (a full and its incrementals) that
    /// --incremental makes before it writes a full again.
    #[arg(long, value_name = "N", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub max_chain: u64,
    /// Encrypt the archive to this age recipient (age1…) or SSH public key
    /// (ssh-ed25519 …, ssh-rsa …); repeatable.
    #[arg(
        long = "recipient",
        short = 'r',
        value_name = "RECIPIENT",
        help_heading = "Encryption"
    )]
    pub recipients: Vec<String>,
    /// Encrypt the archive to every recipient listed in FILE (one per
    /// line, # comments), as age -R does; repeatable.
    #[arg(
        long = "recipients-file",
        short = 'R',
        value_name = "FILE",
        help_heading = "Encryption"
    )]
    pub recipients_files: Vec<PathBuf>,
    /// Encrypt the archive with the passphrase on FILE's first line
    /// (scrypt); also decrypts an encrypted --base.
    /// SYDRA_ARCHIVE_PASSPHRASE_FILE only decrypts a --base: it never
    /// turns encryption on.
    #[arg(long, value_name = "FILE", help_heading = "Encryption")]
    pub passphrase_file: Option<PathBuf>,
    /// An identity that decrypts an encrypted --base (repeatable; else
    /// SYDRA_ARCHIVE_IDENTITY_FILE).
    #[arg(
        long = "identity",
        short = 'i',
        value_name = "FILE",
        help_heading = "Encryption"
    )]
    pub identities: Vec<PathBuf>,
    /// Write node_exporter textfile metrics of this run to FILE (atomically;
    /// a failed run keeps the last success's figures).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Print one JSON object with the result (on stderr when OUT is -).
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Progress on stderr: a bar on a terminal (auto), NDJSON events, or none.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The SydraDB data directory to ship.
    pub data_dir: PathBuf,
    /// Where the points go: a directory or an s3:// prefix, ending in /.
    #[arg(short = 'o', long = "output", value_name = "DEST/")]
    pub output: String,
    /// Time between two looks at the data dir (2s, 10s, 1m, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub every: std::time::Duration,
    /// A new full archive once the chain's full one is this old (7d, 24h).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    pub full_every: std::time::Duration,
    /// Most archives in a chain before a new full one (1000); with
    /// --levels, that any point restores from (12).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub max_chain: Option<u64>,
    /// Make every point on an anchor chosen by time, levels finest first
    /// (5m,1h,1d): a full archive, an anchor of the coarsest level on it
    /// every 1d, of the next on that every 1h, ...; points on the newest
    /// point above the finest anchor while the chain stays within
    /// --max-chain (12); with retention by level (--keep).
    #[arg(long, value_name = "FINEST,...,COARSEST", value_parser = parse_duration_list)]
    pub levels: Option<Durations>,
    /// With --levels: how long every point is kept, then how long the
    /// newest archive of each window of each level (finest first) is;
    /// none that a kept one needs goes (default: 1h, then 1h for a level
    /// under 5m, 1d under 1h, 7d above).
    #[arg(long, value_name = "POINTS,LEVEL,...", value_parser = parse_duration_list, requires = "levels")]
    pub keep: Option<Durations>,
    /// Look once, ship a point if something changed, and exit (for cron).
    #[arg(long)]
    pub once: bool,
    /// Stop after N points (or failed points).
    #[arg(long, value_name = "N", hide = true)]
    pub points: Option<u64>,
    /// zstd compression level.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub level: i32,
    /// Compression threads; 0 means one per core.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub threads: u32,
    /// Encrypt every point to this age recipient or SSH public key (repeatable).
    #[arg(
        long = "recipient",
        short = 'r',
        value_name = "RECIPIENT",
        help_heading = "Encryption"
    )]
    pub recipients: Vec<String>,
    /// Encrypt every point to every recipient listed in FILE.
    #[arg(
        long = "recipients-file",
        short = 'R',
        value_name = "FILE",
        help_heading = "Encryption"
    )]
    pub recipients_files: Vec<PathBuf>,
    /// Encrypt every point with the passphrase on FILE's first line.
    #[arg(long, value_name = "FILE", help_heading = "Encryption")]
    pub passphrase_file: Option<PathBuf>,
    /// An identity that decrypts the archives at DEST (to continue their chain).
    #[arg(
        long = "identity",
        short = 'i',
        value_name = "FILE",
        help_heading = "Encryption"
    )]
    pub identities: Vec<PathBuf>,
    /// Write node_exporter textfile metrics to FILE after every point:
    /// the newest point's time (its age is the RPO), points, bytes, failures.
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    /// One JSON object per point on stdout (NDJSON).
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The newest archive of the chain (an incremental; a path or
    /// s3://); ending in / (a directory or an s3:// prefix), the newest
    /// restorable point there.
    pub archive: PathBuf,
    /// Output archive path, - for stdout, or s3://bucket/key; ending in /
    /// (a directory or an s3:// prefix), named there
    /// sydradb-<UTC time>.tar.zst.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
    /// Write one incremental on BASE (an archive of ARCHIVE's chain)
    /// instead, equivalent to every archive above it: compaction.
    #[arg(long, value_name = "BASE")]
    pub onto: Option<PathBuf>,
    /// zstd compression level of what is compressed again.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    pub level: i32,
    /// Compression threads; 0 means one per core.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=256))]
    pub threads: u32,
    /// Tar bytes per new DATA frame, in KiB (for measurements).
    #[arg(long, hide = true, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(4..=65536))]
    pub frame_kib: u32,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// Encrypt the merged archive to this age recipient or SSH public key
    /// (repeatable; an encrypted chain's merge must be encrypted).
    #[arg(
        long = "recipient",
        short = 'r',
        value_name = "RECIPIENT",
        help_heading = "Encryption"
    )]
    pub recipients: Vec<String>,
    /// Encrypt the merged archive to every recipient listed in FILE.
    #[arg(
        long = "recipients-file",
        short = 'R',
        value_name = "FILE",
        help_heading = "Encryption"
    )]
    pub recipients_files: Vec<PathBuf>,
    /// Encrypt the merged archive with the passphrase on FILE's first
    /// line; also decrypts the chain's archives encrypted with it.
    #[arg(long, value_name = "FILE", help_heading = "Encryption")]
    pub passphrase_file: Option<PathBuf>,
    /// An identity that decrypts the chain's encrypted archives
    /// (repeatable; else SYDRA_ARCHIVE_IDENTITY_FILE).
    #[arg(
        long = "identity",
        short = 'i',
        value_name = "FILE",
        help_heading = "Encryption"
    )]
    pub identities: Vec<PathBuf>,
    /// Print one JSON object with the result (on stderr when OUT is -).
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Progress on stderr: a bar on a terminal (auto), NDJSON events, or none.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    #[command(flatten)]
    pub chain: ChainArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Archive path, - for stdin, or s3://bucket/key.
    pub archive: PathBuf,
    /// Check every frame, the metadata and the archive hash without
    /// decompressing the data.
    #[arg(long, conflicts_with = "deep")]
    pub quick: bool,
    /// Also decode what SydraDB would read: every WAL record, every
    /// segment, tags.json and MANIFEST; exit 1 if the restored database
    /// would not start or would hold a broken segment.
    #[arg(long)]
    pub deep: bool,
    /// Print one JSON object with the result.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors (the exit code is the result).
    #[arg(short, long)]
    pub quiet: bool,
    /// Progress on stderr: a bar on a terminal (auto), NDJSON events, or none.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// For an incremental: also check that every base it needs is present
    /// and is, byte for byte, the archive recorded (its whole SHA-256),
    /// and that its operations fit them (the bases' data frames are not
    /// decompressed: see --read-data).
    #[arg(long = "chain", conflicts_with = "deep")]
    pub check_chain: bool,
    /// With --chain: also read and check every byte of every base, as
    /// verify checks an archive (every frame, every file's SHA-256).
    #[arg(long, requires = "check_chain")]
    pub read_data: bool,
    /// Write node_exporter textfile metrics of this run's outcome to FILE
    /// (atomically; sydra_archive_verify_last_run_success and friends).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    #[command(flatten)]
    pub chain: ChainArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Archive path, - for stdin, or s3://bucket/key; ending in / (a
    /// directory or an s3:// prefix), the newest restorable point there
    /// (or with --at, the newest at or before TIME).
    pub archive: PathBuf,
    /// With ARCHIVE ending in /: the newest point at or before TIME
    /// (RFC 3339, or back from now: -15m, -2h, -7d).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Only these archive paths or globs (as extract takes them).
    pub patterns: Vec<String>,
    /// Print the listing as one JSON object.
    #[arg(long, conflicts_with = "sha256")]
    pub json: bool,
    /// Print `sha256sum`-style lines, for `sha256sum -c` in a directory GNU
    /// tar extracted: the index's digests (TAIL authenticates the index);
    /// the data is not read (use verify).
    #[arg(long)]
    pub sha256: bool,
    #[command(flatten)]
    pub chain: ChainArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Archive path, - for stdin, or s3://bucket/key; ending in / (a
    /// directory or an s3:// prefix), the newest restorable archive there.
    pub archive: PathBuf,
    /// The data directory to rebuild (absent or empty, or non-empty with --force).
    pub data_dir: PathBuf,
    /// With ARCHIVE ending in /: the newest point at or before TIME
    /// (RFC 3339, 2026-12-05T01:02:03Z, or back from now: -15m, -2h,
    /// -7d), from the archive of that moment with the shortest chain.
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Replace a non-empty DATA_DIR; its old contents are kept beside it.
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object with the result.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Progress on stderr: a bar on a terminal (auto), NDJSON events, or none.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    #[command(flatten)]
    pub chain: ChainArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Archive path, - for stdin, or s3://bucket/key; ending in / (a
    /// directory or an s3:// prefix), the newest restorable point there
    /// (or with --at, the newest at or before TIME).
    pub archive: PathBuf,
    /// With ARCHIVE ending in /: the newest point at or before TIME
    /// (RFC 3339, or back from now: -15m, -2h, -7d).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// Archive paths or globs to extract (all when none is given).
    pub patterns: Vec<String>,
    /// Directory to extract into (created if absent).
    #[arg(
        short = 'C',
        long = "directory",
        value_name = "DIR",
        required_unless_present = "output",
        conflicts_with = "output"
    )]
    pub directory: Option<PathBuf>,
    /// Write the one matching file to OUT (- for stdout).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Replace existing files.
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object with the result (on stderr with -o -).
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub chain: ChainArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// A directory, or a prefix: s3://bucket/ or s3://bucket/some/prefix/.
    pub url: String,
    /// List the restorable points in time instead (each archive's moment,
    /// newest first, with the archives a restore of it reads).
    #[arg(long)]
    pub points: bool,
    /// Print one JSON object with the result.
    #[arg(long)]
    pub json: bool,
    /// Print only the listing and errors (not the notes on other .tar.zst
    /// entries and temporary files).
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// A directory, or a prefix: s3://bucket/ or s3://bucket/some/prefix/.
    pub url: String,
    /// Keep the N newest archives.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_last: u64,
    /// Keep the newest archive of each of the last N hours that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_hourly: u64,
    /// Keep the newest archive of each of the last N days (UTC) that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_daily: u64,
    /// Keep the newest archive of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_weekly: u64,
    /// Keep the newest archive of each of the last N months that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub keep_monthly: u64,
    /// Delete for real (without it, only say what would be deleted).
    #[arg(long)]
    pub yes: bool,
    /// Print one JSON object with the result.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors and warnings (no listing, no summary).
    #[arg(short, long)]
    pub quiet: bool,
    /// Write node_exporter textfile metrics of this run's outcome to FILE
    /// (atomically; sydra_archive_prune_last_run_success and friends).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub s3: S3Args,
}
