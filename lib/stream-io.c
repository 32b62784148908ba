/*
 * stream-io.c - the buffered byte stream under the record stream, and its
 * bottom layer over a file descriptor.
 *
 * Writing: pieces under 4 KiB are copied into the stream's buffer; larger
 * ones are queued as iovecs pointing at the caller's memory, interleaved
 * with iovecs for the buffered bytes between them, and the whole queue goes
 * to the layer below in one writev before the call returns.  A checksummed
 * stream copies everything, and checksums the copy (put_copied).  Reading:
 * small reads are served from a 128 KiB read-ahead buffer, large ones go
 * straight into the caller's memory.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "stream-internal.h"

/* A buffer fill after a skip: a PAGE_DATA's header and 1024 entries. */
#define SKIP_FILL (12u << 10)

#define XTK_LOG_CONTEXT "stream"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "xtk's stream code assumes a little-endian host"
#endif

/* Pieces this large or larger are written from where they are. */
#define DIRECT_MIN 4096u

int xtk__stream_fail(struct xtk_stream *s, int err, const char *fmt, ...)
{
    va_list al;

    if (s->err) {
        errno = s->err;
        return -1;
    }
    s->err = err;
    va_start(al, fmt);
    xtk__vlog(s->ctx, XTK_LOG_ERROR, -1, XTK_LOG_CONTEXT, fmt, al);
    va_end(al);
    errno = err;
    return -1;
}

/* ---- the fd layer --------------------------------------------------- */

struct fd_layer {
    struct xtk__layer l;
    int fd;
    int own;
    int socket;
    /* skip: where the fd is, and the file's size when last looked at
     * (looked at again before a skip is taken for one past the end) */
    int skip_known;
    uint64_t skip_at, skip_size;
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int xtk__stream_wait(struct xtk_stream *s, int fd, short events)
{
    int64_t deadline = s->timeout_ms ? now_ms() + s->timeout_ms : 0;
    struct pollfd pfd[2] = {
        {.fd = fd, .events = events},
        {.fd = s->cancel_set ? s->cancel_fd : -1, .events = POLLIN}};

    for (;;) {
        int left = -1, rc;

        if (deadline) {
            int64_t d = deadline - now_ms();
            left = d < 0 ? 0 : (int)d;
        }
        rc = poll(pfd, 2, left);
        if (rc > 0 && pfd[1].revents)
            return xtk__fail(ECANCELED);
        if (rc > 0)
            return 0; /* ready, or an error the next call will report */
        if (rc == 0)
            return xtk__fail(ETIMEDOUT);
        if (errno != EINTR)
            return -1;
    }
}

void xtk__stream_set_cancel(struct xtk_stream *s, int cancel_fd)
{
    s->cancel_fd = cancel_fd;
    s->cancel_set = cancel_fd >= 0;
}

/* Writes the whole iovec array (which it consumes) to the fd. */
static int fd_writev(struct xtk__layer *l, struct iovec *iov, int iovcnt)
{
    struct fd_layer *f = (struct fd_layer *)l;
    struct xtk_stream *s = l->s;

    while (iovcnt > 0) {
        int cnt = iovcnt < IOV_MAX ? iovcnt : IOV_MAX;
        ssize_t n;

        if ((s->timeout_ms || s->cancel_set) &&
            xtk__stream_wait(s, f->fd, POLLOUT) < 0)
            goto fail;
        if (f->socket) {
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
            n = sendmsg(f->fd, &mh, MSG_NOSIGNAL);
        } else {
            n = writev(f->fd, iov, cnt);
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (xtk__stream_wait(s, f->fd, POLLOUT) < 0)
                    goto fail;
                continue;
            }
            goto fail;
        }
        s->counters.raw_bytes += (uint64_t)n;
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;

fail:
    return xtk__stream_fail(
        s, errno, "write to fd %d failed after %llu bytes: %s", f->fd,
        (unsigned long long)s->counters.raw_bytes, strerror(errno));
}

static ssize_t fd_readv(struct xtk__layer *l, const struct iovec *iov,
                        int iovcnt)
{
    struct fd_layer *f = (struct fd_layer *)l;
    struct xtk_stream *s = l->s;

    for (;;) {
        ssize_t n;

        if ((s->timeout_ms || s->cancel_set) &&
            xtk__stream_wait(s, f->fd, POLLIN) < 0)
            break;
        n = readv(f->fd, iov, iovcnt);
        if (n >= 0) {
            s->counters.raw_bytes += (uint64_t)n;
            f->skip_at += (uint64_t)n;
            return n;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (xtk__stream_wait(s, f->fd, POLLIN) < 0)
                break;
            continue;
        }
        break;
    }
    return xtk__stream_fail(
        s, errno, "read from fd %d failed after %llu bytes: %s", f->fd,
        (unsigned long long)s->counters.raw_bytes, strerror(errno));
}

static ssize_t fd_read(struct xtk__layer *l, void *buf, size_t len)
{
    struct iovec iov = {buf, len > SSIZE_MAX ? SSIZE_MAX : len};

    return fd_readv(l, &iov, 1);
}

static int fd_skip(struct xtk__layer *l, uint64_t len)
{
    struct fd_layer *f = (struct fd_layer *)l;
    struct stat st;
    off_t at;

    if (f->socket || len > (uint64_t)INT64_MAX)
        return -1;
    /* A file read only by this stream: where it is follows from the
     * reads, so only the first skip, and one that seems to pass the end,
     * ask the kernel. */
    if (!f->skip_known || f->skip_at + len > f->skip_size) {
        if (fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode) ||
            (at = lseek(f->fd, 0, SEEK_CUR)) < 0)
            return -1;
        f->skip_at = (uint64_t)at;
        f->skip_size = (uint64_t)st.st_size;
        f->skip_known = 1;
        if (f->skip_at + len > f->skip_size)
            return -1;
    }
    if (lseek(f->fd, (off_t)len, SEEK_CUR) < 0) {
        f->skip_known = 0;
        return -1;
    }
    f->skip_at += len;
    l->s->counters.raw_bytes += len;
    return 0;
}

