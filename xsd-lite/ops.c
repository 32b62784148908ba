/*
 * ops.c - the request dispatcher: one handler per message type, in a table
 * indexed by type as Xen's xenstored has it.
 *
 * Handlers parse the payload, resolve the path, check permissions and
 * quotas, and act through the view (view.c), which is the live tree or the
 * request's transaction.  A handler returns 0 once it has replied, or an
 * errno that goes back to the client as Xen's error string.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd"

#define F_PRIV 1u  /* privileged connections only (else EACCES) */
#define F_WRITE 2u /* not on the read-only socket (else EROFS) */
#define F_NOTID 4u /* the transaction id is not looked at */
#define F_TXN 8u   /* runs in its transaction; logged there if F_WRITE */

/* ---- payload and path helpers ------------------------------------------- */

/* The payload's single string: exactly one NUL, at the end. */
static const char *onearg(const struct xsd_req *r)
{
    if (!r->len || memchr(r->p, '\0', r->len) != r->p + r->len - 1)
        return NULL;
    return r->p;
}

/* Splits a payload that ends with a NUL into its strings; returns how many
 * there are (only the first max are stored), or -1. */
static int strings(const struct xsd_req *r, const char **v, int max)
{
    int n = 0;

    if (!r->len || r->p[r->len - 1] != '\0')
        return -1;
    for (const char *s = r->p; s < r->p + r->len; s += strlen(s) + 1)
        if (n < max)
            v[n++] = s;
        else
            n++;
    return n;
}

/* A decimal number below 2^32 and no more than limit; -1 otherwise. */
static int dec(const char *s, uint64_t limit, uint64_t *out)
{
    uint64_t v = 0;

    if (!*s || strlen(s) > 20)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > limit)
        return -1;
    *out = v;
    return 0;
}

size_t xsd_parent_len(const char *path, size_t plen)
{
    if (plen <= 1)
        return 0;
    while (plen > 1 && path[plen - 1] != '/')
        plen--;
    return plen == 1 ? 1 : plen - 1;
}

/* Is child (clen) at or below parent (plen)? */
bool xsd_is_child(const char *child, size_t clen, const char *parent,
                  size_t plen)
{
    if (plen == 1 && parent[0] == '/')
        return child[0] == '/';
    return clen >= plen && !memcmp(child, parent, plen) &&
           (clen == plen || child[plen] == '/');
}

static bool valid_chars(const char *s, size_t n)
{
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "abcdefghijklmnopqrstuvwxyz"
                             "0123456789-/_@";

    return strspn(s, ok) == n;
}

bool xsd_path_ok(const char *path, size_t len)
{
    if (path[0] == '@')
        return valid_chars(path, len);
    return len && path[0] == '/' && valid_chars(path, len) &&
           (len == 1 || path[len - 1] != '/') && !strstr(path, "//");
}

/*
 * Makes in (NUL-terminated) an absolute path in buf: relative paths are
 * below the connection's /local/domain/<id>.  Checks Xen's rules: legal
 * characters, no "//", no trailing "/", at most 2048 characters past
 * /local/domain/<id>/ and 3072 in all.  '@' paths only where special.
 * Returns the length, or -EINVAL.
 */
static int canon(const struct xsd_req *r, const char *in, bool special,
                 char *buf)
{
    const struct xsd_conn *c = r->c;
    size_t n = strlen(in), len, local = 0;

    if (!n || !valid_chars(in, n) || (in[0] == '@' && !special))
        return -EINVAL;
    if (in[0] == '/' || in[0] == '@') {
        if (n > XENSTORE_ABS_PATH_MAX)
            return -EINVAL;
        memcpy(buf, in, n + 1);
        len = n;
    } else {
        if (c->prefix_len + 1 + n > XENSTORE_ABS_PATH_MAX)
            return -EINVAL;
        memcpy(buf, c->prefix, c->prefix_len);
        buf[c->prefix_len] = '/';
        memcpy(buf + c->prefix_len + 1, in, n + 1);
        len = c->prefix_len + 1 + n;
    }
    if (buf[0] == '@')
        return (int)len;
    if ((len > 1 && buf[len - 1] == '/') || strstr(buf, "//"))
        return -EINVAL;
    if (!strncmp(buf, "/local/domain/", 14)) {
        size_t d = strspn(buf + 14, "0123456789");

        if (d >= 1 && d <= 5 && buf[14 + d] == '/')
            local = 14 + d + 1;
    }
    if (len - local > XENSTORE_REL_PATH_MAX)
        return -EINVAL;
    return (int)len;
}

