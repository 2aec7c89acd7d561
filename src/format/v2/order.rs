//! The writers' tree order (depth first, names by bytes within a
//! directory, each directory before its contents), checked as paths come.

use crate::format::head::EntryKind;

/// Checks that paths come in the writers' order (depth first, names by
/// bytes within a directory, each directory before its contents) with
/// every parent declared, in memory bounded by the tree's depth.
#[derive(Debug, Default)]
pub struct TreeOrder {
    /// The last path seen.
    last: String,
    /// The directories that enclose the last path (prefixes of it).
    open: Vec<usize>,
}

impl TreeOrder {
    /// Accepts the next path (already checked by [`crate::format::path::check_path`])
    /// or says why it is out of place.
    pub fn next(&mut self, path: &str, kind: EntryKind) -> std::result::Result<(), String> {
        if !self.last.is_empty()
            && self.last.split('/').cmp(path.split('/')) != std::cmp::Ordering::Less
        {
            return Err(if self.last == path {
                "duplicate path".into()
            } else {
                format!("out of order after {:?}", self.last)
            });
        }
        let parent = crate::format::path::parent(path);
        // Close the directories that do not enclose this path.
        while let Some(&end) = self.open.last() {
            let dir = &self.last[..end];
            if path.len() > end && path.starts_with(dir) && path.as_bytes()[end] == b'/' {
                break;
            }
            self.open.pop();
        }
        let enclosing = self.open.last().map(|&end| &self.last[..end]);
        if parent != enclosing {
            return Err(match parent {
                Some(p) => format!("parent directory {p:?} is not declared before it"),
                None => "out of order".into(),
            });
        }
        // The directories still open enclose `path`: prefixes of it too.
        self.last.clear();
        self.last.push_str(path);
        if kind == EntryKind::Dir {
            self.open.push(path.len());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_order_accepts_a_walk_and_refuses_the_rest() {
        let walk = [
            ("MANIFEST", EntryKind::File),
            ("segments", EntryKind::Dir),
            ("segments/1", EntryKind::Dir),
            ("segments/1/a", EntryKind::File),
            ("segments/1-2", EntryKind::Dir),
            ("segments/1-2/b", EntryKind::File),
            ("segments/10", EntryKind::Dir),
            ("tags.json", EntryKind::File),
            ("wal", EntryKind::Dir),
            ("wal/current.wal", EntryKind::File),
        ];
        let mut o = TreeOrder::default();
        for (p, k) in walk {
            o.next(p, k).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
        let refuse = |seq: &[(&str, EntryKind)]| {
            let mut o = TreeOrder::default();
            let mut last = Ok(());
            for (p, k) in seq {
                last = o.next(p, *k);
                if last.is_err() {
                    break;
                }
            }
            last.unwrap_err()
        };
        assert!(refuse(&[("wal", EntryKind::Dir), ("wal", EntryKind::Dir)]).contains("duplicate"));
        assert!(refuse(&[("wal/x", EntryKind::File)]).contains("not declared"));
        assert!(
            refuse(&[
                ("segments", EntryKind::Dir),
                ("segments/1/a", EntryKind::File)
            ])
            .contains("not declared")
        );
        assert!(refuse(&[("wal", EntryKind::Dir), ("segments", EntryKind::Dir)]).contains("order"));
        // A file is not a directory to put things in.
        assert!(
            refuse(&[
                ("segments", EntryKind::File),
                ("segments/x", EntryKind::File)
            ])
            .contains("not declared")
        );
        // A path that only shares a prefix is not inside.
        assert!(
            refuse(&[
                ("segments", EntryKind::Dir),
                ("segments/1", EntryKind::Dir),
                ("segments/1-2/x", EntryKind::File)
            ])
            .contains("not declared")
        );
    }
}
