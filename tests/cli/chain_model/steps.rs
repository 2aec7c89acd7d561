//! The archive operations a seed interleaves with its history: `create`
//! (full, `--base`, or `-o DIR/ --incremental --max-chain k`, some
//! encrypted), moving a chain to another directory, `prune --yes`, and
//! the probe that a non-UTF-8 name is refused.

use std::fs;
use std::path::PathBuf;

use crate::support::*;

use super::generator::set_mtime;
use super::model::*;
use super::world::{Arch, World, cmdline, output_text};
use super::{Defect, SHALLOW};

impl World {
    /// One `create`; on exit 0 the archive is recorded and checked.
    pub(super) fn create(&mut self, step: usize) -> Result<(), String> {
        let named = self.t.join("named");
        let shelf = self.t.join("shelf");
        let epoch = self.g.clock;
        let snap = snapshot(&self.g.data, true);
        let mut choice = self.g.rng.below(100);
        if self.base_bias && choice < 35 {
            // Mostly `--base`: deep chains.
            choice = 35 + choice % 30;
        }
        let mut args: Vec<String> = vec!["create".into(), p(&self.g.data).into()];
        let (kind, enc, base): (String, bool, Option<usize>);
        let candidates: Vec<usize> = (0..self.archives.len())
            .filter(|&i| {
                self.resolvable(i)
                    && !self.archives[i].path.starts_with(&shelf)
                    && (!self.g.avoids(Defect::DeepChains) || self.depth(i) + 1 < SHALLOW)
            })
            .collect();
        if choice < 35 || (choice < 65 && candidates.is_empty()) {
            enc = self.g.rng.chance(25);
            let out = named.join(format!("a{step}.tar.zst{}", if enc { ".age" } else { "" }));
            args.extend(["-o".into(), p(&out).into()]);
            kind = "full".into();
            base = None;
        } else if choice < 65 {
            let b = *candidates.last().unwrap();
            enc = self.archives[b].enc;
            let out = named.join(format!("a{step}.tar.zst{}", if enc { ".age" } else { "" }));
            args.extend([
                "-o".into(),
                p(&out).into(),
                "--base".into(),
                p(&self.archives[b].path).into(),
            ]);
            kind = format!("--base {}", self.archives[b].label);
            base = Some(b);
        } else {
            enc = self.shelf_enc;
            let k = self.g.rng.range(1, 5);
            args.extend([
                "-o".into(),
                format!("{}/", p(&shelf)),
                "--incremental".into(),
                "--max-chain".into(),
                k.to_string(),
            ]);
            kind = format!("shelf --max-chain {k}");
            base = None;
        }
        if enc {
            args.extend(["-r".into(), self.recipient.clone()]);
            args.extend(self.key_args(true));
        }
        args.push("--json".into());
        let o = self.run(&args, Some(epoch));
        self.history.push(format!(
            "  create ({kind}{}) at {epoch}: $ {}",
            if enc { ", encrypted" } else { "" },
            cmdline(&args).replace(p(&self.t), "$T")
        ));
        if code(&o) != 0 {
            return Err(self.fail(
                "create refused a data dir and base that are whole",
                format!("$ {}\n{}", cmdline(&args), output_text(&o)),
            ));
        }
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).map_err(|e| {
            self.fail(
                "create --json is not JSON",
                format!("{e}: {}", output_text(&o)),
            )
        })?;
        let path = PathBuf::from(j["archive"].as_str().unwrap());
        set_mtime(&path, epoch, 0);
        let (base, base_at) = if j["kind"] == "incremental" {
            let depth = j["base"]["depth"].as_u64().unwrap();
            let loc = j["base"]["location"].as_str().unwrap();
            let lp = if loc.starts_with('/') {
                PathBuf::from(loc)
            } else {
                path.parent().unwrap().join(loc)
            };
            let b = base.or_else(|| self.archives.iter().position(|a| a.path == lp));
            if let Some(b) = b
                && self.depth(b) + 1 != depth
            {
                return Err(self.fail(
                    "create recorded a depth its chain does not have",
                    format!("{j}"),
                ));
            }
            if kind.starts_with("shelf") {
                let k = args[args.iter().position(|a| a == "--max-chain").unwrap() + 1]
                    .parse::<u64>()
                    .unwrap();
                if depth >= k {
                    return Err(self.fail(
                        &format!("--max-chain {k} made an incremental of depth {depth}"),
                        format!("{j}"),
                    ));
                }
            }
            (b, Some(lp))
        } else {
            if base.is_some() {
                return Err(self.fail("create --base wrote a full archive", format!("{j}")));
            }
            (None, None)
        };
        self.snaps.push(snap);
        let label = format!(
            "#{} {}",
            self.archives.len(),
            path.file_name().unwrap().to_string_lossy()
        );
        self.history.push(format!(
            "    -> {label} ({}{})",
            j["kind"].as_str().unwrap_or("?"),
            base.map(|b| format!(" on {}", self.archives[b].label))
                .unwrap_or_default()
        ));
        self.archives.push(Arch {
            path,
            snap: self.snaps.len() - 1,
            enc,
            base,
            base_at,
            label,
        });
        self.check(self.archives.len() - 1, "just created")
    }

    /// Moves an archive and its bases together to a new directory; the
    /// archive must still restore.
    pub(super) fn move_chain(&mut self, step: usize) -> Result<(), String> {
        let named = self.t.join("named");
        let cands: Vec<usize> = (0..self.archives.len())
            .filter(|&i| self.resolvable(i))
            .filter(|&i| {
                let mut j = Some(i);
                while let Some(k) = j {
                    if !self.archives[k].path.starts_with(&named) {
                        return false;
                    }
                    j = self.archives[k].base;
                }
                true
            })
            .collect();
        let Some(i) = self.g.rng.pick(&cands) else {
            return Ok(());
        };
        let to = self.t.join(format!("moved{step}"));
        fs::create_dir(&to).unwrap();
        let mut j = Some(i);
        let mut moved = Vec::new();
        while let Some(k) = j {
            let a = &mut self.archives[k];
            let np = to.join(a.path.file_name().unwrap());
            fs::rename(&a.path, &np).unwrap();
            a.path = np;
            moved.push(a.label.clone());
            j = a.base;
        }
        self.history
            .push(format!("  move {} to $T/moved{step}/", moved.join(", ")));
        self.check(i, "moved with its chain")
    }

    pub(super) fn prune(&mut self) -> Result<(), String> {
        let dir = if self.g.rng.chance(50) {
            self.t.join("shelf")
        } else {
            self.t.join("named")
        };
        if !dir.exists() {
            return Ok(());
        }
        let mut rules: Vec<String> = Vec::new();
        for (flag, max) in [
            ("--keep-last", 3),
            ("--keep-hourly", 3),
            ("--keep-daily", 2),
            ("--keep-weekly", 1),
            ("--keep-monthly", 1),
        ] {
            if self.g.rng.chance(30) {
                rules.extend([flag.to_string(), self.g.rng.range(1, max).to_string()]);
            }
        }
        if rules.is_empty() {
            rules.extend(["--keep-last".into(), "1".into()]);
        }
        let inside: Vec<usize> = (0..self.archives.len())
            .filter(|&i| {
                self.archives[i].path.exists() && self.archives[i].path.parent() == Some(&dir)
            })
            .collect();
        let mut ok_before = Vec::new();
        for &i in &inside {
            let a = &self.archives[i];
            let mut args = vec![
                "verify".into(),
                "--chain".into(),
                p(&a.path).into(),
                "-q".into(),
            ];
            args.extend(self.key_args(a.enc));
            if code(&self.run(&args, None)) == 0 {
                ok_before.push(i);
            }
        }
        let mut args = vec!["prune".into(), p(&dir).into()];
        args.extend(rules);
        // The HEADs of encrypted archives are inside the encryption.
        args.extend(self.key_args(true));
        args.extend(["--yes".into(), "--json".into()]);
        let o = self.run(&args, None);
        let gone: Vec<String> = inside
            .iter()
            .filter(|&&i| !self.archives[i].path.exists())
            .map(|&i| self.archives[i].label.clone())
            .collect();
        self.history.push(format!(
            "  $ {} -> deleted [{}]",
            cmdline(&args).replace(p(&self.t), "$T"),
            gone.join(", ")
        ));
        if code(&o) != 0 {
            return Err(self.fail(
                "prune failed",
                format!("$ {}\n{}", cmdline(&args), output_text(&o)),
            ));
        }
        for i in ok_before {
            if self.archives[i].path.exists() {
                self.check(i, "after prune")?;
            }
        }
        Ok(())
    }

    /// A name that is not UTF-8 below the layout: `create` documents a
    /// refusal (exit 2, nothing written).
    pub(super) fn non_utf8_probe(&mut self) -> Result<(), String> {
        let rel: &[u8] = b"segments/bad\xff.seg";
        fs::write(join(&self.g.data, rel), b"x").unwrap();
        let out = self.t.join("probe.tar.zst");
        let args = vec![
            "create".into(),
            p(&self.g.data).into(),
            "-o".into(),
            p(&out).into(),
            "-q".into(),
        ];
        let o = self.run(&args, Some(self.g.clock));
        fs::remove_file(join(&self.g.data, rel)).unwrap();
        self.history
            .push("  probe: a non-UTF-8 name is refused by create".into());
        if code(&o) != 2 || out.exists() || !stderr(&o).contains("not valid UTF-8") {
            return Err(self.fail(
                "a non-UTF-8 name below the layout was not refused as documented",
                format!("$ {}\n{}", cmdline(&args), output_text(&o)),
            ));
        }
        Ok(())
    }
}
