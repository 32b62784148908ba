/*
 * xsd-bench.c - xsd-lite's benchmarks, each against a running daemon
 * (bench/xsd-lite.sh starts one and runs them all):
 *
 *   rtt SOCK [N [PID]]       READ round trip of a small node, p50/p99, next
 *                            to a raw Unix-socket echo server (the floor)
 *                            measured in the same run, one of each in turn;
 *                            with the daemon's PID, both servers pinned on
 *                            the client's other core, then on its own
 *   mix SOCK [SECONDS]       16 clients, 80% READ / 20% WRITE: ops/s, p99
 *   storm SOCK [CLIENTS]     the VM-start storm: each client creates a
 *                            domain in one transaction (~20 nodes under
 *                            /local/domain/N and /vm/<uuid>), watches it,
 *                            then removes it in another; EAGAIN retried
 *   fanout SOCK [WATCHERS [REPEATS]]  one write, time to the last event
 *   memory SOCK PID [NODES]  bytes of daemon RSS per node
 *
 * Output: one line of "key=value" figures per benchmark.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "xsd/xsdt.h"

#define HDR sizeof(struct xsd_sockmsg)

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* The q-quantile (0..1) of n samples, sorted in place. */
static double quantile(uint64_t *v, size_t n, double q)
{
    size_t i;

    if (!n)
        return 0;
    qsort(v, n, sizeof(*v), cmp_u64);
    i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)v[i];
}

static int connect_to(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    strcpy(sa.sun_path, path);
    TEST_ASSERT(fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa)),
                "connect %s", path);
    return fd;
}

static void write_all(int fd, const void *buf, size_t n)
{
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, (const char *)buf + off, n - off);

        TEST_ASSERT(w > 0, "write");
        off += (size_t)w;
    }
}

/* A buffered reader: one read() usually brings a whole reply, and what
 * comes after it (an event) is kept for the next call. */
struct rd {
    int fd;
    size_t have;
    char buf[2 * (HDR + XENSTORE_PAYLOAD_MAX)];
};

/* The next whole message (blocking): its header, payload copied to out. */
static struct xsd_sockmsg next_msg(struct rd *r, char *out)
{
    struct xsd_sockmsg h = {0};

    for (;;) {
        if (r->have >= HDR) {
            memcpy(&h, r->buf, HDR);
            TEST_ASSERT(h.len <= XENSTORE_PAYLOAD_MAX, "reply of %u bytes",
                        h.len);
            if (r->have >= HDR + h.len)
                break;
        }
        ssize_t n = read(r->fd, r->buf + r->have, sizeof(r->buf) - r->have);

        TEST_ASSERT(n > 0, "read");
        r->have += (size_t)n;
    }
    memcpy(out, r->buf + HDR, h.len);
    memmove(r->buf, r->buf + HDR + h.len, r->have - HDR - h.len);
    r->have -= HDR + h.len;
    return h;
}

static struct rd *rd_new(int fd)
{
    struct rd *r = calloc(1, sizeof(*r));

    TEST_ASSERT(r, "calloc");
    r->fd = fd;
    return r;
}

/* One request, one reply, on a blocking socket. */
static struct xsd_sockmsg call(struct rd *r, const char *req, size_t n,
                               char *out)
{
    write_all(r->fd, req, n);
    return next_msg(r, out);
}

static size_t build(char *out, uint32_t type, uint32_t tx, const char *p,
                    uint32_t len)
{
    struct xsd_sockmsg h = {type, 0, tx, len};

    memcpy(out, &h, HDR);
    memcpy(out + HDR, p, len);
    return HDR + len;
}

/* ---- rtt ------------------------------------------------------------------
 */

/*
 * The floor: an event loop like xsd-lite's (epoll, a non-blocking socket)
 * that does nothing but frame each request and answer it with a reply as
 * big as xsd-lite's READ of a one-byte node.  One client.
 */
