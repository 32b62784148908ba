/*
 * test-xsd-txn.c - transactions checked against a serial model.
 *
 * The daemon's own code runs in-process with four connections (three
 * privileged, one of domain 5) that interleave random requests on a small
 * tree, inside and outside transactions.  A separate, deliberately naive
 * model of the store (a list of nodes in creation order) executes every
 * request that takes effect: non-transactional ones at once, and a
 * transaction's requests at the moment its commit succeeds.  Every answer
 * the daemon gave inside a committed transaction must be the answer the
 * model gives when the transaction runs alone at its commit point
 * (serializability), and the daemon's tree must always equal the model's.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "xsd-lite/xsd.h"

/* ---- replies captured from the daemon ------------------------------------ */

struct answer {
    uint32_t type;
    uint32_t len;
    char body[XENSTORE_PAYLOAD_MAX];
};
static struct answer last;
static int nanswers;

static void capture_flush(struct xsd_conn *c)
{
    while (c->out_head) {
        struct xsd_out *o = c->out_head;
        struct xsd_sockmsg h;

        memcpy(&h, o->buf, sizeof(h));
        if (h.type != XS_WATCH_EVENT) {
            last.type = h.type;
            last.len = h.len;
            memcpy(last.body, o->buf + XSD_HDR, h.len);
            nanswers++;
        }
        xsd_conn_output_done(c, o);
    }
}

static void capture_pause(struct xsd_conn *c, bool paused)
{
}

static void capture_destroy(struct xsd_conn *c)
{
}

static const struct xsd_transport capture = {"capture", capture_flush,
                                             capture_pause, capture_destroy};

static struct xsd x;

/* Makes c's domain exist for the store, as its ring connection does once
 * the domain is introduced (permissions may name only existing domains). */
static void introduced(struct xsd_conn *c)
{
    c->dom->conn = c;
}

/* Sends a request on c; the answer goes to last. */
static void request(struct xsd_conn *c, uint32_t type, uint32_t tx,
                    const char *p, uint32_t len)
{
    struct xsd_sockmsg h = {type, 1, tx, len};
    int before = nanswers;

    memcpy(c->in + c->inlen, &h, sizeof(h));
    memcpy(c->in + c->inlen + sizeof(h), p, len);
    c->inlen += (uint32_t)sizeof(h) + len;
    xsd_conn_process(c);
    xsd_after_io(&x);
    TEST_ASSERT(nanswers == before + 1, "no answer to type %u", type);
}

/* ---- the model ------------------------------------------------------------
 */

#define MAXN 512
struct mnode {
    char path[48];
    char value[24];
    char perms[48]; /* wire form, "b0\0r5\0" */
    uint32_t plen;
};
static struct mnode model[MAXN];
static int nmodel;

static struct mnode *mfind(const char *path)
{
    for (int i = 0; i < nmodel; i++)
        if (!strcmp(model[i].path, path))
            return &model[i];
    return NULL;
}

/* The parent of path in out (which may be path). */
static void parent_of(const char *path, char *out)
{
    const char *s = strrchr(path, '/');
    size_t n = s == path ? 1 : (size_t)(s - path);

    memmove(out, path, n);
    out[n] = '\0';
}

static bool is_below(const char *p, const char *root)
{
    size_t n = strlen(root);

    return !strncmp(p, root, n) && (p[n] == '/' || !p[n]);
}

/* Permissions as xsd_perm_for computes them, written from the rules. */
static unsigned int mperm(uint32_t dom, bool priv, const struct mnode *n)
{
    const char *p = n->perms;
    unsigned int owner_id = (unsigned)atoi(p + 1), def = 0;

    if (priv || owner_id == dom)
        return 7;
    for (const char *e = p; e < p + n->plen; e += strlen(e) + 1) {
        unsigned int bits = e[0] == 'r'   ? 1
                            : e[0] == 'w' ? 2
                            : e[0] == 'b' ? 3
                                          : 0;

        if (e == p)
            def = bits;
        else if ((unsigned)atoi(e + 1) == dom)
            return bits;
    }
    return def;
}

