#!/bin/bash
# Continuous checkpointing to a backup (xtk-save -l -I to xtk-restore
# listen:): at most one copy of the guest runs, whatever goes wrong.
#   1. A quiet link (the interval longer than the backup's peer timeout):
#      heartbeats keep both ends sure of each other: no loss, one copy;
#      the END (SIGINT) moves the guest.
#   2. The primary killed (-9): its guest runs on at the source (the
#      suspend guard); the backup holds the last complete checkpoint,
#      built and not running, until promoted (SIGUSR1, once the source
#      is "fenced": destroyed here) and then runs it.
#   3. The backup stopped (SIGSTOP): the primary declares it lost after
#      its peer timeout and its guest runs on, unprotected; the backup,
#      continued, finds its source gone and holds; SIGTERM stands it
#      down and nothing is left of it.
#   4. The primary stopped, the backup with --failover-timeout: the
#      backup runs the guest by itself; the primary, continued, reads
#      its reply and pauses its own copy: still one running copy.
#   5. An epoch that fails half-way at the backup (XTK_FAULT_EPOCH_APPLY,
#      a guest rewriting 32 MiB flat out): it is undone, the backup
#      leaves its source (which runs on, unprotected) and holds the last
#      complete checkpoint; promoted after the fence, it runs exactly
#      that one (the guest's own check on resume compares every page of
#      its working set with the sequence number it recorded for it).
#   6. A "backup" that takes the stream and never answers (as an
#      xtk-restore older than acknowledgements would): the primary says
#      so when it gives it up, and its guest runs on.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"
dst() { XTK_RUNDIR=$work/run-dst "$@"; }
# Whether domain $1 runs (not suspended, not paused, not empty) here.
runs() {
  "$xtk" info "$1" 2>/dev/null | grep -q "^paused: *no" &&
    "$xtk" info "$1" | grep -q "^suspended: *no" &&
    "$xtk" info "$1" | grep -q "^empty: *no"
}
# runs_soon DOM: it runs within 2 s (a guest resumed a moment ago says
# "suspended" until it has run its own resume path; never resumed, it
# stays so).
runs_soon() {
  local i
  for i in $(seq 40); do
    runs "$1" && return 0
    sleep 0.05
  done
  "$xtk" info "$1" >&2 || true
  return 1
}
copies() {
  local n=0
  runs g && n=$((n + 1))
  dst runs g && n=$((n + 1))
  echo $n
}
# The backup on port $1 with options $2...; $restore_pid.
backup() {
  local port=$1
  shift
  XTK_RUNDIR=$work/run-dst "$xrestore" -v "$@" listen:127.0.0.1:$port \
    >dst.id 2>dst.err &
  restore_pid=$!
  bg_pids+=($restore_pid)
  wait_listen $port
}
# The primary to port $1 with options $2...; $save_pid.
primary() {
  local port=$1
  shift
  "$xsave" -l "$@" g tcp:127.0.0.1:$port 2>src.err &
  save_pid=$!
  bg_pids+=($save_pid)
}
epochs_at_backup() { grep -c "CHECKPOINT: epoch [0-9]* complete" dst.err || true; }
wait_epochs() {
  local i
  for i in $(seq 600); do
    [ "$(epochs_at_backup)" -ge "$1" ] && return 0
    kill -0 $save_pid 2>/dev/null || break
    sleep 0.05
  done
  fail "no $1 checkpoints at the backup: $(tail -3 dst.err) / $(tail -3 src.err)"
}

"$xtk" create -n g -m 64 -w dirty -P 512 --no-store >/dev/null
check g

# 1. The quiet link: epochs every 3 s, the backup's peer timeout 1 s.
backup 4611 --peer-timeout 1000
primary 4611 -I 3000 --peer-timeout 1000
wait_epochs 1
for _ in $(seq 10); do # 5 s: more than one interval, five peer timeouts
  [ "$(copies)" -le 1 ] || fail "quiet link: two copies run"
  sleep 0.5
done
grep -q "lost" dst.err src.err && fail "quiet link: a peer was taken for lost: $(grep lost dst.err src.err)"
kill -INT $save_pid
wait $save_pid || { cat src.err >&2; fail "quiet link: the save failed"; }
wait $restore_pid || { cat dst.err >&2; fail "quiet link: the backup failed"; }
grep -q "heartbeats sent" src.err || fail "quiet link: no heartbeats sent"
grep -qE "^  ack wait" src.err || fail "quiet link: no epoch acknowledged"
dst check g
[ "$(domains)" = 0 ] || fail "quiet link: the source is left"
dst "$xtk" destroy g

"$xtk" create -n g -m 64 -w dirty -P 512 --no-store >/dev/null
check g

