#!/bin/sh
# Runs the seeded model-based chain test (tests/cli/chain_model/) over
# many seeds and summarizes the failures by class.
#
#   bench/chain-sweep.sh                  # 500 seeds from 1, 12 steps, release
#   SEEDS=200 START=1000 STEPS=20 bench/chain-sweep.sh
#   ALL=1 bench/chain-sweep.sh            # also generate KNOWN_DEFECTS
#   PROFILE=dev bench/chain-sweep.sh      # debug build (no release compile)
#
# Each failing seed prints its history and the command output; the last
# lines (FAIL ...) are one per seed, grouped below by what failed.
set -u
cd "$(dirname "$0")/.."
SEEDS=${SEEDS:-500}
START=${START:-1}
STEPS=${STEPS:-12}
ALL=${ALL:-0}
PROFILE=${PROFILE:-release}
LOG=${LOG:-target/chain-sweep.log}
mkdir -p target
if [ "$PROFILE" = release ]; then set -- --release; else set --; fi
SYDRA_CHAIN_SEEDS=$SEEDS SYDRA_CHAIN_SEED_START=$START SYDRA_CHAIN_STEPS=$STEPS \
SYDRA_CHAIN_ALL_DEFECTS=$ALL \
  cargo test "$@" --test cli chain_model::chain_model -- --exact --nocapture >"$LOG" 2>&1
rc=$?
echo "exit $rc; full log: $LOG"
echo "failures by class (count, then the first seed of each):"
grep '^FAIL ' "$LOG" | sed -E 's/^FAIL chain_model seed [0-9]+ FAILED: //; s/#[0-9]+ [^ ]+//g; s/[0-9]{6,}/N/g; s/L{8,}/L.../g' \
  | sort | uniq -c | sort -rn
grep '^FAIL ' "$LOG" | head -50
exit $rc
