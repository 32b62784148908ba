/*
 * test-engine.c - the save and restore engines through their API
 * (xtk/save.h, xtk/restore.h) with real KVM guests:
 *   - round trips to a file for the idle, dirtying and 4-vCPU spin-lock
 *     workloads, live and not, by each suspend method, and with the memory
 *     mapped batch by batch as on Xen: the source is gone,
 *     the restored guest runs on and passes its self-check (its own, after
 *     the resume, and the host-side one);
 *   - a live checkpoint (XTK_SAVE_KEEP) leaves the source running;
 *   - a checkpointed stream: epochs in the file, and failover to the last
 *     complete one when the stream is cut inside the next;
 *   - a checksummed live save of a guest rewriting its memory verifies;
 *   - the stop policies say why they stopped;
 *   - bad options are refused, and the asynchronous form calls back once.
 */
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <xtk/restore.h>
#include <xtk/save.h>

#include "kvm-test.h"

static struct xtk_ctx *ctx;
static char img[128];
static unsigned int
    img_flags; /* more flags for the stream save_to_file writes */

static uint64_t progress(volatile struct xtk_guest_status *st)
{
    uint64_t sum = st->counter + st->dirty.seq + st->spin.shared_count;

    for (int i = 0; i < XTK_GUEST_MAX_VCPUS; i++)
        sum += st->heartbeat[i];
    return sum;
}

static int domain_count(void)
{
    struct xtk_domain_info *v;
    size_t n;

    TEST_ASSERT(xtk_domain_list(ctx, &v, &n) == 0, "list");
    free(v);
    return (int)n;
}

/* Saves dom into img with opts; the report must have what every save has. */
static struct xtk_stats *save_to_file(struct xtk_domain *dom,
                                      struct xtk_save_options *o,
                                      struct xtk_save **svp)
{
    struct xtk_stream *out =
        xtk_stream_file(ctx, img, XTK_STREAM_WRITE | img_flags);
    struct xtk_save *sv;
    uint64_t ns;

    TEST_ASSERT(out, "open %s", img);
    sv = xtk_save_new(dom, out, o);
    TEST_ASSERT(sv, "xtk_save_new");
    TEST_ASSERT(xtk_save_run(sv) == 0, "save");
    TEST_ASSERT(xtk_stream_close(out) == 0, "close the stream");
    struct xtk_stats *st = xtk_save_stats(sv);
    TEST_ASSERT(xtk_stats_interval(st, "suspend requested",
                                   "suspended notified", &ns) == 0,
                "suspend stamped");
    /* A guest asked to suspend acknowledges first; a paused one is not
     * asked. */
    TEST_ASSERT((xtk_stats_interval(st, "guest acknowledged",
                                    "suspended notified", &ns) == 0) ==
                    (o->suspend != XTK_SUSPEND_PAUSE),
                "guest acknowledged stamped (suspend method %d)", o->suspend);
    TEST_ASSERT(xtk_stats_interval(st, "final dirty sync", "end sent", &ns) ==
                    0,
                "final round stamped");
    /* The state goes before the final round's pages. */
    TEST_ASSERT(xtk_stats_interval(st, "state sent", "last page sent", &ns) ==
                    0,
                "state stamped");
    *svp = sv;
    return st;
}

static void async_done(struct xtk_restore *rs, int err, void *arg)
{
    int *calls = arg;

    TEST_ASSERT(err == 0, "restore: %s", strerror(err));
    TEST_ASSERT(xtk_restore_domid(rs) > 0, "a domain id");
    (*calls)++;
}

/* Restores img (asynchronously, as a management tool would). */
static struct xtk_domain *restore_file(const char *name, uint64_t *failover)
{
    struct xtk_stream *in = xtk_stream_file(ctx, img, XTK_STREAM_READ);
    struct xtk_restore_options ro = {.name = name};
    struct xtk_restore *rs;
    struct xtk_domain *dom;
    int calls = 0;

