#!/usr/bin/env bash
# Builds the benchmarks (make bench) and runs them as docs/benchmarks.md
# gives them, each next to its floor or peer in the same run.
#
#   scripts/bench.sh [BUILD_DIR] [all|stream|xsd|kvm|sr|engine|checkpoint]...
#
# The machine should be quiet (look at `uptime`): the figures are ratios
# against a floor measured in the same run, but p99s move with the load.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
builddir=${1:-build}
shift || true
[ -d "$builddir" ] || builddir=$top/$builddir
builddir=$(cd "$builddir" && pwd)
parts=${*:-all}
make -s -C "$builddir" bench
export XTK_HV=$builddir/xtk-hv XTK_GUEST=$builddir/guests/xtk-guest.elf

want() { case " $parts " in *" all "*|*" $1 "*) return 0 ;; esac; return 1; }
run() { echo "== $*  (load: $(cut -d' ' -f1-3 /proc/loadavg))"; "$@"; }

if want stream; then run "$builddir/bench/stream-bench"; fi
if want xsd; then run "$top/bench/xsd-lite.sh" "$builddir" 3; fi
if want kvm; then run "$builddir/bench/kvm-bench" all 3000; fi
if want sr; then
  run "$builddir/bench/sr-bench" throughput 1024 5
  run "$builddir/bench/sr-bench" restore 1024 5
fi
if want engine; then
  run python3 "$top/bench/engine-bench.py" "$builddir" final-round 100
  run python3 "$top/bench/engine-bench.py" "$builddir" migrate 30
fi
if want checkpoint; then
  run python3 "$top/bench/checkpoint-bench.py" "$builddir" --runs 20
fi
