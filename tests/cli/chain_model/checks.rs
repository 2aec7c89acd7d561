//! Every reader of one archive checked against its model: `verify
//! --chain`, `restore` (the whole tree), `list --json` (every entry) and
//! `extract` of a few files and of a directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use crate::support::*;

use super::generator::Rng;
use super::model::*;
use super::world::{World, cmdline, output_text};

impl World {
    /// verify --chain, restore, list and extract of archive `i` against
    /// its model.
    pub(super) fn check(&mut self, i: usize, why: &str) -> Result<(), String> {
        let (path, enc, snap, label) = {
            let a = &self.archives[i];
            (a.path.clone(), a.enc, a.snap, a.label.clone())
        };
        let keys = self.key_args(enc);
        let mut args = vec!["verify".into(), "--chain".into(), p(&path).into()];
        args.extend(keys.clone());
        let v = self.run(&args, None);
        let target = self.t.join(format!("restored{}", self.runs));
        let mut rargs = vec![
            "restore".into(),
            p(&path).into(),
            p(&target).into(),
            "-q".into(),
        ];
        rargs.extend(keys.clone());
        let r = self.run(&rargs, None);
        if code(&v) != 0 {
            return Err(self.fail(
                &format!("verify --chain refused {label} ({why})"),
                format!(
                    "$ {}\n{}\n(restore: {})\n$ {}\n",
                    cmdline(&args),
                    output_text(&v),
                    output_text(&r),
                    cmdline(&rargs)
                ),
            ));
        }
        if code(&r) != 0 {
            return Err(self.fail(
                &format!("verify --chain accepted {label} but restore refused it ({why})"),
                format!("$ {}\n{}\n", cmdline(&rargs), output_text(&r)),
            ));
        }
        let got = snapshot(&target, false);
        let (d, subsec) = diff(&self.snaps[snap], &got);
        self.subsec_lost += subsec;
        fs::remove_dir_all(&target).unwrap();
        if !d.is_empty() {
            return Err(self.fail(
                &format!("restore of {label} differs from the data dir ({why})"),
                format!("$ {}\n{}\n", cmdline(&rargs), d.join("\n")),
            ));
        }
        self.check_merge(i, why)?;
        // list --json: exactly the model's entries.
        let mut largs = vec!["list".into(), p(&path).into(), "--json".into()];
        largs.extend(keys.clone());
        let l = self.run(&largs, None);
        if code(&l) != 0 {
            return Err(self.fail(
                &format!("list refused {label} ({why})"),
                format!("$ {}\n{}\n", cmdline(&largs), output_text(&l)),
            ));
        }
        let j: serde_json::Value = serde_json::from_slice(&l.stdout).map_err(|e| {
            self.fail(
                "list --json is not JSON",
                format!("{e}: {}", output_text(&l)),
            )
        })?;
        // Each entry: path, type, size, and the rest (mode, whole-second
        // mtime, a file's SHA-256).
        type Listed = (Vec<u8>, String, u64, String);
        let listed: BTreeSet<Listed> = j["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["path"].as_str().unwrap().as_bytes().to_vec(),
                    e["type"].as_str().unwrap().to_string(),
                    e["size"].as_u64().unwrap(),
                    format!(
                        "mode {:o} mtime {} sha256 {}",
                        e["mode"].as_u64().unwrap_or(u64::MAX),
                        e["mtime"].as_i64().unwrap_or(i64::MIN),
                        e["sha256"].as_str().unwrap_or("-")
                    ),
                )
            })
            .collect();
        let want: BTreeSet<Listed> = self.snaps[snap]
            .iter()
            .map(|(k, e)| {
                let (t, size, sha) = match &e.kind {
                    Kind::Dir => ("dir", 0, "-".to_string()),
                    Kind::File(c) => ("file", c.len() as u64, hex(&sha256(c))),
                };
                (
                    k.clone(),
                    t.to_string(),
                    size,
                    format!("mode {:o} mtime {} sha256 {sha}", e.mode, e.mtime),
                )
            })
            .collect();
        if listed != want {
            let mut d: Vec<String> = want
                .difference(&listed)
                .map(|(k, t, s, x)| format!("in the data dir, not listed: {} {t} {s} {x}", show(k)))
                .chain(listed.difference(&want).map(|(k, t, s, x)| {
                    format!("listed, not in the data dir: {} {t} {s} {x}", show(k))
                }))
                .collect();
            d.truncate(20);
            return Err(self.fail(
                &format!("list of {label} differs from the data dir ({why})"),
                format!("$ {}\n{}\n", cmdline(&largs), d.join("\n")),
            ));
        }
        // extract of a few files.
        let files: Vec<Vec<u8>> = self.snaps[snap]
            .iter()
            .filter(|(k, e)| {
                matches!(e.kind, Kind::File(_)) && !k.iter().any(|b| b"*?[\\".contains(b))
            })
            .map(|(k, _)| k.clone())
            .collect();
        // The picks come from their own stream, so that checks never
        // change the history a seed generates.
        let mut pick = Rng(self.seed.wrapping_mul(0x9E37_79B9) ^ (self.runs as u64) << 32);
        for _ in 0..2 {
            let Some(f) = pick.pick(&files) else {
                break;
            };
            let dir = self.t.join(format!("extracted{}", self.runs));
            let mut eargs = vec![
                "extract".into(),
                p(&path).into(),
                String::from_utf8(f.clone()).unwrap(),
                "-C".into(),
                p(&dir).into(),
                "-q".into(),
            ];
            eargs.extend(keys.clone());
            let e = self.run(&eargs, None);
            let got = fs::read(join(&dir, &f)).ok();
            let _ = fs::remove_dir_all(&dir);
            let Kind::File(want) = &self.snaps[snap][&f].kind else {
                unreachable!()
            };
            if code(&e) != 0 || got.as_ref() != Some(want) {
                return Err(self.fail(
                    &format!("extract of {} from {label} ({why})", show(&f)),
                    format!(
                        "$ {}\n{}\nextracted: {:?} bytes, want {} bytes",
                        cmdline(&eargs),
                        output_text(&e),
                        got.map(|g| g.len()),
                        want.len()
                    ),
                ));
            }
        }
        // extract of a directory: the files below it.
        let dirs: Vec<Vec<u8>> = self.snaps[snap]
            .iter()
            .filter(|(k, e)| e.kind == Kind::Dir && !k.iter().any(|b| b"*?[\\".contains(b)))
            .map(|(k, _)| k.clone())
            .collect();
        if let Some(d) = pick.pick(&dirs).filter(|_| pick.chance(50)) {
            let dir = self.t.join(format!("extracted{}", self.runs));
            let mut eargs = vec![
                "extract".into(),
                p(&path).into(),
                String::from_utf8(d.clone()).unwrap(),
                "-C".into(),
                p(&dir).into(),
                "-q".into(),
            ];
            eargs.extend(keys.clone());
            let e = self.run(&eargs, None);
            let files_of = |s: &Snap| -> BTreeMap<Vec<u8>, Vec<u8>> {
                s.iter()
                    .filter_map(|(k, e)| match &e.kind {
                        Kind::File(c) if k.starts_with(&d) && k.get(d.len()) == Some(&b'/') => {
                            Some((k.clone(), c.clone()))
                        }
                        _ => None,
                    })
                    .collect()
            };
            let want = files_of(&self.snaps[snap]);
            let got = if dir.exists() {
                files_of(&snapshot(&dir, false))
            } else {
                BTreeMap::new()
            };
            let _ = fs::remove_dir_all(&dir);
            if code(&e) != 0 || got != want {
                let missing: Vec<String> = want
                    .keys()
                    .filter(|k| got.get(*k) != want.get(*k))
                    .take(10)
                    .map(|k| show(k))
                    .collect();
                return Err(self.fail(
                    &format!("extract of directory {} from {label} ({why})", show(&d)),
                    format!(
                        "$ {}\n{}\nmissing or different: {}; {} extracted, {} wanted",
                        cmdline(&eargs),
                        output_text(&e),
                        missing.join(", "),
                        got.len(),
                        want.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// merge of an incremental: a full archive that restores to the same
    /// tree (its own model: the data dir at that moment).
    fn check_merge(&mut self, i: usize, why: &str) -> Result<(), String> {
        if self.archives[i].base.is_none() {
            return Ok(());
        }
        self.merge_restores(i, None, why)?;
        // merge --onto an archive below it (not the full one only): one
        // incremental on it that restores to the same tree.
        let mut ancestors = Vec::new();
        let mut at = self.archives[i].base;
        while let Some(b) = at {
            ancestors.push(b);
            at = self.archives[b].base;
        }
        let mut pick = Rng(self.seed.wrapping_mul(0x51_7CC1_B727) ^ (self.runs as u64) << 20);
        match pick.pick(&ancestors) {
            Some(onto) => self.merge_restores(i, Some(onto), why),
            None => Ok(()),
        }
    }

    /// `merge` of archive `i` (with `onto`, `merge --onto` that archive),
    /// then `restore` of what it wrote: the data dir at `i`'s moment.
    fn merge_restores(&mut self, i: usize, onto: Option<usize>, why: &str) -> Result<(), String> {
        let (path, enc, snap, label) = {
            let a = &self.archives[i];
            (a.path.clone(), a.enc, a.snap, a.label.clone())
        };
        let what = match onto {
            Some(o) => format!("{label} onto #{o}"),
            None => label.clone(),
        };
        let merged = self.t.join(format!("merged{}.tar.zst", self.runs));
        let mut margs: Vec<String> = vec!["merge".into(), p(&path).into()];
        if let Some(o) = onto {
            margs.extend(["--onto".into(), p(&self.archives[o].path).into()]);
        }
        margs.extend(["-o".into(), p(&merged).into(), "-q".into()]);
        margs.extend(["--frame-kib".into(), "4".into()]);
        margs.extend(self.key_args(enc));
        if enc {
            margs.extend(["-r".into(), self.recipient.clone()]);
        }
        let m = self.run(&margs, None);
        if code(&m) != 0 {
            let said = match onto {
                Some(o) => format!("merge --onto #{o} refused {label} ({why})"),
                None => format!("verify --chain accepted {label} but merge refused it ({why})"),
            };
            return Err(self.fail(
                &said,
                format!("$ {}\n{}\n", cmdline(&margs), output_text(&m)),
            ));
        }
        let target = self.t.join(format!("restored-merged{}", self.runs));
        let mut rargs = vec![
            "restore".into(),
            p(&merged).into(),
            p(&target).into(),
            "-q".into(),
        ];
        rargs.extend(self.key_args(enc));
        let r = self.run(&rargs, None);
        let _ = fs::remove_file(&merged);
        if code(&r) != 0 {
            return Err(self.fail(
                &format!("restore refused the merge of {what} ({why})"),
                format!(
                    "$ {}\n$ {}\n{}\n",
                    cmdline(&margs),
                    cmdline(&rargs),
                    output_text(&r)
                ),
            ));
        }
        let got = snapshot(&target, false);
        let (d, _) = diff(&self.snaps[snap], &got);
        fs::remove_dir_all(&target).unwrap();
        if !d.is_empty() {
            return Err(self.fail(
                &format!("restore of the merge of {what} differs from the data dir ({why})"),
                format!("$ {}\n{}\n", cmdline(&margs), d.join("\n")),
            ));
        }
        Ok(())
    }
}
