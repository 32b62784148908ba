#!/usr/bin/env bash
# Xen's own test program (xen-utils-4.17) against xsd-lite: every test it
# has, 100 iterations each, through libxenstore and XENSTORED_PATH.
. "$top_srcdir/tests/xsd/xsd-lib.sh"
need "$XEN_BINDIR/test-xenstore"
xsd_start
"$XEN_BINDIR/test-xenstore" -l || fail "test-xenstore -l"
"$XEN_BINDIR/test-xenstore" -i 100 || fail "test-xenstore -i 100"
# What it leaves behind: nothing.
expect "" xenstore-list /local/domain/0
xsd_stop