    TEST_ASSERT(in, "open %s", img);
    rs = xtk_restore_new(ctx, in, &ro);
    TEST_ASSERT(rs, "xtk_restore_new");
    TEST_ASSERT(xtk_restore_start(rs, async_done, &calls) == 0, "start");
    TEST_ASSERT_ERRNO(xtk_restore_start(rs, async_done, &calls), EBUSY);
    while (!calls)
        event_base_loop(xtk_ctx_event_base(ctx), EVLOOP_ONCE);
    TEST_ASSERT(calls == 1, "called back once");
    *failover = 0;
    xtk_stats_counter(xtk_restore_stats(rs), "failover", failover);
    dom = xtk_domain_open(ctx, xtk_restore_domid(rs));
    TEST_ASSERT(dom, "open the restored domain");
    xtk_restore_free(rs);
    xtk_stream_close(in);
    return dom;
}

/*
 * The restored guest runs on and checks out; one that suspended itself
 * (not paused) resumed, which ran its own check.
 */
static void check_restored(struct xtk_domain *dom, uint32_t vcpus,
                           int suspended)
{
    volatile struct xtk_guest_status *st = kt_status(dom);
    uint64_t p;

    KT_WAIT(st->state == XTK_GUEST_RUNNING && st->resumes >= !!suspended, 3000,
            "the guest resumed (state %u, resumes %llu, message %s)", st->state,
            (unsigned long long)st->resumes, (const char *)st->message);
    p = progress(st);
    KT_WAIT(progress(st) > p + 10, 3000, "it runs on");
    TEST_ASSERT(st->errors == 0 && st->nr_vcpus_up == vcpus,
                "errors %u, %u vCPUs up: %s", st->errors, st->nr_vcpus_up,
                (const char *)st->message);
    kt_check(dom);
}

/*
 * With batch_maps set, a source is saved as on a backend that cannot map a
 * guest's memory whole (Xen): its ops without map_all, so the senders map
 * each batch (map_batch) and unmap it once written.
 */
static int batch_maps;
static struct xtk__backend_ops batch_ops;

