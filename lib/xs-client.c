/*
 * xs-client.c - a minimal xenstore wire client (see xs-client.h).
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "xs-client.h"

struct xs_hdr {
    uint32_t type, req_id, tx_id, len;
};

static const struct {
    const char *name;
    int err;
} xs_errors[] = {
    {"EINVAL", EINVAL}, {"EACCES", EACCES},   {"EEXIST", EEXIST},
    {"EISDIR", EISDIR}, {"ENOENT", ENOENT},   {"ENOMEM", ENOMEM},
    {"ENOSPC", ENOSPC}, {"EIO", EIO},         {"ENOTEMPTY", ENOTEMPTY},
    {"ENOSYS", ENOSYS}, {"EROFS", EROFS},     {"EBUSY", EBUSY},
    {"EAGAIN", EAGAIN}, {"EISCONN", EISCONN}, {"E2BIG", E2BIG},
    {"EPERM", EPERM},
};

const char *xtk__xs_path(const char *path)
{
    static __thread char buf[256];
    const char *s;

    if (path)
        return path;
    if ((s = getenv("XENSTORED_PATH")) && *s)
        return s;
    if ((s = getenv("XENSTORED_RUNDIR")) && *s) {
        snprintf(buf, sizeof(buf), "%s/socket", s);
        return buf;
    }
    return "/run/xenstored/socket";
}

int xtk__xs_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static long long ms_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000ll + ts.tv_nsec / 1000000;
}

/* Reads exactly n bytes before the deadline. */
static int read_full(int fd, void *buf, size_t n, long long deadline)
{
    char *p = buf;

    while (n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        long long left = deadline - ms_now();
        ssize_t r;

        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        r = poll(&pfd, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (!r)
            continue;
        r = read(fd, p, n);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r < 0)
            return -1;
        if (!r) {
            errno = EPIPE;
            return -1;
        }
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int send_all(int fd, const struct xs_hdr *h, const void *payload,
                    size_t len, const int *fds, unsigned int nfds)
{
    char cbuf[CMSG_SPACE(sizeof(int) * 4)];
    struct iovec iov[2] = {{(void *)h, sizeof(*h)}, {(void *)payload, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    size_t left = sizeof(*h) + len;

    if (nfds > 4) {
        errno = EINVAL;
        return -1;
    }
    if (nfds) {
        struct cmsghdr *c;

        memset(cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    while (left) {
        ssize_t r = sendmsg(fd, &mh, MSG_NOSIGNAL);

        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        left -= (size_t)r;
        /* The fds went with the first byte; move the iovecs on. */
        mh.msg_control = NULL;
        mh.msg_controllen = 0;
        while (r > 0 && mh.msg_iovlen) {
            size_t k = (size_t)r < mh.msg_iov->iov_len ? (size_t)r
                                                       : mh.msg_iov->iov_len;
            mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + k;
            mh.msg_iov->iov_len -= k;
            r -= (ssize_t)k;
            if (!mh.msg_iov->iov_len) {
                mh.msg_iov++;
                mh.msg_iovlen--;
            }
        }
    }
    return 0;
}

int xtk__xs_send(int fd, uint32_t type, const void *payload, size_t len,
                 const int *fds, unsigned int nfds)
{
    struct xs_hdr h = {.type = type, .len = (uint32_t)len};

    if (len > XTK_XS_PAYLOAD_MAX) {
        errno = E2BIG;
        return -1;
    }
    return send_all(fd, &h, payload, len, fds, nfds);
}

int xtk__xs_request(int fd, uint32_t type, const void *payload, size_t len,
                    const int *fds, unsigned int nfds, char *reply, size_t max,
                    int timeout_ms)
{
    if (xtk__xs_send(fd, type, payload, len, fds, nfds) < 0)
        return -1;
    return xtk__xs_reply(fd, type, reply, max, timeout_ms);
}

int xtk__xs_reply(int fd, uint32_t type, char *reply, size_t max,
                  int timeout_ms)
{
    struct xs_hdr h;
    long long deadline = ms_now() + timeout_ms;
    char buf[XTK_XS_PAYLOAD_MAX + 1];

    if (read_full(fd, &h, sizeof(h), deadline) < 0)
        return -1;
    if (h.len > XTK_XS_PAYLOAD_MAX) {
        errno = EBADMSG;
        return -1;
    }
    if (read_full(fd, buf, h.len, deadline) < 0)
        return -1;
    buf[h.len] = 0;
    if (h.type == XTK_XS_ERROR) {
        for (size_t i = 0; i < sizeof(xs_errors) / sizeof(xs_errors[0]); i++)
            if (!strcmp(buf, xs_errors[i].name)) {
                errno = xs_errors[i].err;
                return -1;
            }
        errno = EINVAL;
        return -1;
    }
    if (h.type != type) {
        errno = EBADMSG;
        return -1;
    }
    if (reply) {
        size_t n = h.len < max ? h.len : max;
        memcpy(reply, buf, n);
        reply[n] = 0;
    }
    return (int)h.len;
}

int xtk__xs_reply_owed(int fd, int *owed, uint32_t type, int wait,
                       int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    if (!*owed || (!wait && poll(&p, 1, 0) < 1))
        return 0;
    *owed = 0;
    return xtk__xs_reply(fd, type, NULL, 0, timeout_ms) < 0 ? -1 : 0;
}

int xtk__xs_pair_fd(int notify_fd, int store_fd)
{
    struct epoll_event ev = {.events = EPOLLIN};
    int ep = epoll_create1(EPOLL_CLOEXEC), e;

    if (ep < 0)
        return -1;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, notify_fd, &ev) == 0 &&
        epoll_ctl(ep, EPOLL_CTL_ADD, store_fd, &ev) == 0)
        return ep;
    e = errno;
    close(ep);
    errno = e;
    return -1;
}

int xtk__xs_write_send(int fd, const char *path, const char *value)
{
    size_t pl = strlen(path) + 1, vl = strlen(value);
    char buf[XTK_XS_PAYLOAD_MAX];

    if (pl + vl > sizeof(buf)) {
        errno = E2BIG;
        return -1;
    }
    memcpy(buf, path, pl);
    memcpy(buf + pl, value, vl);
    return xtk__xs_send(fd, XTK_XS_WRITE, buf, pl + vl, NULL, 0);
}

int xtk__xs_write(int fd, const char *path, const char *value)
{
    if (xtk__xs_write_send(fd, path, value) < 0)
        return -1;
    return xtk__xs_reply(fd, XTK_XS_WRITE, NULL, 0, 5000) < 0 ? -1 : 0;
}

int xtk__xs_introduce_kvm(int fd, uint32_t domid, uint64_t ring_gfn,
                          uint32_t port, int memfd, int notify_fd, int kick_fd,
                          int timeout_ms)
{
    int fds[3] = {memfd, notify_fd, kick_fd};
    char payload[64];
    int n;

    if (fd < 0 || memfd < 0 || notify_fd < 0 || kick_fd < 0) {
        errno = EBADF;
        return -1;
    }
    n = snprintf(payload, sizeof(payload), "%u%c%llu%c%u%c", domid, '\0',
                 (unsigned long long)ring_gfn, '\0', port, '\0');
    return xtk__xs_request(fd, XTK_XS_INTRODUCE, payload, (size_t)n, fds, 3,
                           NULL, 0, timeout_ms) < 0
               ? -1
               : 0;
}
