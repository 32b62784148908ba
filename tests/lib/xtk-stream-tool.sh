#!/bin/bash
# xtk-stream and Xen's own verifier: libxtk's streams (plain, with
# CHECKPOINT records) pass Xen 4.17's verify-stream-v2 run exactly as
# ../shared/reference/migration-stream.md says; the gzip stream decompresses
# to the same bytes (also as concatenated gzip members); the tool's strict
# verifier accepts them and refuses corrupt ones, as Xen's does; xl save
# files and libxl streams (synth --format, wrap-xl, unwrap-xl) pass
# verify-stream-v2 -f xl / -f libxl and go back and forth byte for byte;
# the JSON report follows its schema.
set -euo pipefail
tool=$top_builddir/xtk-stream
xen_verify=$XEN_BINDIR/verify-stream-v2
[ -x "$xen_verify" ] || { echo "no $xen_verify (Debian package xen-utils-4.17)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

xen() { PYTHONPATH=/usr/lib/xen-4.17/lib/python /usr/bin/python3 "$xen_verify" -i "$1"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. A checkpointed stream, plain: Xen and xtk accept it.
"$tool" synth -q -o plain.xtk -n 3000 -b 500 -c 3 -s 9 --json synth.json
xen plain.xtk || fail "verify-stream-v2 refused xtk's stream"
"$tool" verify -q -i plain.xtk || fail "xtk-stream verify refused its own stream"
# synth writes the version Xen 4.17 would (a KVM domain's stream, with
# 0.0, is in tests/engine/cli.sh).
"$tool" verify -i plain.xtk 2>/dev/null | head -1 > head.txt
grep -q "^stream: version 3, little-endian, x86 HVM, from Xen 4.17$" head.txt ||
  fail "the header line: $(cat head.txt)"
"$tool" dump -i plain.xtk > dump.txt
[ "$(grep -c ' CHECKPOINT ' dump.txt)" = 3 ] || fail "3 CHECKPOINT records"
[ "$(grep -c ' END ' dump.txt)" = 1 ] || fail "one END"

# 2. The same through the zlib layer: a .gz of the same bytes.
"$tool" synth -q -z1 -o comp.xtk.gz -n 3000 -b 500 -c 3 -s 9
zcat comp.xtk.gz | cmp - plain.xtk || fail "decompressed stream differs"
"$tool" verify -q -i comp.xtk.gz || fail "verify of the gzip stream"
"$tool" verify -q -z -i - < comp.xtk.gz || fail "gzip stream on stdin"
# Concatenated gzip members read as one stream.
half=$(( $(stat -c %s plain.xtk) / 2 ))
{ head -c "$half" plain.xtk | gzip -1; tail -c +"$((half + 1))" plain.xtk | gzip -1; } > members.gz
"$tool" verify -q -z -i - < members.gz || fail "two gzip members"
# A gzip stream cut short fails, even though the cut falls after END.
size=$(stat -c %s comp.xtk.gz)
head -c $((size - 4)) comp.xtk.gz > cut.gz
if "$tool" verify -q -z -i cut.gz 2>/dev/null; then fail "truncated gzip accepted"; fi

# 3. Through a pipe, both ends.
"$tool" synth -q -o - -n 500 -c 1 | "$tool" verify -q -i - || fail "pipe"

# 4. Checksum records: xtk verifies them; Xen 4.17's verifier refuses any
#    record type it does not know, optional ones included (so streams for
#    Xen never carry them).
"$tool" synth -q --checksum -o ck.xtk -n 1000 -c 2
"$tool" verify -q --checksum -i ck.xtk || fail "checksummed stream"
if xen ck.xtk >/dev/null 2>&1; then fail "verify-stream-v2 took an optional record"; fi
if "$tool" verify -q --checksum -i plain.xtk 2>/dev/null; then fail "--checksum without checksums"; fi

# 5. Corruption both verifiers refuse: reserved bits in the first pfn
#    entry (record at 64: header 8, count 8, entry bytes 6-7 hold 52-59).
cp plain.xtk bad.xtk
printf '\xf0' | dd of=bad.xtk bs=1 seek=$((64 + 16 + 6)) conv=notrunc status=none
if xen bad.xtk >/dev/null 2>&1; then fail "Xen accepted reserved pfn bits"; fi
if "$tool" verify -q -i bad.xtk 2>err.txt; then fail "xtk accepted reserved pfn bits"; fi
grep -q "reserved bits" err.txt || fail "the error says why: $(cat err.txt)"
# Stricter than Xen: junk after END (Xen accepts it).
{ cat plain.xtk; printf 'junk'; } > junk.xtk
xen junk.xtk >/dev/null || fail "Xen is expected to accept trailing junk"
if "$tool" verify -q -i junk.xtk 2>/dev/null; then fail "junk after END"; fi
# Truncated: a clean error, exit status 1.
head -c 100000 plain.xtk > short.xtk
set +e; "$tool" verify -q -i short.xtk 2>err.txt; rc=$?; set -e
[ $rc = 1 ] && grep -q truncated err.txt || fail "truncated: rc $rc, $(cat err.txt)"
# Usage errors: status 2.
set +e; "$tool" synth --pages 0 2>/dev/null; rc=$?; set -e
[ $rc = 2 ] || fail "usage error gives 2, not $rc"

# 6. xl's save file and libxl's framing: synth writes them, Xen's verifier
#    takes the plain ones (-f xl, -f libxl), wrap-xl and unwrap-xl go
#    back and forth byte for byte, verify and dump say what framing and
#    config there are, and corrupt framing is refused with the reason.
xenf() { PYTHONPATH=/usr/lib/xen-4.17/lib/python /usr/bin/python3 "$xen_verify" -f "$1" -i "$2"; }
printf '{\n    "c_info": {"type": "pvh", "name": "guest"},\n    "b_info": {"max_memkb": 16384}\n}\n' > cfg.json
printf 'name = "guest"\ntype = "pvh"\nmemory = 16\n' > cfg.txt
"$tool" synth -q -o p1.xtk -n 2000 -b 500 -s 3
"$tool" synth -q -o x1.xtk -n 2000 -b 500 -s 3 --format xl --config cfg.json
xenf xl x1.xtk >/dev/null || fail "verify-stream-v2 -f xl refused xtk's xl file"
if xenf libxc x1.xtk >/dev/null 2>&1; then fail "-f libxc took an xl file"; fi
"$tool" wrap-xl -q --libxl p1.xtk l1.xtk
xenf libxl l1.xtk >/dev/null || fail "verify-stream-v2 -f libxl refused xtk's libxl stream"
"$tool" wrap-xl -q --config cfg.txt p1.xtk t1.xtk
xenf xl t1.xtk >/dev/null || fail "verify-stream-v2 -f xl refused a .cfg-text xl file"
# wrap-xl of the bare stream is what synth framed itself; unwrap-xl gives
# back the bare stream and the config (also of the checkpointed stream).
"$tool" wrap-xl -q --config cfg.json p1.xtk w1.xtk
cmp w1.xtk x1.xtk || fail "wrap-xl differs from synth --format xl"
"$tool" unwrap-xl -q --config-out back.json x1.xtk u1.xtk
cmp u1.xtk p1.xtk || fail "unwrap-xl is not the bare stream"
cmp back.json cfg.json || fail "unwrap-xl's config"
"$tool" synth -q -o xc.xtk -n 3000 -b 500 -c 3 -s 9 --format xl --config cfg.json
"$tool" unwrap-xl -q xc.xtk - | cmp - plain.xtk || fail "unwrap-xl of a checkpointed xl file"
"$tool" wrap-xl -q plain.xtk - | "$tool" verify -q --format xl -i - ||
  fail "wrap-xl to a pipe"
# Re-framing an xl file keeps its config.
"$tool" wrap-xl -q x1.xtk r1.xtk && cmp r1.xtk x1.xtk || fail "re-framing"
# verify and dump say what there is.
"$tool" verify -i xc.xtk > v.txt
grep -q '^xl: mandatory flags 0x3 (JSON, STREAMv2).*config: JSON, 88 bytes' v.txt ||
  fail "verify's xl line: $(cat v.txt)"
grep -q '^libxl: 5 records: LIBXC_CONTEXT, 3 CHECKPOINT_END' v.txt || fail "verify's libxl line"
"$tool" verify -i t1.xtk | grep -q 'config: xl .cfg text, 40 bytes' || fail "text config"
"$tool" dump -i xc.xtk > d.txt
[ "$(grep -c 'libxl CHECKPOINT_END' d.txt)" = 3 ] || fail "dump: 3 CHECKPOINT_END"
[ "$(grep -c 'libxl END' d.txt)" = 1 ] || fail "dump: the libxl END"
[ "$(grep -c ' CHECKPOINT ' d.txt)" = 3 ] || fail "dump: 3 CHECKPOINT"
"$tool" verify -q --format xl -i xc.xtk || fail "--format xl"
if "$tool" verify -q --format libxc -i xc.xtk 2>/dev/null; then fail "--format libxc took xl"; fi
if "$tool" verify -q --format xl -i plain.xtk 2>/dev/null; then fail "--format xl took libxc"; fi
# gzip: the framing sits inside the compression.
"$tool" synth -q -z1 -o xz.xtk.gz -n 2000 -b 500 -s 3 --format xl --config cfg.json
zcat xz.xtk.gz | cmp - x1.xtk || fail "gzipped xl file"
"$tool" verify -q -i xz.xtk.gz || fail "verify of a gzipped xl file"
# Corrupt framing: the reason, exit status 1.
bad() { # FILE OFFSET HEXBYTE WORD
  cp "$1" bad.xtk
  printf "\\x$3" | dd of=bad.xtk bs=1 seek="$2" conv=notrunc status=none
  set +e; "$tool" verify -q -i bad.xtk 2>err.txt; rc=$?; set -e
  [ $rc = 1 ] && grep -q "$4" err.txt || fail "offset $2 = $3: rc $rc, $(cat err.txt)"
}
bad x1.xtk 20 00 "magic"
bad x1.xtk 32 05 "byte order"
bad x1.xtk 36 07 "mandatory flags"
bad x1.xtk 36 01 "legacy"
bad x1.xtk 46 10 "optional data"
bad x1.xtk 48 ff "config of"
bad x1.xtk $((52 + 87)) 7d "NUL-terminated"
bad x1.xtk $((52 + 88 + 11)) 03 "version"
bad x1.xtk $((52 + 88 + 16)) 04 "LIBXC_CONTEXT was due"
size=$(stat -c %s x1.xtk)
bad x1.xtk $((size - 8)) 04 "END was due"
head -c $((size - 8)) x1.xtk > bad.xtk
set +e; "$tool" verify -q -i bad.xtk 2>err.txt; rc=$?; set -e
[ $rc = 1 ] && grep -q "without the libxl END" err.txt || fail "no libxl END: $(cat err.txt)"
if "$tool" unwrap-xl -q --config-out c.out p1.xtk u.xtk 2>/dev/null; then fail "config of a bare stream"; fi
if "$tool" wrap-xl -q x1.xtk x1.xtk 2>/dev/null; then fail "wrap-xl over its input"; fi
cmp x1.xtk w1.xtk || fail "the input was damaged"

# 7. The JSON report follows schema xtk-stats/1.
"$tool" verify -q -i plain.xtk --json verify.json
"$PYTHON3" - synth.json verify.json <<'PY'
import json, sys
for path in sys.argv[1:]:
    r = json.load(open(path))
    assert r["schema"] == "xtk-stats/1", r["schema"]
    assert isinstance(r["title"], str)
    for p in r["phases"]:
        assert set(p) == {"name", "ns", "t_ns", "delta_ns"}, p
    assert r["phases"][0]["t_ns"] == 0
    assert all(b["t_ns"] >= a["t_ns"] for a, b in zip(r["phases"], r["phases"][1:]))
    assert len(r["rounds"]) == 4, r["rounds"]
    for i, row in enumerate(r["rounds"]):
        assert set(row) == {"round", "dirty", "sent", "bytes", "ns", "bytes_per_s", "pages_per_s"}
        assert row["round"] == i and row["bytes"] > 0
    assert all(isinstance(v, int) for v in r["counters"].values())
    for h in r["histograms"]:
        assert set(h) == {"name", "unit", "count", "min", "mean", "p50", "p90", "p99", "max"}
        if h["count"]:
            assert h["min"] <= h["p50"] <= h["p90"] <= h["p99"] <= h["max"], h
s, v = (json.load(open(p)) for p in sys.argv[1:])
assert s["counters"]["page entries"] == v["counters"]["page entries"]
assert s["counters"]["stream bytes"] == v["counters"]["stream bytes"]
# epochs between the first and last CHECKPOINT hold the same bytes
assert [r["bytes"] for r in s["rounds"]][1:-1] == [r["bytes"] for r in v["rounds"]][1:-1]
PY
echo "xtk-stream: all checks passed"