/* The first existing ancestor. */
static struct mnode *ancestor(const char *path)
{
    char p[48];

    strcpy(p, path);
    do {
        parent_of(p, p);
        if (mfind(p))
            return mfind(p);
    } while (strcmp(p, "/"));
    return mfind("/");
}

static int hide(uint32_t dom, bool priv, const char *path, int err,
                unsigned int want)
{
    if (priv)
        return err;
    return (mperm(dom, priv, ancestor(path)) & want) ? err : EACCES;
}

static void mcreate(const char *path, const struct mnode *anc, uint32_t dom,
                    bool priv)
{
    char p[48];

    if (mfind(path))
        return;
    parent_of(path, p);
    if (!mfind(p))
        mcreate(p, anc, dom, priv);
    TEST_ASSERT(nmodel < MAXN, "model full");
    struct mnode *n = &model[nmodel++];

    memset(n, 0, sizeof(*n));
    strcpy(n->path, path);
    memcpy(n->perms, anc->perms, anc->plen);
    n->plen = anc->plen;
    if (!priv) {
        /* The creator owns it: replace the first entry's domid. */
        char rest[48], first[16];
        size_t fl = strlen(anc->perms) + 1;

        memcpy(rest, anc->perms + fl, anc->plen - fl);
        snprintf(first, sizeof(first), "%c%u", anc->perms[0], dom);
        n->plen = (uint32_t)(strlen(first) + 1 + anc->plen - fl);
        memcpy(n->perms, first, strlen(first) + 1);
        memcpy(n->perms + strlen(first) + 1, rest, anc->plen - fl);
    }
}

static void mremove(const char *root)
{
    int k = 0;

    for (int i = 0; i < nmodel; i++)
        if (!is_below(model[i].path, root))
            model[k++] = model[i];
    nmodel = k;
}

/* One request against the model: the answer in *a. */
struct req {
    uint32_t type;
    char path[48];
    char arg[48];
    uint32_t arglen;
};

static void set_err(struct answer *a, int err)
{
    const char *s = xsd_errstr(err);

    a->type = XS_ERROR;
    a->len = (uint32_t)strlen(s) + 1;
    memcpy(a->body, s, a->len);
}

static void set_ok(struct answer *a, uint32_t type, const void *p, uint32_t len)
{
    a->type = type;
    a->len = len;
    memcpy(a->body, p, len);
}

