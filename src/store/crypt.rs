//! Encrypted archives: the whole archive as one age stream (the format at
//! C2SP, the `age` crate), to recipients (X25519 `age1…` keys, SSH
//! `ssh-ed25519`/`ssh-rsa` keys) or to a passphrase (scrypt). age's
//! payload is 64 KiB chunks, each authenticated, at offsets computable
//! from the plaintext offset: an encrypted archive is still read at
//! offsets (its end, index and single frames), chunk by chunk.
//!
//! The identities that decrypt are the process's: set once by the caller
//! ([`set_identities`]) and used wherever an archive turns out to be
//! encrypted.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use age::secrecy::SecretString;

use crate::error::{Error, Result};

/// How every age file starts.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
/// The scrypt work factor (log2 N) a passphrase archive is written with:
/// chosen, not age's timing calibration (which picks whatever takes about
/// a second on the writing machine, so an archive made on a fast machine
/// could need more memory than the machine restoring it has). N = 2^18
/// with r = 8 needs 128 * r * N = 256 MiB and under a second of CPU, once
/// per archive.
pub const WORK_FACTOR: u8 = 18;
/// Highest scrypt work factor (log2 N) a passphrase archive may ask for:
/// 2^20 (1 GiB, a few seconds), so a hostile archive cannot ask for more,
/// and archives written before [`WORK_FACTOR`] was fixed (calibrated, up
/// to 20 with the same cap) still open.
pub const MAX_WORK_FACTOR: u8 = 20;
const _: () = assert!(MAX_WORK_FACTOR >= WORK_FACTOR);
/// Longest key file read.
const MAX_KEY_FILE: u64 = 1 << 20;

/// The tag of the chain record: a stanza of the age header that wraps no
/// key (every age identity passes over a stanza of a type it does not
/// know), whose body is a [`ChainRecord`] in JSON.
pub const CHAIN_TAG: &str = "sydra-chain";

/// What `ls` and `prune` must know of an encrypted archive without its
/// key: whether it is an incremental, and the base it was made on (the
/// base's SHA-256, size, TAIL digest, location and depth: no file name,
/// no data of the data dir). Written in the age header, whose MAC (keyed
/// by the file key) authenticates it for whoever decrypts: every reader
/// with the key checks it against HEAD's base.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainRecord {
    /// The base, for an incremental; `None` for a full archive.
    pub base: Option<crate::format::incremental::BaseRef>,
}

/// The stanza that carries a [`ChainRecord`].
struct ChainStanza(Vec<u8>);

impl age::Recipient for ChainStanza {
    fn wrap_file_key(
        &self,
        _: &age_core::format::FileKey,
    ) -> std::result::Result<
        (
            Vec<age_core::format::Stanza>,
            std::collections::HashSet<String>,
        ),
        age::EncryptError,
    > {
        Ok((
            vec![age_core::format::Stanza {
                tag: CHAIN_TAG.into(),
                args: vec!["v1".into()],
                body: self.0.clone(),
            }],
            std::collections::HashSet::new(),
        ))
    }
}

/// Longest age header read for a chain record.
pub const MAX_HEADER: usize = 64 * 1024;

/// The chain record in the age header that `start` (the first bytes of an
/// age file, up to [`MAX_HEADER`]) begins: `None` when the header has
/// none (a passphrase archive: age's scrypt stanza stands alone; or one
/// written before records). Not authenticated here: only for `ls` and
/// `prune`, which keep more archives, never fewer, on what it says.
pub fn chain_record(start: &[u8]) -> Result<Option<ChainRecord>> {
    use base64::Engine;
    let bad = |why: &str| Error::corrupt(format!("the age header's chain record: {why}"));
    let Some(rest) = start.strip_prefix(AGE_MAGIC) else {
        return Err(bad("not an age file"));
    };
    let mut lines = rest.split(|&b| b == b'\n');
    let mut found = None;
    let mut in_record: Option<Vec<u8>> = None;
    for line in lines.by_ref() {
        if let Some(body) = &mut in_record {
            if line.len() > 64 {
                return Err(bad("a body line longer than 64 columns"));
            }
            body.extend_from_slice(line);
            if line.len() < 64 {
                let raw = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(&body[..])
                    .map_err(|_| bad("its body is not base64"))?;
                let r: ChainRecord =
                    serde_json::from_slice(&raw).map_err(|e| bad(&e.to_string()))?;
                if let Some(b) = &r.base {
                    b.check()?;
                }
                if found.replace(r).is_some() {
                    return Err(bad("two records"));
                }
                in_record = None;
            }
            continue;
        }
        if line.starts_with(b"--- ") {
            return Ok(found);
        }
        if line == format!("-> {CHAIN_TAG} v1").as_bytes() {
            in_record = Some(Vec::new());
        }
    }
    if start.len() >= MAX_HEADER {
        return Err(bad("the header is longer than 64 KiB"));
    }
    Err(bad("the header ends early"))
}

