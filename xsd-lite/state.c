/*
 * state.c - the store on disk, so that a restart (an upgrade) loses
 * nothing: `xenstore-control save` or SIGTERM writes it, `xsd-lite -S FILE`
 * loads it at start.  Connections, watches, transactions and guest rings
 * are not part of it: clients reconnect and introducers introduce again.
 *
 * Format (binary-safe; values may hold any byte):
 *   "xsd-lite state 1\n"
 *   per node, parents first, then @introduceDomain and @releaseDomain:
 *     "N <path-len> <value-len> <perms-len>\n" path value perms "\n"
 *     (perms as on the wire: "r5\0w0\0", except that an entry ignored
 *     because its domain did not exist when it was set has its letter in
 *     upper case, "R7", so that it stays ignored; see xsd-lite(8))
 *   "E <node-count>\n"
 * The file is written beside the target and renamed over it; a target
 * that exists and is not a regular file is refused.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd-state"
#define MAGIC "xsd-lite state 1\n"

struct saver {
    FILE *f;
    uint64_t count;
};

static int save_node(struct xsd_node *n, int depth, void *arg)
{
    struct saver *s = arg;
    char perms[XENSTORE_PAYLOAD_MAX];
    size_t pl = xsd_perms_format(n->perms, perms, sizeof(perms));

    /* Ignored entries in upper case (the letters are ASCII). */
    for (size_t off = 0, i = 0; off < pl && i < n->perms->num; i++) {
        if (n->perms->p[i].perm & XSD_PERM_IGNORE)
            perms[off] = (char)(perms[off] - 'a' + 'A');
        off += strlen(perms + off) + 1;
    }

    fprintf(s->f, "N %u %u %zu\n", n->plen, n->vlen, pl);
    fwrite(n->path, 1, n->plen, s->f);
    if (n->vlen)
        fwrite(xsd_node_value(n), 1, n->vlen, s->f);
    fwrite(perms, 1, pl, s->f);
    fputc('\n', s->f);
    s->count++;
    return ferror(s->f) ? -1 : 0;
}

/* See xsd.h.  Returns -1 on failure, in which case errno will be set. */
int xsd_state_save(struct xsd *x, const char *path)
{
    static const char *const special[] = {"@introduceDomain", "@releaseDomain"};
    struct saver s = {NULL, 0};
    size_t tlen = strlen(path) + 5;
    char *tmp = malloc(tlen);
    int fd, err;

    struct stat sb;

    if (!tmp)
        return -1;
    /* A state file is a regular file: renaming over a device or a FIFO
     * (/dev/null) would replace the node itself. */
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        free(tmp);
        errno = EINVAL;
        return -1;
    }
    snprintf(tmp, tlen, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || !(s.f = fdopen(fd, "w")))
        goto err;
    fputs(MAGIC, s.f);
    if (xsd_walk(x->root, save_node, &s))
        goto err;
    for (size_t i = 0; i < 2; i++) {
        struct xsd_node *n = xsd_find(x, special[i], strlen(special[i]));

        if (n && save_node(n, 0, &s))
            goto err;
    }
    fprintf(s.f, "E %" PRIu64 "\n", s.count);
    if (fflush(s.f) || fsync(fd) || ferror(s.f))
        goto err;
    fclose(s.f);
    if (rename(tmp, path))
        goto err_unlink;
    free(tmp);
    return 0;

err:
    err = errno;
    if (s.f)
        fclose(s.f);
    else if (fd >= 0)
        close(fd);
    errno = err;
err_unlink:
    err = errno;
    unlink(tmp);
    free(tmp);
    errno = err;
    return -1;
}

/* Reads a whole file into a NUL-terminated buffer. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL;
    size_t cap = 0, n = 0;

    if (!f)
        return NULL;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            char *nb = realloc(buf, cap = (cap ? cap * 2 : 1 << 20));

            if (!nb) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 65536, f);

        n += r;
        if (r < 65536)
            break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        errno = EIO;
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Applies one record: creates the node (its parent exists already) or
 * updates it (/ and the special nodes exist from the start). */
