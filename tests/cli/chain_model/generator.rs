//! The seeded history generator: [`Rng`] (splitmix64) and [`Gen`], which
//! makes one random change at a time to the data dir (WAL appends,
//! rotations, truncations, rewrites, names shifted down, deletions,
//! segments and hour directories, MANIFEST and tags.json, modes, mtimes,
//! kind flips, long and control-character names, foreign files) on a
//! simulated clock, leaving out the [`Defect`] classes it is told to avoid.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::{fs, io::Write};

use sydra_archive::sydradb::{encode_segment, wal_record};

use super::Defect;
use super::model::*;

pub(super) const START_CLOCK: i64 = 1_700_000_000;

// ---------------------------------------------------------------- PRNG

/// splitmix64: small, seedable, good enough to pick steps.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// In `0..n` (0 when `n` is 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    pub(super) fn range(&mut self, lo: u64, hi_incl: u64) -> u64 {
        lo + self.below(hi_incl - lo + 1)
    }
    pub(super) fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub(super) fn pick<T: Clone>(&mut self, v: &[T]) -> Option<T> {
        (!v.is_empty()).then(|| v[self.below(v.len() as u64) as usize].clone())
    }
}

// ------------------------------------------------------- the generator

pub(super) fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let t = libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    };
    let ts = [t, t];
    // SAFETY: a valid C string and two timespecs.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(
        r,
        0,
        "utimensat {path:?}: {}",
        std::io::Error::last_os_error()
    );
}

pub(super) struct Gen {
    pub(super) rng: Rng,
    pub(super) data: PathBuf,
    /// Simulated time (seconds): every write gets a new, later mtime, so
    /// a changed file never keeps the size, mode and mtime a base saw (a
    /// segment or rotated WAL file that did is unchanged by design).
    pub(super) clock: i64,
    pub(super) counter: u64,
    pub(super) avoid: Vec<Defect>,
}

pub(super) const WAL_REC: usize = 33;

impl Gen {
    pub(super) fn avoids(&self, d: Defect) -> bool {
        self.avoid.contains(&d)
    }

    pub(super) fn fresh(&mut self) -> (i64, i64) {
        self.clock += 1 + self.rng.below(3) as i64;
        let nsec = if self.rng.chance(50) {
            self.rng.below(1_000_000_000) as i64
        } else {
            0
        };
        (self.clock, nsec)
    }

    pub(super) fn touch(&mut self, path: &Path) {
        let (s, n) = self.fresh();
        set_mtime(path, s, n);
    }