static void echo_server(int lfd)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK), ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    char buf[HDR + XENSTORE_PAYLOAD_MAX];
    size_t have = 0;

    if (fd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
        _exit(1);
    for (;;) {
        ssize_t r;

        if (epoll_wait(ep, &ev, 1, -1) != 1)
            continue;
        r = read(fd, buf + have, sizeof(buf) - have);
        if (r == 0)
            _exit(0);
        if (r < 0)
            continue;
        have += (size_t)r;
        while (have >= HDR) {
            struct xsd_sockmsg h;
            char reply[HDR + 1];

            memcpy(&h, buf, HDR);
            if (have < HDR + h.len)
                break;
            memmove(buf, buf + HDR + h.len, have - HDR - h.len);
            have -= HDR + h.len;
            h.len = 1;
            memcpy(reply, &h, HDR);
            reply[HDR] = 'x';
            if (write(fd, reply, sizeof(reply)) != sizeof(reply))
                _exit(1);
        }
    }
}

/* Pins pid (0: this process) to cpu, or to every cpu if cpu < 0. */
static void pin(pid_t pid, int cpu)
{
    cpu_set_t set;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

    CPU_ZERO(&set);
    for (long i = 0; i < ncpu; i++)
        if (cpu < 0 || i == cpu)
            CPU_SET((int)i, &set);
    TEST_ASSERT(!sched_setaffinity(pid, sizeof(set), &set), "pin %d to %d",
                (int)pid, cpu);
}

/*
 * One run of n round trips to each, alternating.  Where the two servers
 * run against the client decides the round trip more than either server
 * does (a wake-up on an idle other core costs tens of microseconds in a
 * VM), so with the daemon's pid both servers are pinned alike: both on
 * the other core ("cross"), then all three on one core ("same").
 */
static void rtt_pass(const char *placement, struct rd *er, struct rd *xr, int n,
                     uint64_t *es, uint64_t *xs)
{
    char req[64], buf[8192];
    size_t rn = build(req, XS_READ, 0, "/bench/rtt", 11);

    for (int i = 0; i < 2000; i++) { /* warm both up */
        call(xr, req, rn, buf);
        call(er, req, rn, buf);
    }
    /* Alternate one by one, so that both see the same machine. */
    for (int i = 0; i < n; i++) {
        uint64_t t = now_ns();
        struct xsd_sockmsg h;

        call(er, req, rn, buf);
        es[i] = now_ns() - t;
        t = now_ns();
        h = call(xr, req, rn, buf);
        xs[i] = now_ns() - t;
        TEST_ASSERT(h.type == XS_READ && h.len == 1 && buf[0] == 'x',
                    "READ /bench/rtt");
    }
    {
        double e50 = quantile(es, (size_t)n, 0.5),
               e99 = quantile(es, (size_t)n, 0.99);
        double x50 = quantile(xs, (size_t)n, 0.5),
               x99 = quantile(xs, (size_t)n, 0.99);

        printf("rtt placement=%s n=%d echo_p50_us=%.1f echo_p99_us=%.1f "
               "xsd_p50_us=%.1f xsd_p99_us=%.1f ratio_p50=%.2f "
               "ratio_p99=%.2f\n",
               placement, n, e50 / 1e3, e99 / 1e3, x50 / 1e3, x99 / 1e3,
               x50 / e50, x99 / e99);
    }
}

static int bench_rtt(const char *sock, int n, pid_t daemon)
{
    char dir[] = "/tmp/xsd-echo.XXXXXX", path[64], req[64], buf[8192];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    uint64_t *xs = calloc((size_t)n, 8), *es = calloc((size_t)n, 8);
    int lfd, efd, xfd;
    struct rd *er, *xr;
    size_t rn;
    pid_t pid;

    TEST_ASSERT(xs && es && mkdtemp(dir), "setup");
    snprintf(path, sizeof(path), "%s/echo", dir);
    strcpy(sa.sun_path, path);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    TEST_ASSERT(lfd >= 0 && !bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) &&
                    !listen(lfd, 1),
                "echo socket");
    pid = fork();
    if (pid == 0)
        echo_server(lfd);
    close(lfd);
    efd = connect_to(path);
    xfd = connect_to(sock);
    er = rd_new(efd);
    xr = rd_new(xfd);
    rn = build(req, XS_WRITE, 0, "/bench/rtt\0x", 12);
    TEST_ASSERT(call(xr, req, rn, buf).type == XS_WRITE, "write /bench/rtt");
    if (daemon > 0 && sysconf(_SC_NPROCESSORS_ONLN) >= 2) {
        pin(0, 0);
        pin(pid, 1);
        pin(daemon, 1);
        rtt_pass("cross", er, xr, n, es, xs);
        pin(pid, 0);
        pin(daemon, 0);
        rtt_pass("same", er, xr, n, es, xs);
        pin(0, -1);
        pin(daemon, -1);
    } else {
        rtt_pass("any", er, xr, n, es, xs);
    }
    close(efd);
    close(xfd);
    free(er);
    free(xr);
    waitpid(pid, NULL, 0);
    unlink(path);
    rmdir(dir);
    free(xs);
    free(es);
    return 0;
}

