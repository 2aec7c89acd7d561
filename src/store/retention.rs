//! Retention: which archives a policy keeps, with restic `forget`
//! semantics, and never an archive that a kept one needs.
//!
//! Rules are OR'ed: an archive is kept when any rule keeps it. `last n`
//! keeps the n newest. `hourly`, `daily`, `weekly` and `monthly n` keep,
//! for each of the n most recent periods (UTC hours, days, ISO weeks,
//! months) *that have archives*, the newest archive of that period. Then
//! every archive a kept one is based on (an incremental's base, and its
//! base, ...) is kept too, with the reason. An empty policy is refused:
//! it would delete everything.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{Error, Result};

/// How many archives (or periods) each rule keeps; 0 turns a rule off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// The newest this many archives.
    pub last: u64,
    /// The newest archive of each of this many hours that have archives.
    pub hourly: u64,
    /// ... of days (UTC).
    pub daily: u64,
    /// ... of ISO weeks (Monday to Sunday, UTC).
    pub weekly: u64,
    /// ... of months (UTC).
    pub monthly: u64,
}

impl Policy {
    /// Refuses a policy that keeps nothing.
    pub fn check(&self) -> Result<()> {
        if self == &Policy::default() {
            return Err(Error::Refused(
                "the retention policy is empty: give at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// One archive as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// A name unique among the candidates (a key or a file name).
    pub name: String,
    /// When it was written, Unix milliseconds.
    pub unix_ms: i64,
    /// The names of the archives that may be its base, for an
    /// incremental: every one that could be the archive it recorded (by
    /// name, or by size and digest). All are kept with it: keeping an
    /// archive too many is safe; deleting a base is not.
    pub base: Vec<String>,
    /// An encrypted archive whose chain cannot be known without its key:
    /// kept, it keeps every other archive.
    pub base_unknown: bool,
}

/// Why an archive is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "rule", content = "detail")]
pub enum Reason {
    /// Among the newest `--keep-last`.
    Last,
    /// The newest of its hour (`YYYY-MM-DDTHH`).
    Hourly(String),
    /// The newest of its day (`YYYY-MM-DD`).
    Daily(String),
    /// The newest of its ISO week (`YYYY-Www`).
    Weekly(String),
    /// The newest of its month (`YYYY-MM`).
    Monthly(String),
    /// A kept archive needs it (named): it is that archive's base, or a
    /// base of its base.
    BaseOf(String),
    /// A kept encrypted archive whose chain is unknown without its key
    /// (named) may need it.
    MayBeBaseOf(String),
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Last => write!(f, "last"),
            Reason::Hourly(p) => write!(f, "hourly {p}"),
            Reason::Daily(p) => write!(f, "daily {p}"),
            Reason::Weekly(p) => write!(f, "weekly {p}"),
            Reason::Monthly(p) => write!(f, "monthly {p}"),
            Reason::BaseOf(n) => write!(f, "base of {n}"),
            Reason::MayBeBaseOf(n) => {
                write!(
                    f,
                    "may be a base of {n} (encrypted: its chain is known only with its key)"
                )
            }
        }
    }
}

/// What a policy decides for each candidate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Kept, newest first, each with its reasons.
    pub keep: Vec<(Candidate, Vec<Reason>)>,
    /// Not kept, newest first.
    pub forget: Vec<Candidate>,
}

/// Applies `policy` to `candidates` (any order). A base that is not among
/// the candidates is not an error here (`verify --chain` reports a broken
/// chain); a kept archive's chain is followed as far as it goes.
pub fn decide(policy: &Policy, candidates: &[Candidate]) -> Result<Decision> {
    policy.check()?;
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.unix_ms.cmp(&a.unix_ms).then(b.name.cmp(&a.name)));
    let mut reasons: BTreeMap<&str, BTreeSet<Reason>> = BTreeMap::new();
    for c in sorted
        .iter()
        .take(usize::try_from(policy.last).unwrap_or(usize::MAX))
    {
        reasons.entry(&c.name).or_default().insert(Reason::Last);
    }
    type Bucket = fn(i64) -> String;
    type Why = fn(String) -> Reason;
    let rules: [(u64, Bucket, Why); 4] = [
        (policy.hourly, hour_of, Reason::Hourly),
        (policy.daily, day_of, Reason::Daily),
        (policy.weekly, week_of, Reason::Weekly),
        (policy.monthly, month_of, Reason::Monthly),
    ];
    for (count, bucket, reason) in rules {
        let mut left = count;
        let mut last: Option<String> = None;
        for c in &sorted {
            if left == 0 {
                break;
            }
            let period = bucket(c.unix_ms);
            if last.as_ref() != Some(&period) {
                reasons
                    .entry(&c.name)
                    .or_default()
                    .insert(reason(period.clone()));
                last = Some(period);
                left -= 1;
            }
        }
    }
    // Chains: every base of a kept archive, transitively. A base met
    // twice (a cycle, from a hostile listing) stops the walk.
    let by_name: BTreeMap<&str, &Candidate> =
        sorted.iter().map(|c| (c.name.as_str(), *c)).collect();
    let kept: Vec<&str> = reasons.keys().copied().collect();
    for name in kept {
        // Every archive below `name`, over every possible base: a walk
        // of the graph, each archive met once.
        let mut seen = BTreeSet::from([name]);
        let mut todo: Vec<&str> = by_name
            .get(name)
            .map(|c| c.base.iter().map(String::as_str).collect())
            .unwrap_or_default();
        while let Some(base) = todo.pop() {
            let Some(b) = by_name.get(base) else { continue };
            if !seen.insert(b.name.as_str()) {
                continue;
            }
            reasons
                .entry(b.name.as_str())
                .or_default()
                .insert(Reason::BaseOf(name.to_string()));
            todo.extend(b.base.iter().map(String::as_str));
        }
    }
    // A kept archive whose chain is unknown may need any other.
    if let Some(u) = sorted
        .iter()
        .find(|c| c.base_unknown && reasons.contains_key(c.name.as_str()))
    {
        for c in &sorted {
            if c.name != u.name {
                reasons
                    .entry(c.name.as_str())
                    .or_default()
                    .insert(Reason::MayBeBaseOf(u.name.clone()));
            }
        }
    }
    let mut d = Decision::default();
    for c in sorted {
        match reasons.get(c.name.as_str()) {
            Some(r) => d.keep.push((c.clone(), r.iter().cloned().collect())),
            None => d.forget.push(c.clone()),
        }
    }
    Ok(d)
}

