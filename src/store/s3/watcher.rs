//! One `watch` a prefix: the object-storage form of the watch lock a
//! destination directory has (see [`crate::store::lock::lock_watcher`]).
//! Two watches shipping into one prefix would fork its chain.
//!
//! A watch announces a `watch-<id>` entry beside the `create-` and
//! `prune-` ones (see [`super::lease`]) for its whole run, renewed and
//! removed like them; stale entries (their process gone on this
//! machine, or not renewed for a lease by the store's clock) are removed
//! by whoever finds them. `watch-` entries keep out other watches only:
//! creates and prunes ignore them (a watch's points take create entries
//! of their own, as any `create --incremental` does).
//!
//! Its entry is first a *claim* (`"held":false`), then, once the watch
//! has won, *held* (`"held":true`). After writing its claim a watch
//! lists the entries and:
//! - a live held entry of another watch: refused;
//! - a live claim that sorts before its own (by key): refused;
//! - live claims that sort after its own only: it waits, listing again,
//!   until each is withdrawn (its watch saw this claim first and gave
//!   way), held (then refused), or stale;
//! - no other live entry: it rewrites its entry held, and ships.
//!
//! Two watches starting at once therefore never both ship, and one of
//! them does: with listings that show every completed PUT, a watch that
//! found no other entry was seen by any watch that listed after it, and
//! that one either gives way (it sorts after) or waits until the claim
//! it saw is held (and gives way then). Its one gap: a watch that stalls
//! between its listing and its held rewrite for a whole lease loses its
//! claim, and may then ship beside another.

use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Result};

use super::entry::{Body, judge};
use super::lease::{Lease, hold, lock_dir, parse, removed_on_signal};
use super::{Remote, remote_error, runtime};

/// What a watch found of the others.
enum Found {
    /// No other live watch entry: it may hold the prefix.
    Alone,
    /// Claims sorting after its own, still deciding.
    Later,
    /// Another watch holds the prefix, or wins the start.
    Other(String),
}

/// Takes the watch lock of the prefix of `remote`, without waiting for a
/// watch that holds it: refused while another watch ships there. `None`
/// where the entry may not be written (access denied): the watch runs
/// unguarded, as in a directory where the lock file cannot be made.
pub fn take(remote: &Remote) -> Result<Option<Lease>> {
    let dir = lock_dir(remote.url(), false);
    let key = format!("{dir}/watch-{}", crate::store::publish::unique_suffix());
    let url = remote.url().with_key(&key);
    let (path, list_at) = (parse(remote, &key)?, parse(remote, &dir)?);
    let rt = runtime()?;
    let store = remote.store.clone();
    let (stop, pending) = removed_on_signal(rt, &store, &path, &url);
    let (claim, held) = (
        Body::bytes("watch", Some(false)),
        Body::bytes("watch", Some(true)),
    );
    let shown = match remote.url().key.trim_end_matches('/') {
        "" => remote.url().with_key(""),
        k => remote.url().with_key(&format!("{k}/")),
    };
    let outcome = (|| -> Result<bool> {
        let mut first = true;
        loop {
            if crate::store::cleanup::stopping() {
                return Err(Error::Interrupted);
            }
            match rt.block_on(store.put(&path, PutPayload::from(claim.clone()))) {
                Err(e) if first && super::denied(&e) => return Ok(false),
                r => r.map_err(|e| remote_error("write the lock entry", &url, e))?,
            };
            first = false;
            let entries: Vec<ObjectMeta> = rt
                .block_on(store.list(Some(&list_at)).try_collect())
                .map_err(|e| remote_error("list the locks of", &url, e))?;
            match others(rt, &store, &entries, &path) {
                Found::Alone => {
                    rt.block_on(store.put(&path, PutPayload::from(held.clone())))
                        .map_err(|e| remote_error("write the lock entry", &url, e))?;
                    return Ok(true);
                }
                Found::Other(who) => {
                    return Err(Error::Refused(format!(
                        "another watch ships into {shown} ({who}): one watch a destination"
                    )));
                }
                Found::Later => {
                    crate::sys::pause_point("watch-wait");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    })();
    match outcome {
        Ok(true) => hold(remote, path, held, stop, pending).map(Some),
        failed => {
            // Nothing held: the entry, if written, goes.
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(5), store.delete(&path)).await
            });
            pending.forget();
            failed.map(|_| None)
        }
    }
}

/// What the `watch-` entries in `entries` other than `own` say (stale
/// ones removed on the way).
fn others(
    rt: &tokio::runtime::Runtime,
    store: &std::sync::Arc<object_store::aws::AmazonS3>,
    entries: &[ObjectMeta],
    own: &object_store::path::Path,
) -> Found {
    let now = entries.iter().find(|m| m.location == *own);
    let mut found = Found::Alone;
    for m in entries {
        let name = m.location.filename().unwrap_or_default();
        if m.location == *own || !name.starts_with("watch-") {
            continue;
        }
        let Some(body) = judge(rt, store, m, now) else {
            continue;
        };
        // A claim: the other watch is still deciding. An entry that
        // cannot be read is taken for a held one.
        let claim = body.as_ref().is_some_and(|b| b.held == Some(false));
        if claim && m.location.as_ref() > own.as_ref() {
            found = Found::Later;
            continue;
        }
        let who = match &body {
            Some(b) if b.host.is_empty() => format!("pid {}", b.pid),
            Some(b) => format!("pid {} on {}", b.pid, b.host),
            None => "its entry cannot be read".to_string(),
        };
        let what = if claim { "starting; " } else { "" };
        return Found::Other(format!("{what}{who}, entry {name}"));
    }
    found
}
