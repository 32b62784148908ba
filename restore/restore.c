/*
 * restore.c - the restore engine (xtk/restore.h, man/xtk_restore.3).
 *
 * A thread reads the stream, so the event loop stays free; it reports on
 * the loop through an eventfd.  In order:
 *
 *   framing     an xl save file's header and config, or libxl's framing,
 *               if there is one (xtk_stream_read_framing)
 *   headers     image header, an x86 HVM domain header (page shift 12)
 *   shape       HVM_PARAMS with xtk's domain shape, before any memory:
 *               the empty domain is created (XTK__CREATE_EMPTY) and its
 *               RAM mapped writable, once
 *   PAGE_DATA   frames are copied into RAM; XALLOC (zero) frames are
 *               zeroed if they were written before (a new domain's memory
 *               is zero already); a frame beyond the memory is refused
 *   HVM_CONTEXT the state blob, checked; in a plain stream loaded at once
 *               (the source sends it before the final round's pages)
 *   CHECKPOINT  the first one makes the stream checkpointed: from then on
 *               an epoch's records are buffered (their bodies taken from
 *               the reader, not copied) and applied when the next
 *               CHECKPOINT or END arrives
 *   END         the last complete state loaded (if not yet), the domain
 *               resumed, and the migrating source told (XTK_RESTORE_REPLY)
 *
 * A post-copy migration's switch (XTK_REC_POSTCOPY, after the state and
 * the frames below XTK__POSTCOPY_EAGER): the frames it lists are taken
 * out of the domain's memory (pre-copy may have written older versions),
 * the backend's userfaultfd is taken (lazy_begin), the domain runs at
 * once and the source is told (RUNNING on the back channel).  From then
 * the guest's first touch of a frame still to come is asked for on the
 * back channel (lazy.c's fault thread), and each frame the stream brings
 * is put in as it comes, each exactly once; at END every one must be in.
 * If the stream breaks or stalls (the peer timeout) before, the domain is
 * destroyed: it never runs on missing memory.
 *
 * A stream of Xen's own layout (its domain header carries Xen's version;
 * xtk's own has 0) has no shape record: the backend builds the domain
 * from the config in the file's xl header right after the headers
 * (create_native), loads the CPU policy at STATIC_DATA_END, populates
 * and writes each PAGE_DATA's frames through batches of mappings, and
 * takes the state as Xen's records (TSC_INFO, HVM_CONTEXT, HVM_PARAMS),
 * kept together per epoch and loaded whole before the resume.
 *
 * A Xen PV guest's stream is restored by the backend's own restore
 * (restore_delegate: libxenguest's, which rewrites the guest's page
 * tables frame by frame) on a thread of its own: this thread reads and
 * checks each record as always and hands it on over a socket pair, up to
 * END; the domain is then resumed as any other.
 *
 * Failure destroys the domain and tells the source, except when a
 * checkpointed stream breaks after a complete epoch.  Read from a file or
 * pipe, the domain is then resumed from the last complete epoch.  From a
 * live source (a backup: XTK_RESTORE_REPLY), each complete epoch is
 * acknowledged and each heartbeat answered on the back channel, and the
 * source is lost when its stream breaks or is silent past the peer
 * timeout: the backup then holds the last complete epoch, reports the
 * loss and waits to be promoted or cancelled (XTK_RESTORE_FAILOVER: it
 * promotes itself), since the source's host may still run the guest.
 */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <xtk/restore.h>

#include "backend.h"
#include "lazy-index.h"
#include "lazy.h"
#include "sr-format.h"
#include "stream-internal.h"

#define XTK_LOG_CONTEXT "restore"

#define PROGRESS_NS 200000000ull
#define DEFAULT_PEER_TIMEOUT_MS 5000

/* What the caller decided for a backup (xtk_restore_promote, _cancel). */
enum decision {
    DECIDE_NONE,
    DECIDE_PROMOTE,
    DECIDE_STOP,
};

/* One buffered epoch: its PAGE_DATA bodies and its state. */
struct epoch {
    void **bodies;
    uint32_t *lens;
    size_t n, cap;
    uint64_t bytes;
    void *state;
    uint32_t state_len;
    size_t state_cap; /* a native stream's: its records appended */
};

struct xtk_restore {
    struct xtk_ctx *ctx;
    struct xtk_stream *in;
    struct xtk_restore_options opt;
    struct xtk_stats *st;
    xtk_restore_done_fn *done;
    void *done_arg;
    pthread_t thread;
    int started, joined, finished, err;
    int notify_fd;
    /* Written by a cancel: ends the reader's waits on the stream (a pipe
     * or a socket that brings nothing more: xtk__stream_set_cancel). */
    int cancel_fd;
    struct event *ev_done;
    struct event *ev_join; /* the reader has not returned yet: joined() */

    struct xtk_domain *dom;
    uint32_t domid; /* once it runs */
    struct xtk__sr_config cfg;
    uint8_t *ram;
    uint64_t *written; /* frames written so far (native: populated) */
    uint64_t max_pfn;  /* frames lie below it */
    int seen_pages;

    /* Xen's own layout (a native stream: xen_major is not 0): the domain
     * is built from the config its framing carried, its static data
     * (the CPU policy) is loaded at STATIC_DATA_END, and its state is
     * Xen's records (TSC_INFO, HVM_CONTEXT, HVM_PARAMS), loaded whole. */
    int native;
    int statics_done; /* STATIC_DATA_END */
    void *statics;
    size_t statics_len, statics_cap;
    uint8_t *config; /* the framing's (xl's), or NULL */
    uint32_t config_len;
    int config_json;

    int checkpointed;
    int loaded;          /* a plain stream's state is in the domain */
    int delegate;        /* the backend's own restore reads the stream */
    int loading;         /* ... or on its way there (finish_state) */
    unsigned int epochs; /* complete ones */
    uint64_t t_end;      /* END received (or the failover), this clock */
    struct epoch cur;
    void *state; /* the last complete epoch's (or the plain stream's) */
    uint32_t state_len;

    uint64_t last_progress;
    int progress_ended; /* the bar was completed */

    /* A backup's side of its source's loss: the reader thread holds the
     * last complete epoch until the loop's caller decides; lost_pending
     * asks the loop to report the loss; thread_done, to join. */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int lock_ok;
    enum decision decision;
    int lost_pending, lost_err, thread_done;
    int source_gone;       /* the back channel broke */
    uint64_t t_checkpoint; /* the epoch's CHECKPOINT (or END) received */

    /* XTK_RESTORE_LAZY: the pager, the file (its offset of the stream's
     * start), the backend's userfaultfd until the pager takes it, and
     * where the last placed PAGE_DATA's contents start in the file. */
    struct xtk__lazy *lz;
    pthread_t create_th;
    int creating, create_err;
    uint64_t t_created;
    int lazy_file;
    uint64_t file_base;
    int uffd;
    uint64_t uffd_base, eager;
    uint64_t data_off;
    /* The file's own index used (lib/lazy-index.h): the PAGE_DATA records
     * it covers are passed over unread, and END must end at ix_end (where
     * the index starts). */
    int ix_used;
    uint64_t ix_end;

    /* Post-copy: the pager of the frames still to come (the domain runs
     * from the switch on), when it ran; sends on the back channel from
     * the reader and the pager's fault thread, one at a time. */
    struct xtk__lazy *pc;
    int pc_prepared; /* a PREPARE came: the receive buffer stays small */
    uint64_t t_pc_resumed;
    pthread_mutex_t send_lock;
    int send_lock_ok;
};

static int refuse(struct xtk_restore *rs, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Logs why the stream is refused and sets errno. */
static void hist_ns(struct xtk_restore *rs, const char *name, uint64_t v)
{
    struct xtk_hist *h = xtk_stats_hist(rs->st, name, "ns");

    if (h)
        xtk_hist_record(h, v);
}

static int refuse(struct xtk_restore *rs, int err, const char *fmt, ...)
{
    char why[256];
    va_list al;

    va_start(al, fmt);
    vsnprintf(why, sizeof(why), fmt, al);
    va_end(al);
    XTK_ERROR(rs->ctx, "stream refused: %s", why);
    errno = err;
    return -1;
}

static void epoch_clear(struct epoch *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->bodies[i]);
    e->n = 0;
    e->bytes = 0;
    free(e->state);
    e->state = NULL;
    e->state_len = 0;
    e->state_cap = 0;
}

static void epoch_free(struct epoch *e)
{
    epoch_clear(e);
    free(e->bodies);
    free(e->lens);
    memset(e, 0, sizeof(*e));
}

/*
 * The stream's placer (stream-internal.h): a record of a plain stream whose
 * frames with data were all written before (a later round resending them:
 * the hot set of a migration's final round) is read straight into the
 * guest's memory, one copy from the socket instead of two (into the body
 * buffer, then into the memory file).  Frames never written go the usual
 * way: a first write through the mapping would fault a new page in, which
 * costs more here than the second copy.  Whatever does not fit the guest
 * is declined, and the usual path refuses it; so is a record whose
 * frames are not in increasing order.
 */
static int place_pages(void *arg, const struct xtk_stream_page_data *pd,
                       struct iovec *iov, int *iovcnt)
{
    struct xtk_restore *rs = arg;
    uint64_t prev = 0;
    int n = 0;

    if (rs->checkpointed || !rs->ram)
        return 0;
    for (uint32_t i = 0; i < pd->count; i++) {
        uint64_t pfn = xtk_pfn_entry_pfn(pd->pfns[i]);
        unsigned int t = xtk_pfn_entry_type(pd->pfns[i]);
        uint8_t *at;

        /* Frames in increasing order (as xtk's save sends them), so none
         * comes twice: zero frames are applied after the placed pages,
         * which then cannot undo one of them. */
        if (pfn >= rs->max_pfn || (i && pfn <= prev) ||
            (t != XTK_PAGE_NOTAB && t != XTK_PAGE_XALLOC && t != XTK_PAGE_XTAB))
            return 0;
        prev = pfn;
        if (t != XTK_PAGE_NOTAB)
            continue;
        if (!(rs->written[pfn / 64] & (1ull << (pfn % 64))))
            return 0;
        at = rs->ram + (pfn << XTK__PAGE_SHIFT);
        if (n && (uint8_t *)iov[n - 1].iov_base + iov[n - 1].iov_len == at) {
            iov[n - 1].iov_len += XTK__PAGE_SIZE;
            continue;
        }
        if (n == *iovcnt)
            return 0;
        iov[n++] = (struct iovec){at, XTK__PAGE_SIZE};
    }
    *iovcnt = n;
    return 1;
}

/* ---- a lazy restore ------------------------------------------------ */

static int make_domain(struct xtk_restore *rs);

/* A lazy restore's placer: PAGE_DATA contents are skipped, not read; where
 * they start in the file is noted (on_page_data indexes them). */
static int lazy_place(void *arg, const struct xtk_stream_page_data *pd,
                      struct iovec *iov, int *iovcnt)
{
    struct xtk_restore *rs = arg;

    (void)pd;
    (void)iov;
    (void)iovcnt;
    rs->data_off = rs->file_base + xtk__stream_offset(rs->in);
    return 2;
}

/* A lazy restore's domain, made on a thread of its own while the restore
 * reads the records (the index needs only the shape): the domain, then
 * the backend's userfaultfd.  create_err says how it went. */
static void *lazy_create_main(void *arg)
{
    struct xtk_restore *rs = arg;
    struct xtk_domain *dom;

    if (make_domain(rs) < 0) {
        rs->create_err = errno ? errno : EIO;
        return NULL;
    }
    dom = rs->dom;
    rs->t_created = xtk_now_ns();
    if (!dom->ops->lazy_begin) {
        XTK_ERROR(rs->ctx, "the %s backend cannot restore a domain lazily",
                  dom->ops->name);
        rs->create_err = ENOTSUP;
        return NULL;
    }
    if (dom->ops->lazy_begin(dom, &rs->uffd, &rs->uffd_base, &rs->eager) < 0)
        rs->create_err = errno ? errno : EIO;
    return NULL;
}

/*
 * The index at the file's end, if it has one that fits the shape: the
 * pager takes it, and the records it covers will not be read.  A file
 * without one is indexed as it is read; one whose index is damaged or
 * does not fit too (said, since a save of xtk's writes a good one).
 */
