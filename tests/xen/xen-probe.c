/*
 * xen-probe - libxtk's xen backend against a live guest, inside the Xen
 * testbed's dom0 (tests/xen/dom0-init.sh runs it).
 *
 *   xen-probe [--pv] [--console FILE] NAME CYCLES
 *   xen-probe --status DOMID
 *
 * --status reads xtk's built-in guest's status page (guests/abi.h) from a
 * running domain through a foreign mapping and prints it as one line of
 * key=value words; exit 0 if the page is the guest's, 1 if not.
 *
 * Each check prints one line, "XTK-OK <check> <detail>" or "XTK-FAIL
 * <check> <why>", as dom0-init.sh's own checks do; the exit status is the
 * number of failed checks.  The checks:
 *
 *   xtk-lookup    the domain is found by name and its information is sane
 *   xtk-pause     pause and unpause show in its information; a pause held
 *                 by a handle ends when the handle closes
 *   xtk-logdirty  the dirty log sees a running guest's writes, none while
 *                 it is paused, and gives a FINAL read only when stopped;
 *                 with --pv (a PV guest on a Xen built without shadow
 *                 paging, as Debian's is), enabling it fails with ENOTSUP
 *   xtk-evtchn    a guest without a published suspend channel is refused
 *                 the EVTCHN method with ENOTSUP
 *   xtk-suspend   CYCLES suspends by the store method, each noticed on the
 *                 subscribed event channel and followed by a cooperative
 *                 resume; prints the suspend latency's percentiles
 *   xtk-guard     a toolstack killed (SIGKILL) while it holds a pause,
 *                 right after it requested a suspend, and while the guest
 *                 sits suspended with the dirty log on: each time the
 *                 guest runs again, unpaused and resumed, with the dirty
 *                 log off (xtk-xen-guard undid it).  With --console (the
 *                 guest's console log, which xenconsoled writes), a
 *                 suspend counts as resumed once the guest's kernel says
 *                 so there ("Restarting tasks"), so a guest that suspends
 *                 late cannot pass for one that never did
 *   xtk-running   the guest is running afterwards, neither paused nor
 *                 suspended
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xtk/ctx.h>
#include <xtk/domain.h>
#include <xtk/stats.h>

#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <sys/mman.h>

#include "abi.h"

#include "backend.h"

static int failed;

#define OK(check, ...)                                                         \
    do {                                                                       \
        printf("XTK-OK " check " " __VA_ARGS__);                               \
        putchar('\n');                                                         \
        fflush(stdout);                                                        \
    } while (0)
#define FAIL(check, ...)                                                       \
    do {                                                                       \
        printf("XTK-FAIL " check " " __VA_ARGS__);                             \
        putchar('\n');                                                         \
        fflush(stdout);                                                        \
        failed++;                                                              \
    } while (0)

static void sleep_ms(unsigned int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static int info_of(struct xtk_domain *dom, struct xtk_domain_info *info)
{
    return dom->ops->info(dom, info);
}

/* Waits up to ms for the domain's flags & mask to equal want. */
static int wait_flags(struct xtk_domain *dom, uint32_t mask, uint32_t want,
                      unsigned int ms)
{
    struct xtk_domain_info info;

    for (unsigned int t = 0;; t += 10) {
        if (info_of(dom, &info) == 0 && (info.flags & mask) == want)
            return 0;
        if (t >= ms)
            return -1;
        sleep_ms(10);
    }
}