static int fd_destroy(struct xtk__layer *l)
{
    struct fd_layer *f = (struct fd_layer *)l;
    int rc = 0;

    if (f->own && close(f->fd) < 0 && errno != EINTR)
        rc = -1;
    free(f);
    return rc;
}

static const struct xtk__layer_ops fd_ops = {
    .name = "fd",
    .writev = fd_writev,
    .read = fd_read,
    .readv = fd_readv,
    .skip = fd_skip,
    .destroy = fd_destroy,
};

struct xtk__layer *xtk__layer_fd_new(struct xtk_stream *s, int fd, int own,
                                     int socket)
{
    struct fd_layer *f = calloc(1, sizeof(*f));

    if (!f)
        return NULL;
    f->l.ops = &fd_ops;
    f->l.s = s;
    f->fd = fd;
    f->own = own;
    f->socket = socket;
    return &f->l;
}

/* ---- a transport of the caller's (xtk_stream_custom) ---------------- */

struct io_layer {
    struct xtk__layer l;
    int fd;
    struct xtk_stream_io io;
    void *arg;
};

/* After the transport said EAGAIN: waits for fd (0), or fails (-1). */
static int io_again(struct io_layer *x, short events)
{
    if (events == POLLIN && x->io.pending && x->io.pending(x->arg))
        return 0;
    return xtk__stream_wait(x->l.s, x->fd, events);
}

