//! Points in time on a shelf: each archive is the data dir at one moment
//! (its HEAD's time; a merged archive keeps its newest link's), and a
//! moment may be restorable from several archives (an incremental, a
//! merged full of the same moment, a compacted incremental). For
//! `ls --points` (decided from the listing alone) and `restore`, `list`
//! and `extract` of `DIR/ --at TIME`: the newest point at or before TIME,
//! from the archive of that moment written last.

use crate::error::{Error, Result};
use crate::format::incremental::max_chain;
use crate::shelf::list::base_names;
use crate::shelf::{Shelf, location_of, ls};
use crate::store::location::Location;
use crate::store::retention::utc_time_ms;
use crate::store::s3::{Listed, Listing};

use super::latest::Chosen;

/// One restorable moment of a shelf.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    /// The moment (ms since the epoch).
    pub unix_ms: i64,
    /// It as RFC 3339 UTC (with its milliseconds, when there are any).
    pub time: String,
    /// The archive to restore it from (of its moment, the one written
    /// last), and its
    /// chain, newest first, as the listing tells it.
    pub archive: String,
    /// See `archive`.
    pub archives: Vec<String>,
    /// Other archives of the same moment (longer chains).
    pub also: Vec<String>,
}

/// The moment of a listed archive: its HEAD's time, or (an encrypted
/// archive listed without its key) when it was written.
pub fn moment(l: &Listed) -> i64 {
    l.created_unix_ms.map_or(l.modified_unix_ms, |t| t as i64)
}

/// Orders archives to delete so that none goes before an archive made on
/// it (deepest first, then newest first): a deletion cut short at any
/// step leaves every archive that is still there with its whole chain.
pub fn dependents_first(archives: &mut [Listed]) {
    archives
        .sort_by_key(|l| std::cmp::Reverse((l.base.as_ref().map_or(0, |b| b.depth), moment(l))));
}

/// The shortest chain of archive `i` complete among the listed ones
/// (indexes, `i` first), if any.
fn shortest(
    listing: &Listing,
    i: usize,
    depth: usize,
    memo: &mut [Option<Option<Vec<usize>>>],
) -> Option<Vec<usize>> {
    if let Some(v) = &memo[i] {
        return v.clone();
    }
    if depth > max_chain() {
        return None;
    }
    let l = &listing.archives[i];
    let v = if !l.chain_known {
        None
    } else {
        match &l.base {
            None => Some(vec![i]),
            Some(b) => base_names(listing, l, b)
                .iter()
                .filter_map(|name| listing.archives.iter().position(|c| &c.key == name))
                .filter_map(|j| shortest(listing, j, depth + 1, memo))
                .min_by_key(Vec::len)
                .map(|mut c| {
                    c.insert(0, i);
                    c
                }),
        }
    };
    memo[i] = Some(v.clone());
    v
}

/// The restorable points of `listing`, newest first, each from the
/// archive written last among those of its moment. Nothing is
/// read: the chains are the listing's (as `ls` marks them restorable).
pub fn points(listing: &Listing) -> Vec<Point> {
    let mut memo = vec![None; listing.archives.len()];
    // Of one moment, the archive written last (first in the listing): a
    // merged full after the links it replaces, and of archives dated the
    // same (one second, `SOURCE_DATE_EPOCH`) the newest state, not the
    // shortest chain.
    let mut found: Vec<(i64, usize, Vec<usize>)> = (0..listing.archives.len())
        .filter_map(|i| {
            shortest(listing, i, 0, &mut memo).map(|c| (moment(&listing.archives[i]), i, c))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<Point> = Vec::new();
    for (t, _, chain) in found {
        let url = |j: &usize| listing.archives[*j].url.clone();
        match out.last_mut() {
            Some(p) if p.unix_ms == t => p.also.push(url(&chain[0])),
            _ => out.push(Point {
                unix_ms: t,
                time: utc_time_ms(t),
                archive: url(&chain[0]),
                archives: chain.iter().map(url).collect(),
                also: Vec::new(),
            }),
        }
    }
    out
}

/// The archive on `shelf` to restore the newest point at or before
/// `at_ms` from (the newest point without it): candidates newest moment
/// first, and of one moment the one written last first; one is taken when
/// its chain is found and the tree it describes is consistent (as for
/// [`super::latest::newest_restorable`]). Refused, naming the earliest
/// point, when every point is after `at_ms`.
pub fn restorable_at(shelf: &Shelf, bases: &[Location], at_ms: Option<i64>) -> Result<Chosen> {
    let listing = ls(shelf)?;
    let mut memo = vec![None; listing.archives.len()];
    let mut order: Vec<(i64, usize, usize)> = (0..listing.archives.len())
        .map(|i| {
            let len = shortest(&listing, i, 0, &mut memo).map_or(usize::MAX, |c| c.len());
            (moment(&listing.archives[i]), len, i)
        })
        .collect();
    // As `points`: of one moment, the archive written last first.
    order.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)));
    if let Some(at) = at_ms
        && !order.is_empty()
        && order.iter().all(|(t, ..)| *t > at)
    {
        let earliest = order.iter().map(|(t, ..)| *t).min().expect("not empty");
        return Err(Error::Refused(format!(
            "no point in {} at or before {}: the earliest is {}",
            shelf.shown(),
            utc_time_ms(at),
            utc_time_ms(earliest)
        )));
    }
    let mut extra = bases.to_vec();
    extra.extend(listing.archives.iter().map(|l| location_of(shelf, l)));
    let mut skipped = Vec::new();
    for (t, _, i) in order {
        if at_ms.is_some_and(|at| t > at) {
            continue;
        }
        let l = &listing.archives[i];
        let loc = location_of(shelf, l);
        match super::latest::check(&loc, l, &extra) {
            Ok(chain) => return Ok((loc, skipped, chain)),
            Err(e) if super::latest::skip(&e) => skipped.push((l.url.clone(), e.to_string())),
            Err(e) => return Err(e),
        }
    }
    Err(Error::NoneRestorable {
        shelf: shelf.shown(),
        skipped,
    })
}

