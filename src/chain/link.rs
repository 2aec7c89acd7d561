//! A link of a chain: one archive opened for reads at offsets, its end
//! (TAIL, TABLE, META) and HEAD read and checked, and authenticated as
//! the archive the link above recorded (its size and TAIL digest, then
//! its whole SHA-256).

use std::io::Read;

use crate::error::{Error, Result};
use crate::format::frame::{TAG_HEAD, check_skippable_header};
use crate::format::incremental::BaseRef;
use crate::format::sums::hex;
use crate::format::v2::{Head2, MAX_HEAD2_BODY, Meta, Row, Tail};
use crate::read::source::{RandomSource, open_link};
use crate::read::{read_end, table_rows};
use crate::store::location::Location;

/// One archive of a chain, open for reads at offsets, its end (TAIL,
/// TABLE, META) and HEAD read and checked.
pub struct Link {
    /// Where it is.
    pub loc: Location,
    /// The archive, read at offsets.
    pub src: RandomSource,
    /// Its HEAD (covered only by the whole archive's digest).
    pub head: Head2,
    /// Its TAIL.
    pub tail: Tail,
    /// Its META (authenticated by TAIL).
    pub meta: Meta,
    pub(super) rows: Vec<Row>,
    /// The SHA-256 object metadata recorded at upload, if any.
    pub recorded_sha256: Option<String>,
    /// The archive is encrypted: `src` reads its plaintext, and its
    /// SHA-256 is the ciphertext's.
    pub encrypted: bool,
    /// Archive offset of the first frame after HEAD (DATA starts here).
    pub data_at: u64,
    /// For an object: its remote, ETag and size when opened.
    object: Option<(crate::store::s3::Remote, Option<String>, u64)>,
}

impl Link {
    /// Opens the archive at `loc`; it must be a version-2 or -3 archive in
    /// a file or an object.
    pub fn open(loc: &Location) -> Result<Link> {
        // Never opened unless a regular file: a FIFO would block, and
        // nothing else can be read at offsets.
        let reader = open_link(loc)?;
        let recorded_sha256 = reader.recorded_sha256();
        let encrypted = reader.is_encrypted();
        let object = reader.object_seen();
        // What `ls` and `prune` go by without the key, authenticated by
        // the age header's MAC once decrypted: it must say what HEAD says.
        let record = reader
            .age_start()
            .and_then(|s| crate::store::crypt::chain_record(s).ok().flatten());
        let Some(src) = reader.random_access()? else {
            return Err(Error::Refused(format!(
                "{loc} is not a file or an object: the archives of a chain are read at offsets"
            )));
        };
        let Some((tail, meta, table)) =
            read_end(src.size, &mut |at, buf| src.read_at(at, buf), &src.shown)?
        else {
            let mut end = [0u8; crate::format::footer::FOOT_LEN];
            let n = end.len() as u64;
            let v1 = src.size >= n
                && src.read_at(src.size - n, &mut end).is_ok()
                && end[8..16] == *b"SYDRFOOT";
            if v1 {
                return Err(Error::Refused(format!(
                    "{loc} is a version-1 archive: only version-2 archives (this tool's) can be bases of an incremental"
                )));
            }
            return Err(Error::corrupt(format!(
                "{loc} does not end with a TAIL (truncated, or not an archive)"
            )));
        };
        let mut h = [0u8; 16];
        src.read_at(0, &mut h)
            .map_err(|e| crate::error::from_io(e, "read", src.shown.as_ref()))?;
        let len = check_skippable_header(&h, &TAG_HEAD, MAX_HEAD2_BODY, 0)?;
        let mut body = vec![0u8; len as usize];
        src.read_at(16, &mut body)
            .map_err(|e| crate::error::from_io(e, "read", src.shown.as_ref()))?;
        let head = Head2::parse(&body)?;
        if head.version != tail.version {
            return Err(Error::corrupt(format!(
                "{loc}: TAIL says version {} but HEAD says version {}",
                tail.version, head.version
            )));
        }
        if let Some(r) = record
            && r.base != head.base
        {
            return Err(Error::corrupt(format!(
                "{loc}: the chain record in its age header is not the base its HEAD records"
            )));
        }
        let rows = table_rows(&table, tail.table_offset, 16 + len)?;
        Ok(Link {
            loc: loc.clone(),
            src,
            head,
            tail,
            meta,
            rows,
            recorded_sha256,
            encrypted,
            data_at: 16 + len,
            object,
        })
    }

