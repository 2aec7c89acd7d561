//! Randomized differential test of `watch --levels` (`plan.rs`): seeded
//! histories of a destination over simulated days (points every tick or
//! after quiet hours, failed points, expiries held by a lock, fulls by
//! `--full-every`), each checked against a plain model: the list of every
//! moment ever shipped. After every tick: every archive's chain is
//! there, no restore reads more than `max_chain` archives, the newest
//! point and every point younger than the first `--keep` are there, and
//! a restore at any time T gives a moment no older than the newest one
//! shipped before T's window of each level still kept.

use std::time::Duration;

use super::plan::{Choice, Levels, Node, choose, keep};
use crate::sydradb::fixture::Rng;

/// One history's settings.
#[derive(Debug)]
struct Setup {
    levels: Levels,
    every_ms: i64,
    ticks: u64,
    max_chain: u64,
    full_every: Duration,
    /// Chance that something changed at a tick (outside quiet spells).
    busy: f64,
    /// Ticks with no change at all, besides random quiet spells.
    quiet: std::ops::Range<u64>,
}

fn d(s: u64) -> Duration {
    Duration::from_secs(s)
}

const M: u64 = 60;
const H: u64 = 3_600;
const DAY: u64 = 24 * H;

/// The destination: archives with ids, their bases by id.
struct Dest {
    ids: Vec<u64>,
    nodes: Vec<Node>,
    base_id: Vec<Option<u64>>,
    /// Archives that may be its base too, as the listing cannot tell
    /// (encrypted, listed without their digest).
    also: Vec<Vec<u64>>,
}

impl Dest {
    fn position(&self, id: u64) -> Option<usize> {
        self.ids.iter().position(|&i| i == id)
    }
}

/// Runs one history; what was uploaded against what was written (the
/// incrementals' bytes over the bytes written), for the record.
fn run(seed: u64, s: &Setup) -> f64 {
    let mut rng = Rng(seed);
    let t0: i64 = 1_780_000_000_000 + rng.below(DAY * 1000) as i64;
    let mut dest = Dest {
        ids: vec![],
        nodes: vec![],
        base_id: vec![],
        also: vec![],
    };
    // Every moment shipped, and the bytes written up to each tick.
    let mut shipped: Vec<i64> = vec![];
    let mut written_at: Vec<(i64, u64)> = vec![(t0 - 1, 0)];
    let (mut written, mut carried, mut next_id, mut quiet_until) = (0u64, 0u64, 0u64, 0i64);
    let longest_keep = *s.levels.keep.iter().max().unwrap();
    for tick in 0..s.ticks {
        let now = t0 + tick as i64 * s.every_ms;
        if now >= quiet_until && rng.chance(0.0005) {
            quiet_until = now + rng.below(2 * DAY * 1000) as i64;
        }
        let changed = now >= quiet_until && !s.quiet.contains(&tick) && rng.chance(s.busy);
        if changed {
            written += 1 + rng.below(1000);
        }
        written_at.push((now, written));
        // Unchanged since the newest point, or the point failed: nothing.
        if !changed || rng.chance(0.02) {
            continue;
        }
        let choice = choose(
            &dest.nodes,
            &s.levels,
            Some(s.full_every),
            s.max_chain,
            now as u64,
        );
        let (depth, base) = match choice {
            Choice::Full(_) => {
                carried += written;
                (0, None)
            }
            Choice::On(i, depth) => {
                let b = &dest.nodes[i];
                assert!(b.ok, "seed {seed}: a base whose chain is not whole");
                assert_eq!(depth, b.depth + 1, "seed {seed}: depth");
                // Bytes written since the base's moment.
                let at = written_at.partition_point(|(t, _)| *t <= b.moment) - 1;
                carried += written - written_at[at].1;
                (depth, Some(dest.ids[i]))
            }
        };
        assert!(
            depth < s.max_chain,
            "seed {seed} tick {tick}: a point at depth {depth} reads more than {} archives",
            s.max_chain
        );
        // Now and then an archive whose base the listing cannot tell
        // apart from another one of lower depth.
        let mut also = Vec::new();
        if base.is_some() && rng.chance(0.03) {
            let lower: Vec<usize> = (0..dest.nodes.len())
                .filter(|&i| dest.nodes[i].depth < depth)
                .collect();
            if !lower.is_empty() {
                also.push(dest.ids[lower[rng.below(lower.len() as u64) as usize]]);
            }
        }
        let bases = base
            .iter()
            .chain(&also)
            .filter_map(|&b| dest.position(b))
            .collect();
        dest.ids.push(next_id);
        dest.base_id.push(base);
        dest.also.push(also);
        dest.nodes.push(Node {
            moment: now,
            depth,
            bases,
            ok: true,
        });
        next_id += 1;
        shipped.push(now);
        // Expiry, unless a create or prune holds the destination.
        let expired = !rng.chance(0.1);
        if expired {
            let k = keep(&dest.nodes, &s.levels, now as u64);
            let mut it = k.iter();
            dest.ids.retain(|_| *it.next().unwrap());
            let mut it = k.iter();
            dest.nodes.retain(|_| *it.next().unwrap());
            let mut it = k.iter();
            dest.base_id.retain(|_| *it.next().unwrap());
            let mut it = k.iter();
            dest.also.retain(|_| *it.next().unwrap());
            let at: std::collections::HashMap<u64, usize> = dest
                .ids
                .iter()
                .enumerate()
                .map(|(i, &id)| (id, i))
                .collect();
            for i in 0..dest.nodes.len() {
                let b = dest.base_id[i].iter().chain(&dest.also[i]);
                dest.nodes[i].bases = b.filter_map(|b| at.get(b).copied()).collect();
            }
            if shipped.len().is_multiple_of(37) {
                only_what_the_rules_keep(seed, s, &dest, now);
            }
        }
        check(seed, tick, s, &dest, &shipped, now, longest_keep, &mut rng);
    }
    carried as f64 / written.max(1) as f64
}

