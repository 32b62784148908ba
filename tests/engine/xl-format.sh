#!/bin/bash
# xl's save file format with real KVM guests (issue 10, item 4): a live
# save by xtk-save --format xl with a JSON config passes Xen 4.17's
# verify-stream-v2 -f xl, carries the config, and restores (the guest
# carries on); a checkpointed save in xl format with .cfg text restores
# from a pipe, and cut between a CHECKPOINT and its libxl CHECKPOINT_END it
# fails over to the epoch before; gzip; a live migration in libxl framing
# on loopback; corrupt framing is refused with the reason and leaves no
# domain behind.
. "$top_srcdir/tests/engine/engine-lib.sh"
[ -x "$XEN_BINDIR/verify-stream-v2" ] || fail "no verify-stream-v2 (xen-utils-4.17)"
cd "$work"
tool=$b/xtk-stream
xenf() {
  PYTHONPATH=/usr/lib/xen-4.17/lib/python /usr/bin/python3 \
    "$XEN_BINDIR/verify-stream-v2" -f "$1" -i "$2"
}

cat > guest.json <<'EOF'
{
    "c_info": {
        "type": "pvh",
        "name": "xlg"
    },
    "b_info": {
        "max_memkb": 32768,
        "target_memkb": 32768
    }
}
EOF
printf 'name = "xlg"\ntype = "pvh"\nmemory = 32\n' > guest.cfg

# 1. A live save of a dirtying guest as an xl file with a JSON config.
"$xtk" create -n xlg -m 32 -w dirty -P 1024 -r 0 --no-store >/dev/null
check xlg
"$xsave" -q -l -f xl --config guest.json xlg xlg.xl || fail "save --format xl"
[ "$(domains)" = 0 ] || fail "the source is still there"
xenf xl xlg.xl >/dev/null || fail "verify-stream-v2 -f xl refused xtk-save's xl file"
"$tool" verify -i xlg.xl > v.txt || fail "xtk-stream verify"
grep -q "config: JSON, $(($(stat -c %s guest.json) + 1)) bytes" v.txt ||
  fail "the config: $(head -2 v.txt)"
"$tool" unwrap-xl -q --config-out back.json xlg.xl xlg.xtk || fail "unwrap-xl"
cmp back.json guest.json || fail "the config came back different"
xen_verify xlg.xtk >/dev/null || fail "the bare stream inside"
id=$("$xrestore" -v xlg.xl 2> restore.log) || { cat restore.log >&2; fail "restore the xl file"; }
grep -q "an xl save file" restore.log || fail "the restore did not say what it read"
check "$id"
console_has "$id" "resumed in domain $id"

# 2. Checkpointed, .cfg text: 3 epochs, each CHECKPOINT with libxl's
#    CHECKPOINT_END; the domain runs on.  Restored from a pipe.
"$xsave" -q -c -I 30 -N 3 -f xl --config guest.cfg "$id" ck.xl || fail "checkpointed xl save"
check "$id"
"$tool" dump -i ck.xl > d.txt || fail "dump"
[ "$(grep -c ' CHECKPOINT ' d.txt)" = 2 ] || fail "2 CHECKPOINT"
[ "$(grep -c 'libxl CHECKPOINT_END' d.txt)" = 2 ] || fail "2 CHECKPOINT_END"
[ "$(grep -c 'libxl END' d.txt)" = 1 ] || fail "the libxl END"
grep -q "config: xl .cfg text, $(stat -c %s guest.cfg) bytes" d.txt || fail "the .cfg config"
id2=$("$xrestore" -q -n xlg2 - < ck.xl) || fail "restore the checkpointed xl file from a pipe"
check xlg2
"$xtk" destroy xlg2
# Cut between the last CHECKPOINT and its CHECKPOINT_END: that epoch is
# not complete (libxl's rule), so the restore fails over to the one before.
off=$(awk '/libxl CHECKPOINT_END/ {o = $1} END {print o}' d.txt)
head -c "$off" ck.xl > cut.xl
"$xrestore" -n xlg3 cut.xl > cut.id 2> cut.log || { cat cut.log >&2; fail "failover"; }
grep -q "failing over to the last complete checkpoint (1)" cut.log ||
  fail "no failover to epoch 1: $(grep -i -m3 'fail\|broke' cut.log)"
