#!/bin/bash
# The ssh transport (issue 16), as xl migrate has it: `xtk-save -l DOM
# ssh:HOST` runs `xtk-restore --stdio` on HOST through a real OpenSSH
# (Debian's sshd, run by the test in the destination's network namespace,
# key authentication only), the stream on ssh's pipe.
#   1. The guest migrates; it passes its self-check there, the source is
#      gone, and nothing said the stream was in clear.  A checkpointed
#      stream: ten epochs, acknowledged over ssh, then END.
#   2. The far side refuses (the name is taken there): its own line comes
#      back, the source says the destination failed, the guest runs on.
#   3. ssh itself fails (a host key that is not the one known): ssh's
#      message, then xtk-save's line about it; the guest runs on.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"
for p in ip ssh ssh-keygen /usr/sbin/sshd; do
  command -v $p >/dev/null || fail "no $p (scripts/setup.sh installs it)"
done
src=xtk-ss-$$ dst=xtk-sd-$$ net=10.$((100 + $$ % 100)).$(($$ % 250)).
for ns in $src $dst; do
  ip netns add $ns
  cleanup_hooks+=("ip netns del $ns")
  ip -n $ns link set lo up
done
ip link add xs$$ type veth peer name xd$$
ip link set xs$$ netns $src
ip link set xd$$ netns $dst
ip -n $src addr add ${net}1/24 dev xs$$
ip -n $dst addr add ${net}2/24 dev xd$$
ip -n $src link set xs$$ up
ip -n $dst link set xd$$ up
D=${net}2
srun() { XTK_RUNDIR=$work/run-src ip netns exec $src "$@"; }
drun() { XTK_RUNDIR=$work/run-dst ip netns exec $dst "$@"; }

# ---- an sshd on D:2222 that takes one key ------------------------------
mkdir -p ssh /run/sshd
chmod 700 ssh
ssh-keygen -q -t ed25519 -N '' -f ssh/host >/dev/null
ssh-keygen -q -t ed25519 -N '' -f ssh/other-host >/dev/null
ssh-keygen -q -t ed25519 -N '' -f ssh/user >/dev/null
cp ssh/user.pub ssh/authorized_keys
cat >ssh/sshd_config <<EOF
Port 2222
ListenAddress $D
HostKey $work/ssh/host
AuthorizedKeysFile $work/ssh/authorized_keys
PidFile $work/ssh/sshd.pid
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
EOF
echo "[$D]:2222 $(cat ssh/host.pub)" >ssh/known
echo "[$D]:2222 $(cat ssh/other-host.pub)" >ssh/wrong-known
ip netns exec $dst /usr/sbin/sshd -D -e -f ssh/sshd_config 2>sshd.log &
bg_pids+=($!)
drun bash -c "$(declare -f wait_listen fail); wait_listen 2222"
sshcmd() { # the client, with KNOWN as its known hosts
  echo "ssh -F /dev/null -p 2222 -i $work/ssh/user -o BatchMode=yes" \
    "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=$work/ssh/$1"
}
# the far side: this build's xtk-restore, with the destination's run
# directory (ssh passes no environment)
far="env XTK_RUNDIR=$work/run-dst XTK_HV=$XTK_HV XTK_GUEST=$XTK_GUEST $xrestore"

# ---- 1. the migration -------------------------------------------------
srun "$xtk" create -n mover -m 64 -w dirty -P 4096 -r 2000 --no-store >/dev/null
XTK_RUNDIR=$work/run-src check mover
srun "$xsave" -l --stats-json src.json --ssh "$(sshcmd known)" --ssh-restore "$far" \
  mover ssh:root@$D >save.out 2>save.err || fail "the migration failed: $(cat save.err)"
grep -q "ssh root@$D: .*xtk-restore --stdio" save.err || fail "xtk-save's ssh line: $(cat save.err)"
grep -q "neither authenticated nor encrypted" save.err && fail "a clear-text warning over ssh"
[ "$(XTK_RUNDIR=$work/run-src domains)" = 0 ] || fail "the source is still there"
XTK_RUNDIR=$work/run-dst check mover
python3 - src.json <<'PY' || fail "the report"
import json, sys
s = json.load(open(sys.argv[1]))
h = {x["name"]: x for x in s["histograms"]}
assert h["downtime"]["count"] == 1, h.keys()
assert "reply received" in {p["name"] for p in s["phases"]}
PY

# ---- 1b. checkpoints over ssh: ten epochs, acknowledged on ssh's pipe,
# then END: the far side runs the guest --------------------------------
srun "$xtk" create -n cp -m 32 -w dirty -P 512 --no-store >/dev/null
XTK_RUNDIR=$work/run-src check cp
srun "$xsave" -q -l -I 100 -N 10 --stats-json cp.json --ssh "$(sshcmd known)" \
  --ssh-restore "$far" cp ssh:root@$D 2>cp.err || fail "checkpoints over ssh: $(cat cp.err)"
XTK_RUNDIR=$work/run-dst check cp
[ "$(XTK_RUNDIR=$work/run-src domains)" = 0 ] || fail "the source of cp is still there"
python3 - cp.json <<'PY' || fail "the checkpoints' report"
import json, sys
s = json.load(open(sys.argv[1]))
h = {x["name"]: x for x in s["histograms"]}
# acknowledgements came back on ssh's pipe (how many of the ten arrive
# before END goes depends on the machine's pace)
assert h["ack wait"]["count"] >= 1, h["ack wait"]
PY

# ---- 2. the far side refuses ------------------------------------------
srun "$xtk" create -n mover -m 16 -w idle --no-store >/dev/null
XTK_RUNDIR=$work/run-src check mover
if srun "$xsave" -l --ssh "$(sshcmd known)" --ssh-restore "$far" mover ssh:root@$D \
  >/dev/null 2>save2.err; then
  fail "migrated onto a taken name"
fi
grep -q "a domain called mover exists already" save2.err || fail "the far side's line: $(cat save2.err)"
grep -q "the destination failed" save2.err || fail "the source's line: $(cat save2.err)"
XTK_RUNDIR=$work/run-src check mover
XTK_RUNDIR=$work/run-src wait_info mover suspended no
[ "$(XTK_RUNDIR=$work/run-dst domains)" = 2 ] || fail "something was left on dst"

# ---- 3. ssh fails --------------------------------------------------------
if srun "$xsave" -l --ssh "$(sshcmd wrong-known)" --ssh-restore "$far" mover ssh:root@$D \
  >/dev/null 2>save3.err; then
  fail "ssh took a host key it does not know"
fi
grep -q "Host key verification failed" save3.err || fail "ssh's message: $(cat save3.err)"
grep -q "ssh to root@$D failed (exit 255" save3.err || fail "xtk-save's line: $(cat save3.err)"
XTK_RUNDIR=$work/run-src check mover
XTK_RUNDIR=$work/run-src wait_info mover suspended no
# a host that would be an option to ssh is refused before anything runs
rc=0
"$xsave" mover ssh:-oProxyCommand=x 2>opt.err || rc=$?
[ $rc = 2 ] && grep -q "bad host" opt.err || fail "an option as the host: $rc $(cat opt.err)"
echo ok
