//! Regressions found by sweeps of the seeded test: one short seed per
//! class of failure (issue 23), each generating that class alone.

use super::{Defect, chain_model_seed};

// ------------------------------------------ regressions found by sweeps
//
// One short seed per class of failure found (issue 23), generating that
// class alone; each failed before its fix and must keep passing. A change
// to the generator changes what a seed generates: find new seeds with
// `SYDRA_CHAIN_ONLY_DEFECT=<Defect> SYDRA_CHAIN_STEPS=24 cargo test --test
// cli chain_model::chain_model -- --nocapture` (the failure prints the
// `chain_model_seed(..)` call to put here).

fn replay(seed: u64, steps: usize, avoid: &[Defect]) {
    if let Err(e) = chain_model_seed(seed, steps, avoid, false) {
        panic!("{e}");
    }
}

/// `b.wal` -> `a.wal`, `c.wal` -> `b.wal`: `create --base` records
/// appends whose `from` is still a path of the new tree; `verify --chain`,
/// `list` and the next `create --base` refuse the chain ("it continues
/// wal/<name>, which its base does not hold"), `restore` accepts it.
#[test]
fn seed_100_shifted_wal_names() {
    replay(
        100,
        21,
        &[
            Defect::WalDirBecomesFile,
            Defect::LongWalNames,
            Defect::DeepChains,
        ],
    );
}

/// `wal/X.wal/` (a directory) replaced by `current.wal` rotated to
/// `wal/X.wal`: `verify --chain` accepts the incremental, `restore`
/// refuses it ("cannot rename .../wal/current.wal: Is a directory").
#[test]
fn seed_17_wal_dir_replaced_by_rotated_file() {
    replay(
        17,
        12,
        &[
            Defect::ShiftedWalNames,
            Defect::LongWalNames,
            Defect::DeepChains,
        ],
    );
}

/// A WAL file name of 251-255 bytes that grows: `create --base` writes a
/// tail member `x-sydra-incremental/wal-tails/<name>.tail` over 255
/// bytes, which `verify` and `restore` refuse as a hostile entry.
#[test]
fn seed_103_long_wal_names() {
    replay(
        103,
        23,
        &[
            Defect::ShiftedWalNames,
            Defect::WalDirBecomesFile,
            Defect::DeepChains,
        ],
    );
}
