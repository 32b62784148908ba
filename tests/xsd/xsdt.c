/*
 * xsdt.c - xsd-lite's test helpers.  See xsdt.h.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"
#include "xsdt.h"

#define HDR sizeof(struct xsd_sockmsg)

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the daemon ---------------------------------------------------------- */

const char *xsdt_binary(void)
{
    static char path[4096];
    const char *b = getenv("XSD_LITE"), *top = getenv("top_builddir");

    if (b)
        return b;
    snprintf(path, sizeof(path), "%s/xsd-lite/xsd-lite", top ? top : ".");
    return path;
}

void xsdt_raise_fd_limit(void)
{
    struct rlimit rl;

    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void dump_log(const struct xsdt_daemon *d)
{
    char cmd[256];

    snprintf(cmd, sizeof(cmd), "tail -n 30 %s >&2", d->log);
    if (system(cmd))
        fprintf(stderr, "(no log)\n");
}

/* A failed test exits at once: its daemons must not outlive it. */
static pid_t started[16];

static void kill_started(void)
{
    for (int i = 0; i < 16; i++)
        if (started[i] > 0)
            kill(started[i], SIGKILL);
}

static void remember(pid_t pid, bool add)
{
    static bool registered;

    if (!registered)
        registered = !atexit(kill_started);
    for (int i = 0; i < 16; i++) {
        if (add && !started[i]) {
            started[i] = pid;
            return;
        }
        if (!add && started[i] == pid)
            started[i] = 0;
    }
}

void xsdt_daemon_start(struct xsdt_daemon *d, ...)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const char *argv[64];
    int argc = 0, nfd;
    char notify[128], buf[256];
    int64_t deadline;
    va_list ap;

    memset(d, 0, sizeof(*d));
    strcpy(d->dir, "/tmp/xsdt.XXXXXX");
    TEST_ASSERT(mkdtemp(d->dir), "mkdtemp");
    snprintf(d->sock, sizeof(d->sock), "%s/sock", d->dir);
    snprintf(d->ro, sizeof(d->ro), "%s/sock_ro", d->dir);
    snprintf(d->log, sizeof(d->log), "%s/log", d->dir);
    snprintf(notify, sizeof(notify), "%s/notify", d->dir);
    strcpy(sa.sun_path, notify);
    nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    TEST_ASSERT(nfd >= 0 && !bind(nfd, (struct sockaddr *)&sa, sizeof(sa)),
                "notify socket");

    argv[argc++] = xsdt_binary();
    argv[argc++] = "-N";
    argv[argc++] = "-s";
    argv[argc++] = d->sock;
    argv[argc++] = "-l";
    argv[argc++] = "debug";
    argv[argc++] = "-L";
    argv[argc++] = d->log;
    va_start(ap, d);
    for (const char *a; (a = va_arg(ap, const char *)) && argc < 62;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;

    d->pid = fork();
    TEST_ASSERT(d->pid >= 0, "fork");
    if (d->pid == 0) {
        setenv("NOTIFY_SOCKET", notify, 1);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    remember(d->pid, true);
    deadline = now_ms() + 10000;
    for (;;) {
        struct pollfd p = {nfd, POLLIN, 0};
        int64_t left = deadline - now_ms();
        ssize_t n;
        int st;

        if (waitpid(d->pid, &st, WNOHANG) == d->pid) {
            dump_log(d);
            TEST_ASSERT(0, "xsd-lite exited before it was ready (status %d)",
                        st);
        }
        TEST_ASSERT(left > 0, "xsd-lite not ready within 10 s");
        if (poll(&p, 1, left > 100 ? 100 : (int)left) != 1)
            continue;
        n = recv(nfd, buf, sizeof(buf) - 1, 0);
        if (n > 0) {
            buf[n] = '\0';
            if (strstr(buf, "READY=1"))
                break;
        }
    }
    close(nfd);
}

int xsdt_daemon_fds(const struct xsdt_daemon *d)
{
    char path[64];
    DIR *dir;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)d->pid);
    dir = opendir(path);
    TEST_ASSERT(dir, "%s", path);
    while (readdir(dir))
        n++;
    closedir(dir);
    return n;
}

