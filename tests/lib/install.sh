#!/bin/bash
# `make install DESTDIR=...` installs the headers, libxtk.so, libxtk.pc, the
# programs and their man pages; a program outside the tree compiles against
# them with pkg-config alone, links, and runs.
set -euo pipefail
dest=$(mktemp -d)
trap 'rm -rf "$dest"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
# A make of its own, not a job of the `make check` running this test.
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$top_builddir" "$@"; }

mk install DESTDIR="$dest" >/dev/null
eval "$(mk print-install-vars)"
for f in "$includedir/xtk/xtk.h" "$includedir/xtk/stream.h" \
         "$includedir/xtk/stats.h" "$libdir/libxtk.so" \
         "$libdir/pkgconfig/libxtk.pc" "$bindir/xtk-stream" \
         "$mandir/man3/libxtk.3" "$mandir/man3/xtk_stream.3" \
         "$mandir/man3/xtk_stats.3" "$mandir/man1/xtk-stream.1" \
         "$mandir/man5/xtk-stream.5"; do
  [ -e "$dest$f" ] || fail "not installed: $f"
done
for h in "$dest$includedir"/xtk/*.h; do
  grep -q "^#include <xtk/$(basename "$h")>" "$dest$includedir/xtk/xtk.h" ||
    [ "$(basename "$h")" = xtk.h ] || fail "xtk.h does not include $(basename "$h")"
done

cat > "$dest/prog.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xtk/xtk.h>

int main(void)
{
    struct xtk_ctx *ctx = xtk_ctx_open(NULL, NULL, XTK_CTX_SILENT);
    struct xtk_stats *st = xtk_stats_new("prog");
    struct xtk_stream *s;
    static unsigned char page[XTK_PAGE_SIZE];
    const void *pages[1] = {page};
    uint64_t pfn = xtk_pfn_entry(0, XTK_PAGE_NOTAB);
    char *json;
    int rc;

    if (!ctx || !st)
        return 1;
    s = xtk_stream_file(ctx, "/dev/null", XTK_STREAM_WRITE);
    xtk_stats_phase(st, "open");
    if (!s || xtk_stream_write_image_header(s) ||
        xtk_stream_write_domain_header(s, XTK_DOMAIN_X86_HVM, 4, 17) ||
        xtk_stream_write_page_data(s, 1, &pfn, pages) ||
        xtk_stream_write_end(s) || xtk_stream_close(s))
        return 1;
    xtk_stats_phase(st, "written");
    json = xtk_stats_format(st, XTK_STATS_JSON);
    if (!json)
        return 1;
    printf("libxtk %s %s", xtk_version(), json);
    rc = strstr(json, "\"written\"") ? 0 : 1;
    free(json);
    xtk_stats_free(st);
    xtk_ctx_close(ctx);
    return rc;
}
C
export PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_PATH=$dest$libdir/pkgconfig
cflags=$(pkg-config --cflags libxtk) || fail "pkg-config --cflags"
libs=$(pkg-config --libs libxtk) || fail "pkg-config --libs"
case "$cflags" in *"$dest"*) ;; *) fail "cflags do not point into DESTDIR: $cflags" ;; esac
# shellcheck disable=SC2086  # word splitting of the flags is wanted
$CC $SAN_CFLAGS -std=c11 -Wall -Werror $cflags "$dest/prog.c" $libs $SAN_LDFLAGS -o "$dest/prog" ||
  fail "compiling against the installed library"
out=$(LD_LIBRARY_PATH=$dest$libdir "$dest/prog") || fail "the program failed: $out"
case "$out" in "libxtk $version {\"schema\":\"xtk-stats/1\""*) ;; *) fail "output: $out" ;; esac
# It really ran the installed library, not one from the build tree.
# (ldd's output is kept first: `ldd | grep -q` fails under pipefail when
# grep stops reading early.)
deps=$(LD_LIBRARY_PATH=$dest$libdir ldd "$dest/prog")
case "$deps" in *"$dest$libdir/libxtk.so"*) ;; *) fail "ldd: $deps" ;; esac
echo "installed and used from $dest$prefix"