static void lazy_use_index(struct xtk_restore *rs, const char *path)
{
    struct xtk__lzx ix;
    char why[256];
    int r;

    if (rs->in->rs.checksummed) /* passing records over skips their CRC */
        return;
    r = xtk__lzx_read(rs->lazy_file, &ix, why, sizeof(why));
    if (r == 1)
        return;
    if (r == 0 && ix.nr_pages != rs->max_pfn) {
        snprintf(why, sizeof(why), "it is for %llu frames, the domain has %llu",
                 (unsigned long long)ix.nr_pages,
                 (unsigned long long)rs->max_pfn);
        r = -1;
    }
    if (r == 0 && ix.pages_end &&
        ix.pages_begin < rs->file_base + xtk__stream_offset(rs->in)) {
        snprintf(why, sizeof(why), "its pages start at %llu, before the shape",
                 (unsigned long long)ix.pages_begin);
        r = -1;
    }
    if (r < 0) {
        XTK_WARN(rs->ctx,
                 "%s: the index at its end is not used (%s): its records "
                 "are read for one instead",
                 path, why);
        xtk__lzx_free(&ix);
        return;
    }
    rs->ix_end = ix.trailer_off;
    xtk_stats_count(rs->st, "lazy index runs", ix.nr_runs);
    if (xtk__lazy_use_index(rs->lz, &ix) < 0) {
        xtk__lzx_free(&ix);
        return;
    }
    rs->ix_used = 1;
}

/* Before each record of a lazy restore from the file's index: the
 * PAGE_DATA records up to the next other record (or END) are passed over
 * unread, all at once. */
static int lazy_jump(struct xtk_restore *rs)
{
    uint64_t at, to;

    if (!rs->ix_used)
        return 0;
    at = rs->file_base + xtk__stream_offset(rs->in);
    to = xtk__lzx_next_read(xtk__lazy_index(rs->lz), at);
    return to > at ? xtk__stream_pass_records(rs->in, to - at) : 0;
}

/* The shape is known: the pager (with its index), and the domain's
 * creation started. */
static int lazy_create(struct xtk_restore *rs)
{
    char link[64], path[512];
    ssize_t n;
    int e;

    snprintf(link, sizeof(link), "/proc/self/fd/%d", rs->lazy_file);
    n = readlink(link, path, sizeof(path) - 1);
    path[n > 0 ? n : 0] = 0;
    rs->lz = xtk__lazy_new(rs->ctx, rs->lazy_file, n > 0 ? path : NULL,
                           rs->max_pfn, rs->st);
    if (!rs->lz)
        return -1;
    xtk_stats_phase(rs->st, "domain creation started");
    rs->creating = 1;
    e = pthread_create(&rs->create_th, NULL, lazy_create_main, rs);
    if (e) {
        rs->creating = 0;
        return xtk__fail(e);
    }
    /* While the domain is made (the thread touches neither the pager nor
     * the report). */
    lazy_use_index(rs, n > 0 ? path : "the stream's file");
    xtk__stream_set_placer(rs->in, lazy_place, rs);
    return 0;
}

/* Waits for the domain's creation: 0, or -1 (errno) if it failed. */
static int lazy_created(struct xtk_restore *rs)
{
    if (!rs->creating)
        return 0;
    pthread_join(rs->create_th, NULL);
    rs->creating = 0;
    if (rs->dom && rs->t_created)
        xtk_stats_phase_at(rs->st, "domain created", rs->t_created);
    return rs->create_err ? xtk__fail(rs->create_err) : 0;
}

/*
 * Before the pager starts: no frame is in the domain's memory yet but
 * those the host reads itself (below eager), which it may have read
 * before the userfaultfd was there (and so got zeroed pages): one that
 * were would never get its contents.
 */
/*
 * Proves that no frame still to come is in the domain's memory (one that
 * were would never get its contents): those whose bits are set in only,
 * or, with only NULL, every frame from rs->eager on.  0, or -1 (EFAULT,
 * logged).
 */
static int none_in_memory(struct xtk_restore *rs, const uint64_t *only)
{
    struct xtk_domain *dom = rs->dom;
    uint64_t *bits = calloc((rs->max_pfn + 63) / 64, 8);
    int r = 0;

    if (!bits || dom->ops->populated(dom, bits, rs->max_pfn) < 0) {
        free(bits);
        return -1;
    }
    /* A word at a time: a million frames bit by bit took a millisecond
     * of a 4 GiB lazy restore. */
    for (uint64_t w = 0; w < (rs->max_pfn + 63) / 64 && !r; w++) {
        uint64_t b = bits[w] & (only ? only[w] : ~0ull);

        if (!only && w * 64 < rs->eager) /* the frames before eager */
            b &= rs->eager - w * 64 >= 64 ? 0 : ~0ull << (rs->eager - w * 64);
        if (b) {
            uint64_t pfn = w * 64 + (uint64_t)__builtin_ctzll(b);

            XTK_ERROR(rs->ctx,
                      "domain %u: frame %#llx is in its memory before its "
                      "contents came: not run",
                      dom->domid, (unsigned long long)pfn);
            r = xtk__fail(EFAULT);
        }
    }
    free(bits);
    return r;
}

static int lazy_check(struct xtk_restore *rs)
{
    struct xtk_domain *dom = rs->dom;

    if (!dom->ops->write_frames || !dom->ops->populated) {
        XTK_ERROR(rs->ctx, "the %s backend cannot restore a domain lazily",
                  dom->ops->name);
        return xtk__fail(ENOTSUP);
    }
    return none_in_memory(rs, NULL);
}

/*
 * The frames the host reads itself, written through the memory file (a
 * zeroed page it made by reading one early cannot be replaced by the
 * pager), once the pager runs (a read of one meanwhile waits for it).
 */
static int lazy_eager(struct xtk_restore *rs)
{
    uint8_t page[XTK__PAGE_SIZE] __attribute__((aligned(64)));

    for (uint64_t pfn = 0; pfn < rs->eager && pfn < rs->max_pfn; pfn++)
        if (xtk__lazy_read(rs->lz, pfn, page) < 0 ||
            rs->dom->ops->write_frames(rs->dom, pfn, 1, page) < 0)
            return -1;
    return 0;
}

/* A checked PAGE_DATA of a lazy restore: where each frame's contents lie
 * (XALLOC and XTAB frames: zero). */
static void lazy_index(struct xtk_restore *rs,
                       const struct xtk_stream_record *rec,
                       const struct xtk_stream_page_data *pd)
{
    uint64_t off = xtk__stream_placed(rs->in)
                       ? rs->data_off
                       : rs->file_base + rec->offset + 16 + 8ull * pd->count;

    for (uint32_t i = 0; i < pd->count; i++) {
        uint64_t pfn = xtk_pfn_entry_pfn(pd->pfns[i]);

        if (xtk_pfn_entry_type(pd->pfns[i]) != XTK_PAGE_NOTAB) {
            xtk__lazy_note(rs->lz, pfn, 0);
            continue;
        }
        xtk__lazy_note(rs->lz, pfn, off);
        off += XTK__PAGE_SIZE;
    }
}

/* ---- post-copy ------------------------------------------------------ */

static int send_msg(struct xtk_restore *rs, uint16_t kind, uint32_t seq,
                    uint64_t value);
static uint32_t peer_timeout_ms(const struct xtk_restore *rs);
static int finish_state(struct xtk_restore *rs);

/* The pager's fault thread asks the source for a frame. */
static int postcopy_ask(void *arg, uint64_t pfn)
{
    return send_msg(arg, XTK__SR_MSG_PAGE, 1, pfn);
}

/*
 * A post-copy record's frames, checked (and the backend able to run a
 * domain before its memory is in): a copy of its bitmap (the caller
 * frees it) and *count, or NULL (refused, logged).
 */
static uint64_t *postcopy_frames(struct xtk_restore *rs,
                                 const struct xtk_stream_record *rec,
                                 uint64_t *count)
{
    struct xtk_domain *dom = rs->dom;
    uint64_t words = (rs->max_pfn + 63) / 64, *copy;
    const uint64_t *bits;
    char why[192];

    if (!dom->ops->lazy_begin || !dom->ops->discard || !dom->ops->populated) {
        refuse(rs, ENOTSUP,
               "the %s backend cannot run a domain before its memory is "
               "in: no post-copy",
               dom->ops->name);
        return NULL;
    }
    if (xtk__sr_postcopy_check(rec->body, rec->length, rs->max_pfn,
                               XTK__POSTCOPY_EAGER, &bits, count, why,
                               sizeof(why)) < 0) {
        refuse(rs, EPROTO, "%s", why);
        return NULL;
    }
    copy = malloc(words * 8);
    if (copy)
        memcpy(copy, bits, words * 8);
    return copy;
}

/*
 * Takes the frames still to come out of the domain's memory, in runs:
 * those it holds (the memory file's pages, whatever wrote them: a frame
 * zeroed by an XALLOC is still there).
 */
static int postcopy_discard(struct xtk_restore *rs, const uint64_t *bits)
{
    uint64_t words = (rs->max_pfn + 63) / 64, pfn = 0;
    uint64_t *in = calloc(words ? words : 1, 8);

    if (!in || rs->dom->ops->populated(rs->dom, in, rs->max_pfn) < 0) {
        free(in);
        return -1;
    }
    for (uint64_t w = 0; w < words; w++)
        in[w] &= bits[w];
    while (pfn < rs->max_pfn) {
        uint64_t n = 0;

        if (!(in[pfn / 64] & (1ull << (pfn % 64)))) {
            pfn++;
            continue;
        }
        while (pfn + n < rs->max_pfn &&
               (in[(pfn + n) / 64] & (1ull << ((pfn + n) % 64))))
            n++;
        if (rs->dom->ops->discard(rs->dom, pfn, n) < 0) {
            free(in);
            return -1;
        }
        for (uint64_t i = pfn; i < pfn + n; i++)
            rs->written[i / 64] &= ~(1ull << (i % 64));
        pfn += n;
    }
    free(in);
    return 0;
}

/*
 * Before the stop: the frames that will come after the switch are taken
 * out now, while the guest still runs on the source, and the source is
 * told (its stop waits for this).
 */
static int on_postcopy_prepare(struct xtk_restore *rs,
                               const struct xtk_stream_record *rec)
{
    uint64_t count, *copy;
    int r;

    if (!(rs->opt.flags & XTK_RESTORE_REPLY))
        return 0; /* a file's: nothing is taken out */
    if (rs->pc || rs->checkpointed || !rs->dom || rs->native || !rs->written ||
        rs->lz)
        return refuse(rs, EPROTO, "a post-copy prepare out of place");
    copy = postcopy_frames(rs, rec, &count);
    if (!copy)
        return -1;
    r = postcopy_discard(rs, copy);
    free(copy);
    if (r < 0)
        return -1;
    xtk_stats_phase(rs->st, "post-copy frames discarded ahead");
    rs->pc_prepared = 1;
    return send_msg(rs, XTK__SR_MSG_PREPARED, 1, count);
}

/*
 * The switch: the state is in (it came before), the frames below the
 * eager ones too; the others listed are taken out, the pager takes the
 * userfaultfd, and the domain runs.  A failure before the resume leaves
 * nothing running (the source, told by the reply, runs its copy on).
 */
