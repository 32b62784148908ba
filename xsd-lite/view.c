/*
 * view.c - what a request sees and changes.
 *
 * Outside a transaction that is the live tree, and every change fires its
 * watches at once.  Inside one it is the transaction's overlay (txn.c),
 * and nothing fires until the commit replays the transaction's requests
 * here, on the live tree.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd"

int xsd_view_get(struct xsd_req *r, const char *path, size_t plen,
                 unsigned int need, struct xsd_nv *nv)
{
    struct xsd_node *n;

    if (r->t)
        return xsd_txn_get(r, path, plen, need, nv);
    n = xsd_find(r->c->x, path, plen);
    memset(nv, 0, sizeof(*nv));
    nv->live = n;
    if (n) {
        nv->exists = true;
        nv->value = xsd_node_value(n);
        nv->vlen = n->vlen;
        nv->perms = n->perms;
    }
    return 0;
}

/* The permissions a node created by r's client inherits from anc. */
static struct xsd_perms *inherit(struct xsd_req *r, struct xsd_perms *anc)
{
    if (r->c->priv)
        return xsd_perms_ref(anc);
    return xsd_perms_with_owner(r->c->x, anc, r->c->domid);
}

int xsd_view_create(struct xsd_req *r, const char *path, size_t plen,
                    size_t alen, struct xsd_perms *anc_perms, const char *value,
                    uint32_t vlen)
{
    struct xsd *x = r->c->x;
    struct xsd_node *parent, *n = NULL, *top = NULL;
    struct xsd_perms *ps;

    if (r->t)
        return xsd_txn_create(r, path, plen, alen, anc_perms, value, vlen);
    parent = xsd_find(x, path, alen);
    ps = inherit(r, anc_perms);
    if (!parent || !ps)
        goto err;
    for (size_t e = alen + 1; e <= plen; e++) {
        if (e != plen && path[e] != '/')
            continue;
        n = xsd_node_new(x, parent, path, e, ps);
        if (!n)
            goto err;
        if (!top)
            top = n;
        parent = n;
    }
    if (vlen && xsd_node_set_value(x, n, value, vlen))
        goto err;
    xsd_perms_put(x, ps);
    xsd_fire(x, path, plen, false, n, NULL);
    return 0;

err:
    if (top)
        xsd_node_remove(x, top, NULL, NULL);
    xsd_perms_put(x, ps);
    return ENOMEM;
}

int xsd_view_set_value(struct xsd_req *r, const char *path, size_t plen,
                       const char *value, uint32_t vlen)
{
    struct xsd_node *n;

    if (r->t)
        return xsd_txn_set_value(r, path, plen, value, vlen);
    n = xsd_find(r->c->x, path, plen);
    if (!n)
        return ENOENT;
    if (xsd_node_set_value(r->c->x, n, value, vlen))
        return ENOMEM;
    xsd_fire(r->c->x, path, plen, false, n, NULL);
    return 0;
}

int xsd_view_set_perms(struct xsd_req *r, const char *path, size_t plen,
                       struct xsd_perms *perms)
{
    struct xsd *x = r->c->x;
    struct xsd_perms *old;
    struct xsd_node *n;

    if (r->t)
        return xsd_txn_set_perms(r, path, plen, perms);
    n = xsd_find(x, path, plen);
    if (!n)
        return ENOENT;
    old = xsd_perms_ref(n->perms);
    xsd_node_set_perms(x, n, perms);
    xsd_fire(x, path, plen, false, n, old);
    xsd_perms_put(x, old);
    return 0;
}

/* Xen's order: each removed node below fires its exact watches, then the
 * removed root fires for its watchers and those of its ancestors. */
static void fire_removed(struct xsd *x, struct xsd_node *n, void *arg)
{
    xsd_fire(x, n->path, n->plen, n != arg, n, NULL);
}

void xsd_remove_fire(struct xsd *x, struct xsd_node *n)
{
    xsd_node_remove(x, n, fire_removed, n);
}

int xsd_view_rm(struct xsd_req *r, const char *path, size_t plen)
{
    struct xsd_node *n;

    if (r->t)
        return xsd_txn_rm(r, path, plen);
    n = xsd_find(r->c->x, path, plen);
    if (!n || !n->parent)
        return n ? EINVAL : ENOENT;
    xsd_remove_fire(r->c->x, n);
    return 0;
}

int xsd_view_children(struct xsd_req *r, const char *path, size_t plen,
                      uint64_t *gen,
                      int (*cb)(const char *name, size_t len, void *arg),
                      void *arg)
{
    struct xsd_node *n, *ch;

    if (r->t)
        return xsd_txn_children(r, path, plen, gen, cb, arg);
    n = xsd_find(r->c->x, path, plen);
    if (!n)
        return ENOENT;
    *gen = n->cgen;
    xsd_for_children(n, ch)
    {
        const char *name = xsd_child_name(ch);

        if (cb(name, ch->plen - (size_t)(name - ch->path), arg))
            break;
    }
    return 0;
}
