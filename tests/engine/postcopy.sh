#!/bin/bash
# Post-copy migration (xtk-save --postcopy, issue 13): the guest runs on
# the destination before its memory is there, each frame it touches first
# fetched from the source on the spot.
#   1. a 64 MiB hot set rewritten flat out, at a 64 MiB/s cap (pre-copy
#      never converges): --postcopy switches after the first round (the
#      destination takes the frames to come out of its memory before the
#      stop), the guest passes its self-check there, pages were asked
#      for; the source is gone.  --postcopy=auto switches by itself,
#      saying why;
#   2. the source killed during the post-copy: the destination destroys
#      its domain (it would run on missing memory); the source's copy
#      stays suspended as at the switch, whole (its self-check passes),
#      and runs again on `xtk unpause`;
#   3. the destination killed: its xtk-hv destroys the domain, the source
#      says so and keeps its copy suspended;
#   4. the link cut (two network namespaces, the veth down): both ends
#      give up after the peer timeout, as in 2;
#   5. refusals: --postcopy without --live, to a file, with checkpoints.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"
port=$((20000 + $$ % 20000))
dst_run=$work/run-dst

drun() { XTK_RUNDIR=$dst_run "$@"; }

# Starts the destination (its stderr in NAME.err, report in NAME.json):
# its pid in $rpid.
listen() {
  XTK_RUNDIR=$dst_run "$xrestore" -v -J "$1.json" --peer-timeout 2000 \
    listen:127.0.0.1:$port > "$1.id" 2> "$1.err" &
  rpid=$!
  bg_pids+=("$rpid")
  wait_listen $port
}

hot() {
  "$xtk" create -n "$1" -m 256 -w dirty -P 16384 -r "${2:-0}" --no-store >/dev/null
  check "$1"
}

# The source's copy: there, paused for good (not running), whole; a
# while later still (nothing resumes it behind the test's back).
source_kept() {
  "$xtk" list > list.out
  grep -q "^$1 .* rp" list.out ||
    { cat list.out >&2; fail "$1: the source's copy is not kept paused"; }
  "$xtk" check "$1" >/dev/null || fail "$1: the source's copy is not whole"
  sleep 0.5
  "$xtk" list > list.out
  grep -q "^$1 .* rp" list.out ||
    { cat list.out >&2; fail "$1: the source's copy runs again"; }
}

# --- 1. a migration that pre-copy cannot finish -----------------------------
hot pc1
listen pc1
# (the push held to 64 MiB/s, a second for the hot set: unheld it
# is done in 80 ms, and a vCPU kept off the CPU that long by the tests
# beside this one on two CPUs would fault nothing)
"$xsave" -v -l -p -b 64M --postcopy-bandwidth 64M -J src1.json pc1 \
  tcp:127.0.0.1:$port 2> src1.err ||
  { cat src1.err pc1.err >&2; fail "the post-copy migration failed"; }
wait "$rpid" || { cat pc1.err >&2; fail "xtk-restore failed"; }
[ "$(domains)" = 0 ] || fail "the source is still there"
drun check pc1
grep -q "switch to post-copy after 1 rounds" src1.err ||
  fail "no switch after the first round: $(cat src1.err)"
python3 - src1.json pc1.json <<'PY' || fail "the reports"
import json, sys
s, d = (json.load(open(f)) for f in sys.argv[1:])
sp = {p["name"]: p["ns"] for p in s["phases"]}
dp = {p["name"]: p["ns"] for p in d["phases"]}
for want in ["post-copy prepare sent", "destination prepared",
             "suspend requested", "post-copy switch sent",
             "destination running", "last page sent", "end sent",
             "reply received", "source destroyed"]:
    assert want in sp, want
for want in ["post-copy frames discarded ahead", "post-copy switch received",
             "resumed", "memory complete", "reply sent"]:
    assert want in dp, want
# the frames went out of the destination's memory before the guest stopped
assert dp["post-copy frames discarded ahead"] < sp["suspend requested"], \
    (dp, sp)
# one host, one clock: the guest ran there before its memory was in
assert dp["resumed"] < dp["memory complete"], dp
assert sp["destination running"] < sp["last page sent"], sp
sc, dc = s["counters"], d["counters"]
frames = sc["postcopy frames"]
# a good part of the hot set (how much the guest dirties in the first
# round depends on the host: kvm-pvm's write faults after each dirty-log
# reset made it 7,200-7,500 of 16,384 on one machine, all on another)
assert frames >= 2048, sc
assert dc["postcopy frames"] == frames, (dc, sc)
assert sc["postcopy pages asked"] + sc["postcopy pages pushed"] == frames, sc
assert dc["postcopy pages faulted"] > 0 and sc["postcopy requests"] > 0, dc
assert dc["postcopy pages faulted"] + dc["postcopy pages pushed"] == frames, dc
sh = {h["name"]: h for h in s["histograms"]}
dh = {h["name"]: h for h in d["histograms"]}
assert sh["downtime"]["count"] == 1 and dh["postcopy fault service"]["count"] \
    == dc["postcopy pages faulted"], (sh.keys(), dh.keys())
assert sh["postcopy request service"]["count"] == sc["postcopy pages asked"]
PY

