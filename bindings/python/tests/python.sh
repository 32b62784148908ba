#!/usr/bin/env bash
# The Python bindings' suite (pytest, for the interpreter the bindings were
# built for), from the build tree: the C layer from .libs, the package
# from the source tree, libxtk from the build's .libs, xtk-hv and the
# built-in guest of this build.  Under a sanitizer build the interpreter
# gets the sanitizer runtime preloaded (Python itself is not built with
# it; its own allocations at exit are not leaks of ours).
set -euo pipefail
b=$top_builddir
s=$top_srcdir
py=${PYTHON:-/usr/bin/python3}
[ -r /dev/kvm ] || { echo "SKIP: no /dev/kvm" >&2; exit 77; }
"$py" -c 'import pytest' 2>/dev/null ||
  { echo "SKIP: no pytest for $py (Debian: python3-pytest)" >&2; exit 77; }
export XTK_HV=$b/xtk-hv XTK_GUEST=$b/guests/xtk-guest.elf
export XTK_BUILD=$b XSD_LITE=$b/xsd-lite/xsd-lite
export PYTHONPATH=$b/bindings/python/.libs:$s/bindings/python
export LD_LIBRARY_PATH=$b/.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONDONTWRITEBYTECODE=1
preload=
case ${SAN_CFLAGS:-} in
*address*)
  asan=$(${CC:-gcc} -print-file-name=libasan.so)
  ubsan=$(${CC:-gcc} -print-file-name=libubsan.so)
  preload="$asan $ubsan"
  export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
  ;;
esac
# pytest's temporary directories (the run directories) in one place, so
# that a run that dies (a crash under a sanitizer) leaves no guest behind.
base=$(mktemp -d /tmp/xtk-pytest.XXXXXX)
cleanup() {
  local rc=$? p
  for p in $(pgrep -f "xtk-hv .*--rundir $base/" || true); do
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$base"
  exit $rc
}
trap cleanup EXIT
cd "$s/bindings/python/tests"
# The runtime for the interpreter only (pgrep in the cleanup hangs under
# it).
LD_PRELOAD=$preload "$py" -m pytest -p no:cacheprovider -q -rs \
  --basetemp="$base/t" "$@" .
