//! The `--json` output of every command: one typed struct per report, a
//! public interface (documented in the README's "JSON output" section and
//! checked by `tests/cli/ux.rs`). Field names and meanings do not change
//! without a note in the README.

use std::path::PathBuf;

use serde::Serialize;
use sydra_archive::{
    CreateSummary, DeepSummary, Error, Listed, Problem, ReadSummary, WalPosition, hex,
};

/// `create --json`.
#[derive(Debug, Serialize)]
pub struct CreateReport {
    /// `OUT` as given.
    pub archive: String,
    /// Archive size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole archive, hex (as `sha256sum` prints it).
    pub sha256: String,
    /// Files archived.
    pub files: u64,
    /// Directories archived.
    pub dirs: u64,
    /// Bytes of file data archived.
    pub data_bytes: u64,
    /// Top-level names left out (not part of the layout).
    pub skipped: Vec<String>,
    /// Symlinks followed (the data dir, `wal`, `segments`).
    pub followed: Vec<String>,
    /// Temporary files of killed runs that were removed.
    pub removed_stale_temps: Vec<PathBuf>,
    /// Compression threads.
    pub threads: u32,
    /// The WAL position captured, per WAL file.
    pub wal: Vec<WalPosition>,
    /// Problems that did not stop the archive.
    pub warnings: Vec<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// For `-o s3://…`: the object written; `null` otherwise.
    pub object: Option<ObjectReport>,
    /// `full`, or `incremental` (made on `base`).
    pub kind: &'static str,
    /// For an incremental: the archive it was made on.
    pub base: Option<sydra_archive::BaseRef>,
    /// The archive is encrypted: `bytes` and `sha256` are the
    /// ciphertext's, and nothing here names a file of the data dir
    /// (`wal`, `skipped`, `followed` are empty, `warnings` only counted).
    pub encrypted: bool,
}

/// The object `create -o s3://…` wrote.
#[derive(Debug, Serialize)]
pub struct ObjectReport {
    /// Its URL.
    pub url: String,
    /// Parts uploaded.
    pub parts: usize,
    /// Size of the parts (all but the last few).
    pub part_size: usize,
    /// Parts uploading at once.
    pub parts_in_flight: usize,
    /// The object's ETag, if the server gave one.
    pub e_tag: Option<String>,
    /// True if the SHA-256 is in the object's metadata.
    pub sha256_in_metadata: bool,
}

/// `verify --json`: one of three shapes, told apart by `ok` and `problems`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum VerifyReport {
    /// The archive verified.
    Ok(VerifyOk),
    /// `--deep` found problems SydraDB would trip over.
    Problems(VerifyProblems),
    /// Verification failed.
    Failed(VerifyFailed),
}

