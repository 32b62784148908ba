/*
 * txn.c - transactions that never copy the tree.
 *
 * A transaction keeps a small map of the paths it touched (tnodes).  The
 * first time it looks at a path it notes the live node's generation (or
 * that there was none), and the tnode then holds the transaction's view of
 * that node: what it read (a value is copied only when the client reads
 * it) and what it wrote.  Every fact the transaction's answers depended on
 * is recorded at the weakest level that suffices:
 *
 *   EXISTS  only whether the node existed (a privileged blind write),
 *   PERMS   its permission list (a permission check, or inheritance by a
 *           node the transaction created): the live node must still have
 *           the very list it had, which interning makes a pointer
 *           comparison, and the tnode's reference keeps that list alive,
 *   FULL    its generation (its value was used),
 *   CGEN    its children's generation (the client listed them).
 *
 * So a guest's write, which checks the node's permissions, does not
 * conflict with another client's write of the node's value.
 *
 * Aspects the transaction set itself (own_*) depend on nothing.  A
 * transaction that removed a node hides the live subtree below it
 * (shadow).  The modifying requests are logged as they arrive.
 *
 * Creating a node relies on its absence only if the transaction later
 * looks at what that absence decided: its inherited permissions, or its
 * children.  For a privileged client (no permission checks) the EXISTS
 * check on the nodes it creates is therefore recorded lazily, when it
 * lists or reads the permissions of one; so 300 toolstacks creating
 * /vm/<uuid> at once do not conflict over which of them created /vm.
 *
 * Commit checks each recorded fact against the live tree; if one no longer
 * holds, the answer is EAGAIN.  Otherwise nothing the transaction saw has
 * changed, so running its logged requests on the live tree now gives the
 * answers it already got: they are replayed there, firing their watches.
 * Two transactions that create different domains under /local/domain do not
 * conflict: adding a child changes the parent's children generation, which
 * only a transaction that listed the parent depends on.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd-txn"

/* Ordered: each level implies the ones below it. */
enum { CHECK_NONE, CHECK_EXISTS, CHECK_PERMS, CHECK_FULL };

struct xsd_tnode {
    struct xsd_tnode *hnext, *lnext;
    uint64_t base_gen;  /* live generation at first look; XSD_NO_GEN: none */
    uint64_t base_cgen; /* live children generation at first look */
    struct xsd_perms *base_perms; /* live permissions at first look (ref) */
    struct xsd_perms *perms;
    char *value;
    uint32_t vlen;
    uint32_t hash;
    uint32_t cseq; /* when the transaction (re)created it: listing order */
    uint16_t plen;
    uint8_t check;
    bool check_cgen;
    bool exists;
    bool own_exist, own_value, own_perms;
    bool value_cached;
    bool shadow;
    bool lazy;  /* created by a privileged client: absence not relied on */
    bool wrote; /* its value was written (not just created empty) */
    char path[];
};

struct xsd_txop {
    struct xsd_txop *next;
    uint32_t type;
    uint32_t len;
    char data[];
};

/* Bytes a transaction holds, charged to its domain's memory quota. */
static void charge(struct xsd_txn *t, int64_t bytes)
{
    t->mem += (uint64_t)bytes;
    if (t->c->dom)
        t->c->dom->mem += (uint64_t)bytes;
}

/*
 * Starts a transaction on c with the next free id (never 0).  Returns NULL
 * on failure, in which case errno will be set.
 */
struct xsd_txn *xsd_txn_new(struct xsd_conn *c)
{
    struct xsd_txn *t = calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    if (xsd_htab_init(&t->map, 16) < 0) {
        free(t);
        return NULL;
    }
    do {
        t->id = c->next_txid++;
    } while (!t->id || xsd_txn_find(c, t->id));
    t->c = c;
    t->ops_tail = &t->ops;
    t->next = c->txns;
    c->txns = t;
    c->ntxns++;
    if (c->dom)
        c->dom->txns++;
    return t;
}

struct xsd_txn *xsd_txn_find(struct xsd_conn *c, uint32_t id)
{
    for (struct xsd_txn *t = c->txns; t; t = t->next)
        if (t->id == id)
            return t;
    return NULL;
}

