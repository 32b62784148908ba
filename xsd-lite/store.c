/*
 * store.c - xsd-lite's tree.
 *
 * Every node lives in one hash table keyed by its full path, so a lookup
 * is one hash and one comparison, whatever the depth.  Each node also links
 * to its parent and its children (a circular list in creation order, which
 * is the order DIRECTORY answers in).  Nothing is ever copied: a
 * transaction records generation numbers instead (txn.c).  Permission
 * lists are interned and shared: most nodes inherit their parent's.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd"

/* What a node costs its owner beyond path, value and permissions. */
#define XSD_NODE_OVERHEAD 32u

const char *const xsd_quota_names[XSD_Q_COUNT] = {
    [XSD_Q_NODES] = "nodes",
    [XSD_Q_WATCHES] = "watches",
    [XSD_Q_TXNS] = "transactions",
    [XSD_Q_OUTSTANDING] = "outstanding",
    [XSD_Q_MEMORY] = "memory",
    [XSD_Q_TXN_NODES] = "transaction-nodes",
    [XSD_Q_PERMS] = "node-permissions",
    [XSD_Q_NODE_SIZE] = "node-size",
};

int xsd_quota_from_name(const char *name)
{
    for (int i = 0; i < XSD_Q_COUNT; i++)
        if (!strcmp(name, xsd_quota_names[i]))
            return i;
    return xtk__fail(EINVAL);
}

/* Xen's defaults (xenstored's quotas[]), except memory: 2.5 MB hard. */
void xsd_config_default(struct xsd_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->quota[XSD_Q_NODES] = 1000;
    cfg->quota[XSD_Q_WATCHES] = 128;
    cfg->quota[XSD_Q_TXNS] = 10;
    cfg->quota[XSD_Q_OUTSTANDING] = 20;
    cfg->quota[XSD_Q_MEMORY] = 2560 * 1024;
    cfg->quota[XSD_Q_TXN_NODES] = 1024;
    cfg->quota[XSD_Q_PERMS] = 5;
    cfg->quota[XSD_Q_NODE_SIZE] = 2048;
    cfg->watch_queue_max = 1024;
    cfg->sock_outstanding = 256;
}

/* FNV-1a: simple, and a prefix's hash is the running state (watch.c). */
uint32_t xsd_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* ---- nodes -------------------------------------------------------------- */

XSD_HTAB_DEFINE(nodes, struct xsd_node)

struct xsd_node *xsd_find(struct xsd *x, const char *path, size_t plen)
{
    return nodes_find(&x->nodes, path, plen, xsd_hash(path, plen));
}

uint64_t xsd_node_bytes(const struct xsd_node *n)
{
    return n->plen + n->vlen + n->perms->num * sizeof(struct xsd_perm) +
           XSD_NODE_OVERHEAD;
}

static void charge(struct xsd *x, struct xsd_node *n, int sign)
{
    struct xsd_dom *d = xsd_dom_get(x, n->perms->p[0].id, false);

    if (!d)
        return;
    d->nodes += sign;
    d->mem += sign * (int64_t)xsd_node_bytes(n);
}

/*
 * Creates a node under parent (NULL for / and the @ nodes) with a reference
 * to perms taken.  Returns NULL on failure, in which case errno will be
 * set (ENOMEM).
 */
struct xsd_node *xsd_node_new(struct xsd *x, struct xsd_node *parent,
                              const char *path, size_t plen,
                              struct xsd_perms *perms)
{
    struct xsd_node *n;

    if (!xsd_dom_get(x, perms->p[0].id, true))
        return NULL;
    n = malloc(sizeof(*n) + plen + 1);
    if (!n)
        return NULL;
    memset(n, 0, sizeof(*n));
    memcpy(n->path, path, plen);
    n->path[plen] = '\0';
    n->plen = (uint16_t)plen;
    n->hash = xsd_hash(path, plen);
    n->perms = xsd_perms_ref(perms);
    n->gen = n->cgen = ++x->gen;
    n->parent = parent;
    if (parent) {
        struct xsd_node *head = parent->child;

        if (!head) {
            n->next = n->prev = n;
            parent->child = n;
        } else {
            n->prev = head->prev;
            n->next = head;
            head->prev->next = n;
            head->prev = n;
        }
        parent->cgen = ++x->gen;
    }
    nodes_insert(&x->nodes, n);
    charge(x, n, 1);
    return n;
}

/* Replaces n's value.  Returns -1 on failure, in which case errno is set. */
static void value_free(struct xsd_node *n)
{
    if (n->vlen > sizeof(n->v.inl))
        free(n->v.ptr);
}

