/*
 * kvm-test.h - what the kvm tests share: a private run directory, the
 * build's xtk-hv and guest, domains made through the public API, and a
 * view of a guest's status page through the backend's RAM mapping.
 */
#ifndef XTK_KVM_TEST_H
#define XTK_KVM_TEST_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "abi.h"
#include "backend.h"
#include "kvm/kvm.h"
#include "test.h"

static char kt_rundir[64];

static inline uint64_t kt_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void kt_sleep_ms(unsigned int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/*
 * Waits (polling every 5 ms) until cond holds: up to ms, but never less
 * than 30 s, since a loaded machine (make -j2 check, a QEMU beside) can
 * starve a guest's vCPU thread for seconds.  What is waited for is
 * behaviour, not speed: a pass returns as soon as cond holds.
 */
#define KT_WAIT(cond, ms, ...)                                                 \
    do {                                                                       \
        uint64_t kt_deadline_ = kt_now_ms() + ((ms) < 30000 ? 30000 : (ms));   \
        while (!(cond) && kt_now_ms() < kt_deadline_)                          \
            kt_sleep_ms(5);                                                    \
        TEST_ASSERT((cond), __VA_ARGS__);                                      \
    } while (0)

/*
 * What each thread of this test's xtk-hv processes is doing (state, CPU
 * ticks used, where it sleeps, its kernel stack): a guest that stops
 * making progress is told apart from a vCPU thread that is parked,
 * waiting in the kernel or starved.
 */
static void kt_dump_threads(void)
{
    char cmd[1024];

    snprintf(cmd, sizeof(cmd),
             "for p in $(pgrep -x xtk-hv); do"
             " tr '\\0' '\\n' </proc/$p/environ 2>/dev/null |"
             " grep -qx 'XTK_RUNDIR=%s' || continue;"
             " for t in /proc/$p/task/*; do"
             " s=$(sed 's/^.*) //' $t/stat 2>/dev/null);"
             " echo \"xtk-hv $p thread ${t##*/} ($(cat $t/comm 2>/dev/null)):"
             " state $(echo $s | cut -d' ' -f1),"
             " utime+stime $(echo $s | cut -d' ' -f12-13),"
             " wchan $(cat $t/wchan 2>/dev/null)\";"
             " sed 's/^/    /' $t/stack 2>/dev/null; done; done >&2",
             kt_rundir);
    if (system(cmd) != 0)
        fprintf(stderr, "listing xtk-hv's threads failed\n");
}

static void kt_cleanup(void)
{
    struct xtk_ctx *ctx = xtk_ctx_open(NULL, NULL, XTK_CTX_SILENT);
    struct xtk_domain_info *v;
    char cmd[256];
    size_t n;

    /* Whatever a failed test left running is destroyed, after a look at
     * what its xtk-hv's threads were doing. */
    if (ctx && xtk_domain_list(ctx, &v, &n) == 0) {
        if (n)
            kt_dump_threads();
        for (size_t i = 0; i < n; i++) {
            struct xtk_domain *dom = xtk_domain_open(ctx, v[i].domid);
            char con[4096];
            uint64_t off = 0;
            size_t len = sizeof(con) - 1;
            /* Its console goes to the test's log. */
            if (dom && xtk_domain_console_read(dom, &off, con, &len) == 0) {
                con[len] = 0;
                fprintf(stderr, "console of domain %u:\n%s", v[i].domid, con);
            }
            xtk_domain_destroy(dom);
            xtk_domain_close(dom);
        }
        free(v);
    }
    xtk_ctx_close(ctx);
    /* xtk-hv's logs end up in the test's log. */
    snprintf(cmd, sizeof(cmd), "cat %s/*.log >&2 2>/dev/null; rm -rf %s",
             kt_rundir, kt_rundir);
    if (kt_rundir[0] && system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", kt_rundir);
}

/*
 * Sets up the environment: a fresh run directory, the build's xtk-hv and
 * guest, no store unless the test starts one.  Returns a context.
 */
static inline struct xtk_ctx *kt_setup(void)
{
    const char *b = getenv("top_builddir");
    char path[512];
    struct xtk_ctx *ctx;
    int fd;

    fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        TEST_SKIP("/dev/kvm: %s", strerror(errno));
    close(fd);
    if (!b)
        b = ".";
    snprintf(path, sizeof(path), "%s/xtk-hv", b);
    setenv("XTK_HV", path, 0);
    snprintf(path, sizeof(path), "%s/guests/xtk-guest.elf", b);
    setenv("XTK_GUEST", path, 0);
    snprintf(kt_rundir, sizeof(kt_rundir), "/tmp/xtk-test.XXXXXX");
    TEST_ASSERT(mkdtemp(kt_rundir), "mkdtemp");
    setenv("XTK_RUNDIR", kt_rundir, 1);
    atexit(kt_cleanup);
    ctx = xtk_ctx_open(NULL, NULL, 0);
    TEST_ASSERT(ctx, "xtk_ctx_open");
    return ctx;
}

/* Creates a domain running the built-in guest with this command line. */
static inline struct xtk_domain *kt_create(struct xtk_ctx *ctx,
                                           const char *name, uint32_t vcpus,
                                           uint64_t mib, const char *cmdline,
                                           uint32_t flags)
{
    struct xtk_domain_config cfg = {
        .name = name,
        .memory_mib = mib,
        .nr_vcpus = vcpus,
        .cmdline = cmdline,
        .flags = flags,
    };
    struct xtk_domain *dom = xtk_domain_create(ctx, &cfg);

    TEST_ASSERT(dom, "create %s (%u vCPUs, %s)", name ? name : "-", vcpus,
                cmdline);
    return dom;
}

/* The guest's RAM, mapped read-write through the backend. */
static inline uint8_t *kt_ram(struct xtk_domain *dom)
{
    void *p = dom->ops->map_all(dom, PROT_READ | PROT_WRITE);

    TEST_ASSERT(p, "map_all");
    return p;
}

static inline volatile struct xtk_guest_status *
kt_status(struct xtk_domain *dom)
{
    return (volatile struct xtk_guest_status *)(kt_ram(dom) +
                                                XTK_GUEST_STATUS_GPA);
}

/* Waits until the guest runs with all its vCPUs. */
static inline void kt_wait_up(struct xtk_domain *dom, uint32_t vcpus)
{
    volatile struct xtk_guest_status *st = kt_status(dom);

    KT_WAIT(st->magic == XTK_GUEST_STATUS_MAGIC &&
                st->state == XTK_GUEST_RUNNING && st->nr_vcpus_up == vcpus,
            5000, "guest up with %u vCPUs (state %u, up %u, message %s)", vcpus,
            st->state, st->nr_vcpus_up, (const char *)st->message);
}

/*
 * The host-side self-check must pass.  It reads one instant of the guest:
 * a second handle holds a pause meanwhile (and its close releases it).
 */
static inline void kt_check(struct xtk_domain *dom)
{
    struct xtk_domain *h = xtk_domain_open(dom->ctx, xtk_domain_id(dom));
    struct xtk_domain_info info;
    char why[256];

    TEST_ASSERT(h && xtk__domain_pause_hold(h) == 0, "pause to check");
    TEST_ASSERT(xtk_domain_info(dom, &info) == 0, "info");
    TEST_ASSERT(
        xtk__guest_check(kt_ram(dom), info.nr_pages, why, sizeof(why)) == 0,
        "self-check: %s", why);
    xtk_domain_close(h);
}

/* Reads the whole console so far. */
static inline size_t kt_console(struct xtk_domain *dom, char *buf, size_t size)
{
    uint64_t off = 0;
    size_t total = 0;

    while (total + 1 < size) {
        size_t n = size - 1 - total;
        TEST_ASSERT(xtk_domain_console_read(dom, &off, buf + total, &n) == 0,
                    "console read");
        if (!n)
            break;
        off += n;
        total += n;
    }
    buf[total] = 0;
    return total;
}

#endif /* XTK_KVM_TEST_H */
