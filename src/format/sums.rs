//! SUMS: the per-file SHA-256 list written after the data.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::head::{EntryKind, Head};

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

/// The decoded SUMS frame (the reader checks SUMS as a stream; tests
/// build whole ones).
#[cfg(test)]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sums {
    /// One object per file entry, in archive order.
    pub files: Vec<FileSum>,
}

#[cfg(test)]
impl Sums {
    /// Encodes SUMS as compact JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("SUMS serializes")
    }
}

/// Checks a SUMS body as it streams, without keeping it: it must list
/// exactly HEAD's files, in order, with the same sizes and well-formed
/// digests, and (when `digests` is given, one per file) those digests.
///
/// `each` sees every file's index (among files) and listed digest, in order.
pub fn check_stream<R: std::io::Read>(
    body: R,
    head: &Head,
    digests: Option<&[[u8; 32]]>,
    each: &mut dyn FnMut(usize, &[u8; 32]),
) -> Result<()> {
    use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    struct Files<'a, 'f> {
        head: &'a Head,
        digests: Option<&'a [[u8; 32]]>,
        each: &'f mut dyn FnMut(usize, &[u8; 32]),
    }
    impl<'de> DeserializeSeed<'de> for Files<'_, '_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Files<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of file checksums")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
            let files = self
                .head
                .entries
                .iter()
                .filter(|e| e.kind == EntryKind::File);
            for (i, e) in files.enumerate() {
                let Some(s) = seq.next_element::<FileSum>()? else {
                    return Err(A::Error::custom(format!(
                        "SUMS has no checksum for {:?}",
                        e.path
                    )));
                };
                if s.path != e.path || s.size != e.size {
                    return Err(A::Error::custom(format!(
                        "SUMS entry {:?} ({} bytes) does not match HEAD entry {:?} ({} bytes)",
                        s.path, s.size, e.path, e.size
                    )));
                }
                let Some(d) = parse_hex32(&s.sha256) else {
                    return Err(A::Error::custom(format!(
                        "SUMS digest of {:?} is not 64 lowercase hex digits",
                        s.path
                    )));
                };
                if let Some(digests) = self.digests
                    && digests.get(i) != Some(&d)
                {
                    return Err(A::Error::custom(format!(
                        "content of {:?} does not match its SHA-256 in SUMS",
                        s.path
                    )));
                }
                (self.each)(i, &d);
            }
            if seq.next_element::<IgnoredAny>()?.is_some() {
                return Err(A::Error::custom("SUMS lists files that HEAD does not"));
            }
            Ok(())
        }
    }
    struct Top<'a, 'f>(Files<'a, 'f>);
    impl<'de> Visitor<'de> for Top<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a SUMS object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
            let mut files = Some(self.0);
            while let Some(key) = map.next_key::<String>()? {
                match (key.as_str(), files.take()) {
                    ("files", Some(f)) => map.next_value_seed(f)?,
                    ("files", None) => return Err(A::Error::custom("SUMS lists \"files\" twice")),
                    (_, f) => {
                        files = f;
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            if files.is_some() {
                return Err(A::Error::custom("SUMS has no \"files\" list"));
            }
            Ok(())
        }
    }
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(64 * 1024, body));
    let top = Top(Files {
        head,
        digests,
        each,
    });
    serde::Deserializer::deserialize_map(&mut de, top)
        .and_then(|()| de.end())
        .map_err(|e| {
            if e.is_io() {
                // The source failed (our error inside), or the frame ended
                // early (a truncated archive).
                Error::from_carrier(std::io::Error::from(e))
                    .unwrap_or_else(|_| Error::truncated("the SUMS frame"))
            } else {
                Error::corrupt(format!("SUMS is not valid: {e}"))
            }
        })
}

/// SUMS as a view over the entry list and one digest per file entry, so a
/// (test) writer of version-1 archives can serialize it without building
/// a second list.
#[cfg(test)]
pub struct SumsView<'a> {
    /// Every entry, in archive order (directories are skipped).
    pub entries: &'a [crate::format::head::Entry],
    /// One SHA-256 per file entry, in order.
    pub digests: &'a [[u8; 32]],
}

#[cfg(test)]
impl Serialize for SumsView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct Files<'b>(&'b SumsView<'b>);
        #[derive(Serialize)]
        struct One<'c> {
            path: &'c str,
            size: u64,
            sha256: String,
        }
        impl Serialize for Files<'_> {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
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
    use crate::format::head::tests::sample;

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
    fn streamed_check_agrees_with_parse() {
        let head = sample();
        let good = sums_for(&head);
        let json = good.to_json();
        let digests = vec![[0xab; 32]; good.files.len()];
        check_stream(&json[..], &head, Some(&digests), &mut |_, _| {}).unwrap();
        let mut seen = 0;
        check_stream(&json[..], &head, None, &mut |i, d| {
            assert_eq!((i, d), (seen, &[0xab; 32]));
            seen += 1;
        })
        .unwrap();
        assert_eq!(seen, 2);
        let mut other = digests.clone();
        other[1][0] ^= 1;
        let e = check_stream(&json[..], &head, Some(&other), &mut |_, _| {}).unwrap_err();
        assert!(
            e.to_string().contains("does not match its SHA-256 in SUMS"),
            "{e}"
        );
        for bad in [
            {
                let mut s = good.clone();
                s.files.pop();
                s.to_json()
            },
            {
                let mut s = good.clone();
                s.files.push(good.files[0].clone());
                s.to_json()
            },
            {
                let mut s = good.clone();
                s.files[0].size += 1;
                s.to_json()
            },
            b"{}".to_vec(),
            b"{\"files\": []} x".to_vec(),
            b"[[[[".to_vec(),
        ] {
            let e = check_stream(&bad[..], &head, None, &mut |_, _| {}).unwrap_err();
            assert!(e.is_archive_fault(), "{e}");
        }
    }
}
