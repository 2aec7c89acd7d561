#!/usr/bin/env bash
# restore --at of the deepest point of a simulated week of
# `watch --levels 5m,1h,1d` (10 s points, --max-chain 12), against the
# restore of a full archive of the same tree.
#
# The chain is the one watch leaves at the end of a week's busiest
# moment: a full archive of the bench's big set, a daily anchor on it
# after 6 simulated days of writes, an hourly one after 23 more hours, a
# 5-minute one after 55 more minutes, then 8 points 10 s apart, each on
# the one before: 12 archives. Restores go to tmpfs (SCRATCH) so that
# the disk's own noise stays out; runs alternate; medians are printed.
#
#     bench/watch-week.sh            # RUNS=3 WORK=target/bench SCRATCH=/dev/shm/sydra-week
#
# Build first: cargo build --release --bins --examples; bench/compare.sh
# makes target/bench/big-720h-10s.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
WORK=${WORK:-target/bench}
SCRATCH=${SCRATCH:-/dev/shm/sydra-week}
R=target/release/sydra-archive
A=target/release/examples/advance
W=$WORK/week
[ -d "$WORK/big-720h-10s" ] || { echo "$WORK/big-720h-10s missing: run bench/compare.sh once first" >&2; exit 1; }
rm -rf "$W" "$SCRATCH"
mkdir -p "$W/dest" "$W/full" "$SCRATCH"
trap 'rm -rf "$SCRATCH"' EXIT
cp -a "$WORK/big-720h-10s" "$W/data"
export SYDRA_ARCHIVE_CACHE_DIR="$W/cache"
ts=$((1748736000 + 720 * 3600))
adv() {
  ts=$("$A" "$W/data" --series 100 --flush 3600 --interval 10 --rotate-mib 64 --seconds "$1" --from-ts "$ts")
}
mk() { # NAME [BASE]
  "$R" create "$W/data" -o "$W/dest/$1.tar.zst" ${2:+--base "$W/dest/$2.tar.zst"} -q
}
echo "== building the week's chain"
mk 0-full
adv $((6 * 86400)); mk 1-day 0-full
adv $((23 * 3600)); mk 2-hour 1-day
adv $((55 * 60)); mk 3-min5 2-hour
prev=3-min5
for i in 1 2 3 4 5 6 7 8; do
  adv 10; mk "4-p$i" "$prev"; prev="4-p$i"
done
"$R" create "$W/data" -o "$W/full/same-tree.tar.zst" -q
at=$("$R" ls "$W/dest" --points --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["points"][0]["time"])')
n=$("$R" ls "$W/dest" --points --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["points"][0]["archives"]))')
echo "newest point $at restores from $n archives (target <= 12)"
du -b "$W"/dest/*.tar.zst "$W/full/same-tree.tar.zst" | awk '{printf "  %12d %s\n", $1, $2}'
chain=() full=()
for r in $(seq "$RUNS"); do
  rm -rf "$SCRATCH/r"; sync
  s=$( { /usr/bin/time -f %e "$R" restore "$W/dest/" "$SCRATCH/r" --at "$at" -q; } 2>&1 )
  chain+=("$s")
  if [ "$r" = 1 ]; then
    rm -rf "$SCRATCH/f"
    "$R" restore "$W/full/same-tree.tar.zst" "$SCRATCH/f" -q
    diff -r "$SCRATCH/r" "$SCRATCH/f" >/dev/null || { echo "the two restores differ" >&2; exit 1; }
    rm -rf "$SCRATCH/f"
  fi
  rm -rf "$SCRATCH/r"; sync
  s=$( { /usr/bin/time -f %e "$R" restore "$W/full/same-tree.tar.zst" "$SCRATCH/r" -q; } 2>&1 )
  full+=("$s")
  echo "  run $r: --at from $n archives ${chain[-1]} s, the full ${full[-1]} s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mc=$(median "${chain[@]}") mf=$(median "${full[@]}")
echo "restore --at (median of $RUNS): $mc s from $n archives, full $mf s: $(python3 -c "print(f'{$mc/$mf:.2f}')")x (target <= 1.2x)"
[ -n "${KEEP:-}" ] || rm -rf "$W"