    pub(super) fn records(&mut self, n: u64) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..n {
            self.counter += 1;
            let series = 1 + self.rng.below(4);
            v.extend(wal_record(series, self.clock, self.counter as f64));
        }
        v
    }

    pub(super) fn write(&mut self, rel: &[u8], content: &[u8]) {
        let p = join(&self.data, rel);
        // A file in the way of a parent directory (after a kind flip)
        // gives way to it.
        for (i, _) in rel.iter().enumerate().filter(|(_, b)| **b == b'/') {
            let up = join(&self.data, &rel[..i]);
            if fs::symlink_metadata(&up).is_ok_and(|m| !m.is_dir()) {
                fs::remove_file(&up).unwrap();
            }
        }
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(&p).unwrap();
        }
        fs::write(&p, content).unwrap();
        self.touch(&p);
    }

    pub(super) fn append(&mut self, rel: &[u8], content: &[u8]) {
        let p = join(&self.data, rel);
        let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(content).unwrap();
        drop(f);
        self.touch(&p);
    }

    pub(super) fn list(&self, rel: &[u8], dirs: bool) -> Vec<Vec<u8>> {
        let Ok(rd) = fs::read_dir(join(&self.data, rel)) else {
            return Vec::new();
        };
        let mut v: Vec<Vec<u8>> = rd
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_dir() == dirs)
            .map(|e| e.file_name().as_bytes().to_vec())
            .collect();
        v.sort();
        v
    }

    /// Files directly in `wal/`.
    pub(super) fn wal_files(&self) -> Vec<Vec<u8>> {
        self.list(b"wal", false)
    }

    pub(super) fn rotated_name(&mut self) -> Vec<u8> {
        format!("{}.wal", self.clock * 1000 + self.rng.below(1000) as i64).into_bytes()
    }

    pub(super) fn exists(&self, rel: &[u8]) -> bool {
        fs::symlink_metadata(join(&self.data, rel)).is_ok()
    }

    /// Every entry below the layout (for chmod and mtimes).
    pub(super) fn entries(&self) -> Vec<Vec<u8>> {
        snapshot(&self.data, true).into_keys().collect()
    }

    pub(super) fn hour_dirs(&self) -> Vec<Vec<u8>> {
        self.list(b"segments", true)
    }

    /// One change to the data dir, described; None when it does not apply.
    pub(super) fn mutate(&mut self) -> Option<String> {
        let op = self.rng.below(100);
        let wal = |n: &[u8]| rel_join(b"wal", n);
        match op {
            // Appends to current.wal.
            0..=19 => {
                let n = self.rng.range(1, 12);
                let recs = self.records(n);
                if self.exists(b"wal/current.wal") {
                    self.append(b"wal/current.wal", &recs);
                } else {
                    self.write(b"wal/current.wal", &recs);
                }
                Some(format!("append current.wal +{n}"))
            }
            // Appends to another WAL file.
            20..=25 => {
                let name = self.rng.pick(&self.wal_files())?;
                let n = self.rng.range(1, 6);
                let recs = self.records(n);
                self.append(&wal(&name), &recs);
                Some(format!("append {} +{n}", show(&name)))
            }
            // Rotation.
            26..=35 => {
                if !self.exists(b"wal/current.wal") {
                    return None;
                }
                let to = self.rotated_name();
                if self.exists(&wal(&to)) {
                    return None;
                }
                fs::rename(
                    join(&self.data, b"wal/current.wal"),
                    join(&self.data, &wal(&to)),
                )
                .unwrap();
                let n = self.rng.below(4);
                let recs = self.records(n);
                self.write(b"wal/current.wal", &recs);
                Some(format!("rotate current.wal -> {} (new +{n})", show(&to)))
            }
            // Truncation at a record boundary.
            36..=38 => {
                let name = self.rng.pick(&self.wal_files())?;
                let p = join(&self.data, &wal(&name));
                let len = fs::metadata(&p).unwrap().len();
                let recs = len / WAL_REC as u64;
                if recs == 0 {
                    return None;
                }
                let keep = self.rng.below(recs) * WAL_REC as u64;
                fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .unwrap()
                    .set_len(keep)
                    .unwrap();
                self.touch(&p);
                Some(format!("truncate {} to {keep}", show(&name)))
            }
            // Rewrite (maybe the same size).
            39..=41 => {
                let name = self.rng.pick(&self.wal_files())?;
                let p = join(&self.data, &wal(&name));
                let len = fs::metadata(&p).unwrap().len() / WAL_REC as u64;
                let n = if self.rng.chance(50) && len > 0 {
                    len
                } else {
                    self.rng.range(1, 8)
                };
                self.clock += 7; // other timestamps, other bytes
                let recs = self.records(n);
                self.write(&wal(&name), &recs);
                Some(format!("rewrite {} ({n} records)", show(&name)))
            }
            // Names shifted down one: b -> a, c -> b.
            42..=44 => {
                if self.avoids(Defect::ShiftedWalNames) {
                    return None;
                }
                let names: Vec<_> = self
                    .wal_files()
                    .into_iter()
                    .filter(|n| n != b"current.wal")
                    .collect();
                if names.len() < 2 {
                    return None;
                }
                let k = self.rng.range(2, names.len() as u64) as usize;
                let start = self.rng.below((names.len() - k + 1) as u64) as usize;
                let run = &names[start..start + k];
                fs::remove_file(join(&self.data, &wal(&run[0]))).unwrap();
                for w in run.windows(2) {
                    fs::rename(join(&self.data, &wal(&w[1])), join(&self.data, &wal(&w[0])))
                        .unwrap();
                }
                Some(format!(
                    "shift down {}",
                    run.iter().map(|n| show(n)).collect::<Vec<_>>().join(" <- ")
                ))
            }
            // Deletion.
            45..=47 => {
                let name = self.rng.pick(&self.wal_files())?;
                fs::remove_file(join(&self.data, &wal(&name))).unwrap();
                Some(format!("delete {}", show(&name)))
            }
            // A new segment.
            48..=59 => {
                let hours = self.hour_dirs();
                let hour = match self.rng.pick(&hours) {
                    Some(h) if self.rng.chance(70) => h,
                    _ => format!("{}", 3600 * self.rng.range(1, 40)).into_bytes(),
                };
                let h: i64 = std::str::from_utf8(&hour)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(3600);
                self.counter += 1;
                let series = 1 + self.rng.below(4);
                let n = self.rng.range(1, 60) as i64;
                let pts: Vec<(i64, f64)> = (0..n).map(|i| (h + i * 10, i as f64)).collect();
                let name = format!("{series}-{h}-{}-{}.seg", h + (n - 1) * 10, self.counter);
                let rel = rel_join(&rel_join(b"segments", &hour), name.as_bytes());
                let seg = encode_segment(series, h, &pts);
                self.write(&rel, &seg);
                Some(format!("add {}", show(&rel)))
            }
            60..=63 => {
                let hour = self.rng.pick(&self.hour_dirs())?;
                let dir = rel_join(b"segments", &hour);
                let seg = self.rng.pick(&self.list(&dir, false))?;
                let rel = rel_join(&dir, &seg);
                fs::remove_file(join(&self.data, &rel)).unwrap();
                Some(format!("remove {}", show(&rel)))
            }
            64..=65 => {
                let hour = self.rng.pick(&self.hour_dirs())?;
                let dir = rel_join(b"segments", &hour);
                fs::remove_dir_all(join(&self.data, &dir)).unwrap();
                Some(format!("remove hour {}", show(&dir)))
            }
            // MANIFEST / tags.json, sometimes with the same size and mtime.
            66..=71 => {
                let which: &[u8] = if self.rng.chance(50) {
                    b"MANIFEST"
                } else {
                    b"tags.json"
                };
                let n = self.rng.range(1, 4);
                let mut body = Vec::new();
                for _ in 0..n {
                    let v = self.rng.below(1_000_000);
                    if which == b"MANIFEST" {
                        body.extend(format!("{{\"path\":\"segments/x/{v:06}.seg\"}}\n").bytes());
                    } else {
                        body.extend(format!("{{\"s{v:06}=v\":[1]}}").bytes());
                    }
                }
                let p = join(&self.data, which);
                let old = fs::symlink_metadata(&p).ok().filter(|m| m.is_file());
                match old {
                    Some(m) if self.rng.chance(40) => {
                        let mut c = fs::read(&p).unwrap();
                        if c.is_empty() {
                            return None;
                        }
                        let i = self.rng.below(c.len() as u64) as usize;
                        c[i] = if c[i] == b'7' { b'3' } else { b'7' };
                        fs::write(&p, &c).unwrap();
                        set_mtime(&p, m.mtime(), m.mtime_nsec());
                        Some(format!(
                            "rewrite {} same size, same mtime (byte {i})",
                            show(which)
                        ))
                    }
                    _ => {
                        self.write(which, &body);
                        Some(format!("rewrite {} ({} bytes)", show(which), body.len()))
                    }
                }
            }
            // Modes.
            72..=75 => {
                let rel = self.rng.pick(&self.entries())?;
                let p = join(&self.data, &rel);
                let dir = fs::symlink_metadata(&p).unwrap().is_dir();
                let mode = if dir {
                    self.rng.pick(&[0o755, 0o750, 0o700, 0o775]).unwrap()
                } else {
                    self.rng
                        .pick(&[0o644, 0o600, 0o640, 0o444, 0o400, 0o755])
                        .unwrap()
                };
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
                Some(format!("chmod {mode:o} {}", show(&rel)))
            }
            // Mtimes (content unchanged).
            76..=80 => {
                let rel = self.rng.pick(&self.entries())?;
                let p = join(&self.data, &rel);
                let m = fs::symlink_metadata(&p).unwrap();
                let (s, n) = match self.rng.below(3) {
                    0 => (m.mtime(), self.rng.below(1_000_000_000) as i64),
                    1 => (
                        START_CLOCK - self.rng.below(100_000_000) as i64,
                        self.rng.below(1_000_000_000) as i64,
                    ),
                    _ => self.fresh(),
                };
                set_mtime(&p, s, n);
                Some(format!("mtime {s}.{n:09} {}", show(&rel)))
            }
            // A WAL name as a directory, and back to a rotated file.
            81..=84 => {
                if self.avoids(Defect::WalDirBecomesFile) {
                    return None;
                }
                let dirs = self.list(b"wal", true);
                if let Some(d) = self.rng.pick(&dirs) {
                    let rel = wal(&d);
                    fs::remove_dir_all(join(&self.data, &rel)).unwrap();
                    if self.exists(b"wal/current.wal") {
                        fs::rename(join(&self.data, b"wal/current.wal"), join(&self.data, &rel))
                            .unwrap();
                        let recs = self.records(1);
                        self.write(b"wal/current.wal", &recs);
                        Some(format!("dir {} -> rotated current.wal to it", show(&rel)))
                    } else {
                        let recs = self.records(2);
                        self.write(&rel, &recs);
                        Some(format!("dir {} -> new file", show(&rel)))
                    }
                } else {
                    let name = match self.rng.pick(&self.wal_files()) {
                        Some(n) if n != b"current.wal" && self.rng.chance(50) => n,
                        _ => self.rotated_name(),
                    };
                    let rel = wal(&name);
                    if self.exists(&rel) {
                        fs::remove_file(join(&self.data, &rel)).unwrap();
                    }
                    let recs = self.records(2);
                    self.write(&rel_join(&rel, b"inner.wal"), &recs);
                    Some(format!("file {} -> dir with inner.wal", show(&rel)))
                }
            }
            // A name of 240-255 bytes.
            85..=88 => {
                let max = if self.avoids(Defect::LongWalNames) {
                    250
                } else {
                    255
                };
                let len = self.rng.range(240, max) as usize;
                self.counter += 1;
                let stem = format!("{}", self.counter);
                let name = format!("{stem}{}.wal", "L".repeat(len - 4 - stem.len()));
                let rel = wal(name.as_bytes());
                let n = self.rng.range(1, 4);
                let recs = self.records(n);
                self.write(&rel, &recs);
                Some(format!("long WAL name of {len} bytes: {}...", &name[..12]))
            }
            // Control characters.
            89..=91 => {
                self.counter += 1;
                let c = self.counter;
                let rel = if self.rng.chance(50) {
                    format!("wal/ctl\u{1}\n\t{c}.wal").into_bytes()
                } else {
                    let hour = self
                        .rng
                        .pick(&self.hour_dirs())
                        .unwrap_or_else(|| b"3600".to_vec());
                    rel_join(
                        &rel_join(b"segments", &hour),
                        format!("s\u{1b}[31m\r{c}.seg").as_bytes(),
                    )
                };
                let recs = self.records(2);
                self.write(&rel, &recs);
                Some(format!("control-character name {}", show(&rel)))
            }
            // Files that are not SydraDB's.
            92..=95 => {
                let rel: Vec<u8> = match self.rng.below(3) {
                    0 => b"0123456789abcdef".to_vec(),
                    1 => b"notes.txt".to_vec(),
                    _ => {
                        let hour = self.rng.pick(&self.hour_dirs())?;
                        rel_join(&rel_join(b"segments", &hour), b"README")
                    }
                };
                self.counter += 1;
                let body = format!("not sydradb's {}\n", self.counter);
                self.write(&rel, body.as_bytes());
                Some(format!("foreign file {}", show(&rel)))
            }
            // A file below the layout turned into a directory, or a
            // directory into a file, of the same name.
            98..=99 => {
                let ents: Vec<Vec<u8>> = self
                    .entries()
                    .into_iter()
                    .filter(|e| e.contains(&b'/') && e != b"wal/current.wal")
                    .collect();
                let rel = self.rng.pick(&ents)?;
                let p = join(&self.data, &rel);
                let in_wal = rel.starts_with(b"wal/");
                self.counter += 1;
                let c = self.counter;
                let content = if in_wal {
                    self.records(2)
                } else {
                    encode_segment(1, 3600, &[(3600, c as f64)])
                };
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    fs::remove_dir_all(&p).unwrap();
                    self.write(&rel, &content);
                    Some(format!("dir {} -> file", show(&rel)))
                } else {
                    fs::remove_file(&p).unwrap();
                    let inner = rel_join(&rel, format!("{c}.seg").as_bytes());
                    self.write(&inner, &content);
                    Some(format!("file {} -> dir with {c}.seg", show(&rel)))
                }
            }
            // Remove a WAL dir.
            _ => {
                let d = self.rng.pick(&self.list(b"wal", true))?;
                let rel = wal(&d);
                fs::remove_dir_all(join(&self.data, &rel)).unwrap();
                Some(format!("remove dir {}", show(&rel)))
            }
        }
    }
}
