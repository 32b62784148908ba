/*
 * kvm-bench.c - xtk's KVM domains measured, each next to its floor in the
 * same run (docs/benchmarks.md, section "kvm"):
 *
 *   evtchn  event channel round trip toolstack -> guest -> toolstack (the
 *           guest's echo port, an irqfd in and an ioeventfd out), against a
 *           raw eventfd ping-pong between two host threads;
 *   pause   pause latency (request until every vCPU is parked, as the
 *           reply says) for 1, 2 and 4 vCPUs, idle and busy, against a
 *           control round trip that does nothing (INFO);
 *   dirty   dirty-log sync (read and clean into the toolstack's bitmap) per
 *           GiB of guest RAM, idle and under the dirtying workload;
 *   stop    the fixed costs of a migration's stop-and-copy, one backend op
 *           at a time as the save and restore engines call them, for the
 *           guest of benchmark 2(a) (256 MiB, 2,000 pages/s), by suspend
 *           method: the guest suspending, the final dirty-log read, the
 *           state got, the state set on an empty domain, a resume; against
 *           a control round trip that does nothing (INFO).
 *
 *   kvm-bench [evtchn|pause|dirty|stop|all] [ITERATIONS]
 *
 * It runs the build's xtk-hv and guest (next to this program) in a private
 * run directory, without a store.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <xtk/stats.h>

#include "abi.h"
#include "backend.h"

static struct xtk_ctx *ctx;
static unsigned int iters = 2000;
static char rundir[64];

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void setup(const char *argv0)
{
    char dir[PATH_MAX], path[PATH_MAX + 32];
    const char *slash = strrchr(argv0, '/');

    snprintf(dir, sizeof(dir), "%.*s/..", slash ? (int)(slash - argv0) : 1,
             slash ? argv0 : ".");
    snprintf(path, sizeof(path), "%s/xtk-hv", dir);
    setenv("XTK_HV", path, 0);
    snprintf(path, sizeof(path), "%s/guests/xtk-guest.elf", dir);
    setenv("XTK_GUEST", path, 0);
    snprintf(rundir, sizeof(rundir), "/tmp/xtk-bench.XXXXXX");
    if (!mkdtemp(rundir))
        die("mkdtemp");
    setenv("XTK_RUNDIR", rundir, 1);
    ctx = xtk_ctx_open(NULL, NULL, 0);
    if (!ctx)
        die("xtk_ctx_open");
}

static struct xtk_domain *create(uint32_t vcpus, uint64_t mib,
                                 const char *cmdline)
{
    struct xtk_domain_config cfg = {.memory_mib = mib,
                                    .nr_vcpus = vcpus,
                                    .cmdline = cmdline,
                                    .flags = XTK_DOMCFG_NO_STORE};
    struct xtk_domain *dom = xtk_domain_create(ctx, &cfg);
    volatile struct xtk_guest_status *st;

    if (!dom)
        die("create");
    st = (void *)((char *)dom->ops->map_all(dom, PROT_READ) +
                  XTK_GUEST_STATUS_GPA);
    for (int i = 0; i < 500 && !(st->magic == XTK_GUEST_STATUS_MAGIC &&
                                 st->nr_vcpus_up == vcpus);
         i++)
        usleep(10000);
    if (st->nr_vcpus_up != vcpus) {
        fprintf(stderr, "the guest did not come up\n");
        exit(1);
    }
    usleep(100000);
    return dom;
}

static void destroy(struct xtk_domain *dom)
{
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

static void summary(const char *what, struct xtk_hist *h, double *p50_out)
{
    struct xtk_hist_summary s;

    if (xtk_hist_summarize(h, &s) < 0)
        die("summarize");
    printf("  %-44s p50 %9.1f us  p99 %9.1f us  max %9.1f us  (n=%llu)\n", what,
           s.p50 / 1e3, s.p99 / 1e3, s.max / 1e3, (unsigned long long)s.count);
    if (p50_out)
        *p50_out = (double)s.p50;
}

/* ---- evtchn --------------------------------------------------------- */

struct pingpong {
    int ping, pong;
    unsigned int n;
};

