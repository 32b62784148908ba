#!/bin/bash
# The xtk command, as an operator uses it: create (workload, memory, vCPUs),
# list, info, console, pause, check, unpause, destroy; errors for unknown
# domains, a taken name and bad arguments.
set -eu
[ -w /dev/kvm ] || { echo "SKIP: /dev/kvm not usable" >&2; exit 77; }
export XTK_RUNDIR=$(mktemp -d /tmp/xtk-cli.XXXXXX)
export XTK_HV=$top_builddir/xtk-hv XTK_GUEST=$top_builddir/guests/xtk-guest.elf
xtk=$top_builddir/xtk
cleanup() {
    for s in "$XTK_RUNDIR"/*.sock; do
        [ -S "$s" ] && "$xtk" destroy "$(basename "$s" .sock)" 2>/dev/null
    done
    cat "$XTK_RUNDIR"/*.log "$XTK_RUNDIR"/log/*.log >&2 2>/dev/null || true
    rm -rf "$XTK_RUNDIR"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

id=$("$xtk" create --name web -m 32 -c 2 -w counter --no-store)
[ "$id" -ge 1 ] || fail "create printed '$id'"
id2=$("$xtk" create -n db -w dirty -P 256 --no-store)
! "$xtk" create -n web --no-store 2>/dev/null || fail "a second 'web'"

"$xtk" list | tee /dev/stderr | grep -Eq "^web +$id +32 +2 +r---" || fail "list web"
"$xtk" list | grep -Eq "^db +$id2 +64 +1 +r---" || fail "list db"
"$xtk" info web | grep -q "^vcpus: *2$" || fail "info"

for _ in $(seq 50); do
    "$xtk" console web | grep -q "xtk-guest: running" && break
    sleep 0.1
done
"$xtk" console web | grep -q "cmdline \"workload=counter\"" || fail "console"

"$xtk" pause web
"$xtk" list | grep -Eq "^web +$id +32 +2 +rp--" || fail "paused in list"
"$xtk" check web | grep -q "self-check passed" || fail "check"
"$xtk" check db | grep -q "self-check passed" || fail "check db"
"$xtk" unpause "$id"
"$xtk" info web | grep -q "^paused: *no$" || fail "unpaused"

! "$xtk" rename db web 2>/dev/null || fail "rename onto a taken name"
"$xtk" rename db store1
"$xtk" list | grep -Eq "^store1 +$id2 " || fail "renamed"

"$xtk" destroy web
"$xtk" destroy "$id2"
! "$xtk" info web 2>/dev/null || fail "web still there"
"$xtk" list | grep -q "^web" && fail "web still listed"
! "$xtk" pause nobody 2>/dev/null || fail "unknown domain"
! "$xtk" create -m 1 --no-store 2>/dev/null || fail "1 MiB accepted"

# Every argument is checked before a guest starts: exit 2, one line that
# says what is wrong, and no domain (the guest would only have said so on
# its console, after create succeeded).
bad_create() {
    local want=$1 err rc
    shift
    set +e
    err=$("$xtk" create "$@" --no-store 2>&1 >/dev/null)
    rc=$?
    set -e
    [ "$rc" = 2 ] || fail "create $*: exit $rc, not 2 ($err)"
    [ "$err" = "xtk: create: $want" ] || fail "create $*: '$err', not '$want'"
    [ "$("$xtk" list | wc -l)" = 1 ] || fail "create $* left a domain"
}
bad_create "unknown workload 'nosuchworkload' (idle, counter, dirty, spin, ports or nmi)" -w nosuchworkload
bad_create "the nmi workload needs two vCPUs (-c 2)" -w nmi
bad_create "memory must be 8 to 12288 MiB" -m 12289
bad_create "vcpus must be 1 to 8" -c 9
bad_create "bad name '42' ([A-Za-z0-9_.-], 1 to 63 characters, not all digits)" -n 42
bad_create "bad name 'a/b' ([A-Za-z0-9_.-], 1 to 63 characters, not all digits)" -n a/b
bad_create "$XTK_RUNDIR/nokernel: No such file or directory" -k "$XTK_RUNDIR/nokernel"
bad_create "-P, -S and -r are for the dirty workload" -w counter -P 16
bad_create "bad page count 'lots'" -w dirty -P lots
bad_create "bad stride '0'" -w dirty -S 0
bad_create "bad rate 'fast'" -w dirty -r fast
bad_create "-P 4096: the working set does not fit in 16 MiB" -w dirty -P 4096 -m 16
! "$xtk" frobnicate 2>/dev/null || fail "unknown command"

# xtk-hv is started for every create and restore (a lazy restore waits for
# it): it loads the C library and nothing else (hv/local.am; the dynamic
# loader, there anyway, and the sanitizers' runtimes aside).
needed=$(objdump -p "$XTK_HV" | awk '$1 == "NEEDED" {print $2}' |
  grep -Ev '^(lib(a|ub)san\.|ld-linux)' | tr '\n' ' ')
[ "$needed" = "libc.so.6 " ] || fail "xtk-hv loads $needed"
echo "xtk: create, list, info, console, pause, check, unpause, rename, destroy"
