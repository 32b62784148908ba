#!/bin/bash
# Live migration between two "hosts": two network namespaces joined by a
# veth pair, a real TCP connection between them, and a run directory each
# (XTK_RUNDIR: a host's domains, ids and names).  Under the dirtying
# workload the guest arrives, resumes in its new domain and passes its
# self-check; the source is gone.  The destination runs in a time
# namespace whose CLOCK_MONOTONIC is 10^5 s ahead, as another host's may
# be: the source's report must not mix the two clocks (the downtime is
# made of spans each measured on one clock, and the link's round trip).  A destination that cannot take the
# guest (its name is taken there) says so, and the source runs on.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"
command -v ip >/dev/null || fail "no ip (iproute2)"
src=xtk-src-$$ dst=xtk-dst-$$ net=10.$((100 + $$ % 100)).$(($$ % 250)).
ip netns add $src
cleanup_hooks+=("ip netns del $src")
ip netns add $dst
cleanup_hooks+=("ip netns del $dst")
ip link add xs$$ type veth peer name xd$$
ip link set xs$$ netns $src
ip link set xd$$ netns $dst
ip -n $src addr add ${net}1/24 dev xs$$
ip -n $dst addr add ${net}2/24 dev xd$$
for ns in $src $dst; do ip -n $ns link set lo up; done
ip -n $src link set xs$$ up
ip -n $dst link set xd$$ up

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
echo ok
