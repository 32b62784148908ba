#!/bin/bash
# The README's main job (./quickstart.sh demo, scripts/demo.sh) runs: a
# guest checkpointed live, the file accepted by verify-stream-v2, restored
# beside it, both running, the copy's self-check passing, and the reports
# printed.
set -euo pipefail
[ -r /dev/kvm ] || { echo "SKIP: no /dev/kvm" >&2; exit 77; }
out=$(mktemp)
trap 'rm -f "$out"' EXIT
XTK_DEMO_MIB=32 "$top_srcdir/scripts/demo.sh" "$top_builddir" > "$out" 2>&1 || { cat "$out" >&2; exit 1; }
cat "$out" >&2
for want in "verify-stream-v2: accepted" "final round (us)" "== restore ==" \
            "domain 1: self-check passed" "domain 2: self-check passed" \
            "resumed in domain 2" "demo: done"; do
  grep -qF "$want" "$out" || { echo "FAIL: no '$want'" >&2; exit 1; }
done
! grep -q FAILED "$out"
