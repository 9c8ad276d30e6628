#!/usr/bin/env bash
# Long crash run: kill -9 a real `sluice serve` N times (default 1000) during sustained
# sync produce from separate client connections; after every restart, every acknowledged
# record must be present and intact. CI runs the same test with 20 kill points.
#
#   tools/crash-loop.sh [ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
start=$(date +%s)
SLUICE_CRASH_ITERATIONS="$n" cargo test --release -p sluice-tests --test crash -- --nocapture 2>&1 | grep -E "crash test|test result|panicked|missing|corrupted"
echo "crash-loop: $n kill points in $(( $(date +%s) - start ))s"
