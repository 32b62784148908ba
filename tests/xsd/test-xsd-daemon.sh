#!/usr/bin/env bash
# xsd-lite as a daemon: forking with a pid file, readiness through
# sd_notify (READY=1, STOPPING=1, also on an abstract socket), log levels,
# a clean exit on SIGTERM, refusing a second daemon on a live socket,
# replacing a stale one, and the store carried across a restart.
. "$top_srcdir/tests/xsd/xsd-lib.sh"
need xenstore-read xenstore-write xenstore-ls "$XEN_BINDIR/xenstore-control" \
  "${PYTHON3:-python3}"
PY=${PYTHON3:-python3}
C=$XEN_BINDIR/xenstore-control
S=$XSD_DIR/state

# 1. Daemon mode: returns once serving; pid file; SIGTERM; files removed.
"$XSD_LITE" -s "$XENSTORED_PATH" -F "$XSD_DIR/dpid" -S "$S" \
  -L "$XSD_DIR/log" -l info || fail "daemon start"
[ -S "$XENSTORED_PATH" ] && [ -S "${XENSTORED_PATH}_ro" ] || fail "no sockets"
dpid=$(cat "$XSD_DIR/dpid") || fail "no pid file"
kill -0 "$dpid" || fail "daemon $dpid not running"
[ "$(ps -o ppid= -p "$dpid" | tr -d ' ')" = 1 ] || \
  [ "$(ps -o sid= -p "$dpid" | tr -d ' ')" = "$dpid" ] || fail "not detached"
xenstore-write /keep/a 1 /keep/b/c "two words" || fail "write"
xenstore-write /keep/bin 'x\001y\\z' || fail "write of a binary value"
xenstore-chmod /keep/b r0 w9 || fail "chmod"
grep -q debug "$XSD_DIR/log" && fail "debug lines at log level info"
expect debug "$C" log debug
xenstore-read /keep/a >/dev/null
grep -q 'debug' "$XSD_DIR/log" || fail "log level not raised by CONTROL"
# A second daemon on the same live socket refuses to start.
if "$XSD_LITE" -N -s "$XENSTORED_PATH" -r none -L "$XSD_DIR/log2" 2>/dev/null
then fail "a second daemon started on a live socket"; fi
kill -TERM "$dpid"
for _ in $(seq 100); do kill -0 "$dpid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$dpid" 2>/dev/null && fail "daemon did not exit on SIGTERM"
[ -e "$XSD_DIR/dpid" ] && fail "pid file left behind"
[ -e "$XENSTORED_PATH" ] && fail "socket left behind"
[ -s "$S" ] || fail "no state saved on SIGTERM"
# w9 names no domain: kept but ignored, and saved as ignored (upper case).
grep -aq "W9" "$S" || fail "the ignored entry w9 was not saved as ignored"

# 2. The store comes back after a restart, permissions included.
xsd_start -S "$S"
expect 1 xenstore-read /keep/a
expect "two words" xenstore-read /keep/b/c
expect "r0,w9" bash -c "xenstore-ls -fp /keep | sed -n 's|^/keep/b = .*(\(.*\))$|\1|p'"
expect 'x\001y\\z' xenstore-read /keep/bin
# save on request, to another file, loadable too.
"$C" save "$XSD_DIR/copy" | grep -q saved || fail "xenstore-control save"
grep -aq "W9" "$XSD_DIR/copy" || fail "the ignored entry w9 was not loaded as ignored"
xenstore-write /keep/a changed || fail "write"
xsd_stop
xsd_start -S "$XSD_DIR/copy"
expect 1 xenstore-read /keep/a
xsd_stop
# A damaged state file: the daemon refuses to start rather than lose it.
head -c 100 "$S" > "$XSD_DIR/bad"
if "$XSD_LITE" -N -s "$XENSTORED_PATH" -S "$XSD_DIR/bad" -L "$XSD_DIR/log3"
then fail "started from a truncated state file"; fi
grep -q "not a valid state file" "$XSD_DIR/log3" || fail "no clear error"

# 3. sd_notify: READY=1 then STOPPING=1, on a path and on an abstract socket.
for ns in "$XSD_DIR/notify" "@xsdt-notify-$$"; do
  rm -f "$XSD_DIR/bound"
  "$PY" - "$ns" "$XSD_DIR/bound" > "$XSD_DIR/notified" <<'PYEOF' &
import socket, sys
name = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + name[1:] if name.startswith("@") else name)
open(sys.argv[2], "w").close()  # bound: the daemon may start
s.settimeout(20)
got = []
while "STOPPING=1" not in got:
    got.append(s.recv(4096).decode())
print(" ".join(got))
PYEOF
  lpid=$!
  # An abstract socket has no file to wait for: the listener says when
  # it is bound (a fixed sleep lost READY=1 under load).
  for _ in $(seq 200); do [ -e "$XSD_DIR/bound" ] && break; sleep 0.05; done
  [ -e "$XSD_DIR/bound" ] || fail "the notification listener did not start"
  NOTIFY_SOCKET=$ns xsd_start
  xsd_stop
  wait $lpid || fail "no notification on $ns"
  expect "READY=1 STOPPING=1" cat "$XSD_DIR/notified"
done

# 4. A stale socket file (its daemon was killed) is replaced.
xsd_start
kill -9 "$XSD_PID"; wait "$XSD_PID" 2>/dev/null; XSD_PID=
[ -S "$XENSTORED_PATH" ] || fail "no stale socket to test with"
xsd_start
expect OK bash -c "xenstore-write /fresh 1 && echo OK"
xsd_stop
