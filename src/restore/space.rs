//! Whether a restore fits: the space and inodes the archive needs, at
//! most, against what its filesystem has free.

use std::path::Path;

use crate::error::{Error, Result};
use crate::read::Plan;
use crate::sys;

/// The space a restore of `plan` takes, at most: every entry takes at
/// least a block, and a file's last block is partly empty (an upper
/// estimate without the list of sizes).
pub fn space_needed(plan: &Plan, block: u64) -> u64 {
    plan.total_bytes
        .saturating_add(plan.files.saturating_add(plan.dirs).saturating_mul(block))
}

/// Refuses a restore of `plan` into `parent`'s filesystem where it
/// cannot fit: too few bytes or (where counted) inodes free.
pub fn check_room(parent: &Path, plan: &Plan) -> Result<()> {
    let space = sys::free_space(parent).map_err(|e| Error::io("statvfs", parent, e))?;
    let (free, free_inodes) = (space.bytes, space.inodes);
    let entries = plan.files.saturating_add(plan.dirs);
    let need = space_needed(plan, space.block);
    if need > free {
        return Err(Error::Refused(format!(
            "not enough free space in {}: the archive needs about {need} bytes, {free} are free",
            parent.display()
        )));
    }
    if free_inodes > 0 && entries > free_inodes {
        return Err(Error::Refused(format!(
            "not enough free inodes in {}: the archive has {entries} entries, {free_inodes} inodes are free",
            parent.display(),
        )));
    }
    Ok(())
}