/// A verified archive.
#[derive(Debug, Serialize)]
pub struct VerifyOk {
    /// Always `true`.
    pub ok: bool,
    /// The archive as named.
    pub archive: String,
    /// `quick`, `full` or `deep`.
    pub mode: &'static str,
    /// Archive size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole archive, hex.
    pub sha256: String,
    /// Files in the archive.
    pub files: u64,
    /// Entries (files and directories).
    pub entries: u64,
    /// Bytes of file data.
    pub data_bytes: u64,
    /// zstd frames in DATA.
    pub frames: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// `verify --deep` found problems.
#[derive(Debug, Serialize)]
pub struct VerifyProblems {
    /// Always `false`.
    pub ok: bool,
    /// The archive as named.
    pub archive: String,
    /// Always `deep`.
    pub mode: &'static str,
    /// One line saying how many problems.
    pub error: String,
    /// The first problems, in path order.
    pub problems: Vec<Problem>,
    /// How many problems in all.
    pub problem_count: usize,
    /// SHA-256 of the whole archive, hex.
    pub sha256: String,
}

/// Verification failed.
#[derive(Debug, Serialize)]
pub struct VerifyFailed {
    /// Always `false`.
    pub ok: bool,
    /// The archive as named.
    pub archive: String,
    /// Why, one line.
    pub error: String,
}

/// `restore --json`.
#[derive(Debug, Serialize)]
pub struct RestoreReport<'a> {
    /// The archive as named.
    pub archive: String,
    /// The data directory that now holds the archive's tree.
    pub data_dir: PathBuf,
    /// Archive size in bytes.
    pub bytes: u64,
    /// SHA-256 of the whole archive, hex.
    pub sha256: String,
    /// Files restored.
    pub files: u64,
    /// Entries restored (files and directories).
    pub entries: u64,
    /// Bytes of file data restored.
    pub data_bytes: u64,
    /// Where the previous contents were moved (`--force`), else `null`.
    pub kept_old: Option<PathBuf>,
    /// Staging directories of killed runs that were removed.
    pub removed_leftovers: Vec<PathBuf>,
    /// Leftovers of killed runs that may hold data, left in place.
    pub reported_leftovers: Vec<PathBuf>,
    /// Problems that did not stop the restore.
    pub warnings: Vec<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// For an incremental: every archive of its chain restored, the full
    /// one first (empty otherwise). `bytes`, `sha256`, `files`, `entries`
    /// and `data_bytes` are then the archive named's.
    pub chain: Vec<String>,
    /// With `restore DIR/`: the directory or prefix given, `archive` being
    /// the newest restorable archive there; else `null`.
    pub chosen_from: Option<String>,
    /// With `restore DIR/`: the newer archives skipped there, and why.
    pub skipped: Vec<Other<'a>>,
}

/// `ls --json`.
#[derive(Debug, Serialize)]
pub struct LsReport<'a> {
    /// The directory or prefix listed.
    pub prefix: String,
    /// Archives, newest first.
    pub archives: Vec<LsArchive<'a>>,
    /// The newest archive whose chain is complete here, if any.
    pub latest: Option<&'a str>,
    /// `.tar.zst` objects that are not sydra-archives.
    pub others: Vec<Other<'a>>,
    /// Temporary files of killed runs.
    pub stale: &'a [String],
}

/// One archive of `ls --json`.
#[derive(Debug, Serialize)]
pub struct LsArchive<'a> {
    /// What the listing says of it.
    #[serde(flatten)]
    pub archive: &'a Listed,
    /// Whether its chain is complete among the archives listed (a full
    /// archive's is).
    pub restorable: bool,
}

/// An object that is not a sydra-archive, and why.
#[derive(Debug, Serialize)]
pub struct Other<'a> {
    /// Its URL.
    pub url: &'a str,
    /// Why it is not an archive.
    pub reason: &'a str,
}

/// `prune --json`.
#[derive(Debug, Serialize)]
pub struct PruneReport<'a> {
    /// The directory or prefix pruned.
    pub prefix: String,
    /// True unless `--yes` was given.
    pub dry_run: bool,
    /// Archives kept, newest first, each with why.
    pub kept: Vec<KeptReport<'a>>,
    /// Archives deleted (or that would be, on a dry run).
    pub deleted: &'a [Listed],
    /// Archives that were to be deleted and are still there, with why.
    pub failed: Vec<Other<'a>>,
    /// `.tar.zst` entries that are not archives (never touched).
    pub others: Vec<Other<'a>>,
    /// Kept incrementals whose base is not among the archives (`reason`
    /// holds the base HEAD records).
    pub missing_bases: Vec<Other<'a>>,
    /// Temporary files of killed runs removed (or that would be).
    pub stale: &'a [String],
}

/// A kept archive in `prune --json`: the `ls` fields and `reasons`.
#[derive(Debug, Serialize)]
pub struct KeptReport<'a> {
    #[serde(flatten)]
    pub archive: &'a Listed,
    /// Why it is kept: `last`, `hourly 2026-11-26T02`, `daily 2026-11-26`,
    /// `weekly 2026-W48`, `monthly 2026-11`, `base of NAME`.
    pub reasons: Vec<String>,
}

