#!/bin/bash
# The run directory does not grow: domains created and destroyed, renamed,
# restored, restores that fail after their domain was created or on a
# taken name, and an xtk-hv killed with SIGKILL leave nothing behind but
# next-domid and the logs of the last XTK_LOG_KEEP (default 10) gone
# domains in log/ (xtk-hv(8), FILES).  A live domain has its id lock, its
# name lock, its socket and its log.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"
run=$XTK_RUNDIR

# What is in the run directory itself (log/ aside), sorted.
top_files() { (cd "$run" && ls -A | grep -vx log | sort | tr '\n' ' '); }
logs() { ls -A "$run/log" 2>/dev/null | wc -l; }
at_rest() { [ "$(top_files)" = "next-domid " ]; }
expect_at_rest() {
  wait_until "the run directory holds $(top_files)" at_rest
}

# A live domain's files.
id=$("$xtk" create -n keeper -m 16 -w idle --no-store)
check keeper
for f in $id.lock $id.sock $id.log name-keeper.lock; do
  [ -e "$run/$f" ] || fail "no $f for a live domain: $(top_files)"
done
"$xsave" -q keeper good.xtk || fail "save"
expect_at_rest
[ "$(logs)" = 1 ] || fail "the saved domain's log was not kept: $(ls "$run/log")"
grep -q "domain $id gone" "$run/log/$id.log" || fail "the kept log: $(cat "$run/log/$id.log")"

# A stream cut inside its pages: the restore creates the domain, then fails.
python3 - good.xtk cut.xtk <<'PY'
import sys
d = open(sys.argv[1], "rb").read()
open(sys.argv[2], "wb").write(d[: len(d) // 2])
PY

for i in $(seq 12); do
  "$xtk" create -n "d$i" -m 16 -w idle --no-store >/dev/null
  "$xtk" rename "d$i" "r$i" || fail "rename"
  [ ! -e "$run/name-d$i.lock" ] || fail "the old name's lock file stays"
  if "$xrestore" -q cut.xtk > /dev/null 2> err; then fail "a cut stream restored"; fi
  grep -q "stream truncated" err || fail "the cut restore: $(cat err)"
  "$xtk" destroy "r$i"
done
"$xrestore" -q --name taken good.xtk > /dev/null || fail "restore"
if "$xrestore" -q --name taken good.xtk > /dev/null 2>&1; then
  fail "restored onto a taken name"
fi
"$xtk" destroy taken
expect_at_rest
[ "$(logs)" = 10 ] || fail "$(logs) logs kept, not 10: $(ls "$run/log")"

# An xtk-hv killed: the next one to start sweeps its files (its log kept).
id=$("$xtk" create -n victim -m 16 -w idle --no-store)
check victim
pid=
for c in /proc/[0-9]*/cmdline; do
  if tr '\0' ' ' < "$c" 2>/dev/null | grep -q -- "--rundir $run .*--name victim "; then
    pid=${c#/proc/}; pid=${pid%/cmdline}; break
  fi
done
[ -n "$pid" ] || fail "no xtk-hv for victim"
kill -9 "$pid"
gone() { ! kill -0 "$pid" 2>/dev/null; }
wait_until "the killed xtk-hv is still there" gone
[ -e "$run/$id.lock" ] || fail "the killed domain's lock file is gone already"
"$xtk" create -n next -m 16 -w idle --no-store >/dev/null
for f in $id.lock $id.sock $id.log name-victim.lock; do
  [ ! -e "$run/$f" ] || fail "$f of a killed domain was not swept"
done
[ -e "$run/log/$id.log" ] || fail "the killed domain's log was not kept"
"$xtk" destroy next
expect_at_rest

# XTK_LOG_KEEP bounds the kept logs; 0 keeps none.
XTK_LOG_KEEP=2 "$xtk" create -n k -m 16 -w idle --no-store >/dev/null
XTK_LOG_KEEP=2 "$xtk" destroy k
expect_at_rest
[ "$(logs)" = 2 ] || fail "$(logs) logs kept with XTK_LOG_KEEP=2"
XTK_LOG_KEEP=0 "$xtk" create -n k -m 16 -w idle --no-store >/dev/null
"$xtk" destroy k
expect_at_rest
[ "$(logs)" = 2 ] || fail "XTK_LOG_KEEP=0 kept a log"
echo ok
