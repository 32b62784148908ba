#!/usr/bin/env bash
# Fails if clang-format (14, .clang-format) would change a tracked C file.
cd "$(dirname "$0")/.." || exit 2
files=$(git ls-files '*.c' '*.h')
[ -z "$files" ] && exit 0
bad=0
for f in $files; do
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || { echo "format: $f" >&2; bad=1; }
done
exit $bad