impl CreateReport {
    /// The report of a finished `create` of `archive` that took `seconds`.
    pub fn new(archive: &str, s: &CreateSummary, seconds: f64) -> CreateReport {
        CreateReport {
            archive: archive.to_string(),
            bytes: s.bytes,
            sha256: hex(&s.sha256),
            files: s.files,
            dirs: s.dirs,
            data_bytes: s.data_bytes,
            skipped: s.skipped.clone(),
            followed: s.followed.clone(),
            removed_stale_temps: s.removed_stale.clone(),
            threads: s.threads,
            wal: s.wal.clone(),
            warnings: s.warnings.clone(),
            seconds,
            object: s.uploaded.as_ref().map(|u| ObjectReport {
                url: u.url.clone(),
                parts: u.parts,
                part_size: u.plan.base,
                parts_in_flight: u.plan.in_flight,
                e_tag: u.e_tag.clone(),
                sha256_in_metadata: u.sha256_in_metadata,
            }),
            kind: if s.base.is_some() {
                "incremental"
            } else {
                "full"
            },
            base: s.base.clone(),
            encrypted: s.encrypted,
        }
        .redacted()
    }

    /// For an encrypted archive: no name of the data dir's files.
    fn redacted(mut self) -> Self {
        if self.encrypted {
            self.wal.clear();
            self.skipped.clear();
            self.followed.clear();
            let n = self.warnings.len();
            self.warnings.clear();
            if n > 0 {
                self.warnings.push(format!(
                    "{n} warning(s), not shown here: the archive is encrypted (they are on stderr)"
                ));
            }
        }
        self
    }
}

impl VerifyReport {
    /// A verified archive.
    pub fn ok(archive: &str, mode: &'static str, s: &ReadSummary, seconds: f64) -> Self {
        VerifyReport::Ok(VerifyOk {
            ok: true,
            archive: archive.to_string(),
            mode,
            bytes: s.bytes,
            sha256: hex(&s.sha256),
            files: s.info.files,
            entries: s.info.entries(),
            data_bytes: s.info.total_bytes,
            frames: s.frames,
            seconds,
        })
    }

    /// `--deep` found problems.
    pub fn problems(archive: &str, d: &DeepSummary) -> Self {
        VerifyReport::Problems(VerifyProblems {
            ok: false,
            archive: archive.to_string(),
            mode: "deep",
            error: format!("{} problem(s) SydraDB would trip over", d.problem_count),
            problems: d.problems.clone(),
            problem_count: d.problem_count,
            sha256: hex(&d.read.sha256),
        })
    }

    /// Verification failed with `e`.
    pub fn failed(archive: &str, e: &Error) -> Self {
        VerifyReport::Failed(VerifyFailed {
            ok: false,
            archive: archive.to_string(),
            error: e.to_string(),
        })
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One entry of `list --json`.
#[derive(Debug, Serialize)]
pub struct ListEntry<'a> {
    /// Archive path.
    pub path: &'a str,
    /// `file` or `dir`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Nanoseconds past `mtime`, where the archive records them.
    #[serde(skip_serializing_if = "is_zero")]
    pub mtime_nsec: u32,
    /// SHA-256 of a file's content, hex (from a version-2 index).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// In the listing of an incremental (its whole tree): whether the
    /// archive itself carries the entry (else a base does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carried: Option<bool>,
}

impl<'a> ListEntry<'a> {
    /// The entry `e`, with its digest when known.
    pub fn new(e: &'a sydra_archive::Entry, d: Option<&[u8; 32]>) -> Self {
        ListEntry {
            path: &e.path,
            kind: e.kind.as_str(),
            size: e.size,
            mode: e.mode,
            mtime: e.mtime,
            mtime_nsec: e.mtime_nsec,
            sha256: d.map(|d| hex(d)),
            carried: None,
        }
    }
}

/// What `list --json` prints after the entries.
#[derive(Debug, Serialize)]
struct ListEnd<'a> {
    format: &'static str,
    version: u64,
    created_unix_ms: u64,
    tool: &'a str,
    source: &'a str,
    zstd_level: i32,
    files: u64,
    dirs: u64,
    total_bytes: u64,
    skipped: &'a [String],
    wal: &'a [sydra_archive::WalPosition],
    warnings: &'a [String],
    /// For an incremental: its base (`null` otherwise).
    base: Option<&'a sydra_archive::BaseRef>,
    /// For an incremental: every archive of its chain, the full one first
    /// (empty otherwise).
    chain: &'a [String],
}

