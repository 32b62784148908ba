# engine-lib.sh - what the engine's shell tests share (sourced): the
# build's programs, a private work directory and run directory, helpers
# that wait for a guest's self-check, and a cleanup that destroys whatever
# a failed test left running (in every run directory it made) and shows
# xtk-hv's logs.
set -euo pipefail
b=$top_builddir
export XTK_HV=$b/xtk-hv XTK_GUEST=$b/guests/xtk-guest.elf
xtk=$b/xtk
xsave=$b/xtk-save
xrestore=$b/xtk-restore
[ -r /dev/kvm ] || { echo "SKIP: no /dev/kvm" >&2; exit 77; }
work=$(mktemp -d /tmp/xtk-engine.XXXXXX)
export XTK_RUNDIR=$work/run
bg_pids=()
cleanup_hooks=()

fail() { echo "FAIL: $*" >&2; exit 1; }

cleanup() {
  local rc=$? d id h
  for h in "${cleanup_hooks[@]+"${cleanup_hooks[@]}"}"; do eval "$h" || true; done
  for id in "${bg_pids[@]+"${bg_pids[@]}"}"; do kill -9 "$id" 2>/dev/null || true; done
  for d in "$work"/run*; do
    [ -d "$d" ] || continue
    for id in $(XTK_RUNDIR=$d "$xtk" list 2>/dev/null | awk 'NR > 1 {print $2}'); do
      XTK_RUNDIR=$d "$xtk" destroy "$id" 2>/dev/null || true
    done
    if [ $rc -ne 0 ]; then cat "$d"/*.log "$d"/log/*.log >&2 2>/dev/null || true; fi
  done
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT

# The number of live domains (in $XTK_RUNDIR).
domains() { "$xtk" list | awk 'NR > 1' | wc -l; }

# Waits (up to 5 s) until DOMAIN's self-check passes.
check() {
  local i
  for i in $(seq 100); do
    "$xtk" check "$1" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  "$xtk" check "$1" >&2 || true
  fail "self-check of $1"
}

# Waits (up to 5 s) until DOMAIN's console has TEXT.
console_has() {
  local i
  for i in $(seq 100); do
    "$xtk" console "$1" 2>/dev/null | grep -q "$2" && return 0
    sleep 0.05
  done
  "$xtk" console "$1" >&2 || true
  fail "console of $1 lacks '$2'"
}

# Xen 4.17's verifier, run as ../shared/reference/migration-stream.md says.
xen_verify() {
  PYTHONPATH=/usr/lib/xen-4.17/lib/python /usr/bin/python3 \
    "$XEN_BINDIR/verify-stream-v2" -i "$1"
}

# Waits (up to 5 s) until something listens on TCP port $1 (in the current
# network namespace).
wait_listen() {
  local i
  for i in $(seq 100); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    sleep 0.05
  done
  fail "nothing listens on port $1"
}

# netns_pair NS1 NS2 IF1 IF2 NET: two network namespaces (removed at the
# end) joined by a veth pair IF1-IF2, addresses NET1 and NET2 (NET like
# "10.1.2."), up.
netns_pair() {
  command -v ip >/dev/null || fail "no ip (iproute2)"
  ip netns add "$1"
  cleanup_hooks+=("ip netns del $1")
  ip netns add "$2"
  cleanup_hooks+=("ip netns del $2")
  ip link add "$3" type veth peer name "$4"
  ip link set "$3" netns "$1"
  ip link set "$4" netns "$2"
  ip -n "$1" addr add "${5}1/24" dev "$3"
  ip -n "$2" addr add "${5}2/24" dev "$4"
  ip -n "$1" link set lo up
  ip -n "$2" link set lo up
  ip -n "$1" link set "$3" up
  ip -n "$2" link set "$4" up
}

# wait_exit PID: its exit status, once it has exited, within 20 s (bash's
# wait also returns when another child stops, as a SIGSTOPped peer does).
wait_exit() {
  local i
  for i in $(seq 400); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.05
  done
  wait "$1"
}

# Waits (up to 10 s) until CMD... succeeds; else says WHAT failed.
wait_until() {
  local what=$1 i
  shift
  for i in $(seq 200); do
    "$@" && return 0
    sleep 0.05
  done
  fail "$what"
}

info_is() { "$xtk" info "$1" 2>/dev/null | grep -q "^$2: *$3"; }
no_domains() { [ "$(domains)" = 0 ]; }

# Waits until `xtk info DOMAIN` says FIELD: VALUE.
wait_info() { wait_until "$1: $2 is not $3" info_is "$@"; }

# Waits until there is no domain left in $XTK_RUNDIR.
wait_none() { wait_until "domains left in $XTK_RUNDIR" no_domains; }