int xsd_node_set_value(struct xsd *x, struct xsd_node *n, const char *v,
                       uint32_t vlen)
{
    char *nv = NULL;

    if (vlen > sizeof(n->v.inl)) {
        nv = malloc(vlen);
        if (!nv)
            return -1;
        memcpy(nv, v, vlen);
    }
    charge(x, n, -1);
    value_free(n);
    if (nv)
        n->v.ptr = nv;
    else if (vlen)
        memcpy(n->v.inl, v, vlen);
    n->vlen = vlen;
    n->gen = ++x->gen;
    charge(x, n, 1);
    return 0;
}

/* Replaces n's permissions (a reference to perms is taken). */
void xsd_node_set_perms(struct xsd *x, struct xsd_node *n,
                        struct xsd_perms *perms)
{
    charge(x, n, -1);
    xsd_perms_put(x, n->perms);
    n->perms = xsd_perms_ref(perms);
    n->gen = ++x->gen;
    if (!xsd_dom_get(x, perms->p[0].id, true))
        XTK_WARN(x->ctx, "no memory to account %s to domain %u", n->path,
                 perms->p[0].id);
    charge(x, n, 1);
}

static void node_free(struct xsd *x, struct xsd_node *n)
{
    struct xsd_node *p = n->parent;

    if (p) {
        if (n->next == n) {
            p->child = NULL;
        } else {
            n->prev->next = n->next;
            n->next->prev = n->prev;
            if (p->child == n)
                p->child = n->next;
        }
        p->cgen = ++x->gen;
    }
    nodes_remove(&x->nodes, n);
    charge(x, n, -1);
    xsd_perms_put(x, n->perms);
    value_free(n);
    free(n);
}

/*
 * Removes n and everything below it, children before parents.  cb (may be
 * NULL) sees each node while it is still linked, to fire its watch.
 */
void xsd_node_remove(struct xsd *x, struct xsd_node *n,
                     void (*cb)(struct xsd *x, struct xsd_node *n, void *arg),
                     void *arg)
{
    struct xsd_node *cur = n;

    for (;;) {
        struct xsd_node *p;
        bool last;

        while (cur->child)
            cur = cur->child;
        p = cur->parent;
        last = cur == n;
        if (cb)
            cb(x, cur, arg);
        node_free(x, cur);
        if (last)
            return;
        cur = p;
    }
}

/*
 * Pre-order walk below and including n; cb returns non-zero to stop, and
 * that value is returned.
 */
int xsd_walk(struct xsd_node *n,
             int (*cb)(struct xsd_node *n, int depth, void *arg), void *arg)
{
    struct xsd_node *cur = n;
    int depth = 0, rc;

    for (;;) {
        if ((rc = cb(cur, depth, arg)))
            return rc;
        if (cur->child) {
            cur = cur->child;
            depth++;
            continue;
        }
        while (cur != n && cur->next == cur->parent->child) {
            cur = cur->parent;
            depth--;
        }
        if (cur == n)
            return 0;
        cur = cur->next;
    }
}

/* ---- permissions -------------------------------------------------------- */

static uint32_t perms_hash(const struct xsd_perm *p, uint32_t num)
{
    return xsd_hash((const char *)p, num * sizeof(*p));
}

struct xsd_perms *xsd_perms_ref(struct xsd_perms *ps)
{
    ps->refs++;
    return ps;
}

/*
 * The interned list equal to p[0..num), with a reference taken.  Returns
 * NULL on failure, in which case errno will be set (ENOMEM).
 */
struct xsd_perms *xsd_perms_get(struct xsd *x, const struct xsd_perm *p,
                                uint32_t num)
{
    uint32_t h = perms_hash(p, num);
    struct xsd_perms **b = &x->pbuckets[h & (x->npbuckets - 1)], *ps;

    for (ps = *b; ps; ps = ps->hnext)
        if (ps->hash == h && ps->num == num &&
            !memcmp(ps->p, p, num * sizeof(*p)))
            return xsd_perms_ref(ps);
    ps = malloc(sizeof(*ps) + num * sizeof(*p));
    if (!ps)
        return NULL;
    ps->refs = 1;
    ps->hash = h;
    ps->num = num;
    memcpy(ps->p, p, num * sizeof(*p));
    ps->hnext = *b;
    *b = ps;
    x->nperms++;
    return ps;
}

void xsd_perms_put(struct xsd *x, struct xsd_perms *ps)
{
    struct xsd_perms **pp;

    if (!ps || --ps->refs)
        return;
    pp = &x->pbuckets[ps->hash & (x->npbuckets - 1)];
    while (*pp != ps)
        pp = &(*pp)->hnext;
    *pp = ps->hnext;
    x->nperms--;
    free(ps);
}

