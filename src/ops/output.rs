//! Where a new archive goes (`create`, `merge`): checked before any work
//! is done, then written and published only once whole: a file renamed
//! into place, an upload completed, or stdout.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::location::Location;
use crate::store::publish::AtomicFile;
use crate::store::s3::{Remote, S3Options, S3Url, Upload};
use crate::write::CreateSummary;

/// Where an archive goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Standard output (refused when it is a terminal).
    Stdout,
    /// A file, published atomically; an existing one is replaced only with `force`.
    File {
        /// Target path.
        path: PathBuf,
        /// Replace an existing target.
        force: bool,
    },
    /// An object, uploaded in parts and completed only once whole; an
    /// existing one is replaced only with `force`.
    S3 {
        /// Target object.
        url: S3Url,
        /// Endpoint and region overrides.
        options: S3Options,
        /// Replace an existing object.
        force: bool,
    },
}

impl Output {
    /// Where it is, unless stdout.
    pub fn location(&self) -> Option<Location> {
        match self {
            Output::Stdout => None,
            Output::File { path, .. } => Some(Location::Local(path.clone())),
            Output::S3 { url, options, .. } => Some(Location::S3 {
                url: url.clone(),
                options: options.clone(),
            }),
        }
    }
}

/// An output checked and ready to be written.
pub(crate) enum Target {
    Stdout,
    File { path: PathBuf, force: bool },
    S3(Box<Remote>, S3Url),
}

impl Target {
    /// Checks `output` before any work is done: stdout is not a
    /// terminal; a file's directory exists and the file does not (unless
    /// `force`); an object does not exist (unless `force`) and the bucket
    /// answers with these credentials.
    pub(crate) fn check(output: &Output) -> Result<Target> {
        Ok(match output {
            Output::Stdout => {
                if io::stdout().is_terminal() {
                    return Err(Error::Refused(
                        "refusing to write an archive to a terminal; use -o FILE or redirect stdout"
                            .into(),
                    ));
                }
                Target::Stdout
            }
            Output::File { path, force } => {
                check_out_path(path)?;
                crate::store::publish::check_target(path, *force)?;
                Target::File {
                    path: path.clone(),
                    force: *force,
                }
            }
            Output::S3 {
                url,
                options,
                force,
            } => {
                let remote = Remote::connect(url, options)?;
                remote.check_target(*force)?;
                Target::S3(Box::new(remote), url.clone())
            }
        })
    }

    /// Whether [`Target::write`] needs an estimate of the size (for an
    /// upload's parts).
    pub(crate) fn needs_estimate(&self) -> bool {
        matches!(self, Target::S3(..))
    }

    /// Writes the archive `write` writes (given the writer and the name
    /// for messages) and publishes it once `before_publish` agrees; on any
    /// error nothing is published (a file's temporary is removed, an
    /// upload aborted). `estimate` (an upper bound of the size) sizes the
    /// parts of an upload (see [`Target::needs_estimate`]).
    pub(crate) fn write(
        self,
        estimate: u64,
        write: impl FnOnce(&mut (dyn Write + Send), &Path) -> Result<CreateSummary>,
        before_publish: impl FnOnce() -> Result<()>,
    ) -> Result<CreateSummary> {
        match self {
            Target::Stdout => {
                let stdout = io::stdout();
                let _lock = stdout.lock();
                // A duplicate of fd 1, for unbuffered writes of large
                // chunks; closing it leaves stdout open.
                let fd = stdout
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| Error::io("write", "-", e))?;
                write(&mut File::from(fd), Path::new("-"))
            }
            Target::File { path, force } => {
                let (mut file, removed) = AtomicFile::create(&path, force)?;
                let written = write(&mut file.writer(), &path).and_then(|s| {
                    before_publish()?;
                    Ok(s)
                });
                match written {
                    Ok(mut summary) => {
                        file.commit()?;
                        summary.removed_stale = removed;
                        Ok(summary)
                    }
                    Err(e) => {
                        // The archive error matters more than a failed cleanup.
                        let _ = file.abort();
                        Err(e)
                    }
                }
            }
            Target::S3(remote, url) => {
                let mut upload = Upload::start(&remote, estimate)?;
                let name = PathBuf::from(url.to_string());
                let written = write(&mut upload, &name).and_then(|s| {
                    before_publish()?;
                    Ok(s)
                });
                match written {
                    Ok(mut summary) => {
                        let uploaded = upload.finish(&summary.sha256)?;
                        summary.warnings.extend(uploaded.warnings.iter().cloned());
                        summary.uploaded = Some(uploaded);
                        Ok(summary)
                    }
                    Err(e) => {
                        // The archive error matters more than a failed abort.
                        let _ = upload.abort();
                        Err(e)
                    }
                }
            }
        }
    }
}

