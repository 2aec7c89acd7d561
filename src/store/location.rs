//! Where an archive is read from: a local path, stdin (`-`), or an object
//! in object storage (`s3://bucket/key`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::store::s3::{S3Options, S3Url};

/// An archive's location.
#[derive(Debug, Clone)]
pub enum Location {
    /// A file; `-` means stdin (or stdout for output).
    Local(PathBuf),
    /// An object, with the settings to reach it.
    S3 {
        /// The object.
        url: S3Url,
        /// Endpoint and region overrides.
        options: S3Options,
    },
}

impl Location {
    /// Parses a command-line argument: `s3://…` is an object, anything else
    /// (including a name that is not UTF-8) a path.
    pub fn parse(arg: &Path, options: &S3Options) -> Result<Location> {
        match arg.to_str() {
            Some(s) if S3Url::is_s3(s) => Ok(Location::S3 {
                url: S3Url::parse(s)?,
                options: options.clone(),
            }),
            _ => Ok(Location::Local(arg.to_path_buf())),
        }
    }

    /// The name used in messages (as a path, for the archive reader).
    pub fn name(&self) -> PathBuf {
        match self {
            Location::Local(p) => p.clone(),
            Location::S3 { url, .. } => PathBuf::from(url.to_string()),
        }
    }
}

impl From<&Path> for Location {
    fn from(p: &Path) -> Location {
        Location::Local(p.to_path_buf())
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3 { url, .. } => write!(f, "{url}"),
        }
    }
}