static int io_writev(struct xtk__layer *l, struct iovec *iov, int iovcnt)
{
    struct io_layer *x = (struct io_layer *)l;
    struct xtk_stream *s = l->s;

    for (int i = 0; i < iovcnt; i++) {
        const uint8_t *p = iov[i].iov_base;
        size_t left = iov[i].iov_len;

        while (left) {
            ssize_t n = x->io.write(x->arg, p, left);

            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (io_again(x, POLLOUT) < 0)
                    goto fail;
                continue;
            }
            if (n <= 0) {
                if (!n)
                    errno = EIO;
                goto fail;
            }
            s->counters.raw_bytes += (uint64_t)n;
            p += n;
            left -= (size_t)n;
        }
    }
    while (x->io.flush && x->io.flush(x->arg) < 0) {
        if (errno == EINTR)
            continue;
        if ((errno != EAGAIN && errno != EWOULDBLOCK) ||
            io_again(x, POLLOUT) < 0)
            goto fail;
    }
    return 0;
fail:
    return xtk__stream_fail(s, errno,
                            "write to the transport on fd %d failed after "
                            "%llu bytes: %s",
                            x->fd, (unsigned long long)s->counters.raw_bytes,
                            strerror(errno));
}

static ssize_t io_read(struct xtk__layer *l, void *buf, size_t len)
{
    struct io_layer *x = (struct io_layer *)l;
    struct xtk_stream *s = l->s;

    for (;;) {
        ssize_t n = x->io.read(x->arg, buf, len);

        if (n >= 0) {
            s->counters.raw_bytes += (uint64_t)n;
            return n;
        }
        if (errno == EINTR)
            continue;
        if ((errno == EAGAIN || errno == EWOULDBLOCK) &&
            io_again(x, POLLIN) == 0)
            continue;
        break;
    }
    return xtk__stream_fail(s, errno,
                            "read from the transport on fd %d failed after "
                            "%llu bytes: %s",
                            x->fd, (unsigned long long)s->counters.raw_bytes,
                            strerror(errno));
}

static int io_destroy(struct xtk__layer *l)
{
    free(l);
    return 0;
}

static const struct xtk__layer_ops io_ops = {
    .name = "custom",
    .writev = io_writev,
    .read = io_read,
    .destroy = io_destroy,
};

/* ---- construction ---------------------------------------------------- */

