/*
 * cli.c - what xtk's command-line programs share (cli.h).
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

int cli_parse_u64(const char *s, uint64_t min, uint64_t max, int sizes,
                  uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned int shift = 0;

    errno = 0;
    v = strtoull(s, &end, 0);
    if (errno || end == s || s[0] == '-')
        return -1;
    if (sizes && *end) {
        const char *u = strchr("KMG", end[0]);
        if (!u || end[1])
            return -1;
        shift = 10 * (unsigned int)(u - "KMG" + 1);
        if (v > UINT64_MAX >> shift)
            return -1;
        v <<= shift;
    } else if (*end) {
        return -1;
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_write_report(const struct xtk_stats *st, int format, const char *path)
{
    char *text = xtk_stats_format(st, format);
    FILE *f;
    int rc = 0;

    if (!text) {
        fprintf(stderr, "%s: cannot format the report: %s\n", cli_prog,
                strerror(errno));
        return -1;
    }
    f = !path ? stderr : strcmp(path, "-") ? fopen(path, "w") : stdout;
    if (!f) {
        fprintf(stderr, "%s: %s: %s\n", cli_prog, path, strerror(errno));
        free(text);
        return -1;
    }
    if (fputs(text, f) < 0 || fflush(f) != 0)
        rc = -1;
    if (f != stdout && f != stderr && fclose(f) != 0)
        rc = -1;
    if (rc < 0)
        fprintf(stderr, "%s: writing %s: %s\n", cli_prog,
                path ? path : "stderr", strerror(errno));
    free(text);
    return rc;
}

struct xtk_ctx *cli_ctx_open(void)
{
    struct xtk_logger *lg = xtk_logger_stderr_new(
        XTK_LOG_WARN, isatty(2) ? XTK_LOGGER_PROGRESS : 0);
    struct xtk_ctx *ctx =
        lg ? xtk_ctx_open(lg, NULL, XTK_CTX_OWN_LOGGER) : NULL;

    if (!ctx) {
        fprintf(stderr, "%s: %s\n", cli_prog, strerror(errno));
        xtk_logger_destroy(lg);
    }
    return ctx;
}

int cli_split_endpoint(const char *s, int host_optional, char **host,
                       char **port)
{
    const char *colon = strrchr(s, ':');
    const char *h = s, *hend = colon;

    if (!colon) {
        if (!host_optional || !*s)
            goto bad;
        *host = NULL;
        *port = strdup(s);
        return *port ? 0 : -1;
    }
    if (s[0] == '[') { /* [v6]:port */
        h = s + 1;
        if (colon == s || colon[-1] != ']')
            goto bad;
        hend = colon - 1;
    }
    if (hend == h || !colon[1])
        goto bad;
    *host = strndup(h, (size_t)(hend - h));
    *port = strdup(colon + 1);
    if (!*host || !*port) {
        free(*host);
        free(*port);
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "%s: '%s': expected %sHOST:PORT\n", cli_prog, s,
            host_optional ? "[HOST:]PORT or " : "");
    return -1;
}

static void nodelay(int fd)
{
    int one = 1;

    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int cli_tcp_connect(const char *host, const char *port, int wait_ms)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int fd = -1, e;

    e = getaddrinfo(host, port, &hints, &res);
    if (e) {
        fprintf(stderr, "%s: %s:%s: %s\n", cli_prog, host, port,
                gai_strerror(e));
        return -1;
    }
retry:
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        e = errno;
        close(fd);
        fd = -1;
        errno = e;
    }
    if (fd < 0 && errno == ECONNREFUSED && wait_ms > 0) {
        /* Nobody listens yet: the destination may be starting. */
        struct timespec ts = {0, 20000000};

        nanosleep(&ts, NULL);
        wait_ms -= 20;
        goto retry;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot connect to %s:%s: %s\n", cli_prog, host,
                port, strerror(errno));
        return -1;
    }
    nodelay(fd);
    return fd;
}

/* SO_RCVBUF, past net.core.rmem_max where we may (CAP_NET_ADMIN). */
static int set_rcvbuf(int fd, int size)
{
    if (!setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)))
        return 0;
    return setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

int cli_tcp_accept_one(const char *host, const char *port, int timeout_ms,
                       int rcvbuf, int rcvbuf_max)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res;
    struct pollfd pfd = {.events = POLLIN};
    int lfd = -1, fd, e, one = 1;

    if (rcvbuf_max < rcvbuf)
        rcvbuf_max = rcvbuf;

    e = getaddrinfo(host, port, &hints, &res);
    if (e) {
        fprintf(stderr, "%s: %s:%s: %s\n", cli_prog, host ? host : "*", port,
                gai_strerror(e));
        return -1;
    }
    lfd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
                 res->ai_protocol);
    if (lfd < 0 ||
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (rcvbuf_max && set_rcvbuf(lfd, rcvbuf_max) < 0) ||
        bind(lfd, res->ai_addr, res->ai_addrlen) < 0 || listen(lfd, 1) < 0) {
        fprintf(stderr, "%s: cannot listen on %s:%s: %s\n", cli_prog,
                host ? host : "*", port, strerror(errno));
        freeaddrinfo(res);
        if (lfd >= 0)
            close(lfd);
        return -1;
    }
    freeaddrinfo(res);
    pfd.fd = lfd;
    do
        e = poll(&pfd, 1, timeout_ms ? timeout_ms : -1);
    while (e < 0 && errno == EINTR);
    if (e <= 0) {
        fprintf(stderr, "%s: nobody connected within %d ms\n", cli_prog,
                timeout_ms);
        close(lfd);
        return -1;
    }
    fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        fprintf(stderr, "%s: accept: %s\n", cli_prog, strerror(errno));
    else
        nodelay(fd);
    if (fd >= 0 && rcvbuf && rcvbuf != rcvbuf_max &&
        set_rcvbuf(fd, rcvbuf) < 0) {
        fprintf(stderr, "%s: SO_RCVBUF: %s\n", cli_prog, strerror(errno));
        close(fd);
        fd = -1;
    }
    close(lfd);
    return fd;
}

uint8_t *cli_read_config(const char *path, uint32_t *len, int *json)
{
    const size_t max = XTK_XL_OPTIONAL_MAX - 4;
    FILE *f = fopen(path, "rb");
    uint8_t *buf = malloc(max + 2);
    size_t n = 0, i = 0;

    if (!f || !buf) {
        fprintf(stderr, "%s: %s: %s\n", cli_prog, path, strerror(errno));
        goto fail;
    }
    n = fread(buf, 1, max + 1, f);
    if (ferror(f)) {
        fprintf(stderr, "%s: reading %s: %s\n", cli_prog, path,
                strerror(errno));
        goto fail;
    }
    while (i < n && strchr(" \t\r\n", buf[i]) && buf[i])
        i++;
    *json = i < n && buf[i] == '{';
    if (*json && n && !buf[n - 1])
        n--; /* its NUL: put back below */
    if (*json && memchr(buf, 0, n)) {
        fprintf(stderr, "%s: %s: a JSON config with a NUL inside\n", cli_prog,
                path);
        goto fail;
    }
    if (*json)
        buf[n++] = 0;
    if (n > max) {
        fprintf(stderr, "%s: %s: a config of more than %zu bytes\n", cli_prog,
                path, max);
        goto fail;
    }
    fclose(f);
    *len = (uint32_t)n;
    return buf;

fail:
    if (f)
        fclose(f);
    free(buf);
    return NULL;
}
