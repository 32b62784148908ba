#!/usr/bin/env bash
# xtk's quick start, on a fresh Debian 12 machine, as root:
#
#   ./quickstart.sh demo    install what the demo needs (the build tools;
#                           Xen's verifier is unpacked into build/, not
#                           installed), build xtk, and run the main job,
#                           printing its latency report
#   ./quickstart.sh test    install everything the tests need
#                           (scripts/deps.txt), build xtk, and run the
#                           test suite ("N passed, N failed")
set -euo pipefail
top=$(cd "$(dirname "$0")" && pwd)
case "${1:-}" in
  demo)
    XTK_DEPS="build demo" "$top/scripts/setup.sh" build
    exec "$top/scripts/demo.sh" build
    ;;
  test)
    XTK_DEPS="build test" "$top/scripts/setup.sh" build
    exec "$top/scripts/check.sh" build
    ;;
  *)
    echo "usage: $0 demo|test" >&2
    exit 2
    ;;
esac