/* ps with its owner replaced (a new reference), for unprivileged creators.
 * Returns NULL on failure, in which case errno will be set. */
struct xsd_perms *xsd_perms_with_owner(struct xsd *x, struct xsd_perms *ps,
                                       uint32_t owner)
{
    struct xsd_perm p[16], *pp = p;
    struct xsd_perms *out;

    if (ps->p[0].id == owner)
        return xsd_perms_ref(ps);
    if (ps->num > 16) {
        pp = malloc(ps->num * sizeof(*pp));
        if (!pp)
            return NULL;
    }
    memcpy(pp, ps->p, ps->num * sizeof(*pp));
    pp[0].id = owner;
    out = xsd_perms_get(x, pp, ps->num);
    if (pp != p)
        free(pp);
    return out;
}

/*
 * Parses num strings like "r5" (letter n/r/w/b, then a decimal domid) from
 * s[0..len).  Returns -1 with errno EINVAL on a malformed entry.
 */
int xsd_perms_parse(const char *s, size_t len, struct xsd_perm *out,
                    uint32_t num)
{
    const char *end = s + len;

    for (uint32_t i = 0; i < num; i++) {
        const char *nul = memchr(s, '\0', (size_t)(end - s));
        uint64_t id = 0;

        if (!nul || nul - s < 2 || nul - s > 11)
            return xtk__fail(EINVAL);
        switch (s[0]) {
        case 'n':
            out[i].perm = XSD_PERM_NONE;
            break;
        case 'r':
            out[i].perm = XSD_PERM_READ;
            break;
        case 'w':
            out[i].perm = XSD_PERM_WRITE;
            break;
        case 'b':
            out[i].perm = XSD_PERM_READ | XSD_PERM_WRITE;
            break;
        default:
            return xtk__fail(EINVAL);
        }
        for (const char *d = s + 1; d < nul; d++) {
            if (*d < '0' || *d > '9')
                return xtk__fail(EINVAL);
            id = id * 10 + (uint64_t)(*d - '0');
        }
        if (id > UINT32_MAX)
            return xtk__fail(EINVAL);
        out[i].id = (uint32_t)id;
        s = nul + 1;
    }
    return 0;
}

size_t xsd_perms_format(const struct xsd_perms *ps, char *buf, size_t size)
{
    static const char letters[] = "nrwb";
    size_t n = 0;

    for (uint32_t i = 0; i < ps->num && n + 12 <= size; i++) {
        int w = snprintf(buf + n, size - n, "%c%u", letters[ps->p[i].perm & 3],
                         ps->p[i].id);

        n += (size_t)w + 1; /* keep the NUL */
    }
    return n;
}

/* ---- domains (accounting) ----------------------------------------------- */

/* The accounting record of domid, made on first use when create.  Returns
 * NULL (errno ENOMEM, or ENOENT without create) when there is none. */
struct xsd_dom *xsd_dom_get(struct xsd *x, uint32_t domid, bool create)
{
    struct xsd_dom **b = &x->dbuckets[domid & (x->ndbuckets - 1)], *d;

    for (d = *b; d; d = d->hnext)
        if (d->domid == domid)
            return d;
    if (!create)
        return xtk__fail_null(ENOENT);
    d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->domid = domid;
    d->hnext = *b;
    *b = d;
    return d;
}

/* Frees d when nothing refers to it any more. */
void xsd_dom_maybe_free(struct xsd *x, struct xsd_dom *d)
{
    struct xsd_dom **pp;

    if (!d || d->nodes || d->mem || d->watches || d->txns || d->conn ||
        d->domid == 0)
        return;
    pp = &x->dbuckets[d->domid & (x->ndbuckets - 1)];
    while (*pp != d)
        pp = &(*pp)->hnext;
    *pp = d->hnext;
    free(d);
}

/* n's permissions without domid: its owner becomes dom0, its entry goes. */
static void disown_node(struct xsd *x, struct xsd_node *n, uint32_t domid)
{
    struct xsd_perms *ps = n->perms, *nps;
    struct xsd_perm *p;
    uint32_t k = 0;
    bool hit = ps->p[0].id == domid;

    for (uint32_t j = 1; j < ps->num && !hit; j++)
        hit = ps->p[j].id == domid;
    if (!hit)
        return;
    p = malloc(ps->num * sizeof(*p));
    if (!p) {
        XTK_ERROR(x->ctx, "no memory to disown %s", n->path);
        return;
    }
    p[k++] = ps->p[0];
    if (p[0].id == domid)
        p[0].id = 0;
    for (uint32_t j = 1; j < ps->num; j++)
        if (ps->p[j].id != domid)
            p[k++] = ps->p[j];
    nps = xsd_perms_get(x, p, k);
    free(p);
    if (!nps) {
        XTK_ERROR(x->ctx, "no memory to disown %s", n->path);
        return;
    }
    xsd_node_set_perms(x, n, nps);
    xsd_perms_put(x, nps);
}

