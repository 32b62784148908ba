/*
 * xsd-introduce.c - the client side of xsd-lite's KVM introduction.  See
 * xsd-introduce.h.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <xen/io/xs_wire.h>

#include "xsd-introduce.h"

int xsd_client_connect(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if (!path)
        path = getenv("XENSTORED_PATH");
    if (!path)
        path = "/run/xenstored/socket";
    if (strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        int err = errno;

        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static int read_all(int fd, void *buf, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = ECONNRESET;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

/* Sends one request (with fds attached to its first byte when nfds) and
 * reads its reply, skipping watch events.  0 for "OK", else -1. */
static int request(int fd, uint32_t type, const char *payload, uint32_t len,
                   const int *fds, int nfds)
{
    static uint32_t next_id = 0x58534400; /* "XSD\0": any value is echoed */
    struct xsd_sockmsg h = {type, next_id++, 0, len};
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(3 * sizeof(int))];
    } cbuf;
    struct iovec iov[2] = {{&h, sizeof(h)}, {(void *)payload, len}};
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    char body[XENSTORE_PAYLOAD_MAX + 1];
    struct xsd_sockmsg rh;
    ssize_t w;

    if (nfds) {
        struct cmsghdr *cm;

        memset(&cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, (size_t)nfds * sizeof(int));
    }
    do {
        w = sendmsg(fd, &mh, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (w < 0)
        return -1;
    if ((size_t)w != sizeof(h) + len) {
        errno = EIO; /* a Unix stream socket sends small messages whole */
        return -1;
    }
    for (;;) {
        if (read_all(fd, &rh, sizeof(rh)))
            return -1;
        if (rh.len > XENSTORE_PAYLOAD_MAX) {
            errno = EPROTO;
            return -1;
        }
        if (read_all(fd, body, rh.len))
            return -1;
        body[rh.len] = '\0';
        if (rh.type == XS_WATCH_EVENT)
            continue;
        if (rh.type == XS_ERROR) {
            errno = EINVAL;
            for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]);
                 i++)
                if (!strcmp(body, xsd_errors[i].errstring))
                    errno = (int)xsd_errors[i].errnum;
            return -1;
        }
        if (rh.type != type || rh.req_id != h.req_id) {
            errno = EPROTO;
            return -1;
        }
        return 0;
    }
}

int xsd_introduce_kvm(int fd, uint32_t domid, uint64_t ring_gfn, uint32_t port,
                      int memfd, int notify_fd, int kick_fd)
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
    return request(fd, XS_INTRODUCE, payload, (uint32_t)n, fds, 3);
}

int xsd_release_domain(int fd, uint32_t domid)
{
    char payload[16];
    int n = snprintf(payload, sizeof(payload), "%u", domid) + 1;

    return request(fd, XS_RELEASE, payload, (uint32_t)n, NULL, 0);
}