grep -q "without the libxl CHECKPOINT_END" cut.log || fail "the reason: $(grep -m1 error cut.log)"
check xlg3
"$xtk" destroy xlg3

# 3. Compressed: the framing inside the gzip stream.
"$xsave" -q -c -z1 -f xl --config guest.json "$id" z.xl.gz || fail "gzip xl save"
zcat z.xl.gz > z.xl
xenf xl z.xl >/dev/null || fail "verify-stream-v2 -f xl refused the decompressed file"
"$xrestore" -q -n xlg4 z.xl.gz >/dev/null || fail "restore the gzip xl file"
check xlg4
"$xtk" destroy xlg4

# 4. A live migration in libxl framing (as xl migrate sends it), on
#    loopback into another run directory.
# (a port the listener picks: a random one collided once with another
# test's connection)
rm -f port.txt
XTK_RUNDIR=$work/run-dst "$xrestore" -q --port-file port.txt listen:127.0.0.1:0 > dst.id &
bg_pids+=($!)
wait_until "no --port-file" test -s port.txt
port=$(cat port.txt)
"$xsave" -q -l -f libxl "$id" tcp:127.0.0.1:$port || fail "migration in libxl framing"
wait "${bg_pids[-1]}" || fail "xtk-restore failed"
[ "$(domains)" = 0 ] || fail "the source is still there"
XTK_RUNDIR=$work/run-dst check "$(cat dst.id)"
XTK_RUNDIR=$work/run-dst "$xtk" destroy "$(cat dst.id)"

# 5. Corrupt framing: refused, with the reason, and no domain left.
bad() { # NAME OFFSET BYTES WORD: a copy of xlg.xl with BYTES (printf's
         # \x escapes) written at OFFSET
  cp xlg.xl "bad-$1.xl"
  printf "$3" | dd of="bad-$1.xl" bs=1 seek="$2" conv=notrunc status=none
  printf '%s\t%s\n' "$1" "$4" >> cases.txt
}
: > cases.txt
json_len=$(($(stat -c %s guest.json) + 1))
lx=$((52 + json_len)) # the libxl header
bad magic 20 '\x00' "magic is not xl's"
bad byteorder 32 '\x05' "byte order mark"
bad bigendian 32 '\x01\x02\x03\x04' "big-endian file"
bad mandatory 36 '\x07' "mandatory flags"
bad legacy 36 '\x01' "legacy"
bad optlen 46 '\x20' "optional data"
bad configlen 49 '\xff' "a config of"
bad json $((52 + json_len - 1)) '\x7d' "NUL-terminated"
bad ident "$lx" '\x4d' "LibxlFmt"
bad version $((lx + 11)) '\x03' "version 3"
bad libxc-context $((lx + 16)) '\x00' "LIBXC_CONTEXT was due"
size=$(stat -c %s xlg.xl)
bad libxl-end $((size - 8)) '\x04' "END was due"
head -c $((size - 8)) xlg.xl > bad-no-end.xl
printf 'no-end\twithout the libxl END\n' >> cases.txt
head -c 40 xlg.xl > bad-short.xl
printf 'short\ttruncated\n' >> cases.txt
while IFS=$'\t' read -r name why; do
  if "$xrestore" -q "bad-$name.xl" > out.txt 2> err.txt; then
    fail "$name: restored: $(cat out.txt)"
  fi
  grep -q -- "$why" err.txt || { cat err.txt >&2; fail "$name: no '$why' in the message"; }
  [ "$(domains)" = 0 ] || { "$xtk" list >&2; fail "$name: a domain was left behind"; }
  echo "refused: $name: $(grep -m1 -E 'error' err.txt)"
done < cases.txt
echo ok