static struct xtk_stream *stream_new(struct xtk_ctx *ctx, int fd,
                                     unsigned int flags, int socket)
{
    unsigned int dir = flags & (XTK_STREAM_READ | XTK_STREAM_WRITE);
    struct xtk_stream *s;

    if (!ctx || fd < 0 ||
        (flags & ~(XTK_STREAM_READ | XTK_STREAM_WRITE | XTK_STREAM_OWN_FD |
                   XTK_STREAM_CHECKSUM)) ||
        (dir != XTK_STREAM_READ && dir != XTK_STREAM_WRITE)) {
        errno = EINVAL;
        goto err_fd;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        goto err_fd;
    s->ctx = ctx;
    s->flags = flags;
    s->record_limit = XTK_STREAM_RECORD_MAX;
    s->crc = (uint32_t)crc32(0, NULL, 0);
    /* A reader computes the CRC of the headers in case the first record
     * turns out to be a checksum record; a writer only when asked. */
    s->crc_on = (dir == XTK_STREAM_READ) || (flags & XTK_STREAM_CHECKSUM);
    s->buf = malloc(XTK__STREAM_BUF_SIZE);
    if (!s->buf)
        goto err_stream;
    if (dir == XTK_STREAM_WRITE) {
        s->iov = malloc(XTK__STREAM_IOV_MAX * sizeof(*s->iov));
        if (!s->iov)
            goto err_buf;
    }
    s->top = xtk__layer_fd_new(s, fd, !!(flags & XTK_STREAM_OWN_FD), socket);
    if (!s->top)
        goto err_iov;
    return s;

err_iov:
    free(s->iov);
err_buf:
    free(s->buf);
err_stream:
    free(s);
err_fd:
    if ((flags & XTK_STREAM_OWN_FD) && fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return NULL;
}

struct xtk_stream *xtk_stream_fd(struct xtk_ctx *ctx, int fd,
                                 unsigned int flags)
{
    return stream_new(ctx, fd, flags, 0);
}

struct xtk_stream *xtk_stream_socket(struct xtk_ctx *ctx, int fd,
                                     unsigned int flags)
{
    return stream_new(ctx, fd, flags, 1);
}

struct xtk_stream *xtk_stream_custom(struct xtk_ctx *ctx, int fd,
                                     unsigned int flags,
                                     const struct xtk_stream_io *io, void *arg)
{
    struct xtk_stream *s;
    struct io_layer *x;

    if (!io || !io->write || !io->read || (flags & XTK_STREAM_OWN_FD))
        return xtk__fail_null(EINVAL);
    x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    s = stream_new(ctx, fd, flags, 1);
    if (!s) {
        free(x);
        return NULL;
    }
    /* The fd layer stream_new made gives way to the transport's. */
    s->top->ops->destroy(s->top);
    x->l.ops = &io_ops;
    x->l.s = s;
    x->fd = fd;
    x->io = *io;
    x->arg = arg;
    s->top = &x->l;
    return s;
}

struct xtk_stream *xtk_stream_file(struct xtk_ctx *ctx, const char *path,
                                   unsigned int flags)
{
    int fd, oflags;

    if (!ctx || !path || (flags & XTK_STREAM_OWN_FD))
        return xtk__fail_null(EINVAL);
    if ((flags & (XTK_STREAM_READ | XTK_STREAM_WRITE)) == XTK_STREAM_WRITE)
        oflags = O_WRONLY | O_CREAT | O_TRUNC;
    else if ((flags & (XTK_STREAM_READ | XTK_STREAM_WRITE)) == XTK_STREAM_READ)
        oflags = O_RDONLY;
    else
        return xtk__fail_null(EINVAL);
    fd = open(path, oflags | O_CLOEXEC, 0644);
    if (fd < 0) {
        XTK_PERROR(ctx, "cannot open %s", path);
        return NULL;
    }
    return stream_new(ctx, fd, flags | XTK_STREAM_OWN_FD, 0);
}

int xtk_stream_set_timeout(struct xtk_stream *s, int timeout_ms)
{
    if (!s || timeout_ms < 0)
        return xtk__fail(EINVAL);
    s->timeout_ms = timeout_ms;
    return 0;
}

int xtk_stream_set_record_limit(struct xtk_stream *s, uint32_t max)
{
    if (!s || max < 8 || max > XTK_STREAM_RECORD_MAX)
        return xtk__fail(EINVAL);
    s->record_limit = max;
    return 0;
}

int xtk_stream_error(const struct xtk_stream *s)
{
    return s ? s->err : EINVAL;
}

int xtk_stream_get_counters(const struct xtk_stream *s,
                            struct xtk_stream_counters *out)
{
    if (!s || !out)
        return xtk__fail(EINVAL);
    *out = s->counters;
    return 0;
}

/* ---- writing ---------------------------------------------------------- */

/* Adds len bytes to the running CRC-32 of the checksum window. */
static void crc_update(struct xtk_stream *s, const void *p, size_t len)
{
    const uint8_t *q = p;

    s->crc_bytes += len;
    while (len) {
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        s->crc = (uint32_t)crc32(s->crc, q, n);
        q += n;
        len -= n;
    }
}

/* Queues an iovec, merging it with the previous one when adjacent. */
static void q_add(struct xtk_stream *s, int *niov, const void *base, size_t len)
{
    struct iovec *prev = *niov ? &s->iov[*niov - 1] : NULL;

    if (prev && (const uint8_t *)prev->iov_base + prev->iov_len ==
                    (const uint8_t *)base) {
        prev->iov_len += len;
        return;
    }
    s->iov[*niov].iov_base = (void *)base;
    s->iov[*niov].iov_len = len;
    (*niov)++;
}

/*
 * Writes the queued iovecs and the buffered bytes after the last of them
 * (s->rpos marks the buffered bytes already queued) to the layer below,
 * and empties both.
 */
static int q_flush(struct xtk_stream *s, int *niov)
{
    int rc = 0;

    if (s->blen > s->rpos)
        q_add(s, niov, s->buf + s->rpos, s->blen - s->rpos);
    if (*niov)
        rc = s->top->ops->writev(s->top, s->iov, *niov);
    *niov = 0;
    s->blen = 0;
    s->rpos = 0;
    return rc;
}

/*
 * A checksummed stream copies every piece into its buffer and computes the
 * CRC over the copy, never over the caller's memory: what is written is
 * exactly what the CRC covers, even when that memory changes before the
 * write (a live guest's pages, written while it runs).
 */
static int put_copied(struct xtk_stream *s, int *niov, const uint8_t *p,
                      size_t len)
{
    while (len) {
        size_t k = XTK__STREAM_BUF_SIZE - s->blen;

        if (!k) {
            if (q_flush(s, niov) < 0)
                return -1;
            k = XTK__STREAM_BUF_SIZE;
        }
        if (k > len)
            k = len;
        memcpy(s->buf + s->blen, p, k);
        crc_update(s, s->buf + s->blen, k);
        s->blen += k;
        p += k;
        len -= k;
    }
    return 0;
}

int xtk__stream_put(struct xtk_stream *s, int *niov, const void *p, size_t len)
{
    if (!len)
        return 0;
    s->counters.bytes += len;
    if (s->crc_on)
        return put_copied(s, niov, p, len);
    if (len < DIRECT_MIN) {
        if (s->blen + len > XTK__STREAM_BUF_SIZE && q_flush(s, niov) < 0)
            return -1;
        memcpy(s->buf + s->blen, p, len);
        s->blen += len;
        return 0;
    }
    if (*niov + 2 > XTK__STREAM_IOV_MAX && q_flush(s, niov) < 0)
        return -1;
    if (s->blen > s->rpos) {
        q_add(s, niov, s->buf + s->rpos, s->blen - s->rpos);
        s->rpos = s->blen;
    }
    q_add(s, niov, p, len);
    return 0;
}

int xtk__stream_put_end(struct xtk_stream *s, int *niov)
{
    return *niov ? q_flush(s, niov) : 0;
}

/* Shared checks of the byte-writing calls. */
static int writable(struct xtk_stream *s)
{
    if (!s || !(s->flags & XTK_STREAM_WRITE))
        return xtk__fail(EINVAL);
    if (s->err)
        return xtk__fail(s->err);
    return 0;
}

int xtk__stream_writev(struct xtk_stream *s, const struct iovec *iov,
                       int iovcnt)
{
    int niov = 0;

    for (int i = 0; i < iovcnt; i++)
        if (xtk__stream_put(s, &niov, iov[i].iov_base, iov[i].iov_len) < 0)
            return -1;
    return xtk__stream_put_end(s, &niov);
}

int xtk_stream_writev(struct xtk_stream *s, const struct iovec *iov, int iovcnt)
{
    if (writable(s) < 0)
        return -1;
    if (iovcnt < 0 || (iovcnt && !iov))
        return xtk__fail(EINVAL);
    for (int i = 0; i < iovcnt; i++)
        if (iov[i].iov_len && !iov[i].iov_base)
            return xtk__fail(EINVAL);
    return xtk__stream_writev(s, iov, iovcnt);
}

int xtk_stream_write(struct xtk_stream *s, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

    return xtk_stream_writev(s, &iov, 1);
}

/* Pushes the buffer into the top layer, then every layer's own flush. */
static int flush_all(struct xtk_stream *s)
{
    int niov = 0;

    if (q_flush(s, &niov) < 0)
        return -1;
    for (struct xtk__layer *l = s->top; l; l = l->below)
        if (l->ops->flush && l->ops->flush(l) < 0)
            return -1;
    return 0;
}

int xtk_stream_flush(struct xtk_stream *s)
{
    if (writable(s) < 0)
        return -1;
    return flush_all(s);
}

size_t xtk__stream_room(struct xtk_stream *s)
{
    struct xtk__layer *l = s ? s->top : NULL;
    socklen_t optlen = sizeof(int);
    int fd, size = 0, held = 0;
    struct stat st;
    size_t room;

    while (l && l->below)
        l = l->below;
    if (!l || l->ops != &fd_ops)
        return 0;
    fd = ((struct fd_layer *)l)->fd;
    if (fstat(fd, &st) < 0)
        return 0;
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISCHR(st.st_mode))
        return SIZE_MAX;
    if (S_ISSOCK(st.st_mode)) {
        if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, &optlen) < 0 ||
            ioctl(fd, SIOCOUTQ, &held) < 0)
            return 0;
        size /= 2;
    } else if (S_ISFIFO(st.st_mode)) {
        size = fcntl(fd, F_GETPIPE_SZ);
        if (size < 0 || ioctl(fd, FIONREAD, &held) < 0)
            return 0;
    } else {
        return 0;
    }
    room = size > held ? (size_t)(size - held) : 0;
    return room > s->blen ? room - s->blen : 0;
}