void xsdt_daemon_stop(struct xsdt_daemon *d, bool keep)
{
    int64_t deadline = now_ms() + 20000;
    char cmd[160];
    int st;

    TEST_ASSERT(!kill(d->pid, SIGTERM), "kill");
    while (waitpid(d->pid, &st, WNOHANG) != d->pid) {
        if (now_ms() > deadline) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &st, 0);
            remember(d->pid, false);
            dump_log(d);
            TEST_ASSERT(0, "xsd-lite did not exit on SIGTERM");
        }
        usleep(10000);
    }
    remember(d->pid, false);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        dump_log(d);
        TEST_ASSERT(0, "xsd-lite exited with status 0x%x", st);
    }
    if (!keep) {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
        TEST_ASSERT(!system(cmd), "%s", cmd);
    }
}

/* ---- raw clients ----------------------------------------------------------
 */

int xsdt_connect(struct xsdt_client *c, const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    memset(c, 0, sizeof(*c));
    strcpy(sa.sun_path, path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa))) {
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    c->next_req = 1;
    return 0;
}

void xsdt_close(struct xsdt_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->ev);
    c->ev = NULL;
    c->nev = 0;
}

void xsdt_send(struct xsdt_client *c, uint32_t type, uint32_t req_id,
               uint32_t tx, const void *payload, uint32_t len)
{
    char buf[HDR + XENSTORE_PAYLOAD_MAX + 64];
    struct xsd_sockmsg h = {type, req_id, tx, len};
    size_t n = HDR + len, off = 0;

    TEST_ASSERT(len <= sizeof(buf) - HDR, "payload too big for the helper");
    memcpy(buf, &h, HDR);
    memcpy(buf + HDR, payload, len);
    while (off < n) {
        ssize_t w = send(c->fd, buf + off, n - off, MSG_NOSIGNAL);

        TEST_ASSERT(w > 0, "send");
        off += (size_t)w;
    }
}

