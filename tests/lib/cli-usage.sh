#!/bin/bash
# What every program says to a user who asks for its version or gets an
# option or a command wrong: --version prints "PROG VERSION" (config.h's
# PACKAGE_VERSION); an unknown option or command names the program by its
# plain name (never libtool's .libs/lt-PROG path), says what was wrong,
# points at --help, and exits 2; --help goes to stdout and exits 0.
set -euo pipefail
b=$top_builddir
version=$(sed -n 's/^#define PACKAGE_VERSION "\(.*\)"$/\1/p' "$b/config.h")
[ -n "$version" ] || { echo "FAIL: no PACKAGE_VERSION in config.h" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# run PROG ARGS...: sets rc, out (stdout) and err (stderr).
run() {
  set +e
  "$@" >"$work/out" 2>"$work/err"
  rc=$?
  set -e
  out=$(cat "$work/out")
  err=$(cat "$work/err")
}

# A usage error: exit 2, "NAME: WHAT" and the hint, nothing on stdout.
usage_error() {
  local name=$1 what=$2
  shift 2
  run "$@"
  [ "$rc" = 2 ] || fail "$*: exit $rc, not 2"
  [ -z "$out" ] || fail "$*: printed on stdout: $out"
  grep -qxF "$name: $what" <<<"$err" || fail "$*: no '$name: $what' in: $err"
  grep -qxF "Try '$name --help' for more information." <<<"$err" ||
    fail "$*: no pointer to --help in: $err"
  [ "$(wc -l <<<"$err")" = 2 ] || fail "$*: more than the error and the hint: $err"
}

for p in xtk xtk-save xtk-restore xtk-stream xtk-hv xsd-lite; do
  case $p in
  xsd-lite) path=$b/xsd-lite/xsd-lite ;;
  *) path=$b/$p ;; # every other program at the top of the build tree
  esac
  [ -x "$path" ] || fail "no $path"
  run "$path" --version
  [ "$rc" = 0 ] && [ "$out" = "$p $version" ] || fail "$p --version: exit $rc, '$out' $err"
  run "$path" --help
  [ "$rc" = 0 ] && [ -n "$out" ] || fail "$p --help: exit $rc"
  usage_error "$p" "unrecognized option '--frobnicate'" "$path" --frobnicate
done

# Commands and operands.
usage_error xtk "unknown command 'frobnicate'" "$b/xtk" frobnicate
usage_error xtk "no command" "$b/xtk"
usage_error xtk "unrecognized option '--bogus'" "$b/xtk" create --bogus
usage_error xtk "info: expected DOMAIN" "$b/xtk" info
usage_error xtk-stream "unknown command 'frobnicate'" "$b/xtk-stream" frobnicate
usage_error xtk-stream "unrecognized option '--bogus'" "$b/xtk-stream" verify --bogus
usage_error xtk-save "expected a DOMAIN and a FILE, - or tcp:HOST:PORT" "$b/xtk-save" web
usage_error xtk-restore "no FILE, - or listen:PORT" "$b/xtk-restore"
usage_error xtk-hv "unexpected argument 'extra'" "$b/xtk-hv" extra
echo "cli-usage: --version, --help and usage errors of every program"