static void tnode_free(struct xsd *x, struct xsd_tnode *tn)
{
    xsd_perms_put(x, tn->base_perms);
    xsd_perms_put(x, tn->perms);
    free(tn->value);
    free(tn);
}

void xsd_txn_free(struct xsd_txn *t)
{
    struct xsd_conn *c = t->c;
    struct xsd_txn **pp = &c->txns;

    while (*pp != t)
        pp = &(*pp)->next;
    *pp = t->next;
    c->ntxns--;
    if (c->dom) {
        c->dom->txns--;
        c->dom->mem -= t->mem;
    }
    while (t->list) {
        struct xsd_tnode *tn = t->list;

        t->list = tn->lnext;
        tnode_free(c->x, tn);
    }
    while (t->ops) {
        struct xsd_txop *op = t->ops;

        t->ops = op->next;
        free(op);
    }
    xsd_htab_fini(&t->map);
    free(t);
}

void xsd_txn_free_all(struct xsd_conn *c)
{
    while (c->txns)
        xsd_txn_free(c->txns);
}

/* Appends r (a modifying request that succeeded) to the replay log.
 * Returns -1 on failure, in which case errno will be set. */
int xsd_txn_log(struct xsd_txn *t, const struct xsd_req *r)
{
    struct xsd_txop *op = malloc(sizeof(*op) + r->len);

    if (!op)
        return -1;
    op->next = NULL;
    op->type = r->type;
    op->len = r->len;
    memcpy(op->data, r->p, r->len);
    *t->ops_tail = op;
    t->ops_tail = &op->next;
    charge(t, (int64_t)(sizeof(*op) + r->len));
    return 0;
}

/* ---- the map of touched paths ------------------------------------------- */

XSD_HTAB_DEFINE(tnodes, struct xsd_tnode)

static struct xsd_tnode *tn_find(struct xsd_txn *t, const char *path,
                                 size_t plen)
{
    return tnodes_find(&t->map, path, plen, xsd_hash(path, plen));
}

/* Is path below a node the transaction removed? */
static bool shadowed(struct xsd_txn *t, const char *path, size_t plen)
{
    if (!t->nshadow)
        return false;
    for (size_t len = xsd_parent_len(path, plen); len;
         len = xsd_parent_len(path, len)) {
        struct xsd_tnode *tn = tn_find(t, path, len);

        if (tn && tn->shadow)
            return true;
    }
    return false;
}

/* ENOSPC if an unprivileged transaction would touch too many nodes. */
static int tn_quota(struct xsd_req *r, uint32_t add)
{
    if (r->c->priv || r->replay)
        return 0;
    return r->t->map.n + add > r->c->x->cfg.quota[XSD_Q_TXN_NODES] ? ENOSPC : 0;
}

/*
 * The tnode of path, made on first use from the live node (or as absent,
 * below a node the transaction removed).  Returns 0 or an errno.
 */
static int tn_get(struct xsd_req *r, const char *path, size_t plen,
                  struct xsd_tnode **out)
{
    struct xsd_txn *t = r->t;
    struct xsd_tnode *tn = tn_find(t, path, plen);
    struct xsd_node *live;
    int err;

    if (tn) {
        *out = tn;
        return 0;
    }
    if ((err = tn_quota(r, 1)))
        return err;
    tn = calloc(1, sizeof(*tn) + plen + 1);
    if (!tn)
        return ENOMEM;
    memcpy(tn->path, path, plen);
    tn->plen = (uint16_t)plen;
    tn->hash = xsd_hash(path, plen);
    tn->base_gen = XSD_NO_GEN;
    if (shadowed(t, path, plen)) {
        tn->own_exist = tn->own_value = tn->own_perms = true;
        tn->value_cached = true;
    } else if ((live = xsd_find(r->c->x, path, plen))) {
        tn->exists = true;
        tn->base_gen = live->gen;
        tn->base_cgen = live->cgen;
        tn->base_perms = xsd_perms_ref(live->perms);
        tn->perms = xsd_perms_ref(live->perms);
        tn->vlen = live->vlen;
    }
    tnodes_insert(&t->map, tn);
    tn->lnext = t->list;
    t->list = tn;
    charge(t, (int64_t)(sizeof(*tn) + plen));
    *out = tn;
    return 0;
}