/* Reads exactly n bytes within the deadline: 0, or -1. */
static int read_exact(int fd, void *buf, size_t n, int64_t deadline)
{
    for (size_t got = 0; got < n;) {
        struct pollfd p = {fd, POLLIN, 0};
        int64_t left = deadline - now_ms();
        ssize_t r;

        if (left <= 0 || poll(&p, 1, (int)left) != 1) {
            errno = ETIMEDOUT;
            return -1;
        }
        r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) {
            if (r == 0)
                errno = ECONNRESET;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

int xsdt_recv(struct xsdt_client *c, struct xsdt_msg *m, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;

    if (read_exact(c->fd, &m->h, HDR, deadline))
        return -1;
    TEST_ASSERT(m->h.len <= XENSTORE_PAYLOAD_MAX, "reply of %u bytes",
                m->h.len);
    if (read_exact(c->fd, m->body, m->h.len, deadline))
        return -1;
    m->body[m->h.len] = '\0';
    return 0;
}

static void keep_event(struct xsdt_client *c, const struct xsdt_msg *m)
{
    if (!c->ev) {
        c->ev = calloc(XSDT_MAX_EVENTS, sizeof(*c->ev));
        TEST_ASSERT(c->ev, "calloc");
    }
    TEST_ASSERT(c->nev < XSDT_MAX_EVENTS, "too many unread events");
    c->ev[c->nev++] = *m;
}

void xsdt_rpc(struct xsdt_client *c, uint32_t type, uint32_t tx,
              const void *payload, uint32_t len, struct xsdt_msg *reply)
{
    uint32_t id = c->next_req++;

    xsdt_send(c, type, id, tx, payload, len);
    for (;;) {
        TEST_ASSERT(!xsdt_recv(c, reply, 10000),
                    "no reply to a request of type %u", type);
        if (reply->h.type == XS_WATCH_EVENT) {
            keep_event(c, reply);
            continue;
        }
        TEST_ASSERT(reply->h.req_id == id && reply->h.tx_id == tx,
                    "reply ids %u/%u for request %u/%u", reply->h.req_id,
                    reply->h.tx_id, id, tx);
        TEST_ASSERT(reply->h.type == type || reply->h.type == XS_ERROR,
                    "reply type %u to request type %u", reply->h.type, type);
        return;
    }
}

int xsdt_event(struct xsdt_client *c, struct xsdt_msg *m, int timeout_ms)
{
    if (c->nev) {
        *m = c->ev[0];
        memmove(c->ev, c->ev + 1, (size_t)--c->nev * sizeof(*c->ev));
        return 0;
    }
    if (xsdt_recv(c, m, timeout_ms))
        return -1;
    TEST_ASSERT(m->h.type == XS_WATCH_EVENT, "message of type %u, not an event",
                m->h.type);
    return 0;
}

static uint32_t vstrings(char *buf, size_t size, va_list ap)
{
    size_t n = 0;

    for (const char *s; (s = va_arg(ap, const char *));) {
        size_t l = strlen(s) + 1;

        TEST_ASSERT(n + l <= size, "payload too big");
        memcpy(buf + n, s, l);
        n += l;
    }
    return (uint32_t)n;
}

uint32_t xsdt_strings(char *buf, size_t size, ...)
{
    va_list ap;
    uint32_t n;

    va_start(ap, size);
    n = vstrings(buf, size, ap);
    va_end(ap);
    return n;
}

/* The reply as a string: payload or error name. */
static const char *answer(const struct xsdt_msg *m)
{
    static __thread char out[XENSTORE_PAYLOAD_MAX + 1];

    memcpy(out, m->body, m->h.len + 1);
    return out;
}

/* Either kind of client: a socket or a guest. */
typedef void rpc_fn(void *who, uint32_t type, uint32_t tx, const void *payload,
                    uint32_t len, struct xsdt_msg *reply);

static const char *vreq(rpc_fn *rpc, void *who, uint32_t type, uint32_t tx,
                        va_list ap)
{
    static __thread struct xsdt_msg m;
    char buf[XENSTORE_PAYLOAD_MAX + 64];
    uint32_t n = vstrings(buf, sizeof(buf), ap);

    rpc(who, type, tx, buf, n, &m);
    return answer(&m);
}

/* WRITE path\0value (the value without a NUL). */
static const char *write_via(rpc_fn *rpc, void *who, uint32_t tx,
                             const char *path, const char *value)
{
    static __thread struct xsdt_msg m;
    char buf[XENSTORE_PAYLOAD_MAX + 64];
    size_t pl = strlen(path) + 1, vl = strlen(value);

    TEST_ASSERT(pl + vl <= sizeof(buf), "write too big");
    memcpy(buf, path, pl);
    memcpy(buf + pl, value, vl);
    rpc(who, XS_WRITE, tx, buf, (uint32_t)(pl + vl), &m);
    return answer(&m);
}

static void sock_rpc(void *who, uint32_t type, uint32_t tx, const void *payload,
                     uint32_t len, struct xsdt_msg *reply)
{
    xsdt_rpc(who, type, tx, payload, len, reply);
}

const char *xsdt_req(struct xsdt_client *c, uint32_t type, uint32_t tx, ...)
{
    va_list ap;
    const char *a;

    va_start(ap, tx);
    a = vreq(sock_rpc, c, type, tx, ap);
    va_end(ap);
    return a;
}

const char *xsdt_write(struct xsdt_client *c, uint32_t tx, const char *path,
                       const char *value)
{
    return write_via(sock_rpc, c, tx, path, value);
}

const char *xsdt_read(struct xsdt_client *c, uint32_t tx, const char *path)
{
    return xsdt_req(c, XS_READ, tx, path, NULL);
}

uint32_t xsdt_txn(struct xsdt_client *c)
{
    struct xsdt_msg m;

    xsdt_rpc(c, XS_TRANSACTION_START, 0, "", 1, &m);
    TEST_ASSERT(m.h.type == XS_TRANSACTION_START, "TRANSACTION_START: %s",
                m.body);
    return (uint32_t)strtoul(m.body, NULL, 10);
}

/* ---- the guest -------------------------------------------------------- */

#define RING_MASK(i) ((i) & (XENSTORE_RING_SIZE - 1))

static void kick(struct xsdt_guest *g)
{
    uint64_t one = 1;

    TEST_ASSERT(write(g->kick_fd, &one, sizeof(one)) == sizeof(one), "kick");
}

/* Moves queued request bytes into the ring.  Called with the lock. */
static bool guest_push(struct xsdt_guest *g)
{
    struct xenstore_domain_interface *intf = g->intf;
    uint32_t cons, prod, space, n;

    if (g->out_off == g->out_len)
        return false;
    cons = __atomic_load_n(&intf->req_cons, __ATOMIC_ACQUIRE);
    prod = intf->req_prod;
    space = XENSTORE_RING_SIZE - (prod - cons);
    if (space > XENSTORE_RING_SIZE) /* indices scribbled on by a test */
        return false;
    n = (uint32_t)(g->out_len - g->out_off);
    if (n > space)
        n = space;
    for (uint32_t i = 0; i < n; i++)
        intf->req[RING_MASK(prod + i)] = g->out[g->out_off + i];
    g->out_off += n;
    __atomic_store_n(&intf->req_prod, prod + n, __ATOMIC_RELEASE);
    return n > 0;
}

/* Moves responses out of the ring and parses them.  Called with the lock. */
static bool guest_pull(struct xsdt_guest *g)
{
    struct xenstore_domain_interface *intf = g->intf;
    uint32_t prod = __atomic_load_n(&intf->rsp_prod, __ATOMIC_ACQUIRE);
    uint32_t cons = intf->rsp_cons, n = prod - cons;
    bool moved = false;

    if (n > XENSTORE_RING_SIZE || g->hold)
        return false;
    if (n > sizeof(g->in) - g->in_len)
        n = (uint32_t)(sizeof(g->in) - g->in_len);
    for (uint32_t i = 0; i < n; i++)
        g->in[g->in_len++] = intf->rsp[RING_MASK(cons + i)];
    if (n) {
        __atomic_store_n(&intf->rsp_cons, cons + n, __ATOMIC_RELEASE);
        moved = true;
    }
    for (;;) {
        struct xsd_sockmsg h;
        struct xsdt_msg *m;

        if (g->in_len < HDR)
            break;
        memcpy(&h, g->in, HDR);
        TEST_ASSERT(h.len <= XENSTORE_PAYLOAD_MAX, "ring reply of %u bytes",
                    h.len);
        if (g->in_len < HDR + h.len)
            break;
        if (h.type == XS_WATCH_EVENT) {
            TEST_ASSERT(g->nevents < XSDT_MAX_EVENTS, "too many events");
            m = &g->events[g->nevents++];
        } else {
            TEST_ASSERT(g->nreplies < XSDT_MAX_REPLIES, "too many replies");
            m = &g->replies[g->nreplies++];
        }
        m->h = h;
        memcpy(m->body, g->in + HDR, h.len);
        m->body[h.len] = '\0';
        memmove(g->in, g->in + HDR + h.len, g->in_len - HDR - h.len);
        g->in_len -= HDR + h.len;
        pthread_cond_broadcast(&g->cond);
    }
    return moved;
}

/* The guest's vCPU: moves bytes both ways, notifies, waits for the
 * interrupt (or a request from the test). */
static void *guest_main(void *arg)
{
    struct xsdt_guest *g = arg;

    for (;;) {
        struct pollfd p[2] = {{g->irq_fd, POLLIN, 0}, {g->cmd_fd, POLLIN, 0}};
        uint64_t v;
        bool notify;

        pthread_mutex_lock(&g->lock);
        if (g->stop) {
            pthread_mutex_unlock(&g->lock);
            return NULL;
        }
        notify = guest_push(g);
        notify |= guest_pull(g);
        pthread_mutex_unlock(&g->lock);
        if (notify)
            kick(g);
        if (poll(p, 2, 20) > 0) {
            if (p[0].revents && read(g->irq_fd, &v, sizeof(v)) == sizeof(v))
                g->irqs++;
            if (p[1].revents && read(g->cmd_fd, &v, sizeof(v)) < 0)
                continue;
        }
    }
}

void xsdt_guest_new(struct xsdt_guest *g, size_t npages, uint64_t gfn)
{
    void *map;

    memset(g, 0, sizeof(*g));
    g->memfd = memfd_create("xsdt-guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    TEST_ASSERT(g->memfd >= 0 && !ftruncate(g->memfd, (off_t)npages * 4096),
                "memfd");
    g->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    g->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    g->cmd_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    TEST_ASSERT(g->irq_fd >= 0 && g->kick_fd >= 0 && g->cmd_fd >= 0, "eventfd");
    g->gfn = gfn;
    map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, g->memfd,
               (off_t)(gfn * 4096));
    TEST_ASSERT(map != MAP_FAILED, "mmap");
    g->intf = map;
    g->replies = calloc(XSDT_MAX_REPLIES, sizeof(*g->replies));
    g->events = calloc(XSDT_MAX_EVENTS, sizeof(*g->events));
    TEST_ASSERT(g->replies && g->events, "calloc");
    g->next_req = 1;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    TEST_ASSERT(!pthread_create(&g->thread, NULL, guest_main, g),
                "pthread_create");
}

static void wake(struct xsdt_guest *g)
{
    uint64_t one = 1;

    TEST_ASSERT(write(g->cmd_fd, &one, sizeof(one)) == sizeof(one), "wake");
}

void xsdt_guest_free(struct xsdt_guest *g)
{
    pthread_mutex_lock(&g->lock);
    g->stop = true;
    pthread_mutex_unlock(&g->lock);
    wake(g);
    pthread_join(g->thread, NULL);
    munmap(g->intf, 4096);
    close(g->memfd);
    close(g->irq_fd);
    close(g->kick_fd);
    close(g->cmd_fd);
    free(g->out);
    free(g->replies);
    free(g->events);
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
}

void xsdt_guest_hold(struct xsdt_guest *g, bool hold)
{
    pthread_mutex_lock(&g->lock);
    g->hold = hold;
    pthread_mutex_unlock(&g->lock);
    wake(g);
}

void xsdt_guest_send_bytes(struct xsdt_guest *g, const void *buf, size_t n)
{
    pthread_mutex_lock(&g->lock);
    if (g->out_off == g->out_len)
        g->out_off = g->out_len = 0;
    g->out = realloc(g->out, g->out_len + n);
    TEST_ASSERT(g->out, "realloc");
    memcpy(g->out + g->out_len, buf, n);
    g->out_len += n;
    pthread_mutex_unlock(&g->lock);
    wake(g);
}

static int wait_for(struct xsdt_guest *g, int *count, int timeout_ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    while (!*count)
        if (pthread_cond_timedwait(&g->cond, &g->lock, &ts))
            return -1;
    return 0;
}

void xsdt_guest_rpc(struct xsdt_guest *g, uint32_t type, uint32_t tx,
                    const void *payload, uint32_t len, struct xsdt_msg *reply)
{
    char buf[HDR + XENSTORE_PAYLOAD_MAX + 64];
    struct xsd_sockmsg h = {type, g->next_req++, tx, len};

    TEST_ASSERT(len <= XENSTORE_PAYLOAD_MAX + 64, "payload too big");
    memcpy(buf, &h, HDR);
    memcpy(buf + HDR, payload, len);
    xsdt_guest_send_bytes(g, buf, HDR + len);
    pthread_mutex_lock(&g->lock);
    TEST_ASSERT(!wait_for(g, &g->nreplies, 10000),
                "no reply on the ring to a request of type %u", type);
    *reply = g->replies[0];
    memmove(g->replies, g->replies + 1,
            (size_t)--g->nreplies * sizeof(*g->replies));
    pthread_mutex_unlock(&g->lock);
    TEST_ASSERT(reply->h.req_id == h.req_id && reply->h.tx_id == tx,
                "ring reply ids %u/%u for %u/%u", reply->h.req_id,
                reply->h.tx_id, h.req_id, tx);
    TEST_ASSERT(reply->h.type == type || reply->h.type == XS_ERROR,
                "ring reply type %u to request type %u", reply->h.type, type);
}

static void guest_rpc(void *who, uint32_t type, uint32_t tx,
                      const void *payload, uint32_t len, struct xsdt_msg *reply)
{
    xsdt_guest_rpc(who, type, tx, payload, len, reply);
}

const char *xsdt_guest_req(struct xsdt_guest *g, uint32_t type, uint32_t tx,
                           ...)
{
    va_list ap;
    const char *a;

    va_start(ap, tx);
    a = vreq(guest_rpc, g, type, tx, ap);
    va_end(ap);
    return a;
}

const char *xsdt_guest_write(struct xsdt_guest *g, uint32_t tx,
                             const char *path, const char *value)
{
    return write_via(guest_rpc, g, tx, path, value);
}

int xsdt_guest_event(struct xsdt_guest *g, struct xsdt_msg *m, int timeout_ms)
{
    int rc;

    pthread_mutex_lock(&g->lock);
    rc = wait_for(g, &g->nevents, timeout_ms);
    if (!rc) {
        *m = g->events[0];
        memmove(g->events, g->events + 1,
                (size_t)--g->nevents * sizeof(*g->events));
    }
    pthread_mutex_unlock(&g->lock);
    return rc;
}
