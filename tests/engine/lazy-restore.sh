#!/bin/bash
# Lazy restore (xtk-restore --lazy, issue 13): the domain runs before its
# memory is in, each page it touches comes from the file on the spot.
#   1. a dirtying guest saved live, restored lazily with the background
#      fill slowed down (XTK_FAULT_LAZY_SLOW): it runs and passes its
#      self-check while memory is still coming in, pages were faulted in,
#      and it passes again once every page is in;
#   2. the file truncated, and written into, during the lazy phase: the
#      restore fails with the reason, the domain is gone, the writer goes on;
#   3. the restore killed (-9) during the lazy phase: xtk-hv destroys the
#      domain (it would run on missing memory);
#   4. refusals before anything runs: a pipe, a compressed file, a file
#      open for writing elsewhere, a truncated file, a checkpointed stream;
#   5. the index the save puts after END (lib/lazy-index.h): used (1.);
#      a file without one is indexed as it is read; a damaged one is said
#      and not used; one that lies about where a frame's contents are (its
#      CRC made good) stops the domain with the reason, and one that
#      passes over the state is refused before the domain runs.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"

"$xtk" create -n lz -m 256 -w dirty -P 16384 -r 20000 --no-store >/dev/null
check lz
sleep 1.5   # its working set written through: 16384 pages with contents
"$xsave" -q -l lz lz.xtk || fail "live save"
cp lz.xtk lz2.xtk
cp lz.xtk lz3.xtk

# Restores FILE lazily in the background as NAME (its stderr in NAME.err,
# the JSON report in NAME.json): the pid in $rpid.
lazy_bg() {
  "$xrestore" -v -L -n "$2" -J "$2.json" "$1" 2> "$2.err" &
  rpid=$!
  bg_pids+=("$rpid")
}

# The restore of NAME still runs (its memory still coming in).
still_lazy() { kill -0 "$rpid" 2>/dev/null; }

# NAME runs (the restore says so), its memory still coming in.
runs_lazy() {
  wait_until "$1 does not run" grep -q "runs; its memory comes in" "$1.err"
  still_lazy || fail "$1: the lazy phase was over before it could be seen"
  # (the list read whole first: with pipefail, a grep -q that ends at its
  # match can fail the pipe by the writer's SIGPIPE; and a busy machine
  # gets a few tries)
  wait_until "$1 is not listed as running: $("$xtk" list 2>&1)" \
    sh -c "'$xtk' list > list.out && grep -q '^$1 .* r---' list.out"
}

# --- 1. runs before its memory is in, and right -----------------------------
XTK_FAULT_LAZY_SLOW=10000 lazy_bg lz.xtk lz1
runs_lazy lz1
# Nothing but the restore maps its memory meanwhile (a frame read before
# it came would stay zero).
out=$("$xtk" check lz1 2>&1) && fail "lz1 opened during its lazy restore"
echo "$out" | grep -q "still coming in from a lazy restore" || fail "open during the lazy phase: $out"
wait_exit "$rpid" || { cat lz1.err >&2; fail "lazy restore"; }
python3 - lz1.json <<'PY' || fail "lazy report"
import json, sys
r = json.load(open(sys.argv[1]))
ph = [p["name"] for p in r["phases"]]
assert "resumed" in ph and "memory complete" in ph, ph
assert ph.index("resumed") < ph.index("memory complete"), ph
c = r["counters"]
assert c["lazy index runs"] > 0, c     # the index after END was used
assert c["lazy pages faulted"] > 0, c
assert c["lazy pages prefetched"] > 0, c
h = {x["name"]: x for x in r["histograms"]}
assert h["lazy fault service"]["count"] >= c["lazy pages faulted"], h
PY
check lz1
"$xtk" destroy lz1

# --- 2. the file changed under it ------------------------------------------
XTK_FAULT_LAZY_SLOW=20000 lazy_bg lz2.xtk lz2
runs_lazy lz2
# truncate(2) waits for the lease to go (truncate(1) opens O_NONBLOCK and
# would fail at once, though breaking it all the same)
python3 -c 'import os; os.truncate("lz2.xtk", 1 << 20)' &
tpid=$!
wait_exit "$rpid" && fail "a restore whose file was truncated succeeded"
grep -q "lz2.xtk is being changed, truncated or removed" lz2.err || { cat lz2.err >&2; fail "lz2: no clear error"; }
wait_exit "$tpid" || fail "truncate failed"
[ "$(stat -c %s lz2.xtk)" = 1048576 ] || fail "the truncate did not happen"
wait_until "lz2 still there" sh -c "! '$xtk' list | grep -q '^lz2 '"

XTK_FAULT_LAZY_SLOW=20000 lazy_bg lz3.xtk lz3
runs_lazy lz3
dd if=/dev/urandom of=lz3.xtk bs=4096 seek=1000 count=16 conv=notrunc status=none &
tpid=$!
wait_exit "$rpid" && fail "a restore whose file was written into succeeded"
grep -q "being changed" lz3.err || { cat lz3.err >&2; fail "lz3: no clear error"; }
wait_exit "$tpid" || fail "dd failed"
wait_until "lz3 still there" sh -c "! '$xtk' list | grep -q '^lz3 '"

