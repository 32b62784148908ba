#!/bin/bash
# SMP guests under overcommit (issue 15): every vCPU thread of xtk-hv pinned
# to one host CPU, the built-in guest with 2, 4 and 8 vCPUs, spin-lock and
# idle workloads, checkpointed (10 epochs, 20 ms apart, resumed in place)
# with the guest's own suspend on its event channel; each must pass its
# self-check after.  In the spin workload a vCPU is preempted while it
# holds the guest's lock all the time: the suspend must never wait on it
# forever (a deadline of 60 s per run).  Both ways of stopping the other
# vCPUs: xtk-hv stops them once vCPU 0 says "suspended" (the default) and
# the guest parks them first (apstop=guest).  Then a live save of the
# pinned 8-vCPU spin guest to a file and its restore, which must check out
# and say it resumed.
. "$top_srcdir/tests/engine/engine-lib.sh"
command -v taskset >/dev/null || { echo "SKIP: no taskset" >&2; exit 77; }
cd "$work"

# pin NAME: all of NAME's xtk-hv threads on the first CPU this test may use.
cpu=$(taskset -pc $$ | sed 's/.*: *//; s/[,-].*//')
pin() {
  local pid
  pid=$(pgrep -f -- "xtk-hv .*--name $1 " | head -n 1)
  [ -n "$pid" ] || fail "no xtk-hv for $1"
  taskset -a -pc "$cpu" "$pid" >/dev/null || fail "pinning $1 ($pid)"
  [ "$(ls /proc/"$pid"/task | wc -l)" -gt "${2:-1}" ] ||
    fail "$1: xtk-hv has too few threads"
}

for wl in spin idle; do
  for n in 2 4 8; do
    for how in hv guest; do
      name=$wl$n$how
      args=()
      [ "$how" = guest ] && args=(-a apstop=guest)
      "$xtk" create -n "$name" -m 32 -c "$n" -w "$wl" --no-store \
        "${args[@]}" >/dev/null
      pin "$name" "$n"
      check "$name"
      timeout 60 "$xsave" -q -c -l -I 20 -N 10 --suspend evtchn \
        --stats-json "$name.json" "$name" /dev/null ||
        fail "$name: checkpoints under overcommit (exit $?)"
      check "$name"
      python3 - "$name.json" <<'PY' || fail "$name: the report"
import json, sys
r = json.load(open(sys.argv[1]))
h = {x["name"]: x for x in r["histograms"]}
assert h["suspend"]["count"] == 10, h["suspend"]
PY
      "$xtk" console "$name" | grep -q 'suspended (event channel), resumed' ||
        fail "$name: no resume on its console"
      "$xtk" destroy "$name"
    done
  done
done

# A live save of the pinned 8-vCPU spin guest, and its restore.
"$xtk" create -n spin8 -m 32 -c 8 -w spin --no-store >/dev/null
pin spin8 8
check spin8
timeout 120 "$xsave" -q --live --suspend evtchn spin8 spin8.xtk ||
  fail "live save of the pinned spin8"
[ "$(domains)" = 0 ] || fail "the source is still there"
id=$("$xrestore" -q spin8.xtk) || fail "restore of spin8"
check "$id"
console_has "$id" "resumed in domain $id"
"$xtk" destroy "$id"
echo "PASS: SMP guests under overcommit"
