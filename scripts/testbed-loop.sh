#!/usr/bin/env bash
# Runs the Xen testbed (tests/xen/testbed.sh) N times in a row on a loaded
# machine: the rest of the suite (make -j2 check, the testbed left out)
# loops beside it until the last run.  One line per run and per load
# round in OUT/summary; exits 1 if any testbed run failed.
#
#   scripts/testbed-loop.sh BUILD_DIR [N] [OUT]
#
# Use a build of its own (a clean worktree is best): the runs take the
# build's xsd-lite, xen-probe and xtk-xen-guard as they are when each
# starts, and bash reads the scripts as it goes, so nothing under test
# may change meanwhile.  NOLOAD=1 leaves the load out.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: $0 BUILD_DIR [N] [OUT]}" && pwd)
n=${2:-10}
out=${3:-$(mktemp -d /tmp/testbed-loop.XXXXXX)}
mkdir -p "$out"
: >"$out/summary"
rm -f "$out/stop"
echo "testbed-loop: $n runs, logs in $out" >&2
tests=$(printf 'print-tests:\n\t@echo $(TESTS)\n' |
  make -s -C "$build" -f Makefile -f - print-tests | tr ' ' '\n' |
  grep -v testbed | tr '\n' ' ')
load_pid=
if [ -z "${NOLOAD:-}" ]; then
  (
    i=0
    while [ ! -e "$out/stop" ]; do
      i=$((i + 1))
      make -s -C "$build" -j2 check TESTS="$tests" >"$out/load$i.out" 2>&1
      echo "load $i: $(grep -E '^# (PASS|FAIL):' "$build/test-suite.log" | tr '\n' ' ')" >>"$out/summary"
      grep -q '^# FAIL: *[1-9]' "$build/test-suite.log" &&
        cp "$build/test-suite.log" "$out/load$i.test-suite.log"
    done
  ) &
  load_pid=$!
fi
failed=0
for i in $(seq "$n"); do
  s=$(date +%s)
  top_srcdir=$top top_builddir=$build bash "$top/tests/xen/testbed.sh" >"$out/run$i.log" 2>&1
  rc=$?
  [ $rc = 0 ] || failed=$((failed + 1))
  echo "testbed $i: rc $rc, $(($(date +%s) - s)) s, load $(cut -d' ' -f1-3 /proc/loadavg)," \
    "crashes $(grep -c '^XTK-NOTE crash' "$out/run$i.log")," \
    "boots $(grep -c '^testbed: boot [0-9]*: QEMU exited' "$out/run$i.log")," \
    "$(grep -E '^(PASS|FAIL:)' "$out/run$i.log" | tail -1)" | tee -a "$out/summary"
done
touch "$out/stop"
[ -n "$load_pid" ] && wait "$load_pid"
grep '^load' "$out/summary"
echo "testbed-loop: $((n - failed)) of $n runs passed"
[ "$failed" = 0 ]
