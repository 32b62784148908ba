#!/bin/bash
# The README's examples, read rather than run (they need root's run
# directories and fixed ports): every file an example writes goes outside
# the clone (an absolute path, not under $PWD), so that following them
# leaves no untracked file in it; every program they run from build/ is
# one the build makes there.
set -euo pipefail
readme=$top_srcdir/README.md
fail() { echo "FAIL: $*" >&2; exit 1; }
code=$(awk '/^```sh$/ { on = 1; next } /^```$/ { on = 0 } on' "$readme")
[ -n "$code" ] || fail "no sh examples in the README"

# xtk-save's target is its last operand; xtk-stream synth's is -o.
while read -r line; do
  line=${line%%#*}
  case $line in
  *xtk-save*)
    set -- $line
    target=${!#}
    ;;
  *"xtk-stream synth"*" -o "*)
    target=${line#* -o }
    target=${target%% *}
    ;;
  *) continue ;;
  esac
  case $target in
  tcp:* | ssh:* | -) ;;
  /*) [[ $target != "$PWD"* && $target != '$PWD'* ]] || fail "writes into the tree: $line" ;;
  *) fail "writes $target into the clone: $line" ;;
  esac
done <<<"$code"

# The programs the examples run are where the build puts them.
for p in $(grep -o 'build/[A-Za-z0-9_./-]*' <<<"$code" | sort -u); do
  rel=${p#build/}
  [ -z "$rel" ] && continue
  [ -e "$top_builddir/$rel" ] || fail "the README runs $p, which the build does not make"
done
echo "README: examples write outside the clone; their programs exist"
