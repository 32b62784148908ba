#!/bin/bash
# xtk-save and xtk-restore, end to end, with real guests: round trips to a
# file for the idle, dirtying and 4-vCPU spin-lock workloads (live and
# not), a live checkpoint (-c), compression, a pipe (stdout to stdin), the
# JSON report; Xen 4.17's verify-stream-v2 accepts every plain stream
# xtk-save wrote; a checkpointed save to a file; a migration to an
# xtk-restore on loopback into another run directory ("another host").
. "$top_srcdir/tests/engine/engine-lib.sh"
[ -x "$XEN_BINDIR/verify-stream-v2" ] || fail "no verify-stream-v2 (xen-utils-4.17)"
cd "$work"

# Save DOMAIN into FILE with OPTIONS; the source must then be gone; restore
# it, and the restored guest must run and check out (and say it resumed,
# unless it was paused rather than suspended).
roundtrip() {
  local dom=$1 file=$2; shift 2
  "$xsave" -q "$@" "$dom" "$file" || fail "save $dom $*"
  [ "$(domains)" = 0 ] || fail "the source $dom is still there"
  xen_verify "$file" >/dev/null || fail "verify-stream-v2 refused $file"
  id=$("$xrestore" -q "$file") || fail "restore $file"
  check "$id"
  case " $* " in
  *" pause "*) ;;
  *) console_has "$id" "resumed in domain $id" ;;
  esac
  "$xtk" destroy "$id"
}

"$xtk" create -n idle -m 16 -w idle --no-store >/dev/null
check idle
roundtrip idle idle.xtk

"$xtk" create -n dirty -m 32 -w dirty -P 2048 -r 0 --no-store >/dev/null
check dirty
roundtrip dirty dirty.xtk --live --stats-json dirty.json
python3 - dirty.json <<'PY' || fail "the JSON report"
import json, sys
r = json.load(open(sys.argv[1]))
names = [p["name"] for p in r["phases"]]
for want in ["suspend requested", "guest acknowledged", "suspended notified", "final dirty sync",
             "last page sent", "state sent", "end sent", "source destroyed"]:
    assert want in names, want
assert len(r["rounds"]) >= 2, r["rounds"]
assert any(k.startswith("stop: ") for k in r["counters"]), r["counters"]
PY

"$xtk" create -n spin -m 32 -c 4 -w spin --no-store >/dev/null
check spin
roundtrip spin spin.xtk --live --suspend pause --senders 1

# A live checkpoint: the source runs on; the copy restores beside it under
# another name, compressed, from a pipe.
"$xtk" create -n keep -m 32 -w dirty -P 1024 -r 2000 --no-store >/dev/null
check keep
"$xsave" -q -l -c -z1 keep - > keep.xtk.gz || fail "save -c to stdout"
check keep
gzip -t keep.xtk.gz || fail "not gzip"
zcat keep.xtk.gz > keep.xtk
xen_verify keep.xtk >/dev/null || fail "verify-stream-v2 refused the checkpoint"
id=$("$xrestore" -q -n keep2 - < keep.xtk.gz) || fail "restore from a pipe"
check keep2
check keep
[ "$(domains)" = 2 ] || fail "both run"
"$xtk" destroy keep2
# The same name twice is refused, and nothing is left.
if "$xrestore" -q keep.xtk.gz 2>err.txt; then fail "a second 'keep'"; fi
grep -q "exists already" err.txt || fail "no reason: $(cat err.txt)"
[ "$(domains)" = 1 ] || fail "a domain was left behind"

# Targets that are not regular files are written in place, never replaced
# (a device like /dev/null, here a node of our own; a FIFO); a symlink's
# file is replaced, the link stays.
mknod null c 1 3
"$xsave" -q -c keep null || fail "save -c to a character device"
[ -c null ] || fail "the device was replaced by a file"
mkfifo fifo
cat fifo > fifo.xtk &
bg_pids+=($!)
"$xsave" -q -c keep fifo || fail "save -c to a FIFO"
wait "${bg_pids[-1]}"
[ -p fifo ] || fail "the FIFO was replaced by a file"
xen_verify fifo.xtk >/dev/null || fail "verify-stream-v2 refused what the FIFO carried"
id=$("$xrestore" -q -n keep4 fifo.xtk) || fail "restore what went through the FIFO"
check keep4
"$xtk" destroy keep4
echo old > real.xtk
ln -s real.xtk link.xtk
"$xsave" -q -c keep link.xtk || fail "save -c through a symlink"
[ -L link.xtk ] && [ "$(readlink link.xtk)" = real.xtk ] || fail "the symlink was replaced"
xen_verify real.xtk >/dev/null || fail "the symlink's file is not the stream"
if "$xsave" -q -c keep . 2>err.txt; then fail "a save to a directory"; fi
grep -q "is a directory" err.txt || fail "no reason: $(cat err.txt)"
check keep

# Checkpointing to a file: 3 epochs, the domain runs on.
"$xsave" -q -c -I 30 -N 3 keep ckpt.xtk || fail "checkpointed save"
check keep
[ "$("$b/xtk-stream" dump -i ckpt.xtk | grep -c ' CHECKPOINT ')" = 2 ] ||
  fail "2 CHECKPOINT records"
# A KVM domain's stream has Xen version 0.0: it is not "from Xen 0.0".
"$b/xtk-stream" verify -i ckpt.xtk 2>/dev/null | head -1 > head.txt
grep -qx "stream: version 3, little-endian, x86 HVM, not from Xen (Xen version 0.0)" head.txt ||
  fail "xtk-stream verify's header line: $(cat head.txt)"
id=$("$xrestore" -q -n keep3 ckpt.xtk) || fail "restore the checkpoints"
check keep3
"$xtk" destroy keep3

# Migration on loopback into another run directory.
rm -f port.txt
XTK_RUNDIR=$work/run-dst "$xrestore" -v --port-file port.txt listen:127.0.0.1:0 \
  > dst.id 2> dst.log &
bg_pids+=($!)
wait_until "no --port-file" test -s port.txt
port=$(cat port.txt)
"$xsave" -q -l keep tcp:127.0.0.1:$port || fail "migration"
wait "${bg_pids[-1]}" || fail "xtk-restore failed"
[ "$(domains)" = 0 ] || fail "the source is still there"
XTK_RUNDIR=$work/run-dst check "$(cat dst.id)"
XTK_RUNDIR=$work/run-dst console_has keep "resumed in domain"
# Pages resent to frames already written went straight into memory.
grep -Eq "pages placed +[1-9]" dst.log || fail "no page was placed: $(grep -i placed dst.log)"
# The final round had the wide receive buffer (Linux reports it doubled).
grep -Eq "receive buffer widened to 8388608 bytes" dst.log ||
  fail "the receive buffer was not widened: $(grep -i buffer dst.log)"
echo "ok"
