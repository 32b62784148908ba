/*
 * test-store.c - KVM domains in the store (xsd-lite), as Xen domains are:
 * registered under /local/domain/<id> with @introduceDomain; the guest's
 * store ring works (it publishes its suspend channel and watches
 * control/shutdown); a suspend through the store (the toolstack writes
 * "suspend", the guest acknowledges with "" and says "suspended" on its
 * event channel, never through a watch) and one through the event channel
 * with the store present; a restored domain registers under its new id and
 * the guest reconnects; a destroyed domain, or one whose xtk-hv is killed,
 * leaves the store with @releaseDomain.
 */
#include "config.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "kvm-test.h"
#include "xs-client.h"

#define XS_WATCH 4
#define XS_WATCH_EVENT 15

static struct xtk_ctx *ctx;
static char sock[128];
static pid_t xsd_pid;
static int xs;      /* requests */
static int watcher; /* watch events */

static void stop_xsd(void)
{
    if (xsd_pid > 0) {
        kill(xsd_pid, SIGTERM);
        waitpid(xsd_pid, NULL, 0);
    }
}

static void start_xsd(void)
{
    const char *b = getenv("top_builddir");
    const char *bin = getenv("XSD_LITE");
    char path[512];

    if (!bin || !*bin) {
        snprintf(path, sizeof(path), "%s/xsd-lite/xsd-lite", b ? b : ".");
        bin = path;
    }
    snprintf(sock, sizeof(sock), "%s/xs.sock", kt_rundir);
    xsd_pid = fork();
    TEST_ASSERT(xsd_pid >= 0, "fork");
    if (xsd_pid == 0) {
        execl(bin, bin, "-N", "-s", sock, "-l", "warning", (char *)NULL);
        _exit(127);
    }
    atexit(stop_xsd);
    KT_WAIT((xs = xtk__xs_connect(sock)) >= 0, 5000, "xsd-lite (%s) listens",
            bin);
    setenv("XENSTORED_PATH", sock, 1);
}

static int xs_read(const char *path, char *buf, size_t max)
{
    return xtk__xs_request(xs, XTK_XS_READ, path, strlen(path) + 1, NULL, 0,
                           buf, max, 2000);
}

static void xs_watch(const char *path)
{
    char buf[256];
    size_t n = strlen(path) + 1;

    memcpy(buf, path, n);
    memcpy(buf + n, "t", 2);
    TEST_ASSERT(xtk__xs_request(watcher, XS_WATCH, buf, n + 2, NULL, 0, NULL, 0,
                                2000) >= 0 ||
                    errno == EBADMSG,
                "watch %s", path);
}

/* Waits for a watch event on path (skipping others). */
static void expect_event(const char *path, int ms)
{
    uint64_t deadline = kt_now_ms() + (uint64_t)ms;
    struct {
        uint32_t type, req_id, tx_id, len;
    } h;
    char body[4097];

    for (;;) {
        struct pollfd p = {.fd = watcher, .events = POLLIN};
        int left = (int)(deadline - kt_now_ms());

        TEST_ASSERT(left > 0 && poll(&p, 1, left) == 1, "event %s", path);
        TEST_ASSERT(recv(watcher, &h, sizeof(h), MSG_WAITALL) == sizeof(h) &&
                        h.len <= 4096 &&
                        recv(watcher, body, h.len, MSG_WAITALL) ==
                            (ssize_t)h.len,
                    "read an event");
        body[h.len] = 0;
        if (h.type == XS_WATCH_EVENT && !strcmp(body, path))
            return;
    }
}