/// The UTC date and time of `unix_ms`: year, month, day, hour, minute,
/// second.
fn utc_parts(unix_ms: i64) -> (i64, u32, u32, i64, i64, i64) {
    let (y, m, d) = civil(days_of(unix_ms));
    let s = unix_ms.rem_euclid(86_400_000) / 1000;
    (y, m, d, s / 3600, s % 3600 / 60, s % 60)
}

/// `unix_ms` as `YYYY-MM-DDTHH:MM:SSZ` (UTC), as listings show it.
pub fn utc_time(unix_ms: i64) -> String {
    let (y, m, d, h, min, s) = utc_parts(unix_ms);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}Z")
}

/// [`utc_time`] with the milliseconds, when there are any
/// (`YYYY-MM-DDTHH:MM:SS.mmmZ`): a point's moment, given back to `--at`,
/// names that point and no older one.
pub fn utc_time_ms(unix_ms: i64) -> String {
    let ms = unix_ms.rem_euclid(1000);
    if ms == 0 {
        return utc_time(unix_ms);
    }
    let (y, m, d, h, min, s) = utc_parts(unix_ms);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{ms:03}Z")
}

/// The name `create -o DIR/` gives an archive written at `unix_ms`:
/// `sydradb-YYYYMMDDTHHMMSSZ.tar.zst` (UTC), which sorts by time.
pub fn timestamped_name(unix_ms: i64) -> String {
    let (y, m, d, h, min, s) = utc_parts(unix_ms);
    format!("sydradb-{y:04}{m:02}{d:02}T{h:02}{min:02}{s:02}Z.tar.zst")
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's days-to-civil).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_of(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(86_400_000)
}

fn hour_of(unix_ms: i64) -> String {
    let (y, m, d) = civil(days_of(unix_ms));
    let h = unix_ms.rem_euclid(86_400_000) / 3_600_000;
    format!("{y:04}-{m:02}-{d:02}T{h:02}")
}

fn day_of(unix_ms: i64) -> String {
    let (y, m, d) = civil(days_of(unix_ms));
    format!("{y:04}-{m:02}-{d:02}")
}

fn month_of(unix_ms: i64) -> String {
    let (y, m, _) = civil(days_of(unix_ms));
    format!("{y:04}-{m:02}")
}