# 2. The primary killed: the backup holds, and runs only when promoted.
backup 4612
primary 4612 -I 50
wait_epochs 2
kill -9 $save_pid
wait $save_pid 2>/dev/null || true
lost_said() { grep -q "the source is lost (its stream ended): holding checkpoint" dst.err; }
lost_said || wait_until "the backup did not notice its source's loss" lost_said
wait_info g suspended no
check g
sleep 1 # the backup stays put
dst info_is g empty yes || fail "primary killed: the backup's domain is not held: $(dst "$xtk" info g)"
[ "$(copies)" -le 1 ] || fail "primary killed: two copies run"
kill -0 $restore_pid || fail "primary killed: the backup ended: $(tail -3 dst.err)"
"$xtk" destroy g # the fence
kill -USR1 $restore_pid
wait $restore_pid || { cat dst.err >&2; fail "promoted: the backup failed"; }
grep -q "failing over to the last complete checkpoint" dst.err || fail "promoted: no failover"
dst check "$(cat dst.id)"
dst "$xtk" destroy g

"$xtk" create -n g -m 64 -w dirty -P 512 --no-store >/dev/null
check g

# 3. The backup stopped: the primary carries on unprotected.
backup 4613
primary 4613 -I 50 --peer-timeout 1000
wait_epochs 2
kill -STOP $restore_pid
if wait_exit $save_pid; then fail "backup stopped: the save succeeded"; fi
grep -q "the backup is lost (.*the domain runs on here, unprotected" src.err || { cat src.err >&2; fail "backup stopped: the primary did not say so"; }
check g
runs_soon g || fail "backup stopped: the source does not run"
kill -CONT $restore_pid
wait_until "backup continued: it did not notice its source's loss" \
  grep -q "the source is lost" dst.err
[ "$(copies)" -le 1 ] || fail "backup stopped: two copies run"
kill -TERM $restore_pid
if wait $restore_pid; then fail "backup stood down with success"; fi
dst wait_none
check g

# 4. --failover-timeout: the backup takes over from a stopped primary,
#    which then pauses its own copy.
backup 4614 --failover-timeout 1000
primary 4614 -I 50
wait_epochs 2
kill -STOP $save_pid
wait_exit $restore_pid || { cat dst.err >&2; fail "failover timeout: the backup failed"; }
dst check "$(cat dst.id)"
kill -CONT $save_pid
if wait $save_pid; then fail "failover timeout: the superseded save succeeded"; fi
grep -q "the backup runs the domain" src.err || { cat src.err >&2; fail "failover timeout: the primary did not say so"; }
info_is g paused yes || fail "failover timeout: the source is not paused: $("$xtk" info g)"
sleep 0.5
[ "$(copies)" -le 1 ] || fail "failover timeout: two copies run"
"$xtk" destroy g
dst "$xtk" destroy g

# 5. Epoch 3 fails half-way at the backup.
"$xtk" create -n g -m 64 -w dirty -P 8192 -r 0 --no-store >/dev/null
check g
XTK_FAULT_EPOCH_APPLY=3 backup 4615
primary 4615 -I 50
if wait_exit $save_pid; then fail "torn epoch: the save succeeded"; fi
grep -q "the backup is lost" src.err || { cat src.err >&2; fail "torn epoch: the primary did not say so"; }
grep -q "epoch 3 failed half-way (Input/output error): undone" dst.err ||
  { cat dst.err >&2; fail "torn epoch: not undone"; }
# Half of it was in: undone, not merely never applied.
grep -qE "epoch 3 fails after [1-9][0-9]* of its" dst.err ||
  fail "torn epoch: nothing of it was applied: $(grep FAULT dst.err)"
grep -q "this backup failed .*holding checkpoint 2" dst.err || fail "torn epoch: the backup does not hold"
check g
"$xtk" destroy g # the fence
kill -USR1 $restore_pid
wait_exit $restore_pid || { cat dst.err >&2; fail "torn epoch: the promoted backup failed"; }
dst check "$(cat dst.id)"
dst "$xtk" destroy g

# 6. A peer that never answers.
"$xtk" create -n g -m 64 -w dirty -P 512 --no-store >/dev/null
check g
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 4616)); s.listen(1)
c, _ = s.accept()
while c.recv(1 << 20):
    pass
' &
bg_pids+=($!)
wait_listen 4616
primary 4616 -I 50 --peer-timeout 1000
if wait_exit $save_pid; then fail "silent peer: the save succeeded"; fi
grep -q "the backup is lost .*it never answered: an xtk-restore that does not acknowledge" src.err ||
  { cat src.err >&2; fail "silent peer: not said"; }
check g
runs_soon g || fail "silent peer: the source does not run"
"$xtk" destroy g
echo ok