static void drain_events(void)
{
    char buf[4096];

    while (recv(watcher, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}

static void wait_node(uint32_t domid, const char *rel, const char *value)
{
    char path[128], buf[256] = "";

    snprintf(path, sizeof(path), "/local/domain/%u/%s", domid, rel);
    KT_WAIT(xs_read(path, buf, sizeof(buf) - 1) >= 0 && !strcmp(buf, value),
            3000, "%s = '%s' (is '%s')", path, value, buf);
}

static int domain_in_store(uint32_t domid)
{
    char path[64], buf[64];

    snprintf(path, sizeof(path), "/local/domain/%u/name", domid);
    return xs_read(path, buf, sizeof(buf) - 1) >= 0;
}

/* Waits on the suspend fd until the check says suspended (1) or fails
 * (-1): it fires for the store's answer to the request too (0). */
static int wait_suspended(struct xtk_domain *dom, int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    uint64_t end = xtk_now_ns() + 5000000000ull;
    int r = 0;

    while (r == 0 && xtk_now_ns() < end)
        if (poll(&p, 1, 100) == 1)
            r = dom->ops->suspend_check(dom);
    return r;
}

static void suspend(struct xtk_domain *dom, enum xtk__suspend_method m)
{
    volatile struct xtk_guest_status *st = kt_status(dom);
    uint64_t n = st->suspends, hb;
    struct pollfd p = {.events = POLLIN};

    TEST_ASSERT(dom->ops->suspend_setup(dom, m, &p.fd) == 0, "setup %d", m);
    TEST_ASSERT(dom->ops->suspend_request(dom) == 0, "request");
    TEST_ASSERT(wait_suspended(dom, p.fd) == 1, "suspended (method %d)", m);
    TEST_ASSERT(st->suspends == n + 1 && st->state == XTK_GUEST_SUSPENDED,
                "the guest suspended");
    dom->ops->suspend_teardown(dom);
    if (m == XTK__SUSPEND_STORE) {
        wait_node(xtk_domain_id(dom), "control/shutdown", "");
        TEST_ASSERT(st->store_events >= 1, "the guest saw the watch fire");
    }
    TEST_ASSERT(dom->ops->resume(dom) == 0, "resume");
    hb = st->heartbeat[0];
    KT_WAIT(st->heartbeat[0] != hb && st->state == XTK_GUEST_RUNNING, 5000,
            "runs again");
}

int main(void)
{
    struct xtk_domain *dom;
    struct xtk_domain_config cfg = {0};
    struct xtk_domain_info info;
    uint32_t id, id2;
    void *state, *ram;
    size_t len;
    char buf[64];

    ctx = kt_setup();
    start_xsd();
    watcher = xtk__xs_connect(sock);
    TEST_ASSERT(watcher >= 0, "connect to the store");
    xs_watch("@introduceDomain");
    xs_watch("@releaseDomain");
    drain_events();

    fprintf(stderr, "-- registration\n");
    dom = kt_create(ctx, "stored", 2, 16, "workload=counter", 0);
    id = xtk_domain_id(dom);
    expect_event("@introduceDomain", 3000);
    kt_wait_up(dom, 2);
    wait_node(id, "name", "stored");
    snprintf(buf, sizeof(buf), "%u", id);
    wait_node(id, "domid", buf);
    wait_node(id, "memory/target", "16384");
    wait_node(id, "vcpus", "2");
    wait_node(id, "cpu/1/availability", "online");
    wait_node(id, "console/ring-ref", "3");
    wait_node(id, "console/port", "1");
    wait_node(id, "control/shutdown", "");
    /* Written by the guest, through its ring: */
    wait_node(id, "device/suspend/event-channel", "3");

    fprintf(stderr, "-- suspend through the store, then the event channel\n");
    suspend(dom, XTK__SUSPEND_STORE);
    suspend(dom, XTK__SUSPEND_EVTCHN);
    suspend(dom, XTK__SUSPEND_STORE);

    fprintf(stderr, "-- restore under a new id\n");
    {
        int fd;
        TEST_ASSERT(dom->ops->suspend_setup(dom, XTK__SUSPEND_STORE, &fd) ==
                            0 &&
                        dom->ops->suspend_request(dom) == 0,
                    "save's suspend");
        TEST_ASSERT(wait_suspended(dom, fd) == 1, "suspended");
    }
    TEST_ASSERT(dom->ops->get_state(dom, &state, &len) == 0, "state");
    TEST_ASSERT(xtk_domain_info(dom, &info) == 0, "info");
    ram = malloc(info.nr_pages << 12);
    memcpy(ram, kt_ram(dom), info.nr_pages << 12);
    drain_events();
    TEST_ASSERT(xtk_domain_destroy(dom) == 0, "destroy");
    xtk_domain_close(dom);
    expect_event("@releaseDomain", 3000);
    TEST_ASSERT(!domain_in_store(id), "gone from the store");

    cfg.name = "stored";
    cfg.memory_mib = info.nr_pages >> 8;
    cfg.nr_vcpus = info.nr_vcpus;
    dom = xtk__domain_create_empty(ctx, &cfg);
    TEST_ASSERT(dom, "create empty");
    id2 = xtk_domain_id(dom);
    TEST_ASSERT(id2 != id, "a new id");
    expect_event("@introduceDomain", 3000);
    memcpy(kt_ram(dom), ram, info.nr_pages << 12);
    TEST_ASSERT(dom->ops->set_state(dom, state, len) == 0 &&
                    dom->ops->resume(dom) == 0,
                "load and resume");
    KT_WAIT(kt_status(dom)->resumes >= 1, 3000, "the guest resumed");
    /* The guest learnt it moved and registered again, in its new home. */
    wait_node(id2, "device/suspend/event-channel", "3");
    wait_node(id2, "name", "stored");
    suspend(dom, XTK__SUSPEND_STORE);
    kt_check(dom);

    fprintf(stderr, "-- xtk-hv killed\n");
    drain_events();
    {
        /* xtk-hv's pid: the peer of its control socket. */
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        struct ucred cred;
        socklen_t cl = sizeof(cred);
        int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%u.sock", kt_rundir,
                 id2);
        TEST_ASSERT(connect(s, (void *)&sa, sizeof(sa)) == 0 &&
                        getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0,
                    "xtk-hv's pid");
        close(s);
        TEST_ASSERT(kill(cred.pid, SIGKILL) == 0, "kill -9 xtk-hv");
    }
    expect_event("@releaseDomain", 3000);
    KT_WAIT(!domain_in_store(id2), 5000, "a dead domain leaves the store");
    xtk_domain_close(dom);

    /* The request's write is sent, its answer taken when it comes: a
     * store that does not answer holds no one up (the request returns at
     * once), and one that goes away fails the suspend at once, not when
     * the guest is given up on. */
    fprintf(stderr, "-- a frozen store, then gone\n");
    dom = kt_create(ctx, "frozen", 1, 16, "workload=counter", 0);
    kt_wait_up(dom, 1);
    wait_node(xtk_domain_id(dom), "device/suspend/event-channel", "3");
    {
        uint64_t t0, t_req, t_fail;
        int fd, r;

        TEST_ASSERT(dom->ops->suspend_setup(dom, XTK__SUSPEND_STORE, &fd) == 0,
                    "setup");
        TEST_ASSERT(kill(xsd_pid, SIGSTOP) == 0, "xsd-lite stopped");
        t0 = xtk_now_ns();
        TEST_ASSERT(dom->ops->suspend_request(dom) == 0, "request");
        t_req = xtk_now_ns() - t0;
        TEST_ASSERT(t_req < 500000000ull,
                    "the request does not wait for the store (%.0f ms)",
                    t_req / 1e6);
        TEST_ASSERT(kill(xsd_pid, SIGKILL) == 0, "xsd-lite killed");
        waitpid(xsd_pid, NULL, 0);
        xsd_pid = 0;
        t0 = xtk_now_ns();
        r = wait_suspended(dom, fd);
        t_fail = xtk_now_ns() - t0;
        TEST_ASSERT(r < 0 && errno, "the suspend fails (%d)", r);
        TEST_ASSERT(t_fail < 2000000000ull, "at once (%.0f ms)", t_fail / 1e6);
        fprintf(stderr,
                "   the request took %.2f ms; the store gone, the check "
                "failed in %.1f ms: %s\n",
                t_req / 1e6, t_fail / 1e6, strerror(errno));
        dom->ops->suspend_teardown(dom);
        TEST_ASSERT(kt_status(dom)->state == XTK_GUEST_RUNNING, "it runs on");
    }
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);

    free(state);
    free(ram);
    close(xs);
    close(watcher);
    xtk_ctx_close(ctx);
    return 0;
}
