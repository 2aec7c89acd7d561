//! SUMS: the per-file SHA-256 list written after the data.

use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::head::{Entry, EntryKind, Head};

/// One file's checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Archive path of the file.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its content, 64 lowercase hex digits.
    pub sha256: String,
}

/// The decoded SUMS frame.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sums {
    /// One object per file entry, in archive order.
    pub files: Vec<FileSum>,
}

impl Sums {
    /// Encodes SUMS as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("SUMS serializes")
    }

    /// Decodes a SUMS body and checks it lists exactly HEAD's files, in
    /// order, with the same sizes and well-formed digests.
    pub fn parse(body: &[u8], head: &Head) -> Result<Sums> {
        let sums: Sums = serde_json::from_slice(body)
            .map_err(|e| Error::corrupt(format!("SUMS is not valid JSON: {e}")))?;
        let mut listed = sums.files.iter();
        for e in head.entries.iter().filter(|e| e.kind == EntryKind::File) {
            let s = listed
                .next()
                .ok_or_else(|| Error::corrupt(format!("SUMS has no checksum for {:?}", e.path)))?;
            if s.path != e.path || s.size != e.size {
                return Err(Error::corrupt(format!(
                    "SUMS entry {:?} ({} bytes) does not match HEAD entry {:?} ({} bytes)",
                    s.path, s.size, e.path, e.size
                )));
            }
            if parse_hex32(&s.sha256).is_none() {
                return Err(Error::corrupt(format!(
                    "SUMS digest of {:?} is not 64 lowercase hex digits",
                    s.path
                )));
            }
        }
        if let Some(extra) = listed.next() {
            return Err(Error::corrupt(format!(
                "SUMS lists {:?}, which HEAD does not",
                extra.path
            )));
        }
        Ok(sums)
    }
}

/// SUMS as a view over the entry list and one digest per file entry, so a
/// writer can serialize it without building a second list.
pub struct SumsView<'a> {
    /// Every entry, in archive order (directories are skipped).
    pub entries: &'a [Entry],
    /// One SHA-256 per file entry, in order.
    pub digests: &'a [[u8; 32]],
}

impl Serialize for SumsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Files<'b>(&'b SumsView<'b>);
        #[derive(Serialize)]
        struct One<'c> {
            path: &'c str,
            size: u64,
            sha256: String,
        }
        impl Serialize for Files<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let files = self.0.entries.iter().filter(|e| e.kind == EntryKind::File);
                s.collect_seq(files.zip(self.0.digests).map(|(e, d)| One {
                    path: &e.path,
                    size: e.size,
                    sha256: hex(d),
                }))
            }
        }
        let mut st = s.serialize_struct("Sums", 1)?;
        st.serialize_field("files", &Files(self))?;
        st.end()
    }
}

/// Lowercase hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Parses exactly 64 lowercase hex digits.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = val(b[2 * i])? << 4 | val(b[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::head::tests::sample;

    fn sums_for(head: &Head) -> Sums {
        Sums {
            files: head
                .entries
                .iter()
                .filter(|e| e.kind == EntryKind::File)
                .map(|e| FileSum {
                    path: e.path.clone(),
                    size: e.size,
                    sha256: hex(&[0xab; 32]),
                })
                .collect(),
        }
    }

    #[test]
    fn hex_round_trip() {
        let b: Vec<u8> = (0..32).collect();
        assert_eq!(parse_hex32(&hex(&b)).unwrap().to_vec(), b);
        assert!(parse_hex32(&hex(&b).to_uppercase()).is_none());
        assert!(parse_hex32("abc").is_none());
    }

    #[test]
    fn view_serializes_like_the_owned_list() {
        let head = sample();
        let owned = sums_for(&head);
        let digests = vec![[0xab; 32]; owned.files.len()];
        let view = SumsView {
            entries: &head.entries,
            digests: &digests,
        };
        assert_eq!(serde_json::to_vec(&view).unwrap(), owned.to_json());
    }

    #[test]
    fn must_match_head() {
        let head = sample();
        let good = sums_for(&head);
        assert!(Sums::parse(&good.to_json(), &head).is_ok());

        let mut missing = good.clone();
        missing.files.pop();
        assert!(Sums::parse(&missing.to_json(), &head).is_err());

        let mut extra = good.clone();
        extra.files.push(good.files[0].clone());
        assert!(Sums::parse(&extra.to_json(), &head).is_err());

        let mut wrong_size = good.clone();
        wrong_size.files[0].size += 1;
        assert!(Sums::parse(&wrong_size.to_json(), &head).is_err());

        let mut bad_hex = good;
        bad_hex.files[0].sha256 = "zz".into();
        assert!(Sums::parse(&bad_hex.to_json(), &head).is_err());
    }
}
