#!/bin/bash
# libxtk.so exports exactly the symbols lib/libxtk.map lists: nothing
# internal leaks out, and nothing listed is missing.
set -eu
so=$top_builddir/.libs/libxtk.so
[ -f "$so" ] || { echo "no $so (was libxtk built shared?)" >&2; exit 1; }
want=$(sed -e 's,/\*.*\*/,,' "$top_srcdir/lib/libxtk.map" | tr -d ' \t' |
       grep -E '^[a-z_][a-z0-9_]*;$' | tr -d ';' | sort -u)
have=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' |
       sed 's/@.*//' | grep -v '^XTK_' | sort -u)
if [ "$want" != "$have" ]; then
  echo "exported symbols differ from lib/libxtk.map (< map, > library):" >&2
  diff <(echo "$want") <(echo "$have") >&2 || true
  exit 1
fi
echo "libxtk exports $(echo "$have" | wc -l) symbols, as the map says"
