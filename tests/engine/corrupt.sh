#!/bin/bash
# The corrupt-stream matrix against xtk-restore: a good stream of a real
# guest, then foreign, malformed, truncated and lying versions of it.
# Each must be refused with one line that says why, and leave no domain
# behind (checked with `xtk list`).  The good one must still restore.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"

"$xtk" create -n victim -m 16 -w dirty -P 256 -r 1000 --no-store >/dev/null
check victim
"$xsave" -q victim good.xtk || fail "save"
gzip -1 -c good.xtk > good.xtk.gz

# Writes bad-NAME.xtk files and a list of NAME<TAB>expected message.
python3 - good.xtk <<'PY' > cases.txt
import struct, sys, random
good = open(sys.argv[1], "rb").read()
# The stream only: the lazy restore's index after END goes (xtk-stream(5))
if good[-8:] == b"xtkLZIXE":
    good = good[:struct.unpack_from("<Q", good, len(good) - 24)[0]]
hdr, recs = good[:40], []
off = 40
while off < len(good):
    t, l = struct.unpack_from("<II", good, off)
    body = good[off + 8:off + 8 + l]
    recs.append([t, body])
    off += 8 + ((l + 7) & ~7)
def rec(t, body, length=None):
    l = len(body) if length is None else length
    return struct.pack("<II", t, l) + body + b"\0" * (-len(body) % 8)
def build(rs, h=hdr):
    return h + b"".join(rec(t, b) for t, b in rs)
def first(t):
    return next(i for i, r in enumerate(recs) if r[0] == t)
cases = {}
def case(name, data, why):
    open("bad-%s.xtk" % name, "wb").write(data)
    print("%s\t%s" % (name, why))
h = bytearray(hdr); h[0] = 0
case("marker", bytes(h) + good[40:], "not a migration stream")
h = bytearray(hdr); h[8:12] = b"XENX"
case("id", bytes(h) + good[40:], "is not \"XENF\"")
h = bytearray(hdr); h[15] = 2
case("version", bytes(h) + good[40:], "version 2; xtk reads version 3")
h = bytearray(hdr); h[17] = 1
case("bigendian", bytes(h) + good[40:], "a big-endian stream")
h = bytearray(hdr); h[24] = 1
case("pv", bytes(h) + good[40:], "PV")
h = bytearray(hdr); h[28] = 13
case("pageshift", bytes(h) + good[40:], "page shift 13")
case("empty", b"", "before the image header")
random.seed(7)
case("junk", bytes(random.getrandbits(8) for _ in range(5000)), "not a migration stream")
case("headers-only", hdr, "without an END record")
pd = first(1)
cut = 40 + sum(8 + ((len(b) + 7) & ~7) for _, b in recs[:pd]) + 8 + 3000
case("cut-pages", good[:cut], "truncated")
case("cut-end", good[:-8], "without an END record")
i = first(0x10) + 1
case("huge-record", build(recs[:i]) + struct.pack("<II", 1, 0x20000000) + b"\0" * 64, "over the limit")
case("unknown-mandatory", build(recs[:i] + [[0x7f, b"12345678"]] + recs[i:]), "unknown mandatory record")
def entry(b, i):
    return struct.unpack_from("<Q", b, 8 + 8 * i)[0]
