#!/usr/bin/env bash
# The main job: what xtk can do today, with its latency report.
# (Grows into: live-checkpoint a built-in guest and print the report.)
#
# Today: write a checkpointed migration stream of a synthetic 256 MiB guest
# with libxtk's record writer, check it with Xen's own verify-stream-v2 and
# with xtk's stricter verifier, do the same through the zlib layer, and
# print the latency report of each step.
#
#   scripts/demo.sh [BUILD_DIR]     (XTK_DEMO_PAGES=N to change the size)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
builddir=${1:-build}
[ -d "$builddir" ] || builddir=$top/$builddir
tool=$builddir/tools/xtk-stream
pages=${XTK_DEMO_PAGES:-65536}
checkpoints=5
xen_verify=${XEN_BINDIR:-/usr/lib/xen-4.17/bin}/verify-stream-v2
[ -x "$tool" ] || { echo "demo: $tool is not built (run scripts/setup.sh)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n### %s\n' "$*"; }

step "1. libxtk writes a stream: $pages pages ($((pages / 256)) MiB), round 0 then $checkpoints checkpointed epochs"
"$tool" synth -o "$work/demo.xtk" -n "$pages" -c "$checkpoints" --json "$work/synth.json"

step "2. Xen's own verify-stream-v2 checks it"
if [ -x "$xen_verify" ]; then
  PYTHONPATH=/usr/lib/xen-4.17/lib/python /usr/bin/python3 "$xen_verify" -i "$work/demo.xtk"
  echo "verify-stream-v2: accepted"
else
  echo "(verify-stream-v2 is not installed: apt-get install xen-utils-4.17)"
fi

step "3. xtk's stricter verifier reads it back"
"$tool" verify -i "$work/demo.xtk"

step "4. the same stream through the zlib layer (gzip, level 1)"
"$tool" synth -q -z1 -o "$work/demo.xtk.gz" -n "$pages" -c "$checkpoints"
echo "compressed $(stat -c %s "$work/demo.xtk") -> $(stat -c %s "$work/demo.xtk.gz") bytes"
"$tool" verify -q -i "$work/demo.xtk.gz"
zcat "$work/demo.xtk.gz" | cmp - "$work/demo.xtk"
echo "decompressed stream is byte-identical to the plain one"

step "5. the report of step 1 as JSON (schema xtk-stats/1, see xtk_stats(3))"
head -c 400 "$work/synth.json"; echo " ..."
