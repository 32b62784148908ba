/*
 * xl's text config read into a libxl domain config (lib/xen/xlcfg.c).
 */
#ifndef XTK_XEN_XLCFG_H
#define XTK_XEN_XLCFG_H

#include <stddef.h>

#include <libxl.h>

struct xtk_ctx;

/*
 * Fills c (libxl_domain_config_init()ed by the caller, disposed by it
 * whatever the outcome) from the len bytes of text, a config in xl's
 * format; 0, or -1 with errno (ENOTSUP: a key xtk's domain builder does
 * not read, or a device; EINVAL: not a config) and the reason logged.
 */
int xtk__xen_config_from_text(struct xtk_ctx *ctx, const char *text, size_t len,
                              libxl_domain_config *c);

#endif