static void roundtrip(const char *name, uint32_t vcpus, const char *cmdline,
                      uint32_t flags, uint32_t method)
{
    struct xtk_domain *dom =
        kt_create(ctx, name, vcpus, 32, cmdline, XTK_DOMCFG_NO_STORE);
    struct xtk_save_options o = {.flags = flags, .suspend = method};
    volatile struct xtk_guest_status *st;
    struct xtk_save *sv;
    uint64_t failover;

    fprintf(stderr, "   %s: %u vCPUs, %s, %s, method %u\n", name, vcpus,
            cmdline, flags & XTK_SAVE_LIVE ? "live" : "not live", method);
    kt_wait_up(dom, vcpus);
    st = kt_status(dom);
    if (strstr(cmdline, "dirty"))
        KT_WAIT(st->dirty.passes >= 1, 5000, "a pass of the dirtier");
    if (batch_maps) { /* the test's own mapping (kt_status) stays */
        batch_ops = *dom->ops;
        batch_ops.map_all = NULL;
        dom->ops = &batch_ops;
    }
    save_to_file(dom, &o, &sv);
    xtk_save_free(sv);
    xtk_domain_close(dom);
    TEST_ASSERT(domain_count() == 0, "the source is gone");

    dom = restore_file(NULL, &failover);
    TEST_ASSERT(!failover, "no failover for a plain stream");
    check_restored(dom, vcpus, method != XTK_SUSPEND_PAUSE);
    struct xtk_domain_info info;
    TEST_ASSERT(xtk_domain_info(dom, &info) == 0 && !strcmp(info.name, name),
                "the stream's name: %s", info.name);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

static void roundtrips(void)
{
    roundtrip("idle", 1, "workload=idle", 0, XTK_SUSPEND_EVTCHN);
    roundtrip("idle-live", 1, "workload=idle", XTK_SAVE_LIVE,
              XTK_SUSPEND_EVTCHN);
    roundtrip("dirty", 1, "workload=dirty pages=2048 rate=0", XTK_SAVE_LIVE,
              XTK_SUSPEND_EVTCHN);
    roundtrip("dirty-paused", 1, "workload=dirty pages=2048 rate=0",
              XTK_SAVE_LIVE, XTK_SUSPEND_PAUSE);
    roundtrip("spin", 4, "workload=spin", XTK_SAVE_LIVE, XTK_SUSPEND_EVTCHN);
    roundtrip("spin-paused", 4, "workload=spin", 0, XTK_SUSPEND_PAUSE);
    batch_maps = 1;
    roundtrip("dirty-batches", 1, "workload=dirty pages=2048 rate=0",
              XTK_SAVE_LIVE, XTK_SUSPEND_EVTCHN);
    roundtrip("idle-batches", 1, "workload=idle", 0, XTK_SUSPEND_EVTCHN);
    batch_maps = 0;
}

/* A live checkpoint: the source runs on, the copy too, side by side. */
static void keep(void)
{
    struct xtk_domain *src =
        kt_create(ctx, "keep", 1, 32, "workload=dirty pages=1024 rate=5000",
                  XTK_DOMCFG_NO_STORE);
    struct xtk_save_options o = {.flags = XTK_SAVE_LIVE | XTK_SAVE_KEEP};
    struct xtk_domain *copy;
    struct xtk_save *sv;
    uint64_t failover, ns;

    kt_wait_up(src, 1);
    struct xtk_stats *st = save_to_file(src, &o, &sv);
    /* Staged: the source ran again before its stream was written out. */
    TEST_ASSERT(
        xtk_stats_interval(st, "end staged", "source resumed", &ns) == 0 &&
            xtk_stats_interval(st, "source resumed", "end sent", &ns) == 0,
        "the source resumed once its checkpoint was staged, before "
        "it was written");
    xtk_save_free(sv);
    check_restored(src, 1, 1);
    copy = restore_file("keep-copy", &failover);
    check_restored(copy, 1, 1);
    TEST_ASSERT(domain_count() == 2, "both run");
    xtk_domain_destroy(copy);
    xtk_domain_close(copy);
    xtk_domain_destroy(src);
    xtk_domain_close(src);
}

/* Offsets of the CHECKPOINT records in img. */
static size_t checkpoints(uint64_t *off, size_t max)
{
    struct xtk_stream *in = xtk_stream_file(ctx, img, XTK_STREAM_READ);
    struct xtk_stream_image_header ih;
    struct xtk_stream_domain_header dh;
    struct xtk_stream_record rec = {.type = XTK_REC_PAGE_DATA};
    size_t n = 0;

    TEST_ASSERT(in && xtk_stream_read_image_header(in, &ih) == 0 &&
                    xtk_stream_read_domain_header(in, &dh) == 0,
                "headers");
    while (xtk_stream_read_record(in, &rec) == 0 && rec.type != XTK_REC_END)
        if (rec.type == XTK_REC_CHECKPOINT && n < max)
            off[n++] = rec.offset;
    TEST_ASSERT(rec.type == XTK_REC_END, "the stream ends with END");
    xtk_stream_close(in);
    return n;
}

static void checkpointed(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "ckpt", 2, 32, "workload=spin", XTK_DOMCFG_NO_STORE);
    struct xtk_save_options o = {
        .flags = XTK_SAVE_LIVE | XTK_SAVE_KEEP,
        .checkpoint_interval_ms = 20,
        .checkpoints = 4,
    };
    struct xtk_hist_summary hs;
    struct xtk_save *sv;
    uint64_t off[8], failover;
    size_t n;

    kt_wait_up(dom, 2);
    struct xtk_stats *st = save_to_file(dom, &o, &sv);
    TEST_ASSERT(
        xtk_hist_summarize(xtk_stats_hist(st, "final round", "ns"), &hs) == 0 &&
            hs.count == 4,
        "4 final rounds timed (%llu)", (unsigned long long)hs.count);
    xtk_save_free(sv);
    check_restored(dom, 2, 1);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);

    n = checkpoints(off, 8);
    TEST_ASSERT(n == 3, "3 CHECKPOINT records and END: %zu", n);
    dom = restore_file(NULL, &failover);
    TEST_ASSERT(!failover, "the whole stream: no failover");
    check_restored(dom, 2, 1);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);

    /* Cut inside the last epoch: the restore fails over to checkpoint 3. */
    TEST_ASSERT(truncate(img, (off_t)off[2] + 8 + 100) == 0, "truncate");
    dom = restore_file(NULL, &failover);
    TEST_ASSERT(failover == 1, "failed over");
    check_restored(dom, 2, 1);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);

    /* Cut before the first checkpoint: nothing to fail over to. */
    TEST_ASSERT(truncate(img, (off_t)off[0] - 8) == 0, "truncate");
    struct xtk_stream *in = xtk_stream_file(ctx, img, XTK_STREAM_READ);
    struct xtk_restore *rs = xtk_restore_new(ctx, in, NULL);
    TEST_ASSERT(rs && xtk_restore_run(rs) < 0, "a cut epoch 0 fails");
    TEST_ASSERT(xtk_restore_domid(rs) == 0, "no domain id");
    xtk_restore_free(rs);
    xtk_stream_close(in);
    TEST_ASSERT(domain_count() == 0, "nothing left behind");
}

