//! Restoring a data directory so that nothing in the target changes until
//! the whole archive has been verified.
//!
//! Before a byte of the archive is read, the target is checked to be
//! replaceable by a rename: on the filesystem, and the mount, of its parent
//! (not a mount point) (`target`). The archive is then extracted into a
//! staging directory beside the target (`staging`), every entry created
//! relative to that directory's descriptor (`sink`: so a path within the
//! format's limits can be restored however deep the target is), verified
//! completely (every member, every SHA-256, the footer), made durable with
//! one `syncfs`, and only then renamed into place — or, over existing data
//! with `force`, swapped with it atomically (`renameat2(RENAME_EXCHANGE)`),
//! the old tree being kept beside it (`publish`). A staging tree that was
//! not published is always removed. A chain is opened and modelled
//! before a byte is staged, and each incremental of it extracted whole
//! into a private directory of the staging tree, verified, and only then
//! applied to it (`chain`, `apply`); `space` says whether the archive
//! fits (and proves META before refusing on what it says).
//!
//! The run holds an exclusive `flock` on its staging directory from just
//! after creating it to the end; the staging marker is created only once
//! the lock is held. A staging directory of another run is stale only if
//! its lock is free — which, unlike a pid, means the same in every PID
//! namespace.

pub mod apply;
pub mod chain;
pub mod publish;
pub mod sink;
pub mod space;
pub mod staging;
pub mod target;