static void mrun(const struct req *q, uint32_t dom, bool priv, struct answer *a)
{
    struct mnode *n = mfind(q->path), *anc;
    char buf[1024];
    uint32_t len = 0;
    char par[48];

    switch (q->type) {
    case XS_READ:
        if (!n)
            return set_err(a, hide(dom, priv, q->path, ENOENT, 1));
        if (!(mperm(dom, priv, n) & 1))
            return set_err(a, EACCES);
        return set_ok(a, XS_READ, n->value, (uint32_t)strlen(n->value));
    case XS_GET_PERMS:
        if (!n)
            return set_err(a, hide(dom, priv, q->path, ENOENT, 1));
        if (!(mperm(dom, priv, n) & 1))
            return set_err(a, EACCES);
        return set_ok(a, XS_GET_PERMS, n->perms, n->plen);
    case XS_DIRECTORY:
        if (!n)
            return set_err(a, hide(dom, priv, q->path, ENOENT, 1));
        if (!(mperm(dom, priv, n) & 1))
            return set_err(a, EACCES);
        for (int i = 0; i < nmodel; i++) {
            parent_of(model[i].path, par);
            if (strcmp(model[i].path, "/") && !strcmp(par, q->path)) {
                const char *name = strrchr(model[i].path, '/') + 1;

                memcpy(buf + len, name, strlen(name) + 1);
                len += (uint32_t)strlen(name) + 1;
            }
        }
        return set_ok(a, XS_DIRECTORY, buf, len);
    case XS_WRITE:
    case XS_MKDIR:
        if (n) {
            if (!(mperm(dom, priv, n) & 2))
                return set_err(a, EACCES);
            if (q->type == XS_WRITE)
                strcpy(n->value, q->arg);
            return set_ok(a, q->type, "OK", 3);
        }
        anc = ancestor(q->path);
        if (!(mperm(dom, priv, anc) & 2))
            return set_err(a, EACCES);
        mcreate(q->path, anc, dom, priv);
        if (q->type == XS_WRITE)
            strcpy(mfind(q->path)->value, q->arg);
        return set_ok(a, q->type, "OK", 3);
    case XS_RM:
        if (!n) {
            int e = hide(dom, priv, q->path, ENOENT, 2);

            if (e != ENOENT)
                return set_err(a, e);
            parent_of(q->path, par);
            if (mfind(par))
                return set_ok(a, XS_RM, "OK", 3);
            return set_err(a, ENOENT);
        }
        if (!(mperm(dom, priv, n) & 2))
            return set_err(a, EACCES);
        mremove(q->path);
        return set_ok(a, XS_RM, "OK", 3);
    case XS_SET_PERMS:
        if (!n)
            return set_err(a, hide(dom, priv, q->path, ENOENT, 2));
        if ((mperm(dom, priv, n) & 6) != 6)
            return set_err(a, EACCES);
        if (!priv && (unsigned)atoi(q->arg + 1) != (unsigned)atoi(n->perms + 1))
            return set_err(a, EPERM);
        memcpy(n->perms, q->arg, q->arglen);
        n->plen = q->arglen;
        return set_ok(a, XS_SET_PERMS, "OK", 3);
    }
    TEST_ASSERT(0, "model: type %u", q->type);
}

/* ---- the run ---------------------------------------------------------- */

#define NCONN 4
struct client {
    struct xsd_conn *c;
    uint32_t tx;
    struct req ops[16];
    struct answer got[16];
    int nops;
};
static struct client cl[NCONN];

static uint32_t rnd_state = 12345;
static uint32_t rnd(uint32_t n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) % n;
}

static void random_req(struct req *q)
{
    static const uint32_t types[] = {XS_READ,      XS_READ,      XS_WRITE,
                                     XS_WRITE,     XS_MKDIR,     XS_RM,
                                     XS_DIRECTORY, XS_GET_PERMS, XS_SET_PERMS};
    static const char *const perms[][3] = {{"b0", NULL},
                                           {"b5", NULL},
                                           {"n0", "r5", NULL},
                                           {"r0", NULL},
                                           {"w5", "r1", NULL}};
    int depth = 1 + (int)rnd(3), k = (int)rnd(5);

    memset(q, 0, sizeof(*q));
    q->type = types[rnd(sizeof(types) / sizeof(types[0]))];
    strcpy(q->path, "/m");
    for (int i = 0; i < depth; i++) {
        char seg[4] = {'/', (char)('a' + rnd(3)), 0, 0};

        strcat(q->path, seg);
    }
    if (q->type == XS_WRITE)
        snprintf(q->arg, sizeof(q->arg), "v%u", rnd(1000));
    if (q->type == XS_SET_PERMS) {
        for (int i = 0; perms[k][i]; i++) {
            size_t l = strlen(perms[k][i]) + 1;

            memcpy(q->arg + q->arglen, perms[k][i], l);
            q->arglen += (uint32_t)l;
        }
    }
}