/// Whether bytes (the start of an archive) begin an age file.
pub fn is_encrypted(start: &[u8]) -> bool {
    start.starts_with(AGE_MAGIC)
}

/// Reads a small file of keys or a passphrase, without following a FIFO
/// forever.
fn read_small(path: &Path, what: &str) -> Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt;
    // Never waits on a FIFO: opened non-blocking, refused unless a file.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io("open", path, e))?;
    let m = f.metadata().map_err(|e| Error::io("stat", path, e))?;
    if !m.is_file() {
        return Err(Error::Refused(format!(
            "{} is not a regular file; give the {what} in a file",
            path.display()
        )));
    }
    let mut v = Vec::new();
    f.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut v)
        .map_err(|e| Error::io("read", path, e))?;
    if v.len() as u64 > MAX_KEY_FILE {
        return Err(Error::Refused(format!(
            "{} is over 1 MiB: not a {what}",
            path.display()
        )));
    }
    Ok(v)
}

/// A passphrase from a file: its first line, without the newline.
fn passphrase(path: &Path) -> Result<SecretString> {
    let v = read_small(path, "passphrase")?;
    let text = String::from_utf8(v)
        .map_err(|_| Error::Refused(format!("{} is not UTF-8 text", path.display())))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        return Err(Error::Refused(format!(
            "{} holds no passphrase (its first line is empty)",
            path.display()
        )));
    }
    Ok(SecretString::from(line))
}

/// Who an archive is encrypted to.
pub struct Recipients {
    keys: Vec<Box<dyn age::Recipient + Send>>,
    passphrase: Option<SecretString>,
}

impl Recipients {
    /// From `age1…`/`ssh-…` recipients, recipients files (age's format:
    /// one per line, `#` comments) and a passphrase file; `None` when none
    /// is given. A passphrase cannot be mixed with recipients (age's rule).
    pub fn new(
        recipients: &[String],
        files: &[PathBuf],
        passphrase_file: Option<&Path>,
    ) -> Result<Option<Recipients>> {
        let mut keys: Vec<Box<dyn age::Recipient + Send>> = Vec::new();
        for r in recipients {
            keys.push(parse_recipient(r.trim(), "--recipient")?);
        }
        for f in files {
            let text = String::from_utf8(read_small(f, "recipients file")?)
                .map_err(|_| Error::Refused(format!("{} is not UTF-8 text", f.display())))?;
            let before = keys.len();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                keys.push(parse_recipient(
                    line,
                    &format!("line {} of {}", i + 1, f.display()),
                )?);
            }
            if keys.len() == before {
                return Err(Error::Refused(format!(
                    "{} lists no recipient",
                    f.display()
                )));
            }
        }
        let passphrase = passphrase_file.map(passphrase).transpose()?;
        if passphrase.is_some() && !keys.is_empty() {
            return Err(Error::Refused(
                "a passphrase cannot be combined with recipients (age encrypts to one or the other)"
                    .into(),
            ));
        }
        if keys.is_empty() && passphrase.is_none() {
            return Ok(None);
        }
        Ok(Some(Recipients { keys, passphrase }))
    }

    /// Wraps `out`: what is written to the result is encrypted to the
    /// recipients, with `record` in the header (but for a passphrase:
    /// age's scrypt stanza must stand alone). Its `finish` must be called.
    pub fn encrypt<W: io::Write>(
        &self,
        out: W,
        record: &ChainRecord,
    ) -> Result<age::stream::StreamWriter<W>> {
        let stanza = ChainStanza(serde_json::to_vec(record).expect("a record serializes"));
        let enc = match &self.passphrase {
            Some(p) => {
                let mut r = age::scrypt::Recipient::new(p.clone());
                r.set_work_factor(WORK_FACTOR);
                age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient))
                    .expect("a passphrase alone is a valid set of recipients")
            }
            None => age::Encryptor::with_recipients(
                self.keys
                    .iter()
                    .map(|k| k.as_ref() as &dyn age::Recipient)
                    .chain(std::iter::once(&stanza as &dyn age::Recipient)),
            )
            .map_err(|e| Error::Refused(format!("cannot encrypt to these recipients: {e}")))?,
        };
        enc.wrap_output(out).map_err(|e| {
            crate::error::Error::from_carrier(e)
                .unwrap_or_else(|e| Error::io("write", "the archive", e))
        })
    }
}

