//! `s3://bucket/key` URLs.

use std::fmt;

use object_store::path::Path as ObjPath;

use crate::error::{Error, Result};

use super::SCHEME;

/// A parsed `s3://bucket/key` URL; `key` may be empty or a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// Bucket name.
    pub bucket: String,
    /// Object key or prefix, without a leading `/`.
    pub key: String,
}

impl S3Url {
    /// True if `s` is meant as an object-storage URL.
    pub fn is_s3(s: &str) -> bool {
        s.starts_with(SCHEME)
    }

    /// Parses `s3://bucket[/key]`.
    pub fn parse(s: &str) -> Result<S3Url> {
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or_else(|| Error::Refused(format!("{s} is not an s3:// url")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Refused(format!("{s} names no bucket")));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// The key as an object path; refuses an empty key or one that names a
    /// "directory".
    pub(super) fn object(&self) -> Result<ObjPath> {
        if self.key.is_empty() || self.key.ends_with('/') {
            return Err(Error::Refused(format!(
                "{self} names no object (give s3://bucket/name.tar.zst)"
            )));
        }
        ObjPath::parse(&self.key)
            .map_err(|e| Error::Refused(format!("{self} is not a usable object key: {e}")))
    }

    /// The key as a listing prefix (`a/b/` and `a/b` both mean `a/b/`).
    pub(super) fn prefix(&self) -> Result<Option<ObjPath>> {
        let p = self.key.trim_end_matches('/');
        if p.is_empty() {
            return Ok(None);
        }
        ObjPath::parse(p)
            .map(Some)
            .map_err(|e| Error::Refused(format!("{self} is not a usable prefix: {e}")))
    }

    /// The URL of the object `key` in the same bucket.
    pub fn with_key_pub(&self, key: &str) -> S3Url {
        self.with_key(key)
    }

    pub(super) fn with_key(&self, key: &str) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            key: key.to_string(),
        }
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.bucket, self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let u = S3Url::parse("s3://b/x/y.tar.zst").unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("b", "x/y.tar.zst"));
        assert_eq!(u.to_string(), "s3://b/x/y.tar.zst");
        assert!(u.object().is_ok());
        assert!(S3Url::parse("s3://").is_err());
        assert!(S3Url::parse("/tmp/x").is_err());
        assert!(S3Url::parse("s3://b/dir/").unwrap().object().is_err());
        assert!(S3Url::parse("s3://b").unwrap().object().is_err());
        assert_eq!(S3Url::parse("s3://b").unwrap().prefix().unwrap(), None);
        assert_eq!(
            S3Url::parse("s3://b/p/").unwrap().prefix().unwrap(),
            S3Url::parse("s3://b/p").unwrap().prefix().unwrap()
        );
    }
}
