//! A deterministic generator of SydraDB data directories, for tests,
//! demos and benchmarks: valid WAL records, SYSEG2 segments in hour
//! directories, MANIFEST and tags.json, laid out as the server lays them out.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::sydradb::{WAL_RECORD_LEN, encode_segment, wal_record};

/// What to generate.
#[derive(Debug, Clone)]
pub struct FixtureSpec {
    /// Seed: the same spec and seed give the same bytes.
    pub seed: u64,
    /// Number of series.
    pub series: u32,
    /// First timestamp (seconds); rounded down to the hour.
    pub start_ts: i64,
    /// Span of data in seconds.
    pub duration_s: i64,
    /// Seconds between points of one series.
    pub interval_s: i64,
    /// Seconds of data per flush; each flush writes one segment per series.
    /// Must divide 3600.
    pub flush_s: i64,
    /// `current.wal` is rotated once it holds at least this many bytes.
    pub wal_rotate_bytes: u64,
}

impl Default for FixtureSpec {
    fn default() -> Self {
        FixtureSpec {
            seed: 1,
            series: 25,
            start_ts: 1_748_736_000,
            duration_s: 12 * 3600,
            interval_s: 10,
            flush_s: 1800,
            wal_rotate_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixtureStats {
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Points (WAL records).
    pub points: u64,
    /// Segment files.
    pub segments: u64,
    /// WAL files, `current.wal` included.
    pub wal_files: u64,
}

/// splitmix64: small, fast and good enough for test data (and for the
/// seeded histories of the crate's randomized tests).
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    #[cfg(test)]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `p`.
    #[cfg(test)]
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Generates a data directory at `dir` (created if missing; must not hold
/// an earlier generation).
pub fn generate(dir: &Path, spec: &FixtureSpec) -> io::Result<FixtureStats> {
    if spec.flush_s <= 0 || 3600 % spec.flush_s != 0 || spec.interval_s <= 0 || spec.series == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "flush_s must divide 3600; interval_s and series must be positive",
        ));
    }
    let mut rng = Rng(spec.seed);
    let mut stats = FixtureStats::default();
    fs::create_dir_all(dir.join("wal"))?;
    fs::create_dir_all(dir.join("segments"))?;
    let ids: Vec<u64> = (0..spec.series).map(|_| rng.next()).collect();
    let mut values: Vec<f64> = ids
        .iter()
        .map(|_| (rng.next() % 10_000) as f64 / 100.0)
        .collect();
    let start = spec.start_ts.div_euclid(3600) * 3600;
    let end = start + spec.duration_s;
    let mut wall_ms: u64 = 1_795_312_992_000 + spec.seed % 1000;
    let wal_path = dir.join("wal/current.wal");
    let mut wal = BufWriter::with_capacity(1 << 20, File::create(&wal_path)?);
    let mut wal_len = 0u64;
    let mut manifest_line = String::new();
    let mut window: Vec<Vec<(i64, f64)>> = vec![Vec::new(); ids.len()];
    let mut w_start = start;
    while w_start < end {
        let w_end = (w_start + spec.flush_s).min(end);
        for pts in window.iter_mut() {
            pts.clear();
        }
        let mut ts = w_start;
        while ts < w_end {
            for (i, &sid) in ids.iter().enumerate() {
                let r = rng.next();
                if r % 10 >= 7 {
                    let step = ((r >> 8) % 41) as f64 - 20.0;
                    values[i] = ((values[i] * 100.0).round() + step) / 100.0;
                }
                wal.write_all(&wal_record(sid, ts, values[i]))?;
                wal_len += WAL_RECORD_LEN as u64;
                window[i].push((ts, values[i]));
                stats.points += 1;
            }
            ts += spec.interval_s;
        }
        // Flush: one segment per series for this window.
        let hour = w_start.div_euclid(3600) * 3600;
        let hour_dir = dir.join("segments").join(hour.to_string());
        fs::create_dir_all(&hour_dir)?;
        for (i, &sid) in ids.iter().enumerate() {
            let pts = &window[i];
            let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
                continue;
            };
            wall_ms += 1 + rng.next() % 3;
            let name = format!("{sid:x}-{}-{}-{wall_ms}.seg", first.0, last.0);
            let seg = encode_segment(sid, hour, pts);
            fs::write(hour_dir.join(&name), &seg)?;
            stats.files += 1;
            stats.segments += 1;
            stats.bytes += seg.len() as u64;
            manifest_line = format!(
                "{{\"series_id\":{sid},\"hour_bucket\":{hour},\"start_ts\":{},\"end_ts\":{},\"count\":{},\"path\":\"segments/{hour}/{name}\"}}\n",
                first.0,
                last.0,
                pts.len()
            );
        }
        wall_ms += 2000;
        if wal_len >= spec.wal_rotate_bytes {
            wal.flush()?;
            drop(wal);
            fs::rename(&wal_path, dir.join(format!("wal/{wall_ms}.wal")))?;
            stats.files += 1;
            stats.wal_files += 1;
            stats.bytes += wal_len;
            wal = BufWriter::with_capacity(1 << 20, File::create(&wal_path)?);
            wal_len = 0;
        }
        w_start = w_end;
    }
    wal.flush()?;
    drop(wal);
    stats.files += 1;
    stats.wal_files += 1;
    stats.bytes += wal_len;