static void depend(struct xsd_tnode *tn, uint8_t level)
{
    if (tn->check < level)
        tn->check = level;
}

/* Copies the live value the transaction is about to read.  If the node
 * changed since the transaction first saw it, the commit is doomed. */
static int cache_value(struct xsd_req *r, struct xsd_tnode *tn)
{
    struct xsd_node *live = xsd_find(r->c->x, tn->path, tn->plen);
    char *v = NULL;

    if (!live || live->gen != tn->base_gen)
        r->t->doomed = true;
    if (live && live->vlen) {
        v = malloc(live->vlen);
        if (!v)
            return ENOMEM;
        memcpy(v, xsd_node_value(live), live->vlen);
    }
    tn->value = v;
    tn->vlen = live ? live->vlen : 0;
    tn->value_cached = true;
    charge(r->t, tn->vlen);
    return 0;
}

/* The transaction now relies on the absence, at its start, of the nodes
 * it created lazily from tn up to the nearest one that existed. */
static void rely_on_creation(struct xsd_txn *t, struct xsd_tnode *tn)
{
    size_t len = tn->plen;

    while (tn && tn->lazy) {
        tn->lazy = false;
        depend(tn, CHECK_EXISTS);
        len = xsd_parent_len(tn->path, len);
        tn = len ? tn_find(t, tn->path, len) : NULL;
    }
}

int xsd_txn_get(struct xsd_req *r, const char *path, size_t plen,
                unsigned int need, struct xsd_nv *nv)
{
    struct xsd_tnode *tn = tn_find(r->t, path, plen);
    int err;

    memset(nv, 0, sizeof(*nv));
    if (!tn && shadowed(r->t, path, plen))
        return 0;
    if (!tn && (err = tn_get(r, path, plen, &tn)))
        return err;
    /* need 0: a privileged probe whose answer does not hang on it. */
    if (!tn->own_exist && need)
        depend(tn, CHECK_EXISTS);
    if (tn->exists) {
        if ((need & XSD_NEED_PERMS) && tn->lazy)
            rely_on_creation(r->t, tn);
        if ((need & XSD_NEED_PERMS) && !tn->own_perms)
            depend(tn, CHECK_PERMS);
        if ((need & XSD_NEED_VALUE) && tn->lazy && !tn->wrote)
            rely_on_creation(r->t, tn);
        if ((need & XSD_NEED_VALUE) && !tn->own_value) {
            depend(tn, CHECK_FULL);
            if (!tn->value_cached && (err = cache_value(r, tn)))
                return err;
        }
        nv->exists = true;
        nv->value = tn->value;
        nv->vlen = tn->vlen;
        nv->perms = tn->perms;
    }
    return 0;
}

/* Makes tn exist in the transaction's view with perms and value. */
static int tn_set(struct xsd_txn *t, struct xsd_tnode *tn,
                  struct xsd_perms *perms, const char *value, uint32_t vlen)
{
    char *v = NULL;

    if (vlen) {
        v = malloc(vlen);
        if (!v)
            return ENOMEM;
        memcpy(v, value, vlen);
    }
    if (tn->value_cached)
        charge(t, -(int64_t)tn->vlen);
    free(tn->value);
    tn->value = v;
    tn->vlen = vlen;
    tn->value_cached = tn->own_value = true;
    charge(t, vlen);
    if (perms) {
        xsd_perms_put(t->c->x, tn->perms);
        tn->perms = xsd_perms_ref(perms);
        tn->own_perms = true;
    }
    return 0;
}

