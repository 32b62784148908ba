/*
 * control.c - CONTROL (xenstore-control): "cmd\0arg\0...", privileged.
 *
 *   help                      the commands
 *   log [LEVEL]               show or set the log level
 *   print TEXT...             write TEXT to the log
 *   quota                     the quotas; quota DOMID: a domain's use;
 *   quota set NAME VALUE      change a quota
 *   tree [PATH [FILE]]        the tree below PATH; to FILE, any size (a
 *                             reply is one message: E2BIG over 4096 bytes)
 *   save [FILE]               write the store to FILE (or the state file)
 *   connections, domains, stats
 */
#include "config.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd-control"
#define MAX_ARGS 16

int xsd_log_level = XTK_LOG_INFO;
const char *xsd_state_file;

/*
 * A reply being built; overflow turns into E2BIG.  With fp, the text goes
 * to that file instead, without a bound (len counts the bytes, over is a
 * write error).
 */
struct text {
    char *buf;
    size_t len;
    bool over;
    FILE *fp;
    uint64_t lines;
};

static void __attribute__((format(printf, 2, 3)))
put(struct text *t, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (t->over)
        return;
    va_start(ap, fmt);
    if (t->fp) {
        n = vfprintf(t->fp, fmt, ap);
        va_end(ap);
        if (n < 0)
            t->over = true;
        else
            t->len += (size_t)n;
        return;
    }
    n = vsnprintf(t->buf + t->len, XENSTORE_PAYLOAD_MAX - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || t->len + (size_t)n >= XENSTORE_PAYLOAD_MAX)
        t->over = true;
    else
        t->len += (size_t)n;
}

static int send_text(struct xsd_req *r, struct text *t)
{
    if (t->over)
        return E2BIG;
    if (t->len && t->buf[t->len - 1] == '\n')
        t->buf[--t->len] = '\0'; /* xenstore-control adds its own */
    return xsd_reply(r, XS_CONTROL, t->buf, (uint32_t)t->len + 1);
}

static int c_help(struct xsd_req *r, int argc, const char **argv,
                  struct text *t);

static int c_log(struct xsd_req *r, int argc, const char **argv, struct text *t)
{
    int l;

    if (argc > 1) {
        l = xtk_log_level_from_name(argv[1]);
        if (l < 0)
            return EINVAL;
        xsd_log_level = l;
    }
    put(t, "%s\n", xtk_log_level_name(xsd_log_level));
    return send_text(r, t);
}

static int c_print(struct xsd_req *r, int argc, const char **argv,
                   struct text *t)
{
    char line[XENSTORE_PAYLOAD_MAX];
    size_t n = 0;

    for (int i = 1; i < argc && n < sizeof(line); i++)
        n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s",
                              i > 1 ? " " : "", argv[i]);
    line[n < sizeof(line) ? n : sizeof(line) - 1] = '\0';
    XTK_INFO(r->c->x->ctx, "%s", line);
    put(t, "OK");
    return send_text(r, t);
}

static int c_quota(struct xsd_req *r, int argc, const char **argv,
                   struct text *t)
{
    struct xsd *x = r->c->x;
    struct xsd_dom *d;
    char *end;
    unsigned long v;
    int q;

    if (argc == 4 && !strcmp(argv[1], "set")) {
        q = xsd_quota_from_name(argv[2]);
        v = strtoul(argv[3], &end, 10);
        if (q < 0 || *end || !*argv[3] || v > UINT32_MAX)
            return EINVAL;
        x->cfg.quota[q] = (uint32_t)v;
        put(t, "%s %u\n", xsd_quota_names[q], x->cfg.quota[q]);
        return send_text(r, t);
    }
    if (argc == 1) {
        for (q = 0; q < XSD_Q_COUNT; q++)
            put(t, "%-18s %u\n", xsd_quota_names[q], x->cfg.quota[q]);
        put(t, "%-18s %u\n", "watch-queue", x->cfg.watch_queue_max);
        return send_text(r, t);
    }
    if (argc != 2)
        return EINVAL;
    v = strtoul(argv[1], &end, 10);
    if (*end || !*argv[1] || v > UINT32_MAX)
        return EINVAL;
    d = xsd_dom_get(x, (uint32_t)v, false);
    if (!d)
        return ENOENT;
    put(t, "Domain %u:\n", d->domid);
    put(t, "%-13s %8u\n", "nodes", d->nodes);
    put(t, "%-13s %8u\n", "watches", d->watches);
    put(t, "%-13s %8u\n", "transactions", d->txns);
    put(t, "%-13s %8u\n", "outstanding", d->conn ? d->conn->out_replies : 0);
    put(t, "%-13s %8" PRIu64 "\n", "memory", d->mem);
    return send_text(r, t);
}

static bool plain(unsigned char ch)
{
    return ch >= 0x20 && ch < 0x7f && ch != '"' && ch != '\\';
}

/* A value with quotes, backslashes and unprintable bytes as \xNN. */
static void escape(struct text *t, const char *v, uint32_t n)
{
    for (uint32_t i = 0, run; i < n && !t->over; i += run) {
        for (run = 0; i + run < n && plain((unsigned char)v[i + run]); run++)
            ;
        if (run) {
            put(t, "%.*s", (int)run, v + i);
        } else {
            put(t, "\\x%02x", (unsigned char)v[i]);
            run = 1;
        }
    }
}

static int tree_line(struct xsd_node *n, int depth, void *arg)
{
    struct text *t = arg;
    char perms[256];
    size_t pl = xsd_perms_format(n->perms, perms, sizeof(perms));

    for (size_t i = 0; i + 1 < pl; i++)
        if (!perms[i])
            perms[i] = ',';
    put(t, "%s = \"", n->path);
    escape(t, xsd_node_value(n), n->vlen);
    put(t, "\" (%s)\n", pl ? perms : "");
    t->lines++;
    return t->over;
}