static void *pong_thread(void *arg)
{
    struct pingpong *pp = arg;
    uint64_t v;

    for (unsigned int i = 0; i < pp->n; i++) {
        if (read(pp->ping, &v, sizeof(v)) != sizeof(v))
            die("read");
        v = 1;
        if (write(pp->pong, &v, sizeof(v)) != sizeof(v))
            die("write");
    }
    return NULL;
}

/* Two host threads, two blocking eventfds: the floor; n round trips. */
static void eventfd_floor(struct xtk_hist *h, unsigned int n)
{
    struct pingpong pp = {eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC), n};
    pthread_t t;
    uint64_t v = 1;

    if (pp.ping < 0 || pp.pong < 0 ||
        pthread_create(&t, NULL, pong_thread, &pp))
        die("eventfd floor");
    for (unsigned int i = 0; i < n; i++) {
        uint64_t t0 = xtk_now_ns();
        v = 1;
        if (write(pp.ping, &v, sizeof(v)) != sizeof(v) ||
            read(pp.pong, &v, sizeof(v)) != sizeof(v))
            die("ping-pong");
        xtk_hist_record(h, xtk_now_ns() - t0);
    }
    pthread_join(t, NULL);
    close(pp.ping);
    close(pp.pong);
}

/* Notify the echo port, wait in poll() for the guest's answer; n times. */
static void guest_echo(struct xtk_domain *dom, struct xtk_hist *h,
                       unsigned int n)
{
    struct pollfd p = {.events = POLLIN};

    if (dom->ops->evtchn_bind(dom, XTK_PORT_ECHO, &p.fd) < 0)
        die("bind");
    for (unsigned int i = 0; i < n; i++) {
        uint64_t t0 = xtk_now_ns();
        if (dom->ops->evtchn_notify(dom, XTK_PORT_ECHO) < 0 ||
            poll(&p, 1, 5000) != 1 ||
            dom->ops->evtchn_ack(dom, XTK_PORT_ECHO) < 1)
            die("echo");
        xtk_hist_record(h, xtk_now_ns() - t0);
    }
}

/*
 * For an idle guest and a busy one, the guest's round trips and the
 * floor's, interleaved in slices of 100 so that whatever else the machine
 * does falls on both alike.
 */
static void bench_evtchn(void)
{
    static const char *const loads[] = {"workload=idle", "workload=counter"};

    printf("evtchn: round trip toolstack -> guest -> toolstack, %u each\n",
           iters);
    for (size_t i = 0; i < 2; i++) {
        struct xtk_domain *dom = create(1, 64, loads[i]);
        struct xtk_hist *h = xtk_hist_new(), *floor = xtk_hist_new();
        char what[64];
        double f50, g50;

        for (unsigned int done = 0; done < iters; done += 100) {
            unsigned int n = iters - done < 100 ? iters - done : 100;
            eventfd_floor(floor, n);
            guest_echo(dom, h, n);
        }
        snprintf(what, sizeof(what), "guest echo port, guest %s",
                 i ? "busy (counter)" : "idle (halted)");
        summary(what, h, &g50);
        summary("  eventfd ping-pong, two host threads (floor)", floor, &f50);
        printf("  %-44s %.1fx the floor at p50\n", "", g50 / f50);
        xtk_hist_free(h);
        xtk_hist_free(floor);
        destroy(dom);
    }
}

/* ---- pause ---------------------------------------------------------- */

