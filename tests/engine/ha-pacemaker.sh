#!/bin/bash
# The OCF agent (ha/xtk) under a real Pacemaker + Corosync from Debian's
# packages: a one-node cluster running both instances of the promotable
# clone (globally unique, each with its own run directory and port, as
# two hosts would have), as ../shared/reference/ha.md section 5 measured.
#   1. The agent alone: its meta-data passes the OCF schema
#      (metadata.rng) and ocf-tester passes it; its monitor takes a guest
#      paused for a moment (a checkpoint's stop) for one that runs.
#   2. The cluster promotes one instance (the guest is created there) and
#      the other receives its checkpoints, over TLS with a pre-shared key
#      (the agent's tls_psk and tls_authz).
#   3. The primary "host" dies (xtk-save and the domain killed -9):
#      Pacemaker sees the promoted instance fail and promotes the other,
#      which runs its last checkpoint (the guest's self-check passes);
#      the failed instance is started again as the backup and the new
#      primary checkpoints to it.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"
for p in corosync pacemakerd cibadmin crm_mon crm_resource ocf-tester xmllint; do
  command -v $p >/dev/null || fail "no $p (scripts/deps.txt, [test])"
done
agent=$top_srcdir/ha/xtk

# 1. The agent alone.
"$agent" meta-data >meta.xml
xmllint --noout --relaxng /usr/share/resource-agents/metadata.rng meta.xml 2>rng.err ||
  fail "meta-data against the OCF schema: $(cat rng.err)"
ocf-tester -n xtkt -o domain=t -o "addresses=xtkt=127.0.0.1:4861 other=127.0.0.1:4862" \
  -o "create=-m 32 -w counter --no-store" -o "rundir=$work/ot-run-%k" \
  -o "statedir=$work/ot-state-%k" -o "bindir=$top_builddir" \
  -o interval=100 -o peer_timeout=1000 "$agent" >ocf-tester.out 2>&1 ||
  { cat ocf-tester.out >&2; fail "ocf-tester"; }
grep -q "passed all tests" ocf-tester.out || fail "ocf-tester: $(tail -3 ocf-tester.out)"

# The monitor of a promoted instance whose guest is paused for a moment,
# as each checkpoint's stop pauses it: it runs (191: no backup here, so
# unprotected), not failed (9, which had the cluster stop it); paused for
# good, failed.  (Its checkpointing, started by the monitor towards a peer
# that is not there, killed after.)
mon() {
  OCF_RESOURCE_INSTANCE=mt:0 OCF_RESKEY_domain=mt \
    OCF_RESKEY_addresses="0=127.0.0.1:4863 1=127.0.0.1:4864" \
    OCF_RESKEY_rundir="$work/run-mt-%k" OCF_RESKEY_statedir="$work/state-mt-%k" \
    OCF_RESKEY_bindir="$top_builddir" "$agent" monitor 2>>mon.err
}
cleanup_hooks+=("pkill -9 -f -- 'xtk-save .* mt tcp:127.0.0.1:4864' 2>/dev/null; true")
XTK_RUNDIR=$work/run-mt-0 "$xtk" create -n mt -m 16 -w idle --no-store >/dev/null
mkdir -p "$work/state-mt-0"
touch "$work/state-mt-0/promoted"
XTK_RUNDIR=$work/run-mt-0 "$xtk" pause mt
(sleep 0.3; XTK_RUNDIR=$work/run-mt-0 "$xtk" unpause mt) &
rc=0; mon || rc=$?
wait $!
[ $rc = 191 ] || fail "monitor of a guest paused for 0.3 s: $rc, not 191: $(cat mon.err)"
pkill -9 -f -- "xtk-save .* mt tcp:127.0.0.1:4864" 2>/dev/null || true
XTK_RUNDIR=$work/run-mt-0 "$xtk" pause mt
rc=0; mon || rc=$?
[ $rc = 9 ] || fail "monitor of a guest paused for good: $rc, not 9"
XTK_RUNDIR=$work/run-mt-0 "$xtk" destroy mt

