#!/usr/bin/env bash
# Runs the test suite in a build directory and prints one summary line:
#   N passed, N failed[, N skipped]
# Every skipped test is listed with the reason it gave.  Exits 1 if any test
# failed (or, with XTK_NO_SKIP=1, was skipped).
#
#   scripts/check.sh [BUILD_DIR] [make check arguments...]
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
builddir=${1:-build}
shift || true
if [ -d "$builddir" ]; then cd "$builddir"; else cd "$top/$builddir" || exit 2; fi

rm -f test-suite.log
make -s -j"$(nproc)" check "$@" >check.out 2>&1
rc=$?
grep -E '^(PASS|FAIL|XFAIL|XPASS|SKIP|ERROR):' check.out || true

count() { sed -n "s/^# $1: *//p" test-suite.log 2>/dev/null | head -1; }
pass=$(count PASS); fail=$(count FAIL); err=$(count ERROR); skip=$(count SKIP)
xpass=$(count XPASS); xfail=$(count XFAIL)
pass=$(( ${pass:-0} + ${xfail:-0} ))
fail=$(( ${fail:-0} + ${err:-0} + ${xpass:-0} ))
skip=${skip:-0}
if [ ! -f test-suite.log ]; then
  # The build of the tests itself failed.
  tail -n 40 check.out >&2
  fail=$((fail + 1))
fi

if [ "$skip" -gt 0 ]; then
  echo "skipped tests, and why:" >&2
  for log in $(grep -l '^:test-result: SKIP' $(find . -name '*.trs') 2>/dev/null); do
    t=${log%.trs}
    printf '  %s: %s\n' "$t" "$(grep -m1 '^SKIP:' "$t.log" 2>/dev/null | cut -c7-)" >&2
  done
fi
if [ "$fail" -gt 0 ] && [ -f test-suite.log ]; then
  # Each failed test's own log, its end (the tail of test-suite.log alone
  # showed the last one or two: a CI run's third failure went unseen).
  echo "---- failed test logs ($builddir) ----" >&2
  for log in $(grep -lE '^:test-result: (FAIL|ERROR|XPASS)' $(find . -name '*.trs') 2>/dev/null); do
    t=${log%.trs}
    echo "==> $t.log (what failed, then its last 60 lines) <==" >&2
    grep -m 5 -E '^FAIL:|assertion failed' "$t.log" >&2 2>/dev/null
    tail -n 60 "$t.log" >&2 2>/dev/null
  done
fi

if [ "$skip" -gt 0 ]; then
  echo "$pass passed, $fail failed, $skip skipped"
else
  echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ] || exit 1
[ "$skip" -eq 0 ] || [ "${XTK_NO_SKIP:-0}" != 1 ] || exit 1
[ $rc -eq 0 ] || exit 1
exit 0
