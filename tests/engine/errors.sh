#!/bin/bash
# What a user sees when something fails: one line that names the cause
# (never a generic "Input/output error" after it, never an empty report
# table); and the build tree's programs find the build's xtk-hv by
# themselves (xtk-save and xtk-restore run from libtool's .libs/), as
# `xtk create` does.
. "$top_srcdir/tests/engine/engine-lib.sh"
cd "$work"

# run CMD...: expects failure (exit 1); its stderr in $err, which must be
# exactly one line.
one_line() {
  if "$@" >out.txt 2>err.txt; then fail "$* succeeded"; fi
  err=$(cat err.txt)
  [ "$(wc -l < err.txt)" = 1 ] || fail "$*: not one line: $err"
  if grep -q "Input/output error" err.txt; then fail "$*: a generic EIO: $err"; fi
}

"$xtk" create -n web -m 32 -w dirty -P 256 -r 1000 --no-store >/dev/null
check web
"$xsave" -q -c web web.xtk || fail "save -c"

# 1. No XTK_HV: the build's xtk-hv and guest beside the program (or beside
#    libtool's .libs/ directory) are used, by every program.
[ -x "$b/.libs/lt-xtk-restore" ] || [ -x "$b/.libs/xtk-restore" ] ||
  fail "xtk-restore is not a libtool wrapper here: this test means nothing"
id=$(env -u XTK_HV -u XTK_GUEST "$xrestore" -q -n copy web.xtk) ||
  fail "xtk-restore without XTK_HV in the build tree"
check copy
# web was created --no-store: its copy is in no store either, and does not
# look for one ("store: /run/xenstored/socket: No such file or directory").
"$xtk" info web | grep -q "^store: *no$" || fail "web: $("$xtk" info web)"
"$xtk" info copy | grep -q "^store: *no$" || fail "copy: $("$xtk" info copy)"
if grep "store:" "$XTK_RUNDIR/$id.log"; then fail "the copy of a --no-store guest tried the store"; fi
id=$(env -u XTK_HV -u XTK_GUEST "$xtk" create -n plain -m 16 --no-store) ||
  fail "xtk create without XTK_HV in the build tree"
check plain
"$xtk" destroy plain

# A missing xtk-hv is said to be missing (ENOENT), by its path.
one_line env XTK_HV=$work/no/xtk-hv "$xrestore" -q -n copy2 web.xtk
grep -q "$work/no/xtk-hv.*No such file or directory" <<<"$err" || fail "missing xtk-hv: $err"
one_line env XTK_HV=$work/no/xtk-hv "$xtk" create -n copy2 --no-store
grep -q "$work/no/xtk-hv.*No such file or directory" <<<"$err" || fail "missing xtk-hv: $err"

# A failing xtk-hv: its own message, once.
one_line "$xtk" create -n bad -k /etc/passwd --no-store
grep -q "/etc/passwd: not an x86-64 ELF executable" <<<"$err" || fail "xtk-hv's reason: $err"
[ "$(domains)" = 2 ] || fail "a failed create left a domain"

# 2. A name in use.
one_line "$xtk" create -n web --no-store
grep -q "a domain called web exists already" <<<"$err" || fail "create web: $err"
one_line "$xrestore" web.xtk
grep -q "a domain called web exists already" <<<"$err" || fail "restore web: $err"
[ ! -s out.txt ] || fail "a failed restore printed on stdout"

# 3. A broken stream: the stream's own reason, and no report table.
head -c 100000 web.xtk > short.xtk
one_line "$xrestore" -n copy3 short.xtk
grep -q "truncated" <<<"$err" || fail "truncated: $err"
one_line "$xrestore" -n copy3 /etc/passwd
grep -q "not a migration stream" <<<"$err" || fail "not a stream: $err"
one_line "$xrestore" -n copy3 nonexistent.xtk
grep -q "nonexistent.xtk: No such file or directory" <<<"$err" || fail "no file: $err"
# 4. Xen's own suspend notification (the store's @releaseDomain) is no
#    KVM domain's: refused by name, and the guest runs on.
one_line "$xsave" --suspend xl web out.xtk
grep -q "the xl suspend method is Xen's" <<<"$err" || fail "--suspend xl on KVM: $err"
[ ! -e out.xtk ] || fail "a refused save left its file"
check web

# With -v the report of the failed restore is there.
if "$xrestore" -v -n copy3 short.xtk 2>err.txt; then fail "short.xtk restored"; fi
grep -q "== restore ==" err.txt || fail "-v shows no report"

[ "$(domains)" = 2 ] || fail "failures left domains behind: $("$xtk" list)"
echo "errors: one line each; xtk-hv found from the build tree"
