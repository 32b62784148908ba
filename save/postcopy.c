/*
 * postcopy.c - a post-copy migration's source side: the thread that sends
 * the frames the destination runs without (see save-internal.h).
 *
 * Once the switch record is out, the guest runs on the destination and
 * every frame still to come is sent exactly once, in one of two ways:
 *
 *   asked   the destination's vCPU touched it: its request came on the
 *           back channel (the event loop queues it, xtk__pc_request), and
 *           it goes next, in a PAGE_DATA record of the requests queued
 *           (up to REQ_BATCH), never behind the bandwidth limit;
 *   pushed  otherwise, in frame order from just after the last frame
 *           asked for (a guest that touches its memory in order then
 *           finds the frames ahead of it already there: one request
 *           brings the run behind it, as QEMU's post-copy does), wrapping
 *           around to the frames passed over, PUSH_BATCH frames a record
 *           at most, at the bandwidth limit if there is one, and only
 *           while the socket holds less than QUEUE_MAX unsent (else a
 *           request's page would wait behind all that the push queued:
 *           behind 512 KiB at most, ~0.5 ms at 1 GB/s).
 *
 * A frame that is all zeroes goes as an XALLOC entry without data.  The
 * thread is the stream's only writer while it runs.  When every frame is
 * out, or a write failed, it writes 8 bytes to notify_fd.
 *
 * XTK_FAULT_POSTCOPY_SLOW=US (tests): a pause of US microseconds before
 * every record, so that a test can break a post-copy in its middle.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <time.h>
#include <unistd.h>

#include "save-internal.h"

#define XTK_LOG_CONTEXT "save"

#define REQ_BATCH 16
#define PUSH_BATCH 64
#define CREDIT_NS 50000000ull   /* an idle link lends 50 ms at most */
#define QUEUE_MAX (256u << 10)  /* unsent bytes the push leaves queued */
#define QUEUE_WAIT_NS 100000ull /* ... checked again this often */

struct xtk__pc {
    struct xtk_ctx *ctx;
    const uint8_t *ram;
    struct xtk_stream *out;
    int notify_fd, sock, last_q;
    uint64_t nr_pages, words;
    uint64_t *todo;   /* frames still to send (cleared as they go) */
    uint64_t *queued; /* asked for, in the queue */
    uint64_t remaining;
    pthread_t thread;
    int started;

    pthread_mutex_t lock; /* the queue, the limit, abort */
    pthread_cond_t cond;
    uint64_t *q; /* requested frames: at most one entry per frame */
    uint64_t *q_at;
    uint64_t qhead, qtail, qcap;
    uint64_t limit;    /* bytes a second; 0: none */
    uint64_t stall_ns; /* a socket that sends nothing this long: lost */
    int abort;
    unsigned int slow_us; /* XTK_FAULT_POSTCOPY_SLOW */

    struct xtk__pc_result res; /* the thread's, read once it is done */
    struct xtk_hist *service;  /* asked (queued) to written */
};

static int bit(const uint64_t *bm, uint64_t i)
{
    return (int)((bm[i / 64] >> (i % 64)) & 1);
}

static void clear_bit(uint64_t *bm, uint64_t i)
{
    bm[i / 64] &= ~(1ull << (i % 64));
}

/*
 * Whether the socket holds more than QUEUE_MAX unsent bytes; *since: when
 * it last took nothing, while it holds that much (0: it is moving).
 */
static int queued(struct xtk__pc *pc, uint64_t now, uint64_t *since)
{
    int q = 0;

    /* TCP: the bytes not sent yet (SIOCOUTQ would count those sent and
     * not acknowledged too, and hold the push to a window a round trip
     * on a long link); another socket: its queue. */
    if (pc->sock < 0 ||
        (ioctl(pc->sock, SIOCOUTQNSD, &q) < 0 &&
         ioctl(pc->sock, SIOCOUTQ, &q) < 0) ||
        q <= (int)QUEUE_MAX) {
        *since = 0;
        pc->last_q = -1;
        return 0;
    }
    if (q != pc->last_q || !*since)
        *since = now;
    pc->last_q = q;
    return 1;
}

