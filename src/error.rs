//! The one error type of the library.
//!
//! Every variant says what a caller can do about it: [`Error::is_archive_fault`]
//! separates "the archive is bad" (exit 1) from everything else (exit 2).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while writing, reading or restoring an archive.
#[derive(Debug)]
pub enum Error {
    /// An I/O operation on `path` failed (not a fault of the archive's content).
    Io {
        /// What was being done, e.g. "read", "open", "rename".
        op: &'static str,
        /// The file or directory involved (`-` for stdin/stdout).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The archive is malformed, truncated or its checksums do not match.
    Corrupt(String),
    /// The archive tries something a well-formed archive never does
    /// (escaping paths, links, devices, duplicate entries...).
    Hostile {
        /// The entry path as the archive spells it (lossy UTF-8).
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// The archive declares a format version this build cannot read.
    UnsupportedVersion(u64),
    /// The data directory cannot be archived as it is (symlink below the
    /// layout, special file, non-UTF-8 name, file shrinking while read...).
    Source {
        /// The offending path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The operation was refused before anything was changed
    /// (output exists, nothing to archive, terminal output...).
    Refused(String),
    /// A SIGINT or SIGTERM arrived; everything temporary was removed.
    Interrupted,
    /// An error, and a second problem met while cleaning up after it (a
    /// staging directory that could not be removed). Classified as the
    /// first: a corrupt archive stays an archive fault.
    Also {
        /// What failed first.
        error: Box<Error>,
        /// What then also went wrong, one line.
        also: String,
    },
    /// An incremental archive's base is missing or is another archive
    /// than the one it was made on: not a fault of the incremental's
    /// content (give the right base, or restore an older archive).
    Base {
        /// The incremental whose base it is.
        archive: String,
        /// Which base, and what is wrong with it.
        reason: String,
    },
    /// The data dir cannot be written as an incremental on the base given
    /// (the chain would be too long, or an operation too long for a
    /// reader): nothing was published; write a full archive instead.
    NotIncremental(String),
    /// An encrypted archive cannot be decrypted with the identities given
    /// (none, or not one it was encrypted to): give the right one.
    Key {
        /// The archive.
        archive: String,
        /// What it is encrypted to, and what is missing.
        reason: String,
    },
    /// A request to object storage failed (network, credentials, missing
    /// object...): not a fault of the archive's content.
    Remote {
        /// What was being done, e.g. "upload", "read", "list".
        op: &'static str,
        /// The `s3://` URL involved.
        url: String,
        /// One line saying why.
        reason: String,
    },
    /// No archive in a directory or under a prefix can be restored: each
    /// was skipped (its chain is broken, it cannot be decrypted...), or
    /// there is none.
    NoneRestorable {
        /// The directory or prefix.
        shelf: String,
        /// Each archive skipped, newest first, and why.
        skipped: Vec<(String, String)>,
    },
}

impl Error {
    /// Wraps an I/O error with the operation and the path it concerns.
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A corrupt-archive error with a message.
    pub fn corrupt(msg: impl Into<String>) -> Error {
        Error::Corrupt(msg.into())
    }

    /// The archive ends inside `what` (a frame, a header, a member).
    pub fn truncated(what: &str) -> Error {
        Error::corrupt(format!("truncated: archive ends inside {what}"))
    }

    /// This error, with a second problem met while cleaning up after it.
    pub fn also(self, also: impl Into<String>) -> Error {
        Error::Also {
            error: Box::new(self),
            also: also.into(),
        }
    }

    /// A hostile-entry error.
    pub fn hostile(path: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Hostile {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Takes back a crate error that travelled inside an `io::Error`
    /// (through tar, zstd or serde, as `io::Error::other`); gives the
    /// `io::Error` back unchanged otherwise.
    pub fn from_carrier(e: io::Error) -> std::result::Result<Error, io::Error> {
        if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Err(e);
        }
        let inner = e.into_inner().expect("checked above");
        Ok(*inner.downcast::<Error>().expect("checked above"))
    }

    /// True when the archive itself is at fault (corrupt, truncated, tampered,
    /// hostile, unsupported version, not an archive): the CLI exits with 1.
    pub fn is_archive_fault(&self) -> bool {
        match self {
            Error::Corrupt(_) | Error::Hostile { .. } | Error::UnsupportedVersion(_) => true,
            Error::Also { error, .. } => error.is_archive_fault(),
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", display_path(path))
            }
            Error::Corrupt(msg) => write!(f, "corrupt archive: {msg}"),
            Error::Hostile { path, reason } => {
                write!(f, "hostile archive entry {path:?}: {reason}")
            }
            Error::UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported archive version {v} (this build reads versions 1 to 3)"
                )
            }
            Error::Source { path, reason } => {
                write!(f, "cannot archive {}: {reason}", path.display())
            }
            Error::Refused(msg) => write!(f, "{msg}"),
            Error::NotIncremental(msg) => {
                write!(
                    f,
                    "cannot write an incremental: {msg}; write a full archive"
                )
            }
            Error::Interrupted => write!(f, "interrupted by signal; temporary files removed"),
            Error::Remote { op, url, reason } => write!(f, "cannot {op} {url}: {reason}"),
            Error::Base { archive, reason } => write!(f, "broken chain of {archive}: {reason}"),
            Error::Key { archive, reason } => write!(f, "cannot decrypt {archive}: {reason}"),
            Error::Also { error, also } => write!(f, "{error}; also {also}"),
            Error::NoneRestorable { shelf, skipped } => match skipped.as_slice() {
                [] => write!(f, "no archive in {shelf}"),
                [(url, why)] => write!(
                    f,
                    "no restorable archive in {shelf}: its only archive was skipped ({url}: {why})"
                ),
                [(url, why), ..] => write!(
                    f,
                    "no restorable archive in {shelf}: all {} archives were skipped (the newest, {url}: {why})",
                    skipped.len()
                ),
            },
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// How paths appear in messages: `-` is spelled as the stream it stands for.
pub fn display_path(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin/stdout>".to_string()
    } else {
        path.display().to_string()
    }
}

/// Turns an `io::Error` that came back through tar/zstd into the crate's
/// error: ours travel inside `io::Error::other`, anything else is an I/O
/// failure of `op` on `path`.
pub(crate) fn from_io(e: io::Error, op: &'static str, path: &Path) -> Error {
    Error::from_carrier(e).unwrap_or_else(|e| Error::io(op, path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_faults_are_classified() {
        assert!(Error::corrupt("x").is_archive_fault());
        assert!(Error::hostile("a", "b").is_archive_fault());
        assert!(Error::UnsupportedVersion(2).is_archive_fault());
        assert!(!Error::Refused("x".into()).is_archive_fault());
        assert!(!Error::Interrupted.is_archive_fault());
        let e = Error::io("open", "/x", io::Error::from(io::ErrorKind::NotFound));
        assert!(!e.is_archive_fault());
        assert!(e.to_string().starts_with("cannot open /x"));
    }

    #[test]
    fn a_cleanup_failure_keeps_the_first_error_s_class() {
        let e = Error::corrupt("bad frame").also("could not remove staging directory /x: busy");
        assert!(e.is_archive_fault());
        assert_eq!(
            e.to_string(),
            "corrupt archive: bad frame; also could not remove staging directory /x: busy"
        );
        assert!(!Error::Refused("r".into()).also("y").is_archive_fault());
    }

    #[test]
    fn carried_errors_come_back_out() {
        let carried = io::Error::other(Error::corrupt("x"));
        assert!(matches!(
            Error::from_carrier(carried),
            Ok(Error::Corrupt(_))
        ));
        let plain = io::Error::from(io::ErrorKind::UnexpectedEof);
        let back = Error::from_carrier(plain).unwrap_err();
        assert_eq!(back.kind(), io::ErrorKind::UnexpectedEof);
    }
}
