/*
 * senders.c - the save engine's sender threads.
 *
 * A round is a list of frames.  Each thread takes the next XTK__SAVE_BATCH
 * of them (an atomic counter hands them out), builds one PAGE_DATA record
 * for them straight from the persistent mapping of guest RAM, or from a
 * mapping of just that batch where the backend has no persistent one
 * (Xen's foreign mappings; unmapped once the record is written), and
 * writes it under the stream's mutex.  A frame that is all zeroes, or one
 * never written, goes as an XALLOC entry without data, unless the round
 * says zero frames go with their data (a native Xen stream: see
 * XTK__LAYOUT_NATIVE); the pages go to
 * the kernel with writev from where they are, never copied (a checksummed
 * stream copies them, and checksums the copy).  The thread
 * that finishes the round's last batch writes to the notify eventfd,
 * which wakes the engine on the event loop.  A small final round is sent
 * by the engine's own thread instead (xtk__senders_round_here).
 *
 * Each thread times its batches into its own histograms ("batch build":
 * zero detection and entries; "batch write": waiting for the mutex and
 * writing), merged into the report after the round.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "save-internal.h"

#define XTK_LOG_CONTEXT "save"

struct sender {
    struct xtk__senders *sd;
    pthread_t thread;
    int started;
    struct xtk_hist *build, *write;
    uint64_t entries[XTK__SAVE_BATCH];
    const void *pages[XTK__SAVE_BATCH];
    int errs[XTK__SAVE_BATCH];
};

struct xtk__senders {
    struct xtk_ctx *ctx;
    struct xtk_domain *dom;
    const uint8_t *ram; /* NULL: map_batch for each batch */
    struct xtk_stream *out;
    int notify_fd;
    unsigned int n, cap; /* threads started, slots */
    struct sender *s;

    pthread_mutex_t write_lock; /* the stream */
    pthread_mutex_t lock;       /* everything below */
    pthread_cond_t go, idle;
    uint64_t gen; /* bumped for each round */
    int quit, busy;
    unsigned int active; /* threads still in the round */
    const uint64_t *pfns;
    const uint64_t *populated;
    int keep_zero; /* zero frames go with their data */
    uint64_t count;
    uint64_t next;  /* atomic: the next frame to hand out */
    uint64_t sent;  /* atomic: frames written (for progress) */
    int abort;      /* atomic */
    int throttle;   /* this round keeps to the limit */
    uint64_t limit; /* atomic: bytes a second, 0: none */
    pthread_mutex_t tb_lock;
    uint64_t tb_next; /* tb_lock: when the link is free, at the limit */
    struct xtk__round_result res;
};

/* Whether a 4 KiB page is all zeroes: 64 bytes at a time, early out. */
int xtk__page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)p;

    for (unsigned int i = 0; i < XTK__PAGE_SIZE / 8; i += 8)
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] |
            w[i + 6] | w[i + 7])
            return 0;
    return 1;
}

static int bit(const uint64_t *bm, uint64_t i)
{
    return (int)((bm[i / 64] >> (i % 64)) & 1);
}

/*
 * Maps a batch where there is no persistent mapping: the pages of
 * pfns[0..nb-1] at the result's i << XTK__PAGE_SHIFT.  A frame the guest
 * has taken out of its frame space meanwhile (ENOENT) stays in s->errs
 * and goes without data; any other frame that cannot be mapped fails the
 * batch.
 */
static const uint8_t *map_batch(struct sender *s, const uint64_t *pfns,
                                unsigned int nb)
{
    struct xtk__senders *sd = s->sd;
    const uint8_t *base =
        sd->dom->ops->map_batch(sd->dom, PROT_READ, pfns, nb, s->errs);

    if (!base)
        return NULL;
    for (unsigned int i = 0; i < nb; i++)
        if (s->errs[i] && s->errs[i] != ENOENT) {
            errno = s->errs[i];
            XTK_PERROR(sd->ctx, "domain %u: frame %#llx cannot be mapped",
                       sd->dom->domid, (unsigned long long)pfns[i]);
            sd->dom->ops->unmap_batch(sd->dom, (void *)base, nb);
            errno = s->errs[i];
            return NULL;
        }
    return base;
}