static int on_postcopy(struct xtk_restore *rs,
                       const struct xtk_stream_record *rec)
{
    struct xtk_domain *dom = rs->dom;
    uint64_t count, *todo, base, eager, now;
    int uffd = -1;

    xtk_stats_phase(rs->st, "post-copy switch received");
    if (!(rs->opt.flags & XTK_RESTORE_REPLY)) {
        /* Nobody to ask (a file): the frames all come before END anyway. */
        XTK_DEBUG(rs->ctx, "a post-copy switch without a source: ignored");
        return 0;
    }
    if (rs->pc || rs->checkpointed || !dom || !rs->loaded)
        return refuse(rs, EPROTO, "a post-copy switch %s",
                      rs->pc             ? "again"
                      : rs->checkpointed ? "in a checkpointed stream"
                                         : "before the domain's state");
    todo = postcopy_frames(rs, rec, &count);
    if (!todo)
        return -1;
    xtk_stats_count(rs->st, "postcopy frames", count);
    /* Pages already placed straight from the stream would skip the pager. */
    xtk__stream_set_placer(rs->in, NULL, NULL);
    if (postcopy_discard(rs, todo) < 0)
        goto err;
    xtk_stats_phase(rs->st, "post-copy frames discarded");
    if (dom->ops->lazy_begin(dom, &uffd, &base, &eager) < 0)
        goto err;
    xtk_stats_phase(rs->st, "userfaultfd taken");
    if (eager > XTK__POSTCOPY_EAGER) {
        close(uffd);
        free(todo);
        return refuse(rs, ENOTSUP,
                      "the backend needs %llu frames before the guest runs, "
                      "the source sends %u",
                      (unsigned long long)eager, XTK__POSTCOPY_EAGER);
    }
    rs->pc = xtk__lazy_new_remote(rs->ctx, rs->max_pfn, todo, rs->st,
                                  postcopy_ask, rs);
    if (!rs->pc) {
        close(uffd);
        goto err;
    }
    /* Nothing of what is to come may be in memory now (taken out, and
     * nobody touched it since). */
    if (none_in_memory(rs, todo) < 0) {
        close(uffd);
        goto err;
    }
    free(todo);
    todo = NULL;
    xtk_stats_phase(rs->st, "memory checked");
    if (xtk__lazy_start(rs->pc, uffd, base) < 0 || finish_state(rs) < 0)
        return -1;
    /* The stream must keep coming: a stalled link stops the guest. */
    if (xtk_stream_set_timeout(rs->in, (int)peer_timeout_ms(rs)) < 0)
        return -1;
    if (dom->ops->resume(dom) < 0) {
        XTK_PERROR(rs->ctx, "domain %u: cannot start it", dom->domid);
        return -1;
    }
    now = xtk_now_ns();
    rs->t_pc_resumed =
        dom->resumed_ns && dom->resumed_ns <= now ? dom->resumed_ns : now;
    xtk_stats_phase_at(rs->st, "resumed", rs->t_pc_resumed);
    XTK_INFO(rs->ctx,
             "domain %u runs; %llu frames of its memory come from the "
             "source",
             dom->domid, (unsigned long long)count);
    /* The source's copy is stale from here: it is told so, and from when
     * (its span to this message, this clock's). */
    return send_msg(rs, XTK__SR_MSG_RUNNING, 1,
                    xtk_now_ns() - rs->t_pc_resumed);
err:
    free(todo);
    return -1;
}

/* A PAGE_DATA after the switch: each frame goes in through the pager. */
static int postcopy_pages(struct xtk_restore *rs,
                          const struct xtk_stream_page_data *pd)
{
    const uint8_t *data = pd->pages;

    for (uint32_t i = 0; i < pd->count;) {
        uint64_t pfn = xtk_pfn_entry_pfn(pd->pfns[i]);
        unsigned int t = xtk_pfn_entry_type(pd->pfns[i]), n = 1;

        if (t == XTK_PAGE_XTAB)
            return refuse(rs, EPROTO, "frame %#llx gone after the switch",
                          (unsigned long long)pfn);
        /* A run of frames one after another, of one kind. */
        while (i + n < pd->count &&
               xtk_pfn_entry_pfn(pd->pfns[i + n]) == pfn + n &&
               xtk_pfn_entry_type(pd->pfns[i + n]) == t)
            n++;
        if (xtk__lazy_put(rs->pc, pfn, t == XTK_PAGE_NOTAB ? data : NULL, n) <
            0)
            return -1;
        if (t == XTK_PAGE_NOTAB)
            data += (size_t)n << XTK__PAGE_SHIFT;
        i += n;
    }
    return 0;
}

/* END after a switch: every frame came; the domain is an ordinary one. */
static int postcopy_end(struct xtk_restore *rs)
{
    struct xtk_domain *dom = rs->dom;

    if (xtk__lazy_check(rs->pc) < 0)
        return -1; /* the pager failed (logged) */
    if (xtk__lazy_missing(rs->pc))
        return refuse(rs, EPROTO,
                      "END with %llu frames of the post-copy still to come",
                      (unsigned long long)xtk__lazy_missing(rs->pc));
    xtk_stats_phase(rs->st, "memory complete");
    if (dom->ops->lazy_end(dom) < 0) {
        XTK_PERROR(rs->ctx, "domain %u: cannot end its post-copy", dom->domid);
        return -1;
    }
    xtk__lazy_free(rs->pc);
    rs->pc = NULL;
    return 0;
}

/* ---- the domain ------------------------------------------------------ */

/* The empty domain, as the stream's shape says: 0 or -1 (logged). */
static int make_domain(struct xtk_restore *rs)
{
    const char *name = rs->opt.name ? rs->opt.name : rs->cfg.name;
    struct xtk_domain_config dc = {
        .name = name[0] ? name : NULL,
        .memory_mib = rs->cfg.nr_pages >> (20 - XTK__PAGE_SHIFT),
        .nr_vcpus = rs->cfg.nr_vcpus,
        /* A domain that was in no store is restored in none (and does
         * not look for one here). */
        .flags = rs->cfg.no_store ? XTK_DOMCFG_NO_STORE : 0,
        /* Its network goes where it went (xtk create --net). */
        .net = rs->cfg.net[0] ? rs->cfg.net : NULL,
    };

    if (rs->cfg.nr_pages % (1u << (20 - XTK__PAGE_SHIFT)))
        return refuse(rs, EPROTO,
                      "a memory size of %llu pages is not "
                      "whole MiB",
                      (unsigned long long)rs->cfg.nr_pages);
    rs->dom = xtk__domain_create_empty(rs->ctx, &dc);
    if (!rs->dom) {
        /* The backend has said why, except for a name in use. */
        if (errno == EEXIST)
            XTK_ERROR(rs->ctx,
                      "a domain called %s exists already: restore "
                      "under another name, or on another host "
                      "(XTK_RUNDIR)",
                      name);
        return -1;
    }
    return 0;
}

static int create_domain(struct xtk_restore *rs)
{
    rs->max_pfn = rs->cfg.nr_pages;
    if (rs->opt.flags & XTK_RESTORE_LAZY)
        return lazy_create(rs);
    if (make_domain(rs) < 0)
        return -1;
    xtk_stats_phase(rs->st, "domain created");
    if (!rs->dom->ops->map_all) {
        XTK_ERROR(rs->ctx, "the %s backend cannot map a guest's memory",
                  rs->dom->ops->name);
        return xtk__fail(ENOTSUP);
    }
    rs->ram = rs->dom->ops->map_all(rs->dom, PROT_READ | PROT_WRITE);
    rs->written = calloc((rs->max_pfn + 63) / 64, 8);
    if (!rs->ram || !rs->written)
        return -1;
    xtk__stream_set_placer(rs->in, place_pages, rs);
    return 0;
}

/*
 * A native stream's domain: built by the backend from the config the
 * stream's framing carried, before any record.
 */
static int create_native_domain(struct xtk_restore *rs, uint32_t type)
{
    struct xtk__native_config nc = {
        .name = rs->opt.name,
        .config = rs->config,
        .config_len = rs->config_len,
        .json = rs->config_json,
        .stream_type = type,
    };

    if (!rs->config)
        return refuse(rs, EPROTO,
                      "a Xen guest's stream without its domain's config: "
                      "restore an xl save file (xl save, or xtk-save "
                      "--format xl), which carries it");
    rs->dom = xtk__domain_create_native(rs->ctx, &nc);
    if (!rs->dom) {
        if (errno == EEXIST)
            XTK_ERROR(rs->ctx,
                      "a domain called %s exists already: restore under "
                      "another name (--name)",
                      rs->opt.name ? rs->opt.name : "of that name");
        return -1;
    }
    rs->cfg.nr_pages = nc.nr_pages;
    rs->cfg.nr_vcpus = nc.nr_vcpus;
    snprintf(rs->cfg.name, sizeof(rs->cfg.name), "%s", nc.cfg_name);
    rs->max_pfn = nc.max_pfn;
    rs->delegate = nc.delegate;
    XTK_INFO(rs->ctx,
             "domain %s (%u): %llu MiB, %u vCPUs, built for Xen's "
             "stream",
             rs->cfg.name, rs->dom->domid,
             (unsigned long long)(rs->cfg.nr_pages >> 8), rs->cfg.nr_vcpus);
    xtk_stats_phase(rs->st, "domain created");
    rs->written = calloc((rs->max_pfn + 63) / 64, 8);
    return rs->written ? 0 : -1;
}

/* ---- records ------------------------------------------------------- */

/* Checks a PAGE_DATA body against the domain before anything is applied. */
static int check_pages(struct xtk_restore *rs, const void *body, uint32_t len,
                       struct xtk_stream_page_data *pd)
{
    if (!rs->creating && !rs->dom)
        return refuse(rs, EPROTO,
                      "memory before the domain's shape: not a "
                      "stream of an xtk KVM domain");
    if (rs->native && !rs->statics_done)
        return refuse(rs, EPROTO, "memory before STATIC_DATA_END");
    if (xtk_stream_page_data_parse(body, len, pd) < 0)
        return refuse(rs, EBADMSG, "malformed PAGE_DATA");
    for (uint32_t i = 0; i < pd->count; i++) {
        uint64_t pfn = xtk_pfn_entry_pfn(pd->pfns[i]);
        unsigned int t = xtk_pfn_entry_type(pd->pfns[i]);

        if (pfn >= rs->max_pfn)
            return refuse(rs, EPROTO,
                          "frame %#llx is beyond the guest's "
                          "memory (%llu frames)",
                          (unsigned long long)pfn,
                          (unsigned long long)rs->max_pfn);
        if (t != XTK_PAGE_NOTAB && t != XTK_PAGE_XALLOC && t != XTK_PAGE_XTAB)
            return refuse(rs, EPROTO,
                          "frame %#llx has page type %#x (page "
                          "tables belong in PV streams)",
                          (unsigned long long)pfn, t);
    }
    return 0;
}

/* Writes count frames from pfn on, their data at src. */
static int put_frames(struct xtk_restore *rs, uint64_t pfn, unsigned int count,
                      const uint8_t *src)
{
    const struct xtk__backend_ops *ops = rs->dom->ops;

    for (unsigned int i = 0; i < count; i++)
        rs->written[(pfn + i) / 64] |= 1ull << ((pfn + i) % 64);
    if (ops->write_frames)
        return ops->write_frames(rs->dom, pfn, count, src);
    memcpy(rs->ram + (pfn << XTK__PAGE_SHIFT), src,
           (size_t)count << XTK__PAGE_SHIFT);
    return 0;
}

/*
 * A native stream's PAGE_DATA (checked): the frames not there yet are
 * populated, then those with data or XALLOC are mapped in one batch and
 * written; an XALLOC frame gets zeroes, since Xen does not scrub the pages
 * it gives a domain under construction.  XTAB frames stay holes.
 */
