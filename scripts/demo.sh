#!/usr/bin/env bash
# The main job: what xtk can do today, with its latency report.
# (Grows into: live-checkpoint a built-in guest and print the report.)
set -euo pipefail
builddir=${1:-build}
echo "xtk demo: nothing to run yet" >&2
exit 1