int xsd_txn_create(struct xsd_req *r, const char *path, size_t plen,
                   size_t alen, struct xsd_perms *anc_perms, const char *value,
                   uint32_t vlen)
{
    struct xsd_txn *t = r->t;
    struct xsd_tnode *anc = tn_find(t, path, alen), *tn;
    struct xsd_perms *ps;
    uint32_t levels = 0;
    int err = 0;

    for (size_t e = alen + 1; e <= plen; e++)
        levels += e == plen || path[e] == '/';
    if ((err = tn_quota(r, levels)))
        return err;
    /* New nodes inherit the ancestor's permissions: a dependency. */
    if (anc && !anc->own_perms)
        depend(anc, CHECK_PERMS);
    ps = r->c->priv ? xsd_perms_ref(anc_perms)
                    : xsd_perms_with_owner(r->c->x, anc_perms, r->c->domid);
    if (!ps)
        return ENOMEM;
    for (size_t e = alen + 1; e <= plen && !err; e++) {
        if (e != plen && path[e] != '/')
            continue;
        err = tn_get(r, path, e, &tn);
        if (err)
            break;
        if (!tn->own_exist && r->c->priv)
            tn->lazy = true;
        else if (!tn->own_exist)
            depend(tn, CHECK_EXISTS);
        err = tn_set(t, tn, ps, e == plen ? value : NULL, e == plen ? vlen : 0);
        tn->wrote = e == plen && r->type == XS_WRITE;
        tn->exists = tn->own_exist = true;
        t->created++;
        tn->cseq = ++t->mods;
    }
    xsd_perms_put(r->c->x, ps);
    if (err)
        t->failed = true;
    return err;
}

int xsd_txn_set_value(struct xsd_req *r, const char *path, size_t plen,
                      const char *value, uint32_t vlen)
{
    struct xsd_tnode *tn;
    int err = tn_get(r, path, plen, &tn);

    if (!err)
        err = tn_set(r->t, tn, NULL, value, vlen);
    if (!err)
        tn->wrote = true;
    if (err == ENOMEM)
        r->t->failed = true;
    return err;
}

int xsd_txn_set_perms(struct xsd_req *r, const char *path, size_t plen,
                      struct xsd_perms *perms)
{
    struct xsd_tnode *tn;
    int err = tn_get(r, path, plen, &tn);

    if (err)
        return err;
    xsd_perms_put(r->c->x, tn->perms);
    tn->perms = xsd_perms_ref(perms);
    tn->own_perms = true;
    return 0;
}

static void tn_gone(struct xsd_txn *t, struct xsd_tnode *tn)
{
    if (tn->value_cached)
        charge(t, -(int64_t)tn->vlen);
    free(tn->value);
    tn->value = NULL;
    tn->vlen = 0;
    tn->exists = false;
    tn->own_exist = tn->own_value = tn->own_perms = true;
    tn->value_cached = true;
}

int xsd_txn_rm(struct xsd_req *r, const char *path, size_t plen)
{
    struct xsd_txn *t = r->t;
    struct xsd_tnode *tn;
    int err = tn_get(r, path, plen, &tn);

    if (err)
        return err;
    tn_gone(t, tn);
    t->mods++;
    if (!tn->shadow) {
        tn->shadow = true;
        t->nshadow++;
    }
    for (struct xsd_tnode *d = t->list; d; d = d->lnext)
        if (d->plen > plen && xsd_is_child(d->path, d->plen, path, plen))
            tn_gone(t, d);
    return 0;
}

/* Is tn a child of the node path (plen)?  Its name goes to *name. */
static bool child_of(const struct xsd_tnode *tn, const char *path, size_t plen,
                     const char **name)
{
    size_t skip = plen == 1 ? 1 : plen + 1;

    if (tn->plen <= skip || !xsd_is_child(tn->path, tn->plen, path, plen))
        return false;
    *name = tn->path + skip;
    return !memchr(*name, '/', tn->plen - skip);
}

static int by_cseq(const void *a, const void *b)
{
    const struct xsd_tnode *x = *(struct xsd_tnode *const *)a;
    const struct xsd_tnode *y = *(struct xsd_tnode *const *)b;

    return x->cseq < y->cseq ? -1 : x->cseq > y->cseq;
}

/*
 * The children as the replay will leave them: the live ones the
 * transaction did not remove or recreate, in their order, then those it
 * created, in the order it created them.
 */