/* Writes one PAGE_DATA record of the n frames pfns[]: 0 or -1 (errno). */
static int send_frames(struct xtk__pc *pc, const uint64_t *pfns, unsigned int n,
                       uint64_t *data)
{
    uint64_t entries[PUSH_BATCH];
    const void *pages[PUSH_BATCH];

    *data = 0;
    for (unsigned int i = 0; i < n; i++) {
        const uint8_t *page = pc->ram + (pfns[i] << XTK__PAGE_SHIFT);

        if (xtk__page_is_zero(page)) {
            entries[i] = xtk_pfn_entry(pfns[i], XTK_PAGE_XALLOC);
            pages[i] = NULL;
            pc->res.zero_pages++;
        } else {
            entries[i] = xtk_pfn_entry(pfns[i], XTK_PAGE_NOTAB);
            pages[i] = page;
            (*data)++;
        }
    }
    return xtk_stream_write_page_data(pc->out, n, entries, pages);
}

static void *pc_main(void *arg)
{
    struct xtk__pc *pc = arg;
    uint64_t cursor = 0, tb_next = 0, one = 1, stuck_since = 0;
    uint64_t pfns[PUSH_BATCH], at[REQ_BATCH];
    int err = 0;

    while (pc->remaining && !err) {
        unsigned int n = 0, asked = 0;
        uint64_t data, now;

        pthread_mutex_lock(&pc->lock);
        for (;;) {
            if (pc->abort) {
                err = ECANCELED;
                break;
            }
            /* The requests first: those still to send. */
            while (pc->qhead != pc->qtail && n < REQ_BATCH) {
                uint64_t pfn = pc->q[pc->qhead % pc->qcap];

                at[n] = pc->q_at[pc->qhead % pc->qcap];
                pc->qhead++;
                if (bit(pc->todo, pfn))
                    pfns[n++] = pfn;
            }
            if (n) {
                asked = 1;
                break;
            }
            now = xtk_now_ns();
            if (queued(pc, now, &stuck_since)) {
                if (stuck_since && now - stuck_since > pc->stall_ns) {
                    err = ETIMEDOUT; /* the link took nothing for that long */
                    break;
                }
            } else if (!(pc->limit && tb_next > now)) {
                break;
            }
            {
                /* The push waits for the link (at the limit, or to take
                 * what is queued); a request wakes it. */
                struct timespec ts;
                uint64_t wait =
                    pc->limit && tb_next > now ? tb_next - now : QUEUE_WAIT_NS;

                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += (time_t)(wait / 1000000000ull);
                ts.tv_nsec += (long)(wait % 1000000000ull);
                if (ts.tv_nsec >= 1000000000L) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&pc->cond, &pc->lock, &ts);
                continue;
            }
        }
        if (err) {
            pthread_mutex_unlock(&pc->lock);
            break;
        }
        if (asked) {
            cursor = pfns[n - 1] + 1;
        } else {
            for (uint64_t seen = 0; seen < pc->nr_pages && n < PUSH_BATCH;
                 seen++, cursor++) {
                if (cursor >= pc->nr_pages)
                    cursor = 0;
                if (bit(pc->todo, cursor))
                    pfns[n++] = cursor;
            }
        }
        for (unsigned int i = 0; i < n; i++)
            clear_bit(pc->todo, pfns[i]);
        pthread_mutex_unlock(&pc->lock);
        if (!n) { /* cannot be: remaining counts the bits */
            err = EPROTO;
            break;
        }
        if (pc->slow_us)
            usleep(pc->slow_us);
        if (send_frames(pc, pfns, n, &data) < 0) {
            err = errno ? errno : EIO;
            break;
        }
        now = xtk_now_ns();
        pc->res.last_write_ns = now;
        pc->res.data_pages += data;
        pc->remaining -= n;
        if (asked) {
            pc->res.asked_pages += n;
            for (unsigned int i = 0; i < n; i++)
                xtk_hist_record(pc->service, now - at[i]);
        } else {
            uint64_t limit = __atomic_load_n(&pc->limit, __ATOMIC_RELAXED);

            pc->res.pushed_pages += n;
            if (limit) {
                uint64_t idle = now > CREDIT_NS ? now - CREDIT_NS : 0;

                tb_next = (tb_next > idle ? tb_next : idle) +
                          (data * XTK__PAGE_SIZE + n * 8ull + 16) *
                              1000000000ull / limit;
            }
        }
    }
    pc->res.err = err;
    if (write(pc->notify_fd, &one, sizeof(one)) != sizeof(one))
        XTK_PERROR(pc->ctx, "cannot wake the event loop");
    return NULL;
}