int xtk__stream_external_begin(struct xtk_stream *s, int *fd)
{
    if (writable(s) < 0 || flush_all(s) < 0)
        return -1;
    if (!s->top || s->top->ops != &fd_ops || s->top->below ||
        s->rs.state != XTK__S_IMAGE_HEADER || s->rs.checksummed || s->crc_on)
        return xtk__fail(EINVAL);
    *fd = ((struct fd_layer *)s->top)->fd;
    return 0;
}

int xtk__stream_external_end(struct xtk_stream *s)
{
    if (writable(s) < 0)
        return -1;
    s->rs.state = XTK__S_ENDED;
    if (s->fr.framing != XTK_STREAM_FRAMING_LIBXC &&
        xtk__libxl_write_after(s, XTK_REC_END) < 0)
        return -1;
    return flush_all(s);
}

/* ---- reading ---------------------------------------------------------- */

/*
 * Reads up to len bytes into buf, stopping early only at the end of the
 * stream.  Returns 0 when all len bytes came, 1 at the end (*got says how
 * many did), -1 on error (sticky, already logged).
 */
int xtk__stream_read_some(struct xtk_stream *s, void *buf, size_t len,
                          size_t *got_out)
{
    uint8_t *dst = buf;
    size_t got = 0;
    int rc = 0;

    while (got < len) {
        ssize_t n;

        if (s->rpos < s->blen) {
            size_t k = s->blen - s->rpos;
            if (k > len - got)
                k = len - got;
            memcpy(dst + got, s->buf + s->rpos, k);
            s->rpos += k;
            got += k;
            continue;
        }
        if (len - got >= XTK__STREAM_BUF_SIZE) {
            n = s->top->ops->read(s->top, dst + got, len - got);
            if (n > 0)
                got += (size_t)n;
        } else {
            n = s->top->ops->read(s->top, s->buf,
                                  s->after_skip ? SKIP_FILL
                                                : XTK__STREAM_BUF_SIZE);
            s->after_skip = 0;
            s->rpos = 0;
            s->blen = n > 0 ? (size_t)n : 0;
        }
        if (n < 0) {
            rc = -1;
            break;
        }
        if (n == 0) {
            rc = 1;
            break;
        }
    }
    if (s->crc_on)
        crc_update(s, dst, got);
    s->counters.bytes += got;
    *got_out = got;
    return rc;
}

