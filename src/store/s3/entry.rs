//! A lock entry of a prefix (see [`super::lease`]): what it says of its
//! run, and whether that run is gone.

use std::sync::Arc;
use std::time::Duration;

use object_store::{ObjectMeta, ObjectStoreExt};

use crate::sys::ProcessStamp;

/// How long an entry not renewed stays valid.
const LEASE: Duration = Duration::from_secs(120);

/// [`LEASE`]; in debug builds (the tests'), the value in milliseconds of
/// `SYDRA_ARCHIVE_TEST_LOCK_LEASE_MS` when set.
pub(super) fn lease() -> Duration {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("SYDRA_ARCHIVE_TEST_LOCK_LEASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&n| n >= 1)
    {
        return Duration::from_millis(ms);
    }
    LEASE
}

/// What an entry says of its holder.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Body {
    side: String,
    pub(super) host: String,
    machine: String,
    pub(super) pid: u32,
    start: u64,
    /// Of a `watch-` entry: whether its watch holds the prefix (`true`)
    /// or is still deciding (see [`super::watcher`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) held: Option<bool>,
}

impl Body {
    /// This process's entry of `side`.
    pub(super) fn bytes(side: &str, held: Option<bool>) -> Vec<u8> {
        let me = crate::sys::this_process();
        serde_json::to_vec(&Body {
            side: side.to_string(),
            host: me.host,
            machine: me.machine,
            pid: me.pid,
            start: me.start,
            held,
        })
        .expect("a lock entry serialises")
    }

    fn stamp(&self) -> ProcessStamp {
        ProcessStamp {
            host: self.host.clone(),
            machine: self.machine.clone(),
            pid: self.pid,
            start: self.start,
        }
    }
}

/// What the entry `m` says of its run when it is alive (`Some`, with
/// its body if it could be read); `None` when it is stale: its process
/// is gone, or it was not rewritten for a lease by the store's clock
/// (the time of `now`, the finder's own entry, just written). A stale
/// entry is removed on the way (safe even if another run removed it
/// first).
pub(super) fn judge(
    rt: &tokio::runtime::Runtime,
    store: &Arc<object_store::aws::AmazonS3>,
    m: &ObjectMeta,
    now: Option<&ObjectMeta>,
) -> Option<Option<Body>> {
    // An entry is a few hundred bytes: a larger object is not read
    // (it is judged by its age alone).
    let body: Option<Body> = (m.size <= 4096)
        .then(|| {
            rt.block_on(async { store.get(&m.location).await?.bytes().await })
                .ok()
        })
        .flatten()
        .and_then(|b| serde_json::from_slice(&b).ok());
    // Not rewritten for a lease, either way (an entry dated a lease
    // after ours is as wrong as one a lease before it).
    let expired = now.is_some_and(|now| {
        let age = now.last_modified.signed_duration_since(m.last_modified);
        age.abs().to_std().is_ok_and(|age| age > lease())
    });
    if expired || body.as_ref().is_some_and(|b| b.stamp().is_gone()) {
        let _ = rt.block_on(store.delete(&m.location));
        return None;
    }
    Some(body)
}