static void send_req(struct client *k, const struct req *q, uint32_t tx)
{
    char buf[128];
    uint32_t pl = (uint32_t)strlen(q->path) + 1, n = pl;

    memcpy(buf, q->path, pl);
    if (q->type == XS_WRITE) {
        memcpy(buf + pl, q->arg, strlen(q->arg));
        n += (uint32_t)strlen(q->arg);
    } else if (q->type == XS_SET_PERMS) {
        memcpy(buf + pl, q->arg, q->arglen);
        n += q->arglen;
    }
    request(k->c, q->type, tx, buf, n);
}

static void same(const struct answer *a, const struct answer *b,
                 const struct req *q, const char *when)
{
    TEST_ASSERT(a->type == b->type && a->len == b->len &&
                    !memcmp(a->body, b->body, a->len),
                "%s: type %u %s: daemon %u \"%.*s\", model %u \"%.*s\"", when,
                q->type, q->path, a->type, (int)a->len, a->body, b->type,
                (int)b->len, b->body);
}

struct cmp {
    int i;
};

static int compare_node(struct xsd_node *n, int depth, void *arg)
{
    struct cmp *c = arg;
    struct mnode *m;
    char perms[64];
    size_t pl = xsd_perms_format(n->perms, perms, sizeof(perms));

    if (!is_below(n->path, "/m"))
        return 0;
    m = mfind(n->path);
    TEST_ASSERT(m, "daemon has %s, the model does not", n->path);
    TEST_ASSERT(n->vlen == strlen(m->value) &&
                    (!n->vlen || !memcmp(xsd_node_value(n), m->value, n->vlen)),
                "%s: value differs", n->path);
    TEST_ASSERT(pl == m->plen && !memcmp(perms, m->perms, pl),
                "%s: permissions differ", n->path);
    c->i++;
    return 0;
}

static void compare_trees(void)
{
    struct xsd_node *m = xsd_find(&x, "/m", 2);
    struct cmp c = {0};
    int want = 0;

    for (int i = 0; i < nmodel; i++)
        want += is_below(model[i].path, "/m");
    if (m)
        xsd_walk(m, compare_node, &c);
    TEST_ASSERT(c.i == want, "daemon has %d nodes under /m, model %d", c.i,
                want);
}