#[allow(clippy::too_many_arguments)]
fn check(
    seed: u64,
    tick: u64,
    s: &Setup,
    dest: &Dest,
    shipped: &[i64],
    now: i64,
    longest_keep: Duration,
    rng: &mut Rng,
) {
    let at = |what: &str| format!("seed {seed} tick {tick} ({s:?}): {what}");
    // Every chain whole.
    let ids: std::collections::HashSet<u64> = dest.ids.iter().copied().collect();
    for (i, b) in dest.base_id.iter().enumerate() {
        if let Some(b) = b {
            assert!(
                ids.contains(b),
                "{}",
                at(&format!("the base of archive {i} was deleted"))
            );
        }
    }
    if !tick.is_multiple_of(7) {
        return;
    }
    let present: std::collections::BTreeSet<i64> = dest.nodes.iter().map(|n| n.moment).collect();
    assert!(
        present.contains(shipped.last().unwrap()),
        "{}",
        at("the newest point was deleted")
    );
    let age = |t: i64| Duration::from_millis((now - t).max(0) as u64);
    // A restore at T (the newest moment at or before T): with T younger
    // than the first --keep, the newest point shipped at or before T;
    // younger than a level's --keep, no older than the newest point
    // shipped before T's window of that level began.
    if !tick.is_multiple_of(91) {
        return;
    }
    let span = longest_keep.as_millis() as u64;
    // Random times, and just inside each --keep horizon.
    let edges: Vec<i64> = s
        .levels
        .keep
        .iter()
        .map(|k| now - k.as_millis() as i64 + 1)
        .collect();
    for k in 0..50 + edges.len() {
        let t = edges
            .get(k)
            .copied()
            .unwrap_or_else(|| now - rng.below(span.max(1)) as i64);
        let restored = present.range(..=t).next_back().copied();
        let upto = shipped.partition_point(|&m| m <= t);
        if age(t) < s.levels.keep[0] && upto > 0 {
            assert_eq!(
                restored,
                Some(shipped[upto - 1]),
                "{}",
                at(&format!("a restore at {t} ({:?} ago)", age(t)))
            );
        }
        for (every, limit) in s.levels.every.iter().zip(&s.levels.keep[1..]) {
            let w = every.as_millis() as i64;
            let start = t.div_euclid(w) * w;
            let before = shipped.partition_point(|&m| m < start);
            if before == 0 || age(t) >= *limit {
                continue;
            }
            let m = shipped[before - 1];
            assert!(
                restored.is_some_and(|r| r >= m),
                "{}",
                at(&format!(
                    "a restore at {t} gives {restored:?}, older than {m} shipped before its {every:?} window"
                ))
            );
        }
    }
}

/// Right after an expiry, every archive there is one the rules keep,
/// told here the plain way (quadratic, from the definitions): retention
/// deletes what it may, not merely what it must keep.
fn only_what_the_rules_keep(seed: u64, s: &Setup, dest: &Dest, now: i64) {
    let n = &dest.nodes;
    let age = |i: usize| Duration::from_millis((now - n[i].moment).max(0) as u64);
    let newer = |j: usize, i: usize| (n[j].moment, n[j].depth) > (n[i].moment, n[i].depth);
    let mut why: Vec<bool> = (0..n.len())
        .map(|i| {
            let youngest = !(0..n.len()).any(|j| newer(j, i));
            let window = s
                .levels
                .every
                .iter()
                .zip(&s.levels.keep[1..])
                .any(|(e, k)| {
                    let w = e.as_millis() as i64;
                    age(i) < *k
                        && !(0..n.len()).any(|j| {
                            n[j].moment.div_euclid(w) == n[i].moment.div_euclid(w) && newer(j, i)
                        })
                });
            let horizon = s
                .levels
                .keep
                .iter()
                .any(|k| age(i) >= *k && !(0..n.len()).any(|j| age(j) >= *k && newer(j, i)));
            age(i) < s.levels.keep[0] || youngest || window || horizon
        })
        .collect();
    loop {
        let more: Vec<usize> = (0..n.len())
            .filter(|&i| !why[i] && (0..n.len()).any(|j| why[j] && n[j].bases.contains(&i)))
            .collect();
        if more.is_empty() {
            break;
        }
        for i in more {
            why[i] = true;
        }
    }
    if let Some(i) = why.iter().position(|w| !w) {
        panic!(
            "seed {seed}: archive of {} kept for no reason ({s:?})",
            n[i].moment
        );
    }
}