/* ---- mix ------------------------------------------------------------------
 */

#define MIX_CLIENTS 16
#define MIX_KEYS 1000
struct mixer {
    const char *sock;
    double seconds;
    unsigned int seed;
    uint64_t *lat;
    size_t n, cap;
};

static void *mix_main(void *arg)
{
    struct mixer *m = arg;
    int fd = connect_to(m->sock);
    struct rd *rdr = rd_new(fd);
    char req[128], buf[8192], p[64];
    uint64_t end = now_ns() + (uint64_t)(m->seconds * 1e9);

    while (now_ns() < end) {
        unsigned int r = (unsigned)rand_r(&m->seed);
        int k = (int)(r % MIX_KEYS), len;
        bool write_op = (r >> 16) % 100 < 20;
        size_t rn;
        uint64_t t;

        len = snprintf(p, sizeof(p), "/bench/mix/k%d", k) + 1;
        if (write_op) {
            memcpy(p + len, "value-of-a-few-bytes", 20);
            rn = build(req, XS_WRITE, 0, p, (uint32_t)len + 20);
        } else {
            rn = build(req, XS_READ, 0, p, (uint32_t)len);
        }
        t = now_ns();
        TEST_ASSERT(call(rdr, req, rn, buf).type != XS_ERROR, "mix request");
        if (m->n == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 65536;
            m->lat = realloc(m->lat, m->cap * sizeof(*m->lat));
            TEST_ASSERT(m->lat, "realloc");
        }
        m->lat[m->n++] = now_ns() - t;
    }
    close(fd);
    free(rdr);
    return NULL;
}

static int bench_mix(const char *sock, double seconds)
{
    struct mixer m[MIX_CLIENTS] = {{0}};
    pthread_t thr[MIX_CLIENTS];
    char req[128], buf[8192], p[64];
    int fd = connect_to(sock);
    struct rd *rdr = rd_new(fd);
    uint64_t *all;
    size_t total = 0;

    for (int k = 0; k < MIX_KEYS; k++) {
        int len = snprintf(p, sizeof(p), "/bench/mix/k%d", k) + 1;

        memcpy(p + len, "initial", 7);
        call(rdr, req, build(req, XS_WRITE, 0, p, (uint32_t)len + 7), buf);
    }
    close(fd);
    free(rdr);
    for (int i = 0; i < MIX_CLIENTS; i++) {
        m[i] = (struct mixer){sock, seconds, 1234u + (unsigned)i, NULL, 0, 0};
        TEST_ASSERT(!pthread_create(&thr[i], NULL, mix_main, &m[i]), "thread");
    }
    for (int i = 0; i < MIX_CLIENTS; i++) {
        pthread_join(thr[i], NULL);
        total += m[i].n;
    }
    all = malloc(total * sizeof(*all));
    TEST_ASSERT(all, "malloc");
    total = 0;
    for (int i = 0; i < MIX_CLIENTS; i++) {
        memcpy(all + total, m[i].lat, m[i].n * sizeof(*all));
        total += m[i].n;
        free(m[i].lat);
    }
    printf("mix clients=%d seconds=%.1f ops=%zu ops_per_s=%.0f p50_us=%.1f "
           "p99_us=%.1f\n",
           MIX_CLIENTS, seconds, total, (double)total / seconds,
           quantile(all, total, 0.5) / 1e3, quantile(all, total, 0.99) / 1e3);
    free(all);
    return 0;
}

