//! Whether a restore fits: the space and inodes the archive needs, at
//! most, against what its filesystem has free.

use std::path::Path;

use crate::error::{Error, Result};
use crate::read::Plan;
use crate::read::source::RandomSource;
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

/// Before a restore refuses for want of space on what META says, META
/// is proven: the archive's body must hash to what TAIL records (a
/// tampered META is the archive's fault, not the disk's).
pub fn prove_meta_if_short(src: &RandomSource, parent: &Path) -> Result<()> {
    let Some((tail, meta, _)) =
        crate::read::read_end(src.size, &mut |at, buf| src.read_at(at, buf), &src.shown)?
    else {
        return Ok(());
    };
    let space = sys::free_space(parent).map_err(|e| Error::io("statvfs", parent, e))?;
    let plan = Plan {
        files: meta.files,
        dirs: meta.dirs,
        total_bytes: meta.total_bytes,
    };
    if space_needed(&plan, space.block) <= space.bytes {
        return Ok(());
    }
    let (sha, n_all) =
        crate::store::verified::sha256_of(&mut src.stream(0, tail.body_len)?, src.shown.as_ref())?;
    if n_all != tail.body_len || sha != tail.body_sha256 {
        return Err(Error::corrupt(format!(
            "{}: the archive does not hash to what its TAIL records (its META, which asks for {} bytes, cannot be trusted)",
            src.shown, meta.total_bytes
        )));
    }
    Ok(())
}