hot pc1a
listen pc1a
# (a 50 ms downtime target: the 300 ms default was met, with no switch,
# by the 4,161 pages a slow host's guest dirtied in a round under ASan;
# 32 MiB/s: at 64 a CI run's guest under ASan dirtied ~61 MiB/s, and the
# rounds converged to 11 pages)
"$xsave" -v -l --postcopy=auto -b 32M -D 50 pc1a tcp:127.0.0.1:$port \
  2> src1a.err ||
  { cat src1a.err pc1a.err >&2; fail "the auto post-copy migration failed"; }
wait "$rpid" || fail "xtk-restore (auto) failed"
grep -q "switch to post-copy after .*not converging" src1a.err ||
  fail "auto: no switch, or no reason: $(cat src1a.err)"
drun check pc1a
drun "$xtk" destroy pc1 >/dev/null
drun "$xtk" destroy pc1a >/dev/null

# Waits until the save (stderr FILE) has switched, the domain running
# there with memory still to come.
switched() {
  wait_until "no switch: $(cat "$1" "$2")" grep -q "follow the switch" "$1"
  wait_until "not running there: $(cat "$2")" \
    grep -q "runs; .* frames of its memory" "$2"
}

# --- 2. the source killed during the post-copy (each stop method: the
# pause method's stop is a hold that ends with xtk-save's connection) ------
for method in evtchn pause; do
  hot pc2 20000
  listen pc2
  XTK_FAULT_POSTCOPY_SLOW=100000 "$xsave" -v -l -p -s $method pc2 \
    tcp:127.0.0.1:$port 2> src2.err &
  spid=$!
  bg_pids+=("$spid")
  switched src2.err pc2.err
  kill -9 "$spid"
  wait "$rpid" && fail "the destination ran on after its source died"
  grep -q "destroyed (the source keeps its copy" pc2.err ||
    fail "pc2: no clear error: $(cat pc2.err)"
  wait_until "pc2 left at the destination" sh -c \
    "[ \"\$(XTK_RUNDIR=$dst_run '$xtk' list | awk 'NR > 1' | wc -l)\" = 0 ]"
  source_kept pc2
  "$xtk" unpause pc2
  check pc2
  "$xtk" destroy pc2 >/dev/null
done

# --- 3. the destination killed ------------------------------------------------
hot pc3 20000
listen pc3
XTK_FAULT_POSTCOPY_SLOW=100000 "$xsave" -v -l -p pc3 tcp:127.0.0.1:$port 2> src3.err &
spid=$!
bg_pids+=("$spid")
switched src3.err pc3.err
kill -9 "$rpid"
wait "$spid" && fail "the save succeeded without its destination"
grep -q "stays paused here" src3.err || fail "pc3: no clear error: $(cat src3.err)"
wait_until "pc3 left at the destination" sh -c \
  "[ \"\$(XTK_RUNDIR=$dst_run '$xtk' list | awk 'NR > 1' | wc -l)\" = 0 ]"
source_kept pc3
"$xtk" destroy pc3 >/dev/null

# --- 4. the link cut ------------------------------------------------------------
src=xtk-pcs-$$ dst=xtk-pcd-$$ net=10.$((100 + $$ % 100)).$(($$ % 250)).
netns_pair $src $dst ps$$ pd$$ $net
hot pc4 20000
XTK_RUNDIR=$dst_run ip netns exec $dst "$xrestore" -v --peer-timeout 2000 \
  listen:${net}2:$port > pc4.id 2> pc4.err &
rpid=$!
bg_pids+=("$rpid")
ip netns exec $dst bash -c "$(declare -f wait_listen fail); wait_listen $port"
ip netns exec $src env XTK_FAULT_POSTCOPY_SLOW=100000 "$xsave" -v -l -p \
  --peer-timeout 2000 pc4 tcp:${net}2:$port 2> src4.err &
spid=$!
bg_pids+=("$spid")
switched src4.err pc4.err
ip -n $dst link set pd$$ down
wait "$rpid" && fail "the destination ran on without its link"
grep -q "destroyed (the source keeps its copy" pc4.err ||
  fail "pc4: no clear error at the destination: $(cat pc4.err)"
wait "$spid" && fail "the save succeeded without its link"
grep -q "stays paused here" src4.err ||
  fail "pc4: no clear error at the source: $(cat src4.err)"
wait_until "pc4 left at the destination" sh -c \
  "[ \"\$(XTK_RUNDIR=$dst_run '$xtk' list | awk 'NR > 1' | wc -l)\" = 0 ]"
source_kept pc4
"$xtk" destroy pc4 >/dev/null

# --- 5. refusals ------------------------------------------------------------------
"$xtk" create -n pc5 -m 16 -w idle --no-store >/dev/null
for args in "-p pc5 tcp:127.0.0.1:$port" "-l -p pc5 pc5.xtk" \
  "-l -p -I 100 pc5 tcp:127.0.0.1:$port" "-l --postcopy=now pc5 tcp:127.0.0.1:$port" \
  "-l -p --postcopy-bandwidth 1K pc5 tcp:127.0.0.1:$port"; do
  # shellcheck disable=SC2086
  "$xsave" $args 2> pc5.err && fail "xtk-save $args succeeded"
  grep -q "postcopy" pc5.err || fail "xtk-save $args: $(cat pc5.err)"
done
[ ! -e pc5.xtk ] || fail "a refused post-copy left a file"
"$xtk" list > list.out
grep -q "^pc5 .* r---" list.out || fail "pc5 does not run on"
exit 0