/* See stream-internal.h.  The unread input moves to the buffer's start if
 * the rest does not fit behind it; no counter or CRC moves (nothing is
 * consumed). */
int xtk__stream_peek(struct xtk_stream *s, size_t len, size_t *avail)
{
    while (s->blen - s->rpos < len) {
        ssize_t n;

        if (s->rpos) {
            memmove(s->buf, s->buf + s->rpos, s->blen - s->rpos);
            s->blen -= s->rpos;
            s->rpos = 0;
        }
        n = s->top->ops->read(s->top, s->buf + s->blen,
                              XTK__STREAM_BUF_SIZE - s->blen);
        if (n < 0)
            return -1;
        if (n == 0) {
            *avail = s->blen - s->rpos;
            return 1;
        }
        s->blen += (size_t)n;
    }
    *avail = s->blen - s->rpos;
    return 0;
}

/* Moves past k bytes of iov from entry *i on, and past empty entries. */
static void iov_advance(struct iovec *iov, int *i, int iovcnt, size_t k)
{
    while (*i < iovcnt) {
        size_t take = k < iov[*i].iov_len ? k : iov[*i].iov_len;

        iov[*i].iov_base = (uint8_t *)iov[*i].iov_base + take;
        iov[*i].iov_len -= take;
        k -= take;
        if (iov[*i].iov_len)
            break;
        (*i)++;
    }
}