fn parse_recipient(s: &str, from: &str) -> Result<Box<dyn age::Recipient + Send>> {
    if s.starts_with("age1") {
        return s
            .parse::<age::x25519::Recipient>()
            .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
            .map_err(|e| Error::Refused(format!("{from}: not an age recipient: {e}")));
    }
    if s.starts_with("ssh-") {
        return s
            .parse::<age::ssh::Recipient>()
            .map(|r| Box::new(r) as Box<dyn age::Recipient + Send>)
            .map_err(|e| Error::Refused(format!("{from}: not a usable SSH public key: {e:?}")));
    }
    Err(Error::Refused(format!(
        "{from}: a recipient is an age1… key or an ssh-ed25519/ssh-rsa public key"
    )))
}

/// The passphrase identity, which runs scrypt once per archive: the file
/// key it unwraps is kept, by the scrypt stanza (salt, work factor and
/// wrapped key), so that reading the same archive again (its end, its
/// stream, ranged reads, each a decryptor of its own) reuses it. The
/// keys are kept as age's `FileKey` (zeroized when dropped). The lock is
/// held while scrypt runs: two threads opening the same archive run it
/// once, and no two runs hold their memory at the same time.
struct CachedScrypt {
    inner: age::scrypt::Identity,
    keys: std::sync::Mutex<Vec<(age_core::format::Stanza, age_core::format::FileKey)>>,
    /// How many times scrypt ran.
    #[cfg(test)]
    runs: std::sync::atomic::AtomicUsize,
}

impl CachedScrypt {
    fn new(passphrase: SecretString) -> CachedScrypt {
        let mut inner = age::scrypt::Identity::new(passphrase);
        inner.set_max_work_factor(MAX_WORK_FACTOR);
        CachedScrypt {
            inner,
            keys: std::sync::Mutex::new(Vec::new()),
            #[cfg(test)]
            runs: Default::default(),
        }
    }
}

fn same_stanza(a: &age_core::format::Stanza, b: &age_core::format::Stanza) -> bool {
    a.tag == b.tag && a.args == b.args && a.body == b.body
}

fn copy_key(k: &age_core::format::FileKey) -> age_core::format::FileKey {
    use age_core::secrecy::ExposeSecret;
    age_core::format::FileKey::init_with_mut(|out| out.copy_from_slice(k.expose_secret()))
}

impl age::Identity for CachedScrypt {
    fn unwrap_stanza(
        &self,
        stanza: &age_core::format::Stanza,
    ) -> Option<std::result::Result<age_core::format::FileKey, age::DecryptError>> {
        if stanza.tag != "scrypt" {
            return None;
        }
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, k)) = keys.iter().find(|(s, _)| same_stanza(s, stanza)) {
            return Some(Ok(copy_key(k)));
        }
        // Only a key that unwrapped is kept: a wrong passphrase fails
        // again (and the command ends at the first failure anyway).
        let got = self.inner.unwrap_stanza(stanza)?;
        #[cfg(test)]
        self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(k) = &got {
            keys.push((
                age_core::format::Stanza {
                    tag: stanza.tag.clone(),
                    args: stanza.args.clone(),
                    body: stanza.body.clone(),
                },
                copy_key(k),
            ));
        }
        Some(got)
    }
}

/// What decrypts archives: identities (age keys, SSH private keys) and a
/// passphrase.
#[derive(Default)]
pub struct Identities {
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
    passphrase: Option<CachedScrypt>,
    /// The files the keys came from, for messages.
    files: Vec<String>,
}

impl Identities {
    /// From identity files (age's format, or an unencrypted OpenSSH
    /// private key) and a passphrase file.
    pub fn new(files: &[PathBuf], passphrase_file: Option<&Path>) -> Result<Identities> {
        let mut keys: Vec<Box<dyn age::Identity + Send + Sync>> = Vec::new();
        for f in files {
            let bytes = read_small(f, "identity file")?;
            let text = String::from_utf8_lossy(&bytes);
            if text.contains("-----BEGIN") {
                let id = age::ssh::Identity::from_buffer(
                    io::BufReader::new(&bytes[..]),
                    Some(f.display().to_string()),
                )
                .map_err(|e| {
                    Error::Refused(format!(
                        "{}: not a usable SSH private key: {e}",
                        f.display()
                    ))
                })?;
                if !matches!(id, age::ssh::Identity::Unencrypted(_)) {
                    return Err(Error::Refused(format!(
                        "{}: an SSH key protected by a passphrase, or of a kind age does not use (give an unencrypted ssh-ed25519 or ssh-rsa key, or an age identity)",
                        f.display()
                    )));
                }
                keys.push(Box::new(id));
                continue;
            }
            let file =
                age::IdentityFile::from_buffer(io::BufReader::new(&bytes[..])).map_err(|e| {
                    Error::Refused(format!("{}: not an age identity file: {e}", f.display()))
                })?;
            let ids = file.into_identities().map_err(|e| {
                Error::Refused(format!("{}: not a usable identity: {e}", f.display()))
            })?;
            if ids.is_empty() {
                return Err(Error::Refused(format!("{} holds no identity", f.display())));
            }
            keys.extend(ids);
        }
        Ok(Identities {
            keys,
            passphrase: passphrase_file
                .map(passphrase)
                .transpose()?
                .map(CachedScrypt::new),
            files: files.iter().map(|f| f.display().to_string()).collect(),
        })
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.passphrase.is_none()
    }
}