/* One run of iters random steps from seed. */
static void run(struct xtk_ctx *ctx, int iters, uint32_t seed)
{
    int commits = 0, conflicts = 0, direct = 0;
    struct answer want;

    rnd_state = seed;
    memset(cl, 0, sizeof(cl));
    TEST_ASSERT(!xsd_init(&x, ctx, NULL, NULL), "xsd_init");
    /* The model starts as the daemon: / and /m, everything readable. */
    nmodel = 0;
    strcpy(model[nmodel].path, "/");
    memcpy(model[nmodel].perms, "n0", 3);
    model[nmodel++].plen = 3;
    for (int i = 0; i < NCONN; i++) {
        cl[i].c = xsd_conn_new(&x, &capture, i == NCONN - 1 ? 5 : 0,
                               i != NCONN - 1, false);
        TEST_ASSERT(cl[i].c, "connection");
    }
    introduced(cl[NCONN - 1].c);
    request(cl[0].c, XS_MKDIR, 0, "/m", 3);
    request(cl[0].c, XS_SET_PERMS, 0, "/m\0b0", 6);
    strcpy(model[nmodel].path, "/m");
    memcpy(model[nmodel].perms, "b0", 3);
    model[nmodel++].plen = 3;

    for (int it = 0; it < iters; it++) {
        struct client *k = &cl[rnd(NCONN)];
        bool priv = k->c->priv;
        uint32_t dom = k->c->domid;
        struct req q;

        if (!k->tx && rnd(3) == 0) {
            request(k->c, XS_TRANSACTION_START, 0, "", 1);
            TEST_ASSERT(last.type == XS_TRANSACTION_START, "start");
            k->tx = (uint32_t)strtoul(last.body, NULL, 10);
            k->nops = 0;
            continue;
        }
        if (k->tx && (k->nops == 16 || rnd(5) == 0)) {
            bool commit = rnd(8) != 0;

            request(k->c, XS_TRANSACTION_END, k->tx, commit ? "T" : "F", 2);
            if (getenv("XSDT_LOG"))
                fprintf(stderr, "%d: conn %d end tx %u %s -> %s\n", it,
                        (int)(k - cl), k->tx, commit ? "T" : "F", last.body);
            if (commit && last.type == XS_TRANSACTION_END) {
                commits++;
                for (int i = 0; i < k->nops; i++) {
                    mrun(&k->ops[i], dom, priv, &want);
                    if (getenv("XSDT_TRACE") || want.type != k->got[i].type ||
                        want.len != k->got[i].len ||
                        memcmp(want.body, k->got[i].body, want.len))
                        for (int j = 0; j < k->nops; j++)
                            fprintf(stderr,
                                    "  tx %u op %d: type %u %s %s -> %.*s\n",
                                    k->tx, j, k->ops[j].type, k->ops[j].path,
                                    k->ops[j].arg, (int)k->got[j].len,
                                    k->got[j].body);
                    same(&k->got[i], &want, &k->ops[i], "committed");
                }
            } else if (commit) {
                TEST_ASSERT(!strcmp(last.body, "EAGAIN"), "commit: %s",
                            last.body);
                conflicts++;
            }
            k->tx = 0;
            compare_trees();
            continue;
        }
        random_req(&q);
        send_req(k, &q, k->tx);
        if (getenv("XSDT_LOG"))
            fprintf(stderr, "%d: conn %d tx %u type %u %s %s -> %u %.*s\n", it,
                    (int)(k - cl), k->tx, q.type, q.path, q.arg, last.type,
                    (int)last.len, last.body);
        if (k->tx) {
            k->ops[k->nops] = q;
            k->got[k->nops++] = last;
        } else {
            mrun(&q, dom, priv, &want);
            same(&last, &want, &q, "direct");
            direct++;
            compare_trees();
        }
    }
    fprintf(stderr, "seed %u: %d requests, %d commits, %d conflicts\n", seed,
            direct, commits, conflicts);
    TEST_ASSERT(commits > iters / 100 && conflicts > 0,
                "the mix did not exercise both outcomes");
    xsd_fini(&x);
}

/* ---- the facts a guest's write depends on ---------------------------------
 */

static void expect_last(uint32_t type, const char *body, const char *what)
{
    TEST_ASSERT(last.type == type && last.len == strlen(body) + 1 &&
                    !memcmp(last.body, body, last.len),
                "%s: %u \"%.*s\", wanted %u \"%s\"", what, last.type,
                (int)last.len, last.body, type, body);
}

static uint32_t start(struct xsd_conn *c)
{
    request(c, XS_TRANSACTION_START, 0, "", 1);
    TEST_ASSERT(last.type == XS_TRANSACTION_START, "start: %s", last.body);
    return (uint32_t)strtoul(last.body, NULL, 10);
}

static void expect_value(const char *path, const char *want)
{
    struct xsd_node *n = xsd_find(&x, path, strlen(path));

    TEST_ASSERT(n && n->vlen == strlen(want) &&
                    !memcmp(xsd_node_value(n), want, n->vlen),
                "%s: not \"%s\"", path, want);
}

/*
 * An unprivileged write checks the node's permissions (or, creating, those
 * it inherits), and that is all it reads: another client's write of the
 * node's value must not make the guest's commit fail, a real change of
 * the permissions must.
 */