struct xtk__pc *xtk__pc_new(struct xtk_ctx *ctx, const uint8_t *ram,
                            struct xtk_stream *out, const uint64_t *todo,
                            uint64_t nr_pages, int notify_fd, int sock)
{
    struct xtk__pc *pc = calloc(1, sizeof(*pc));

    if (!pc)
        return NULL;
    pc->ctx = ctx;
    pc->ram = ram;
    pc->out = out;
    pc->notify_fd = notify_fd;
    pc->sock = sock;
    pc->last_q = -1;
    pc->nr_pages = nr_pages;
    pc->words = (nr_pages + 63) / 64;
    pthread_mutex_init(&pc->lock, NULL);
    pthread_cond_init(&pc->cond, NULL);
    pc->todo = malloc(pc->words * 8 + 8);
    pc->queued = calloc(pc->words + 1, 8);
    if (!pc->todo || !pc->queued)
        goto err;
    memcpy(pc->todo, todo, pc->words * 8);
    for (uint64_t w = 0; w < pc->words; w++)
        pc->remaining += (uint64_t)__builtin_popcountll(pc->todo[w]);
    pc->qcap = pc->remaining + 1;
    pc->q = malloc(pc->qcap * 8);
    pc->q_at = malloc(pc->qcap * 8);
    pc->service = xtk_hist_new();
    if (!pc->q || !pc->q_at || !pc->service)
        goto err;
    if (getenv("XTK_FAULT_POSTCOPY_SLOW"))
        pc->slow_us =
            (unsigned int)strtoul(getenv("XTK_FAULT_POSTCOPY_SLOW"), NULL, 10);
    return pc;
err:
    xtk__pc_free(pc);
    return xtk__fail_null(ENOMEM);
}

int xtk__pc_start(struct xtk__pc *pc, uint64_t bytes_per_s, uint32_t stall_ms)
{
    int e;

    pc->limit = bytes_per_s;
    pc->stall_ns = (uint64_t)stall_ms * 1000000ull;
    e = pthread_create(&pc->thread, NULL, pc_main, pc);
    if (e)
        return xtk__fail(e);
    pc->started = 1;
    return 0;
}

int xtk__pc_request(struct xtk__pc *pc, uint64_t pfn)
{
    int r = 0;

    if (pfn >= pc->nr_pages)
        return xtk__fail(EINVAL);
    pthread_mutex_lock(&pc->lock);
    /* Once per frame, and only for one still to send (the push may have
     * sent it while the request was on its way). */
    if (!bit(pc->queued, pfn) && bit(pc->todo, pfn) &&
        pc->qtail - pc->qhead < pc->qcap) {
        pc->queued[pfn / 64] |= 1ull << (pfn % 64);
        pc->q[pc->qtail % pc->qcap] = pfn;
        pc->q_at[pc->qtail % pc->qcap] = xtk_now_ns();
        pc->qtail++;
        pthread_cond_signal(&pc->cond);
        r = 1;
    }
    pthread_mutex_unlock(&pc->lock);
    return r;
}

static void pc_join(struct xtk__pc *pc)
{
    if (!pc->started)
        return;
    pthread_mutex_lock(&pc->lock);
    pc->abort = 1;
    pthread_cond_signal(&pc->cond);
    pthread_mutex_unlock(&pc->lock);
    pthread_join(pc->thread, NULL);
    pc->started = 0;
}

void xtk__pc_result(struct xtk__pc *pc, struct xtk_stats *st,
                    struct xtk__pc_result *out)
{
    pc_join(pc); /* it is done: this only reaps it */
    *out = pc->res;
    if (pc->service && st) {
        struct xtk_hist *h =
            xtk_stats_hist(st, "postcopy request service", "ns");

        if (h)
            xtk_hist_merge(h, pc->service);
    }
}

void xtk__pc_free(struct xtk__pc *pc)
{
    if (!pc)
        return;
    pc_join(pc);
    pthread_mutex_destroy(&pc->lock);
    pthread_cond_destroy(&pc->cond);
    xtk_hist_free(pc->service);
    free(pc->todo);
    free(pc->queued);
    free(pc->q);
    free(pc->q_at);
    free(pc);
}