static void check_pause(struct xtk_ctx *ctx, struct xtk_domain *dom)
{
    struct xtk_domain_info info = {0};
    struct xtk_domain *other;

    if (dom->ops->pause(dom, 0) < 0 || info_of(dom, &info) < 0 ||
        !(info.flags & XTK_DOMINFO_PAUSED)) {
        FAIL("xtk-pause", "pause: %s, flags %#x", strerror(errno), info.flags);
        return;
    }
    if (dom->ops->unpause(dom, XTK__UNPAUSE_FORCE) < 0 ||
        info_of(dom, &info) < 0 || (info.flags & XTK_DOMINFO_PAUSED)) {
        FAIL("xtk-pause", "unpause: %s, flags %#x", strerror(errno),
             info.flags);
        return;
    }
    other = xtk_domain_open(ctx, dom->domid);
    if (!other || xtk__domain_pause_hold(other) < 0 ||
        info_of(dom, &info) < 0 || !(info.flags & XTK_DOMINFO_PAUSED)) {
        FAIL("xtk-pause", "held pause: %s", strerror(errno));
        xtk_domain_close(other);
        return;
    }
    xtk_domain_close(other);
    if (info_of(dom, &info) < 0 || (info.flags & XTK_DOMINFO_PAUSED)) {
        FAIL("xtk-pause", "a held pause outlived its handle (flags %#x)",
             info.flags);
        return;
    }
    OK("xtk-pause", "pause, unpause and a pause held by a handle");
}

static void check_logdirty(struct xtk_domain *dom, uint64_t nr_bits, int pv)
{
    const struct xtk__backend_ops *o = dom->ops;
    uint64_t *bm = calloc((nr_bits + 63) / 64, 8);
    uint64_t first = 0, running = 0, paused = 0, final = 0;
    int busy;

    if (pv) {
        if (o->logdirty_enable(dom) == 0) {
            FAIL("xtk-logdirty", "a PV guest got a dirty log on a Xen "
                                 "without shadow paging");
            o->logdirty_disable(dom);
        } else if (errno != ENOTSUP) {
            FAIL("xtk-logdirty", "PV: refused with %s, not ENOTSUP",
                 strerror(errno));
        } else {
            OK("xtk-logdirty", "PV guest, Xen without shadow paging: ENOTSUP");
        }
        free(bm);
        return;
    }
    if (!bm || o->logdirty_enable(dom) < 0) {
        FAIL("xtk-logdirty", "enable: %s", strerror(errno));
        free(bm);
        return;
    }
    if (o->logdirty_read(dom, 0, bm, nr_bits, &first) < 0)
        goto fail;
    sleep_ms(2000); /* the guest prints a counter every second */
    if (o->logdirty_read(dom, 0, bm, nr_bits, &running) < 0)
        goto fail;
    busy =
        o->logdirty_read(dom, XTK__LOGDIRTY_FINAL, bm, nr_bits, &final) < 0 &&
        errno == EBUSY;
    if (o->pause(dom, 0) < 0)
        goto fail;
    /* Two reads while paused: the first may still hold what the guest
     * wrote just before the pause; the second holds no guest write. */
    if (o->logdirty_read(dom, 0, bm, nr_bits, &paused) < 0 ||
        o->logdirty_read(dom, 0, bm, nr_bits, &paused) < 0 ||
        o->logdirty_read(dom, XTK__LOGDIRTY_FINAL, bm, nr_bits, &final) < 0) {
        o->unpause(dom, XTK__UNPAUSE_FORCE);
        goto fail;
    }
    o->unpause(dom, XTK__UNPAUSE_FORCE);
    if (o->logdirty_disable(dom) < 0) {
        FAIL("xtk-logdirty", "disable: %s", strerror(errno));
        free(bm);
        return;
    }
    /* Xen itself writes a paused guest's memory (shared info, event
     * channel bits, the rings its backends and the store write): those
     * frames are logged too, but they are a handful next to what the
     * running guest wrote. */
    if (!running || paused * 2 > running || !busy)
        FAIL("xtk-logdirty",
             "first read %llu, running 2 s %llu, paused %llu, FINAL while "
             "running %s",
             (unsigned long long)first, (unsigned long long)running,
             (unsigned long long)paused, busy ? "refused" : "accepted");
    else
        OK("xtk-logdirty",
           "first read %llu frames, 2 s running %llu, paused %llu (Xen's "
           "own writes), FINAL %llu; FINAL refused while running",
           (unsigned long long)first, (unsigned long long)running,
           (unsigned long long)paused, (unsigned long long) final);
    free(bm);
    return;
fail:
    FAIL("xtk-logdirty", "read: %s", strerror(errno));
    o->logdirty_disable(dom);
    free(bm);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static void check_suspend(struct xtk_domain *dom, int cycles)
{
    const struct xtk__backend_ops *o = dom->ops;
    uint64_t *lat = calloc((size_t)cycles, sizeof(*lat)), t0;
    int fd, r = 0, done = 0;
    struct pollfd p;

    if (o->suspend_setup(dom, XTK__SUSPEND_EVTCHN, &fd) == 0) {
        FAIL("xtk-evtchn", "a guest without device/suspend/event-channel "
                           "was given the EVTCHN method");
        o->suspend_teardown(dom);
    } else if (errno != ENOTSUP) {
        FAIL("xtk-evtchn", "refused with %s, not ENOTSUP", strerror(errno));
    } else {
        OK("xtk-evtchn", "no published suspend channel: ENOTSUP");
    }

    if (!lat || o->suspend_setup(dom, XTK__SUSPEND_STORE, &fd) < 0) {
        FAIL("xtk-suspend", "setup: %s", strerror(errno));
        free(lat);
        return;
    }
    for (; done < cycles; done++) {
        t0 = xtk_now_ns();
        if (o->suspend_request(dom) < 0) {
            FAIL("xtk-suspend", "cycle %d: request: %s", done, strerror(errno));
            break;
        }
        do {
            p = (struct pollfd){.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 120000) != 1) {
                r = -1;
                errno = ETIMEDOUT;
                break;
            }
            r = o->suspend_check(dom);
        } while (r == 0);
        if (r < 0) {
            FAIL("xtk-suspend", "cycle %d: no suspended notification: %s", done,
                 strerror(errno));
            break;
        }
        lat[done] = xtk_now_ns() - t0;
        if (o->resume(dom) < 0 ||
            wait_flags(dom, XTK_DOMINFO_SUSPENDED, 0, 10000) < 0) {
            FAIL("xtk-suspend", "cycle %d: resume: %s", done, strerror(errno));
            break;
        }
        /* Let the guest's xenbus finish the resume before the next
         * request (it rewrites control/shutdown as it does). */
        sleep_ms(200);
    }
    o->suspend_teardown(dom);
    if (done == cycles) {
        qsort(lat, (size_t)cycles, sizeof(*lat), cmp_u64);
        OK("xtk-suspend",
           "%d store suspends noticed on an event channel, cooperative "
           "resumes: suspend latency p50 %.2f ms, p99 %.2f ms, max %.2f ms "
           "(TCG)",
           cycles, lat[cycles / 2] / 1e6, lat[(cycles * 99) / 100] / 1e6,
           lat[cycles - 1] / 1e6);
    }
    free(lat);
}

