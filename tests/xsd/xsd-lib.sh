# xsd-lib.sh - what xsd-lite's shell tests share: a daemon of this build in
# its own temporary directory, found by the clients through XENSTORED_PATH.
XSD_LITE=${XSD_LITE:-${top_builddir:-.}/xsd-lite/xsd-lite}
XEN_BINDIR=${XEN_BINDIR:-/usr/lib/xen-4.17/bin}
XSD_DIR=$(mktemp -d /tmp/xsdt.XXXXXX)
XSD_PID=
export XENSTORED_PATH=$XSD_DIR/sock
unset XENSTORED_RUNDIR

xsd_cleanup() {
  [ -n "$XSD_PID" ] && kill -9 "$XSD_PID" 2>/dev/null
  rm -rf "$XSD_DIR"
}
trap xsd_cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  [ -f "$XSD_DIR/log" ] && tail -n 30 "$XSD_DIR/log" >&2
  exit 1
}

need() { # need PROGRAM...: the Debian packages in scripts/deps.txt
  for p in "$@"; do
    command -v "$p" >/dev/null 2>&1 || [ -x "$p" ] || {
      echo "SKIP: $p is missing (scripts/setup.sh installs it)" >&2; exit 77; }
  done
}

# Waits until FILE exists (the pid file: written once the sockets listen).
wait_file() {
  for _ in $(seq 200); do [ -s "$1" ] && return 0; sleep 0.05; done
  fail "$1 did not appear"
}

# xsd_start [ARGS...]: a foreground daemon on $XENSTORED_PATH.
xsd_start() {
  rm -f "$XSD_DIR/pid"
  "$XSD_LITE" -N -s "$XENSTORED_PATH" -F "$XSD_DIR/pid" -l debug \
    -L "$XSD_DIR/log" "$@" &
  XSD_PID=$!
  wait_file "$XSD_DIR/pid"
}

# xsd_stop: SIGTERM, and the daemon must exit 0.
xsd_stop() {
  kill -TERM "$XSD_PID" || fail "no daemon to stop"
  wait "$XSD_PID"; rc=$?
  XSD_PID=
  [ "$rc" = 0 ] || fail "xsd-lite exited with $rc"
}

# expect WANTED COMMAND...: COMMAND's output must be WANTED.
expect() {
  want=$1; shift
  got=$("$@" 2>&1) || fail "$* failed: $got"
  [ "$got" = "$want" ] || fail "$*: got '$got', wanted '$want'"
}

# expect_fail COMMAND...: COMMAND must fail.
expect_fail() {
  if "$@" >/dev/null 2>&1; then fail "$* succeeded"; fi
}
