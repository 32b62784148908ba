#!/bin/bash
# The progress line on a terminal (a pty from script(1)), as users of
# `xl migrate` and `virsh migrate --verbose` expect it: each pre-copy
# round has its own bar, named by its number, with the rate, the bytes
# left and an ETA; no bar is drawn again once complete (round 1 used to
# get a second, unnamed one); and the file's sync shows.
. "$top_srcdir/tests/engine/engine-lib.sh"
command -v script >/dev/null || fail "no script(1) (util-linux)"
cd "$work"

# A dirtier whose pages are all written by the time the save starts, and
# a reader that takes ~6 MiB/s, so that rounds last long enough to draw.
"$xtk" create -n p -m 64 -w dirty -P 1024 -r 4000 --no-store >/dev/null
check p
sleep 0.5
mkfifo fifo
python3 - fifo <<'PY' &
import sys, time
f = open(sys.argv[1], "rb", buffering=0)
while f.read(65536):
    time.sleep(0.01)
PY
bg_pids+=($!)
script -qec "'$xsave' -q -l -c -R 2 p fifo; '$xsave' -q -c p plain.xtk" /dev/null > tty.out ||
  fail "the saves under a pty: $(cat tty.out)"
wait "${bg_pids[-1]}"
check p
# The drawings, one a line, spaces squeezed.
tr '\r' '\n' < tty.out | tr -s ' ' | grep -v '^ *$' > lines.txt
grep -q "^save: round 0 \[" lines.txt || fail "no bar for round 0: $(cat lines.txt)"
grep -Eq "^save: round [0-9]+( \(final\))? \[=*\] [0-9]+% [0-9.]+ (B|KiB|MiB|GiB)/s [0-9.]+ (B|KiB|MiB|GiB) left ETA [0-9]+:[0-9]{2}$" lines.txt ||
  fail "no bar with a rate, what is left and an ETA: $(cat lines.txt)"
if grep "^save: " lines.txt | grep -v "^save: round [0-9]" | grep -v "^save: syncing to disk"; then
  fail "a bar that is not a round's or the sync's"
fi
# Once a bar reaches 100%, its label is not drawn again.
awk '/^save: / { label = $0; sub(/ \[.*| \.\.\.$/, "", label)
       if (label in done) { print "again: " $0; bad = 1 }
       if ($0 ~ / 100% /) done[label] = 1 }
     END { exit bad }' lines.txt || fail "a bar drawn again after 100%: $(cat lines.txt)"
grep -q "^save: syncing to disk \.\.\.$" lines.txt || fail "nothing while the file is synced: $(cat lines.txt)"
grep -q "^save: syncing to disk \[=*\] 100% " lines.txt || fail "the sync does not end: $(cat lines.txt)"
# Off a terminal, none of it.
"$xsave" -q -c p plain2.xtk 2> err.txt
[ ! -s err.txt ] || fail "progress off a terminal: $(cat err.txt)"
echo "progress: rounds named, rate, left, ETA; the sync shown"