/* ---- permissions and quotas --------------------------------------------- */

unsigned int xsd_perm_for(const struct xsd_conn *c, const struct xsd_perms *ps)
{
    const unsigned int all = XSD_PERM_READ | XSD_PERM_WRITE | XSD_PERM_OWNER;
    bool tgt = c->dom && c->dom->has_target;
    uint32_t t = tgt ? c->dom->target : 0;

    if (c->priv || ps->p[0].id == c->domid || (tgt && ps->p[0].id == t))
        return all;
    for (uint32_t i = 1; i < ps->num; i++)
        if (!(ps->p[i].perm & XSD_PERM_IGNORE) &&
            (ps->p[i].id == c->domid || (tgt && ps->p[i].id == t)))
            return ps->p[i].perm;
    return ps->p[0].perm & all;
}

static unsigned int need_perms(const struct xsd_req *r)
{
    return r->c->priv ? 0 : XSD_NEED_PERMS;
}

/*
 * The nearest existing ancestor of path: its length goes to *alen and what
 * it looks like to nv.  Returns 0 or an errno.
 */
static int ancestor(struct xsd_req *r, const char *path, size_t plen,
                    unsigned int need, size_t *alen, struct xsd_nv *nv)
{
    size_t len = plen;
    int err;

    do {
        len = xsd_parent_len(path, len);
        if (!len)
            return EINVAL;
        err = xsd_view_get(r, path, len, need, nv);
        if (err)
            return err;
    } while (!nv->exists);
    *alen = len;
    return 0;
}

/*
 * Xen's rule for unprivileged clients: an error about a node becomes
 * EACCES unless its nearest existing ancestor grants perm, so that what
 * exists is not revealed.
 */
static int hide(struct xsd_req *r, const char *path, size_t plen, int err,
                unsigned int perm)
{
    struct xsd_nv nv;
    size_t alen;
    int e;

    if (r->c->priv || path[0] != '/' || plen <= 1)
        return err;
    e = ancestor(r, path, plen, XSD_NEED_PERMS | XSD_NEED_EXISTS, &alen, &nv);
    if (e)
        return e;
    return (xsd_perm_for(r->c, nv.perms) & perm) ? err : EACCES;
}

/* Checks a node for the request: ENOENT, EACCES (hidden as above) or 0. */
static int get_checked(struct xsd_req *r, const char *path, size_t plen,
                       unsigned int need, unsigned int perm, struct xsd_nv *nv)
{
    int err =
        xsd_view_get(r, path, plen, need | need_perms(r) | XSD_NEED_EXISTS, nv);

    if (err)
        return err;
    if (!nv->exists)
        return hide(r, path, plen, ENOENT, perm);
    if ((xsd_perm_for(r->c, nv->perms) & perm) != perm)
        return EACCES;
    return 0;
}

static bool quota_free(const struct xsd_req *r)
{
    return r->c->priv || r->replay;
}

/* ENOSPC if the client's domain would own more nodes than it may. */
static int quota_nodes(const struct xsd_req *r, uint32_t add)
{
    uint64_t have;

    if (quota_free(r))
        return 0;
    have = (uint64_t)r->c->dom->nodes + (r->t ? r->t->created : 0) + add;
    return have > r->c->x->cfg.quota[XSD_Q_NODES] ? ENOSPC : 0;
}

/* ENOMEM (Xen's answer) if the domain would hold too many bytes. */
static int quota_mem(const struct xsd_req *r, uint64_t add)
{
    if (quota_free(r))
        return 0;
    return r->c->dom->mem + add > r->c->x->cfg.quota[XSD_Q_MEMORY] ? ENOMEM : 0;
}

/* ENOSPC if a node's value and permissions exceed the node size quota. */
static int quota_size(const struct xsd_req *r, uint32_t vlen, uint32_t nperms)
{
    if (quota_free(r))
        return 0;
    return vlen + nperms * sizeof(struct xsd_perm) >
                   r->c->x->cfg.quota[XSD_Q_NODE_SIZE]
               ? ENOSPC
               : 0;
}

/* ---- replies ------------------------------------------------------------ */

