/*
 * domain.c - the public domain API (xtk/domain.h) over the backend
 * operations table.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "sr-format.h"

#define XTK_LOG_CONTEXT "domain"

static struct xtk_domain *dom_new(struct xtk_ctx *ctx, uint32_t domid)
{
    const struct xtk__backend_ops *ops;
    struct xtk_domain *dom;

    if (!ctx)
        return xtk__fail_null(EINVAL);
    ops = xtk__backend_pick(ctx);
    if (!ops)
        return NULL;
    dom = calloc(1, sizeof(*dom));
    if (!dom)
        return NULL;
    dom->ctx = ctx;
    dom->ops = ops;
    dom->domid = domid;
    return dom;
}

static struct xtk_domain *dom_create(struct xtk_ctx *ctx,
                                     const struct xtk_domain_config *cfg,
                                     unsigned int flags)
{
    struct xtk_domain *dom;

    if (!cfg || (cfg->flags & ~(XTK_DOMCFG_NO_STORE | XTK_DOMCFG_PAUSED)))
        return xtk__fail_null(EINVAL);
    if (cfg->net && strlen(cfg->net) > XTK__NET_MAX)
        return xtk__fail_null(EINVAL);
    for (size_t i = 0; i < XTK__ARRAY_SIZE(cfg->reserved); i++)
        if (cfg->reserved[i])
            return xtk__fail_null(EINVAL);
    dom = dom_new(ctx, 0);
    if (!dom)
        return NULL;
    if (dom->ops->create(dom, cfg, flags) < 0) {
        int e = errno;
        free(dom);
        errno = e;
        return NULL;
    }
    return dom;
}

struct xtk_domain *xtk_domain_create(struct xtk_ctx *ctx,
                                     const struct xtk_domain_config *cfg)
{
    return dom_create(ctx, cfg, 0);
}

struct xtk_domain *xtk__domain_create_empty(struct xtk_ctx *ctx,
                                            const struct xtk_domain_config *cfg)
{
    return dom_create(ctx, cfg, XTK__CREATE_EMPTY);
}

struct xtk_domain *xtk__domain_create_native(struct xtk_ctx *ctx,
                                             struct xtk__native_config *nc)
{
    struct xtk_domain *dom;

    if (!nc || !nc->config)
        return xtk__fail_null(EINVAL);
    dom = dom_new(ctx, 0);
    if (!dom)
        return NULL;
    if (!dom->ops->create_native) {
        XTK_ERROR(ctx,
                  "a Xen guest's stream: the %s backend restores xtk's "
                  "own streams only (XTK_BACKEND=xen on a Xen host)",
                  dom->ops->name);
        free(dom);
        return xtk__fail_null(ENOTSUP);
    }
    if (dom->ops->create_native(dom, nc) < 0) {
        int e = errno;
        free(dom);
        errno = e;
        return NULL;
    }
    return dom;
}

struct xtk_domain *xtk_domain_open(struct xtk_ctx *ctx, uint32_t domid)
{
    struct xtk_domain *dom;

    if (!domid)
        return xtk__fail_null(EINVAL);
    dom = dom_new(ctx, domid);
    if (!dom)
        return NULL;
    if (dom->ops->open(dom) < 0) {
        int e = errno;
        free(dom);
        errno = e;
        return NULL;
    }
    return dom;
}

struct xtk_domain *xtk_domain_lookup(struct xtk_ctx *ctx, const char *what)
{
    const struct xtk__backend_ops *ops;
    uint32_t domid;
    char *end;

    if (!ctx || !what || !*what)
        return xtk__fail_null(EINVAL);
    if (what[0] >= '0' && what[0] <= '9') {
        unsigned long n;
        errno = 0;
        n = strtoul(what, &end, 10);
        if (!*end && !errno && n > 0 && n <= UINT32_MAX)
            return xtk_domain_open(ctx, (uint32_t)n);
    }
    ops = xtk__backend_pick(ctx);
    if (!ops || ops->lookup(ctx, what, &domid) < 0)
        return NULL;
    return xtk_domain_open(ctx, domid);
}

void xtk_domain_close(struct xtk_domain *dom)
{
    if (!dom)
        return;
    dom->ops->close(dom);
    free(dom);
}

uint32_t xtk_domain_id(const struct xtk_domain *dom)
{
    return dom ? dom->domid : 0;
}

int xtk_domain_info(struct xtk_domain *dom, struct xtk_domain_info *info)
{
    struct xtk_domain_info tmp;

    if (!dom || !info)
        return xtk__fail(EINVAL);
    if (dom->ops->info(dom, &tmp) < 0)
        return -1;
    *info = tmp;
    return 0;
}

int xtk_domain_vcpus(struct xtk_domain *dom, struct xtk_vcpu_stats *out,
                     unsigned int max, unsigned int *nr)
{
    if (!dom || !nr || (max && !out))
        return xtk__fail(EINVAL);
    if (!dom->ops->vcpus)
        return xtk__fail(ENOSYS);
    if (max)
        memset(out, 0, max * sizeof(*out));
    return dom->ops->vcpus(dom, out, max, nr);
}

int xtk_domain_list(struct xtk_ctx *ctx, struct xtk_domain_info **infos,
                    size_t *nr)
{
    const struct xtk__backend_ops *ops;

    if (!ctx || !infos || !nr)
        return xtk__fail(EINVAL);
    ops = xtk__backend_pick(ctx);
    return ops ? ops->list(ctx, infos, nr) : -1;
}

int xtk_domain_pause(struct xtk_domain *dom)
{
    return dom ? dom->ops->pause(dom, 0) : xtk__fail(EINVAL);
}

int xtk__domain_pause_hold(struct xtk_domain *dom)
{
    return dom ? dom->ops->pause(dom, XTK__PAUSE_HOLD) : xtk__fail(EINVAL);
}

int xtk_domain_unpause(struct xtk_domain *dom)
{
    return dom ? dom->ops->unpause(dom, XTK__UNPAUSE_FORCE) : xtk__fail(EINVAL);
}

int xtk_domain_resume(struct xtk_domain *dom)
{
    return dom ? dom->ops->resume(dom) : xtk__fail(EINVAL);
}

int xtk_domain_destroy(struct xtk_domain *dom)
{
    return dom ? dom->ops->destroy(dom) : xtk__fail(EINVAL);
}

int xtk_domain_xl_config(struct xtk_domain *dom, char **config, size_t *len)
{
    if (!dom || !config || !len)
        return xtk__fail(EINVAL);
    if (!dom->ops->xl_config)
        return xtk__fail(ENOTSUP);
    return dom->ops->xl_config(dom, config, len);
}

int xtk_domain_rename(struct xtk_domain *dom, const char *name)
{
    if (!dom || !name)
        return xtk__fail(EINVAL);
    return dom->ops->rename(dom, name);
}

int xtk_domain_output_end(struct xtk_domain *dom, unsigned int how)
{
    if (!dom || (how != XTK_OUTPUT_SEND && how != XTK_OUTPUT_DROP))
        return xtk__fail(EINVAL);
    if (!dom->ops->output_hold)
        return xtk__fail(ENOTSUP);
    return dom->ops->output_hold(
        dom, how == XTK_OUTPUT_SEND ? XTK__OUTPUT_SEND : XTK__OUTPUT_DROP);
}

int xtk_domain_console_read(struct xtk_domain *dom, uint64_t *offset, char *buf,
                            size_t *len)
{
    uint64_t off;
    size_t n;

    if (!dom || !offset || !buf || !len)
        return xtk__fail(EINVAL);
    if (!dom->ops->console_read)
        return xtk__fail(ENOTSUP);
    off = *offset;
    n = *len;
    if (dom->ops->console_read(dom, &off, buf, &n) < 0)
        return -1;
    *offset = off;
    *len = n;
    return 0;
}
