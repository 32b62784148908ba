#!/bin/bash
# A failed save never replaces or truncates a good file: into a tmpfs too
# small for it (ENOSPC), with the guest destroyed in the middle, and with
# xtk-save killed.  Each time the previous file is intact, the guest of a
# failed save runs on, and no temporary file is left (but for kill -9,
# which cannot clean up; the target is still intact).
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"
mkdir small
mount -t tmpfs -o size=3m xtk-engine-test small || fail "mount tmpfs"
cleanup_hooks+=("umount '$work/small'")

"$xtk" create -n first -m 16 -w idle --no-store >/dev/null
check first
"$xsave" -q -c first small/img.xtk || fail "the first save"
cp small/img.xtk good.xtk

# Disk full: 24 MiB of data do not fit in 3 MiB.
"$xtk" create -n big -m 64 -w dirty -P 6144 -r 0 --no-store >/dev/null
check big
sleep 0.3 # a pass of the dirtier: the working set is written
if "$xsave" -q big small/img.xtk 2> err.txt; then fail "saved 24 MiB into 3"; fi
grep -q "No space left" err.txt || { cat err.txt >&2; fail "no ENOSPC"; }
cmp small/img.xtk good.xtk || fail "the good file changed"
[ "$(ls -A small)" = img.xtk ] || fail "left: $(ls -A small)"
check big
wait_info big suspended no
console_has big "xtk-guest: suspended (.*), resumed"

# Live and compressed: the same.
if "$xsave" -q -l -z big small/img.xtk 2>/dev/null; then fail "saved (gzip)"; fi
cmp small/img.xtk good.xtk || fail "the good file changed (gzip)"
[ "$(ls -A small)" = img.xtk ] || fail "left: $(ls -A small)"
check big

# The guest destroyed in the middle of a checkpointing save.
"$xtk" create -n gone -m 16 -w idle --no-store >/dev/null
check gone
"$xsave" -q -c -I 100 -N 100 gone small/img.xtk 2> err.txt &
saver=$!
bg_pids+=($saver)
sleep 0.5
"$xtk" destroy gone
if wait $saver; then fail "the save of a destroyed guest succeeded"; fi
cmp small/img.xtk good.xtk || fail "the good file changed (guest gone)"
[ "$(ls -A small)" = img.xtk ] || fail "left: $(ls -A small)"

# SIGTERM ends a checkpointing save after its epoch, cleanly: a complete
# file replaces the old one (by design); SIGKILL leaves the old one.
"$xsave" -q -c -I 100 -N 100 first small/img.xtk &
saver=$!
bg_pids+=($saver)
sleep 0.5
kill -9 $saver
wait $saver 2>/dev/null || true
cmp small/img.xtk good.xtk || fail "the good file changed (kill -9)"
check first
wait_info first suspended no
# (once its second epoch has begun: a signal during the first, pre-copy
# or its stop, cancels the save; a fixed 0.5 s was, under ASan on a
# loaded host, before the save had even started)
"$xsave" -v -c -I 100 -N 100 first small/img.xtk 2>term.err &
saver=$!
bg_pids+=($saver)
for i in $(seq 200); do
  grep -q "round 1 (final)" term.err && break
  sleep 0.05
done
kill -TERM $saver
wait $saver || { cat term.err >&2; fail "a checkpointing save stopped by SIGTERM failed"; }
"$xrestore" -q -n first-copy small/img.xtk >/dev/null || fail "its file"
check first-copy
echo ok
