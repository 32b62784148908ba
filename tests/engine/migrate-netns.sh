#!/bin/bash
# Live migration between two "hosts": two network namespaces joined by a
# veth pair, a real TCP connection between them, and a run directory each
# (XTK_RUNDIR: a host's domains, ids and names).  Under the dirtying
# workload the guest arrives, resumes in its new domain and passes its
# self-check; the source is gone.  The destination runs in a time
# namespace whose CLOCK_MONOTONIC is 10^5 s ahead, as another host's may
# be: the source's report must not mix the two clocks (the downtime is
# made of spans each measured on one clock, and the link's round trip).  A destination that cannot take the
# guest (its name is taken there) says so, and the source runs on.  A
# partition of the link while checkpointing leaves one running copy: the
# primary's, unprotected; the backup holds its last checkpoint.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"
src=xtk-src-$$ dst=xtk-dst-$$ net=10.$((100 + $$ % 100)).$(($$ % 250)).
netns_pair $src $dst xs$$ xd$$ $net

srun() { XTK_RUNDIR=$work/run-src ip netns exec $src "$@"; }
drun() { XTK_RUNDIR=$work/run-dst ip netns exec $dst "$@"; }
port=4567

srun "$xtk" create -n mover -m 64 -w dirty -P 4096 -r 2000 --no-store >/dev/null
XTK_RUNDIR=$work/run-src check mover
drun unshare --time --fork --monotonic 100000 \
  "$xrestore" -q --stats-json dst.json listen:${net}2:$port > dst.id 2> listen.err &
bg_pids+=($!)
drun bash -c "$(declare -f wait_listen fail); wait_listen $port"
srun "$xsave" -q -l --stats-json src.json mover tcp:${net}2:$port 2> save.err ||
  fail "the migration failed: $(cat save.err)"
# Across hosts the stream is in clear: both ends say so (issue 16).
grep -q "warning: listening on ${net}2:$port, where any host" listen.err ||
  fail "no warning from the listener: $(cat listen.err)"
grep -q "warning: the stream to ${net}2:$port is neither authenticated nor encrypted" save.err ||
  fail "no warning from xtk-save: $(cat save.err)"
wait "${bg_pids[-1]}" || fail "xtk-restore failed"
[ "$(XTK_RUNDIR=$work/run-src domains)" = 0 ] || fail "the source is still there"
XTK_RUNDIR=$work/run-dst check mover
XTK_RUNDIR=$work/run-dst console_has mover "resumed in domain $(cat dst.id)"
python3 - src.json dst.json <<'PY' || fail "the reports"
import json, sys
s, d = (json.load(open(f)) for f in sys.argv[1:])
sp = {p["name"] for p in s["phases"]}
for want in ["suspend requested", "suspended notified", "last page sent",
             "end sent", "reply received", "source destroyed"]:
    assert want in sp, want
h = {x["name"]: x for x in s["histograms"]}
for want in ["downtime", "request to reply", "destination end to resumed",
             "link rtt", "final round"]:
    assert want in h and h[want]["count"] == 1, (want, h.keys())
# Every span is one clock's: none of them holds the 10^5 s between them.
for name in h:
    assert h[name]["max"] < 10e9, (name, h[name])
d_, rr = h["downtime"]["max"], h["request to reply"]["max"]
assert h["destination end to resumed"]["max"] <= d_ <= rr, (d_, rr)
dp = {p["name"] for p in d["phases"]}
assert {"domain created", "end received", "resumed", "reply sent"} <= dp, dp
PY

# Another guest of that name, to the same destination, where the name is
# taken now: it refuses, the source runs on, nothing else is left there.
srun "$xtk" create -n mover -m 16 -w idle --no-store >/dev/null
drun "$xrestore" -q listen:${net}2:$port 2> dst.err &
bg_pids+=($!)
drun bash -c "$(declare -f wait_listen fail); wait_listen $port"
if srun "$xsave" -q -l mover tcp:${net}2:$port 2> src.err; then
  fail "migrated onto a taken name"
fi
wait "${bg_pids[-1]}" && fail "xtk-restore took a taken name"
grep -q "exists already" dst.err || { cat dst.err >&2; fail "no reason on dst"; }
grep -q "destination failed" src.err || { cat src.err >&2; fail "no reason on src"; }
XTK_RUNDIR=$work/run-src check mover
XTK_RUNDIR=$work/run-src wait_info mover suspended no
[ "$(XTK_RUNDIR=$work/run-dst domains)" = 1 ] || fail "something was left on dst"
XTK_RUNDIR=$work/run-src "$xtk" destroy mover
XTK_RUNDIR=$work/run-dst "$xtk" destroy mover

# A partition while checkpointing: the link between the two hosts goes
# down (both ends alive, no RST, no FIN: the connection only falls
# silent).  The primary gives its backup up after its peer timeout and
# its guest runs on, unprotected; the backup takes its silent source for
# lost and holds the last complete checkpoint, built and not running
# (never a second copy by itself); the link back, it still holds, and
# stood down (SIGTERM) it leaves nothing.
srun "$xtk" create -n ha -m 32 -w dirty -P 512 --no-store >/dev/null
# (not through drun: $! must be xtk-restore itself, which ip netns exec
# becomes, for the signals below)
XTK_RUNDIR=$work/run-dst ip netns exec $dst \
  "$xrestore" -v --peer-timeout 1000 listen:${net}2:$port > dst.id 2> dst.err &
backup_pid=$!
bg_pids+=($backup_pid)
drun bash -c "$(declare -f wait_listen fail); wait_listen $port"
XTK_RUNDIR=$work/run-src ip netns exec $src \
  "$xsave" -l -I 50 --peer-timeout 1000 ha tcp:${net}2:$port 2> src.err &
primary_pid=$!
bg_pids+=($primary_pid)
epochs() { [ "$(grep -c "CHECKPOINT: epoch [0-9]* complete" dst.err)" -ge "$1" ]; }
wait_until "partition: no 3 checkpoints at the backup: $(tail -2 dst.err)" epochs 3
ip -n $dst link set xd$$ down
if wait_exit $primary_pid; then fail "partition: the primary's save succeeded"; fi
grep -q "the backup is lost (.*the domain runs on here, unprotected" src.err ||
  { cat src.err >&2; fail "partition: the primary did not give its backup up"; }
wait_until "partition: the backup did not take its source for lost: $(tail -2 dst.err)" \
  grep -q "the source is lost (silent for 1000 ms): holding checkpoint" dst.err
XTK_RUNDIR=$work/run-src check ha
XTK_RUNDIR=$work/run-src info_is ha suspended no || fail "partition: the primary's guest is not running"
XTK_RUNDIR=$work/run-dst info_is ha empty yes ||
  fail "partition: the backup's copy is not held: $(XTK_RUNDIR=$work/run-dst "$xtk" info ha)"
ip -n $dst link set xd$$ up
sleep 1 # the link back: the backup stays put
kill -0 $backup_pid || fail "partition: the backup ended by itself: $(tail -3 dst.err)"
XTK_RUNDIR=$work/run-dst info_is ha empty yes || fail "partition: the backup ran its copy"
kill -TERM $backup_pid
if wait $backup_pid; then fail "partition: the backup stood down with success"; fi
XTK_RUNDIR=$work/run-dst wait_none
XTK_RUNDIR=$work/run-src check ha
echo ok