/* See stream-internal.h.  iov is consumed (its entries advanced); no CRC
 * (the placer is not used on checksummed streams). */
int xtk__stream_readv_some(struct xtk_stream *s, struct iovec *iov, int iovcnt,
                           size_t *got_out)
{
    size_t got = 0;
    int i = 0, rc = 0;

    iov_advance(iov, &i, iovcnt, 0);
    /* What the buffer holds already. */
    while (i < iovcnt && s->rpos < s->blen) {
        size_t k = s->blen - s->rpos;

        if (k > iov[i].iov_len)
            k = iov[i].iov_len;
        memcpy(iov[i].iov_base, s->buf + s->rpos, k);
        s->rpos += k;
        got += k;
        iov_advance(iov, &i, iovcnt, k);
    }
    while (i < iovcnt) {
        ssize_t n = s->top->ops->readv(s->top, iov + i, iovcnt - i);

        if (n <= 0) {
            rc = n < 0 ? -1 : 1;
            break;
        }
        got += (size_t)n;
        iov_advance(iov, &i, iovcnt, (size_t)n);
    }
    s->counters.bytes += got;
    *got_out = got;
    return rc;
}

/* See stream-internal.h. */
int xtk__stream_file_fd(const struct xtk_stream *s)
{
    const struct fd_layer *f = (const struct fd_layer *)s->top;
    struct stat st;

    if (!s->top || s->top->below || s->top->ops != &fd_ops || f->socket ||
        fstat(f->fd, &st) < 0 || !S_ISREG(st.st_mode))
        return -1;
    return f->fd;
}

/* See stream-internal.h. */
int xtk__stream_skip(struct xtk_stream *s, uint64_t len, uint64_t *got_out)
{
    uint64_t got = 0;
    int rc = 0;

    if (s->rpos < s->blen) {
        size_t k = s->blen - s->rpos;

        if (k > len)
            k = (size_t)len;
        s->rpos += k;
        got = k;
    }
    /* A layer that cannot skip (or not that far): read, which also says
     * how far a truncated stream goes. */
    if (got < len && s->top->ops->skip && !s->top->below &&
        s->top->ops->skip(s->top, len - got) == 0) {
        got = len;
        s->after_skip = 1;
    }
    while (rc == 0 && got < len) {
        size_t step = len - got < XTK__STREAM_BUF_SIZE ? (size_t)(len - got)
                                                       : XTK__STREAM_BUF_SIZE;
        ssize_t n = s->top->ops->read(s->top, s->buf, step);

        s->rpos = s->blen = 0;
        if (n < 0)
            rc = -1;
        else if (n == 0)
            rc = 1;
        else
            got += (uint64_t)n;
    }
    s->counters.bytes += got;
    *got_out = got;
    return rc;
}