/*
 * A pre-copy round at a bandwidth limit: the batch books its bytes on a
 * virtual clock of the link at the limit (tb_next: when the link is free;
 * a token bucket), then waits, holding no lock, until the link would have
 * carried it, so that a round of one batch is limited as much as a long
 * one and the other senders build and book meanwhile.  An idle link lends
 * 50 ms at most (a short burst).  Sleeps in slices of 10 ms, so that an
 * abort, or the limit lifted, is seen; a new limit applies from the next
 * batch.
 */
static void throttle(struct xtk__senders *sd, uint64_t bytes)
{
    const uint64_t slice = 10 * 1000 * 1000, credit = 50 * 1000 * 1000;
    uint64_t limit = __atomic_load_n(&sd->limit, __ATOMIC_RELAXED);
    uint64_t now = xtk_now_ns(), idle = now > credit ? now - credit : 0;
    uint64_t done;

    if (!limit)
        return;
    pthread_mutex_lock(&sd->tb_lock);
    done = (sd->tb_next > idle ? sd->tb_next : idle) +
           bytes * 1000000000ull / limit;
    sd->tb_next = done;
    pthread_mutex_unlock(&sd->tb_lock);
    while (now < done && __atomic_load_n(&sd->limit, __ATOMIC_RELAXED) &&
           !__atomic_load_n(&sd->abort, __ATOMIC_RELAXED)) {
        uint64_t wait = done - now < slice ? done - now : slice;
        struct timespec ts = {0, (long)wait};

        nanosleep(&ts, NULL);
        now = xtk_now_ns();
    }
}

void xtk__senders_set_limit(struct xtk__senders *sd, uint64_t bytes_per_s)
{
    __atomic_store_n(&sd->limit, bytes_per_s, __ATOMIC_RELAXED);
}

/* Sends batches until the round's frames are all handed out. */
static void send_batches(struct sender *s)
{
    struct xtk__senders *sd = s->sd;
    uint64_t entries = 0, data = 0, zero = 0, gone = 0, last = 0;
    int err = 0;

    for (;;) {
        uint64_t idx, t0, t1, t2, tw;
        unsigned int nb, ndata = 0, ngone = 0;
        const uint8_t *batch = NULL;
        int r;

        if (__atomic_load_n(&sd->abort, __ATOMIC_RELAXED))
            break;
        idx = __atomic_fetch_add(&sd->next, XTK__SAVE_BATCH, __ATOMIC_RELAXED);
        if (idx >= sd->count)
            break;
        nb =
            (unsigned int)(sd->count - idx < XTK__SAVE_BATCH ? sd->count - idx
                                                             : XTK__SAVE_BATCH);
        t0 = xtk_now_ns();
        if (!sd->ram) {
            batch = map_batch(s, &sd->pfns[idx], nb);
            if (!batch) {
                err = errno ? errno : EIO;
                __atomic_store_n(&sd->abort, 1, __ATOMIC_RELAXED);
                break;
            }
        }
        for (unsigned int i = 0; i < nb; i++) {
            uint64_t pfn = sd->pfns[idx + i];
            const uint8_t *page = batch
                                      ? batch + ((uint64_t)i << XTK__PAGE_SHIFT)
                                      : sd->ram + (pfn << XTK__PAGE_SHIFT);

            if (batch && s->errs[i]) { /* gone from the frame space */
                s->entries[i] = xtk_pfn_entry(pfn, XTK_PAGE_XTAB);
                s->pages[i] = NULL;
                ngone++;
            } else if (!sd->keep_zero &&
                       ((sd->populated && !bit(sd->populated, pfn)) ||
                        xtk__page_is_zero(page))) {
                s->entries[i] = xtk_pfn_entry(pfn, XTK_PAGE_XALLOC);
                s->pages[i] = NULL;
            } else {
                s->entries[i] = xtk_pfn_entry(pfn, XTK_PAGE_NOTAB);
                s->pages[i] = page;
                ndata++;
            }
        }
        t1 = tw = xtk_now_ns();
        /* (the limit's wait is neither building nor writing) */
        if (sd->throttle) {
            throttle(sd, (uint64_t)ndata * XTK__PAGE_SIZE + nb * 8u + 16u);
            tw = xtk_now_ns();
        }
        pthread_mutex_lock(&sd->write_lock);
        r = xtk_stream_write_page_data(sd->out, nb, s->entries, s->pages);
        if (r < 0)
            err = errno;
        t2 = xtk_now_ns();
        pthread_mutex_unlock(&sd->write_lock);
        if (batch)
            sd->dom->ops->unmap_batch(sd->dom, (void *)batch, nb);
        xtk_hist_record(s->build, t1 - t0);
        xtk_hist_record(s->write, t2 - tw);
        if (r < 0) {
            __atomic_store_n(&sd->abort, 1, __ATOMIC_RELAXED);
            break;
        }
        __atomic_fetch_add(&sd->sent, nb, __ATOMIC_RELAXED);
        entries += nb;
        data += ndata;
        zero += nb - ndata - ngone;
        gone += ngone;
        last = t2;
    }

    pthread_mutex_lock(&sd->lock);
    sd->res.entries += entries;
    sd->res.data_pages += data;
    sd->res.zero_pages += zero;
    sd->res.gone_pages += gone;
    if (last > sd->res.last_write_ns)
        sd->res.last_write_ns = last;
    if (err && !sd->res.err)
        sd->res.err = err;
    pthread_mutex_unlock(&sd->lock);
}

