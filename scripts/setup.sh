#!/usr/bin/env bash
# Sets up a Debian 12 machine for xtk and builds it.
#
#   scripts/setup.sh [BUILD_DIR [CONFIGURE_ARGS...]]
#   scripts/setup.sh --packages [SECTION...]   print a section's packages
#
# Installs the packages of the scripts/deps.txt sections XTK_DEPS names
# (default "build test": all of them) that are missing (apt-get update
# first), unpacks those of [demo] into BUILD_DIR/unpacked unless they are
# installed, regenerates the build system and builds in BUILD_DIR (default
# build/), configuring again when packages were installed (configure looks
# for Xen's libraries).  Runs as root, or with sudo where there is one.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)

# packages SECTION...: the packages of those sections of deps.txt.
packages() {
  awk -v want=" $* " '
    /^[ \t]*(#|$)/ { next }
    /^\[/ { sec = substr($0, 2, index($0, "]") - 2); next }
    index(want, " " sec " ") { print $1 }' "$top/scripts/deps.txt"
}
if [ "${1:-}" = --packages ]; then
  shift
  packages "${@:-build demo test}"
  exit 0
fi

builddir=${1:-build}
shift || true
sections=${XTK_DEPS:-build test}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root to install packages" >&2; return 1; fi
}
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

missing=()
for pkg in $(packages $(echo " $sections " | sed 's/ demo / /g')); do
  installed "$pkg" || missing+=("$pkg")
done
unpack=()
case " $sections " in *" demo "*)
  for pkg in $(packages demo); do installed "$pkg" || unpack+=("$pkg"); done ;;
esac
reconfigure=
if [ ${#missing[@]} -gt 0 ] || [ ${#unpack[@]} -gt 0 ]; then
  as_root apt-get update -q >&2
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  reconfigure=1
fi
case $builddir in /*) ;; *) builddir=$top/$builddir ;; esac
mkdir -p "$builddir"
if [ ${#unpack[@]} -gt 0 ]; then
  # Their files only, in the build directory: nothing is installed.
  echo "setup: unpacking ${unpack[*]} into $builddir/unpacked" >&2
  dl=$(mktemp -d)
  (cd "$dl" && apt-get download -q "${unpack[@]}" >&2)
  for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$builddir/unpacked"; done
  rm -rf "$dl"
fi

cd "$top"
if [ ! -x configure ] || [ configure.ac -nt configure ] || \
   [ -n "$(find . -name '*.am' -newer configure -not -path './build*' 2>/dev/null | head -1)" ]; then
  ./autogen.sh
fi
cd "$builddir"
if [ ! -f Makefile ] || [ -n "$reconfigure" ] || [ "$top/configure" -nt config.status ]; then
  "$top/configure" -q "$@" >&2
fi
make -s -j"$(nproc)" >&2