/* ---- storm ----------------------------------------------------------------
 */

struct stormer {
    const char *sock;
    int domid;
    pthread_barrier_t *go;
    int retries;
    uint64_t done_ns;
};

/* A transaction, retried on EAGAIN; each retry counted.  fill() issues its
 * requests with the transaction id. */
static void transaction(struct xsdt_client *c, struct stormer *s,
                        void (*fill)(struct xsdt_client *, uint32_t,
                                     struct stormer *))
{
    for (;;) {
        uint32_t t = xsdt_txn(c);
        const char *r;

        fill(c, t, s);
        r = xsdt_req(c, XS_TRANSACTION_END, t, "T", NULL);
        if (!strcmp(r, "OK"))
            return;
        TEST_ASSERT(!strcmp(r, "EAGAIN"), "commit: %s", r);
        s->retries++;
    }
}

static void uuid_of(int domid, char *out)
{
    snprintf(out, 40, "4f3d2a1c-0000-4000-8000-%012d", domid);
}

/* What a toolstack writes to create a domain (after libxl's
 * domain_make and the first devices). */
static void create_domain(struct xsdt_client *c, uint32_t t, struct stormer *s)
{
    static const char *const dom_keys[][2] = {
        {"name", "guest"},
        {"domid", NULL},
        {"vm", NULL},
        {"control/shutdown", ""},
        {"control/platform-feature-multiprocessor-suspend", "1"},
        {"memory/static-max", "262144"},
        {"memory/target", "262144"},
        {"cpu/0/availability", "online"},
        {"cpu/1/availability", "online"},
        {"device/vbd/768/backend", "/local/domain/0/backend/vbd"},
        {"device/vbd/768/state", "1"},
        {"device/vif/0/backend", "/local/domain/0/backend/vif"},
        {"device/vif/0/state", "1"},
        {"console/ring-ref", "2"},
    };
    static const char *const vm_keys[][2] = {
        {"name", "guest"},        {"uuid", NULL},
        {"image/ostype", "pvh"},  {"start_time", "1.0"},
        {"on_reboot", "restart"}, {"on_poweroff", "destroy"},
    };
    char home[32], vm[64], path[160], reader[16], uuid[40];
    const char *r;

    snprintf(home, sizeof(home), "/local/domain/%d", s->domid);
    uuid_of(s->domid, uuid);
    snprintf(vm, sizeof(vm), "/vm/%s", uuid);
    /* dom0 owns the home and the domain reads it, as libxl sets it: an
     * owner must be a domain that exists (xenstored refuses one that does
     * not with ENOENT, and these domains are not real), while an entry
     * naming one is accepted (and ignored). */
    snprintf(reader, sizeof(reader), "r%d", s->domid);
    r = xsdt_read(c, t, home);
    TEST_ASSERT(!strcmp(r, "ENOENT"), "%s exists already: %s", home, r);
    XSDT_EXPECT(xsdt_req(c, XS_MKDIR, t, home, NULL), "OK");
    XSDT_EXPECT(xsdt_req(c, XS_SET_PERMS, t, home, "n0", reader, NULL), "OK");
    XSDT_EXPECT(xsdt_req(c, XS_MKDIR, t, vm, NULL), "OK");
    for (size_t i = 0; i < sizeof(dom_keys) / sizeof(dom_keys[0]); i++) {
        char v[64];

        snprintf(path, sizeof(path), "%s/%s", home, dom_keys[i][0]);
        if (!dom_keys[i][1])
            snprintf(v, sizeof(v), "%s",
                     !strcmp(dom_keys[i][0], "vm") ? vm : home + 14);
        XSDT_EXPECT(xsdt_write(c, t, path, dom_keys[i][1] ? dom_keys[i][1] : v),
                    "OK");
    }
    for (size_t i = 0; i < sizeof(vm_keys) / sizeof(vm_keys[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", vm, vm_keys[i][0]);
        XSDT_EXPECT(
            xsdt_write(c, t, path, vm_keys[i][1] ? vm_keys[i][1] : uuid), "OK");
    }
}

static void destroy_domain(struct xsdt_client *c, uint32_t t, struct stormer *s)
{
    char path[64], uuid[40];

    snprintf(path, sizeof(path), "/local/domain/%d", s->domid);
    XSDT_EXPECT(xsdt_req(c, XS_RM, t, path, NULL), "OK");
    uuid_of(s->domid, uuid);
    snprintf(path, sizeof(path), "/vm/%s", uuid);
    XSDT_EXPECT(xsdt_req(c, XS_RM, t, path, NULL), "OK");
}

static void *storm_main(void *arg)
{
    struct stormer *s = arg;
    struct xsdt_client c;
    struct xsdt_msg m;
    char path[64];

    TEST_ASSERT(!xsdt_connect(&c, s->sock), "connect");
    pthread_barrier_wait(s->go);
    transaction(&c, s, create_domain);
    snprintf(path, sizeof(path), "/local/domain/%d/control/shutdown", s->domid);
    XSDT_EXPECT(xsdt_req(&c, XS_WATCH, 0, path, "shutdown", NULL), "OK");
    TEST_ASSERT(!xsdt_event(&c, &m, 10000), "initial event");
    transaction(&c, s, destroy_domain);
    /* The removal fires the watch. */
    TEST_ASSERT(!xsdt_event(&c, &m, 10000), "removal event");
    s->done_ns = now_ns();
    xsdt_close(&c);
    return NULL;
}

static int bench_storm(const char *sock, int n)
{
    struct stormer *s = calloc((size_t)n, sizeof(*s));
    pthread_t *thr = calloc((size_t)n, sizeof(*thr));
    pthread_barrier_t go;
    pthread_attr_t attr;
    uint64_t start, last = 0;
    int retries = 0;

    TEST_ASSERT(s && thr, "calloc");
    pthread_barrier_init(&go, NULL, (unsigned)n + 1);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (int i = 0; i < n; i++) {
        s[i] = (struct stormer){sock, 100 + i, &go, 0, 0};
        TEST_ASSERT(!pthread_create(&thr[i], &attr, storm_main, &s[i]),
                    "thread %d", i);
    }
    pthread_barrier_wait(&go);
    start = now_ns();
    for (int i = 0; i < n; i++) {
        pthread_join(thr[i], NULL);
        retries += s[i].retries;
        if (s[i].done_ns > last)
            last = s[i].done_ns;
    }
    printf("storm clients=%d nodes_per_domain=%d total_ms=%.1f "
           "eagain_retries=%d\n",
           n, 22, (double)(last - start) / 1e6, retries);
    pthread_barrier_destroy(&go);
    free(s);
    free(thr);
    return 0;
}

/* ---- fanout ---------------------------------------------------------------
 */

static int bench_fanout(const char *sock, int watchers, int repeats)
{
    int *fds = calloc((size_t)watchers, sizeof(int));
    struct rd **rds = calloc((size_t)watchers, sizeof(*rds));
    uint64_t *lat = calloc((size_t)repeats, sizeof(uint64_t));
    int ep = epoll_create1(EPOLL_CLOEXEC), wfd = connect_to(sock);
    char req[128], buf[8192];
    struct epoll_event *evs = calloc((size_t)watchers, sizeof(*evs));

    struct rd *wr = rd_new(wfd);

    TEST_ASSERT(fds && rds && lat && evs && ep >= 0, "setup");
    for (int i = 0; i < watchers; i++) {
        fds[i] = connect_to(sock);
        rds[i] = rd_new(fds[i]);
        TEST_ASSERT(call(rds[i], req,
                         build(req, XS_WATCH, 0, "/bench/fan\0tok", 15), buf)
                            .type == XS_WATCH,
                    "watch");
        next_msg(rds[i], buf); /* the initial event */
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};

        TEST_ASSERT(!epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev), "epoll_ctl");
    }
    for (int r = 0; r < repeats; r++) {
        size_t rn = build(req, XS_WRITE, 0, "/bench/fan/x\0v", 14);
        int got = 0;
        uint64_t t0 = now_ns();

        write_all(wfd, req, rn);
        while (got < watchers) {
            int n = epoll_wait(ep, evs, watchers, 10000);

            TEST_ASSERT(n > 0, "events missing: %d of %d", got, watchers);
            for (int i = 0; i < n; i++) {
                struct xsd_sockmsg h = next_msg(rds[evs[i].data.u32], buf);

                TEST_ASSERT(h.type == XS_WATCH_EVENT, "not an event");
                got++;
            }
        }
        lat[r] = now_ns() - t0;
        next_msg(wr, buf); /* the writer's OK */
    }
    printf("fanout watchers=%d repeats=%d last_event_p50_ms=%.2f "
           "last_event_p99_ms=%.2f\n",
           watchers, repeats, quantile(lat, (size_t)repeats, 0.5) / 1e6,
           quantile(lat, (size_t)repeats, 0.99) / 1e6);
    for (int i = 0; i < watchers; i++) {
        close(fds[i]);
        free(rds[i]);
    }
    free(rds);
    free(wr);
    close(wfd);
    close(ep);
    free(fds);
    free(lat);
    free(evs);
    return 0;
}