static void guest_write_facts(struct xtk_ctx *ctx)
{
    struct xsd_conn *p, *g;
    uint32_t t;

    TEST_ASSERT(!xsd_init(&x, ctx, NULL, NULL), "xsd_init");
    p = xsd_conn_new(&x, &capture, 0, true, false);
    g = xsd_conn_new(&x, &capture, 5, false, false);
    TEST_ASSERT(p && g, "connections");
    introduced(g);
    request(p, XS_WRITE, 0, "/g\0v0", 5);
    request(p, XS_SET_PERMS, 0, "/g\0n5", 6);
    expect_last(XS_SET_PERMS, "OK", "set up /g");

    /* The value changes under the guest's write: no conflict. */
    t = start(g);
    request(g, XS_WRITE, t, "/g\0mine", 7);
    expect_last(XS_WRITE, "OK", "guest write");
    request(p, XS_WRITE, 0, "/g\0theirs", 9);
    request(g, XS_TRANSACTION_END, t, "T", 2);
    expect_last(XS_TRANSACTION_END, "OK", "value changed under a write");
    expect_value("/g", "mine");

    /* ... nor under a creation that inherits /g's permissions. */
    t = start(g);
    request(g, XS_WRITE, t, "/g/kid\0k", 8);
    expect_last(XS_WRITE, "OK", "guest creation");
    request(p, XS_WRITE, 0, "/g\0theirs2", 10);
    request(g, XS_TRANSACTION_END, t, "T", 2);
    expect_last(XS_TRANSACTION_END, "OK", "value changed under a creation");
    expect_value("/g/kid", "k");

    /* Permissions that really change: EAGAIN, for both. */
    t = start(g);
    request(g, XS_WRITE, t, "/g\0lost", 7);
    request(p, XS_SET_PERMS, 0, "/g\0n5\0r0", 9);
    request(g, XS_TRANSACTION_END, t, "T", 2);
    expect_last(XS_ERROR, "EAGAIN", "permissions changed under a write");
    expect_value("/g", "theirs2");
    t = start(g);
    request(g, XS_WRITE, t, "/g/kid2\0k", 9);
    request(p, XS_SET_PERMS, 0, "/g\0n5", 6);
    request(g, XS_TRANSACTION_END, t, "T", 2);
    expect_last(XS_ERROR, "EAGAIN", "permissions changed under a creation");
    TEST_ASSERT(!xsd_find(&x, "/g/kid2", 7), "/g/kid2 created");

    /* Changed and changed back: what the guest saw holds. */
    t = start(g);
    request(g, XS_WRITE, t, "/g\0back", 7);
    request(p, XS_SET_PERMS, 0, "/g\0n5\0r0", 9);
    request(p, XS_SET_PERMS, 0, "/g\0n5", 6);
    request(g, XS_TRANSACTION_END, t, "T", 2);
    expect_last(XS_TRANSACTION_END, "OK", "permissions changed back");
    expect_value("/g", "back");

    /* A value the guest read still conflicts. */
    t = start(g);
    request(g, XS_READ, t, "/g", 3);
    TEST_ASSERT(last.type == XS_READ && last.len == 4 &&
                    !memcmp(last.body, "back", 4),
                "guest read: %.*s", (int)last.len, last.body);
    request(g, XS_WRITE, t, "/g\0rmw", 6);
    request(p, XS_WRITE, 0, "/g\0theirs3", 10);
    request(g, XS_TRANSACTION_END, t, "T", 2);
    expect_last(XS_ERROR, "EAGAIN", "value read, then changed");
    expect_value("/g", "theirs3");
    xsd_fini(&x);
}

/* test-xsd-txn [ITERATIONS [SEED]]: by default three seeds. */
int main(int argc, char **argv)
{
    struct xtk_ctx *ctx = xtk_ctx_open(NULL, NULL, XTK_CTX_SILENT);
    int iters = argc > 1 ? atoi(argv[1]) : 300000;

    TEST_ASSERT(ctx, "xtk_ctx_open");
    guest_write_facts(ctx);
    if (argc > 2)
        run(ctx, iters, (uint32_t)strtoul(argv[2], NULL, 0));
    else
        for (uint32_t seed = 1; seed <= 3; seed++)
            run(ctx, iters, seed);
    xtk_ctx_close(ctx);
    return 0;
}
