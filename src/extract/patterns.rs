//! Which archive paths a command wants: globs (`*` and `?` within a path
//! component), a directory's pattern taking everything below it, the
//! literal prefixes that let a reader skip INDEX blocks, and which
//! patterns matched nothing.

use crate::error::{Error, Result};

/// Whether glob `pat` matches `name` (`*` and `?` never match `/`).
fn glob(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() && (pat[p] == name[n] || (pat[p] == b'?' && name[n] != b'/')) {
            p += 1;
            n += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star
            && name[sn] != b'/'
        {
            star = Some((sp, sn + 1));
            p = sp + 1;
            n = sn + 1;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// The patterns, and which of them matched something.
pub struct Patterns {
    pats: Vec<(String, bool)>,
}

impl Patterns {
    pub(crate) fn new(pats: &[String]) -> Self {
        Patterns {
            pats: pats
                .iter()
                .map(|p| (p.trim_end_matches('/').to_string(), false))
                .collect(),
        }
    }

    /// Whether `path` (or a directory above it) matches a pattern.
    pub(crate) fn wants(&mut self, path: &str) -> bool {
        if self.pats.is_empty() {
            return true;
        }
        let b = path.as_bytes();
        let mut hit = false;
        for (pat, used) in &mut self.pats {
            let ends = b
                .iter()
                .enumerate()
                .filter(|&(_, &c)| c == b'/')
                .map(|(i, _)| i)
                .chain(std::iter::once(b.len()));
            if ends.into_iter().any(|i| glob(pat.as_bytes(), &b[..i])) {
                *used = true;
                hit = true;
            }
        }
        hit
    }

    /// The directories (or files) every match lies in or under: for each
    /// pattern, its components before the first one with `*` or `?`.
    /// `None` when a pattern can match anywhere (or there is none).
    pub(crate) fn prefixes(&self) -> Option<Vec<String>> {
        if self.pats.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for (p, _) in &self.pats {
            let lit: Vec<&str> = p
                .split('/')
                .take_while(|c| !c.contains(['*', '?']))
                .collect();
            if lit.is_empty() || lit.iter().any(|c| c.is_empty()) {
                return None;
            }
            out.push(lit.join("/"));
        }
        Some(out)
    }

    pub(crate) fn check_all_used(&self) -> Result<()> {
        match self.pats.iter().find(|(_, used)| !used) {
            Some((p, _)) => Err(Error::Refused(format!(
                "{p:?} matches nothing in the archive"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_stay_within_a_component() {
        assert!(glob(b"segments/*/a.seg", b"segments/3600/a.seg"));
        assert!(glob(b"wal/*.wal", b"wal/current.wal"));
        assert!(!glob(b"wal/*.wal", b"wal/x/current.wal"));
        assert!(glob(b"seg*", b"segments"));
        assert!(!glob(b"seg*", b"segments/3600"));
        assert!(glob(b"?AL", b"WAL"));
        assert!(!glob(b"?", b"/"));
        assert!(glob(b"*", b""));
        assert!(!glob(b"a", b"ab"));
    }

    #[test]
    fn a_directory_pattern_takes_what_is_below_it_and_unused_ones_are_named() {
        let mut p = Patterns::new(&["segments/3600/".into(), "tags.json".into(), "x*".into()]);
        assert!(p.wants("segments/3600"));
        assert!(p.wants("segments/3600/a.seg"));
        assert!(!p.wants("segments/36000/a.seg"));
        assert!(!p.wants("segments"));
        assert!(p.wants("tags.json"));
        let e = p.check_all_used().unwrap_err();
        assert!(e.to_string().contains("\"x*\" matches nothing"), "{e}");
        assert!(Patterns::new(&[]).wants("anything"));
    }
}