/* See stream-internal.h. */
int xtk__stream_pass_records(struct xtk_stream *s, uint64_t len)
{
    uint64_t at = xtk__stream_offset(s), got;
    int rc;

    if (s->err)
        return xtk__fail(s->err);
    if (s->rs.state != XTK__S_RECORDS)
        return xtk__fail(EINVAL);
    rc = xtk__stream_skip(s, len, &got);
    if (rc < 0)
        return -1;
    if (rc > 0)
        return xtk__stream_fail(s, EBADMSG,
                                "stream truncated at offset %llu, inside the "
                                "%llu bytes of PAGE_DATA from offset %llu",
                                (unsigned long long)(at + got),
                                (unsigned long long)len,
                                (unsigned long long)at);
    s->rs.seen_page_data = 1;
    return 0;
}

int xtk__stream_read_exact(struct xtk_stream *s, void *buf, size_t len,
                           const char *what, int boundary)
{
    uint64_t at = xtk__stream_offset(s);
    size_t got;
    int rc = xtk__stream_read_some(s, buf, len, &got);

    if (rc <= 0)
        return rc;
    if (!got && boundary)
        return xtk__stream_fail(s, ENODATA,
                                "stream ended at offset %llu, before %s",
                                (unsigned long long)at, what);
    return xtk__stream_fail(s, EBADMSG,
                            "stream truncated at offset %llu: %zu of the "
                            "%zu bytes of %s",
                            (unsigned long long)(at + got), got, len, what);
}

int xtk_stream_read(struct xtk_stream *s, void *buf, size_t len)
{
    size_t got;
    int rc;

    if (!s || !(s->flags & XTK_STREAM_READ) || (len && !buf) || len > SSIZE_MAX)
        return xtk__fail(EINVAL);
    if (s->err)
        return xtk__fail(s->err);
    rc = xtk__stream_read_some(s, buf, len, &got);
    if (rc <= 0)
        return rc;
    if (got)
        return xtk__stream_fail(s, EBADMSG,
                                "stream truncated at offset %llu: %zu of "
                                "the %zu bytes asked for",
                                (unsigned long long)xtk__stream_offset(s), got,
                                len);
    /* The end, where the caller may expect it: no error message. */
    XTK_DEBUG(s->ctx, "end of stream at offset %llu",
              (unsigned long long)xtk__stream_offset(s));
    s->err = ENODATA;
    errno = ENODATA;
    return -1;
}

/* ---- layers and closing ---------------------------------------------- */

int xtk_stream_push_zlib(struct xtk_stream *s, int level)
{
    struct xtk__layer *z;

    if (!s || level < -1 || level > 9)
        return xtk__fail(EINVAL);
    if (s->err)
        return xtk__fail(s->err);
    if (s->flags & XTK_STREAM_WRITE) {
        int niov = 0;
        if (q_flush(s, &niov) < 0)
            return -1;
    } else if (s->rpos < s->blen) {
        return xtk__fail(EBUSY);
    }
    z = xtk__layer_zlib_new(s, s->top, level);
    if (!z)
        return -1;
    s->top = z;
    return 0;
}

int xtk_stream_close(struct xtk_stream *s)
{
    int err = 0;

    if (!s)
        return 0;
    if ((s->flags & XTK_STREAM_WRITE) && !s->err) {
        if (flush_all(s) == 0) {
            for (struct xtk__layer *l = s->top; l; l = l->below)
                if (l->ops->finish && l->ops->finish(l) < 0)
                    break;
        }
    }
    err = s->err;
    while (s->top) {
        struct xtk__layer *below = s->top->below;
        if (s->top->ops->destroy(s->top) < 0 && !err) {
            err = errno;
            XTK_PERROR(s->ctx, "closing the stream failed");
        }
        s->top = below;
    }
    free(s->body);
    free(s->iov);
    free(s->buf);
    free(s);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

size_t xtk__stream_body_capacity(const struct xtk_stream *s)
{
    return s->body_cap;
}
