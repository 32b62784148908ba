/*
 * cli.c - what xtk's command-line programs share (cli.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "parse-num.h"

void cli_init(char **argv)
{
    argv[0] = (char *)cli_prog;
}

void cli_print_version(void)
{
    printf("%s %s\n", cli_prog, PACKAGE_VERSION);
}

int cli_usage_error(const char *fmt, ...)
{
    if (fmt) {
        va_list ap;

        fprintf(stderr, "%s: ", cli_prog);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    fprintf(stderr, "Try '%s --help' for more information.\n", cli_prog);
    return 2;
}

int cli_parse_u64(const char *s, uint64_t min, uint64_t max, int sizes,
                  uint64_t *out)
{
    return xtk__parse_u64(s, min, max, sizes ? XTK__NUM_SIZES : 0, out);
}

int cli_domain_name_ok(const char *n)
{
    size_t len = strlen(n), digits = 0;

    if (!len || len > XTK_DOMAIN_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (n[i] >= '0' && n[i] <= '9')
            digits++;
        else if (!(n[i] >= 'a' && n[i] <= 'z') &&
                 !(n[i] >= 'A' && n[i] <= 'Z') && !strchr("_.-", n[i]))
            return 0;
    }
    return digits != len;
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
        *host = *port = NULL;
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

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One connect to ai, given at most ms: the socket, or -1 and errno. */
static int connect_within(const struct addrinfo *ai, int64_t ms)
{
    struct pollfd pfd = {.events = POLLOUT};
    int fd, e, r;
    socklen_t len = sizeof(e);

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        goto connected;
    if (errno != EINPROGRESS)
        goto fail;
    pfd.fd = fd;
    do
        r = poll(&pfd, 1, ms > INT32_MAX ? INT32_MAX : (int)ms);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        errno = ETIMEDOUT;
    if (r <= 0)
        goto fail;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        goto fail;
    if (e) {
        errno = e;
        goto fail;
    }
connected:
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
        goto fail;
    return fd;
fail:
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

int cli_addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a =
            &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) ||
               (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return 0;
}

int cli_tcp_connect(const char *host, const char *port, int wait_ms,
                    int secured)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    int64_t deadline = now_ms() + (wait_ms > 0 ? wait_ms : 0);
    int fd = -1, e;

    e = getaddrinfo(host, port, &hints, &res);
    if (e) {
        fprintf(stderr, "%s: %s:%s: %s\n", cli_prog, host, port,
                gai_strerror(e));
        return -1;
    }
    for (;;) {
        for (ai = res; ai && fd < 0; ai = ai->ai_next) {
            int64_t left = deadline - now_ms();

            fd = connect_within(ai, left > 0 ? left : 0);
        }
        if (fd >= 0 || errno != ECONNREFUSED || now_ms() + 20 > deadline)
            break;
        /* Nobody listens yet: the destination may be starting. */
        nanosleep(&(struct timespec){0, 20000000}, NULL);
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (wait_ms > 0 && (errno == ECONNREFUSED || errno == ETIMEDOUT))
            fprintf(stderr, "%s: cannot connect to %s:%s within %d ms: %s\n",
                    cli_prog, host, port, wait_ms, strerror(errno));
        else
            fprintf(stderr, "%s: cannot connect to %s:%s: %s\n", cli_prog, host,
                    port, strerror(errno));
        return -1;
    }
    nodelay(fd);
    {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);

        if (!secured && getpeername(fd, (struct sockaddr *)&peer, &len) == 0 &&
            !cli_addr_is_loopback((struct sockaddr *)&peer))
            fprintf(stderr,
                    "%s: warning: the stream to %s:%s is neither "
                    "authenticated nor encrypted (see SECURITY in "
                    "xtk-save(1))\n",
                    cli_prog, host, port);
    }
    return fd;
}

/* SO_RCVBUF, past net.core.rmem_max where we may (CAP_NET_ADMIN). */
static int set_rcvbuf(int fd, int size)
{
    if (!setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)))
        return 0;
    return setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

int cli_port_ok(const char *port, int zero_ok)
{
    uint64_t v;

    if (cli_parse_u64(port, zero_ok ? 0 : 1, 65535, 0, &v) < 0 ||
        !(port[0] >= '0' && port[0] <= '9')) {
        fprintf(stderr, "%s: bad port '%s' (%s to 65535)\n", cli_prog, port,
                zero_ok ? "0 for any free one, or 1" : "1");
        return 0;
    }
    return 1;
}

int cli_tcp_listen(const char *host, const char *port, int rcvbuf_max,
                   int secured, char *where, size_t where_len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    struct sockaddr_storage ss;
    socklen_t sslen = sizeof(ss);
    char h[NI_MAXHOST], p[NI_MAXSERV];
    int lfd = -1, e, one = 1;

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
    /* What was bound: the port the kernel chose for 0. */
    if (getsockname(lfd, (struct sockaddr *)&ss, &sslen) < 0 ||
        getnameinfo((struct sockaddr *)&ss, sslen, h, sizeof(h), p, sizeof(p),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        fprintf(stderr, "%s: cannot tell where it listens: %s\n", cli_prog,
                strerror(errno));
        close(lfd);
        return -1;
    }
    snprintf(where, where_len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
             h, p);
    if (!secured && !cli_addr_is_loopback((struct sockaddr *)&ss))
        fprintf(stderr,
                "%s: warning: listening on %s, where any host that can "
                "reach it can send a domain here: the stream is neither "
                "authenticated nor encrypted (see SECURITY in "
                "xtk-restore(1))\n",
                cli_prog, where);
    return lfd;
}

int cli_tcp_accept(int lfd, int timeout_ms, int rcvbuf, int rcvbuf_max)
{
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    int fd, e;

    if (rcvbuf_max < rcvbuf)
        rcvbuf_max = rcvbuf;
    do
        e = poll(&pfd, 1, timeout_ms ? timeout_ms : -1);
    while (e < 0 && errno == EINTR);
    if (e <= 0) {
        fprintf(stderr, "%s: nobody connected within %d ms\n", cli_prog,
                timeout_ms);
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