    fs::write(dir.join("MANIFEST"), manifest_line.as_bytes())?;
    let mut tags: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (i, &sid) in ids.iter().enumerate() {
        tags.entry(format!("host=h{}", i % 8))
            .or_default()
            .push(sid);
        tags.entry("metric=cpu".into()).or_default().push(sid);
    }
    let body: Vec<String> = tags
        .iter()
        .map(|(k, v)| {
            let ids: Vec<String> = v.iter().map(u64::to_string).collect();
            format!("\"{k}\":[{}]", ids.join(","))
        })
        .collect();
    let tags_json = format!("{{{}}}", body.join(","));
    fs::write(dir.join("tags.json"), tags_json.as_bytes())?;
    stats.files += 2;
    stats.bytes += (manifest_line.len() + tags_json.len()) as u64;
    Ok(stats)
}

/// A simulated server that goes on writing a data directory as the real
/// one does, for tests and benchmarks of incremental archives: WAL
/// records appended to `current.wal` (rotated to `<epoch-ms>.wal` at the
/// spec's size), one segment per series per flush in hour directories,
/// MANIFEST and tags.json rewritten; and compaction (an hour's segments
/// replaced by one per series) and retention (an hour removed).
pub struct Server {
    dir: std::path::PathBuf,
    spec: FixtureSpec,
    rng: Rng,
    ids: Vec<u64>,
    values: Vec<f64>,
    /// The next timestamp to write.
    pub next_ts: i64,
    wall_ms: u64,
}

impl Server {
    /// A server that continues the data dir `dir` (written by [`generate`]
    /// with `spec`) from `next_ts` on, with series of its own seed.
    pub fn new(dir: &Path, spec: &FixtureSpec, next_ts: i64) -> Server {
        let mut rng = Rng(spec.seed ^ 0x5EED);
        let ids: Vec<u64> = (0..spec.series).map(|_| rng.next()).collect();
        let values = ids.iter().map(|_| 50.0).collect();
        Server {
            dir: dir.to_path_buf(),
            spec: spec.clone(),
            rng,
            ids,
            values,
            next_ts,
            wall_ms: 1_795_400_000_000 + (next_ts.max(0) as u64 % 1_000_000) * 1000,
        }
    }