/* Waits for the domain's suspended notification (up to 30 s). */
static int wait_suspended(struct xtk_domain *dom, int fd)
{
    struct pollfd p;
    int r;

    do {
        p = (struct pollfd){.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 120000) != 1)
            return xtk__fail(ETIMEDOUT);
        r = dom->ops->suspend_check(dom);
    } while (r == 0);
    return r < 0 ? -1 : 0;
}

enum guard_case { HELD_PAUSE, JUST_REQUESTED, SUSPENDED_LOGGING };
static const char *const guard_case_name[] = {
    "holding a pause", "right after the suspend request",
    "with the guest suspended and the dirty log on"};

/*
 * A child takes hold of the domain as one case says, tells us, and is
 * killed with SIGKILL; 0 if it got that far.
 */
static int killed_holding(uint32_t domid, enum guard_case c, int pv)
{
    int pfd[2], fd, st;
    char ok = 0;
    pid_t pid;

    if (pipe(pfd) < 0)
        return -1;
    fflush(stdout);
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        struct xtk_ctx *ctx = xtk_ctx_open(NULL, NULL, 0);
        struct xtk_domain *dom = ctx ? xtk_domain_open(ctx, domid) : NULL;
        const struct xtk__backend_ops *o = dom ? dom->ops : NULL;
        int r = -1;

        close(pfd[0]);
        if (!o)
            _exit(1);
        switch (c) {
        case HELD_PAUSE:
            r = xtk__domain_pause_hold(dom);
            break;
        case JUST_REQUESTED:
            r = o->suspend_setup(dom, XTK__SUSPEND_STORE, &fd) < 0
                    ? -1
                    : o->suspend_request(dom);
            break;
        case SUSPENDED_LOGGING:
            r = (!pv && o->logdirty_enable(dom) < 0) ||
                        o->suspend_setup(dom, XTK__SUSPEND_STORE, &fd) < 0 ||
                        o->suspend_request(dom) < 0 ||
                        wait_suspended(dom, fd) < 0
                    ? -1
                    : 0;
            break;
        }
        if (r != 0 || write(pfd[1], "k", 1) != 1)
            _exit(1);
        for (;;)
            pause(); /* until killed */
    }
    close(pfd[1]);
    {
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (poll(&p, 1, 60000) != 1 || read(pfd[0], &ok, 1) != 1)
            ok = 0;
    }
    close(pfd[0]);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return ok == 'k' ? 0 : xtk__fail(EIO);
}

