#!/bin/bash
# A guest with more RAM than fits below the 32-bit MMIO hole (4.5 GiB: 3
# GiB at guest-physical 0, 1.5 GiB from 4 GiB, guests/abi.h): its frames
# are one range, 0 to N-1, whichever memory slot holds them.  The guest
# keeps a copy of its progress word in RAM's last page, above 4 GiB,
# rewritten with every step: a live save that missed that slot's dirty
# log, or a restore that put a frame where the guest does not look for
# it, fails its self-check.
#   1. created, checked (the host reads the last page as frame N-1);
#   2. saved live, the file through Xen's verify-stream-v2, restored
#      eagerly: the self-check passes;
#   3. saved live again, restored lazily with the fill slowed: pages come
#      in on the guest's first touch, the last one above 4 GiB; the
#      self-check passes;
#   4. migrated live over a socket: the same.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"

"$xtk" create -n big -m 4608 -c 2 -w counter --no-store >/dev/null
check big
"$xtk" list | grep -q '^big .* 4608 ' || fail "xtk list: $("$xtk" list)"

# --- 2. live save, eager restore --------------------------------------------
"$xsave" -q -l big big.xtk || fail "live save"
[ "$(domains)" = 0 ] || fail "the source is still there"
xen_verify big.xtk >verify.out 2>&1 || { cat verify.out >&2; fail "verify-stream-v2"; }
"$xrestore" -q big.xtk >/dev/null || fail "restore"
check big

# --- 3. live save, lazy restore ---------------------------------------------
"$xsave" -q -l big big2.xtk || fail "live save (2)"
# (the fill slowed, 50 ms a run: with ~40 pages of contents it is done in
# 2 ms otherwise, before the guest touches anything; the last page, the
# guest's mirror, is then faulted in by the guest itself)
XTK_FAULT_LAZY_SLOW=50000 "$xrestore" -q -L -J lazy.json big2.xtk >/dev/null ||
  fail "lazy restore"
check big
python3 - lazy.json <<'PY' || fail "lazy report"
import json, sys
r = json.load(open(sys.argv[1]))
c = r["counters"]
assert c["lazy index runs"] > 0, c  # the index after END, over both slots
assert c["lazy pages faulted"] > 0, c
PY

# --- 4. live migration over a socket ----------------------------------------
rm -f port.txt
"$xrestore" -q -n big-dst --port-file port.txt listen:127.0.0.1:0 2>restore.err &
rpid=$!
bg_pids+=("$rpid")
wait_until "no --port-file" test -s port.txt
"$xsave" -q -l big "tcp:127.0.0.1:$(cat port.txt)" || fail "migration"
wait "$rpid" || { cat restore.err >&2; fail "restore from the socket"; }
[ "$(domains)" = 1 ] || fail "domains after the migration: $("$xtk" list)"
check big-dst
"$xtk" destroy big-dst >/dev/null
echo "PASS: bigmem"
