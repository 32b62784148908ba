#!/bin/bash
# Either end of a migration killed (-9) at the worst moment: the source
# guest suspended, the final round half sent (the destination was stopped,
# so the stream backs up).
#   - xtk-save dies: xtk-hv resumes the guest its dead save left suspended
#     (the suspend guard) and it runs on; the destination, seeing the
#     stream end, destroys the half-restored domain.
#   - xtk-restore dies: the source sees the connection break, resumes its
#     guest and fails; xtk-hv destroys the destination's empty domain
#     when the restore's connection dies.
#   - checkpointing, xtk-save dies: the destination holds its last
#     complete checkpoint, not running it, and stands down on SIGTERM.
# Also during pre-copy (the guest running): the same.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"
dst() { XTK_RUNDIR=$work/run-dst "$@"; }

# A guest with 48 MiB of data: more than the socket buffers hold.
"$xtk" create -n g -m 64 -w dirty -P 12288 -r 0 --no-store >/dev/null
check g
sleep 0.5 # a pass over the working set

# Starts a destination on port $1 and stops it before it reads anything
# (the kernel still accepts the connection), then a non-live save to it:
# returns when the source guest sits suspended with the save blocked.
stalled_migration() {
  local port=$1
  XTK_RUNDIR=$work/run-dst "$xrestore" -q -t 60000 --stats-json dst.json \
    listen:127.0.0.1:$port > /dev/null 2> dst.err &
  restore_pid=$!
  bg_pids+=($restore_pid)
  wait_listen $port
  kill -STOP $restore_pid
  "$xsave" -q -t 60000 g tcp:127.0.0.1:$port 2> src.err &
  save_pid=$!
  bg_pids+=($save_pid)
  wait_info g suspended yes
  sleep 0.3
  "$xtk" info g | grep -q "^suspended: *yes" || fail "the save did not stall"
  kill -0 $save_pid || fail "the save ended: $(cat src.err)"
}

# 1. xtk-save killed while the guest is suspended; the destination then
#    reads what was sent (it creates the domain, fills some memory) and
#    finds the stream cut.
stalled_migration 4601
kill -9 $save_pid
wait $save_pid 2>/dev/null || true
wait_info g suspended no
check g
# (the line comes once the guest works again, after its status says so)
console_has g "xtk-guest: suspended (.*), resumed"
[ "$("$xtk" console g | grep -c "xtk-guest: suspended (.*), resumed")" = 1 ] || fail "g did not resume once"
kill -CONT $restore_pid
if wait $restore_pid; then fail "the restore of a cut stream succeeded"; fi
# It had created the domain and taken pages when the stream was cut, said
# so, and destroyed the domain.
grep -qE "stream (truncated|ended) at offset" dst.err ||
  { cat dst.err >&2; fail "the restore did not say the stream was cut"; }
python3 - dst.json <<'PY' || fail "the destination's report: $(cat dst.json)"
import json, sys
r = json.load(open(sys.argv[1]))
phases = [p["name"] for p in r["phases"]]
for want in ["domain created", "first page", "domain destroyed"]:
    assert want in phases, (want, phases)
assert r["counters"].get("pages with data", 0) > 0, r["counters"]
PY
dst wait_none

# 2. xtk-restore killed while the source guest is suspended.
stalled_migration 4602
kill -9 $restore_pid
wait $restore_pid 2>/dev/null || true
if wait $save_pid; then fail "the save to a dead destination succeeded"; fi
grep -qE "went away|reset|Broken pipe" src.err || { cat src.err >&2; fail "no reason"; }
wait_info g suspended no
check g
[ "$(domains)" = 1 ] || fail "the source is gone"
dst wait_none

# 3. A checkpointed live migration (epochs every 50 ms, for ever): the
#    destination holds an empty domain, buffering epochs.
checkpointed_migration() {
  local port=$1
  XTK_RUNDIR=$work/run-dst "$xrestore" -q -v -t 60000 listen:127.0.0.1:$port > dst.id 2> dst.err &
  restore_pid=$!
  bg_pids+=($restore_pid)
  wait_listen $port
  "$xsave" -q -l -I 50 g tcp:127.0.0.1:$port 2> src.err &
  save_pid=$!
  bg_pids+=($save_pid)
  dst wait_info g empty yes
  # Two complete checkpoints at the destination (however slow the machine).
  for _ in $(seq 600); do
    [ "$(grep -c "CHECKPOINT: epoch [0-9]* complete" dst.err)" -ge 2 ] && break
    kill -0 $save_pid 2>/dev/null || break
    sleep 0.05
  done
  [ "$(grep -c "CHECKPOINT: epoch [0-9]* complete" dst.err)" -ge 2 ] ||
    fail "no two checkpoints arrived: $(tail -3 dst.err)"
  kill -0 $save_pid || fail "the save ended: $(cat src.err)"
}

#    xtk-restore killed: the source resumes, the empty domain goes.
checkpointed_migration 4603
kill -9 $restore_pid
if wait $save_pid; then fail "the live save to a dead destination succeeded"; fi
wait_info g suspended no
check g
dst wait_none

# 4. ...and xtk-save killed: the source resumes (the guard), and the
#    destination holds its last complete checkpoint without running it
#    (the source runs: tests/engine/checkpoint-ha.sh has the rest).
checkpointed_migration 4604
kill -9 $save_pid
wait $save_pid 2>/dev/null || true
wait_until "the destination did not hold" grep -q "holding checkpoint" dst.err
wait_info g suspended no
check g
dst info_is g empty yes || fail "the destination runs a copy"
kill -TERM $restore_pid
if wait $restore_pid; then fail "the destination stood down with success"; fi
dst wait_none
echo ok