static int load_node(struct xsd *x, const char *path, size_t plen,
                     const char *v, uint32_t vlen, const char *ps, size_t pl)
{
    struct xsd_perm p[XENSTORE_PAYLOAD_MAX / 3];
    struct xsd_perms *perms;
    struct xsd_node *n, *parent = NULL;
    uint32_t num = 0;
    char buf[XSD_PATH_BUF];

    if (plen >= sizeof(buf))
        return -1;
    memcpy(buf, path, plen);
    buf[plen] = '\0';
    if (!xsd_path_ok(buf, plen))
        return -1;
    char lower[XENSTORE_PAYLOAD_MAX];
    bool ignored[XENSTORE_PAYLOAD_MAX / 3] = {false};

    for (size_t i = 0; i < pl; i++)
        num += ps[i] == '\0';
    if (!num || ps[pl - 1] != '\0' || num > XTK__ARRAY_SIZE(p) ||
        pl > sizeof(lower))
        return -1;
    /* An entry in upper case was ignored (save_node): still is. */
    memcpy(lower, ps, pl);
    for (size_t off = 0, i = 0; off < pl && i < num; i++) {
        if (lower[off] >= 'A' && lower[off] <= 'Z' && i > 0) {
            lower[off] = (char)(lower[off] - 'A' + 'a');
            ignored[i] = true;
        }
        off += strlen(lower + off) + 1;
    }
    if (xsd_perms_parse(lower, pl, p, num))
        return -1;
    for (uint32_t i = 0; i < num; i++)
        if (ignored[i])
            p[i].perm |= XSD_PERM_IGNORE;
    n = xsd_find(x, buf, plen);
    if (!n) {
        if (buf[0] != '/' ||
            !(parent = xsd_find(x, buf, xsd_parent_len(buf, plen))))
            return -1;
    }
    perms = xsd_perms_get(x, p, num);
    if (!perms)
        return -1;
    if (!n)
        n = xsd_node_new(x, parent, buf, plen, perms);
    else
        xsd_node_set_perms(x, n, perms);
    xsd_perms_put(x, perms);
    if (!n || xsd_node_set_value(x, n, v, vlen))
        return -1;
    return 0;
}

/* Parses "<c> <n>[ <n>...]\n" at *off: the numbers go to v.  Returns 0, or
 * -1 when the line is not that.  (sscanf would measure the whole buffer
 * on each call.) */
static int header(const char *buf, size_t len, size_t *off, char c, uint64_t *v,
                  int nv)
{
    size_t i = *off;

    if (i + 2 > len || buf[i] != c || buf[i + 1] != ' ')
        return -1;
    i += 2;
    for (int k = 0; k < nv; k++) {
        size_t start = i;

        v[k] = 0;
        while (i < len && buf[i] >= '0' && buf[i] <= '9' && i - start < 19)
            v[k] = v[k] * 10 + (uint64_t)(buf[i++] - '0');
        if (i == start || i >= len || buf[i] != (k + 1 < nv ? ' ' : '\n'))
            return -1;
        i++;
    }
    *off = i;
    return 0;
}

/*
 * See xsd.h.  The tree below / is replaced by the file's.  Returns -1 on
 * failure (a malformed or truncated file: EINVAL), in which case errno
 * will be set; the store may then hold part of the file.
 */
int xsd_state_load(struct xsd *x, const char *path)
{
    size_t len, off = strlen(MAGIC);
    char *buf = slurp(path, &len);
    uint64_t count = 0, v[3];

    if (!buf)
        return -1;
    if (len < off || memcmp(buf, MAGIC, off))
        goto bad;
    while (x->root->child)
        xsd_node_remove(x, x->root->child, NULL, NULL);
    for (;;) {
        uint64_t plen, vlen, pl;

        if (!header(buf, len, &off, 'E', v, 1)) {
            if (v[0] != count || off != len)
                goto bad;
            break;
        }
        if (header(buf, len, &off, 'N', v, 3))
            goto bad;
        plen = v[0];
        vlen = v[1];
        pl = v[2];
        if (plen > XENSTORE_ABS_PATH_MAX || vlen > UINT32_MAX ||
            pl > XENSTORE_PAYLOAD_MAX || len - off < plen + vlen + pl + 1 ||
            buf[off + plen + vlen + pl] != '\n' ||
            load_node(x, buf + off, plen, buf + off + plen, (uint32_t)vlen,
                      buf + off + plen + vlen, pl))
            goto bad;
        off += plen + vlen + pl + 1;
        count++;
    }
    free(buf);
    XTK_INFO(x->ctx, "loaded %" PRIu64 " nodes from %s", count, path);
    return 0;

bad:
    free(buf);
    XTK_ERROR(x->ctx, "%s: not a valid state file (after %" PRIu64 " nodes)",
              path, count);
    return xtk__fail(EINVAL);
}
