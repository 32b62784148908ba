/*
 * test-dirty.c - dirty logging against a guest that rewrites a known set
 * of pages: every third page of a 600-page area.  After a clean read and
 * two full passes, the final bitmap must hold exactly that set in the area
 * (no page missed, none of the gaps), the dirtier's table, and nothing
 * above it; the pages xtk-hv's own agents write are always reported.
 * Also: FINAL needs a paused domain, one handle logs at a time, and the
 * log stops with its handle; reads sent ahead (logdirty_start) give the
 * same, also when another operation reads their answer on its way, and
 * keep their order with other requests sent ahead.
 */
#include <poll.h>

#include "kvm-test.h"

#define AREA_PAGES 600
#define STRIDE 3

static int bit(const uint64_t *bm, uint64_t pfn)
{
    return (bm[pfn / 64] >> (pfn % 64)) & 1;
}

static uint64_t popcount(const uint64_t *bm, uint64_t words)
{
    uint64_t n = 0;

    for (uint64_t i = 0; i < words; i++)
        n += (uint64_t)__builtin_popcountll(bm[i]);
    return n;
}

/* Whether fd is readable within ms. */
static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};

    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* Requests sent ahead: the fd, async_ready, the order, EBUSY. */
static void sent_ahead(struct xtk_domain *dom, uint64_t *bm, uint64_t nr)
{
    const struct xtk__backend_ops *ops = dom->ops;
    struct xtk_domain_info info;
    struct xtk__output out;
    uint64_t count = ~0ull;
    int fd = -1, fd2 = -1;

    TEST_ASSERT(ops->logdirty_start(dom, 0, &fd) == 0 && fd >= 0,
                "logdirty_start");
    TEST_ASSERT_ERRNO(ops->logdirty_start(dom, 0, &fd2), EBUSY);
    TEST_ASSERT(readable(fd, 5000), "the answer makes the fd readable");
    TEST_ASSERT(ops->async_ready(dom) == XTK__ASYNC_DIRTY, "ready: the read");
    TEST_ASSERT(readable(fd, 0), "still readable: not taken");
    TEST_ASSERT(ops->logdirty_finish(dom, bm, nr, &count) == 0 &&
                    count == popcount(bm, (nr + 63) / 64),
                "finish: count %llu", (unsigned long long)count);
    TEST_ASSERT(!readable(fd, 0), "taken: not readable");
    TEST_ASSERT(ops->async_ready(dom) == 0, "nothing out");

    /* Another operation reads the answer on its way: still readable. */
    TEST_ASSERT(ops->logdirty_start(dom, 0, &fd2) == 0 && fd2 == fd,
                "one fd per handle");
    TEST_ASSERT(xtk_domain_info(dom, &info) == 0, "info meanwhile");
    TEST_ASSERT(readable(fd, 0), "readable after info read the answer");
    TEST_ASSERT(ops->async_ready(dom) == XTK__ASYNC_DIRTY, "ready");
    TEST_ASSERT(ops->logdirty_finish(dom, bm, nr, &count) == 0, "finish");
    TEST_ASSERT(!readable(fd, 0), "taken");

    /* Two kinds out, taken in the other order; a refusal kept for its
     * finish (epoch 0 is never a release). */
    TEST_ASSERT(ops->logdirty_start(dom, 0, &fd) == 0, "read ahead");
    TEST_ASSERT(ops->output_release_start(dom, 0, &fd2) == 0 && fd2 == fd,
                "release ahead");
    TEST_ASSERT_ERRNO(ops->output_release_finish(dom, &out), EINVAL);
    TEST_ASSERT(readable(fd, 0), "the read's answer is in, not taken");
    TEST_ASSERT(ops->async_ready(dom) == XTK__ASYNC_DIRTY, "ready: the read");
    TEST_ASSERT(ops->logdirty_finish(dom, bm, nr, &count) == 0 &&
                    count == popcount(bm, (nr + 63) / 64),
                "the read after the release");
    TEST_ASSERT(!readable(fd, 0) && ops->async_ready(dom) == 0, "all taken");
    TEST_ASSERT_ERRNO(ops->output_release_finish(dom, &out), ENOENT);
}