int xsd_reply(struct xsd_req *r, uint32_t type, const void *data, uint32_t len)
{
    if (r->replay)
        return 0;
    if (len > XENSTORE_PAYLOAD_MAX)
        return E2BIG;
    if (xsd_conn_send(r->c, type, r->req_id, r->tx_id, data, len, false))
        xsd_conn_kill(r->c, "out of memory for a reply");
    return 0;
}

static int ack(struct xsd_req *r)
{
    return xsd_reply(r, r->type, "OK", 3);
}

const char *xsd_errstr(int err)
{
    for (size_t i = 0; i < XTK__ARRAY_SIZE(xsd_errors); i++)
        if (xsd_errors[i].errnum == err)
            return xsd_errors[i].errstring;
    return "EINVAL";
}

/* ---- handlers ----------------------------------------------------------- */

/* The payload's single path, made absolute in path: its length, or -errno. */
static int one_path(const struct xsd_req *r, bool special, char *path)
{
    const char *arg = onearg(r);

    return arg ? canon(r, arg, special, path) : -EINVAL;
}

static int do_read(struct xsd_req *r)
{
    char path[XSD_PATH_BUF];
    struct xsd_nv nv;
    int len, err;

    if ((len = one_path(r, false, path)) < 0)
        return -len;
    err = get_checked(r, path, (size_t)len, XSD_NEED_VALUE, XSD_PERM_READ, &nv);
    if (err)
        return err;
    return xsd_reply(r, XS_READ, nv.value, nv.vlen);
}

/* Creates path (absent) with value: permission to write the nearest
 * existing ancestor, quotas, then the view. */
static int create(struct xsd_req *r, const char *path, size_t plen,
                  const char *v, uint32_t vlen)
{
    struct xsd_nv anv;
    size_t alen;
    uint32_t levels = 0;
    int err;

    err = ancestor(r, path, plen, need_perms(r), &alen, &anv);
    if (err)
        return err;
    if (!(xsd_perm_for(r->c, anv.perms) & XSD_PERM_WRITE))
        return EACCES;
    for (size_t i = alen == 1 ? 0 : alen; i < plen; i++)
        levels += path[i] == '/';
    if ((err = quota_nodes(r, levels)) ||
        (err = quota_size(r, vlen, anv.perms->num)) ||
        (err = quota_mem(r, plen * levels + vlen)))
        return err;
    return xsd_view_create(r, path, plen, alen, anv.perms, v, vlen);
}

/*
 * The node a WRITE or MKDIR is about.  For a privileged client whose answer
 * is OK either way, an absent node is only probed (txn.c); a present one
 * is relied on, since the transaction's view rests on it from now on.
 */
static int target(struct xsd_req *r, const char *path, size_t plen,
                  struct xsd_nv *nv)
{
    int err = xsd_view_get(r, path, plen, need_perms(r), nv);

    if (!err && nv->exists && r->c->priv)
        err = xsd_view_get(r, path, plen, XSD_NEED_EXISTS, nv);
    return err;
}

static int do_write(struct xsd_req *r)
{
    const char *nul = memchr(r->p, '\0', r->len);
    char path[XSD_PATH_BUF];
    const char *v;
    uint32_t vlen;
    struct xsd_nv nv;
    int len, err;

    if (!nul)
        return EINVAL;
    if ((len = canon(r, r->p, false, path)) < 0)
        return -len;
    v = nul + 1;
    vlen = r->len - (uint32_t)(v - r->p);
    if ((err = target(r, path, (size_t)len, &nv)))
        return err;
    if (nv.exists) {
        if (!(xsd_perm_for(r->c, nv.perms) & XSD_PERM_WRITE))
            return EACCES;
        if ((err = quota_size(r, vlen, nv.perms->num)) ||
            (err = quota_mem(r, vlen)))
            return err;
        err = xsd_view_set_value(r, path, (size_t)len, v, vlen);
    } else {
        err = create(r, path, (size_t)len, v, vlen);
    }
    return err ? err : ack(r);
}

static int do_mkdir(struct xsd_req *r)
{
    char path[XSD_PATH_BUF];
    struct xsd_nv nv;
    int len, err;

    if ((len = one_path(r, false, path)) < 0)
        return -len;
    if ((err = target(r, path, (size_t)len, &nv)))
        return err;
    if (nv.exists) {
        if (!(xsd_perm_for(r->c, nv.perms) & XSD_PERM_WRITE))
            return EACCES;
    } else if ((err = create(r, path, (size_t)len, NULL, 0))) {
        return err;
    }
    return ack(r);
}

