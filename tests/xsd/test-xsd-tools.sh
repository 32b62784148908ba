#!/usr/bin/env bash
# Debian's xenstore-* tools (xenstore-utils) against xsd-lite, including
# the multi-key forms, which wrap their work in a transaction.
. "$top_srcdir/tests/xsd/xsd-lib.sh"
need xenstore-read xenstore-write xenstore-ls xenstore-list xenstore-rm \
  xenstore-exists xenstore-chmod xenstore-watch "$XEN_BINDIR/xenstore-control"
xsd_start

# write / read, one key and several.
xenstore-write /t/a 1 || fail "xenstore-write"
xenstore-write /t/b 2 /t/c/d 3 /t/e "with spaces" || fail "multi-key write"
expect 1 xenstore-read /t/a
expect "$(printf '2\n3\nwith spaces')" xenstore-read /t/b /t/c/d /t/e
expect "/t/b: 2" xenstore-read -p /t/b
expect_fail xenstore-read /t/none
expect_fail xenstore-read /t/a /t/none
# Relative keys are below /local/domain/0.
xenstore-write rel 4 || fail "relative write"
expect 4 xenstore-read /local/domain/0/rel

# list, ls, exists.
expect "$(printf 'a\nb\nc\ne')" xenstore-list /t
expect "$(printf '/t/c/d')" xenstore-list -p /t/c
# Several keys (in one transaction): each one's children in turn.
expect "$(printf 'a\nb\nc\ne\nd')" xenstore-list /t /t/c
expect "$(printf '/t/a\n/t/b\n/t/c\n/t/e\n/t/c/d')" xenstore-list -p /t /t/c
expect_fail xenstore-list /t /t/none
expect "$(printf 'a = "1"\nb = "2"\nc = ""\n d = "3"\ne = "with spaces"')" \
  xenstore-ls /t
expect "/t/c/d = \"3\"" xenstore-ls -f /t/c
xenstore-exists /t/a /t/b || fail "xenstore-exists of two keys"
expect_fail xenstore-exists /t/none
expect_fail xenstore-exists /t/a /t/none

# chmod (recursive too) and ls -p.
xenstore-chmod /t/c r0 w5 || fail "xenstore-chmod"
expect "r0,w5" bash -c "xenstore-ls -fp /t | sed -n 's|^/t/c = .*(\(.*\))$|\1|p'"
xenstore-chmod -r /t b0 r7 || fail "xenstore-chmod -r"
expect "b0,r7" bash -c "xenstore-ls -p /t/c | sed 's/.*(\(.*\))/\1/'"
# An owner that is not a domain (Xen 4.17's xenstored: ENOENT).
expect_fail xenstore-chmod /t/c n7
# Several modes on the key and each of its parents (-u), then recursively
# (-r); a missing key fails.
perms_of() { # perms_of KEY: its permissions as xenstore-ls -fp shows them
  xenstore-ls -fp "$(dirname "$1")" | sed -n "s|^$1 = .*(\(.*\))\$|\1|p"
}
xenstore-write /t/u/v/w 1 || fail "write /t/u/v/w"
xenstore-chmod -u /t/u/v/w b0 r4 w5 || fail "xenstore-chmod -u"
for k in /t /t/u /t/u/v /t/u/v/w; do expect "b0,r4,w5" perms_of $k; done
expect "b0,r7" perms_of /t/c
xenstore-chmod -r /t/u n0 r9 || fail "xenstore-chmod -r with two modes"
for k in /t/u /t/u/v /t/u/v/w; do expect "n0,r9" perms_of $k; done
expect "b0,r4,w5" perms_of /t
expect_fail xenstore-chmod /t/none r0
xenstore-rm /t/u || fail "rm /t/u"

# A directory too big for one DIRECTORY: the tools fall back to
# DIRECTORY_PART.
args=()
for i in $(seq 1 250); do args+=("/big/node-with-a-long-long-name-$i" "$i"); done
xenstore-write "${args[@]}" || fail "250-key write"
[ "$(xenstore-list /big | wc -l)" = 250 ] || fail "xenstore-list of 250 children"
[ "$(xenstore-ls /big | wc -l)" = 250 ] || fail "xenstore-ls of 250 children"
# A tree too big for one reply: E2BIG, or all of it in a file.
expect_fail "$XEN_BINDIR/xenstore-control" tree /big
out=$("$XEN_BINDIR/xenstore-control" tree /big "$XSD_DIR/tree.out") ||
  fail "xenstore-control tree /big FILE: $out"
[ "$out" = "wrote 251 nodes ($(stat -c %s "$XSD_DIR/tree.out") bytes) to \
$XSD_DIR/tree.out" ] || fail "xenstore-control tree /big FILE: $out"
[ "$(grep -c '^/big/node-with-a-long-long-name-[0-9]* = "[0-9]*" (n0)$' \
  "$XSD_DIR/tree.out")" = 250 ] || fail "tree /big in the file"
grep -qx '/big/node-with-a-long-long-name-250 = "250" (n0)' \
  "$XSD_DIR/tree.out" || fail "the last node of /big in the file"

# rm: several keys, and -t (the emptied parent too).
xenstore-rm /t/a /t/b || fail "multi-key rm"
expect_fail xenstore-exists /t/a
xenstore-write /t/only/child x || fail "write"
xenstore-rm -t /t/only/child || fail "xenstore-rm -t"
expect_fail xenstore-exists /t/only
xenstore-rm /big || fail "rm /big"

# watch: the initial event and two changes.
xenstore-watch -n 3 /w > "$XSD_DIR/watch.out" 2>&1 &
wpid=$!
for _ in $(seq 100); do
  "$XEN_BINDIR/xenstore-control" stats | grep -q '^watches 1$' && break
  sleep 0.05
done
xenstore-write /w/x 1 || fail "write /w/x"
xenstore-write /w/y 2 || fail "write /w/y"
for _ in $(seq 100); do kill -0 $wpid 2>/dev/null || break; sleep 0.05; done
kill $wpid 2>/dev/null && fail "xenstore-watch did not see 3 events"
expect "$(printf '/w\n/w/x\n/w/y')" cat "$XSD_DIR/watch.out"

# xenstore-control.
C=$XEN_BINDIR/xenstore-control
"$C" help | grep -q quota || fail "xenstore-control help"
expect debug "$C" log debug
"$C" quota | grep -q '^nodes *1000$' || fail "xenstore-control quota"
"$C" quota 0 | grep -q 'Domain 0' || fail "xenstore-control quota 0"
"$C" tree /t | grep -q '^/t/c/d = "3"' || fail "xenstore-control tree"
"$C" print "hello from the tools test" >/dev/null || fail "control print"
grep -q "hello from the tools test" "$XSD_DIR/log" || fail "print not logged"
expect_fail "$C" no-such-command

# The read-only socket reads but does not write.
expect 3 env XENSTORED_PATH="$XSD_DIR/sock_ro" xenstore-read /t/c/d
expect_fail env XENSTORED_PATH="$XSD_DIR/sock_ro" xenstore-write /t/x 1

xsd_stop
