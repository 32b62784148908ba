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

# One target per CPU at a time: each still gets SECONDS of its own.
jobs=$(nproc)
mkdir -p fuzz-artifacts
# run_one TARGET: fuzzes it on a copy of its seeds; exit status its verdict.
run_one() {
  local t=$1 name seeds work rc
  name=$(basename "$t")
  seeds=$top/tests/fuzz/corpus/$name
  work=$(mktemp -d)
  [ -d "$seeds" ] && cp -r "$seeds/." "$work/"
  echo "fuzz: $name for ${secs}s ($(ls "$work" | wc -l) seeds)" >&2
  ./"$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix=fuzz-artifacts/"$name"- \
    "$work" >"fuzz-$name.log" 2>&1
  rc=$?
  rm -rf "$work"
  return $rc
}

targets=$(make -s print-fuzz-targets)
declare -A pid_of
for t in $targets; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
  run_one "$t" &
  pid_of[$t]=$!
done
pass=0; fail=0
for t in $targets; do
  name=$(basename "$t")
  if wait "${pid_of[$t]}"; then
    pass=$((pass + 1))
    grep -E 'stat::number_of_executed_units|cov:' "fuzz-$name.log" | tail -2 | sed "s/^/  $name: /" >&2
  else
    fail=$((fail + 1))
    echo "FAIL: fuzz $name" >&2
    tail -n 40 "fuzz-$name.log" >&2
  fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
