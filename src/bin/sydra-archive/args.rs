//! What the arguments several commands share become: archive locations
//! (paths, `-`, `s3://` URLs) with their S3 options, `--base`, and the
//! identities archives are decrypted with.

use std::path::{Path, PathBuf};

use sydra_archive::{Location, S3Options};

use crate::cli::{ChainArgs, ReadArgs, S3Args};

pub fn s3_options(a: &S3Args) -> S3Options {
    S3Options {
        endpoint: a.endpoint.clone(),
        region: a.region.clone(),
        concurrency: 0,
    }
}

/// An archive argument read whole, with `read`'s concurrency for objects.
pub fn read_location(arg: &Path, s3: &S3Args, read: &ReadArgs) -> anyhow::Result<Location> {
    let opts = S3Options {
        concurrency: read.concurrency as usize,
        ..s3_options(s3)
    };
    Ok(Location::parse(arg, &opts)?)
}

/// Sets the identities this run decrypts archives with: `--identity`
/// files (else `SYDRA_ARCHIVE_IDENTITY_FILE`) and `--passphrase-file`
/// (else `SYDRA_ARCHIVE_PASSPHRASE_FILE`). Only to decrypt: `create`
/// encrypts with `--passphrase-file` alone.
pub fn use_keys(identities: &[PathBuf], passphrase_file: Option<&Path>) -> anyhow::Result<()> {
    let env_file = |name: &str| std::env::var_os(name).filter(|f| !f.is_empty());
    let mut from_env = None;
    if passphrase_file.is_none()
        && let Some(f) = env_file("SYDRA_ARCHIVE_PASSPHRASE_FILE")
    {
        // As for the identity file below: one that cannot be read fails
        // only the runs that need it.
        match sydra_archive::Identities::new(&[], Some(Path::new(&f))) {
            Ok(_) => from_env = Some(PathBuf::from(f)),
            Err(e) => say!("sydra-archive: warning: SYDRA_ARCHIVE_PASSPHRASE_FILE: {e}"),
        }
    }
    let passphrase_file = passphrase_file.or(from_env.as_deref());
    if identities.is_empty()
        && let Some(f) = env_file("SYDRA_ARCHIVE_IDENTITY_FILE")
    {
        // From the environment, a key that cannot be read fails only the
        // runs that need one (an unencrypted archive needs none).
        match sydra_archive::Identities::new(&[PathBuf::from(&f)], passphrase_file) {
            Ok(ids) => sydra_archive::set_identities(ids),
            Err(e) => {
                say!("sydra-archive: warning: SYDRA_ARCHIVE_IDENTITY_FILE: {e}");
                sydra_archive::set_identities(sydra_archive::Identities::new(
                    &[],
                    passphrase_file,
                )?);
            }
        }
        return Ok(());
    }
    sydra_archive::set_identities(sydra_archive::Identities::new(identities, passphrase_file)?);
    Ok(())
}

/// The `--base` arguments.
pub fn bases(c: &ChainArgs, s3: &S3Args) -> anyhow::Result<Vec<Location>> {
    c.bases.iter().map(|b| location(b, s3)).collect()
}

/// An archive argument: `s3://…` is an object, anything else a path.
pub fn location(arg: &Path, s3: &S3Args) -> anyhow::Result<Location> {
    Ok(Location::parse(arg, &s3_options(s3))?)
}

/// The archive `arg` names; ending in `/`, the newest restorable point
/// of that directory or prefix (at or before `at`, a time as `--at`
/// takes it), its chain added to `bases`.
pub fn point_location(
    arg: &Path,
    at: Option<&str>,
    s3: &S3Args,
    bases: &mut Vec<Location>,
) -> anyhow::Result<Location> {
    let is_shelf = arg.as_os_str().as_encoded_bytes().ends_with(b"/");
    if !is_shelf {
        if at.is_some() {
            return Err(sydra_archive::Error::Refused(format!(
                "--at chooses among the archives of a directory or prefix: ARCHIVE must end in / (got {})",
                arg.display()
            ))
            .into());
        }
        return location(arg, s3);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let at = at.map(|t| sydra_archive::parse_time(t, now)).transpose()?;
    let shelf = sydra_archive::Shelf::parse(&arg.to_string_lossy(), &s3_options(s3))?;
    let (loc, _, chain) = sydra_archive::restorable_at(&shelf, bases, at)?;
    bases.extend(chain);
    Ok(loc)
}