static int apply_pages_native(struct xtk_restore *rs,
                              const struct xtk_stream_page_data *pd)
{
    struct xtk_domain *dom = rs->dom;
    uint64_t *map = malloc((pd->count ? pd->count : 1) * sizeof(*map));
    uint64_t *fresh = malloc((pd->count ? pd->count : 1) * sizeof(*fresh));
    int *errs = calloc(pd->count ? pd->count : 1, sizeof(*errs));
    unsigned int n = 0, nf = 0, nmap;
    const uint8_t *data = pd->pages;
    uint8_t *base = NULL;
    int r = -1;

    if (!map || !fresh || !errs)
        goto out;
    for (uint32_t i = 0; i < pd->count; i++) {
        uint64_t pfn = xtk_pfn_entry_pfn(pd->pfns[i]);
        uint64_t bit = 1ull << (pfn % 64);

        if (xtk_pfn_entry_type(pd->pfns[i]) == XTK_PAGE_XTAB)
            continue;
        if (!(rs->written[pfn / 64] & bit)) {
            rs->written[pfn / 64] |= bit;
            fresh[nf++] = pfn;
        }
        map[n++] = pfn;
    }
    if (nf && dom->ops->populate(dom, fresh, nf) < 0) {
        for (unsigned int i = 0; i < nf; i++) /* none of them is there */
            rs->written[fresh[i] / 64] &= ~(1ull << (fresh[i] % 64));
        goto out;
    }
    r = 0;
    if (!n)
        goto out;
    base = dom->ops->map_batch(dom, PROT_READ | PROT_WRITE, map, n, errs);
    if (!base) {
        r = -1;
        goto out;
    }
    nmap = n;
    n = 0;
    for (uint32_t i = 0; i < pd->count; i++) {
        unsigned int t = xtk_pfn_entry_type(pd->pfns[i]);
        uint8_t *at;

        if (t == XTK_PAGE_XTAB)
            continue;
        at = base + ((size_t)n << XTK__PAGE_SHIFT);
        if (errs[n]) {
            XTK_ERROR(rs->ctx,
                      "domain %u: frame %#llx cannot be written "
                      "(error %d)",
                      dom->domid, (unsigned long long)map[n], errs[n]);
            errno = errs[n];
            r = -1;
            break;
        }
        if (t == XTK_PAGE_NOTAB) {
            memcpy(at, data, XTK__PAGE_SIZE);
            data += XTK__PAGE_SIZE;
        } else {
            memset(at, 0, XTK__PAGE_SIZE);
        }
        n++;
    }
    dom->ops->unmap_batch(dom, base, nmap);
out : {
    int e = errno;
    free(map);
    free(fresh);
    free(errs);
    errno = e;
}
    return r;
}

/* Applies a checked PAGE_DATA record: runs of consecutive frames with data
 * go in one write each (unless placed: the stream put them in memory
 * already); zero frames are zeroed if written before. */
static int apply_pages(struct xtk_restore *rs,
                       const struct xtk_stream_page_data *pd, int placed)
{
    const uint8_t *data = pd->pages;
    uint32_t i = 0;

    if (rs->native)
        return apply_pages_native(rs, pd);
    while (i < pd->count) {
        uint64_t pfn = xtk_pfn_entry_pfn(pd->pfns[i]);
        uint32_t n = 1;

        if (xtk_pfn_entry_type(pd->pfns[i]) != XTK_PAGE_NOTAB) {
            uint64_t bit = 1ull << (pfn % 64);

            if (rs->written[pfn / 64] & bit) {
                memset(rs->ram + (pfn << XTK__PAGE_SHIFT), 0, XTK__PAGE_SIZE);
                rs->written[pfn / 64] &= ~bit;
            }
            i++;
            continue;
        }
        while (i + n < pd->count &&
               xtk_pfn_entry_type(pd->pfns[i + n]) == XTK_PAGE_NOTAB &&
               xtk_pfn_entry_pfn(pd->pfns[i + n]) == pfn + n)
            n++;
        if (placed) {
            i += n;
            continue;
        }
        if (put_frames(rs, pfn, n, data) < 0) {
            XTK_PERROR(rs->ctx, "cannot write the guest's memory");
            return -1;
        }
        data += (size_t)n << XTK__PAGE_SHIFT;
        i += n;
    }
    return 0;
}

static int buffer_body(struct xtk_restore *rs, uint32_t len)
{
    struct epoch *e = &rs->cur;
    void *body;

    /* An epoch never carries more than the guest's memory. */
    e->bytes += len;
    if (e->bytes > (rs->cfg.nr_pages << XTK__PAGE_SHIFT) * 2 + (64u << 20))
        return refuse(rs, EPROTO,
                      "an epoch larger than twice the guest's "
                      "memory");
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 256;
        void **b = realloc(e->bodies, cap * sizeof(*b));
        uint32_t *l;

        if (!b)
            return -1;
        e->bodies = b;
        l = realloc(e->lens, cap * sizeof(*l));
        if (!l)
            return -1;
        e->lens = l;
        e->cap = cap;
    }
    body = xtk_stream_take_body(rs->in);
    if (!body)
        return xtk__fail(ENOMEM);
    e->bodies[e->n] = body;
    e->lens[e->n++] = len;
    return 0;
}

/* The memory is in (END, or the first checkpoint): a bar on screen ends. */
static void progress_done(struct xtk_restore *rs)
{
    unsigned long total = (unsigned long)(rs->cfg.nr_pages * XTK__PAGE_SIZE);

    if (rs->last_progress && !rs->progress_ended)
        xtk__progress(rs->ctx, "restore", "receiving memory", total, total);
    rs->progress_ended = 1;
}

/* The first page's moment, and the pages' counters. */
static void count_pages(struct xtk_restore *rs,
                        const struct xtk_stream_page_data *pd)
{
    if (!rs->seen_pages) {
        rs->seen_pages = 1;
        xtk_stats_phase(rs->st, "first page");
    }
    xtk_stats_count(rs->st, "pages received", pd->count);
    xtk_stats_count(rs->st, "pages with data", pd->npages);
}

static int on_page_data(struct xtk_restore *rs,
                        const struct xtk_stream_record *rec)
{
    struct xtk_stream_page_data pd;
    uint64_t now;

    if (check_pages(rs, rec->body, rec->length, &pd) < 0)
        return -1;
    count_pages(rs, &pd);
    if (rs->lz && rs->ix_used)
        return refuse(rs, EBADMSG,
                      "a PAGE_DATA record at offset %llu, outside the "
                      "pages the index at the file's end covers",
                      (unsigned long long)(rs->file_base + rec->offset));
    if (rs->lz) {
        lazy_index(rs, rec, &pd);
        return 0;
    }
    if (rs->pc)
        return postcopy_pages(rs, &pd);
    if (rs->checkpointed)
        return buffer_body(rs, rec->length);
    if (xtk__stream_placed(rs->in))
        xtk_stats_count(rs->st, "pages placed", pd.npages);
    if (apply_pages(rs, &pd, xtk__stream_placed(rs->in)) < 0)
        return -1;
    now = xtk_now_ns();
    if (!rs->progress_ended && now - rs->last_progress > PROGRESS_NS) {
        uint64_t got = 0;

        xtk_stats_counter(rs->st, "pages received", &got);
        /* In bytes, as the save's. */
        xtk__progress(
            rs->ctx, "restore", "receiving memory",
            (unsigned long)((got < rs->cfg.nr_pages ? got : rs->cfg.nr_pages) *
                            XTK__PAGE_SIZE),
            (unsigned long)(rs->cfg.nr_pages * XTK__PAGE_SIZE));
        rs->last_progress = now;
    }
    return 0;
}

/*
 * Loads a checked HVM_CONTEXT body (xtk's header, then the records).  With
 * ahead set, and a backend that can, it only starts the loading, which
 * then overlaps the reading of the last pages: finish_state waits for it.
 */
static int load_state(struct xtk_restore *rs, const void *state, int ahead)
{
    struct xtk_domain *dom = rs->dom;
    struct xtk__sr_state_hdr h;
    const char *recs = (const char *)state + sizeof(h);

    if (rs->native) {
        /* Xen's records, whole: the backend applies them in Xen's order */
        if (dom->ops->set_state(dom, state, rs->state_len) < 0)
            goto err;
        xtk_stats_phase(rs->st, "state loaded");
        return 0;
    }
    memcpy(&h, state, sizeof(h));
    if (ahead && dom->ops->set_state_start) {
        if (dom->ops->set_state_start(dom, recs, h.length) < 0)
            goto err;
        rs->loading = 1;
        xtk_stats_phase(rs->st, "state load started");
        return 0;
    }
    if (dom->ops->set_state(dom, recs, h.length) < 0)
        goto err;
    xtk_stats_phase(rs->st, "state loaded");
    return 0;
err:
    XTK_PERROR(rs->ctx, "domain %u: its state does not load", dom->domid);
    return -1;
}

/* The outcome of a loading load_state started ahead. */
static int finish_state(struct xtk_restore *rs)
{
    struct xtk_domain *dom = rs->dom;

    if (!rs->loading)
        return 0;
    rs->loading = 0;
    if (dom->ops->set_state_finish(dom) < 0) {
        XTK_PERROR(rs->ctx, "domain %u: its state does not load", dom->domid);
        return -1;
    }
    xtk_stats_phase(rs->st, "state loaded");
    return 0;
}

/*
 * The source has stopped its guest and sends the last pages: the receive
 * buffer kept small during pre-copy (so that the source could see the
 * link drain) now only slows the final round.  Best effort: a failure
 * costs speed, not correctness.
 */
static void widen_rcvbuf(struct xtk_restore *rs)
{
    int want = (int)rs->opt.final_rcvbuf, got = 0;
    int fd = rs->opt.peer_fd;
    socklen_t len = sizeof(got);

    /* A post-copy's frames asked for must not wait behind megabytes of
     * pushed ones in this buffer: it stays as pre-copy had it. */
    if (!want || rs->pc_prepared)
        return;
    /* Past net.core.rmem_max where we may (CAP_NET_ADMIN). */
    if ((setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) < 0 &&
         setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want)) < 0) ||
        getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) < 0) {
        XTK_PERROR(rs->ctx, "cannot widen the receive buffer");
        return;
    }
    XTK_DEBUG(rs->ctx, "final round: receive buffer widened to %d bytes", got);
}

static int on_context(struct xtk_restore *rs,
                      const struct xtk_stream_record *rec)
{
    const void *recs;
    size_t len;
    char why[192];
    void *body;

    xtk_stats_phase(rs->st, "state received");
    if (!rs->creating && !rs->dom)
        return refuse(rs, EPROTO, "state before the domain's shape");
    /* A lazy restore's domain may still be in the making: its state is
     * checked and loaded once it is there (start_domain). */
    if (!rs->creating &&
        xtk__sr_state_check(rec->body, rec->length, rs->dom->ops->name,
                            &rs->cfg, &recs, &len, why, sizeof(why)) < 0)
        return refuse(rs, errno, "%s", why);
    body = xtk_stream_take_body(rs->in);
    if (!body)
        return xtk__fail(ENOMEM);
    free(rs->cur.state);
    rs->cur.state = body;
    rs->cur.state_len = rec->length;
    if (rs->creating)
        return 0;
    if (!rs->checkpointed) {
        /* A plain stream's state is loaded as it arrives (the source sends
         * it before the last pages, which wait in the socket meanwhile):
         * at END only the resume is left. */
        if (load_state(rs, body, 1) < 0)
            return -1;
        rs->loaded = 1;
        widen_rcvbuf(rs); /* after the hand-off: not in its way */
    }
    return 0;
}

/* ---- a backup's back channel ----------------------------------------- */

/* Sends up to len bytes to the source, not waiting: as send(2) with
 * MSG_DONTWAIT, through the caller's transport if it gave one. */