static IDENTITIES: RwLock<Option<Identities>> = RwLock::new(None);

/// Sets the identities this process decrypts archives with.
pub fn set_identities(ids: Identities) {
    *IDENTITIES.write().unwrap_or_else(|e| e.into_inner()) = Some(ids);
}

/// The kinds of recipients an age header names (`X25519`, `ssh-ed25519`,
/// `ssh-rsa`, `scrypt`…), from the start of the file, for messages.
pub fn recipient_kinds(start: &[u8]) -> Vec<String> {
    let mut kinds: Vec<String> = Vec::new();
    for line in start.split(|&b| b == b'\n') {
        if line.starts_with(b"---") {
            break;
        }
        if let Some(rest) = line.strip_prefix(b"-> ") {
            let kind = String::from_utf8_lossy(rest.split(|&b| b == b' ').next().unwrap_or(b""))
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(32)
                .collect::<String>();
            // age adds random "grease" stanzas that name no recipient.
            // Nor does the chain record.
            if !kind.is_empty()
                && !kind.ends_with("-grease")
                && kind != CHAIN_TAG
                && !kinds.contains(&kind)
            {
                kinds.push(kind);
            }
        }
    }
    kinds
}

/// The error for an archive that needs a key this run does not have.
fn key_error(name: &str, start: &[u8], reason: &str) -> Error {
    let kinds = recipient_kinds(start);
    let to = if kinds.is_empty() {
        String::from("unknown recipients")
    } else if kinds.iter().any(|k| k == "scrypt") {
        String::from("a passphrase")
    } else {
        format!("{} recipients", kinds.join(", "))
    };
    Error::Key {
        archive: name.to_string(),
        reason: format!("it is encrypted (age, to {to}); {reason}"),
    }
}

/// Decrypts the age file `r` (whose first bytes `start` were peeked, for
/// messages) with the process's identities; `name` names it in errors.
/// The reader's errors in the payload (a chunk that does not
/// authenticate, a truncated stream) are archive faults.
pub fn decrypt<R: Read>(
    r: R,
    start: &[u8],
    name: &str,
) -> Result<Plain<age::stream::StreamReader<R>>> {
    let guard = IDENTITIES.read().unwrap_or_else(|e| e.into_inner());
    let ids = match guard.as_ref() {
        Some(ids) if !ids.is_empty() => ids,
        _ => {
            return Err(key_error(
                name,
                start,
                "give --identity FILE (or SYDRA_ARCHIVE_IDENTITY_FILE), or --passphrase-file FILE",
            ));
        }
    };
    let d = age::Decryptor::new(r).map_err(|e| header_error(e, name, start, ids))?;
    let mut all: Vec<&dyn age::Identity> = ids.keys.iter().map(|k| k.as_ref() as _).collect();
    if d.is_scrypt() {
        let Some(p) = &ids.passphrase else {
            return Err(key_error(name, start, "give --passphrase-file FILE"));
        };
        all = vec![p];
    }
    let plain = d
        .decrypt(all.into_iter())
        .map_err(|e| header_error(e, name, start, ids))?;
    Ok(Plain {
        inner: plain,
        name: name.to_string(),
    })
}

