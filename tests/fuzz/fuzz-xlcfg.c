/*
 * fuzz-xlcfg.c - libFuzzer target for xl's text config as a stream
 * carries it (lib/xen/xlcfg.c): libxlutil's parse, xtk's scan of its keys
 * and its reading of them, on text it does not trust.  A config read
 * whole must have a name and a guest type.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <libxl.h>

#include <xtk/ctx.h>

#include "xen/xlcfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/*
 * libxlutil's parser (Xen's, not xtk's) loses a string or two when it
 * recovers from some syntax errors: leaks whose allocation is in it are
 * its own, and not reported; xtk's are.  (It also asserts on a NUL inside
 * a quoted string, which xlcfg.c keeps from it: that one is tested here.)
 */
const char *__lsan_default_suppressions(void)
{
    return "leak:libxlutil.so\n";
}

static struct xtk_ctx *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    libxl_domain_config c;

    if (size > 1 << 16)
        return 0;
    if (!ctx && !(ctx = xtk_ctx_open(NULL, NULL, XTK_CTX_SILENT)))
        abort();
    libxl_domain_config_init(&c);
    if (xtk__xen_config_from_text(ctx, (const char *)data, size, &c) == 0 &&
        (!c.c_info.name || !*c.c_info.name ||
         (c.c_info.type != LIBXL_DOMAIN_TYPE_PV &&
          c.c_info.type != LIBXL_DOMAIN_TYPE_PVH &&
          c.c_info.type != LIBXL_DOMAIN_TYPE_HVM)))
        abort();
    libxl_domain_config_dispose(&c);
    return 0;
}