static ssize_t peer_send(struct xtk_restore *rs, const void *buf, size_t len)
{
    if (rs->opt.peer_io)
        return rs->opt.peer_io->send(rs->opt.peer_io->arg, buf, len);
    return send(rs->opt.peer_fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Sends all of buf, waiting up to timeout_ms for room: 0, or -1 (errno;
 * ETIMEDOUT when the source took nothing for that long). */
static int peer_send_all(struct xtk_restore *rs, const void *buf, size_t len,
                         int timeout_ms)
{
    size_t off = 0;

    while (off < len) {
        struct pollfd p = {.fd = rs->opt.peer_fd, .events = POLLOUT};
        ssize_t n = peer_send(rs, (const char *)buf + off, len - off);

        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (n == 0 || poll(&p, 1, timeout_ms) == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
    }
    return 0;
}

/* Whether this restore is a backup: a live source's checkpointed stream. */
static int is_backup(const struct xtk_restore *rs)
{
    return (rs->opt.flags & XTK_RESTORE_REPLY) && rs->checkpointed;
}

static uint32_t peer_timeout_ms(const struct xtk_restore *rs)
{
    return rs->opt.peer_timeout_ms ? rs->opt.peer_timeout_ms
                                   : DEFAULT_PEER_TIMEOUT_MS;
}

/* Sends a back-channel message (32 bytes: it goes whole, or the source is
 * taken for lost when it cannot take it within the peer timeout). */
static int send_msg(struct xtk_restore *rs, uint16_t kind, uint32_t seq,
                    uint64_t value)
{
    struct xtk__sr_msg m = {
        .magic = XTK__SR_REPLY_MAGIC,
        .version = XTK__SR_MSG_VERSION,
        .kind = kind,
        .seq = seq,
        .value = value,
    };
    int r;

    pthread_mutex_lock(&rs->send_lock);
    r = peer_send_all(rs, &m, sizeof(m), (int)peer_timeout_ms(rs));
    pthread_mutex_unlock(&rs->send_lock);
    if (r == 0)
        return 0;
    /* its end of the connection is gone (any thread: the post-copy's
     * fault thread asks too) */
    __atomic_store_n(&rs->source_gone, 1, __ATOMIC_RELAXED);
    XTK_PERROR(rs->ctx, "cannot answer the source");
    return -1;
}

/* A heartbeat from the source: answered at once. */
static int on_heartbeat(struct xtk_restore *rs,
                        const struct xtk_stream_record *rec)
{
    struct xtk__sr_heartbeat hb;

    memcpy(&hb, rec->body, sizeof(hb)); /* 16 bytes: the stream checked */
    xtk_stats_count(rs->st, "heartbeats", 1);
    if (!hb.seq)
        return refuse(rs, EBADMSG, "a heartbeat numbered 0");
    if (!(rs->opt.flags & XTK_RESTORE_REPLY))
        return 0; /* a file's: nobody to answer */
    return send_msg(rs, XTK__SR_MSG_HEARTBEAT, hb.seq, 0);
}

/* Whether the caller has decided (promote or cancel): the reader stops. */
static enum decision decided(struct xtk_restore *rs)
{
    enum decision d;

    pthread_mutex_lock(&rs->lock);
    d = rs->decision;
    pthread_mutex_unlock(&rs->lock);
    return d;
}

/*
 * The backup has lost its source (err): it holds the last complete epoch
 * (the domain built, not running) and waits for the caller's decision,
 * unless XTK_RESTORE_FAILOVER decides already.  Returns it.
 */
static enum decision hold(struct xtk_restore *rs, int err, int source_lost)
{
    uint64_t one = 1;
    enum decision d;
    char why[64];

    if (err == ETIMEDOUT)
        snprintf(why, sizeof(why), "silent for %u ms", peer_timeout_ms(rs));
    else if (err == ENODATA || err == EBADMSG || err == ECONNRESET ||
             err == EPIPE)
        snprintf(why, sizeof(why), "its stream ended");
    else
        snprintf(why, sizeof(why), "%s", strerror(err));

    xtk_stats_phase(rs->st, "source lost");
    pthread_mutex_lock(&rs->lock);
    if (rs->decision == DECIDE_NONE && source_lost &&
        (rs->opt.flags & XTK_RESTORE_FAILOVER))
        rs->decision = DECIDE_PROMOTE;
    if (rs->decision == DECIDE_NONE) {
        if (source_lost)
            XTK_WARN(rs->ctx,
                     "the source is lost (%s): holding checkpoint %u, not "
                     "running it, until this backup is promoted or stopped",
                     why, rs->epochs);
        else
            XTK_WARN(rs->ctx,
                     "this backup failed (%s) and left its source: holding "
                     "checkpoint %u, not running it, until it is promoted "
                     "or stopped",
                     strerror(err), rs->epochs);
        rs->lost_pending = 1;
        rs->lost_err = err;
        if (write(rs->notify_fd, &one, sizeof(one)) != sizeof(one))
            XTK_PERROR(rs->ctx, "cannot wake the event loop");
        while (rs->decision == DECIDE_NONE)
            pthread_cond_wait(&rs->cond, &rs->lock);
    }
    d = rs->decision;
    pthread_mutex_unlock(&rs->lock);
    return d;
}

/* ---- applying an epoch whole ------------------------------------------ */

/*
 * What an epoch's frames held before it was applied: the frames written
 * before (old set) with their contents, and those it writes first; kept
 * until the epoch is in, so that an epoch that fails half-way is rolled
 * back and the domain holds exactly the last complete one.
 */
struct undo {
    uint64_t *pfns;
    uint8_t *old;  /* per frame: written before */
    uint8_t *data; /* the old contents of those, in order */
    size_t n, nold;
};

static void undo_free(struct undo *u)
{
    free(u->pfns);
    free(u->old);
    free(u->data);
    memset(u, 0, sizeof(*u));
}

/* Copies n frames between the guest and buf (to_guest: into the guest),
 * through the whole mapping where there is one, else batch by batch. */
static int frames_copy(struct xtk_restore *rs, const uint64_t *pfns, size_t n,
                       uint8_t *buf, int to_guest)
{
    struct xtk_domain *dom = rs->dom;
    enum { CHUNK = 512 };
    int errs[CHUNK];

    if (rs->ram) {
        for (size_t i = 0; i < n; i++) {
            uint8_t *g = rs->ram + (pfns[i] << XTK__PAGE_SHIFT);
            uint8_t *b = buf + (i << XTK__PAGE_SHIFT);

            memcpy(to_guest ? g : b, to_guest ? b : g, XTK__PAGE_SIZE);
        }
        return 0;
    }
    if (!dom->ops->map_batch || !dom->ops->unmap_batch)
        return xtk__fail(ENOTSUP);
    for (size_t at = 0; at < n; at += CHUNK) {
        unsigned int k = (unsigned int)(n - at < CHUNK ? n - at : CHUNK);
        uint8_t *base = dom->ops->map_batch(
            dom, to_guest ? PROT_READ | PROT_WRITE : PROT_READ, pfns + at, k,
            errs);
        int bad = 0;

        if (!base)
            return -1;
        for (unsigned int i = 0; i < k && !bad; i++)
            bad = errs[i];
        if (!bad)
            for (unsigned int i = 0; i < k; i++) {
                uint8_t *g = base + ((size_t)i << XTK__PAGE_SHIFT);
                uint8_t *b = buf + ((at + i) << XTK__PAGE_SHIFT);

                memcpy(to_guest ? g : b, to_guest ? b : g, XTK__PAGE_SIZE);
            }
        dom->ops->unmap_batch(dom, base, k);
        if (bad)
            return xtk__fail(bad);
    }
    return 0;
}

/* Records what the epoch's frames hold now (each frame once). */
static int undo_take(struct xtk_restore *rs, const struct epoch *e,
                     struct undo *u)
{
    size_t cap = 0;
    uint64_t *seen = calloc((rs->max_pfn + 63) / 64, 8);
    uint64_t *oldpfns = NULL;
    int r = -1;

    if (!seen)
        return -1;
    for (size_t i = 0; i < e->n; i++) {
        struct xtk_stream_page_data pd;

        xtk_stream_page_data_parse(e->bodies[i], e->lens[i], &pd);
        cap += pd.count;
    }
    u->pfns = malloc((cap ? cap : 1) * sizeof(*u->pfns));
    u->old = malloc(cap ? cap : 1);
    oldpfns = malloc((cap ? cap : 1) * sizeof(*oldpfns));
    if (!u->pfns || !u->old || !oldpfns)
        goto out;
    for (size_t i = 0; i < e->n; i++) {
        struct xtk_stream_page_data pd;

        xtk_stream_page_data_parse(e->bodies[i], e->lens[i], &pd);
        for (uint32_t j = 0; j < pd.count; j++) {
            uint64_t pfn = xtk_pfn_entry_pfn(pd.pfns[j]);
            uint64_t bit = 1ull << (pfn % 64);

            /* A native XTAB frame stays a hole (not written); xtk's own
             * apply zeroes it like XALLOC. */
            if ((rs->native &&
                 xtk_pfn_entry_type(pd.pfns[j]) == XTK_PAGE_XTAB) ||
                (seen[pfn / 64] & bit))
                continue;
            seen[pfn / 64] |= bit;
            u->old[u->n] = !!(rs->written[pfn / 64] & bit);
            if (u->old[u->n])
                oldpfns[u->nold++] = pfn;
            u->pfns[u->n++] = pfn;
        }
    }
    u->data = malloc(u->nold ? u->nold << XTK__PAGE_SHIFT : 1);
    if (!u->data)
        goto out;
    r = frames_copy(rs, oldpfns, u->nold, u->data, 0);
out:
    free(seen);
    free(oldpfns);
    return r;
}

/* Puts back what undo_take recorded: frames written before get their old
 * contents; frames the epoch wrote first are zero again (and, where the
 * domain has no whole mapping, stay populated). */
static int undo_apply(struct xtk_restore *rs, const struct undo *u)
{
    uint64_t *oldpfns = malloc((u->nold ? u->nold : 1) * sizeof(*oldpfns));
    uint64_t *fresh = malloc((u->n - u->nold ? u->n - u->nold : 1) * 8);
    uint8_t *zero = NULL;
    size_t a = 0, b = 0;
    int r = -1;

    if (!oldpfns || !fresh)
        goto out;
    for (size_t i = 0; i < u->n; i++) {
        uint64_t pfn = u->pfns[i];

        if (u->old[i])
            oldpfns[a++] = pfn;
        else if (!rs->native || (rs->written[pfn / 64] & (1ull << (pfn % 64))))
            fresh[b++] = pfn; /* native: only those populated since */
    }
    if (frames_copy(rs, oldpfns, a, u->data, 1) < 0)
        goto out;
    if (b) {
        zero = calloc(b, XTK__PAGE_SIZE);
        if (!zero || frames_copy(rs, fresh, b, zero, 1) < 0)
            goto out;
    }
    for (size_t i = 0; i < b && !rs->native; i++)
        rs->written[fresh[i] / 64] &= ~(1ull << (fresh[i] % 64));
    for (size_t i = 0; i < a; i++)
        rs->written[oldpfns[i] / 64] |= 1ull << (oldpfns[i] % 64);
    r = 0;
out:
    free(oldpfns);
    free(fresh);
    free(zero);
    return r;
}

/*
 * A test hook: XTK_FAULT_EPOCH_APPLY=N fails the applying of epoch N
 * half-way (after the first half of its page entries, counted across its
 * records: a short epoch may be one record), as a write into the domain
 * that fails would.  See xtk_restore(3), "TESTING".
 */
static unsigned int fault_epoch(void)
{
    const char *v = getenv("XTK_FAULT_EPOCH_APPLY");

    return v && *v ? (unsigned int)strtoul(v, NULL, 10) : 0;
}

/* The page entries of epoch E's record I (checked when it arrived). */
static size_t epoch_entries(const struct epoch *e, size_t i)
{
    struct xtk_stream_page_data pd;

    xtk_stream_page_data_parse(e->bodies[i], e->lens[i], &pd);
    return pd.count;
}

/* The hook's failure: the first K entries of PD (the epoch's DONE + K of
 * its ENTRIES) applied, then EIO. */
static int fault_apply(struct xtk_restore *rs,
                       const struct xtk_stream_page_data *pd, size_t k,
                       size_t done, size_t entries)
{
    struct xtk_stream_page_data head = *pd;

    head.count = (uint32_t)k;
    head.npages = 0;
    for (size_t j = 0; j < k; j++)
        if (xtk_page_type_has_data(xtk_pfn_entry_type(pd->pfns[j])))
            head.npages++;
    if (k && apply_pages(rs, &head, 0) < 0)
        return -1;
    XTK_ERROR(rs->ctx,
              "XTK_FAULT_EPOCH_APPLY: epoch %u fails after %zu of its %zu "
              "page entries",
              rs->epochs + 1, done + k, entries);
    errno = EIO;
    return -1;
}

/* An epoch is complete (CHECKPOINT or END): apply what it buffered, whole
 * or not at all. */
static int commit_epoch(struct xtk_restore *rs, const char *what)
{
    struct epoch *e = &rs->cur;
    struct undo u = {0};
    unsigned int fault = fault_epoch();

    if (!e->state)
        return refuse(rs, EPROTO, "%s without the domain's state before it",
                      what);
    if (rs->lz) {
        /* A lazy restore's END (it refuses checkpoints): the memory is
         * indexed, not buffered; the domain may still be in the making. */
        free(rs->state);
        rs->state = e->state;
        rs->state_len = e->state_len;
        e->state = NULL;
        rs->epochs++;
        return 0;
    }
    if (undo_take(rs, e, &u) < 0) {
        XTK_PERROR(rs->ctx, "domain %u: cannot keep what epoch %u overwrites",
                   rs->dom->domid, rs->epochs + 1);
        undo_free(&u);
        return -1;
    }
    size_t entries = 0, done = 0;

    if (fault == rs->epochs + 1)
        for (size_t i = 0; i < e->n; i++)
            entries += epoch_entries(e, i);
    for (size_t i = 0; i < e->n; i++) {
        struct xtk_stream_page_data pd;
        int r;

        /* Checked when it arrived. */
        xtk_stream_page_data_parse(e->bodies[i], e->lens[i], &pd);
        if (fault == rs->epochs + 1 && done + pd.count > entries / 2) {
            r = fault_apply(rs, &pd, entries / 2 - done, done, entries);
        } else {
            r = apply_pages(rs, &pd, 0);
            done += pd.count;
        }
        if (r < 0) {
            int err = errno ? errno : EIO;

            if (undo_apply(rs, &u) < 0) {
                XTK_PERROR(rs->ctx,
                           "domain %u: epoch %u failed half-way and "
                           "cannot be undone: no checkpoint to run",
                           rs->dom->domid, rs->epochs + 1);
                rs->epochs = 0; /* nothing whole to fail over to */
            } else {
                XTK_WARN(rs->ctx,
                         "domain %u: epoch %u failed half-way (%s): "
                         "undone, %zu frames, checkpoint %u kept whole",
                         rs->dom->domid, rs->epochs + 1, strerror(err), u.n,
                         rs->epochs);
                xtk_stats_count(rs->st, "epochs undone", 1);
            }
            undo_free(&u);
            return xtk__fail(err);
        }
    }
    undo_free(&u);
    free(rs->state);
    rs->state = e->state;
    rs->state_len = e->state_len;
    e->state = NULL;
    epoch_clear(e);
    rs->epochs++;
    XTK_DEBUG(rs->ctx, "%s: epoch %u complete", what, rs->epochs);
    xtk_stats_count(rs->st, "epochs complete", 1);
    if (is_backup(rs) && strcmp(what, "END")) {
        uint64_t apply = xtk_now_ns() - rs->t_checkpoint;
        struct xtk_hist *h = xtk_stats_hist(rs->st, "epoch apply", "ns");

        if (h)
            xtk_hist_record(h, apply);
        return send_msg(rs, XTK__SR_MSG_ACK, rs->epochs, apply);
    }
    return 0;
}

static int on_shape(struct xtk_restore *rs, const struct xtk_stream_record *rec)
{
    char why[192];

    if (rs->creating || rs->dom || rs->seen_pages)
        return refuse(rs, EPROTO,
                      "HVM_PARAMS after the memory: a Xen "
                      "guest's stream, not an xtk KVM domain's");
    if (xtk__sr_config_decode(rec->body, rec->length, &rs->cfg, why,
                              sizeof(why)) < 0)
        return refuse(rs, EPROTO, "%s", why);
    XTK_INFO(rs->ctx, "domain %s: %llu MiB, %u vCPUs", rs->cfg.name,
             (unsigned long long)(rs->cfg.nr_pages >> 8), rs->cfg.nr_vcpus);
    return create_domain(rs);
}

/*
 * A native stream's static data (the CPU policy, before STATIC_DATA_END),
 * loaded when it ends: a host that cannot give the guest its CPU refuses
 * the stream before any memory.
 */
static int on_native_static(struct xtk_restore *rs,
                            const struct xtk_stream_record *rec)
{
    if (rec->type != XTK_REC_STATIC_DATA_END) {
        if (rs->statics_done)
            return refuse(rs, EPROTO, "%s after STATIC_DATA_END",
                          xtk_stream_record_name(rec->type));
        /* Xen's policy records are a few KiB; bounded as the state is. */
        if (rs->statics_len + rec->length > (64u << 20))
            return refuse(rs, EPROTO, "static data of more than 64 MiB");
        if (xtk__rec_append(&rs->statics, &rs->statics_len, &rs->statics_cap,
                            rec->type, rec->body, rec->length, NULL, 0) < 0)
            return refuse(rs, errno, "%s: %s",
                          xtk_stream_record_name(rec->type), strerror(errno));
        return 0;
    }
    if (rs->statics_done)
        return refuse(rs, EPROTO, "a second STATIC_DATA_END");
    rs->statics_done = 1;
    if (!rs->statics_len)
        return refuse(rs, EPROTO,
                      "the stream has no CPU policy (a stream of Xen "
                      "before 4.14?): use xl restore");
    if (rs->dom->ops->set_state(rs->dom, rs->statics, rs->statics_len) < 0) {
        XTK_PERROR(rs->ctx, "domain %u: its CPU policy does not load",
                   rs->dom->domid);
        return -1;
    }
    xtk_stats_phase(rs->st, "CPU policy loaded");
    return 0;
}

/* A native stream's state records: kept together, in the epoch. */
static int on_native_state(struct xtk_restore *rs,
                           const struct xtk_stream_record *rec)
{
    struct epoch *e = &rs->cur;
    size_t len = e->state_len;
    void *buf = e->state;

    if (!rs->statics_done)
        return refuse(rs, EPROTO, "%s before STATIC_DATA_END",
                      xtk_stream_record_name(rec->type));
    if (rec->type == XTK_REC_HVM_CONTEXT)
        xtk_stats_phase(rs->st, "state received");
    if (len + rec->length > (64u << 20))
        return refuse(rs, EPROTO, "a state of more than 64 MiB");
    if (xtk__rec_append(&buf, &len, &e->state_cap, rec->type, rec->body,
                        rec->length, NULL, 0) < 0)
        return refuse(rs, errno, "%s: %s", xtk_stream_record_name(rec->type),
                      strerror(errno));
    e->state = buf;
    e->state_len = (uint32_t)len;
    return 0;
}

/* The next record; a broken stream is said once (unless the stream said
 * why itself).  0, or -1 with errno set. */
static int next_record(struct xtk_restore *rs, struct xtk_stream_record *rec)
{
    unsigned int errors = rs->ctx->errors;

    if (xtk_stream_read_record(rs->in, rec) == 0)
        return 0;
    int e = errno;
    if (rs->ctx->errors == errors)
        XTK_ERROR(rs->ctx, "the stream broke: %s",
                  e == ENODATA ? "it ended before END" : strerror(e));
    return xtk__fail(e);
}

/* ---- a stream the backend restores itself ---------------------------- */

struct delegate_run {
    struct xtk_domain *dom;
    int fd;
    int rc, err;
};

static void *delegate_main(void *arg)
{
    struct delegate_run *d = arg;

    d->rc = d->dom->ops->restore_delegate(d->dom, d->fd);
    d->err = d->rc < 0 ? (errno ? errno : EIO) : 0;
    /* Its end of the pair: a feeder still writing gets EPIPE, not a
     * wait. */
    close(d->fd);
    return NULL;
}

/*
 * The headers again, then every record as read and checked, up to END,
 * to the backend's restore on the other end of a socket pair.
 */
static int feed_delegate(struct xtk_restore *rs, struct xtk_stream *out,
                         const struct xtk_stream_domain_header *dh)
{
    struct xtk_stream_record rec;

    if (xtk_stream_write_image_header(out) < 0 ||
        xtk_stream_write_domain_header(out, dh->type, dh->xen_major,
                                       dh->xen_minor) < 0)
        return -1;
    for (;;) {
        if (next_record(rs, &rec) < 0)
            return -1;
        if (rec.type == XTK_REC_CHECKPOINT)
            return refuse(rs, EPROTO,
                          "a checkpointed PV stream: libxenguest restores "
                          "those only for Remus and COLO");
        if (rec.type == XTK_REC_PAGE_DATA) {
            struct xtk_stream_page_data pd;

            if (xtk_stream_page_data_parse(rec.body, rec.length, &pd) == 0)
                count_pages(rs, &pd);
        }
        if (xtk_stream_write_record(out, rec.type, rec.body, rec.length) < 0)
            return -1;
        if (rec.type == XTK_REC_END) {
            rs->t_end = xtk_now_ns();
            xtk_stats_phase_at(rs->st, "end received", rs->t_end);
            return xtk_stream_flush(out);
        }
    }
}

static int read_delegated(struct xtk_restore *rs,
                          const struct xtk_stream_domain_header *dh)
{
    struct delegate_run d = {.dom = rs->dom, .fd = -1};
    struct xtk_stream *out = NULL;
    pthread_t t;
    int sv[2], fed, e;

    if (!rs->dom->ops->restore_delegate)
        return refuse(rs, ENOTSUP, "the %s backend cannot restore this stream",
                      rs->dom->ops->name);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    d.fd = sv[1];
    out =
        xtk_stream_socket(rs->ctx, sv[0], XTK_STREAM_WRITE | XTK_STREAM_OWN_FD);
    if (!out) {
        close(sv[1]);
        return -1;
    }
    if ((e = pthread_create(&t, NULL, delegate_main, &d)) != 0) {
        xtk_stream_close(out);
        close(sv[1]);
        return xtk__fail(e);
    }
    XTK_INFO(rs->ctx, "the stream goes to the %s backend's own restore",
             rs->dom->ops->name);
    fed = feed_delegate(rs, out, dh);
    e = errno;
    /* EOF for the restore, if it still reads: it has all there is. */
    xtk_stream_close(out);
    pthread_join(t, NULL);
    /* The backend's failure, unless the stream failed first (the
     * restore then only saw it end). */
    if (d.rc < 0 && (fed == 0 || e == EPIPE)) {
        XTK_ERROR(rs->ctx, "domain %u: the %s backend's restore failed",
                  rs->dom->domid, rs->dom->ops->name);
        return xtk__fail(d.err);
    }
    if (fed < 0) {
        /* Last, after whatever the backend's restore said of its end. */
        XTK_ERROR(rs->ctx, "domain %u: the stream broke off (%s): not run",
                  rs->dom->domid, strerror(e));
        return xtk__fail(e);
    }
    if (d.rc < 0)
        return xtk__fail(d.err);
    progress_done(rs);
    xtk_stats_phase(rs->st, "state loaded");
    rs->loaded = 1;
    return 0;
}

/* Reads the stream to its END.  0, or -1 with errno set (and logged). */
static int read_stream(struct xtk_restore *rs)
{
    struct xtk_stream_image_header ih;
    struct xtk_stream_domain_header dh;
    struct xtk_stream_record rec;
    unsigned int errors = rs->ctx->errors;

    /* An xl save file or a libxl stream: the framing goes by (the stream
     * checks the libxl records after each CHECKPOINT and END itself); the
     * config is libxl's, for Xen, of no use to a KVM domain.  Unless the
     * caller read the framing already, to keep the config. */
    if (!rs->in->framing_done) {
        struct xtk_stream_framing fr;

        if (xtk_stream_read_framing(rs->in, &fr) < 0)
            return refuse(rs, errno, "bad framing: %s", strerror(errno));
        /* Kept for a Xen guest's stream, whose domain it shapes. */
        rs->config = fr.config;
        rs->config_len = fr.config_len;
        rs->config_json = !!(fr.xl_mandatory_flags & XTK_XL_CONFIG_JSON);
        if (fr.framing != XTK_STREAM_FRAMING_LIBXC) {
            XTK_INFO(rs->ctx, "%s, the stream at offset %llu%s",
                     fr.framing == XTK_STREAM_FRAMING_XL ? "an xl save file"
                                                         : "a libxl stream",
                     (unsigned long long)fr.libxc_offset,
                     fr.config_len ? (rs->config_json ? " (JSON config)"
                                                      : " (text config)")
                                   : "");
            xtk_stats_phase(rs->st, "framing read");
        }
    }
    if (xtk_stream_read_image_header(rs->in, &ih) < 0 ||
        xtk_stream_read_domain_header(rs->in, &dh) < 0) {
        if (rs->ctx->errors != errors) /* the stream said why */
            return -1;
        return refuse(rs, errno, "bad headers: %s", strerror(errno));
    }
    /* Xen writes its version; xtk's own layout has 0 there. */
    rs->native = dh.xen_major != 0;
    if (dh.type != XTK_DOMAIN_X86_HVM && !rs->native)
        return refuse(rs, EPROTO,
                      "an x86 PV domain's stream without Xen's version: "
                      "not one Xen wrote");
    xtk_stats_phase(rs->st, "headers read");
    if (rs->native && (rs->opt.flags & XTK_RESTORE_LAZY))
        return refuse(rs, ENOTSUP,
                      "a stream of Xen's layout is not restored lazily");
    if (rs->native) {
        XTK_INFO(rs->ctx, "a stream of Xen %u.%u's layout, %s guest",
                 dh.xen_major, dh.xen_minor,
                 dh.type == XTK_DOMAIN_X86_PV ? "a PV" : "an HVM/PVH");
        if (create_native_domain(rs, dh.type) < 0)
            return -1;
        if (rs->delegate)
            return read_delegated(rs, &dh);
        if (dh.type != XTK_DOMAIN_X86_HVM)
            return refuse(rs, EPROTO,
                          "a PV guest's stream, which the %s backend does "
                          "not restore",
                          rs->dom->ops->name);
    }
    for (;;) {
        int r = 0;

        if (decided(rs) != DECIDE_NONE)
            return xtk__fail(ECANCELED);
        if (lazy_jump(rs) < 0 || next_record(rs, &rec) < 0)
            return -1;
        /* The guest runs: only its memory and the end may come now. */
        if (rs->pc && rec.type != XTK_REC_PAGE_DATA &&
            rec.type != XTK_REC_END && rec.type != XTK_REC_POSTCOPY &&
            rec.type != XTK_REC_POSTCOPY_PREPARE &&
            !(rec.type & XTK_REC_OPTIONAL))
            return refuse(rs, EPROTO, "%s after the post-copy switch",
                          xtk_stream_record_name(rec.type)
                              ? xtk_stream_record_name(rec.type)
                              : "an unknown record");
        if (rs->native)
            switch (rec.type) {
            case XTK_REC_X86_CPUID_POLICY:
            case XTK_REC_X86_MSR_POLICY:
            case XTK_REC_STATIC_DATA_END:
                if (on_native_static(rs, &rec) < 0)
                    return -1;
                continue;
            case XTK_REC_X86_TSC_INFO:
            case XTK_REC_HVM_CONTEXT:
            case XTK_REC_HVM_PARAMS:
                if (on_native_state(rs, &rec) < 0)
                    return -1;
                continue;
            }
        switch (rec.type) {
        case XTK_REC_PAGE_DATA:
            r = on_page_data(rs, &rec);
            break;
        case XTK_REC_HVM_PARAMS:
            r = on_shape(rs, &rec);
            break;
        case XTK_REC_HVM_CONTEXT:
            r = on_context(rs, &rec);
            break;
        case XTK_REC_STATIC_DATA_END:
        case XTK_REC_X86_TSC_INFO: /* xtk writes none: the TSC cannot be set */
            break;
        case XTK_REC_CHECKPOINT:
            if (rs->lz)
                return refuse(rs, ENOTSUP,
                              "a checkpointed stream is not restored "
                              "lazily: restore it without --lazy");
            rs->t_checkpoint = xtk_now_ns();
            if (!rs->checkpointed) {
                rs->checkpointed = 1; /* epoch 0 went straight in */
                progress_done(rs);
                xtk_stats_phase(rs->st, "first checkpoint");
                /* A backup: the source is lost when silent this long (it
                 * sends heartbeats between epochs). */
                if (is_backup(rs) && xtk_stream_set_timeout(
                                         rs->in, (int)peer_timeout_ms(rs)) < 0)
                    return -1;
            }
            r = commit_epoch(rs, "CHECKPOINT");
            xtk_stats_count(rs->st, "checkpoints", 1);
            break;
        case XTK_REC_HEARTBEAT:
            r = on_heartbeat(rs, &rec);
            break;
        case XTK_REC_POSTCOPY:
            r = on_postcopy(rs, &rec);
            break;
        case XTK_REC_POSTCOPY_PREPARE:
            r = on_postcopy_prepare(rs, &rec);
            break;
        case XTK_REC_END:
            if (rs->ix_used &&
                rs->file_base + xtk__stream_offset(rs->in) != rs->ix_end)
                return refuse(rs, EBADMSG,
                              "the stream's END ends at offset %llu, the "
                              "index at the file's end says %llu: not run",
                              (unsigned long long)(rs->file_base +
                                                   xtk__stream_offset(rs->in)),
                              (unsigned long long)rs->ix_end);
            rs->t_checkpoint = rs->t_end = xtk_now_ns();
            xtk_stats_phase_at(rs->st, "end received", rs->t_end);
            progress_done(rs);
            return commit_epoch(rs, "END");
        default:
            if (rec.type & XTK_REC_OPTIONAL) {
                XTK_DEBUG(rs->ctx, "skipping optional record %#x", rec.type);
                break;
            }
            r = refuse(rs, EPROTO, "%s records are not for %s",
                       xtk_stream_record_name(rec.type),
                       rs->native ? "a PVH guest" : "a KVM domain");
        }
        if (r < 0)
            return -1;
    }
}

/* ---- the end ------------------------------------------------------- */

/*
 * The reply carries this host's own spans (END, or the failover, to the
 * guest running; the guest running to the reply), never a time on this
 * host's clock: the source's clock is another host's.
 */
static void send_reply(struct xtk_restore *rs, int status, uint64_t resumed)
{
    int r;
    struct xtk__sr_reply m = {
        .magic = XTK__SR_REPLY_MAGIC,
        .version = XTK__SR_REPLY_VERSION,
        .status = status,
        .domid = status ? 0 : rs->domid,
    };

    if (!(rs->opt.flags & XTK_RESTORE_REPLY) || rs->source_gone)
        return;
    if (!status) {
        uint64_t now = xtk_now_ns();

        m.end_to_resumed_ns =
            rs->t_end && resumed > rs->t_end ? resumed - rs->t_end : 0;
        m.resumed_to_reply_ns = now > resumed ? now - resumed : 0;
    }
    pthread_mutex_lock(&rs->send_lock);
    r = peer_send_all(rs, &m, sizeof(m), (int)peer_timeout_ms(rs));
    pthread_mutex_unlock(&rs->send_lock);
    if (r < 0) {
        if (!status)
            XTK_PERROR(rs->ctx,
                       "domain %u runs here, but the source could "
                       "not be told: it may run there too",
                       rs->domid);
        else
            XTK_PERROR(rs->ctx, "cannot tell the source");
    } else
        xtk_stats_phase(rs->st, "reply sent");
}

/* Loads the last complete state (unless it is in already) and runs the
 * domain. */
static int start_domain(struct xtk_restore *rs)
{
    struct xtk_domain *dom = rs->dom;

    if (rs->pc) /* it runs since the switch */
        return postcopy_end(rs);
    if (rs->lz) {
        const void *recs;
        size_t len;
        char why[192];
        int uffd;

        xtk_stats_phase(rs->st, "index built");
        if (lazy_created(rs) < 0)
            return -1;
        dom = rs->dom;
        if (xtk__sr_state_check(rs->state, rs->state_len, dom->ops->name,
                                &rs->cfg, &recs, &len, why, sizeof(why)) < 0)
            return refuse(rs, errno, "%s", why);
        /* The state loads while the pager starts: from here it owns the
         * fd and answers every first touch; the frames the host itself
         * reads go in now. */
        if (load_state(rs, rs->state, 1) < 0)
            return -1;
        rs->loaded = 1;
        if (lazy_check(rs) < 0)
            return -1;
        uffd = rs->uffd;
        rs->uffd = -1;
        if (xtk__lazy_start(rs->lz, uffd, rs->uffd_base) < 0 ||
            lazy_eager(rs) < 0)
            return -1;
    }
    if (!(rs->loaded && !rs->checkpointed) && load_state(rs, rs->state, 0) < 0)
        return -1;
    if (finish_state(rs) < 0)
        return -1;
    if (dom->ops->resume(dom) < 0) {
        XTK_PERROR(rs->ctx, "domain %u: cannot start it", dom->domid);
        return -1;
    }
    return 0;
}

/*
 * A checkpointed stream that ended cleanly (END from a live source, not a
 * failover): the source held its guest's output per epoch and lets the
 * last epoch's go only once this side has replied.  So that nobody sees
 * this copy's first output before that (reordered), this copy's output is
 * held from before its first instruction until the source has ended its
 * connection (it does so once its output is out), or for the peer timeout
 * at most.  1 if holding.
 */
static int hold_for_source(struct xtk_restore *rs, int failed_over)
{
    struct xtk_domain *dom = rs->dom;

    if (!dom || !(rs->opt.flags & XTK_RESTORE_REPLY) || !rs->checkpointed ||
        failed_over || !dom->ops->output_hold)
        return 0;
    if (dom->ops->output_hold(dom, XTK__OUTPUT_HOLD) < 0) {
        if (errno == ENOTSUP) /* (this domain's output cannot be held) */
            return 0;
        XTK_PERROR(rs->ctx,
                   "domain %u: cannot hold its output until the "
                   "source's is out (it may come first)",
                   dom->domid);
        return 0;
    }
    return 1;
}

/* The reply went: waits for the source to end the connection, then lets
 * this copy's output go. */
static void release_after_source(struct xtk_restore *rs)
{
    struct xtk_domain *dom = rs->dom;
    uint64_t t0 = xtk_now_ns(), limit = peer_timeout_ms(rs) * 1000000ull;
    int ended = 0;

    while (!ended) {
        uint64_t now = xtk_now_ns();
        struct pollfd p = {.fd = rs->opt.peer_fd, .events = POLLIN};
        char buf[4096];
        ssize_t n;

        if (now - t0 >= limit)
            break;
        if (poll(&p, 1, (int)((limit - (now - t0)) / 1000000) + 1) <= 0)
            continue;
        /* What comes is the connection's end (a TLS session's own last
         * bytes at most): read and dropped up to it. */
        do
            n = recv(rs->opt.peer_fd, buf, sizeof(buf), MSG_DONTWAIT);
        while (n > 0);
        ended = n == 0 || (errno != EAGAIN && errno != EINTR);
    }
    if (ended)
        xtk_stats_phase(rs->st, "source ended");
    else
        XTK_WARN(rs->ctx,
                 "domain %u: the source did not end its connection within "
                 "%u ms: this copy's output goes now (the source's last "
                 "may come after it)",
                 dom->domid, peer_timeout_ms(rs));
    if (dom->ops->output_hold(dom, XTK__OUTPUT_SEND) < 0)
        XTK_PERROR(rs->ctx, "domain %u: cannot let its output go", dom->domid);
    else
        xtk_stats_phase(rs->st, "output released");
}

/* The lazy domain runs: the rest of its memory comes in; then it is an
 * ordinary domain.  0, or an errno (the domain must go). */
static int lazy_finish(struct xtk_restore *rs)
{
    struct xtk_domain *dom = rs->dom;

    XTK_INFO(rs->ctx, "domain %u runs; its memory comes in from the file",
             dom->domid);
    if (xtk__lazy_fill(rs->lz) < 0 || xtk__lazy_wait(rs->lz) < 0)
        return errno ? errno : EIO;
    xtk_stats_phase(rs->st, "memory complete");
    if (dom->ops->lazy_end(dom) < 0) {
        XTK_PERROR(rs->ctx, "domain %u: cannot end its lazy restore",
                   dom->domid);
        return errno ? errno : EIO;
    }
    xtk__lazy_free(rs->lz);
    rs->lz = NULL;
    return 0;
}

static void *restore_main(void *arg)
{
    struct xtk_restore *rs = arg;
    uint64_t one = 1, resumed = 0;
    int err = 0, failed_over = 0, holding = 0;

    xtk_stats_phase(rs->st, "restore started");
    if (read_stream(rs) < 0) {
        enum decision d = decided(rs);

        err = errno ? errno : EIO;
        /* A backup that failed by itself (not its source's stream: an
         * epoch that would not apply, a malformed record) reads no more:
         * its source is told so at once, by the connection's end, and it
         * never takes over by itself. */
        int local =
            !xtk_stream_error(rs->in) && !rs->source_gone && d == DECIDE_NONE;

        if (is_backup(rs) && local) {
            shutdown(rs->opt.peer_fd, SHUT_RDWR);
            rs->source_gone = 1; /* no reply: it has stopped listening */
        }
        /* A live source's backup holds its epoch until told; the last
         * complete epoch of a file or pipe is what there is to restore. */
        if (d == DECIDE_NONE && is_backup(rs) && rs->epochs)
            d = hold(rs, err, !local);
        if (d == DECIDE_STOP) {
            err = ECANCELED;
        } else if (d == DECIDE_PROMOTE && !rs->epochs) {
            XTK_ERROR(rs->ctx, "promoted before a complete checkpoint: "
                               "nothing to run");
            err = ENODATA;
        } else if (rs->checkpointed && rs->epochs) {
            XTK_WARN(rs->ctx,
                     "failing over to the last complete checkpoint "
                     "(%u)",
                     rs->epochs);
            xtk_stats_count(rs->st, "failover", 1);
            failed_over = 1;
            rs->t_end = xtk_now_ns();
            xtk_stats_phase_at(rs->st, "failover", rs->t_end);
            err = 0;
        }
    }
    if (!err)
        holding = hold_for_source(rs, failed_over);
    if (!err && start_domain(rs) < 0)
        err = errno ? errno : EIO;
    if (!err) {
        uint64_t now = xtk_now_ns();

        /* When the vCPUs ran again, if the backend tells (xtk-hv does):
         * the reply may come later on a busy host, and the guest runs
         * meanwhile. */
        resumed = rs->dom->resumed_ns && rs->dom->resumed_ns <= now
                      ? rs->dom->resumed_ns
                      : now;
        if (rs->t_pc_resumed) { /* at the post-copy switch */
            resumed = rs->t_pc_resumed;
            hist_ns(rs, "postcopy residency", now - resumed);
        } else {
            xtk_stats_phase_at(rs->st, "resumed", resumed);
            xtk_stats_phase_at(rs->st, "resume returned", now);
        }
        if (rs->lz)
            err = lazy_finish(rs);
        if (!err)
            rs->domid = rs->dom->domid;
    }
    send_reply(rs, err, resumed);
    if (!err && holding)
        release_after_source(rs);
    if (rs->creating)
        lazy_created(rs); /* a failed read: what it made goes below */
    if (err && rs->lz) {
        /* Nothing more goes in before the domain goes. */
        xtk__lazy_free(rs->lz);
        rs->lz = NULL;
    }
    if (rs->pc) { /* a post-copy that failed */
        xtk__lazy_free(rs->pc);
        rs->pc = NULL;
        if (rs->t_pc_resumed)
            XTK_ERROR(rs->ctx,
                      "domain %u ran %.0f ms on memory still coming from "
                      "the source, which stopped coming: destroyed (the "
                      "source keeps its copy, paused as at the switch)",
                      rs->dom->domid, (xtk_now_ns() - rs->t_pc_resumed) / 1e6);
    }
    if (rs->uffd >= 0) {
        close(rs->uffd);
        rs->uffd = -1;
    }
    if (err && rs->dom) {
        rs->dom->ops->destroy(rs->dom);
        xtk_stats_phase(rs->st, "domain destroyed");
    }
    xtk_domain_close(rs->dom);
    rs->dom = NULL;
    rs->err = err;
    pthread_mutex_lock(&rs->lock);
    rs->thread_done = 1;
    pthread_mutex_unlock(&rs->lock);
    if (write(rs->notify_fd, &one, sizeof(one)) != sizeof(one))
        XTK_PERROR(rs->ctx, "cannot wake the event loop");
    return NULL;
}

static void joined(evutil_socket_t fd, short what, void *arg);

static void on_done(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_restore *rs = arg;
    uint64_t v;
    int lost = 0, lost_err = 0, done;

    if (read(rs->notify_fd, &v, sizeof(v)) != sizeof(v))
        return;
    pthread_mutex_lock(&rs->lock);
    if (rs->lost_pending && rs->decision == DECIDE_NONE) {
        lost = 1;
        lost_err = rs->lost_err;
    }
    rs->lost_pending = 0;
    done = rs->thread_done;
    pthread_mutex_unlock(&rs->lock);
    if (lost && rs->opt.lost)
        rs->opt.lost(rs, lost_err, rs->opt.lost_arg);
    if (!done)
        return;
    event_del(rs->ev_done);
    joined(-1, 0, rs);
}

/* The reader has said it is done: joined once it has returned too, which
 * on a loaded host can take a scheduler tick; the loop does not wait for
 * that (tried again every 0.1 ms), then done. */
static void joined(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_restore *rs = arg;
    struct timeval tv = {0, 100};

    (void)fd, (void)what;
    if (pthread_tryjoin_np(rs->thread, NULL) != 0) {
        if (!rs->ev_join)
            rs->ev_join = evtimer_new(xtk_ctx_event_base(rs->ctx), joined, rs);
        if (rs->ev_join && evtimer_add(rs->ev_join, &tv) == 0)
            return;
        pthread_join(rs->thread, NULL); /* no timer: here */
    }
    rs->joined = 1;
    rs->finished = 1;
    if (rs->done)
        rs->done(rs, rs->err, rs->done_arg);
}

/* ---- the API ------------------------------------------------------- */

struct xtk_restore *xtk_restore_new(struct xtk_ctx *ctx, struct xtk_stream *in,
                                    const struct xtk_restore_options *opts)
{
    struct xtk_restore *rs;

    if (!ctx || !in)
        return xtk__fail_null(EINVAL);
    if (opts) {
        if ((opts->flags &
             ~(XTK_RESTORE_REPLY | XTK_RESTORE_FAILOVER | XTK_RESTORE_LAZY)) ||
            ((opts->flags & XTK_RESTORE_LAZY) &&
             (opts->flags & XTK_RESTORE_REPLY)) ||
            (opts->peer_io &&
             (!(opts->flags & XTK_RESTORE_REPLY) || !opts->peer_io->send)) ||
            ((opts->flags & XTK_RESTORE_FAILOVER) &&
             !(opts->flags & XTK_RESTORE_REPLY)) ||
            opts->reserved0 || opts->reserved1 ||
            opts->peer_timeout_ms > INT_MAX ||
            (opts->final_rcvbuf && !(opts->flags & XTK_RESTORE_REPLY)) ||
            opts->final_rcvbuf > INT_MAX ||
            ((opts->flags & XTK_RESTORE_REPLY) && opts->peer_fd < 0) ||
            (opts->name &&
             (!*opts->name || strlen(opts->name) > XTK_DOMAIN_NAME_MAX)))
            return xtk__fail_null(EINVAL);
    }
    rs = calloc(1, sizeof(*rs));
    if (!rs)
        return NULL;
    rs->ctx = ctx;
    rs->in = in;
    rs->uffd = -1;
    if (opts)
        rs->opt = *opts;
    if (rs->opt.flags & XTK_RESTORE_LAZY) {
        struct xtk_stream_counters c;
        off_t at;

        rs->lazy_file = xtk__stream_file_fd(in);
        if (rs->lazy_file < 0 || (at = lseek(rs->lazy_file, 0, SEEK_CUR)) < 0 ||
            xtk_stream_get_counters(in, &c) < 0 || (uint64_t)at < c.raw_bytes) {
            XTK_ERROR(ctx, "a lazy restore reads the guest's memory from a "
                           "file as the guest needs it: this stream is not "
                           "a plain file (a pipe, a socket, or compressed)");
            free(rs);
            return xtk__fail_null(EINVAL);
        }
        rs->file_base = (uint64_t)at - c.raw_bytes;
    }
    rs->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rs->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    rs->send_lock_ok = pthread_mutex_init(&rs->send_lock, NULL) == 0;
    if (pthread_mutex_init(&rs->lock, NULL) == 0) {
        if (pthread_cond_init(&rs->cond, NULL) == 0)
            rs->lock_ok = 1;
        else
            pthread_mutex_destroy(&rs->lock);
    }
    rs->st = xtk_stats_new("restore");
    if (rs->notify_fd >= 0)
        rs->ev_done = event_new(xtk_ctx_event_base(ctx), rs->notify_fd,
                                EV_READ | EV_PERSIST, on_done, rs);
    if (!rs->st || !rs->ev_done || !rs->lock_ok || !rs->send_lock_ok ||
        rs->cancel_fd < 0) {
        int e = errno ? errno : ENOMEM;
        xtk_restore_free(rs);
        return xtk__fail_null(e);
    }
    return rs;
}

int xtk_restore_start(struct xtk_restore *rs, xtk_restore_done_fn *done,
                      void *arg)
{
    int e;

    if (!rs)
        return xtk__fail(EINVAL);
    if (rs->started)
        return xtk__fail(EBUSY);
    rs->done = done;
    rs->done_arg = arg;
    event_add(rs->ev_done, NULL);
    xtk__stream_set_cancel(rs->in, rs->cancel_fd);
    e = pthread_create(&rs->thread, NULL, restore_main, rs);
    if (e) {
        event_del(rs->ev_done);
        xtk__stream_set_cancel(rs->in, -1);
        return xtk__fail(e);
    }
    rs->started = 1;
    return 0;
}

int xtk_restore_run(struct xtk_restore *rs)
{
    if (!rs)
        return xtk__fail(EINVAL);
    if (xtk_restore_start(rs, NULL, NULL) < 0)
        return -1;
    if (xtk__loop_until(rs->ctx, &rs->finished) < 0)
        return -1;
    return rs->err ? xtk__fail(rs->err) : 0;
}

uint32_t xtk_restore_domid(const struct xtk_restore *rs)
{
    return rs && rs->finished && !rs->err ? rs->domid : 0;
}

struct xtk_stats *xtk_restore_stats(struct xtk_restore *rs)
{
    return rs ? rs->st : xtk__fail_null(EINVAL);
}

/* The caller's decision for a running restore (promote or stop): the
 * reader is told, and, reading from its source's socket, cut off. */
static int decide(struct xtk_restore *rs, enum decision d)
{
    uint64_t one = 1;

    if (!rs || !rs->started || rs->finished)
        return xtk__fail(EINVAL);
    pthread_mutex_lock(&rs->lock);
    if (rs->decision == DECIDE_NONE)
        rs->decision = d;
    pthread_cond_broadcast(&rs->cond);
    pthread_mutex_unlock(&rs->lock);
    if (rs->opt.flags & XTK_RESTORE_REPLY)
        shutdown(rs->opt.peer_fd, d == DECIDE_STOP ? SHUT_RDWR : SHUT_RD);
    /* A reader waiting on a pipe or a quiet socket stops too. */
    if (d == DECIDE_STOP && write(rs->cancel_fd, &one, sizeof(one)) < 0)
        XTK_PERROR(rs->ctx, "cannot stop the restore's reader");
    return 0;
}

int xtk_restore_promote(struct xtk_restore *rs)
{
    if (!rs || !(rs->opt.flags & XTK_RESTORE_REPLY))
        return xtk__fail(EINVAL);
    return decide(rs, DECIDE_PROMOTE);
}

int xtk_restore_cancel(struct xtk_restore *rs)
{
    return decide(rs, DECIDE_STOP);
}

void xtk_restore_free(struct xtk_restore *rs)
{
    if (!rs)
        return;
    if (rs->started && !rs->joined) {
        /* A backup holding its epoch stands down. */
        decide(rs, DECIDE_STOP);
        pthread_join(rs->thread, NULL); /* it ends with its stream */
    }
    if (rs->ev_done)
        event_free(rs->ev_done);
    if (rs->ev_join)
        event_free(rs->ev_join);
    if (rs->notify_fd >= 0)
        close(rs->notify_fd);
    if (rs->started)
        xtk__stream_set_cancel(rs->in, -1); /* the caller's stream again */
    if (rs->cancel_fd >= 0)
        close(rs->cancel_fd);
    epoch_free(&rs->cur);
    free(rs->statics);
    free(rs->config);
    free(rs->state);
    free(rs->written);
    xtk_stats_free(rs->st);
    if (rs->lock_ok) {
        pthread_cond_destroy(&rs->cond);
        pthread_mutex_destroy(&rs->lock);
    }
    if (rs->send_lock_ok)
        pthread_mutex_destroy(&rs->send_lock);
    free(rs);
}