    /// Whether this is the archive `b` names, by what its end says: its
    /// size and the SHA-256 of everything before TAIL (the whole
    /// archive's SHA-256 is checked when it is read).
    pub fn is(&self, b: &BaseRef) -> bool {
        self.src.size == b.size
            && hex(&self.tail.body_sha256) == b.body_sha256
            && self
                .recorded_sha256
                .as_ref()
                .is_none_or(|s| s.eq_ignore_ascii_case(&b.sha256))
    }

    /// Checks that this is, byte for byte, the archive `b` names: its
    /// whole SHA-256 (the stored bytes; see
    /// [`RandomSource::stored_sha256`]) is the one the link above
    /// recorded. `child` names that link in the error.
    pub fn authenticate(&self, b: &BaseRef, child: &Location) -> Result<()> {
        let got = match self.src.stored_sha256()? {
            Some(sha) => sha,
            None => {
                crate::read::source::open_archive(&self.loc, None)?
                    .stored_sha256()?
                    .0
            }
        };
        // It has the size and TAIL recorded, so it claims to be the base:
        // another SHA-256 is a corrupted (or forged) base, an archive
        // fault (exit 1), as restore finds it when it reads it.
        if !hex(&got).eq_ignore_ascii_case(&b.sha256) {
            return Err(Error::corrupt(format!(
                "{}, the base of {child}, hashes to {}, not the {} it was made on (its size and TAIL are the recorded ones: corrupted or forged)",
                self.loc,
                hex(&got),
                b.sha256
            )));
        }
        Ok(())
    }

    /// Checks the archive whole against its own TAIL: the SHA-256 of
    /// everything before TAIL (HEAD included, which nothing else covers)
    /// is TAIL's `body_sha256`. For the newest archive of a chain, which
    /// no link above authenticates.
    pub fn check_body(&self) -> Result<()> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let mut r = self.src.stream(0, self.tail.body_len)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let got = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(crate::error::from_io(e, "read", self.src.shown.as_ref())),
            };
            h.update(&buf[..got]);
            n += got as u64;
        }
        let got: [u8; 32] = h.finalize().into();
        if n != self.tail.body_len || got != self.tail.body_sha256 {
            return Err(Error::corrupt(format!(
                "{}: archive SHA-256 does not match TAIL (corrupted or tampered)",
                self.loc
            )));
        }
        Ok(())
    }

    /// Checks that the archive is still where it was opened (a file: the
    /// same file under its name): an incremental is published only while
    /// its base is there.
    pub fn check_present(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let gone = match (&self.loc, &self.object) {
            (Location::Local(p), _) => {
                let now = std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
                now.is_none() || now != self.src.file_id()
            }
            // An object: there, of the size and ETag first seen.
            (Location::S3 { .. }, Some((remote, e_tag, size))) => match remote.head()? {
                None => true,
                Some((now_size, now_tag)) => {
                    now_size != *size || (e_tag.is_some() && now_tag != *e_tag)
                }
            },
            (Location::S3 { .. }, None) => false,
        };
        if gone {
            return Err(Error::Refused(format!(
                "the base {} was removed or replaced while the incremental was written; nothing was published",
                self.loc
            )));
        }
        Ok(())
    }
}

/// When a base found is trusted to be the archive its link recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Now: its whole SHA-256 is checked ([`Link::authenticate`]) before
    /// a byte or index record of it is used.
    Hash,
    /// As it is read whole by the caller, who compares its SHA-256 with
    /// the recorded one before anything it gave is used (restore).
    AsRead,
}

impl Trust {
    pub(super) fn check(self, l: &Link, b: &BaseRef, child: &Location) -> Result<()> {
        match self {
            Trust::Hash => l.authenticate(b, child),
            Trust::AsRead => Ok(()),
        }
    }
}