static void bench_pause(void)
{
    static const uint32_t vcpus[] = {1, 2, 4};
    unsigned int n = iters / 10 ? iters / 10 : 1;

    printf("pause: request until every vCPU is parked, %u each\n", n);
    for (size_t i = 0; i < 3; i++) {
        for (int busy = 0; busy < 2; busy++) {
            struct xtk_domain *dom =
                create(vcpus[i], 32, busy ? "workload=spin" : "workload=idle");
            struct xtk_hist *hp = xtk_hist_new(), *hi = xtk_hist_new();
            struct xtk_domain_info info;
            char what[64];
            double p50, i50;

            for (unsigned int k = 0; k < n; k++) {
                uint64_t t0 = xtk_now_ns();
                if (xtk_domain_info(dom, &info) < 0)
                    die("info");
                uint64_t t1 = xtk_now_ns();
                if (xtk__domain_pause_hold(dom) < 0)
                    die("pause");
                uint64_t t2 = xtk_now_ns();
                if (dom->ops->unpause(dom, 0) < 0)
                    die("unpause");
                xtk_hist_record(hi, t1 - t0);
                xtk_hist_record(hp, t2 - t1);
                usleep(2000); /* let the vCPUs get going again */
            }
            snprintf(what, sizeof(what), "%u vCPU(s), %s: pause", vcpus[i],
                     busy ? "busy (spin lock)" : "idle");
            summary(what, hp, &p50);
            snprintf(what, sizeof(what), "%u vCPU(s), %s: info (floor)",
                     vcpus[i], busy ? "busy (spin lock)" : "idle");
            summary(what, hi, &i50);
            xtk_hist_free(hp);
            xtk_hist_free(hi);
            destroy(dom);
        }
    }
}

/* ---- dirty ---------------------------------------------------------- */

static void bench_dirty(void)
{
    static const uint64_t sizes[] = {256, 1024};
    unsigned int n = iters / 40 ? iters / 40 : 1;

    printf("dirty: one dirty-log read-and-clean (the whole op), %u each\n", n);
    for (size_t i = 0; i < 2; i++) {
        for (int busy = 0; busy < 2; busy++) {
            struct xtk_domain *dom =
                create(1, sizes[i],
                       busy ? "workload=dirty pages=16384" : "workload=idle");
            uint64_t nr = sizes[i] << 8, count, dirty_sum = 0;
            uint64_t *bm = calloc((nr + 63) / 64, 8);
            struct xtk_hist *h = xtk_hist_new(), *hi = xtk_hist_new();
            struct xtk_domain_info info;
            char what[80];
            double p50, i50;

            if (!bm || dom->ops->logdirty_enable(dom) < 0 ||
                dom->ops->logdirty_read(dom, 0, bm, nr, &count) < 0)
                die("logdirty");
            for (unsigned int k = 0; k < n; k++) {
                usleep(10000); /* 10 ms of guest work between reads */
                uint64_t t0 = xtk_now_ns();
                if (dom->ops->logdirty_read(dom, 0, bm, nr, &count) < 0)
                    die("logdirty_read");
                uint64_t t1 = xtk_now_ns();
                if (xtk_domain_info(dom, &info) < 0)
                    die("info");
                xtk_hist_record(h, t1 - t0);
                xtk_hist_record(hi, xtk_now_ns() - t1);
                dirty_sum += count;
            }
            snprintf(what, sizeof(what), "%llu MiB, %s",
                     (unsigned long long)sizes[i],
                     busy ? "dirtier (64 MiB flat out)" : "idle");
            summary(what, h, &p50);
            summary("  control round trip (info, floor)", hi, &i50);
            printf("  %-44s %.2f ms per GiB at p50, %llu pages dirty per "
                   "read on average\n",
                   "", p50 / 1e6 * 1024.0 / (double)sizes[i],
                   (unsigned long long)(dirty_sum / n));
            free(bm);
            xtk_hist_free(h);
            xtk_hist_free(hi);
            destroy(dom);
        }
    }
}

/* ---- stop ----------------------------------------------------------- */

static uint64_t lap(struct xtk_hist *h, uint64_t *t)
{
    uint64_t now = xtk_now_ns();

    xtk_hist_record(h, now - *t);
    *t = now;
    return now;
}

/*
 * For each suspend method, n stop-and-copy cycles without memory: the
 * request until the engine may go on (the suspend fd, then suspend_check,
 * which leaves the domain stopped), the final dirty-log read, get_state,
 * set_state of that state into an empty domain of the same shape (which
 * never runs), and the source's resume.
 */