# --- 3. the restore dies during the lazy phase ------------------------------
cp lz.xtk lz4.xtk
XTK_FAULT_LAZY_SLOW=20000 lazy_bg lz4.xtk lz4
runs_lazy lz4
kill -9 "$rpid"
wait "$rpid" 2>/dev/null || true
wait_until "lz4 left running without its memory" sh -c "! '$xtk' list | grep -q '^lz4 '"
# the domain leaves the list (its socket goes) a moment before its log moves
# from <rundir>/N.log to <rundir>/log/N.log: either place, once it is there
wait_until "xtk-hv's log does not say why lz4 went" sh -c \
  "cat '$XTK_RUNDIR'/*.log '$XTK_RUNDIR'/log/*.log 2>/dev/null | grep -q \"lazy restore's connection closed\""

# --- 4. refused before anything runs ----------------------------------------
out=$("$xrestore" -L - < lz.xtk 2>&1) && fail "--lazy from a pipe"
echo "$out" | grep -q "not a pipe" || fail "pipe: $out"
gzip -1 -c lz.xtk > lz.xtk.gz
out=$("$xrestore" -L -n gz lz.xtk.gz 2>&1) && fail "--lazy of a compressed file"
echo "$out" | grep -q "is compressed" || fail "gz: $out"
exec 7>>lz.xtk   # open for writing here
out=$("$xrestore" -L -n w lz.xtk 2>&1) && fail "--lazy of a file open for writing"
exec 7>&-
echo "$out" | grep -q "open for writing elsewhere" || fail "writer: $out"
head -c 3000000 lz.xtk > cut.xtk
out=$("$xrestore" -L -n cut cut.xtk 2>&1) && fail "--lazy of a truncated file"
echo "$out" | grep -q "truncated" || fail "cut: $out"
"$xtk" create -n cp -m 16 -w dirty -P 256 -r 1000 --no-store >/dev/null
check cp
timeout 20 "$xsave" -q -l -c -I 100 -N 3 cp cp.xtk 2>/dev/null || true
if [ -s cp.xtk ]; then
  out=$("$xrestore" -L -n cp2 cp.xtk 2>&1) && fail "--lazy of a checkpointed stream"
  echo "$out" | grep -q "not restored lazily" || fail "checkpointed: $out"
fi
"$xtk" destroy cp 2>/dev/null || true

# --- 5. the index after END ---------------------------------------------------
# A copy of lz.xtk with its index changed by python (what, below); the
# index's offset is in its last 24 bytes.
lzx() {
  python3 - "$1" "$2" <<'PY'
import struct, sys, zlib, shutil
what, out = sys.argv[1], sys.argv[2]
data = bytearray(open("lz.xtk", "rb").read())
at, crc, zero, magic = struct.unpack_from("<QII8s", data, len(data) - 24)
assert magic == b"xtkLZIXE", "no index after END"
ix = data[at:len(data) - 24]
nrecs, nruns, nothers = struct.unpack_from("<III", ix, 48)
runs = 64 + 8 * (nrecs + nothers)
if what == "none":
    data = data[:at]
elif what == "damaged":
    data[at + runs + 3] ^= 0x10          # a run's frame, CRC left as it was
elif what == "lie":
    # the first run of two frames or more: one frame fewer, starting a page
    # later in the file (frame N said to be at N+1's contents)
    for i in range(nruns):
        o = runs + 24 * i
        pfn, off, count, rec = struct.unpack_from("<QQII", ix, o)
        if count >= 2 and pfn > 16:
            struct.pack_into("<QQII", ix, o, pfn, off + 4096, count - 1, rec)
            break
    else:
        sys.exit("no run to lie about")
    data[at:len(data) - 24] = ix
    struct.pack_into("<I", data, len(data) - 16, zlib.crc32(bytes(ix)))
elif what == "nostate":
    # the records after the first PAGE_DATA that are not PAGE_DATA (the
    # state among them) left out (CRC made good): passed over unread
    assert nothers > 0, "no other record"
    o = 64 + 8 * nrecs
    ix = ix[:o] + ix[o + 8 * nothers:]
    struct.pack_into("<I", ix, 56, 0)
    data = data[:at] + ix + data[len(data) - 24:]
    struct.pack_into("<I", data, len(data) - 16, zlib.crc32(bytes(ix)))
open(out, "wb").write(data)
PY
}
lzx none lz5.xtk || fail "lz5"
XTK_FAULT_LAZY_SLOW=2000 lazy_bg lz5.xtk lz5
wait_exit "$rpid" || { cat lz5.err >&2; fail "lazy restore without the index"; }
python3 -c 'import json,sys; c=json.load(open("lz5.json"))["counters"]; assert "lazy index runs" not in c, c' || fail "lz5: an index used"
check lz5
"$xtk" destroy lz5

lzx damaged lz6.xtk || fail "lz6"
lazy_bg lz6.xtk lz6
wait_exit "$rpid" || { cat lz6.err >&2; fail "lazy restore with a damaged index"; }
grep -q "the index at its end is not used (its CRC does not match)" lz6.err || { cat lz6.err >&2; fail "lz6: the damage not said"; }
check lz6
"$xtk" destroy lz6

lzx lie lz7.xtk || fail "lz7"
lazy_bg lz7.xtk lz7
wait_exit "$rpid" && fail "a restore whose index lies succeeded"
grep -q "the index at its end does not match its records (frames" lz7.err || { cat lz7.err >&2; fail "lz7: no clear error"; }
wait_until "lz7 still there" sh -c "! '$xtk' list | grep -q '^lz7 '"

lzx nostate lz8.xtk || fail "lz8"
out=$("$xrestore" -L -n lz8 lz8.xtk 2>&1) && fail "a restore whose index passes over the state succeeded"
echo "$out" | grep -q "END without the domain's state before it" || fail "lz8: $out"
"$xtk" list | grep -q '^lz8 ' && fail "lz8 left"
wait_none
echo "lazy restore: OK"