/*
 * A domain is gone: its nodes go to dom0 and entries naming it are
 * dropped, so that a later domain with the same id inherits nothing.
 */
void xsd_store_disown(struct xsd *x, uint32_t domid)
{
    for (uint64_t i = 0; i < x->nodes.nb; i++)
        for (struct xsd_node *n = x->nodes.b[i]; n; n = n->hnext)
            disown_node(x, n, domid);
}

/* ---- the daemon's state --------------------------------------------------
 */

static struct xsd_node *initial_node(struct xsd *x, struct xsd_node *parent,
                                     const char *path, struct xsd_perms *ps)
{
    return xsd_node_new(x, parent, path, strlen(path), ps);
}

/*
 * Makes an empty store: /, /tool, /tool/xenstored, /local, /local/domain,
 * /local/domain/0 and the special @introduceDomain and @releaseDomain, all
 * owned by dom0 with no access for others.  Returns -1 on failure, in
 * which case errno will be set.
 */
int xsd_init(struct xsd *x, struct xtk_ctx *ctx, struct event_base *base,
             const struct xsd_config *cfg)
{
    struct xsd_perm p0 = {0, XSD_PERM_NONE};
    struct xsd_perms *ps;
    struct xsd_node *tool, *local, *dom;

    memset(x, 0, sizeof(*x));
    x->ctx = ctx;
    x->base = base;
    if (cfg)
        x->cfg = *cfg;
    else
        xsd_config_default(&x->cfg);
    x->npbuckets = 256;
    x->ndbuckets = 256;
    x->pbuckets = calloc(x->npbuckets, sizeof(*x->pbuckets));
    x->dbuckets = calloc(x->ndbuckets, sizeof(*x->dbuckets));
    x->next_conn_id = 1;
    if (xsd_htab_init(&x->nodes, 1024) < 0 ||
        xsd_htab_init(&x->wpaths, 1024) < 0 || !x->pbuckets || !x->dbuckets)
        goto err;
    ps = xsd_perms_get(x, &p0, 1);
    if (!ps)
        goto err;
    x->root = initial_node(x, NULL, "/", ps);
    tool = x->root ? initial_node(x, x->root, "/tool", ps) : NULL;
    if (!tool || !initial_node(x, tool, "/tool/xenstored", ps))
        goto err_perms;
    local = initial_node(x, x->root, "/local", ps);
    dom = local ? initial_node(x, local, "/local/domain", ps) : NULL;
    if (!dom || !initial_node(x, dom, "/local/domain/0", ps) ||
        !initial_node(x, NULL, "@introduceDomain", ps) ||
        !initial_node(x, NULL, "@releaseDomain", ps))
        goto err_perms;
    xsd_perms_put(x, ps);
    return 0;

err_perms:
    xsd_perms_put(x, ps);
err:
    xsd_fini(x);
    return xtk__fail(ENOMEM);
}

/* Frees everything: connections, nodes, permissions, domains. */
void xsd_fini(struct xsd *x)
{
    while (x->conns) {
        xsd_conn_kill(x->conns, NULL);
        xsd_reap(x);
    }
    xsd_xen_fini(x);
    for (uint64_t i = 0; i < x->nodes.nb; i++) {
        struct xsd_node *n = x->nodes.b[i], *next;

        for (; n; n = next) {
            next = n->hnext;
            xsd_perms_put(x, n->perms);
            value_free(n);
            free(n);
        }
    }
    for (uint32_t i = 0; x->dbuckets && i < x->ndbuckets; i++) {
        struct xsd_dom *d = x->dbuckets[i], *next;

        for (; d; d = next) {
            next = d->hnext;
            free(d);
        }
    }
    if (x->nperms && x->ctx)
        XTK_ERROR(x->ctx, "%" PRIu64 " permission lists leaked", x->nperms);
    xsd_htab_fini(&x->nodes);
    xsd_htab_fini(&x->wpaths);
    free(x->pbuckets);
    free(x->dbuckets);
    x->pbuckets = NULL;
    x->dbuckets = NULL;
}
