//! The shelf lock of an `s3://` prefix: `prune --yes` and the creates
//! that read a base there (or write an incremental there) do not run at
//! once, as `flock` keeps them apart in a directory (see
//! [`crate::store::lock`]).
//!
//! Object storage has no locks, so each holder *announces* itself with
//! an object of its own under `PREFIX.sydra-archive.lock/`, then *looks*
//! (a listing) for holders it must not overlap: `create-*` entries keep a
//! prune out, `prune-*` entries keep creates and other prunes out. A run
//! that finds one alive removes its own entry and tries again after a
//! while (with a random part, so two runs that back off together do not
//! meet again). With a
//! store whose listings show every completed PUT (strong read-after-write
//! consistency: AWS S3 since 2020, MinIO, Ceph RGW, s3s-fs) two runs
//! cannot both miss each other: whichever lists second sees the first's
//! entry. No conditional write is needed, so this works on stores
//! without `If-None-Match`.
//!
//! An entry is renewed (rewritten) every quarter of the lease while its
//! run lasts and removed when it ends (or on SIGINT/SIGTERM). An entry
//! is stale, and removed by whoever finds it, when its process is known
//! to be gone (same machine: boot and pid namespace, and no process of
//! its pid and start time), or when it was not renewed for a whole lease
//! by the store's clock (its last modification a lease older, or newer,
//! than the entry the finder just wrote: no clock of this machine is
//! compared with the store's; a store whose gateways disagree by more
//! than a lease breaks live entries, and then only the check below
//! protects a create).
//! A run that is alive but could not renew for a lease may lose its
//! entry; a create then still refuses to publish an incremental whose
//! base is gone (it re-checks its base before it completes the upload).
//!
//! A `watch` announces a `watch-` entry of its own there for its whole
//! run (see [`super::watcher`]): it keeps other watches out, not creates
//! or prunes, which ignore it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::path::Path as ObjPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};
use crate::store::cleanup::Pending;

use super::entry::{Body, judge, lease};
use super::{Remote, S3Url, remote_error, runtime};

/// The "directory" of lock entries under a prefix.
pub const LOCK_DIR: &str = ".sydra-archive.lock";

/// Which side of the lock a run holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// A create on a base, or writing an incremental (many at once).
    Create,
    /// A deleting prune (keeps creates out, and they it).
    Prune,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Create => "create",
            Side::Prune => "prune",
        }
    }
}

/// A held lock of a prefix: its entry is renewed until dropped, then
/// removed.
pub struct Lease {
    stop: Arc<AtomicBool>,
    wake: Option<mpsc::Sender<()>>,
    remote: Remote,
    path: ObjPath,
    pending: Option<Pending>,
    /// Its place in [`HELD`] (a create's).
    held: Option<String>,
}

/// The create locks this process holds, by prefix: a create nested in
/// another of this process on the same prefix (a watch's point; an
/// incremental whose base and output share it) is covered by the outer
/// one and writes no entry of its own: one entry, one listing and one
/// removal a point instead of three.
static HELD: std::sync::Mutex<Option<std::collections::HashMap<String, usize>>> =
    std::sync::Mutex::new(None);

fn held_count(key: &str, by: isize) -> usize {
    let Ok(mut g) = HELD.lock() else { return 0 };
    let m = g.get_or_insert_with(Default::default);
    let n = m.entry(key.to_string()).or_insert(0);
    *n = n.saturating_add_signed(by);
    *n
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({})", self.path)
    }
}

/// The lock entries' prefix beside the key or under the prefix of `url`:
/// `p/` for `s3://b/p/x.tar.zst` (an object) or `s3://b/p/` (a prefix).
pub(super) fn lock_dir(url: &S3Url, is_object: bool) -> String {
    let key = if is_object {
        url.key.rsplit_once('/').map_or("", |(d, _)| d)
    } else {
        url.key.trim_end_matches('/')
    };
    if key.is_empty() {
        LOCK_DIR.to_string()
    } else {
        format!("{key}/{LOCK_DIR}")
    }
}