/// A time given as RFC 3339 (`2026-12-05T01:02:03Z`, fractions of a
/// second and `+HH:MM` offsets taken) or back from `now_ms` (`-15m`,
/// `-30s`, `-2h`, `-7d`): ms since the epoch.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64> {
    let bad = || {
        Error::Refused(format!(
            "{s:?} is not a time: give RFC 3339 (2026-12-05T01:02:03Z) or a time back from now (-15m, -2h, -7d)"
        ))
    };
    if let Some(rel) = s.strip_prefix('-') {
        let (n, unit) = rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
        let n: i64 = n.parse().map_err(|_| bad())?;
        let ms = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        return n
            .checked_mul(ms)
            .and_then(|d| now_ms.checked_sub(d))
            .ok_or_else(bad);
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Result<i64> {
        let t = s.get(r).ok_or_else(bad)?;
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let (y, mo, d, h, mi, se) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days_in = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=12).contains(&mo) || d < 1 || d > days_in || h > 23 || mi > 59 || se > 59 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    let mut frac_ms = 0;
    if let Some(f) = rest.strip_prefix('.') {
        let digits = f.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let ms3: String = f[..digits].chars().chain("000".chars()).take(3).collect();
        frac_ms = ms3.parse::<i64>().map_err(|_| bad())?;
        rest = &f[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':' =>
        {
            let oh = num(s.len() - 5..s.len() - 3)?;
            let om = num(s.len() - 2..s.len())?;
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
        _ => return Err(bad()),
    };
    // Days from civil (Howard Hinnant's algorithm).
    let (yy, mm) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * mm + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_min * 60;
    Ok(secs * 1000 + frac_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::retention::utc_time;

    #[test]
    fn times_parse() {
        let now = 1_796_428_800_000; // 2026-12-05T00:00:00Z
        assert_eq!(utc_time(now), "2026-12-05T00:00:00Z");
        assert_eq!(parse_time("2026-12-05T00:00:00Z", 0).unwrap(), now);
        assert_eq!(
            parse_time("2026-12-05T01:02:03.5Z", 0).unwrap(),
            now + 3_723_500
        );
        assert_eq!(parse_time("2026-12-05T01:00:00+01:00", 0).unwrap(), now);
        assert_eq!(parse_time("2026-12-04T23:00:00-01:00", 0).unwrap(), now);
        assert_eq!(parse_time("1970-01-01T00:00:00Z", 0).unwrap(), 0);
        assert_eq!(
            parse_time("2000-02-29T12:00:00Z", 0).unwrap(),
            951_825_600_000
        );
        assert_eq!(parse_time("-15m", now).unwrap(), now - 900_000);
        assert_eq!(parse_time("-2h", now).unwrap(), now - 7_200_000);
        assert_eq!(parse_time("-7d", now).unwrap(), now - 604_800_000);
        assert_eq!(parse_time("-30s", now).unwrap(), now - 30_000);
        for bad in [
            "",
            "yesterday",
            "-15",
            "-m",
            "-15y",
            "2026-12-05",
            "2026-12-05T00:00:00",
            "2026-13-05T00:00:00Z",
            "2026-12-05T24:00:00Z",
            "2026-12-05T00:00:00+0100",
        ] {
            let e = parse_time(bad, now).unwrap_err().to_string();
            assert!(e.contains("is not a time"), "{bad}: {e}");
        }
    }
}
