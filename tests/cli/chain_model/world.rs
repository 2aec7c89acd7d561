//! One seed's world: the archives made so far ([`Arch`]), the models
//! they were made from, the history, and how the binary is run and a
//! failure reported (with the `chain_model_seed(..)` call that replays it).

use std::path::PathBuf;
use std::process::{Output, Stdio};

use crate::support::*;

use super::generator::Gen;
use super::model::*;

// ------------------------------------------------------- the archives

pub(super) struct Arch {
    pub(super) path: PathBuf,
    pub(super) snap: usize,
    pub(super) enc: bool,
    pub(super) base: Option<usize>,
    /// The base's path when this archive was made.
    pub(super) base_at: Option<PathBuf>,
    pub(super) label: String,
}

pub(super) struct World {
    pub(super) seed: u64,
    pub(super) t: PathBuf,
    pub(super) g: Gen,
    pub(super) snaps: Vec<Snap>,
    pub(super) archives: Vec<Arch>,
    pub(super) history: Vec<String>,
    pub(super) key: PathBuf,
    pub(super) recipient: String,
    pub(super) shelf_enc: bool,
    pub(super) subsec_lost: usize,
    pub(super) runs: usize,
    /// `SYDRA_CHAIN_BASE_BIAS=1`: few full archives, so `--base` chains
    /// grow deep.
    pub(super) base_bias: bool,
}

pub(super) fn cmdline(args: &[String]) -> String {
    let mut s = String::from("sydra-archive");
    for a in args {
        if a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:".contains(&b))
        {
            s.push(' ');
            s.push_str(a);
        } else {
            s.push_str(&format!(" {a:?}"));
        }
    }
    s
}

pub(super) fn output_text(o: &Output) -> String {
    let mut err = stderr(o);
    let mut out = stdout(o);
    err.truncate(4000);
    out.truncate(2000);
    format!("exit {:?}\nstderr: {err}\nstdout: {out}", o.status.code())
}

impl World {
    pub(super) fn run(&mut self, args: &[String], epoch: Option<i64>) -> Output {
        self.runs += 1;
        let mut c = bin();
        c.args(args).stdin(Stdio::null());
        if let Some(e) = epoch {
            c.env("SOURCE_DATE_EPOCH", e.to_string());
        }
        c.env_remove("SYDRA_ARCHIVE_IDENTITY_FILE");
        let child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_bounded(child, std::time::Duration::from_secs(300))
    }

    pub(super) fn fail(&self, what: &str, detail: String) -> String {
        let mut s = format!(
            "chain_model seed {} FAILED: {what}\n--- history (replay: chain_model_seed({}, {}, &[{}], {})) ---\n",
            self.seed,
            self.seed,
            self.history
                .iter()
                .filter(|h| h.starts_with("step"))
                .count(),
            self.g
                .avoid
                .iter()
                .map(|d| format!("Defect::{d:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.base_bias
        );
        for h in &self.history {
            s.push_str(h);
            s.push('\n');
        }
        s.push_str("--- detail ---\n");
        s.push_str(&detail);
        s
    }

    pub(super) fn key_args(&self, enc: bool) -> Vec<String> {
        if enc {
            vec!["-i".into(), p(&self.key).into()]
        } else {
            Vec::new()
        }
    }

    /// Whether archive `i` and its bases are where it can find them.
    pub(super) fn resolvable(&self, i: usize) -> bool {
        let a = &self.archives[i];
        if !a.path.exists() {
            return false;
        }
        match a.base {
            None => true,
            Some(b) => {
                let base = &self.archives[b];
                base.path.exists()
                    && (Some(&base.path) == a.base_at.as_ref()
                        || base.path.parent() == a.path.parent())
                    && self.resolvable(b)
            }
        }
    }

    pub(super) fn depth(&self, i: usize) -> u64 {
        match self.archives[i].base {
            None => 0,
            Some(b) => 1 + self.depth(b),
        }
    }
}