/// Ends the `list --json` object: the entries array (opened by the first
/// entry, or here when there was none) and the archive's own fields.
pub fn write_list_end(
    out: &mut impl std::io::Write,
    info: &sydra_archive::Info,
    chain: &[String],
    no_entries: bool,
) -> std::io::Result<()> {
    if no_entries {
        out.write_all(b"{\"entries\":[")?;
    }
    let end = serde_json::to_vec(&ListEnd {
        format: "sydra-archive",
        version: info.version,
        created_unix_ms: info.created_unix_ms,
        tool: &info.tool,
        source: &info.source,
        zstd_level: info.zstd_level,
        files: info.files,
        dirs: info.dirs,
        total_bytes: info.total_bytes,
        skipped: &info.skipped,
        wal: &info.wal,
        warnings: &info.warnings,
        base: info.base.as_ref(),
        chain,
    })?;
    out.write_all(b"],")?;
    // The fields of the object, without its opening brace.
    out.write_all(&end[1..])?;
    out.write_all(b"\n")
}

/// `extract --json`.
#[derive(Debug, Serialize)]
pub struct ExtractReport {
    /// The archive as named.
    pub archive: String,
    /// Files extracted.
    pub files: u64,
    /// Bytes of file data extracted.
    pub data_bytes: u64,
    /// Archive bytes read.
    pub read_bytes: u64,
    /// Reads at offsets (0 when the archive was read whole).
    pub reads: u64,
    /// The archive was read whole as a stream.
    pub streamed: bool,
    /// Wall-clock seconds.
    pub seconds: f64,
}

impl ExtractReport {
    /// The report of `s`.
    pub fn new(archive: &str, s: &sydra_archive::ExtractSummary, seconds: f64) -> Self {
        ExtractReport {
            archive: archive.to_string(),
            files: s.files,
            data_bytes: s.bytes,
            read_bytes: s.read_bytes,
            reads: s.reads,
            streamed: s.streamed,
            seconds,
        }
    }
}

/// `merge --json`: `create`'s report of the archive written, and what
/// the merge took from where.
#[derive(Debug, Serialize)]
pub struct MergeReport {
    #[serde(flatten)]
    pub archive: CreateReport,
    /// The archives merged, the full one first.
    pub chain: Vec<String>,
    /// Members taken unchanged from the full archive.
    pub kept_members: u64,
    /// Data frames copied whole from it (not compressed again).
    pub copied_frames: u64,
    /// With --onto: operations written (`kept_members` then counts the
    /// members written).
    pub operations: u64,
}

/// `ls --points --json`.
#[derive(Debug, Serialize)]
pub struct PointsReport<'a> {
    /// The directory or prefix listed.
    pub prefix: String,
    /// The restorable points, newest first.
    pub points: Vec<PointReport<'a>>,
}

/// One point of `ls --points --json`.
#[derive(Debug, Serialize)]
pub struct PointReport<'a> {
    /// The moment, the archive to restore it from and its chain.
    #[serde(flatten)]
    pub point: &'a sydra_archive::Point,
    /// Its age in seconds.
    pub age_s: f64,
}