static int do_rm(struct xsd_req *r)
{
    char path[XSD_PATH_BUF];
    struct xsd_nv nv;
    int len, err;

    if ((len = one_path(r, false, path)) < 0)
        return -len;
    err = xsd_view_get(r, path, (size_t)len, XSD_NEED_EXISTS | need_perms(r),
                       &nv);
    if (err)
        return err;
    if (!nv.exists) {
        size_t plen = xsd_parent_len(path, (size_t)len);

        if ((err = hide(r, path, (size_t)len, ENOENT, XSD_PERM_WRITE)) !=
            ENOENT)
            return err;
        err = xsd_view_get(r, path, plen, XSD_NEED_EXISTS, &nv);
        if (err)
            return err;
        return nv.exists ? ack(r) : ENOENT;
    }
    if (!(xsd_perm_for(r->c, nv.perms) & XSD_PERM_WRITE))
        return EACCES;
    if (len == 1)
        return EINVAL;
    err = xsd_view_rm(r, path, (size_t)len);
    return err ? err : ack(r);
}

struct dir_buf {
    char *buf;
    size_t len, cap; /* cap 0: only count */
    uint64_t skip;   /* DIRECTORY_PART: bytes of the list to skip */
    bool full;
};

static int dir_add(const char *name, size_t n, void *arg)
{
    struct dir_buf *d = arg;

    if (d->skip) {
        if (d->skip >= n + 1) {
            d->skip -= n + 1;
            return 0;
        }
        name += d->skip;
        n -= d->skip;
        d->skip = 0;
    }
    if (d->len + n + 1 > d->cap) {
        d->full = true;
        return 1;
    }
    memcpy(d->buf + d->len, name, n);
    d->buf[d->len + n] = '\0';
    d->len += n + 1;
    return 0;
}

static int do_directory(struct xsd_req *r)
{
    char path[XSD_PATH_BUF];
    struct dir_buf d = {r->c->x->scratch, 0, XENSTORE_PAYLOAD_MAX, 0, false};
    struct xsd_nv nv;
    uint64_t gen;
    int len, err;

    if ((len = one_path(r, false, path)) < 0)
        return -len;
    err = get_checked(r, path, (size_t)len, 0, XSD_PERM_READ, &nv);
    if (!err)
        err = xsd_view_children(r, path, (size_t)len, &gen, dir_add, &d);
    if (err)
        return err;
    if (d.full)
        return E2BIG;
    return xsd_reply(r, XS_DIRECTORY, d.buf, (uint32_t)d.len);
}

/*
 * DIRECTORY_PART path\0offset\0: "gen\0" then the children from byte
 * offset of the NUL-separated list, as many as fit; an extra "\0" marks
 * the last chunk.  gen changes whenever the list does.
 */
static int do_directory_part(struct xsd_req *r)
{
    const char *v[2];
    char path[XSD_PATH_BUF];
    char *buf = r->c->x->scratch;
    struct xsd_nv nv;
    struct dir_buf d;
    uint64_t off, gen;
    int len, err, glen;

    if (strings(r, v, 2) != 2 || dec(v[1], UINT32_MAX, &off))
        return EINVAL;
    if ((len = canon(r, v[0], false, path)) < 0)
        return -len;
    err = get_checked(r, path, (size_t)len, 0, XSD_PERM_READ, &nv);
    if (err)
        return err;
    /* Room for the generation; filled in once the children are read. */
    d = (struct dir_buf){buf + 24, 0, XENSTORE_PAYLOAD_MAX - 24 - 1, off,
                         false};
    err = xsd_view_children(r, path, (size_t)len, &gen, dir_add, &d);
    if (err)
        return err;
    glen = snprintf(buf, 24, "%" PRIu64, gen) + 1;
    memmove(buf + glen, buf + 24, d.len);
    if (!d.full)
        buf[glen + d.len++] = '\0';
    return xsd_reply(r, XS_DIRECTORY_PART, buf, (uint32_t)(glen + d.len));
}