static void bench_stop(void)
{
    static const char *const names[] = {"evtchn", "pause"};
    static const enum xtk__suspend_method methods[] = {XTK__SUSPEND_EVTCHN,
                                                       XTK__SUSPEND_PAUSE};
    unsigned int n = iters / 10 ? iters / 10 : 1;
    struct xtk_domain_config dc = {.memory_mib = 256, .nr_vcpus = 1};
    struct xtk_domain *dst = xtk__domain_create_empty(ctx, &dc);

    if (!dst)
        die("create an empty domain");
    printf("stop: the stop-and-copy's fixed costs, 256 MiB guest dirtying "
           "2,000 pages/s, %u each\n",
           n);
    for (size_t m = 0; m < XTK__ARRAY_SIZE(methods); m++) {
        struct xtk_domain *dom =
            create(1, 256, "workload=dirty pages=16384 rate=2000");
        uint64_t nr = 256 << 8, count;
        uint64_t *bm = calloc((nr + 63) / 64, 8);
        struct xtk_hist *h[6];
        static const char *const what[6] = {
            "suspend request -> fd readable", "suspend_check (stops it)",
            "final dirty-log read",           "get_state",
            "set_state (empty domain)",       "resume (source)"};
        struct xtk_hist *hi = xtk_hist_new();
        struct xtk_domain_info info;
        struct pollfd p = {.events = POLLIN};
        char line[96];

        for (int k = 0; k < 6; k++)
            h[k] = xtk_hist_new();
        if (!bm || dom->ops->logdirty_enable(dom) < 0 ||
            dom->ops->suspend_setup(dom, methods[m], &p.fd) < 0)
            die("setup");
        for (unsigned int k = 0; k < n; k++) {
            void *state;
            size_t len;
            uint64_t t;
            int r;

            usleep(20000); /* the guest runs as in pre-copy */
            if (dom->ops->logdirty_read(dom, 0, bm, nr, &count) < 0)
                die("logdirty_read");
            t = xtk_now_ns();
            if (xtk_domain_info(dom, &info) < 0)
                die("info");
            lap(hi, &t);
            t = xtk_now_ns();
            if (dom->ops->suspend_request(dom) < 0)
                die("suspend_request");
            if (poll(&p, 1, 5000) != 1)
                die("suspend: no notification");
            lap(h[0], &t);
            while ((r = dom->ops->suspend_check(dom)) == 0)
                if (poll(&p, 1, 5000) != 1)
                    die("suspend: no notification");
            if (r < 0)
                die("suspend_check");
            lap(h[1], &t);
            if (dom->ops->logdirty_read(dom, XTK__LOGDIRTY_FINAL, bm, nr,
                                        &count) < 0)
                die("final logdirty_read");
            lap(h[2], &t);
            if (dom->ops->get_state(dom, &state, &len) < 0)
                die("get_state");
            lap(h[3], &t);
            if (dst->ops->set_state(dst, state, len) < 0)
                die("set_state");
            lap(h[4], &t);
            if (dom->ops->resume(dom) < 0)
                die("resume");
            lap(h[5], &t);
            free(state);
        }
        printf("  --suspend %s\n", names[m]);
        for (int k = 0; k < 6; k++) {
            snprintf(line, sizeof(line), "  %s", what[k]);
            summary(line, h[k], NULL);
            xtk_hist_free(h[k]);
        }
        summary("  control round trip (info, floor)", hi, NULL);
        dom->ops->suspend_teardown(dom);
        free(bm);
        xtk_hist_free(hi);
        destroy(dom);
    }
    destroy(dst);
}

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "all";
    char cmd[128];

    if (argc > 2)
        iters = (unsigned int)strtoul(argv[2], NULL, 10);
    if (!iters || (strcmp(what, "all") && strcmp(what, "evtchn") &&
                   strcmp(what, "pause") && strcmp(what, "dirty") &&
                   strcmp(what, "stop"))) {
        fprintf(stderr, "usage: kvm-bench [evtchn|pause|dirty|stop|all] "
                        "[ITERATIONS]\n");
        return 2;
    }
    setup(argv[0]);
    if (!strcmp(what, "all") || !strcmp(what, "evtchn"))
        bench_evtchn();
    if (!strcmp(what, "all") || !strcmp(what, "pause"))
        bench_pause();
    if (!strcmp(what, "all") || !strcmp(what, "dirty"))
        bench_dirty();
    if (!strcmp(what, "all") || !strcmp(what, "stop"))
        bench_stop();
    xtk_ctx_close(ctx);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", rundir);
    return system(cmd) != 0;
}
