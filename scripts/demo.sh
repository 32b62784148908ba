#!/usr/bin/env bash
# The main job: a live checkpoint of a running guest, restored beside it.
#
#   1. start a built-in guest (KVM) whose workload keeps rewriting memory;
#   2. checkpoint it live to a file, as `xl save -c` does: pre-copy rounds
#      while it runs, a short stop for the final round, and it runs on;
#   3. Xen's own verify-stream-v2 checks the file;
#   4. restore the file as a second domain;
#   5. both run, and the copy's self-check passes (its data, rewritten
#      during the save, is whole); the latency reports of the save and
#      the restore are printed; everything is cleaned up.
#
#   scripts/demo.sh [BUILD_DIR]     (XTK_DEMO_MIB=N for the guest's size)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
builddir=${1:-build}
[ -d "$builddir" ] || builddir=$top/$builddir
builddir=$(cd "$builddir" && pwd)
mib=${XTK_DEMO_MIB:-256}
# Xen's verifier: installed (xen-utils-4.17), or unpacked into the build
# directory by `XTK_DEPS="build demo" scripts/setup.sh` (quickstart demo).
xen_bindir=${XEN_BINDIR:-/usr/lib/xen-4.17/bin}
[ -x "$xen_bindir/verify-stream-v2" ] || [ -n "${XEN_BINDIR:-}" ] ||
  xen_bindir=$builddir/unpacked/usr/lib/xen-4.17/bin
xen_verify=$xen_bindir/verify-stream-v2
for p in xtk xtk-hv xtk-save xtk-restore guests/xtk-guest.elf; do
  [ -e "$builddir/$p" ] || { echo "demo: $builddir/$p is not built (run scripts/setup.sh)" >&2; exit 1; }
done
[ -w /dev/kvm ] || { echo "demo: /dev/kvm is not usable (run as root on a machine with KVM)" >&2; exit 1; }

# A private run directory: the demo's domains are its own.
work=$(mktemp -d /tmp/xtk-demo.XXXXXX)
export XTK_RUNDIR=$work/run XTK_HV=$builddir/xtk-hv XTK_GUEST=$builddir/guests/xtk-guest.elf
xtk=$builddir/xtk
cleanup() {
  for id in $("$xtk" list 2>/dev/null | awk 'NR > 1 {print $2}'); do "$xtk" destroy "$id" || true; done
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n### %s\n' "$*"; }
wait_check() {
  for _ in $(seq 100); do "$xtk" check "$1" >/dev/null 2>&1 && break; sleep 0.05; done
  "$xtk" check "$1"
}

pages=$((mib * 64))  # a quarter of the memory is the working set
step "1. a $mib MiB guest rewriting a $((pages / 256)) MiB working set at 20,000 pages/s"
"$xtk" create -n demo -m "$mib" -w dirty -P "$pages" -r 20000 --no-store >/dev/null
wait_check demo
sleep 1
"$xtk" list

step "2. a live checkpoint to a file (xtk-save --live --checkpoint): the guest runs on"
"$builddir/xtk-save" --live --checkpoint --stats-json "$work/save.json" demo "$work/demo.xtk"
ls -l "$work/demo.xtk" | awk '{print $5, "bytes"}'

step "3. Xen's own verify-stream-v2 checks the file"
if [ -x "$xen_verify" ]; then
  PYTHONPATH=$(dirname "$xen_bindir")/lib/python /usr/bin/python3 "$xen_verify" -i "$work/demo.xtk"
  echo "verify-stream-v2: accepted"
else
  echo "(verify-stream-v2 is not installed: apt-get install xen-utils-4.17)"
fi

step "4. restore it as a second domain (xtk-restore --name demo-copy)"
copy=$("$builddir/xtk-restore" --name demo-copy "$work/demo.xtk")
echo "restored as domain $copy"

step "5. both run; the copy resumed where the checkpoint left it and its self-check passes"
sleep 0.5
"$xtk" list
wait_check demo
wait_check demo-copy
"$xtk" console demo-copy | grep -E "resumed in domain|FAILED" || true
python3 - "$work/save.json" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
h = {x["name"]: x for x in r["histograms"]}
c = r["counters"]
print("save: %d rounds, %d pages sent (%d with data); stop: %s" % (
    len(r["rounds"]), c.get("pages sent", 0), c.get("pages with data", 0),
    ", ".join(k[6:] for k in c if k.startswith("stop: "))))
for name in ("suspend", "final round", "downtime"):
    if name in h:
        print("  %-12s %8.3f ms" % (name, h[name]["max"] / 1e6))
PY
echo "demo: done"
