#!/usr/bin/env bash
# Long crash run for views: kill -9 a real `sluice serve` N times (default 200) while
# events stream in and views checkpoint every 100 ms; at the end every view must equal
# its recomputation from offset 0. CI runs the same test with 6 kill points.
#
#   tools/crash-views.sh [KILLS]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200}"
start=$(date +%s)
SLUICE_VIEW_CRASH_KILLS="$n" cargo test --release -p sluice-tests --test views_crash -- --nocapture 2>&1 | grep -E "test result|panicked|after|rows"
echo "crash-views: $n kill points in $(( $(date +%s) - start ))s"
