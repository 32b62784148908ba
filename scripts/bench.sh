#!/usr/bin/env bash
# Builds the benchmarks (make bench) and runs each one with its defaults.
# Figures and the commands behind them: docs/benchmarks.md.
#
#   scripts/bench.sh [BUILD_DIR]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
builddir=${1:-build}
[ -d "$builddir" ] || builddir=$top/$builddir
make -s -C "$builddir" bench
for b in $(make -s -C "$builddir" print-bench-programs); do
  echo "== $b"
  "$builddir/$b"
done