/// Refuses an `OUT` that cannot be written before any work is done: one
/// that ends in `/`, or whose directory does not exist.
fn check_out_path(out: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if out.as_os_str().as_bytes().ends_with(b"/") {
        return Err(Error::Refused(format!(
            "{} ends in `/`: -o names the archive file, not a directory",
            out.display()
        )));
    }
    // A directory named without its `/`: say how to write into it.
    if std::fs::metadata(out).is_ok_and(|m| m.is_dir()) {
        return Err(Error::Refused(format!(
            "{} is a directory; to put a timestamped archive in it, write {}/",
            out.display(),
            out.display()
        )));
    }
    let (dir, _) = crate::store::publish::split(out)?;
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Refused(format!(
            "{} is not a directory; cannot write {} into it",
            dir.display(),
            out.display()
        ))),
        Err(e) => Err(Error::io("find the directory of", out, e)),
    }
}

/// Whether two locations name the same archive (the same file, by device
/// and inode, or the same object).
pub(crate) fn same_archive(a: &Location, b: &Location) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a, b) {
        (Location::Local(x), Location::Local(y)) => {
            match (std::fs::metadata(x), std::fs::metadata(y)) {
                (Ok(m), Ok(n)) => (m.dev(), m.ino()) == (n.dev(), n.ino()),
                _ => false,
            }
        }
        (Location::S3 { url: x, .. }, Location::S3 { url: y, .. }) => x == y,
        _ => false,
    }
}

/// Where `-o OUT` writes, and its name in reports: stdout for `-`, an
/// object for `s3://…`, else a file. An `OUT` ending in `/` is a
/// directory or a prefix: the archive is named there by `created_unix_ms`
/// (UTC, `sydradb-YYYYMMDDTHHMMSSZ.tar.zst`, `.age` added when
/// `encrypted`); in a directory, never over an archive already there (two
/// runs in one second, or a fixed `SOURCE_DATE_EPOCH`): the next free
/// `-N` before the suffix (a race with another run is refused at
/// publication).
pub fn output_for(
    output: &Path,
    force: bool,
    s3: &S3Options,
    created_unix_ms: u64,
    encrypted: bool,
) -> Result<(Output, String)> {
    if output == Path::new("-") {
        return Ok((Output::Stdout, "-".into()));
    }
    let mut out = output.to_path_buf();
    let is_s3 = output
        .to_string_lossy()
        .starts_with(crate::store::s3::SCHEME);
    if output.as_os_str().as_encoded_bytes().ends_with(b"/") {
        let mut name = crate::store::retention::timestamped_name(created_unix_ms as i64);
        if encrypted {
            name.push_str(".age");
        }
        if !is_s3 && !output.is_dir() {
            // `f/` of a file fails with ENOTDIR: look at `f`.
            let bare = output.to_string_lossy().trim_end_matches('/').to_string();
            let what = if std::fs::symlink_metadata(&bare).is_ok() {
                "is not a directory"
            } else {
                "does not exist"
            };
            return Err(Error::Refused(format!(
                "{} {what} (an OUT ending in / names an existing directory or an s3:// prefix)",
                output.display()
            )));
        }
        let mut joined = output.as_os_str().to_owned();
        joined.push(&name);
        out = PathBuf::from(joined);
        // A name taken (an archive of the same second) gets `-2`, `-3`...
        let taken = |out: &Path| -> Result<bool> {
            if !is_s3 {
                return Ok(std::fs::symlink_metadata(out).is_ok());
            }
            match Location::parse(out, s3)? {
                Location::S3 { url, options } => {
                    Ok(crate::store::s3::Remote::connect(&url, &options)?
                        .head()?
                        .is_some())
                }
                Location::Local(_) => Ok(false),
            }
        };
        let (stem, ext) = name.split_at(name.find(".tar.zst").unwrap_or(name.len()));
        let mut n = 1;
        while n < 1000 && taken(&out)? {
            n += 1;
            let mut joined = output.as_os_str().to_owned();
            joined.push(format!("{stem}-{n}{ext}"));
            out = PathBuf::from(joined);
        }
    }
    let shown = out.display().to_string();
    Ok(match Location::parse(&out, s3)? {
        Location::S3 { url, options } => (
            Output::S3 {
                url,
                options,
                force,
            },
            shown,
        ),
        Location::Local(path) => (Output::File { path, force }, shown),
    })
}