static int do_get_perms(struct xsd_req *r)
{
    char path[XSD_PATH_BUF], out[XENSTORE_PAYLOAD_MAX];
    struct xsd_nv nv;
    int len, err;

    if ((len = one_path(r, true, path)) < 0)
        return -len;
    err = get_checked(r, path, (size_t)len, XSD_NEED_PERMS, XSD_PERM_READ, &nv);
    if (err)
        return err;
    return xsd_reply(r, XS_GET_PERMS, out,
                     (uint32_t)xsd_perms_format(nv.perms, out, sizeof(out)));
}

/*
 * The domains a new permission list names, as Xen 4.17's xenstored checks
 * them (domain_alloc_permrefs), for privileged and unprivileged clients
 * alike: an owner that does not exist is ENOENT; another entry naming one
 * is kept but ignored (XSD_PERM_IGNORE), so that a domain created later
 * with that id does not inherit it.  A transaction's request replayed at
 * commit took this check when it was made; an owner that died since goes
 * to dom0, as the death would have given it.
 */
static int perms_domains(struct xsd_req *r, struct xsd_perm *p, uint32_t n)
{
    struct xsd *x = r->c->x;

    if (!xsd_domain_exists(x, p[0].id)) {
        if (!r->replay)
            return ENOENT;
        p[0].id = 0;
    }
    for (uint32_t i = 1; i < n; i++)
        if (!xsd_domain_exists(x, p[i].id))
            p[i].perm |= XSD_PERM_IGNORE;
    return 0;
}

static int do_set_perms(struct xsd_req *r)
{
    const char *v[1];
    char path[XSD_PATH_BUF];
    struct xsd_perm p[XENSTORE_PAYLOAD_MAX / 3];
    struct xsd_perms *ps;
    struct xsd_nv nv;
    int n = strings(r, v, 1), len, err;
    const char *pstr;

    if (n < 2)
        return EINVAL;
    n--;
    if (!r->c->priv && (uint32_t)n > r->c->x->cfg.quota[XSD_Q_PERMS])
        return ENOSPC;
    pstr = r->p + strlen(r->p) + 1;
    if (xsd_perms_parse(pstr, r->len - (size_t)(pstr - r->p), p, (uint32_t)n))
        return EINVAL;
    if ((err = perms_domains(r, p, (uint32_t)n)))
        return err;
    if ((len = canon(r, r->p, true, path)) < 0)
        return -len;
    err = get_checked(r, path, (size_t)len, XSD_NEED_PERMS,
                      XSD_PERM_WRITE | XSD_PERM_OWNER, &nv);
    if (err)
        return err;
    if (!r->c->priv && p[0].id != nv.perms->p[0].id)
        return EPERM;
    if ((err = quota_size(r, nv.vlen, (uint32_t)n)))
        return err;
    ps = xsd_perms_get(r->c->x, p, (uint32_t)n);
    if (!ps)
        return ENOMEM;
    err = xsd_view_set_perms(r, path, (size_t)len, ps);
    xsd_perms_put(r->c->x, ps);
    return err ? err : ack(r);
}

static int do_watch(struct xsd_req *r)
{
    const char *v[2];
    char path[XSD_PATH_BUF];
    bool relative;
    int len, err;

    if (strings(r, v, 2) != 2)
        return EINVAL;
    if ((len = canon(r, v[0], true, path)) < 0)
        return -len;
    relative = v[0][0] != '/' && v[0][0] != '@';
    err = xsd_watch_add(r->c, path, (size_t)len, v[1], relative);
    if (err)
        return err;
    ack(r);
    /* The initial event, so clients need no special case at start. */
    xsd_conn_event(r->c, v[0], strlen(v[0]), v[1], strlen(v[1]));
    return 0;
}

static int do_unwatch(struct xsd_req *r)
{
    const char *v[2];
    char path[XSD_PATH_BUF];
    int len, err;

    if (strings(r, v, 2) != 2)
        return EINVAL;
    if ((len = canon(r, v[0], true, path)) < 0)
        return -len;
    err = xsd_watch_del(r->c, path, (size_t)len, v[1]);
    return err ? err : ack(r);
}

static int do_transaction_start(struct xsd_req *r)
{
    struct xsd_txn *t;
    char id[16];

    if (r->t)
        return EBUSY;
    if (!r->c->priv && r->c->dom->txns >= r->c->x->cfg.quota[XSD_Q_TXNS])
        return ENOSPC;
    t = xsd_txn_new(r->c);
    if (!t)
        return ENOMEM;
    return xsd_reply(r, XS_TRANSACTION_START, id,
                     (uint32_t)snprintf(id, sizeof(id), "%u", t->id) + 1);
}

