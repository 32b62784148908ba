#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzzing build for a bounded time, on a
# copy of its committed seed corpus (tests/fuzz/corpus/<target>/), and
# prints "N passed, N failed".  A crash, leak, timeout or sanitizer report
# fails the target; its reproducer is kept in BUILD_DIR/fuzz-artifacts/.
#
#   scripts/fuzz.sh [BUILD_DIR] [SECONDS_PER_TARGET]
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
builddir=${1:-build-fuzz}
secs=${2:-60}
if [ -d "$builddir" ]; then cd "$builddir"; else cd "$top/$builddir" || exit 2; fi
make -s -j"$(nproc)" fuzz >&2 || { echo "0 passed, 1 failed"; exit 1; }

pass=0; fail=0
mkdir -p fuzz-artifacts
for t in $(make -s print-fuzz-targets); do
  name=$(basename "$t")
  seeds=$top/tests/fuzz/corpus/$name
  work=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds/." "$work/"
  echo "fuzz: $name for ${secs}s ($(ls "$work" | wc -l) seeds)" >&2
  if ./"$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix=fuzz-artifacts/"$name"- \
       "$work" >"fuzz-$name.log" 2>&1; then
    pass=$((pass + 1))
    grep -E 'stat::number_of_executed_units|cov:' "fuzz-$name.log" | tail -2 | sed "s/^/  $name: /" >&2
  else
    fail=$((fail + 1))
    echo "FAIL: fuzz $name" >&2
    tail -n 40 "fuzz-$name.log" >&2
  fi
  rm -rf "$work"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
