#!/usr/bin/env bash
# Sets up a Debian 12 machine for xtk and builds it.
#
#   scripts/setup.sh [BUILD_DIR [CONFIGURE_ARGS...]]
#
# Installs the packages scripts/deps.txt lists that are missing (apt-get
# update first), regenerates the build system and builds in BUILD_DIR
# (default build/).  Runs as root, or with sudo where there is one.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
builddir=${1:-build}
shift || true

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root to install packages" >&2; return 1; fi
}

missing=()
while read -r pkg; do
  case "$pkg" in ''|'#'*) continue ;; esac
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done < "$top/scripts/deps.txt"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  as_root apt-get update -q >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

cd "$top"
if [ ! -x configure ] || [ configure.ac -nt configure ] || \
   [ -n "$(find . -name '*.am' -newer configure -not -path './build*' 2>/dev/null | head -1)" ]; then
  ./autogen.sh
fi
mkdir -p "$builddir"
cd "$builddir"
if [ ! -f Makefile ] || [ "$top/configure" -nt config.status ]; then
  "$top/configure" -q "$@" >&2
fi
make -s -j"$(nproc)" >&2
