#!/bin/bash
# Migration endpoints, as a user and a script meet them: ports outside
# 1-65535 are refused up front (listen:0 takes a free port and says which);
# xtk-restore says where it listens, on stderr and in --port-file; a
# migration to the port read from that file works; and xtk-save -t bounds
# the wait for a destination that refuses connections.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"

# refused WANT CMD...: exit 2, WANT on stderr, nothing started.
refused() {
  local want=$1 rc
  shift
  set +e
  "$@" > out.txt 2> err.txt
  rc=$?
  set -e
  [ "$rc" = 2 ] || fail "$*: exit $rc, not 2: $(cat err.txt)"
  grep -qF -- "$want" err.txt || fail "$*: no '$want' in: $(cat err.txt)"
}

refused "bad port '99999' (0 for any free one, or 1 to 65535)" "$xrestore" listen:99999
refused "bad port '65536'" "$xrestore" listen:127.0.0.1:65536
refused "bad port 'http'" "$xrestore" listen:http
refused "bad port '-5'" "$xrestore" listen:-5
refused "--port-file is for listen" "$xrestore" --port-file pf x.xtk

"$xtk" create -n web -m 32 -w dirty -P 256 -r 1000 --no-store >/dev/null
check web
refused "bad port '0' (1 to 65535)" "$xsave" -l web tcp:127.0.0.1:0
refused "bad port '70000' (1 to 65535)" "$xsave" -l web tcp:127.0.0.1:70000
refused "bad port 'x'" "$xsave" -l web tcp:localhost:x
[ "$(domains)" = 1 ] || fail "a refused save touched the domain"

# -t bounds the retries against a port where nothing listens (it was 5 s
# whatever -t said).
port=$((20000 + RANDOM % 20000))
while ss -Hltn "sport = :$port" | grep -q .; do port=$((port + 1)); done
start=$(date +%s%N)
if "$xsave" -q -t 300 -l web tcp:127.0.0.1:$port 2> err.txt; then fail "saved to nobody"; fi
ms=$(( ($(date +%s%N) - start) / 1000000 ))
grep -q "cannot connect to 127.0.0.1:$port within 300 ms: Connection refused" err.txt ||
  fail "the refusal: $(cat err.txt)"
[ "$ms" -ge 250 ] && [ "$ms" -lt 3000 ] || fail "-t 300 waited $ms ms"
check web

# listen:0: a free port, said on stderr and written to --port-file; a
# migration to it.
XTK_RUNDIR=$work/run-dst "$xrestore" --port-file port.txt listen:127.0.0.1:0 \
  > dst.id 2> dst.err &
bg_pids+=($!)
wait_until "no --port-file" test -s port.txt
port=$(cat port.txt)
[[ "$port" =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] ||
  fail "port file: '$port'"
grep -qx "xtk-restore: listening on 127.0.0.1:$port" dst.err ||
  fail "no 'listening on': $(cat dst.err)"
"$xsave" -l web tcp:127.0.0.1:$port 2> src.err ||
  fail "migration to the port read from the file: $(cat src.err)"
# The source's report: each histogram once ("downtime (us)" was said to
# appear twice).
sed -n '/^histogram /,$p' src.err | awk 'NR > 1 { sub(/ +[0-9].*/, ""); print }' > hists.txt
grep -qx "  downtime (us)" hists.txt || fail "no downtime in: $(cat src.err)"
[ -z "$(sort hists.txt | uniq -d)" ] || fail "a histogram twice: $(cat src.err)"
wait "${bg_pids[-1]}" || fail "xtk-restore: $(cat dst.err)"
XTK_RUNDIR=$work/run-dst check "$(cat dst.id)"

# A fixed port says it too, on the loopback address when none is named
# (the stream is in clear); -q does not.
port=$((port % 60000 + 1024))
while ss -Hltn "sport = :$port" | grep -q .; do port=$((port + 1)); done
XTK_RUNDIR=$work/run-dst "$xrestore" -t 2000 listen:$port > /dev/null 2> fixed.err &
bg_pids+=($!)
wait_until "no 'listening on' for listen:$port" \
  grep -qx "xtk-restore: listening on 127.0.0.1:$port" fixed.err
kill "${bg_pids[-1]}"
grep -q warning fixed.err && fail "a warning for the loopback: $(cat fixed.err)"
# Every address, as asked: with a warning that anyone can send a domain.
XTK_RUNDIR=$work/run-dst "$xrestore" -t 2000 listen:0.0.0.0:0 > /dev/null 2> any.err &
bg_pids+=($!)
wait_until "no 'listening on' for listen:0.0.0.0:0" \
  grep -q "xtk-restore: listening on 0\.0\.0\.0:" any.err
kill "${bg_pids[-1]}"
grep -q "warning: listening on 0\.0\.0\.0:[0-9]*, where any host that can reach it can send a domain here" any.err ||
  fail "no warning for every address: $(cat any.err)"
XTK_RUNDIR=$work/run-dst "$xrestore" -q --port-file q.txt listen:127.0.0.1:0 > /dev/null 2> quiet.err &
bg_pids+=($!)
wait_until "no --port-file with -q" test -s q.txt
kill "${bg_pids[-1]}"
[ ! -s quiet.err ] || fail "-q printed: $(cat quiet.err)"
echo "ports: checked, said, and -t bounds the connection"