/* The round's end, by the thread that ran its last batch (lock held). */
static void round_over(struct xtk__senders *sd)
{
    uint64_t one = 1;

    if (!sd->res.err && __atomic_load_n(&sd->abort, __ATOMIC_RELAXED))
        sd->res.err = ECANCELED;
    sd->busy = 0;
    pthread_cond_broadcast(&sd->idle);
    if (write(sd->notify_fd, &one, sizeof(one)) != sizeof(one))
        XTK_PERROR(sd->ctx, "cannot wake the event loop");
}

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    struct xtk__senders *sd = s->sd;
    uint64_t seen = 0;

    for (;;) {
        pthread_mutex_lock(&sd->lock);
        while (!sd->quit && sd->gen == seen)
            pthread_cond_wait(&sd->go, &sd->lock);
        if (sd->quit) {
            pthread_mutex_unlock(&sd->lock);
            return NULL;
        }
        seen = sd->gen;
        pthread_mutex_unlock(&sd->lock);

        send_batches(s);

        pthread_mutex_lock(&sd->lock);
        if (--sd->active == 0)
            round_over(sd);
        pthread_mutex_unlock(&sd->lock);
    }
}

struct xtk__senders *xtk__senders_new(struct xtk_domain *dom, unsigned int n,
                                      const uint8_t *ram,
                                      struct xtk_stream *out, int notify_fd)
{
    struct xtk_ctx *ctx = dom ? dom->ctx : NULL;
    struct xtk__senders *sd;

    if (!dom || !n ||
        (!ram && (!dom->ops->map_batch || !dom->ops->unmap_batch)) || !out ||
        notify_fd < 0)
        return xtk__fail_null(EINVAL);
    sd = calloc(1, sizeof(*sd));
    if (!sd)
        return NULL;
    sd->ctx = ctx;
    sd->dom = dom;
    sd->ram = ram;
    sd->out = out;
    sd->notify_fd = notify_fd;
    pthread_mutex_init(&sd->write_lock, NULL);
    pthread_mutex_init(&sd->tb_lock, NULL);
    pthread_mutex_init(&sd->lock, NULL);
    pthread_cond_init(&sd->go, NULL);
    pthread_cond_init(&sd->idle, NULL);
    sd->s = calloc(n, sizeof(*sd->s));
    if (!sd->s)
        goto err;
    sd->cap = n;
    for (unsigned int i = 0; i < n; i++) {
        struct sender *s = &sd->s[i];
        int e;

        s->sd = sd;
        s->build = xtk_hist_new();
        s->write = xtk_hist_new();
        if (!s->build || !s->write)
            goto err;
        e = pthread_create(&s->thread, NULL, sender_main, s);
        if (e) {
            errno = e;
            XTK_PERROR(ctx, "cannot start a sender thread");
            goto err;
        }
        s->started = 1;
        sd->n++;
    }
    return sd;
err:
    xtk__senders_free(sd);
    return NULL;
}

