#!/usr/bin/env bash
# xtk's quick start, on a fresh Debian 12 machine, as root:
#
#   ./quickstart.sh demo    install what xtk needs, build it, and run the
#                           main job, printing its latency report
#   ./quickstart.sh test    install what xtk needs, build it, and run the
#                           test suite ("N passed, N failed")
set -euo pipefail
top=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
  demo)
    "$top/scripts/setup.sh" build
    exec "$top/scripts/demo.sh" build
    ;;
  test)
    "$top/scripts/setup.sh" build
    exec "$top/scripts/check.sh" build
    ;;
  *)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