# 2. A one-node cluster.  Pacemaker keeps its configuration in
# /var/lib/pacemaker/cib: this machine's is put aside and back.
pgrep -x pacemakerd >/dev/null && fail "a Pacemaker runs here already"
pgrep -x corosync >/dev/null && fail "a Corosync runs here already"
cibdir=/var/lib/pacemaker/cib
mkdir -p saved-cib $cibdir
mv $cibdir/* saved-cib/ 2>/dev/null || true
provider=xtk-test-$$
mkdir -p /usr/lib/ocf/resource.d/$provider
install -m 755 "$agent" /usr/lib/ocf/resource.d/$provider/xtk
cleanup_hooks+=("pkill -TERM -x pacemakerd; for i in \$(seq 100); do pgrep -x pacemakerd >/dev/null || break; sleep 0.1; done; pkill -9 -x pacemaker-controld pacemaker-schedulerd pacemaker-execd pacemaker-attrd pacemaker-fenced pacemaker-based pacemakerd 2>/dev/null; pkill -TERM -x corosync; sleep 0.5; pkill -9 -x corosync 2>/dev/null; rm -rf $cibdir/* /usr/lib/ocf/resource.d/$provider; mv $work/saved-cib/* $cibdir/ 2>/dev/null; true")
node=$(uname -n)
cat >corosync.conf <<EOF
totem {
  version: 2
  cluster_name: xtktest
  transport: knet
  crypto_cipher: none
  crypto_hash: none
}
nodelist {
  node {
    nodeid: 1
    name: $node
    ring0_addr: 127.0.0.1
  }
}
quorum {
  provider: corosync_votequorum
}
logging {
  to_stderr: no
  to_syslog: no
  to_logfile: yes
  logfile: $work/corosync.log
}
EOF
# The cluster's properties from its start (dc-deadtime: a cold start in
# seconds, not 20 s; no fencing device and no quorum in a one-node test).
cibadmin --empty >cib.xml
python3 - cib.xml <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
props = ('<cluster_property_set id="opts">'
         '<nvpair id="o1" name="dc-deadtime" value="2s"/>'
         '<nvpair id="o2" name="stonith-enabled" value="false"/>'
         '<nvpair id="o3" name="no-quorum-policy" value="ignore"/>'
         '<nvpair id="o4" name="cluster-recheck-interval" value="5s"/>'
         '</cluster_property_set>')
s = s.replace("<crm_config/>", "<crm_config>" + props + "</crm_config>")
open(p, "w").write(s)
PY
install -o hacluster -g haclient -m 600 cib.xml $cibdir/cib.xml
mkdir -p /run/pacemaker /var/log/pacemaker
corosync -f -c "$work/corosync.conf" >corosync.out 2>&1 &
bg_pids+=($!)
# libqb's flight recorder (8 MiB in /dev/shm) outlives a corosync killed
# by the cleanup above: each run left one behind.
cleanup_hooks+=("rm -f /dev/shm/qb-corosync-$!-blackbox-data /dev/shm/qb-corosync-$!-blackbox-header")
sleep 1
PCMK_logfile=$work/pacemaker.log pacemakerd -f >pacemakerd.out 2>&1 &
bg_pids+=($!)
# (grep reads all of crm_mon's output: with -q it would stop at the
# match, and crm_mon, still writing, would die of SIGPIPE, which
# pipefail turns into "not online": a CI run failed so, 4.5 s in.)
online() { crm_mon -1 2>/dev/null | grep "Online: \[ $node \]" >/dev/null; }
t_up=$(date +%s%N)
up=
for i in $(seq 900); do online && { up=1; break; }; sleep 0.1; done
echo "the cluster is online after $((($(date +%s%N) - t_up) / 1000000)) ms"
if [ -z "$up" ]; then
  crm_mon -1 >&2 || true
  tail -n 15 corosync.out corosync.log pacemakerd.out >&2 2>/dev/null || true
  grep -iE "error|crit|warn" pacemaker.log | tail -n 20 >&2 || true
  fail "the cluster did not come up"
fi

psktool -u ha -p keys.psk >/dev/null 2>&1 || fail "psktool"
cibadmin --create -o resources --xml-text "
<clone id=\"guest\">
  <meta_attributes id=\"guest-meta\">
    <nvpair id=\"m1\" name=\"promotable\" value=\"true\"/>
    <nvpair id=\"m2\" name=\"promoted-max\" value=\"1\"/>
    <nvpair id=\"m3\" name=\"promoted-node-max\" value=\"1\"/>
    <nvpair id=\"m4\" name=\"clone-max\" value=\"2\"/>
    <nvpair id=\"m5\" name=\"clone-node-max\" value=\"2\"/>
    <nvpair id=\"m6\" name=\"globally-unique\" value=\"true\"/>
  </meta_attributes>
  <primitive id=\"g\" class=\"ocf\" provider=\"$provider\" type=\"xtk\">
    <instance_attributes id=\"g-params\">
      <nvpair id=\"p1\" name=\"domain\" value=\"g\"/>
      <nvpair id=\"p2\" name=\"addresses\" value=\"0=127.0.0.1:4871 1=127.0.0.1:4872\"/>
      <nvpair id=\"p3\" name=\"create\" value=\"-m 64 -w counter --no-store\"/>
      <nvpair id=\"p4\" name=\"rundir\" value=\"$work/run-%k\"/>
      <nvpair id=\"p5\" name=\"statedir\" value=\"$work/state-%k\"/>
      <nvpair id=\"p6\" name=\"bindir\" value=\"$top_builddir\"/>
      <nvpair id=\"p7\" name=\"interval\" value=\"100\"/>
      <nvpair id=\"p8\" name=\"peer_timeout\" value=\"1000\"/>
      <nvpair id=\"p9\" name=\"tls_psk\" value=\"$work/keys.psk\"/>
      <nvpair id=\"p10\" name=\"tls_authz\" value=\"ha\"/>
    </instance_attributes>
    <operations>
      <op id=\"g-mon-p\" name=\"monitor\" interval=\"1s\" role=\"Promoted\" timeout=\"20s\"/>
      <op id=\"g-mon-u\" name=\"monitor\" interval=\"10s\" role=\"Unpromoted\" timeout=\"20s\"/>
    </operations>
  </primitive>
</clone>" || fail "cibadmin: the resource"

# Which instance runs the guest (0 or 1), and whether the other holds
# checkpoints from it.
# The guest is up in instance $1's run directory: built and started (not a
# backup's held copy, which is empty), though maybe suspended for a moment
# by a checkpoint (its self-check, run after, says it runs).
runs_in() {
  local i
  i=$(XTK_RUNDIR=$work/run-$1 "$xtk" info g 2>/dev/null) || return 1
  echo "$i" | grep -q "^empty: *no" && echo "$i" | grep -q "^crashed: *no"
}
# The instance the guest is up in, or nothing (never fails: set -e).
primary() {
  local k
  for k in 0 1; do
    if runs_in $k; then
      echo $k
      return 0
    fi
  done
  return 0
}
held() {
  local n
  n=$(grep -c "CHECKPOINT: epoch [0-9]* complete" "$work/state-$1/restore.err" 2>/dev/null)
  echo "${n:-0}"
}
wait_for() { # SECONDS WHAT CMD...
  local n=$(($1 * 10)) what=$2 i
  shift 2
  for i in $(seq $n); do "$@" && return 0; sleep 0.1; done
  crm_mon -1 -A >&2 || true
  tail -n 20 "$work"/state-*/*.err >&2 2>/dev/null || true
  # What the agent said, and what the scheduler decided.
  grep -E "xtk\(g:|pacemaker-schedulerd.*(Promote|Demote|Recover|Start|Stop) " \
    "$work/pacemaker.log" 2>/dev/null | cut -c 1-200 | tail -n 30 >&2 || true
  fail "$what"
}
has_primary() { [ -n "$(primary)" ]; }
wait_for 60 "no instance was promoted" has_primary
p=$(primary)
b=$((1 - p))
backup_holds() { [ "$(held $b)" -ge 5 ]; }
wait_for 60 "instance $b holds no checkpoints of instance $p" backup_holds
grep -q "(TLS1.3).*peer PSK identity 'ha'" "$work/state-$b/restore.err" ||
  fail "the checkpoints are not over TLS: $(head -3 "$work/state-$b/restore.err")"