/* Sets a round up (lock held); EBUSY if one runs. */
static int round_setup(struct xtk__senders *sd, const uint64_t *pfns,
                       uint64_t count, const uint64_t *populated,
                       unsigned int flags)
{
    if (sd->busy)
        return xtk__fail(EBUSY);
    sd->pfns = pfns;
    sd->count = count;
    sd->populated = populated;
    sd->keep_zero = !!(flags & XTK__ROUND_KEEP_ZERO);
    sd->throttle = !!(flags & XTK__ROUND_THROTTLE);
    sd->next = 0;
    __atomic_store_n(&sd->sent, 0, __ATOMIC_RELAXED);
    sd->abort = 0;
    memset(&sd->res, 0, sizeof(sd->res));
    sd->busy = 1;
    return 0;
}

int xtk__senders_round(struct xtk__senders *sd, const uint64_t *pfns,
                       uint64_t count, const uint64_t *populated,
                       unsigned int flags)
{
    if (!sd || (!pfns && count))
        return xtk__fail(EINVAL);
    pthread_mutex_lock(&sd->lock);
    if (round_setup(sd, pfns, count, populated, flags) < 0) {
        pthread_mutex_unlock(&sd->lock);
        return -1;
    }
    sd->active = sd->n;
    sd->gen++;
    pthread_cond_broadcast(&sd->go);
    pthread_mutex_unlock(&sd->lock);
    return 0;
}

int xtk__senders_round_here(struct xtk__senders *sd, const uint64_t *pfns,
                            uint64_t count, const uint64_t *populated,
                            unsigned int flags)
{
    if (!sd || (!pfns && count))
        return xtk__fail(EINVAL);
    pthread_mutex_lock(&sd->lock);
    if (round_setup(sd, pfns, count, populated, flags) < 0) {
        pthread_mutex_unlock(&sd->lock);
        return -1;
    }
    sd->active = 0; /* no thread takes part: the generation stays */
    pthread_mutex_unlock(&sd->lock);
    /* The first sender's buffers and histograms: its thread is idle until
     * the next generation. */
    send_batches(&sd->s[0]);
    pthread_mutex_lock(&sd->lock);
    round_over(sd);
    pthread_mutex_unlock(&sd->lock);
    return 0;
}

uint64_t xtk__senders_progress(const struct xtk__senders *sd)
{
    uint64_t sent = __atomic_load_n(&sd->sent, __ATOMIC_RELAXED);

    return sent < sd->count ? sent : sd->count;
}

void xtk__senders_result(struct xtk__senders *sd, struct xtk_stats *st,
                         struct xtk__round_result *out)
{
    struct xtk_hist *build =
        st ? xtk_stats_hist(st, "batch build", "ns") : NULL;
    struct xtk_hist *write =
        st ? xtk_stats_hist(st, "batch write", "ns") : NULL;

    pthread_mutex_lock(&sd->lock);
    *out = sd->res;
    for (unsigned int i = 0; i < sd->n; i++) {
        if (build)
            xtk_hist_merge(build, sd->s[i].build);
        if (write)
            xtk_hist_merge(write, sd->s[i].write);
        xtk_hist_reset(sd->s[i].build);
        xtk_hist_reset(sd->s[i].write);
    }
    pthread_mutex_unlock(&sd->lock);
}

void xtk__senders_abort(struct xtk__senders *sd)
{
    if (sd)
        __atomic_store_n(&sd->abort, 1, __ATOMIC_RELAXED);
}

void xtk__senders_free(struct xtk__senders *sd)
{
    if (!sd)
        return;
    pthread_mutex_lock(&sd->lock);
    while (sd->busy)
        pthread_cond_wait(&sd->idle, &sd->lock);
    sd->quit = 1;
    pthread_cond_broadcast(&sd->go);
    pthread_mutex_unlock(&sd->lock);
    for (unsigned int i = 0; i < sd->n; i++)
        pthread_join(sd->s[i].thread, NULL);
    for (unsigned int i = 0; i < sd->cap; i++) {
        xtk_hist_free(sd->s[i].build);
        xtk_hist_free(sd->s[i].write);
    }
    pthread_cond_destroy(&sd->go);
    pthread_cond_destroy(&sd->idle);
    pthread_mutex_destroy(&sd->lock);
    pthread_mutex_destroy(&sd->write_lock);
    pthread_mutex_destroy(&sd->tb_lock);
    free(sd->s);
    free(sd);
}