int xsd_txn_children(struct xsd_req *r, const char *path, size_t plen,
                     uint64_t *gen,
                     int (*cb)(const char *name, size_t len, void *arg),
                     void *arg)
{
    struct xsd_txn *t = r->t;
    struct xsd_tnode *tn = tn_find(t, path, plen), **own;
    /* Live children are visible unless the node is the transaction's own. */
    bool mine =
        (tn && (tn->shadow || tn->own_exist)) || shadowed(t, path, plen);
    struct xsd_node *live = mine ? NULL : xsd_find(r->c->x, path, plen);
    struct xsd_node *ch;
    const char *name;
    uint32_t n = 0;

    *gen = (live ? live->cgen : 0) + t->mods;
    if (tn && tn->lazy)
        rely_on_creation(t, tn);
    if (!mine && tn) {
        /* The listing depends on the live children (even if, the node
         * having gone since the transaction first saw it, there are none). */
        tn->check_cgen = true;
        if (!live || live->cgen != tn->base_cgen)
            t->doomed = true;
    }
    if (live) {
        xsd_for_children(live, ch)
        {
            struct xsd_tnode *ctn = tn_find(t, ch->path, ch->plen);

            name = xsd_child_name(ch);
            if ((!ctn || (ctn->exists && !ctn->own_exist)) &&
                cb(name, ch->plen - (size_t)(name - ch->path), arg))
                return 0;
        }
    }
    own = malloc(t->map.n * sizeof(*own));
    if (!own)
        return ENOMEM;
    for (struct xsd_tnode *d = t->list; d; d = d->lnext)
        if (d->exists && d->own_exist && child_of(d, path, plen, &name))
            own[n++] = d;
    qsort(own, n, sizeof(*own), by_cseq);
    for (uint32_t i = 0; i < n; i++) {
        name = own[i]->path + (plen == 1 ? 1 : plen + 1);
        if (cb(name, own[i]->plen - (size_t)(name - own[i]->path), arg))
            break;
    }
    free(own);
    return 0;
}

/* Does every fact the transaction depended on still hold? */
static bool still_valid(struct xsd_txn *t)
{
    struct xsd *x = t->c->x;

    if (t->doomed)
        return false;
    for (struct xsd_tnode *tn = t->list; tn; tn = tn->lnext) {
        struct xsd_node *live;

        if (tn->check == CHECK_NONE && !tn->check_cgen)
            continue;
        live = xsd_find(x, tn->path, tn->plen);
        if (tn->check == CHECK_FULL &&
            (live ? live->gen : XSD_NO_GEN) != tn->base_gen)
            return false;
        if (tn->check == CHECK_PERMS &&
            (live ? live->perms : NULL) != tn->base_perms)
            return false;
        if (tn->check == CHECK_EXISTS && !!live != (tn->base_gen != XSD_NO_GEN))
            return false;
        if (tn->check_cgen && (!live || live->cgen != tn->base_cgen))
            return false;
    }
    return true;
}

/*
 * Ends t (it is freed whatever the outcome).  Returns 0 when its changes
 * are now live, EAGAIN when something it depended on changed, ENOSPC when
 * its domain would exceed its node quota, ENOMEM when it ran out of memory
 * earlier.
 */
int xsd_txn_commit(struct xsd_txn *t)
{
    struct xsd_conn *c = t->c;
    int err = 0;

    if (t->failed)
        err = ENOMEM;
    else if (!still_valid(t))
        err = EAGAIN;
    else if (!c->priv &&
             c->dom->nodes + t->created > c->x->cfg.quota[XSD_Q_NODES])
        err = ENOSPC;
    if (err) {
        c->x->stat_conflicts += err == EAGAIN;
        xsd_txn_free(t);
        return err;
    }
    c->x->stat_commits++;
    /*
     * Replay the log on the live tree, where the changes fire their
     * watches.  The view is freed only afterwards; that is harmless because
     * replayed requests skip the quota checks (the node quota was checked
     * just above), so the transaction's memory, still charged to its
     * domain, is not counted against them.
     */
    for (struct xsd_txop *op = t->ops; op; op = op->next) {
        struct xsd_req rr = {
            .c = c,
            .type = op->type,
            .p = op->data,
            .len = op->len,
            .replay = true,
        };
        int e = xsd_handle(&rr);

        if (e)
            XTK_ERROR(c->x->ctx,
                      "transaction %u of connection %u: replayed %s gave %s",
                      t->id, c->id, xsd_type_name(op->type), xsd_errstr(e));
    }
    xsd_txn_free(t);
    return 0;
}