XTK_RUNDIR=$work/run-$p check g
# The backup is scored as the one to promote (100: it holds checkpoints;
# the primary's restarted instance has none) by the agent's watcher as
# soon as it holds one, not by its monitor (every 10 s here, so that
# only the watcher can have done it): a primary dying before that could
# be promoted again, empty, and start the guest afresh.
scored() { [ "$(crm_attribute --promotion="g:$b" -N "$node" -G -q 2>/dev/null)" = 100 ]; }
wait_for 3 "instance $b holds checkpoints and is not scored 100" scored
shows_promoted() { crm_mon -1 2>/dev/null | grep "Promoted" >/dev/null; }
wait_for 30 "crm_mon shows no promoted instance" shows_promoted

# 3. The primary host dies.
t0=$(date +%s%N)
kill -9 $(pgrep -f -- "xtk-save .* g tcp:127.0.0.1:487$((b + 1))") \
  $(pgrep -f -- "xtk-hv .*--rundir $work/run-$p") 2>/dev/null
runs_at_backup() { runs_in $b; }
wait_for 60 "Pacemaker did not promote instance $b" runs_at_backup
t1=$(date +%s%N)
XTK_RUNDIR=$work/run-$b check g
echo "failover: the guest runs at instance $b $(((t1 - t0) / 1000000)) ms after the primary's death" \
  "(monitor every 1 s, peer timeout 1 s)"
grep -q "failing over to the last complete checkpoint" "$work/state-$b/restore.err" ||
  fail "the promoted instance did not run its checkpoint: $(tail -3 "$work/state-$b/restore.err")"
# The failed instance comes back as the backup, and is protected again.
reprotected() { [ "$(held $p)" -ge 3 ]; }
wait_for 60 "instance $p was not made the new backup" reprotected
XTK_RUNDIR=$work/run-$b check g

crm_resource --resource guest --set-parameter target-role --meta --parameter-value Stopped >/dev/null
stopped() { [ -z "$(primary)" ] && ! pgrep -f -- "xtk-restore .*listen:127.0.0.1:487" >/dev/null; }
wait_for 30 "the clone did not stop" stopped
echo ok