/// Takes the `side` lock of the prefix of `remote` (beside its object
/// when `is_object`), waiting while a run it must not overlap holds it: a
/// create waits for prunes, a prune for creates and other prunes. A
/// create where it may not write the entry (access denied) runs unlocked
/// (`None`), as in a read-only directory: this user cannot delete there
/// either; a prune that cannot lock does not run.
pub fn take(remote: &Remote, is_object: bool, side: Side) -> Result<Option<Lease>> {
    let dir = lock_dir(remote.url(), is_object);
    let held_key = remote.url().with_key(&dir).to_string();
    if side == Side::Create && held_count(&held_key, 0) > 0 {
        return Ok(None);
    }
    let body = Body::bytes(side.name(), None);
    let key = format!(
        "{dir}/{}-{}",
        side.name(),
        crate::store::publish::unique_suffix()
    );
    let url = remote.url().with_key(&key);
    let (path, list_at) = (parse(remote, &key)?, parse(remote, &dir)?);
    let rt = runtime()?;
    let store = remote.store.clone();
    let (stop, pending) = removed_on_signal(rt, &store, &path, &url);
    let held = (|| -> Result<bool> {
        let mut wait = Duration::from_millis(200);
        let mut first = true;
        loop {
            if crate::store::cleanup::stopping() {
                return Err(Error::Interrupted);
            }
            match rt.block_on(store.put(&path, PutPayload::from(body.clone()))) {
                Err(e) if first && side == Side::Create && super::denied(&e) => return Ok(false),
                r => r.map_err(|e| remote_error("write the lock entry", &url, e))?,
            };
            first = false;
            let entries: Vec<ObjectMeta> = rt
                .block_on(store.list(Some(&list_at)).try_collect())
                .map_err(|e| remote_error("list the locks of", &url, e))?;
            if !others_hold(rt, &store, &entries, &path, side) {
                return Ok(true);
            }
            let _ = rt.block_on(store.delete(&path));
            crate::sys::pause_point("lock-wait");
            std::thread::sleep(jitter(wait));
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    })();
    match held {
        Ok(true) => {}
        failed => {
            // Nothing held: the entry, if written, goes.
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), store.delete(&path)).await
            });
            pending.forget();
            return failed.map(|_| None);
        }
    }
    let mut lease = hold(remote, path, body, stop, pending)?;
    if side == Side::Create {
        held_count(&held_key, 1);
        lease.held = Some(held_key);
    }
    Ok(Some(lease))
}

/// `key` as an object path under the bucket of `remote`.
pub(super) fn parse(remote: &Remote, key: &str) -> Result<ObjPath> {
    ObjPath::parse(key).map_err(|e| {
        Error::Refused(format!(
            "{} is not a usable object key: {e}",
            remote.url().with_key(key)
        ))
    })
}

/// Registers the removal of the entry at `path` (`url`) on a signal,
/// from its first write on; the flag stops its renewal.
pub(super) fn removed_on_signal(
    rt: &tokio::runtime::Runtime,
    store: &Arc<object_store::aws::AmazonS3>,
    path: &ObjPath,
    url: &S3Url,
) -> (Arc<AtomicBool>, Pending) {
    let stop = Arc::new(AtomicBool::new(false));
    let (s_stop, s_store, s_path) = (stop.clone(), store.clone(), path.clone());
    let handle = rt.handle().clone();
    let pending = Pending::register(format!("the lock entry {url}"), move || {
        s_stop.store(true, Ordering::SeqCst);
        let _ = handle.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), s_store.delete(&s_path)).await
        });
        Ok(())
    });
    (stop, pending)
}

