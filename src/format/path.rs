//! What belongs to a SydraDB data directory, and which archive paths are legal.

/// Top-level files of the layout.
pub const TOP_FILES: [&str; 2] = ["MANIFEST", "tags.json"];
/// Top-level directories of the layout (archived with everything below them).
pub const TOP_DIRS: [&str; 2] = ["segments", "wal"];
/// Longest path an archive may hold, in bytes: it fits `PATH_MAX` (4096)
/// with its terminating NUL, so a restore can hand it to one system call
/// relative to the staging directory, wherever that directory is.
pub const MAX_PATH_LEN: usize = 4095;
/// Longest path component, in bytes (`NAME_MAX`).
pub const MAX_NAME_LEN: usize = 255;

/// What a top-level name is in the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopLevel {
    /// `MANIFEST` or `tags.json`.
    File,
    /// `wal` or `segments`.
    Dir,
    /// Not part of the layout.
    Other,
}

/// Classifies a name found at the top of a data directory.
pub fn classify_top(name: &[u8]) -> TopLevel {
    if TOP_FILES.iter().any(|f| f.as_bytes() == name) {
        TopLevel::File
    } else if TOP_DIRS.iter().any(|d| d.as_bytes() == name) {
        TopLevel::Dir
    } else {
        TopLevel::Other
    }
}

/// Checks that `path` is a canonical relative archive path inside the layout.
/// `is_dir` says what the entry claims to be. Returns why it is not, if not.
pub fn check_path(path: &str, is_dir: bool) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!("path longer than {MAX_PATH_LEN} bytes"));
    }
    if path.starts_with('/') {
        return Err("absolute path".into());
    }
    if path.bytes().any(|b| b == 0) {
        return Err("NUL byte in path".into());
    }
    let mut parts = path.split('/');
    let top = parts.next().unwrap_or_default();
    for part in path.split('/') {
        match part {
            "" => return Err("empty path component (non-canonical path)".into()),
            "." | ".." => return Err(format!("{part:?} path component")),
            _ if part.len() > MAX_NAME_LEN => {
                return Err(format!(
                    "path component of {} bytes (at most {MAX_NAME_LEN})",
                    part.len()
                ));
            }
            _ => {}
        }
    }
    let deeper = parts.next().is_some();
    match classify_top(top.as_bytes()) {
        TopLevel::File if deeper => Err(format!("{top} is a file in the layout, not a directory")),
        TopLevel::File if is_dir => Err(format!("{top} must be a file")),
        TopLevel::Dir if !deeper && !is_dir => Err(format!("{top} must be a directory")),
        TopLevel::Other => {
            Err("outside the SydraDB layout (MANIFEST, tags.json, wal/, segments/)".into())
        }
        _ => Ok(()),
    }
}

/// The parent directory of an archive path, if it has one.
pub fn parent(path: &str) -> Option<&str> {
    path.rfind('/').map(|i| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_paths() {
        for (p, d) in [
            ("MANIFEST", false),
            ("tags.json", false),
            ("wal", true),
            ("wal/current.wal", false),
            ("segments/-3600/a-1-2-3.seg", false),
            ("segments/x/y", true),
        ] {
            assert_eq!(check_path(p, d), Ok(()), "{p}");
        }
    }

    #[test]
    fn length_limits() {
        // Components of up to NAME_MAX bytes, paths of up to PATH_MAX - 1.
        let name = "n".repeat(MAX_NAME_LEN);
        assert_eq!(check_path(&format!("segments/{name}"), false), Ok(()));
        let long = format!("segments/{name}n");
        assert_eq!(
            check_path(&long, false),
            Err("path component of 256 bytes (at most 255)".into())
        );
        let mut deep = String::from("segments");
        while deep.len() + 201 <= MAX_PATH_LEN {
            deep.push('/');
            deep.push_str(&"d".repeat(200));
        }
        let fill = MAX_PATH_LEN - deep.len() - 1;
        let exact = format!("{deep}/{}", "f".repeat(fill));
        assert_eq!(exact.len(), 4095);
        assert_eq!(check_path(&exact, false), Ok(()));
        let over = format!("{exact}f");
        assert_eq!(
            check_path(&over, false),
            Err("path longer than 4095 bytes".into())
        );
    }

    #[test]
    fn illegal_paths() {
        for (p, d) in [
            ("", false),
            ("/etc/passwd", false),
            ("wal/../../x", false),
            ("wal/./x", false),
            ("wal//x", false),
            ("wal/", true),
            ("other", false),
            ("MANIFEST/x", false),
            ("MANIFEST", true),
            ("wal", false),
            ("..", true),
            ("segments/a\0b", false),
        ] {
            assert!(check_path(p, d).is_err(), "{p:?} accepted");
        }
    }

    #[test]
    fn parents() {
        assert_eq!(parent("wal/x"), Some("wal"));
        assert_eq!(parent("segments/1/x"), Some("segments/1"));
        assert_eq!(parent("MANIFEST"), None);
    }
}