/*
 * A checksummed live checkpoint of a guest rewriting its memory flat out:
 * its pages change while they are written, and every checksum must still
 * match the bytes in the file; the copy restored from it runs.
 */
static void checksummed_live(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "crc", 1, 32, "workload=dirty pages=4096 rate=0",
                  XTK_DOMCFG_NO_STORE);
    struct xtk_save_options o = {.flags = XTK_SAVE_LIVE | XTK_SAVE_KEEP};
    struct xtk_stream_image_header ih;
    struct xtk_stream_domain_header dh;
    struct xtk_stream_record rec = {.type = XTK_REC_PAGE_DATA};
    struct xtk_stream *in;
    struct xtk_save *sv;
    uint64_t failover;
    int r;

    kt_wait_up(dom, 1);
    KT_WAIT(kt_status(dom)->dirty.passes >= 1, 5000, "a pass of the dirtier");
    img_flags = XTK_STREAM_CHECKSUM;
    save_to_file(dom, &o, &sv);
    img_flags = 0;
    xtk_save_free(sv);

    in = xtk_stream_file(ctx, img, XTK_STREAM_READ | XTK_STREAM_CHECKSUM);
    TEST_ASSERT(in && xtk_stream_read_image_header(in, &ih) == 0 &&
                    xtk_stream_read_domain_header(in, &dh) == 0,
                "headers");
    while ((r = xtk_stream_read_record(in, &rec)) == 0 &&
           rec.type != XTK_REC_END)
        ;
    TEST_ASSERT(r == 0, "every checksum of the live save verifies");
    xtk_stream_close(in);

    struct xtk_domain *copy = restore_file("crc-copy", &failover);
    check_restored(copy, 1, 1);
    xtk_domain_destroy(copy);
    xtk_domain_close(copy);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

static int has_stop_reason(struct xtk_stats *st, const char *want)
{
    char *json = xtk_stats_format(st, XTK_STATS_JSON);
    int r = json && strstr(json, want) != NULL;

    free(json);
    return r;
}