/// The ISO week (`YYYY-Www`): weeks start on Monday, and week 1 is the
/// one that holds the year's first Thursday.
fn week_of(unix_ms: i64) -> String {
    let days = days_of(unix_ms);
    // 1970-01-01 was a Thursday: weekday 0 = Monday.
    let weekday = (days + 3).rem_euclid(7);
    let thursday = days - weekday + 3;
    let (y, _, _) = civil(thursday);
    let jan1 = days_from_civil(y, 1, 1);
    let week = (thursday - jan1) / 7 + 1;
    format!("{y:04}-W{week:02}")
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const D: i64 = 24 * H;
    /// 2026-11-02T00:00:00Z, a Monday.
    const MON: i64 = 1_793_577_600_000;

    fn c(name: &str, unix_ms: i64, base: Option<&str>) -> Candidate {
        Candidate {
            name: name.into(),
            unix_ms,
            base: base.into_iter().map(String::from).collect(),
            base_unknown: false,
        }
    }

    fn kept(d: &Decision) -> Vec<&str> {
        d.keep.iter().map(|(c, _)| c.name.as_str()).collect()
    }

    #[test]
    fn periods_are_utc_and_iso_weeks() {
        assert_eq!(day_of(MON), "2026-11-02");
        assert_eq!(hour_of(MON + 5 * H + 59 * 60_000), "2026-11-02T05");
        assert_eq!(week_of(MON), "2026-W45");
        assert_eq!(week_of(MON - 1), "2026-W44");
        assert_eq!(week_of(MON + 7 * D - 1), "2026-W45");
        assert_eq!(month_of(MON), "2026-11");
        // 2021-01-01 (a Friday) belongs to 2020's week 53; 2024-12-30 (a
        // Monday) to 2025's week 1.
        assert_eq!(week_of(1_609_459_200_000), "2020-W53");
        assert_eq!(week_of(1_735_516_800_000), "2025-W01");
        assert_eq!(days_from_civil(2026, 11, 2) * D, MON);
        assert_eq!(civil(days_from_civil(2000, 2, 29)), (2000, 2, 29));
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_time(1_795_305_599_999), "2026-11-21T23:59:59Z");
    }

    #[test]
    fn names_sort_by_time() {
        assert_eq!(
            timestamped_name(MON + 2 * H + 15 * 60_000 + 7_999),
            "sydradb-20261102T021507Z.tar.zst"
        );
    }

    #[test]
    fn an_empty_policy_is_refused() {
        let e = decide(&Policy::default(), &[c("a", 0, None)]).unwrap_err();
        assert!(e.to_string().contains("policy is empty"), "{e}");
    }

    #[test]
    fn rules_are_ored_and_count_periods_that_have_archives() {
        // Two a day for 10 days, at 01:00 and 13:00, the days 3 and 4
        // missing.
        let mut cs = Vec::new();
        for day in (0..10).filter(|d| *d != 3 && *d != 4) {
            cs.push(c(&format!("d{day}-a"), MON + day * D + H, None));
            cs.push(c(&format!("d{day}-b"), MON + day * D + 13 * H, None));
        }
        let d = decide(
            &Policy {
                last: 1,
                daily: 3,
                ..Policy::default()
            },
            &cs,
        )
        .unwrap();
        // The newest, and the newest of the last 3 days that have archives.
        assert_eq!(kept(&d), ["d9-b", "d8-b", "d7-b"]);
        let d = decide(
            &Policy {
                daily: 6,
                ..Policy::default()
            },
            &cs,
        )
        .unwrap();
        // Days 9..5, then 2 (3 and 4 have none).
        assert_eq!(kept(&d), ["d9-b", "d8-b", "d7-b", "d6-b", "d5-b", "d2-b"]);
        assert_eq!(d.forget.len(), cs.len() - 6);
        let d = decide(
            &Policy {
                weekly: 1,
                monthly: 1,
                ..Policy::default()
            },
            &cs,
        )
        .unwrap();
        assert_eq!(kept(&d), ["d9-b"]);
        assert_eq!(
            d.keep[0].1,
            [
                Reason::Weekly("2026-W46".into()),
                Reason::Monthly("2026-11".into())
            ]
        );
    }

    #[test]
    fn a_kept_archive_keeps_its_whole_chain() {
        // full0 <- inc1 <- inc2 <- inc3, full4 <- inc5.
        let cs = [
            c("full0", MON, None),
            c("inc1", MON + D, Some("full0")),
            c("inc2", MON + 2 * D, Some("inc1")),
            c("inc3", MON + 3 * D, Some("inc2")),
            c("full4", MON + 4 * D, None),
            c("inc5", MON + 5 * D, Some("full4")),
        ];
        let d = decide(
            &Policy {
                last: 1,
                ..Policy::default()
            },
            &cs,
        )
        .unwrap();
        assert_eq!(kept(&d), ["inc5", "full4"]);
        assert_eq!(d.keep[1].1, [Reason::BaseOf("inc5".into())]);
        // Keeping inc2 (the newest of its day) keeps inc1 and full0.
        let d = decide(
            &Policy {
                daily: 4,
                ..Policy::default()
            },
            &cs,
        )
        .unwrap();
        assert_eq!(kept(&d), ["inc5", "full4", "inc3", "inc2", "inc1", "full0"]);
        let d = decide(
            &Policy {
                last: 4,
                ..Policy::default()
            },
            &cs[..4],
        )
        .unwrap();
        assert!(d.forget.is_empty());
        // A cycle in a hostile listing ends the walk; a missing base is
        // not followed.
        let cyc = [c("x", MON, Some("y")), c("y", MON - D, Some("x"))];
        let d = decide(
            &Policy {
                last: 1,
                ..Policy::default()
            },
            &cyc,
        )
        .unwrap();
        assert_eq!(kept(&d), ["x", "y"]);
        let orphan = [c("x", MON, Some("gone"))];
        assert_eq!(
            kept(
                &decide(
                    &Policy {
                        last: 1,
                        ..Policy::default()
                    },
                    &orphan
                )
                .unwrap()
            ),
            ["x"]
        );
    }
}