fn header_error(e: age::DecryptError, name: &str, start: &[u8], ids: &Identities) -> Error {
    use age::DecryptError as D;
    match e {
        D::NoMatchingKeys => {
            let given = if ids.files.is_empty() {
                "the passphrase given".to_string()
            } else {
                ids.files.join(", ")
            };
            key_error(
                name,
                start,
                &format!("no identity given ({given}) decrypts it"),
            )
        }
        D::DecryptionFailed if start.windows(9).any(|w| w == b"-> scrypt") => {
            key_error(name, start, "the passphrase given does not decrypt it")
        }
        D::KeyDecryptionFailed => key_error(name, start, "an identity could not be unlocked"),
        D::ExcessiveWork { required, .. } => Error::Refused(format!(
            "{name}: its passphrase needs scrypt work factor {required}, over the most this tool accepts ({MAX_WORK_FACTOR})"
        )),
        D::Io(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
            Error::corrupt(format!("{name}: its age header is truncated"))
        }
        D::Io(err) => Error::from_carrier(err).unwrap_or_else(|err| Error::io("read", name, err)),
        other => Error::corrupt(format!(
            "{name}: its age header is not valid (corrupted or tampered): {other}"
        )),
    }
}

/// A decrypted stream whose payload errors are archive faults (carried in
/// `io::Error`, see [`Error::from_carrier`]).
pub struct Plain<R> {
    inner: R,
    name: String,
}

fn payload_error(e: io::Error, name: &str) -> io::Error {
    match e.kind() {
        io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
            io::Error::other(Error::corrupt(format!(
                "{name}: its encrypted payload is corrupted, tampered or truncated ({e})"
            )))
        }
        _ => e,
    }
}

impl<R: Read> Read for Plain<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .map_err(|e| payload_error(e, &self.name))
    }
}

impl<R: Read + io::Seek> io::Seek for Plain<R> {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.inner
            .seek(pos)
            .map_err(|e| payload_error(e, &self.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;
    use std::io::Write;

    #[test]
    fn round_trips_and_says_what_is_missing() {
        let id = age::x25519::Identity::generate();
        let key = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(key.path(), format!("{}\n", id.to_string().expose_secret())).unwrap();
        let r = Recipients::new(&[id.to_public().to_string()], &[], None)
            .unwrap()
            .unwrap();
        let record = ChainRecord {
            base: Some(crate::format::incremental::BaseRef {
                sha256: "a".repeat(64),
                size: 7,
                body_sha256: "b".repeat(64),
                location: "x".repeat(300),
                depth: 3,
            }),
        };
        let mut w = r.encrypt(Vec::new(), &record).unwrap();
        w.write_all(b"hello").unwrap();
        let ct = w.finish().unwrap();
        assert!(is_encrypted(&ct));
        // The record is read back without the key, and only once.
        assert_eq!(chain_record(&ct).unwrap(), Some(record));
        let cut = ct.iter().position(|&b| b == b'-').unwrap() + 40;
        assert!(chain_record(&ct[..cut]).is_err());
        assert_eq!(recipient_kinds(&ct), ["X25519"]);
        set_identities(Identities::default());
        let e = decrypt(&ct[..], &ct, "a").err().unwrap();
        assert!(
            e.to_string()
                .contains("encrypted (age, to X25519 recipients); give --identity"),
            "{e}"
        );
        set_identities(Identities::new(&[key.path().to_path_buf()], None).unwrap());
        let mut out = Vec::new();
        decrypt(&ct[..], &ct, "a")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"hello");
        let mut bad = ct.clone();
        let n = bad.len();
        bad[n - 3] ^= 1;
        let err = decrypt(&bad[..], &bad, "a")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap_err();
        assert!(Error::from_carrier(err).unwrap().is_archive_fault());
        assert!(Recipients::new(&["nope".into()], &[], None).is_err());
    }

    #[test]
    fn scrypt_runs_once_per_archive() {
        let pass = || SecretString::from("correct horse".to_string());
        let seal = |text: &[u8]| {
            let mut r = age::scrypt::Recipient::new(pass());
            r.set_work_factor(10);
            let mut w = age::Encryptor::with_recipients(std::iter::once(&r as _))
                .unwrap()
                .wrap_output(Vec::new())
                .unwrap();
            w.write_all(text).unwrap();
            w.finish().unwrap()
        };
        let (a, b) = (seal(b"one"), seal(b"two"));
        let id = CachedScrypt::new(pass());
        let open = |ct: &[u8]| {
            let mut out = Vec::new();
            age::Decryptor::new(ct)
                .unwrap()
                .decrypt(std::iter::once(&id as &dyn age::Identity))
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        for _ in 0..3 {
            assert_eq!(open(&a), b"one");
            assert_eq!(open(&b), b"two");
        }
        assert_eq!(id.runs.load(std::sync::atomic::Ordering::Relaxed), 2);
        // A wrong passphrase is not helped by what was kept.
        let wrong = CachedScrypt::new(SecretString::from("nope".to_string()));
        assert!(
            age::Decryptor::new(&a[..])
                .unwrap()
                .decrypt(std::iter::once(&wrong as &dyn age::Identity))
                .is_err()
        );
    }
}
