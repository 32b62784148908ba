/*
 * watch.c - watches and their events.
 *
 * Watches live in a hash table keyed by their absolute path.  A change of
 * /a/b/c fires the watches on /, /a, /a/b and /a/b/c: a walk over the
 * changed path's ancestors, one hash lookup each (FNV-1a makes each
 * prefix's hash the running state), so the cost does not grow with the
 * number of watches that do not match.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd-watch"

XSD_HTAB_DEFINE(wpaths, struct xsd_wpath)

static void wpath_drop(struct xsd *x, struct xsd_wpath *wp)
{
    wpaths_remove(&x->wpaths, wp);
    free(wp);
}

/*
 * Adds c's watch of the absolute path (relative: events name paths relative
 * to c's home).  Returns 0 or an errno: EEXIST for a duplicate, E2BIG over
 * the watch quota (Xen 4.17's answer), ENOMEM.
 */
int xsd_watch_add(struct xsd_conn *c, const char *path, size_t plen,
                  const char *token, bool relative)
{
    struct xsd *x = c->x;
    uint32_t h = xsd_hash(path, plen);
    struct xsd_wpath *wp = wpaths_find(&x->wpaths, path, plen, h);
    size_t tlen = strlen(token);
    struct xsd_watch *w;

    for (w = wp ? wp->head : NULL; w; w = w->wnext)
        if (w->c == c && w->tlen == tlen && !memcmp(w->token, token, tlen))
            return EEXIST;
    if (c->dom && !c->priv) {
        if (c->dom->watches >= x->cfg.quota[XSD_Q_WATCHES])
            return E2BIG;
        if (c->dom->mem + plen + tlen > x->cfg.quota[XSD_Q_MEMORY])
            return ENOMEM;
    }
    w = malloc(sizeof(*w) + tlen + 1);
    if (!w)
        return ENOMEM;
    if (!wp) {
        wp = malloc(sizeof(*wp) + plen + 1);
        if (!wp) {
            free(w);
            return ENOMEM;
        }
        memcpy(wp->path, path, plen);
        wp->path[plen] = '\0';
        wp->plen = (uint32_t)plen;
        wp->hash = h;
        wp->head = NULL;
        wpaths_insert(&x->wpaths, wp);
    }
    memcpy(w->token, token, tlen + 1);
    w->tlen = (uint32_t)tlen;
    w->c = c;
    w->wp = wp;
    w->rel_off = relative ? c->prefix_len + 1u : 0;
    w->wprev = NULL;
    w->wnext = wp->head;
    if (wp->head)
        wp->head->wprev = w;
    wp->head = w;
    w->cnext = c->watches;
    c->watches = w;
    c->nwatches++;
    x->nwatches++;
    if (c->dom) {
        c->dom->watches++;
        c->dom->mem += plen + tlen;
    }
    return 0;
}

/* Unlinks w from its path (freeing an emptied path) and frees it; the
 * caller unlinks it from its connection's list. */
static void watch_free(struct xsd *x, struct xsd_watch *w)
{
    struct xsd_wpath *wp = w->wp;
    struct xsd_conn *c = w->c;

    if (w->wprev)
        w->wprev->wnext = w->wnext;
    else
        wp->head = w->wnext;
    if (w->wnext)
        w->wnext->wprev = w->wprev;
    c->nwatches--;
    x->nwatches--;
    if (c->dom) {
        c->dom->watches--;
        c->dom->mem -= wp->plen + w->tlen;
    }
    if (!wp->head)
        wpath_drop(x, wp);
    free(w);
}

/* Removes c's watch of path with token; ENOENT when there is none. */
int xsd_watch_del(struct xsd_conn *c, const char *path, size_t plen,
                  const char *token)
{
    size_t tlen = strlen(token);

    for (struct xsd_watch **pp = &c->watches; *pp; pp = &(*pp)->cnext) {
        struct xsd_watch *w = *pp;

        if (w->wp->plen == plen && !memcmp(w->wp->path, path, plen) &&
            w->tlen == tlen && !memcmp(w->token, token, tlen)) {
            *pp = w->cnext;
            watch_free(c->x, w);
            return 0;
        }
    }
    return ENOENT;
}

void xsd_watch_del_all(struct xsd_conn *c)
{
    while (c->watches) {
        struct xsd_watch *w = c->watches;

        c->watches = w->cnext;
        watch_free(c->x, w);
    }
}

/*
 * May an unprivileged watcher hear about node?  As Xen: if it can read the
 * node or its parent, or could read it before a permission change.
 */
static bool permitted(struct xsd_conn *c, const struct xsd_node *node,
                      const struct xsd_perms *old)
{
    if (old && (xsd_perm_for(c, old) & XSD_PERM_READ))
        return true;
    if (!node)
        return false;
    if (xsd_perm_for(c, node->perms) & XSD_PERM_READ)
        return true;
    return node->parent &&
           (xsd_perm_for(c, node->parent->perms) & XSD_PERM_READ);
}

static void fire_at(struct xsd *x, const char *wpath, size_t wlen, uint32_t h,
                    const char *path, size_t plen, const struct xsd_node *node,
                    const struct xsd_perms *old)
{
    struct xsd_wpath *wp = wpaths_find(&x->wpaths, wpath, wlen, h);

    for (struct xsd_watch *w = wp ? wp->head : NULL; w; w = w->wnext) {
        struct xsd_conn *c = w->c;

        if (c->dead || (!c->priv && !permitted(c, node, old)))
            continue;
        xsd_conn_event(c, path + w->rel_off, plen - w->rel_off, w->token,
                       w->tlen);
    }
}

/* See xsd.h. */
void xsd_fire(struct xsd *x, const char *path, size_t plen, bool exact,
              const struct xsd_node *node, const struct xsd_perms *old)
{
    uint32_t h = 2166136261u;

    if (!x->wpaths.n)
        return;
    if (exact || path[0] != '/') {
        fire_at(x, path, plen, xsd_hash(path, plen), path, plen, node, old);
        return;
    }
    for (size_t i = 0; i < plen; i++) {
        h = (h ^ (unsigned char)path[i]) * 16777619u;
        if (i == 0 || i + 1 == plen || path[i + 1] == '/')
            fire_at(x, path, i + 1, h, path, plen, node, old);
    }
}

/* Fires @introduceDomain or @releaseDomain for the watchers allowed to
 * read that special node. */
void xsd_fire_special(struct xsd *x, const char *name)
{
    size_t n = strlen(name);

    xsd_fire(x, name, n, true, xsd_find(x, name, n), NULL);
}