int main(void)
{
    struct xtk_ctx *ctx = kt_setup();
    struct xtk_domain *dom, *other;
    struct xtk_domain_info info;
    volatile struct xtk_guest_status *st;
    uint64_t *bm, nr, count, passes;
    const uint64_t base = XTK_GUEST_WORK_GPA >> 12;
    const uint64_t table0 = base + AREA_PAGES;
    const uint64_t table_end = table0 + (AREA_PAGES * 8 + 4095) / 4096;
    char cmdline[128];

    snprintf(cmdline, sizeof(cmdline),
             "workload=dirty pages=%d stride=%d rate=0", AREA_PAGES, STRIDE);
    dom = kt_create(ctx, "dirty", 1, 32, cmdline, XTK_DOMCFG_NO_STORE);
    kt_wait_up(dom, 1);
    st = kt_status(dom);
    KT_WAIT(st->dirty.passes >= 1, 5000, "the dirtier made a pass");
    TEST_ASSERT(xtk_domain_info(dom, &info) == 0, "info");
    nr = info.nr_pages;
    bm = calloc((nr + 63) / 64, 8);
    TEST_ASSERT(bm, "calloc");

    TEST_ASSERT(dom->ops->logdirty_enable(dom) == 0, "enabled");
    /* Asked by a request sent ahead (as a save's watch on a guest slow to
     * suspend does). */
    {
        struct xtk_domain_info ai;
        int fd = -1;

        TEST_ASSERT(dom->ops->info_start(dom, &fd) == 0 && fd >= 0,
                    "info sent ahead");
        TEST_ASSERT(readable(fd, 5000), "its answer makes the fd readable");
        TEST_ASSERT(dom->ops->async_ready(dom) == XTK__ASYNC_INFO,
                    "ready: the info");
        TEST_ASSERT(dom->ops->info_finish(dom, &ai) == 0 &&
                        (ai.flags & XTK_DOMINFO_LOGDIRTY) &&
                        ai.nr_pages == nr && ai.domid == xtk_domain_id(dom),
                    "its answer: the domain, logging");
        TEST_ASSERT(!readable(fd, 0) && dom->ops->async_ready(dom) == 0,
                    "taken");
        TEST_ASSERT_ERRNO(dom->ops->info_finish(dom, &ai), ENOENT);
    }
    TEST_ASSERT(xtk_domain_info(dom, &info) == 0 &&
                    (info.flags & XTK_DOMINFO_LOGDIRTY),
                "info says logging");
    other = xtk_domain_open(ctx, xtk_domain_id(dom));
    TEST_ASSERT(other, "second handle");
    TEST_ASSERT_ERRNO(other->ops->logdirty_enable(other), EBUSY);
    {
        struct xtk_domain_info ai;
        int fd = -1;

        TEST_ASSERT(other->ops->info_start(other, &fd) == 0,
                    "the other's info sent ahead");
        TEST_ASSERT_ERRNO(other->ops->info_start(other, &fd), EBUSY);
        TEST_ASSERT(other->ops->info_finish(other, &ai) == 0 &&
                        ai.domid == xtk_domain_id(dom),
                    "the other's info");
    }
    TEST_ASSERT_ERRNO(
        dom->ops->logdirty_read(dom, XTK__LOGDIRTY_FINAL, bm, nr, &count),
        EBUSY);

    /* Clean, then let every page of the set be rewritten (twice over). */
    TEST_ASSERT(dom->ops->logdirty_read(dom, 0, bm, nr, &count) == 0,
                "clean read");
    sent_ahead(dom, bm, nr);
    passes = st->dirty.passes;
    KT_WAIT(st->dirty.passes >= passes + 2, 5000, "two more passes");
    TEST_ASSERT(xtk__domain_pause_hold(dom) == 0, "pause");
    /* The final read sent ahead, a sync (info) reading its answer on the
     * way: the frames it found are all there at its finish. */
    {
        int fd;

        TEST_ASSERT(dom->ops->logdirty_start(dom, XTK__LOGDIRTY_FINAL, &fd) ==
                        0,
                    "final read sent ahead");
        TEST_ASSERT(xtk_domain_info(dom, &info) == 0, "info meanwhile");
        TEST_ASSERT(dom->ops->logdirty_finish(dom, bm, nr, &count) == 0,
                    "final read");
    }
    TEST_ASSERT(count == popcount(bm, (nr + 63) / 64), "count %llu",
                (unsigned long long)count);

    for (uint64_t i = 0; i < AREA_PAGES; i++)
        TEST_ASSERT(bit(bm, base + i) == (i % STRIDE == 0),
                    "area page %llu (pfn %#llx): dirty %d, expected %d",
                    (unsigned long long)i, (unsigned long long)(base + i),
                    bit(bm, base + i), i % STRIDE == 0);
    for (uint64_t pfn = table0; pfn < table_end; pfn++)
        TEST_ASSERT(bit(bm, pfn), "table page %#llx dirty",
                    (unsigned long long)pfn);
    for (uint64_t pfn = table_end; pfn < nr; pfn++)
        TEST_ASSERT(!bit(bm, pfn), "page %#llx above the workload is clean",
                    (unsigned long long)pfn);
    TEST_ASSERT(bit(bm, XTK_GUEST_STATUS_GPA >> 12), "status page dirty");
    TEST_ASSERT(bit(bm, XTK_GUEST_BOOT_GPA >> 12) &&
                    bit(bm, XTK_GUEST_CONS_GPA >> 12) &&
                    bit(bm, XTK_GUEST_STORE_GPA >> 12) &&
                    bit(bm, XTK_GUEST_NET_GPA >> 12),
                "host-written pages are reported");
    kt_check(dom);

    /* Paused, nothing more is written by the guest. */
    TEST_ASSERT(
        dom->ops->logdirty_read(dom, XTK__LOGDIRTY_FINAL, bm, nr, &count) == 0,
        "second final read");
    for (uint64_t pfn = 0x10; pfn < nr; pfn++)
        TEST_ASSERT(!bit(bm, pfn), "page %#llx clean while paused",
                    (unsigned long long)pfn);
    TEST_ASSERT(count == 4, "only the 4 host-written pages: %llu",
                (unsigned long long)count);

    /* The log ends with its handle. */
    TEST_ASSERT(xtk_domain_unpause(dom) == 0, "unpause");
    xtk_domain_close(dom);
    KT_WAIT(xtk_domain_info(other, &info) == 0 &&
                !(info.flags & XTK_DOMINFO_LOGDIRTY),
            5000, "logging stopped with its handle");
    TEST_ASSERT(other->ops->logdirty_enable(other) == 0,
                "another handle may log now");
    TEST_ASSERT(other->ops->logdirty_disable(other) == 0, "disable");
    TEST_ASSERT(xtk_domain_destroy(other) == 0, "destroy");
    xtk_domain_close(other);
    free(bm);
    xtk_ctx_close(ctx);
    return 0;
}
