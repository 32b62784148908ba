/*
 * sock.c - the Unix sockets: the privileged one (default
 * /run/xenstored/socket) and the read-only one.
 *
 * Input is read straight into the connection's buffer and every complete
 * message in it is handled before the next read; replies are written at
 * the end of the event, several in one writev().  The privileged socket
 * also accepts descriptors (SCM_RIGHTS) for KVM introductions.
 */
#include "config.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "xsd.h"

#define XTK_LOG_CONTEXT "xsd-sock"

#define SOCK_IOV 64
#define SOCK_MAX_FDS 8

struct xsd_listener {
    struct xsd *x;
    struct event *ev, *retry;
    char *path;
    int fd;
    bool ro;
};

static void sock_flush(struct xsd_conn *c)
{
    while (c->out_head) {
        struct iovec iov[SOCK_IOV];
        struct xsd_out *o = c->out_head;
        int n = 0;
        ssize_t w;

        for (; o && n < SOCK_IOV; o = o->next, n++) {
            iov[n].iov_base = o->buf + o->off;
            iov[n].iov_len = o->len - o->off;
        }
        w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            xsd_conn_kill(c, strerror(errno));
            return;
        }
        while (w > 0) {
            o = c->out_head;
            if ((size_t)w < o->len - o->off) {
                o->off += (uint32_t)w;
                break;
            }
            w -= o->len - o->off;
            xsd_conn_output_done(c, o);
        }
    }
    if (c->out_head)
        event_add(c->wev, NULL);
    else
        event_del(c->wev);
}

static void sock_pause(struct xsd_conn *c, bool paused)
{
    if (paused) {
        event_del(c->rev);
    } else {
        event_add(c->rev, NULL);
        event_active(c->rev, EV_READ, 0); /* the input already buffered */
    }
}

static void sock_destroy(struct xsd_conn *c)
{
    if (c->rev)
        event_free(c->rev);
    if (c->wev)
        event_free(c->wev);
    if (c->fd >= 0)
        close(c->fd);
}

static const struct xsd_transport sock_transport = {
    .name = "socket",
    .flush = sock_flush,
    .pause = sock_pause,
    .destroy = sock_destroy,
};

/* Takes the descriptors a recvmsg() returned: kept for the INTRODUCE that
 * begins in [lo, hi) of the stream, or closed where not allowed. */
static void take_fds(struct xsd_conn *c, struct msghdr *mh, uint64_t lo,
                     uint64_t hi)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        int *fds = (int *)CMSG_DATA(cm);
        int n;

        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        xsd_conn_close_fds(c);
        if (c->ro || n > 3) {
            for (int i = 0; i < n; i++)
                close(fds[i]);
            c->nfds = c->ro ? 0 : -1;
            continue;
        }
        memcpy(c->fds, fds, (size_t)n * sizeof(int));
        c->nfds = n;
    }
    if (mh->msg_flags & MSG_CTRUNC) {
        xsd_conn_close_fds(c);
        c->nfds = c->ro ? 0 : -1;
    }
    c->fds_lo = lo;
    c->fds_hi = hi;
}

static void sock_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct xsd_conn *c = arg;
    struct xsd *x = c->x;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(SOCK_MAX_FDS * sizeof(int))];
    } cbuf;
    struct iovec iov;
    struct msghdr mh;
    ssize_t n;

    /* First what is already buffered (after a pause). */
    xsd_conn_process(c);
    if (c->dead || c->paused || !xsd_conn_in_room(c))
        goto out;
    iov.iov_base = c->in + c->inlen;
    iov.iov_len = xsd_conn_in_room(c);
    memset(&mh, 0, sizeof(mh));
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.buf;
    mh.msg_controllen = sizeof(cbuf.buf);
    n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            xsd_conn_kill(c, strerror(errno));
        goto out;
    }
    if (n == 0) {
        xsd_conn_kill(c, "closed by the client");
        goto out;
    }
    if (mh.msg_controllen)
        take_fds(c, &mh, c->in_off + c->inlen, c->in_off + c->inlen + n);
    c->inlen += (uint32_t)n;
    xsd_conn_process(c);
out:
    xsd_after_io(x);
}

static void sock_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct xsd_conn *c = arg;

    sock_flush(c);
    xsd_after_io(c->x);
}

static void listener_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct xsd_listener *l = arg;

    event_add(l->ev, NULL);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    struct xsd_listener *l = arg;
    struct xsd *x = l->x;

    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct xsd_conn *c;

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM ||
                errno == ENOBUFS) {
                /* Out of descriptors: stop accepting for a moment. */
                struct timeval tv = {0, 100000};

                XTK_WARN(x->ctx, "accept: %s", strerror(errno));
                event_del(l->ev);
                event_add(l->retry, &tv);
            }
            break;
        }
        c = xsd_conn_new(x, &sock_transport, 0, true, l->ro);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->rev = event_new(x->base, fd, EV_READ | EV_PERSIST, sock_read_cb, c);
        c->wev =
            event_new(x->base, fd, EV_WRITE | EV_PERSIST, sock_write_cb, c);
        if (!c->rev || !c->wev || event_add(c->rev, NULL)) {
            xsd_conn_kill(c, "no memory");
            continue;
        }
        XTK_DEBUG(x->ctx, "connection %u on %s", c->id, l->path);
    }
    xsd_after_io(x);
}

/* Makes the directory of path (one level, as /run/xenstored needs). */
static void make_dir(const char *path)
{
    char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;

    if (slash && slash != dir) {
        *slash = '\0';
        mkdir(dir, 0755);
    }
    free(dir);
}

/*
 * Listens on path (mode: its permission bits).  A stale socket file is
 * replaced; a live one (another daemon) is EADDRINUSE.  Returns NULL on
 * failure, in which case errno will be set.
 */
struct xsd_listener *xsd_listen(struct xsd *x, const char *path, bool ro,
                                unsigned int mode)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct xsd_listener *l;
    int fd, err;

    if (strlen(path) >= sizeof(sa.sun_path))
        return xtk__fail_null(ENAMETOOLONG);
    strcpy(sa.sun_path, path);
    make_dir(path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        int probe;

        if (errno != EADDRINUSE)
            goto err_fd;
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && !connect(probe, (struct sockaddr *)&sa, sizeof(sa))) {
            close(probe);
            errno = EADDRINUSE;
            goto err_fd;
        }
        if (probe >= 0)
            close(probe);
        unlink(path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)))
            goto err_fd;
    }
    if (chmod(path, mode) || listen(fd, SOMAXCONN))
        goto err_unlink;
    l = calloc(1, sizeof(*l));
    if (!l)
        goto err_unlink;
    l->x = x;
    l->fd = fd;
    l->ro = ro;
    l->path = strdup(path);
    l->ev = event_new(x->base, fd, EV_READ | EV_PERSIST, accept_cb, l);
    l->retry = evtimer_new(x->base, listener_retry_cb, l);
    if (!l->path || !l->ev || !l->retry || event_add(l->ev, NULL)) {
        errno = ENOMEM;
        xsd_listener_close(l, true);
        return NULL;
    }
    return l;

err_unlink:
    unlink(path);
err_fd:
    err = errno;
    close(fd);
    return xtk__fail_null(err);
}

void xsd_listener_close(struct xsd_listener *l, bool unlink_path)
{
    if (!l)
        return;
    if (l->ev)
        event_free(l->ev);
    if (l->retry)
        event_free(l->retry);
    close(l->fd);
    if (unlink_path && l->path)
        unlink(l->path);
    free(l->path);
    free(l);
}
