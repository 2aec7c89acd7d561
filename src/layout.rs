//! What belongs to a SydraDB data directory, and which archive paths are legal.

/// Top-level files of the layout.
pub const TOP_FILES: [&str; 2] = ["MANIFEST", "tags.json"];
/// Top-level directories of the layout (archived with everything below them).
pub const TOP_DIRS: [&str; 2] = ["segments", "wal"];
/// Longest path an archive may hold, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

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