/* 1: the dirty log was off (and is again), 0: on, -1: cannot tell. */
static int logdirty_off(uint32_t domid)
{
    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    int off;

    if (!xch)
        return -1;
    off = xc_shadow_control(xch, domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY,
                            NULL, 0) == 0;
    if (off)
        xc_shadow_control(xch, domid, XEN_DOMCTL_SHADOW_OP_OFF, NULL, 0);
    xc_interface_close(xch);
    return off;
}

static const char *console_log;

/* How many times the guest's kernel says it came back from a suspend. */
static int resumes_said(void)
{
    char line[512];
    int n = 0;
    FILE *f = console_log ? fopen(console_log, "r") : NULL;

    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, "Restarting tasks") != NULL;
    fclose(f);
    return n;
}

static void check_guard(struct xtk_domain *dom, int pv)
{
    const uint32_t busy = XTK_DOMINFO_PAUSED | XTK_DOMINFO_SUSPENDED;

    for (int c = HELD_PAUSE; c <= SUSPENDED_LOGGING; c++) {
        int said = resumes_said();

        if (killed_holding(dom->domid, (enum guard_case)c, pv) < 0) {
            FAIL("xtk-guard", "the toolstack could not get %s: %s",
                 guard_case_name[c], strerror(errno));
            return;
        }
        /* A suspended guest has come back once its kernel says so; without
         * the console, right after its request the guest has yet to
         * suspend: give it time to (a failed guard leaves it so). */
        if (c != HELD_PAUSE && said >= 0) {
            for (int t = 0; t < 600 && resumes_said() <= said; t++)
                sleep_ms(100);
            if (resumes_said() <= said) {
                FAIL("xtk-guard",
                     "killed %s: the guest's kernel never says "
                     "it resumed (%s)",
                     guard_case_name[c], console_log);
                return;
            }
        } else if (c == JUST_REQUESTED) {
            sleep_ms(5000);
        }
        if (wait_flags(dom, busy, 0, 60000) < 0) {
            FAIL("xtk-guard", "killed %s: the guest stays paused or suspended",
                 guard_case_name[c]);
            return;
        }
        /* The guard switches the log off after it has resumed the guest:
         * give it a moment. */
        for (int t = 0; !pv && c == SUSPENDED_LOGGING && t < 100 &&
                        logdirty_off(dom->domid) != 1;
             t++)
            sleep_ms(100);
        if (!pv && c == SUSPENDED_LOGGING && logdirty_off(dom->domid) != 1) {
            FAIL("xtk-guard", "killed %s: the dirty log stays on",
                 guard_case_name[c]);
            return;
        }
        /* The resumed guest's xenbus settles before the next request. */
        sleep_ms(500);
    }
    OK("xtk-guard",
       "a toolstack killed holding a pause, right after a "
       "suspend request, and with the guest suspended%s: "
       "each time the guest runs on",
       pv ? "" : " and the dirty log on (then off)");
}