fn setup(rng: &mut Rng) -> Setup {
    let choices: [&[u64]; 5] = [
        &[5 * M, H, DAY],
        &[M, 5 * M, H, DAY],
        &[5 * M, H],
        &[30],
        &[10, 2 * M, 15 * M, 6 * H],
    ];
    let every: Vec<Duration> = choices[rng.below(5) as usize]
        .iter()
        .map(|&x| d(x))
        .collect();
    let n = every.len() as u64;
    let keep = if rng.chance(0.5) {
        None
    } else {
        // Random retention, each level at least its own interval.
        let mut k = vec![d(H / 4 + rng.below(2 * H))];
        k.extend(every.iter().map(|e| *e * (1 + rng.below(30) as u32)));
        Some(k)
    };
    let every_ms = [1000, 10_000, 60_000][rng.below(3) as usize];
    Setup {
        levels: Levels::new(every, keep).unwrap(),
        every_ms,
        // 3 hours at 1 s, a day at 10 s, a week at 1 m.
        ticks: [3 * H, DAY, 7 * DAY][(every_ms / 10_000).min(2) as usize] * 1000 / every_ms as u64,
        max_chain: n + 2 + rng.below(12),
        full_every: d([DAY, 7 * DAY, 3 * H][rng.below(3) as usize]),
        busy: [1.0, 0.5, 0.05][rng.below(3) as usize],
        quiet: 0..0,
    }
}

/// A week of points with `5m,1h,1d`, the documented setup: the bound of
/// 12 archives, and what is uploaded against what is written.
fn a_week(every_ms: i64) -> f64 {
    let s = Setup {
        levels: Levels::new(vec![d(5 * M), d(H), d(DAY)], None).unwrap(),
        every_ms,
        ticks: 7 * DAY * 1000 / every_ms as u64,
        max_chain: 12,
        full_every: d(7 * DAY),
        busy: 1.0,
        quiet: 0..0,
    };
    let amplification = run(1, &s);
    eprintln!("a week at {every_ms} ms points: uploaded/written {amplification:.1}");
    amplification
}

#[test]
fn a_simulated_week_at_1_m_points() {
    assert!(a_week(60_000) < 40.0);
}

/// The same at 10 s points (a minute unoptimized; by hand:
/// `cargo test --release --lib -- --ignored simulated_week`).
#[test]
#[ignore]
fn a_simulated_week_at_10_s_points() {
    assert!(a_week(10_000) < 40.0);
}

/// Random setups over simulated hours to days; `SYDRA_ARCHIVE_LEVEL_SEEDS=A..B`
/// runs others.
#[test]
fn random_histories_keep_every_promise() {
    let seeds = std::env::var("SYDRA_ARCHIVE_LEVEL_SEEDS").unwrap_or_else(|_| "0..10".into());
    let (a, b) = seeds.split_once("..").expect("A..B");
    for seed in a.parse::<u64>().unwrap()..b.parse::<u64>().unwrap() {
        let mut rng = Rng(seed ^ 0x5eed);
        let s = setup(&mut rng);
        run(seed, &s);
    }
}

/// Found by review: a point a minute for 2 days, 8 quiet days, one more
/// point. Retention kept only the new point's chain: a restore a day
/// back gave nothing, though the last busy point was the data dir all
/// along (the newest archive past each horizon is now kept).
#[test]
fn regression_a_quiet_spell_longer_than_every_keep() {
    let s = Setup {
        levels: Levels::new(vec![d(5 * M), d(H), d(DAY)], None).unwrap(),
        every_ms: 60_000,
        ticks: 10 * DAY / M + 2,
        max_chain: 12,
        full_every: d(7 * DAY),
        busy: 1.0,
        quiet: 2 * DAY / M..10 * DAY / M,
    };
    run(7, &s);
}

/// Found by review: a point a minute for 9 days; a restore just inside
/// the 7-day horizon gave a state 2 days older than promised.
#[test]
fn regression_the_keep_horizon() {
    let s = Setup {
        levels: Levels::new(vec![d(5 * M), d(H), d(DAY)], None).unwrap(),
        every_ms: 60_000,
        ticks: 9 * DAY / M,
        max_chain: 12,
        full_every: d(7 * DAY),
        busy: 1.0,
        quiet: 0..0,
    };
    run(8, &s);
}

/// Seed 3 of the random setups failed the promise at a horizon.
#[test]
fn regression_seed_3() {
    let mut rng = Rng(3 ^ 0x5eed);
    let s = setup(&mut rng);
    run(3, &s);
}