    /// Writes `seconds` of points: each flush window's points to the WAL,
    /// then its segments; MANIFEST and tags.json after each flush.
    pub fn run(&mut self, seconds: i64) -> io::Result<()> {
        let end = self.next_ts + seconds;
        let wal_path = self.dir.join("wal/current.wal");
        while self.next_ts < end {
            let w_start = self.next_ts;
            let w_end = (w_start.div_euclid(self.spec.flush_s) + 1) * self.spec.flush_s;
            let w_end = w_end.min(end);
            let mut window: Vec<Vec<(i64, f64)>> = vec![Vec::new(); self.ids.len()];
            let mut wal = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&wal_path)?;
            let mut buf = Vec::new();
            let mut ts = w_start;
            while ts < w_end {
                for (i, &sid) in self.ids.iter().enumerate() {
                    let r = self.rng.next();
                    let step = ((r >> 8) % 41) as f64 - 20.0;
                    self.values[i] = ((self.values[i] * 100.0).round() + step) / 100.0;
                    buf.extend(wal_record(sid, ts, self.values[i]));
                    window[i].push((ts, self.values[i]));
                }
                ts += self.spec.interval_s;
            }
            wal.write_all(&buf)?;
            drop(wal);
            let hour = w_start.div_euclid(3600) * 3600;
            let hour_dir = self.dir.join("segments").join(hour.to_string());
            fs::create_dir_all(&hour_dir)?;
            let mut manifest = String::new();
            for (i, &sid) in self.ids.iter().enumerate() {
                let pts = &window[i];
                let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
                    continue;
                };
                self.wall_ms += 1 + self.rng.next() % 3;
                let name = format!("{sid:x}-{}-{}-{}.seg", first.0, last.0, self.wall_ms);
                fs::write(hour_dir.join(&name), encode_segment(sid, hour, pts))?;
                manifest = format!(
                    "{{\"series_id\":{sid},\"hour_bucket\":{hour},\"start_ts\":{},\"end_ts\":{},\"count\":{},\"path\":\"segments/{hour}/{name}\"}}\n",
                    first.0,
                    last.0,
                    pts.len()
                );
            }
            fs::write(self.dir.join("MANIFEST"), manifest)?;
            let ids: Vec<String> = self.ids.iter().map(u64::to_string).collect();
            fs::write(
                self.dir.join("tags.json"),
                format!("{{\"metric=cpu\":[{}],\"t={}\":[1]}}", ids.join(","), w_end),
            )?;
            self.wall_ms += 2000;
            if fs::metadata(&wal_path)?.len() >= self.spec.wal_rotate_bytes {
                fs::rename(
                    &wal_path,
                    self.dir.join(format!("wal/{}.wal", self.wall_ms)),
                )?;
                File::create(&wal_path)?;
            }
            self.next_ts = w_end;
        }
        Ok(())
    }

    /// Compaction: the segments of hour directory `hour` replaced by one
    /// segment per series holding the same points.
    pub fn compact(&mut self, hour: i64) -> io::Result<()> {
        let hour_dir = self.dir.join("segments").join(hour.to_string());
        let mut by_series: BTreeMap<u64, Vec<(i64, f64)>> = BTreeMap::new();
        let mut old = Vec::new();
        for e in fs::read_dir(&hour_dir)? {
            let p = e?.path();
            let seg = crate::sydradb::decode_segment(&fs::read(&p)?)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
            by_series
                .entry(seg.series_id)
                .or_default()
                .extend(seg.points);
            old.push(p);
        }
        for (sid, mut pts) in by_series {
            pts.sort_by_key(|p| p.0);
            let (first, last) = (pts[0].0, pts[pts.len() - 1].0);
            self.wall_ms += 1;
            let name = format!("{sid:x}-{first}-{last}-{}.seg", self.wall_ms);
            fs::write(hour_dir.join(name), encode_segment(sid, hour, &pts))?;
        }
        for p in old {
            fs::remove_file(p)?;
        }
        Ok(())
    }

    /// Retention: hour directory `hour` removed with its segments.
    pub fn drop_hour(&mut self, hour: i64) -> io::Result<()> {
        fs::remove_dir_all(self.dir.join("segments").join(hour.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sydradb::{check_wal, decode_segment};

    fn small() -> FixtureSpec {
        FixtureSpec {
            series: 3,
            duration_s: 2 * 3600,
            flush_s: 600,
            wal_rotate_bytes: 4000,
            ..FixtureSpec::default()
        }
    }

    #[test]
    fn output_is_valid_sydradb_data() {
        let t = tempfile::tempdir().unwrap();
        let stats = generate(t.path(), &small()).unwrap();
        assert_eq!(stats.points, 3 * 720);
        assert_eq!(stats.segments, 3 * 12);
        assert!(stats.wal_files > 2);
        let mut records = 0;
        for e in fs::read_dir(t.path().join("wal")).unwrap() {
            records += check_wal(&fs::read(e.unwrap().path()).unwrap()).unwrap();
        }
        assert_eq!(records, stats.points);
        let mut points = 0;
        for h in fs::read_dir(t.path().join("segments")).unwrap() {
            for s in fs::read_dir(h.unwrap().path()).unwrap() {
                let seg = decode_segment(&fs::read(s.unwrap().path()).unwrap()).unwrap();
                points += seg.points.len() as u64;
            }
        }
        assert_eq!(points, stats.points);
        let tags = fs::read(t.path().join("tags.json")).unwrap();
        assert!(
            serde_json::from_slice::<serde_json::Value>(&tags)
                .unwrap()
                .is_object()
        );
        assert!(!tags.ends_with(b"\n"));
        let manifest = fs::read_to_string(t.path().join("MANIFEST")).unwrap();
        assert!(manifest.ends_with('\n') && manifest.contains("\"path\":\"segments/"));
    }

    #[test]
    fn deterministic_per_seed() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        generate(a.path(), &small()).unwrap();
        generate(b.path(), &small()).unwrap();
        let read = |d: &Path| fs::read(d.join("MANIFEST")).unwrap();
        assert_eq!(read(a.path()), read(b.path()));
        let c = tempfile::tempdir().unwrap();
        generate(c.path(), &FixtureSpec { seed: 2, ..small() }).unwrap();
        assert_ne!(read(a.path()), read(c.path()));
    }
}
