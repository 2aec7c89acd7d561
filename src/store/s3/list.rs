//! `ls` and `prune`: the archives under a prefix, newest first.

use futures_util::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::Result;

use super::download::probe_path;
use super::{ARCHIVE_SUFFIX, Remote, remote_error, runtime};

/// One archive object found by [`ls`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Listed {
    /// Its URL.
    pub url: String,
    /// Its key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification (upload completion), Unix milliseconds.
    pub modified_unix_ms: i64,
    /// SHA-256 from the object's metadata, if recorded.
    pub sha256: Option<String>,
    /// What tells it is still the archive listed (an object's ETag; a
    /// file's device, inode, size and time): checked before a deletion.
    #[serde(skip)]
    pub identity: Option<String>,
    /// For an incremental: the archive it was made on (from its HEAD).
    pub base: Option<crate::format::incremental::BaseRef>,
    /// TAIL's `body_sha256` (hex), for a version-2 or -3 archive: what an
    /// incremental's HEAD names its base by.
    #[serde(skip)]
    pub body_sha256: Option<String>,
    /// Whether it is encrypted (an age file, whatever its name).
    pub encrypted: bool,
    /// Whether its chain (`base`) is known: false for an encrypted
    /// archive without a chain record in its header, listed without its
    /// key.
    pub chain_known: bool,
    /// The moment it is of: its HEAD's time (ms), where HEAD was read
    /// (not for an encrypted archive listed without its key).
    pub created_unix_ms: Option<u64>,
}

/// What [`ls`] found under a prefix.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// Archives (a `.tar.zst` name and a valid FOOT that matches the
    /// size), newest first.
    pub archives: Vec<Listed>,
    /// `.tar.zst` objects that are not sydra-archives, with the reason.
    pub others: Vec<(String, String)>,
    /// Temporary files of killed runs (a directory's): removed by the
    /// next `prune --yes` or write there.
    pub stale: Vec<String>,
}

impl Listing {
    /// Archives newest first (by modification time, then HEAD time when
    /// known, then name: S3 keeps whole seconds, and `…Z.tar.zst` sorts
    /// after `…Z-2.tar.zst`); others by name.
    pub fn sort(&mut self) {
        self.archives.sort_by(|a, b| {
            b.modified_unix_ms
                .cmp(&a.modified_unix_ms)
                .then(b.created_unix_ms.cmp(&a.created_unix_ms))
                .then(name_order(&b.key).cmp(&name_order(&a.key)))
        });
        self.others.sort();
    }
}

/// A name in the order of its writing: `x.tar.zst` before `x-2.tar.zst`
/// before `x-10.tar.zst` (the names `-o DIR/` gives in one second).
fn name_order(key: &str) -> (&str, u64, &str) {
    let stem = key.split_once(ARCHIVE_SUFFIX).map_or(key, |(s, _)| s);
    if let Some((head, n)) = stem.rsplit_once('-')
        && !n.is_empty()
        && n.len() <= 4
        && n.bytes().all(|c| c.is_ascii_digit())
    {
        return (head, n.parse().unwrap_or(0), key);
    }
    (stem, 1, key)
}

/// Lists the archives directly under the prefix `url` (`s3://b/p/` and
/// `s3://b/p` both mean the "directory" `p/`): every `*.tar.zst` object
/// whose last 64 bytes are a FOOT matching its size. Newest first.
pub fn ls(remote: &Remote) -> Result<Listing> {
    let (url, store) = (&remote.url, &remote.store);
    let prefix = url.prefix()?;
    let rt = runtime()?;
    let listed = rt
        .block_on(store.list_with_delimiter(prefix.as_ref()))
        .map_err(|e| remote_error("list", url, e))?;
    let candidates: Vec<_> = listed
        .objects
        .into_iter()
        .filter(|m| super::archive_name(m.location.as_ref()))
        .collect();
    let mut listing = Listing::default();
    // Eight ranged reads at a time.
    let results: Vec<_> = rt.block_on(
        futures_util::stream::iter(candidates.into_iter().map(|m| {
            let obj = url.with_key(m.location.as_ref());
            async move {
                // An age file is told by its start, whatever its name.
                let probed = if m.location.as_ref().ends_with(".age") {
                    super::download::probe_encrypted(store, &obj, &m.location, m.size).await
                } else {
                    // Pinned to the version listed (its probe then kept);
                    // one replaced since is read as it is now.
                    // (A store whose listings carry no ETag: the version
                    // an earlier listing's read saw, at the same size.)
                    let version = m
                        .e_tag
                        .clone()
                        .or_else(|| super::download::listed_version(&obj, m.size));
                    let pinned =
                        probe_path(store, &obj, &m.location, Some(m.size), version.as_deref())
                            .await;
                    let probed = match pinned {
                        Err(e) if !e.is_archive_fault() && version.is_some() => {
                            probe_path(store, &obj, &m.location, Some(m.size), None).await
                        }
                        r => r,
                    };
                    match probed {
                        Err(e) if e.is_archive_fault() => {
                            super::download::probe_encrypted(store, &obj, &m.location, m.size)
                                .await
                                .map_err(|_| e)
                        }
                        r => r,
                    }
                };
                (m, obj, probed)
            }
        }))
        .buffer_unordered(8)
        .collect(),
    );
    for (m, obj, probed) in results {
        match probed {
            Ok(p) => listing.archives.push(Listed {
                url: obj.to_string(),
                key: m.location.to_string(),
                size: p.size,
                modified_unix_ms: p.modified_unix_ms,
                sha256: p.sha256,
                identity: p.e_tag,
                base: p.record.as_ref().and_then(|r| r.base.clone()),
                body_sha256: p.body_sha256.map(|d| crate::format::sums::hex(&d)),
                encrypted: p.encrypted,
                chain_known: !p.encrypted || p.record.is_some(),
                created_unix_ms: None,
            }),
            Err(e) if e.is_archive_fault() => listing.others.push((obj.to_string(), e.to_string())),
            Err(e) => return Err(e),
        }
    }
    listing.sort();
    Ok(listing)
}

/// Deletes the archive object `l` that [`ls`] listed under the prefix of
/// `remote`, if it is still that object (its ETag, looked at just before).
pub fn delete(remote: &Remote, l: &Listed) -> Result<()> {
    let obj = remote.url.with_key(&l.key);
    let path = obj.object()?;
    let rt = runtime()?;
    match rt.block_on(remote.store.head(&path)) {
        Err(object_store::Error::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(remote_error("check", &obj, e)),
        Ok(m) if l.identity.is_some() && m.e_tag != l.identity => {
            return Err(crate::error::Error::Refused(format!(
                "{obj} changed since it was listed; left alone"
            )));
        }
        Ok(_) => {}
    }
    rt.block_on(remote.store.delete(&path))
        .map_err(|e| remote_error("delete", &obj, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_of_one_second_sort_in_their_writing_order() {
        let mut v = vec![
            "p/x-10.tar.zst",
            "p/x.tar.zst",
            "p/x-2.tar.zst",
            "p/x-9.tar.zst.age",
            "p/w-3.tar.zst",
        ];
        v.sort_by_key(|k| super::name_order(k));
        assert_eq!(
            v,
            [
                "p/w-3.tar.zst",
                "p/x.tar.zst",
                "p/x-2.tar.zst",
                "p/x-9.tar.zst.age",
                "p/x-10.tar.zst"
            ]
        );
    }
}