rs = [list(r) for r in recs]; b = bytearray(rs[pd][1])
e = entry(b, 0)  # keep its type: only the frame moves beyond 16 MiB
struct.pack_into("<Q", b, 8, (e & ~((1 << 52) - 1)) | (16 * 256 + 5))
rs[pd][1] = bytes(b)
case("pfn-beyond", build(rs), "beyond the guest's memory")
rs = [list(r) for r in recs]; b = bytearray(rs[pd][1])
n = struct.unpack_from("<I", b, 0)[0]
k = next(i for i in range(n) if entry(b, i) >> 60 == 0)  # one with data
struct.pack_into("<Q", b, 8 + 8 * k, (1 << 60) | entry(b, k))  # an L1 table
rs[pd][1] = bytes(b)
case("pagetable", build(rs), "page type")
ctx = first(9)
case("no-state", build(recs[:ctx] + recs[ctx + 1:]), "without the domain's state")
rs = [list(r) for r in recs]; b = bytearray(rs[ctx][1]); b[0:8] = b"NOTXTKST"
rs[ctx][1] = bytes(b)
case("state-magic", build(rs), "not xtk's state")
rs = [list(r) for r in recs]; b = bytearray(rs[ctx][1]); b[16:24] = b"xen\0\0\0\0\0"
rs[ctx][1] = bytes(b)
case("state-backend", build(rs), "backend 'xen'")
rs = [list(r) for r in recs]; b = bytearray(rs[ctx][1])
struct.pack_into("<I", b, 52, 0xfffff)  # the first state record's length
rs[ctx][1] = bytes(b)
case("state-records", build(rs), "malformed state records")
rs = [list(r) for r in recs]; b = bytearray(rs[ctx][1])
struct.pack_into("<I", b, 24, 3)  # vCPUs in the state header
rs[ctx][1] = bytes(b)
case("state-shape", build(rs), "state of a domain of 3 vCPUs")
rs = [list(r) for r in recs]; b = bytearray(rs[ctx][1])
body_off = 48 + 8  # the xtk header, the first record's header
# A record that frames well but that KVM refuses: the first one with its
# instance pointing at a vCPU the domain lacks.
struct.pack_into("<I", b, body_off, 6)
rs[ctx][1] = bytes(b)
case("state-vcpu", build(rs), "does not load")
prm = first(0xa)
case("no-shape", build(recs[:prm] + recs[prm + 1:]), "before the domain's shape")
rs = [list(r) for r in recs]
rs[prm][1] = struct.pack("<IIQQ", 1, 0, 1, 0x1234)
case("xen-params", build(rs), "a Xen guest's")
rs = [list(r) for r in recs]; b = bytearray(rs[prm][1])
struct.pack_into("<Q", b, 8 + 16 * 1 + 8, 4097)  # pages: not whole MiB
rs[prm][1] = bytes(b)
case("shape-size", build(rs), "not whole MiB")
rs = [list(r) for r in recs]; b = bytearray(rs[prm][1])
struct.pack_into("<Q", b, 8 + 16 * 2 + 8, 0)  # no vCPUs
rs[prm][1] = bytes(b)
case("shape-vcpus", build(rs), "0 vCPUs")
rs = [list(r) for r in recs]
case("two-shapes", build(recs[:pd + 1] + [recs[prm]] + recs[pd + 1:]), "a second HVM_PARAMS")
PY
[ "$(wc -l < cases.txt)" -ge 25 ] || fail "the matrix was not built"

# A truncated gzip stream too.
size=$(stat -c %s good.xtk.gz)
head -c $((size / 2)) good.xtk.gz > bad-gzip-cut.xtk
printf 'gzip-cut\ttruncated\n' >> cases.txt

while IFS=$'\t' read -r name why; do
  if "$xrestore" -q "bad-$name.xtk" > out.txt 2> err.txt; then
    fail "$name: restored: $(cat out.txt)"
  fi
  grep -q -- "$why" err.txt || { cat err.txt >&2; fail "$name: no '$why' in the message"; }
  # One line: the cause, not the cause and then generic ones.
  [ "$(wc -l < err.txt)" = 1 ] || { cat err.txt >&2; fail "$name: more than one line"; }
  [ "$(domains)" = 0 ] || { "$xtk" list >&2; fail "$name: a domain was left behind"; }
  echo "refused: $name: $(cat err.txt)"
done < cases.txt

# The good stream restores, plain and compressed.
id=$("$xrestore" -q -n copy good.xtk) || fail "the good stream"
check "$id"
"$xrestore" -q -n copy2 good.xtk.gz >/dev/null || fail "the good gzip stream"
check copy2
echo ok