/* ---- memory ---------------------------------------------------------------
 */

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    TEST_ASSERT(f, "%s", path);
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static int bench_memory(const char *sock, pid_t pid, long nodes)
{
    enum { WINDOW = 512 };
    int fd = connect_to(sock);
    char *req = malloc(WINDOW * 64), buf[8192];
    long before = rss_kb(pid), after, sent = 0, acked = 0, bytes = 0;
    uint64_t t0 = now_ns();

    TEST_ASSERT(req, "malloc");
    /* /bench/mem/<1000 dirs>/<leaf>: a 1000-way tree of short paths. */
    while (acked < nodes) {
        size_t n = 0;

        while (sent < nodes && sent - acked < WINDOW) {
            char p[64];
            int len = snprintf(p, sizeof(p), "/bench/mem/d%03ld/n%04ld",
                               sent % 1000, sent / 1000) +
                      1;

            memcpy(p + len, "v", 1);
            n += build(req + n, XS_WRITE, 0, p, (uint32_t)len + 1);
            sent++;
        }
        if (n)
            write_all(fd, req, n);
        /* Count what came back: every reply is the 19 bytes of "OK". */
        {
            ssize_t r = read(fd, buf, sizeof(buf));

            TEST_ASSERT(r > 0, "write replies");
            bytes += r;
            acked = bytes / (long)(HDR + 3);
        }
    }
    after = rss_kb(pid);
    printf("memory nodes=%ld path_len=%d rss_before_kb=%ld rss_after_kb=%ld "
           "bytes_per_node=%.0f create_s=%.2f\n",
           nodes, 21, before, after,
           (double)(after - before) * 1024.0 / (double)nodes,
           (double)(now_ns() - t0) / 1e9);
    free(req);
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    const char *what = argc > 2 ? argv[1] : "";

    signal(SIGPIPE, SIG_IGN);
    xsdt_raise_fd_limit();
    if (!strcmp(what, "rtt"))
        return bench_rtt(argv[2], argc > 3 ? atoi(argv[3]) : 50000,
                         argc > 4 ? (pid_t)atoi(argv[4]) : 0);
    if (!strcmp(what, "mix"))
        return bench_mix(argv[2], argc > 3 ? atof(argv[3]) : 3.0);
    if (!strcmp(what, "storm"))
        return bench_storm(argv[2], argc > 3 ? atoi(argv[3]) : 300);
    if (!strcmp(what, "fanout"))
        return bench_fanout(argv[2], argc > 3 ? atoi(argv[3]) : 1000,
                            argc > 4 ? atoi(argv[4]) : 200);
    if (!strcmp(what, "memory") && argc > 3)
        return bench_memory(argv[2], (pid_t)atoi(argv[3]),
                            argc > 4 ? atol(argv[4]) : 1000000);
    fprintf(stderr, "usage: xsd-bench rtt|mix|storm|fanout SOCK [ARGS]\n"
                    "       xsd-bench memory SOCK PID [NODES]\n");
    return 2;
}
