#!/bin/bash
# What ./quickstart.sh demo installs (scripts/deps.txt, sections): the
# build tools and what scripts/demo.sh runs, nothing the tests alone need
# (QEMU, clang, Xen's tools and libraries: their dependencies pulled in
# udev and a systemd upgrade); Xen's verifier is unpacked, not installed.
# `test` (and .ci/run, and setup.sh by default) still installs everything.
# Where apt's package lists are present, the whole closure the demo would
# install on a bare system is checked too.
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
deps=$top_srcdir/scripts/deps.txt
setup=$top_srcdir/scripts/setup.sh
grep -q '^\[build\]' "$deps" && grep -q '^\[test\]' "$deps" ||
  fail "scripts/deps.txt has no sections: the demo would install everything"
grep -q 'XTK_DEPS="build demo"' "$top_srcdir/quickstart.sh" ||
  fail "quickstart.sh demo does not ask for the demo's sections"

demo=$("$setup" --packages build)
unpacked=$("$setup" --packages demo)
everything=$("$setup" --packages build test)
for p in qemu-system-x86 clang libclang-rt-14-dev clang-format libxen-dev \
         xen-utils-4.17 xenstore-utils busybox-static; do
  ! grep -qx "$p" <<< "$demo" || fail "the demo installs $p"
  grep -qx "$p" <<< "$everything" || fail "the tests do not install $p"
done
[ "$unpacked" = xen-utils-4.17 ] || fail "the demo unpacks: $unpacked"
# What demo.sh runs: a compiler toolchain and python3 (its report, Xen's
# verifier).
for p in build-essential python3 libevent-dev zlib1g-dev; do
  grep -qx "$p" <<< "$demo" || fail "the demo does not install $p"
done
# The default (setup.sh without XTK_DEPS, as .ci/run calls it) is all.
grep -q 'sections=${XTK_DEPS:-build test}' "$setup" || fail "setup.sh's default"

# The closure on a bare system (an empty dpkg status): no udev, systemd,
# QEMU, clang or Xen.
if apt-cache show build-essential >/dev/null 2>&1; then
  empty=$(mktemp)
  trap 'rm -f "$empty"' EXIT
  closure=$(apt-get -s -q -o Dir::State::status="$empty" install \
    --no-install-recommends $demo 2>&1 | awk '/^Inst /{print $2}') ||
    fail "apt-get -s failed"
  [ "$(wc -l <<< "$closure")" -gt 20 ] || fail "no closure: $closure"
  for p in udev systemd qemu-system-x86 clang-14 xen-utils-4.17 \
           xen-utils-common libxen-dev; do
    ! grep -qx "$p" <<< "$closure" || fail "the demo's closure has $p"
  done
  echo "the demo's closure on a bare system: $(wc -l <<< "$closure") packages" >&2
else
  echo "no apt package lists: the closure is not checked" >&2
fi
echo ok
