#!/usr/bin/env bash
# Runs the side-by-side benchmark (see bench/compare.py for options).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 bench/compare.py "$@"