/* --status DOMID: the built-in guest's self-check, as it stands. */
static int print_status(const char *domid_s)
{
    char *end;
    unsigned long domid = strtoul(domid_s, &end, 10);
    xenforeignmemory_handle *fm;
    xen_pfn_t pfn = XTK_GUEST_STATUS_GPA >> 12;
    int err = 0, rc = 1;
    const struct xtk_guest_status *st;

    if (*end || end == domid_s) {
        fprintf(stderr, "xen-probe: %s is not a domain id\n", domid_s);
        return 2;
    }
    fm = xenforeignmemory_open(NULL, 0);
    if (!fm) {
        perror("xen-probe: xenforeignmemory_open");
        return 1;
    }
    st = xenforeignmemory_map(fm, (uint32_t)domid, PROT_READ, 1, &pfn, &err);
    if (!st || err) {
        fprintf(stderr, "xen-probe: domain %lu: mapping its status page: %s\n",
                domid, strerror(st ? -err : errno));
    } else if (st->magic != XTK_GUEST_STATUS_MAGIC) {
        fprintf(stderr, "xen-probe: domain %lu has no xtk guest status page\n",
                domid);
    } else {
        printf("state=%u workload=%u vcpus=%u counter=%llu suspends=%llu "
               "resumes=%llu errors=%u stopped_last_us=%llu "
               "stopped_max_us=%llu ticks=%llu moves=%llu message=%.200s\n",
               st->state, st->workload, st->nr_vcpus_up,
               (unsigned long long)st->counter,
               (unsigned long long)st->suspends,
               (unsigned long long)st->resumes, st->errors,
               (unsigned long long)(st->stopped_last_ns / 1000),
               (unsigned long long)(st->stopped_max_ns / 1000),
               (unsigned long long)st->ticks, (unsigned long long)st->moves,
               st->message[0] ? st->message : "-");
        rc = 0;
    }
    if (st)
        xenforeignmemory_unmap(fm, (void *)st, 1);
    xenforeignmemory_close(fm);
    return rc;
}

int main(int argc, char **argv)
{
    struct xtk_ctx *ctx;
    struct xtk_domain *dom;
    struct xtk_domain_info info;
    int cycles, pv = 0;

    if (argc == 3 && !strcmp(argv[1], "--status"))
        return print_status(argv[2]);
    for (;;) {
        if (argc > 1 && !strcmp(argv[1], "--pv")) {
            pv = 1;
            argc--, argv++;
        } else if (argc > 2 && !strcmp(argv[1], "--console")) {
            console_log = argv[2];
            argc -= 2, argv += 2;
        } else {
            break;
        }
    }
    if (argc != 3 || (cycles = atoi(argv[2])) <= 0) {
        fprintf(stderr, "usage: xen-probe [--pv] [--console FILE] NAME CYCLES\n"
                        "       xen-probe --status DOMID\n");
        return 2;
    }
    setenv("XTK_BACKEND", "xen", 1);
    ctx = xtk_ctx_open(NULL, NULL, 0);
    if (!ctx) {
        FAIL("xtk-lookup", "no context: %s", strerror(errno));
        return failed;
    }
    dom = xtk_domain_lookup(ctx, argv[1]);
    if (!dom || info_of(dom, &info) < 0) {
        FAIL("xtk-lookup", "%s: %s", argv[1], strerror(errno));
        xtk_ctx_close(ctx);
        return failed;
    }
    if (strcmp(info.name, argv[1]) || !info.nr_vcpus || !info.nr_pages)
        FAIL("xtk-lookup", "domain %u: name '%s', %u vCPUs, %llu pages",
             info.domid, info.name, info.nr_vcpus,
             (unsigned long long)info.nr_pages);
    else
        OK("xtk-lookup", "%s is domain %u: %u vCPU(s), %llu pages, flags %#x",
           info.name, info.domid, info.nr_vcpus,
           (unsigned long long)info.nr_pages, info.flags);

    check_pause(ctx, dom);
    /* The p2m of a 128 MiB guest is well under 1 M frames. */
    check_logdirty(dom, 1u << 20, pv);
    check_suspend(dom, cycles);
    check_guard(dom, pv);

    if (wait_flags(dom, XTK_DOMINFO_PAUSED | XTK_DOMINFO_SUSPENDED, 0, 5000) <
        0)
        FAIL("xtk-running", "the guest is left paused or suspended");
    else
        OK("xtk-running", "neither paused nor suspended");
    xtk_domain_close(dom);
    xtk_ctx_close(ctx);
    return failed;
}