static int do_transaction_end(struct xsd_req *r)
{
    const char *arg = onearg(r);
    int err;

    if (!arg || (strcmp(arg, "T") && strcmp(arg, "F")))
        return EINVAL;
    if (!r->t)
        return ENOENT;
    if (arg[0] == 'F') {
        xsd_txn_free(r->t);
        r->t = NULL;
        return ack(r);
    }
    err = xsd_txn_commit(r->t);
    r->t = NULL;
    return err ? err : ack(r);
}

static int domid_arg(const char *s, uint32_t *domid)
{
    uint64_t v;

    if (!s || dec(s, UINT32_MAX, &v))
        return EINVAL;
    *domid = (uint32_t)v;
    return 0;
}

static int do_introduce(struct xsd_req *r)
{
    const char *v[3];
    uint64_t domid, gfn, port;
    int nfds = r->c->msg_fds ? r->c->nfds : 0;
    int err = 0;

    if (strings(r, v, 3) < 3 || dec(v[0], UINT32_MAX, &domid) ||
        dec(v[1], UINT64_MAX, &gfn) || dec(v[2], UINT32_MAX, &port))
        err = EINVAL;
    else if (nfds < 0)
        err = EINVAL; /* a truncated or misplaced set of descriptors */
    if (err) {
        xsd_conn_close_fds(r->c);
        return err;
    }
    r->c->nfds = 0; /* the domain code owns them now */
    err = xsd_domain_introduce(r, (uint32_t)domid, gfn, (uint32_t)port,
                               r->c->fds, nfds);
    return err ? err : ack(r);
}

static int do_release(struct xsd_req *r)
{
    uint32_t domid;
    int err = domid_arg(onearg(r), &domid);

    if (err)
        return err;
    if (domid == 0)
        return EINVAL;
    err = xsd_domain_release(r->c->x, domid, XSD_DOM_RELEASED);
    return err ? err : ack(r);
}

static int do_get_domain_path(struct xsd_req *r)
{
    char path[32];
    uint32_t domid;
    int err = domid_arg(onearg(r), &domid);

    if (err)
        return err;
    return xsd_reply(
        r, XS_GET_DOMAIN_PATH, path,
        (uint32_t)snprintf(path, sizeof(path), "/local/domain/%u", domid) + 1);
}

static int do_is_domain_introduced(struct xsd_req *r)
{
    uint32_t domid;
    int err = domid_arg(onearg(r), &domid);
    struct xsd_dom *d;
    bool yes;

    if (err)
        return err;
    d = xsd_domain_find(r->c->x, domid);
    yes = domid == 0 || domid == XSD_DOMID_SELF || d;
    return xsd_reply(r, XS_IS_DOMAIN_INTRODUCED, yes ? "T" : "F", 2);
}

/* The introduced domain named by the payload; dom0 is EINVAL. */
static int onearg_domain(struct xsd_req *r, struct xsd_dom **d)
{
    uint32_t domid;
    int err = domid_arg(onearg(r), &domid);

    if (err)
        return err;
    if (domid == 0)
        return EINVAL;
    *d = xsd_domain_find(r->c->x, domid);
    return *d ? 0 : ENOENT;
}

static int do_resume(struct xsd_req *r)
{
    struct xsd_dom *d;
    int err = onearg_domain(r, &d);

    if (err)
        return err;
    d->shutdown = false;
    return ack(r);
}

static int do_set_target(struct xsd_req *r)
{
    const char *v[2];
    uint32_t domid, tdomid;
    struct xsd_dom *d;

    if (strings(r, v, 2) != 2 || domid_arg(v[0], &domid) ||
        domid_arg(v[1], &tdomid))
        return EINVAL;
    d = xsd_domain_find(r->c->x, domid);
    if (!d || !xsd_domain_find(r->c->x, tdomid))
        return ENOENT;
    d->target = tdomid;
    d->has_target = true;
    return ack(r);
}

static int do_reset_watches(struct xsd_req *r)
{
    xsd_watch_del_all(r->c);
    xsd_txn_free_all(r->c);
    return ack(r);
}