static void policies(void)
{
    struct xtk_domain *dom;
    struct xtk_save_options o = {.flags = XTK_SAVE_LIVE | XTK_SAVE_KEEP,
                                 .policy = XTK_SAVE_POLICY_XEN};
    struct xtk_save *sv;
    struct xtk_stats *st;

    dom = kt_create(ctx, "pol", 1, 32, "workload=dirty pages=4096 rate=0",
                    XTK_DOMCFG_NO_STORE);
    kt_wait_up(dom, 1);
    st = save_to_file(dom, &o, &sv);
    TEST_ASSERT(has_stop_reason(st, "\"stop: xen policy"), "xen's reason");
    TEST_ASSERT(xtk_stats_round_count(st) <= 6, "at most 5 rounds and the "
                                                "final one");
    xtk_save_free(sv);

    o = (struct xtk_save_options){.flags = XTK_SAVE_LIVE | XTK_SAVE_KEEP,
                                  .max_rounds = 1,
                                  .max_downtime_ms = 1000000};
    st = save_to_file(dom, &o, &sv);
    TEST_ASSERT(has_stop_reason(st, "\"stop: "), "a reason");
    TEST_ASSERT(xtk_stats_round_count(st) <= 2, "round 0 and the final one");
    xtk_save_free(sv);
    check_restored(dom, 1, 1);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

/* ---- the job contract: done after start returned, peer_fd as given ---- */

static int contract_returned, contract_calls, contract_err;

static void contract_done(struct xtk_save *sv, int err, void *arg)
{
    TEST_ASSERT(contract_returned, "done before xtk_save_start returned");
    contract_calls++;
    contract_err = err;
}

static int failing_request(struct xtk_domain *dom)
{
    errno = EIO;
    return -1;
}

static void contract(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "contract", 1, 16, "workload=idle", XTK_DOMCFG_NO_STORE);
    struct xtk_save_options o = {.flags = XTK_SAVE_MIGRATE};
    struct xtk__backend_ops ops;
    struct xtk_stream *out;
    struct xtk_save *sv;
    int sp[2];

    kt_wait_up(dom, 1);
    /* A suspend request that fails at once, inside xtk_save_start. */
    ops = *dom->ops;
    ops.suspend_request = failing_request;
    dom->ops = &ops;
    TEST_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0,
                "socketpair");
    o.peer_fd = sp[0];
    out = xtk_stream_socket(ctx, sp[0], XTK_STREAM_WRITE);
    TEST_ASSERT(out, "stream");
    sv = xtk_save_new(dom, out, &o);
    TEST_ASSERT(sv, "save");
    TEST_ASSERT(xtk_save_start(sv, contract_done, NULL) == 0, "started");
    contract_returned = 1;
    TEST_ASSERT(contract_calls == 0, "done not yet");
    for (int i = 0; i < 100 && !contract_calls; i++)
        event_base_loop(xtk_ctx_event_base(ctx), EVLOOP_ONCE);
    TEST_ASSERT(contract_calls == 1 && contract_err == EIO,
                "done once from the loop, with the failure (%d, %d)",
                contract_calls, contract_err);
    TEST_ASSERT(!(fcntl(sp[0], F_GETFL) & O_NONBLOCK),
                "the caller's descriptor is as it was given");
    xtk_save_free(sv);
    xtk_stream_close(out);
    close(sp[0]);
    close(sp[1]);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

static void bad_options(void)
{
    struct xtk_domain *dom =
        kt_create(ctx, "opts", 1, 16, "workload=idle", XTK_DOMCFG_NO_STORE);
    struct xtk_stream *out = xtk_stream_file(ctx, img, XTK_STREAM_WRITE);
    struct xtk_save_options o = {.flags = 0x100};
    struct xtk_restore_options ro = {.name = ""};

    TEST_ASSERT(out, "stream");
    TEST_ASSERT(!xtk_save_new(dom, out, &o) && errno == EINVAL, "bad flags");
    o = (struct xtk_save_options){.checkpoints = 2};
    TEST_ASSERT(!xtk_save_new(dom, out, &o) && errno == EINVAL,
                "checkpoints without an interval");
    o = (struct xtk_save_options){.flags = XTK_SAVE_MIGRATE, .peer_fd = -1};
    TEST_ASSERT(!xtk_save_new(dom, out, &o) && errno == EINVAL,
                "migrate without a peer");
    o = (struct xtk_save_options){.suspend = 7};
    TEST_ASSERT(!xtk_save_new(dom, out, &o) && errno == EINVAL,
                "suspend method");
    TEST_ASSERT(!xtk_save_new(NULL, out, NULL) && errno == EINVAL, "no dom");
    TEST_ASSERT(!xtk_restore_new(ctx, out, &ro) && errno == EINVAL,
                "empty name");
    ro = (struct xtk_restore_options){.final_rcvbuf = 1 << 20};
    TEST_ASSERT(!xtk_restore_new(ctx, out, &ro) && errno == EINVAL,
                "a final receive buffer without a peer");
    TEST_ASSERT_ERRNO(xtk_save_run(NULL), EINVAL);
    TEST_ASSERT_ERRNO(xtk_restore_run(NULL), EINVAL);
    xtk_save_free(NULL);
    xtk_restore_free(NULL);
    xtk_stream_close(out);
    xtk_domain_destroy(dom);
    xtk_domain_close(dom);
}

int main(void)
{
    ctx = kt_setup();
    snprintf(img, sizeof(img), "%s/img.xtk", kt_rundir);
    TEST_RUN(bad_options);
    TEST_RUN(contract);
    TEST_RUN(roundtrips);
    TEST_RUN(keep);
    TEST_RUN(checkpointed);
    TEST_RUN(checksummed_live);
    TEST_RUN(policies);
    xtk_ctx_close(ctx);
    return 0;
}