/*
 * tree [PATH [FILE]].  A reply is one message, so a dump over 4096 bytes
 * is E2BIG; with FILE the daemon writes it there, whatever its size, and
 * says how much it wrote (as C xenstored's memreport FILE does).
 */
static int c_tree(struct xsd_req *r, int argc, const char **argv,
                  struct text *t)
{
    struct xsd *x = r->c->x;
    const char *path = argc > 1 ? argv[1] : "/";
    const char *file = argc > 2 ? argv[2] : NULL;
    struct xsd_node *n = xsd_find(x, path, strlen(path));
    struct text ft = {0};

    if (argc > 3 || (file && !*file))
        return EINVAL;
    if (!n)
        return ENOENT;
    if (!file) {
        xsd_walk(n, tree_line, t);
        return send_text(r, t);
    }
    if (x->cfg.no_files)
        return EACCES;
    ft.fp = fopen(file, "we");
    if (!ft.fp) {
        XTK_PERROR(x->ctx, "writing the tree to %s", file);
        return EIO;
    }
    xsd_walk(n, tree_line, &ft);
    if (ferror(ft.fp))
        ft.over = true;
    if (fclose(ft.fp) || ft.over) {
        XTK_PERROR(x->ctx, "writing the tree to %s", file);
        return EIO;
    }
    put(t, "wrote %" PRIu64 " nodes (%zu bytes) to %s\n", ft.lines, ft.len,
        file);
    return send_text(r, t);
}

static int c_save(struct xsd_req *r, int argc, const char **argv,
                  struct text *t)
{
    const char *file = argc > 1 ? argv[1] : xsd_state_file;

    if (argc > 2 || !file)
        return EINVAL;
    if (r->c->x->cfg.no_files)
        return EACCES;
    if (xsd_state_save(r->c->x, file)) {
        XTK_PERROR(r->c->x->ctx, "saving the store to %s", file);
        return EIO;
    }
    put(t, "saved %" PRIu64 " nodes to %s\n", r->c->x->nodes.n, file);
    return send_text(r, t);
}

static int c_connections(struct xsd_req *r, int argc, const char **argv,
                         struct text *t)
{
    put(t, "id kind domid mode watches transactions replies events dropped\n");
    for (struct xsd_conn *c = r->c->x->conns; c; c = c->next)
        put(t, "%u %s %u %s %u %u %u %u %" PRIu64 "\n", c->id, c->tp->name,
            c->domid,
            c->failed ? "failed"
            : c->ro   ? "ro"
            : c->priv ? "priv"
                      : "guest",
            c->nwatches, c->ntxns, c->out_replies, c->out_events,
            c->events_dropped);
    return send_text(r, t);
}

static int c_domains(struct xsd_req *r, int argc, const char **argv,
                     struct text *t)
{
    struct xsd *x = r->c->x;

    put(t, "domid kind gfn port introducer nodes memory\n");
    for (uint32_t i = 0; i < x->ndbuckets; i++)
        for (struct xsd_dom *d = x->dbuckets[i]; d; d = d->hnext)
            if (d->conn)
                put(t, "%u %s %" PRIu64 " %u %u %u %" PRIu64 "\n", d->domid,
                    d->kind, d->gfn, d->port,
                    d->introducer ? d->introducer->id : 0, d->nodes, d->mem);
    return send_text(r, t);
}

static int c_stats(struct xsd_req *r, int argc, const char **argv,
                   struct text *t)
{
    struct xsd *x = r->c->x;

    put(t, "nodes %" PRIu64 "\n", x->nodes.n);
    put(t, "permission-sets %" PRIu64 "\n", x->nperms);
    put(t, "watches %" PRIu64 "\n", x->nwatches);
    put(t, "connections %u\n", x->nconns);
    put(t, "generation %" PRIu64 "\n", x->gen);
    put(t, "requests %" PRIu64 "\n", x->stat_requests);
    put(t, "commits %" PRIu64 "\n", x->stat_commits);
    put(t, "conflicts %" PRIu64 "\n", x->stat_conflicts);
    return send_text(r, t);
}

static const struct {
    const char *name;
    int (*fn)(struct xsd_req *r, int argc, const char **argv, struct text *t);
    const char *usage;
} cmds[] = {
    {"help", c_help, ""},
    {"log", c_log, "[debug|info|notice|warning|error]"},
    {"print", c_print, "<text>"},
    {"quota", c_quota, "[<domid>|set <name> <value>]"},
    {"tree", c_tree, "[<path> [<file>]]"},
    {"save", c_save, "[<file>]"},
    {"connections", c_connections, ""},
    {"domains", c_domains, ""},
    {"stats", c_stats, ""},
};

static int c_help(struct xsd_req *r, int argc, const char **argv,
                  struct text *t)
{
    put(t, "Valid commands:\n");
    for (size_t i = 0; i < XTK__ARRAY_SIZE(cmds); i++)
        put(t, "%-12s %s\n", cmds[i].name, cmds[i].usage);
    return send_text(r, t);
}

int xsd_control(struct xsd_req *r)
{
    const char *argv[MAX_ARGS] = {NULL};
    struct text t = {.buf = r->c->x->scratch};
    int argc = 0;

    if (!r->len || r->p[r->len - 1] != '\0')
        return EINVAL;
    for (const char *s = r->p; s < r->p + r->len && argc < MAX_ARGS;
         s += strlen(s) + 1)
        argv[argc++] = s;
    for (size_t i = 0; i < XTK__ARRAY_SIZE(cmds); i++)
        if (!strcmp(argv[0], cmds[i].name))
            return cmds[i].fn(r, argc, argv, &t);
    return EINVAL;
}
