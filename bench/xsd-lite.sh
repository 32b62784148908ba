#!/usr/bin/env bash
# Runs xsd-lite's benchmarks (bench/xsd-bench.c) against a fresh daemon of
# BUILD_DIR, REPS times each, and prints one line of figures per run.
#
#   bench/xsd-lite.sh [BUILD_DIR [REPS]]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
reps=${2:-3}
make -s -C "$build" bench >&2
dir=$(mktemp -d /tmp/xsd-bench.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT

start() {
  rm -f "$dir/pid"
  "$build/xsd-lite/xsd-lite" -N -s "$dir/sock" -F "$dir/pid" -l warning \
    -L "$dir/log" &
  pid=$!
  for _ in $(seq 200); do [ -s "$dir/pid" ] && return; sleep 0.05; done
  echo "xsd-lite did not start" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" || true; pid=; }

B=$build/bench/xsd-bench
echo "# $(uname -r), $(nproc) cores, $(date -u +%Y-%m-%d)"
for _ in $(seq "$reps"); do
  start
  "$B" rtt "$dir/sock" 50000 "$pid"
  "$B" mix "$dir/sock" 3
  "$B" storm "$dir/sock" 300
  "$B" fanout "$dir/sock" 1000 200
  stop
  start
  "$B" memory "$dir/sock" "$pid" 1000000
  stop
done