/// The held entry at `path` of `remote`, written with `body`: renewed
/// every quarter lease until the [`Lease`] is dropped (a renewal that
/// lands after that removes the entry again).
pub(super) fn hold(
    remote: &Remote,
    path: ObjPath,
    body: Vec<u8>,
    stop: Arc<AtomicBool>,
    pending: Pending,
) -> Result<Lease> {
    let rt = runtime()?;
    let store = remote.store.clone();
    let (wake, woken) = mpsc::channel::<()>();
    let (r_stop, r_store, r_path) = (stop.clone(), store.clone(), path.clone());
    let renewer = std::thread::Builder::new()
        .name("s3-lock".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = woken.recv_timeout(lease() / 4) {
                if r_stop.load(Ordering::SeqCst) {
                    break;
                }
                let _ = rt.block_on(async {
                    tokio::time::timeout(
                        Duration::from_secs(10),
                        r_store.put(&r_path, PutPayload::from(body.clone())),
                    )
                    .await
                });
                if r_stop.load(Ordering::SeqCst) {
                    let _ = rt.block_on(async {
                        tokio::time::timeout(Duration::from_secs(5), r_store.delete(&r_path)).await
                    });
                    break;
                }
            }
        });
    if renewer.is_err() {
        let _ = rt.block_on(store.delete(&path));
        pending.forget();
        return Err(Error::Refused(
            "cannot start the thread that renews the lock entry".into(),
        ));
    }
    Ok(Lease {
        stop,
        wake: Some(wake),
        remote: remote.clone(),
        path,
        pending: Some(pending),
        held: None,
    })
}

/// Whether an entry in `entries` other than `own` keeps a run of `side`
/// out: a live `prune-` entry (for either side) or a live `create-` one
/// (for a prune). Stale entries are removed on the way.
fn others_hold(
    rt: &tokio::runtime::Runtime,
    store: &Arc<object_store::aws::AmazonS3>,
    entries: &[ObjectMeta],
    own: &ObjPath,
    side: Side,
) -> bool {
    // The store's time now: when it wrote our entry (no clock of this
    // machine is compared with the store's).
    let now = entries.iter().find(|m| m.location == *own);
    let mut held = false;
    for m in entries {
        let name = m.location.filename().unwrap_or_default();
        let blocks =
            name.starts_with("prune-") || (side == Side::Prune && name.starts_with("create-"));
        if m.location == *own || !blocks {
            continue;
        }
        // Not `any`: every stale entry is removed on the way.
        held |= judge(rt, store, m, now).is_some();
    }
    held
}

/// `d` stretched by a random part of itself, so runs that back off
/// together do not retry together.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64(f64::from(nanos % 1000) / 1000.0)
}

impl Drop for Lease {
    fn drop(&mut self) {
        // The renewer is told to stop, not waited for (a renewal stalled
        // on the network must not hold the command's exit up); one that
        // lands after this removes the entry itself.
        self.stop.store(true, Ordering::SeqCst);
        drop(self.wake.take());
        if let Some(k) = self.held.take() {
            held_count(&k, -1);
        }
        if let Ok(rt) = runtime() {
            let _ = rt.block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    self.remote.store.delete(&self.path),
                )
                .await
            });
        }
        if let Some(p) = self.pending.take() {
            p.forget();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_entries_sit_beside_the_object_or_under_the_prefix() {
        let u = |s: &str| S3Url::parse(s).unwrap();
        assert_eq!(
            lock_dir(&u("s3://b/p/x.tar.zst"), true),
            "p/.sydra-archive.lock"
        );
        assert_eq!(
            lock_dir(&u("s3://b/x.tar.zst"), true),
            ".sydra-archive.lock"
        );
        assert_eq!(
            lock_dir(&u("s3://b/p/q/"), false),
            "p/q/.sydra-archive.lock"
        );
        assert_eq!(lock_dir(&u("s3://b/p/q"), false), "p/q/.sydra-archive.lock");
        assert_eq!(lock_dir(&u("s3://b"), false), ".sydra-archive.lock");
        assert!(jitter(Duration::from_secs(1)) >= Duration::from_secs(1));
    }
}