static const struct {
    const char *name;
    int (*fn)(struct xsd_req *r);
    unsigned int flags;
} ops[XS_TYPE_COUNT] = {
    [XS_CONTROL] = {"CONTROL", xsd_control, F_PRIV | F_WRITE},
    [XS_DIRECTORY] = {"DIRECTORY", do_directory, F_TXN},
    [XS_READ] = {"READ", do_read, F_TXN},
    [XS_GET_PERMS] = {"GET_PERMS", do_get_perms, F_TXN},
    [XS_WATCH] = {"WATCH", do_watch, F_NOTID},
    [XS_UNWATCH] = {"UNWATCH", do_unwatch, F_NOTID},
    [XS_TRANSACTION_START] = {"TRANSACTION_START", do_transaction_start, F_TXN},
    [XS_TRANSACTION_END] = {"TRANSACTION_END", do_transaction_end, F_TXN},
    [XS_INTRODUCE] = {"INTRODUCE", do_introduce, F_PRIV | F_WRITE},
    [XS_RELEASE] = {"RELEASE", do_release, F_PRIV | F_WRITE},
    [XS_GET_DOMAIN_PATH] = {"GET_DOMAIN_PATH", do_get_domain_path, 0},
    [XS_WRITE] = {"WRITE", do_write, F_WRITE | F_TXN},
    [XS_MKDIR] = {"MKDIR", do_mkdir, F_WRITE | F_TXN},
    [XS_RM] = {"RM", do_rm, F_WRITE | F_TXN},
    [XS_SET_PERMS] = {"SET_PERMS", do_set_perms, F_WRITE | F_TXN},
    [XS_WATCH_EVENT] = {"WATCH_EVENT", NULL, 0},
    [XS_ERROR] = {"ERROR", NULL, 0},
    [XS_IS_DOMAIN_INTRODUCED] = {"IS_DOMAIN_INTRODUCED",
                                 do_is_domain_introduced, F_PRIV},
    [XS_RESUME] = {"RESUME", do_resume, F_PRIV | F_WRITE},
    [XS_SET_TARGET] = {"SET_TARGET", do_set_target, F_PRIV | F_WRITE},
    [XS_RESET_WATCHES] = {"RESET_WATCHES", do_reset_watches, 0},
    [XS_DIRECTORY_PART] = {"DIRECTORY_PART", do_directory_part, F_TXN},
};

const char *xsd_type_name(uint32_t type)
{
    if (type < XS_TYPE_COUNT && ops[type].name)
        return ops[type].name;
    return "UNKNOWN";
}

/*
 * Runs one request: type, privilege and transaction checks, then its
 * handler.  A modifying request inside a transaction is logged for replay
 * at commit.  Returns 0 (replied) or the errno to send.
 */
int xsd_handle(struct xsd_req *r)
{
    unsigned int flags;
    struct xsd_txn *t = NULL;
    int err;

    if (r->type >= XS_TYPE_COUNT || !ops[r->type].fn)
        return ENOSYS;
    flags = ops[r->type].flags;
    if ((flags & F_PRIV) && !r->c->priv)
        return EACCES;
    if ((flags & F_WRITE) && r->c->ro)
        return EROFS;
    if (!(flags & F_NOTID) && r->tx_id) {
        t = xsd_txn_find(r->c, r->tx_id);
        if (!t)
            return ENOENT;
    }
    r->t = (flags & F_TXN) ? t : NULL;
    err = ops[r->type].fn(r);
    if (!err && r->t && (flags & F_WRITE) && xsd_txn_log(r->t, r))
        r->t->failed = true;
    return err;
}

void xsd_dispatch(struct xsd_conn *c, const struct xsd_sockmsg *hdr,
                  const char *payload)
{
    struct xsd_req r = {
        .c = c,
        .type = hdr->type,
        .req_id = hdr->req_id,
        .tx_id = hdr->tx_id,
        .p = payload,
        .len = hdr->len,
    };
    int err;

    c->x->stat_requests++;
    err = xsd_handle(&r);
    if (err) {
        const char *s = xsd_errstr(err);

        XTK_DEBUG(c->x->ctx, "connection %u: %s: %s", c->id,
                  xsd_type_name(hdr->type), s);
        if (xsd_conn_send(c, XS_ERROR, r.req_id, r.tx_id, s,
                          (uint32_t)strlen(s) + 1, false))
            xsd_conn_kill(c, "out of memory for a reply");
    }
}
