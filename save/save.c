/*
 * save.c - the save engine: the rounds, the suspend and the final round,
 * checkpoint epochs, and the end of a migration, as a state machine on the
 * context's event loop (xtk/save.h, man/xtk_save.3).
 *
 *   start    headers, the domain's shape, STATIC_DATA_END; the dirty log
 *            on (live or checkpointing); round 0 (live), else suspend
 *   LIVE     a pre-copy round runs in the sender threads; when it ends,
 *            the dirty log is read and the policy decides: another round
 *            of the dirty frames, or suspend
 *   SUSPEND  the request is out; the backend's suspend fd (an event
 *            channel, never a store watch) is watched, with a timeout
 *   FINAL    suspended: the final dirty log read, the state
 *            (HVM_CONTEXT), the final round, then END, or CHECKPOINT and
 *            the guest resumed until the next epoch (INTERVAL)
 *   PEER     migrating: waits for the destination's reply, then destroys
 *            the source
 *
 * Checkpointing to a backup (a peer), the backup acknowledges each epoch
 * and answers the heartbeats sent between epochs, on the back channel; a
 * backup that owes an answer for the peer timeout is lost, and the domain
 * runs on here, unprotected (backup_lost).
 *
 * Every step is stamped in the report.  Any failure resumes the domain
 * (finish()); so does the backend's suspend guard if this process dies.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_min_rtt */
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lazy-index.h"
#include "save-internal.h"
#include "sr-format.h"
#include "stream-internal.h"

#define XTK_LOG_CONTEXT "save"

#define DEFAULT_DOWNTIME_MS 300
#define DEFAULT_ROUNDS 30
#define DEFAULT_SENDERS 2
#define MAX_SENDERS 64
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_HEARTBEAT_MS 200
/* An epoch the guest resumes after is staged in memory up to this much
 * (beyond it, the rest is sent while the guest waits). */
#define STAGE_LIMIT (512ull << 20)
#define DEFAULT_PEER_TIMEOUT_MS 5000
#define FIXED_ESTIMATE_NS 1000000ull /* suspend + state + resume, estimated */
#define PROGRESS_MS 200
#define HEARTBEAT_ROOM 4096u /* what a heartbeat needs in the output */
/* The output takes the END (and what the stream buffers), or a final
 * round's state, without waiting: a file, or a socket or pipe with this
 * much room. */
#define END_ROOM (64u << 10)
#define WATCH_MS 100    /* how often a suspending domain is checked on */
#define PREPARE_MS 1000 /* a post-copy's stop waits this long at most */
#define POSTCOPY_FLAGS (XTK_SAVE_POSTCOPY | XTK_SAVE_POSTCOPY_AUTO)
/* A push slower than this would leave the destination without a record
 * for longer than its peer timeout allows (256 KiB a record). */
#define MIN_POSTCOPY_BANDWIDTH (1ull << 20)

enum phase {
    PH_NEW,
    PH_SETUP,    /* the set-up runs on its own thread (setup_main) */
    PH_LIVE,     /* a pre-copy round is running */
    PH_SUSPEND,  /* waiting for the guest to suspend */
    PH_FINAL,    /* the final round is running */
    PH_INTERVAL, /* checkpointing: the guest runs until the next epoch */
    PH_PEER,     /* waiting for the destination's reply */
    PH_DRAIN,    /* after a pre-copy round: the link's backlog drains */
    PH_DIRTY,    /* after a pre-copy round: its dirty-log read is out */
    PH_SEND,     /* the guest runs again; its staged epoch goes out */
    PH_PREPARE,  /* post-copy: the destination takes out what will come */
    PH_POSTCOPY, /* post-copy: the rest of the memory goes, asked first */
    PH_DONE,
};

/* The vCPUs the save's statistics follow (xtk_domain_vcpus()). */
#define VCPU_STATS_MAX 64

struct xtk_save {
    struct xtk_ctx *ctx;
    struct xtk_domain *dom;
    /* The domain's vCPUs as the host saw them when the save started
     * (vcpu_stats_begin); nr_vc 0: unknown. */
    struct xtk_vcpu_stats vc0[VCPU_STATS_MAX];
    unsigned int nr_vc;
    /* ...and as it ends (read on the end's thread: a round trip to the
     * backend, off the caller's loop). */
    struct xtk_vcpu_stats vc1[VCPU_STATS_MAX];
    unsigned int nr_vc1;
    int vc1_read;
    struct xtk_stream *out;
    struct xtk_save_options opt;
    struct xtk_stats *st;
    xtk_save_done_fn *done;
    void *done_arg;
    enum phase phase;
    int started, finished, err, cancel;

    struct xtk__sr_config cfg;
    struct xtk__layout layout; /* the backend's, if native */
    int native;                /* XTK__LAYOUT_NATIVE */
    uint64_t end;              /* the frame space: 0..end-1 */
    uint64_t *present;         /* its frames that exist; NULL: all */
    uint64_t nr_present;
    int frames_late;    /* read once the guest is stopped */
    const uint8_t *ram; /* NULL: the senders map batch by batch */
    uint64_t words;     /* in each bitmap */
    uint64_t *bitmap;   /* the dirty log */
    uint64_t *pending;  /* dirty at stop-and-copy, not sent yet */
    uint64_t *populated;
    uint64_t *pfns; /* the round's frames */
    struct xtk__senders *sd;
    int notify_fd, suspend_fd;
    struct event *ev_notify, *ev_suspend, *ev_timer, *ev_peer, *ev_progress;
    struct event *ev_watch;
    /* A suspend request put off while the backend says it would wait
     * (suspend_busy): tried again on ev_busy, since busy_since. */
    struct event *ev_busy;
    uint64_t busy_since;

    unsigned int round, epoch;
    int logdirty, suspend_ready, suspend_asked, stopped;
    uint64_t round_dirty; /* what the log said for the running round */
    uint64_t round_start, round_end, round_bytes0, round_total;
    uint64_t t_request, fixed_ns, sync_ns;
    uint64_t t_slot; /* checkpointing: the slot the next epoch's stop is in */
    struct xtk__round_result drain_res; /* the round whose link drains */
    int progress_shown;
    struct xtk__policy_state ps;
    struct xtk__sr_reply reply;
    size_t reply_got;

    /* The back channel of a checkpointed stream to a backup: a message
     * coming in, the heartbeats sent and answered, the epochs acknowledged,
     * since when the backup owes an answer (0: it owes none). */
    union {
        struct xtk__sr_msg m;
        struct xtk__sr_reply r;
    } in;
    size_t in_got;
    struct event *ev_heartbeat;
    uint32_t hb_seq, hb_answered, acked;
    int superseded; /* the backup runs the domain: this copy stays paused */
    /* The guest's output is held until the backup has the epoch it came
     * from (output_hold): the last epoch a stop closed, the first one
     * not yet released. */
    int holding, out_based;
    uint32_t out_base; /* the domain's output epoch of epoch n: n + base */
    uint32_t out_closed, out_released;
    /* A stop waits for an acknowledgement: the backend holds only
     * dom->output_depth closed epochs unreleased (since t_deferred). */
    int stop_deferred;
    uint64_t t_deferred;
    int release_err; /* such a backend's release failed: the save fails */
    struct event *ev_relfail; /* ... from the loop, by this */
    int backup_gone;      /* backup_lost: this copy runs on, its output too */
    uint64_t reply_early; /* a reply read before the END's send ended */

    /* Staging: the epoch the guest resumes after is kept in memory while
     * it is stopped, and written out by the drain thread once it runs. */
    int staging;
    int drain_fd, drain_on, drain_err, drain_end; /* drain_end: END staged */
    /* The stream's tail on the drain thread too (tail_work): the END when
     * the output could not take it at once (tail_end), the lazy index
     * and the caller's commit; drain_staged: a staged epoch or END is
     * drained first; drain_logged: drain_err was told already.  When the
     * END went out, and when the stream was committed. */
    int drain_staged, tail_end, drain_logged;
    /* A native state taken on the loop that the drain thread writes
     * (before the END): the output had no room for it. */
    void *tail_state;
    size_t tail_state_len;
    uint64_t tail_state_t0;
    int stage_for_room; /* the last round staged: its output had no room */
    uint64_t first_n;   /* a live save's first round's pages (setup_senders) */
    uint64_t t_end_sent, t_committed;
    pthread_t drain_thread;
    struct event *ev_drain;
    /* The job contract: done is called only after xtk_save_start has
     * returned (a failure inside it is reported from the loop), and the
     * caller's peer_fd gets its file flags back at the end. */
    struct event *ev_done;
    int in_start;
    /* The domain's side of the end (end_domain: the output's hold ended,
     * the source destroyed or resumed, the dirty log and the suspend
     * channel undone; a 1 GiB KVM guest takes ~30 ms to go) runs on a
     * thread of its own: the loop goes on.  destroying: the source was
     * to go (destroy_rc), else resumed if resume_tried (resume_rc). */
    pthread_t end_thread;
    int end_on, end_fd, fin_err;
    int destroying, destroy_rc, destroy_errno;
    int resume_tried, resume_rc, resume_errno;
    uint64_t destroy_ns;
    struct event *ev_end;
    int peer_fl; /* peer_fd's flags before the save, or -1 */
    uint64_t t_drain;
    uint64_t owed_since, t_epoch_sent, hb_progress;
    uint64_t ack_due_since; /* the oldest epoch not acknowledged, sent */
    uint64_t last_pause;    /* the last resume's: suspend request to running */
    /* Requests sent ahead to the backend (the XTK__ASYNC_* kinds in
     * async), so that the loop never waits on the hypervisor side:
     * ev_async watches the backend's fd while any is out.  A checkpoint's
     * resume (on_resumed carries the epoch on with what next_epoch had);
     * an acknowledged epoch's output release (release_upto; a later
     * acknowledgement meanwhile leaves release_next); a pre-copy round's
     * dirty-log read (live_in, live_t0: what after_live_round had). */
    struct event *ev_async;
    unsigned int async;
    int resume_staged;
    struct xtk_stats_epoch resume_row;
    uint64_t resume_now;
    uint32_t release_upto, release_next;
    uint64_t t_ack; /* the guest's acknowledgement, its stop sent ahead */
    /* The end's release, made on the end's thread (end_domain): its
     * outcome, for ended() to count. */
    int end_rel, end_r, end_errno;
    uint32_t end_upto;
    struct xtk__output end_o;
    /* What was still out when the save ended, collected on the end's
     * thread (async_settle) for ended() to tell: a checkpoint's resume, and
     * up to two releases (the one out, then a later acknowledgement's). */
    int settle_resume, settle_resume_rc, settle_resume_errno;
    uint64_t settle_resume_ns;
    unsigned int settle_nrel;
    struct {
        int r, err;
        uint32_t upto;
        struct xtk__output o;
    } settle_rel[2];
    struct xtk__policy_in live_in;
    uint64_t live_t0;
    char fault_phase[16];     /* XTK_FAULT_SAVE_STOP's (fault_point) */
    unsigned int fault_epoch; /* 0: none */

    /* Post-copy: decided (the final round carries only the frames below
     * XTK__POSTCOPY_EAGER), switched (the record is out: this copy never
     * runs again), the destination's guest running (its message came), the
     * frames still to send and their sender, which reports on pc_fd. */
    int pc_decided, pc_switched, pc_running;
    uint64_t *pc_todo;
    uint64_t pc_frames, pc_requests;
    struct xtk__pc *pc;
    int pc_fd;
    struct event *ev_pc;
    uint64_t t_switch;

    /* XTK__LAYOUT_DELEGATE: the backend's own save writes the stream, on
     * the delegate thread */
    int delegate;
    pthread_t dthread;
    int dthread_on, delegate_err, dfd, fd_flags;

    /* The set-up (the domain's shape, the suspend channel, the headers,
     * the dirty log, the frame space, the output hold: round trips to
     * the backend, writes that may wait for the peer) runs on a thread
     * of its own; ev_setup brings its outcome (setup_err) to the loop. */
    pthread_t setup_thread;
    int setup_on, setup_fd, setup_err;
    struct event *ev_setup;

    /* A thread that said it is done but has not returned yet: joined on
     * ev_join (join_then), then join_next goes on. */
    struct event *ev_join;
    pthread_t *join_thread;
    int *join_on;
    void (*join_next)(struct xtk_save *sv);
};

static void finish(struct xtk_save *sv, int err);
static void arm_watch(struct xtk_save *sv);
static void request_suspend(struct xtk_save *sv);
static int frame_space(struct xtk_save *sv);
static void start_round(struct xtk_save *sv, uint64_t count,
                        const uint64_t *populated);
static void round_label(const struct xtk_save *sv, char *buf, size_t size);
static void postcopy_split(struct xtk_save *sv);
static uint64_t link_rtt_ns(struct xtk_save *sv);
static void postcopy_switch(struct xtk_save *sv);
static void postcopy_prepare(struct xtk_save *sv);

/* ---- small helpers ---------------------------------------------------- */

/* What the host knows of the vCPUs as the save starts (issue 15). */
static void vcpu_stats_begin(struct xtk_save *sv)
{
    unsigned int n;

    sv->nr_vc = 0;
    if (xtk_domain_vcpus(sv->dom, sv->vc0, VCPU_STATS_MAX, &n) == 0)
        sv->nr_vc = n < VCPU_STATS_MAX ? n : VCPU_STATS_MAX;
}

/* What the host knows of the vCPUs as the save ends: read before the
 * domain goes (any thread; the loop's counts it). */
static void vcpu_stats_read(struct xtk_save *sv)
{
    sv->vc1_read =
        sv->nr_vc &&
        xtk_domain_vcpus(sv->dom, sv->vc1, VCPU_STATS_MAX, &sv->nr_vc1) == 0;
}

/*
 * What it saw during the save, as counters: per vCPU the time its thread
 * waited for a CPU (the guest's steal time) and the directed yields it
 * made, and the preemptions of them all; where the backend knows them.
 */
static void vcpu_stats_count(struct xtk_save *sv)
{
    const struct xtk_vcpu_stats *now = sv->vc1;
    uint64_t preempt = 0;
    unsigned int n = sv->nr_vc1;
    char name[48];

    if (!sv->vc1_read)
        return;
    sv->vc1_read = 0;
    for (unsigned int i = 0; i < sv->nr_vc && i < n; i++) {
        const struct xtk_vcpu_stats *a = &sv->vc0[i], *b = &now[i];

        if ((b->flags & XTK_VCPU_WAIT) && b->wait_ns >= a->wait_ns) {
            snprintf(name, sizeof(name), "vcpu %u steal us", i);
            xtk_stats_count(sv->st, name, (b->wait_ns - a->wait_ns) / 1000);
            if (b->preemptions >= a->preemptions)
                preempt += b->preemptions - a->preemptions;
        }
        if ((b->flags & XTK_VCPU_YIELDS) &&
            b->yields_successful >= a->yields_successful) {
            snprintf(name, sizeof(name), "vcpu %u directed yields", i);
            xtk_stats_count(sv->st, name,
                            b->yields_successful - a->yields_successful);
        }
    }
    if (now[0].flags & XTK_VCPU_WAIT)
        xtk_stats_count(sv->st, "vcpu preemptions", preempt);
}

static void stamp(struct xtk_save *sv, const char *phase)
{
    xtk_stats_phase(sv->st, phase); /* a full report is not a failure */
}

static void hist(struct xtk_save *sv, const char *name, uint64_t v)
{
    struct xtk_hist *h = xtk_stats_hist(sv->st, name, "ns");

    if (h)
        xtk_hist_record(h, v);
}

/*
 * Output held for a backup (output_hold): epoch n's output (the guest's
 * console and packets from the last stop to this one) goes out once the
 * backup has acknowledged checkpoint n, never before: a client outside
 * never sees output of a state a failover would not resume.
 */
static int stop_waits(const struct xtk_save *sv);

static void release_done(struct xtk_save *sv, uint32_t upto, int r,
                         const struct xtk__output *o);
static int async_watch(struct xtk_save *sv, int fd, unsigned int kind);
static void async_done(struct xtk_save *sv, unsigned int kind);

/* Epoch upto's output goes (absolute: out_base counted).  Sent ahead where
 * the backend can (the loop goes on; on_async collects it), unless now. */
/* What a release up to upto can release: an epoch, or 0 (nothing). */
static uint32_t release_bound(const struct xtk_save *sv, uint32_t upto)
{
    if (!sv->holding || upto > sv->out_closed)
        upto = sv->holding ? sv->out_closed : 0;
    return !upto || upto < sv->out_released ? 0 : upto;
}

static void release_abs(struct xtk_save *sv, uint32_t upto, int now)
{
    const struct xtk__backend_ops *ops = sv->dom->ops;
    struct xtk__output o = {0};
    int r, fd;

    upto = release_bound(sv, upto);
    if (!upto)
        return;
    if (sv->async & XTK__ASYNC_RELEASE) {
        /* One at a time: this one goes when the one out is answered. */
        if (upto > sv->release_next)
            sv->release_next = upto;
        return;
    }
    if (!now && ops->output_release_start && ops->async_ready) {
        r = ops->output_release_start(sv->dom, upto, &fd);
        if (r == 0) {
            sv->release_upto = upto;
            if (async_watch(sv, fd, XTK__ASYNC_RELEASE) == 0)
                return;
            r = ops->output_release_finish(sv->dom, &o);
        }
    } else {
        r = ops->output_release(sv->dom, upto, &o);
    }
    release_done(sv, upto, r, &o);
}

static void output_release(struct xtk_save *sv, uint32_t upto)
{
    release_abs(sv, upto + sv->out_base, 0);
}

/* The release sent ahead is answered (or must be, now). */
static void release_collect(struct xtk_save *sv)
{
    struct xtk__output o = {0};
    uint32_t next = sv->release_next;
    int r;

    async_done(sv, XTK__ASYNC_RELEASE);
    r = sv->dom->ops->output_release_finish(sv->dom, &o);
    sv->release_next = 0;
    release_done(sv, sv->release_upto, r, &o);
    if (r == 0 && next > sv->release_upto)
        release_abs(sv, next, 0);
}

/* A release's outcome (r: 0, or -1 with errno). */
static void release_done(struct xtk_save *sv, uint32_t upto, int r,
                         const struct xtk__output *op)
{
    struct xtk__output o = *op;

    if (r < 0) {
        XTK_PERROR(sv->ctx, "domain %u: cannot release its output",
                   sv->dom->domid);
        if (sv->dom->output_depth) {
            /* No later epoch could be closed (the next stop would wait
             * for good): the save fails, from the loop (not from inside
             * the reading of the backup's messages), the output held. */
            sv->release_err = errno ? errno : EIO;
            event_active(sv->ev_relfail, EV_TIMEOUT, 0);
        }
        return;
    }
    sv->out_released = upto + 1;
    if (sv->stop_deferred && !stop_waits(sv))
        /* The stop it held back goes now (from the loop, not from
         * inside the reading of the backup's messages). */
        event_active(sv->ev_timer, EV_TIMEOUT, 0);
    if (o.items) {
        hist(sv, "output held", o.held_max_ns);
        /* A checkpoint's row (not the END's: its stop is the move's). */
        if (upto > sv->out_base && upto - sv->out_base <= sv->epoch)
            xtk_stats_epoch(
                sv->st, &(struct xtk_stats_epoch){.epoch = upto - sv->out_base,
                                                  .held_ns = o.held_max_ns});
        xtk_stats_count(sv->st, "output released", o.items);
        xtk_stats_count(sv->st, "output bytes released", o.bytes);
    }
}

/*
 * The save ends while holding: err 0 (the destination runs the domain
 * from the last epoch, whose output was just released), the backup lost
 * (this copy runs on, unprotected: what is held goes out, as Remus
 * releases a primary's buffer when its backup dies), superseded (the
 * backup runs the domain: what is held is dropped).  Any other failure
 * leaves the output held: the backup may yet be promoted from its last
 * checkpoint, so only a toolstack that knows which copy runs on may let
 * it go (`xtk output DOMAIN release|drop`, or destroying the domain); the
 * hold outlives the handle, and a new save takes it over.
 */
static void output_end(struct xtk_save *sv, int err)
{
    int how = !err || sv->backup_gone ? XTK__OUTPUT_SEND
              : sv->superseded        ? XTK__OUTPUT_DROP
                                      : -1;

    if (!sv->holding)
        return;
    if (how < 0) {
        XTK_WARN(sv->ctx,
                 "domain %u: its output stays held (the backup may take "
                 "over from checkpoint %u): once it is known which copy "
                 "runs on, `xtk output %u release` (this one) or "
                 "`xtk output %u drop`",
                 sv->dom->domid, sv->acked, sv->dom->domid, sv->dom->domid);
        return;
    }
    sv->holding = 0;
    if (sv->dom->ops->output_hold(sv->dom, how) < 0)
        XTK_PERROR(sv->ctx, "domain %u: cannot end the holding of its output",
                   sv->dom->domid);
    else if (err && sv->out_closed + 1 > sv->out_released)
        XTK_WARN(sv->ctx,
                 "domain %u: the output of %u epoch(s) no backup "
                 "acknowledged is %s",
                 sv->dom->domid, sv->out_closed + 1 - sv->out_released,
                 how == XTK__OUTPUT_SEND
                     ? "sent: the domain runs on here, its output unheld"
                     : "dropped: the backup runs the domain");
}

/*
 * A test hook: XTK_FAULT_SAVE_STOP=PHASE:N stops this process (SIGSTOP)
 * at PHASE of epoch N, for a test to kill the primary "host" (this
 * process and the domain) exactly there: interval (before the suspend),
 * stopped (the epoch copied, the domain not resumed), sending (resumed,
 * the epoch not sent), sent (not acknowledged), acked (its output not
 * released).  See xtk_save(3), "TESTING".
 */
static void fault_point(const struct xtk_save *sv, const char *phase,
                        unsigned int epoch)
{
    if (sv->fault_epoch == epoch && !strcmp(sv->fault_phase, phase))
        raise(SIGSTOP);
}

/* XTK_FAULT_SAVE_STOP, read once (not on the stop's path). */
static void fault_read(struct xtk_save *sv)
{
    const char *v = getenv("XTK_FAULT_SAVE_STOP");
    const char *colon = v ? strchr(v, ':') : NULL;

    if (!colon || (size_t)(colon - v) >= sizeof(sv->fault_phase))
        return;
    memcpy(sv->fault_phase, v, (size_t)(colon - v));
    sv->fault_phase[colon - v] = 0;
    sv->fault_epoch = (unsigned int)strtoul(colon + 1, NULL, 10);
}

static uint64_t stream_bytes(struct xtk_save *sv)
{
    struct xtk_stream_counters c;

    return xtk_stream_get_counters(sv->out, &c) == 0 ? c.bytes : 0;
}

static void backup_lost(struct xtk_save *sv, int err, const char *why);
static void end_out(struct xtk_save *sv);
static void reply_in(struct xtk_save *sv, uint64_t now);
static int stage_wanted(const struct xtk_save *sv);
static void on_drain_done(evutil_socket_t fd, short what, void *arg);

/* Whether err, in a checkpointed stream to a backup, means the backup is
 * gone or stuck (the stream cannot be written to it). */
static int backup_gone(struct xtk_save *sv, int err)
{
    return sv->ev_heartbeat && sv->epoch > 0 && sv->phase != PH_PEER &&
           xtk_stream_error(sv->out) &&
           (err == ETIMEDOUT || err == EPIPE || err == ECONNRESET);
}

/* Fails the save with errno's value (or EIO), having logged why. */
static void fail_errno(struct xtk_save *sv)
{
    int err = errno ? errno : EIO;

    if (backup_gone(sv, err)) {
        backup_lost(sv, err, strerror(err));
        return;
    }
    finish(sv, err);
}

static void ev_stop(struct event *ev)
{
    if (ev)
        event_del(ev);
}

static void ev_free(struct event *ev)
{
    if (ev)
        event_free(ev);
}

/* A thread of the save's says it is done: its eventfd, which the loop
 * watches (the last thing the thread does with sv). */
static void wake_loop(struct xtk_save *sv, int fd)
{
    uint64_t one = 1;

    if (write(fd, &one, sizeof(one)) != sizeof(one))
        XTK_PERROR(sv->ctx, "cannot wake the event loop");
}

/*
 * A thread of the save's has said it is done (its eventfd): it is joined
 * once it has returned too, which on a loaded host can take a scheduler
 * tick (a futex wait of 1-2 ms in the loop under loop-bench's --trace).
 * The loop does not wait for that: tried again every 0.1 ms, then next
 * goes on.
 */
static void on_join(evutil_socket_t fd, short what, void *arg);

static void join_then(struct xtk_save *sv, pthread_t *t, int *on,
                      void (*next)(struct xtk_save *sv))
{
    struct timeval tv = {0, 100};

    if (*on && pthread_tryjoin_np(*t, NULL) != 0) {
        if (!sv->ev_join)
            sv->ev_join = evtimer_new(xtk_ctx_event_base(sv->ctx), on_join, sv);
        if (sv->ev_join && evtimer_add(sv->ev_join, &tv) == 0) {
            sv->join_thread = t;
            sv->join_on = on;
            sv->join_next = next;
            return;
        }
        pthread_join(*t, NULL); /* no timer: here */
    }
    *on = 0;
    sv->join_next = NULL;
    next(sv);
}

static void on_join(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;

    (void)fd, (void)what;
    if (sv->join_next)
        join_then(sv, sv->join_thread, sv->join_on, sv->join_next);
}

static void arm_timer(struct xtk_save *sv, uint32_t ms)
{
    struct timeval tv = {ms / 1000, (long)(ms % 1000) * 1000};

    evtimer_add(sv->ev_timer, &tv);
}

/* The frames set in sv->bitmap, into sv->pfns; returns how many. */
static uint64_t bitmap_to_pfns(struct xtk_save *sv)
{
    uint64_t n = 0;

    for (uint64_t w = 0; w < sv->words; w++) {
        uint64_t bits = sv->bitmap[w];

        while (bits) {
            uint64_t pfn = w * 64 + (uint64_t)__builtin_ctzll(bits);

            bits &= bits - 1;
            /* Not filtered by sv->present: a frame the guest added
             * since is dirty; one it removed is ENOENT to map_batch. */
            if (pfn < sv->end)
                sv->pfns[n++] = pfn;
        }
    }
    return n;
}

/*
 * Every frame that exists, into sv->pfns; returns how many.  Where the
 * frame space is sparse, that is what frames said plus what the dirty log
 * holds (a save that is not live reads it once stopped: the frames the
 * guest added after frames looked).
 */
static uint64_t all_pfns(struct xtk_save *sv)
{
    uint64_t n = 0;

    for (uint64_t pfn = 0; pfn < sv->end; pfn++)
        if (!sv->present ||
            (((sv->present[pfn / 64] | sv->bitmap[pfn / 64]) >> (pfn % 64)) &
             1))
            sv->pfns[n++] = pfn;
    return n;
}

/* Writes records framed as get_state's into the stream, unchanged. */
static int write_records(struct xtk_save *sv, const void *buf, size_t len)
{
    size_t off = 0;
    uint32_t type, length;
    const void *body;
    int r;

    while ((r = xtk__rec_next(buf, len, &off, &type, &body, &length)) > 0)
        if (xtk_stream_write_record(sv->out, type, body, length) < 0)
            return -1;
    if (r < 0)
        XTK_ERROR(sv->ctx, "domain %u: the %s backend gave malformed records",
                  sv->dom->domid, sv->dom->ops->name);
    return r;
}

/* ---- the final round -------------------------------------------------- */

/* The backend's state records (0, or -1 having logged why). */
static int take_state(struct xtk_save *sv, void **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    if (sv->dom->ops->get_state(sv->dom, buf, len) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: cannot get its state", sv->dom->domid);
        return -1;
    }
    return 0;
}

/* Writes the state (buf, which it frees): the backend's records, behind
 * xtk's header in xtk's layout. */
static int put_state(struct xtk_save *sv, void *buf, size_t len, uint64_t t0)
{
    struct xtk__sr_state_hdr h;
    struct iovec iov[2];
    int r;

    if (sv->native) {
        r = write_records(sv, buf, len);
    } else {
        xtk__sr_state_header(&h, sv->dom->ops->name, &sv->cfg, len);
        iov[0] = (struct iovec){&h, sizeof(h)};
        iov[1] = (struct iovec){buf, len};
        r = xtk_stream_write_recordv(sv->out, XTK_REC_HVM_CONTEXT, iov, 2);
    }
    free(buf);
    hist(sv, "state", xtk_now_ns() - t0);
    stamp(sv, "state sent");
    return r;
}

static int send_state(struct xtk_save *sv)
{
    uint64_t t0 = xtk_now_ns();
    size_t len;
    void *buf;

    return take_state(sv, &buf, &len) < 0 ? -1 : put_state(sv, buf, len, t0);
}

/*
 * Checkpointing with the output held by a backend that holds only
 * dom->output_depth closed epochs unreleased (Xen's plug: one): the stop
 * that would close one more must wait for the backup's acknowledgement
 * (1), as xl remus waits for its commit before the next checkpoint.
 */
static int stop_waits(const struct xtk_save *sv)
{
    unsigned int depth = sv->dom->output_depth;

    return sv->holding && depth && sv->out_based &&
           sv->out_closed + 1 - sv->out_released >= depth;
}

/* The next epoch's stop (or the END's): now, or once the backup has
 * acknowledged enough for the backend to close one more epoch. */
static void epoch_stop(struct xtk_save *sv)
{
    if (sv->release_err)
        return; /* on_release_failed ends the save */
    if (stop_waits(sv)) {
        if (!sv->stop_deferred) {
            sv->stop_deferred = 1;
            sv->t_deferred = xtk_now_ns();
            xtk_stats_count(sv->st, "stops waiting for an acknowledgement", 1);
        }
        return;
    }
    if (sv->stop_deferred) {
        sv->stop_deferred = 0;
        hist(sv, "stop waited for acknowledgement",
             xtk_now_ns() - sv->t_deferred);
    }
    request_suspend(sv);
}

/* Asks the guest to suspend; the suspend fd or the timer answers. */
static void request_suspend(struct xtk_save *sv)
{
    uint64_t now = xtk_now_ns();

    sv->phase = PH_SUSPEND;
    /* A guest that has not yet left its last suspend (KVM: a checkpoint's
     * resume a moment ago, on a loaded host) would take the request for
     * the resume, and the backend would sleep until it has: tried again
     * from the loop every 0.1 ms instead, up to 1 s (then the backend
     * waits).  The guest runs meanwhile: not in the downtime. */
    if (sv->dom->ops->suspend_busy && sv->dom->ops->suspend_busy(sv->dom)) {
        if (!sv->busy_since)
            sv->busy_since = now;
        if (now - sv->busy_since < 1000000000ull) {
            struct timeval tv = {0, 100};

            evtimer_add(sv->ev_busy, &tv);
            return;
        }
    }
    if (sv->busy_since) {
        hist(sv, "suspend request put off", now - sv->busy_since);
        sv->busy_since = 0;
    }
    sv->t_request = now;
    xtk_stats_phase_at(sv->st, "suspend requested", sv->t_request);
    sv->suspend_asked = 1;
    if (sv->dom->ops->suspend_request(sv->dom) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: cannot request the suspend",
                   sv->dom->domid);
        fail_errno(sv);
        return;
    }
    event_add(sv->ev_suspend, NULL);
    arm_timer(sv, sv->opt.timeout_ms);
    arm_watch(sv);
}

static void on_busy(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;

    (void)fd, (void)what;
    if (sv->phase == PH_SUSPEND)
        request_suspend(sv);
}

static void arm_watch(struct xtk_save *sv)
{
    struct timeval tv = {0, WATCH_MS * 1000};

    evtimer_add(sv->ev_watch, &tv);
}

/*
 * While the guest is asked to suspend, it is checked on now and then (off
 * the critical path): a domain destroyed or crashed meanwhile fails the
 * save at once rather than at the timeout.
 */
/* What the backend said of a domain slow to suspend (r: its info's
 * outcome): it is checked on again in WATCH_MS, unless it is gone or
 * crashed. */
static void watch_check(struct xtk_save *sv, int r,
                        const struct xtk_domain_info *info)
{
    if (sv->phase != PH_SUSPEND)
        return; /* it suspended meanwhile */
    if (r < 0) {
        XTK_PERROR(sv->ctx, "domain %u went away while suspending",
                   sv->dom->domid);
        fail_errno(sv);
        return;
    }
    if (info->flags & XTK_DOMINFO_CRASHED) {
        XTK_ERROR(sv->ctx, "domain %u crashed while suspending",
                  sv->dom->domid);
        finish(sv, EIO);
        return;
    }
    arm_watch(sv);
}

/* The info asked ahead by on_watch is in. */
static void info_collect(struct xtk_save *sv)
{
    struct xtk_domain_info info;
    int r;

    async_done(sv, XTK__ASYNC_INFO);
    r = sv->dom->ops->info_finish(sv->dom, &info);
    watch_check(sv, r, &info);
}

static void on_watch(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;
    const struct xtk__backend_ops *ops = sv->dom->ops;
    struct xtk_domain_info info;
    int afd, r;

    (void)fd, (void)what;
    if (sv->phase != PH_SUSPEND || (sv->async & XTK__ASYNC_INFO))
        return;
    if (ops->info_start && ops->async_ready) {
        /* Asked ahead (KVM: a round trip to xtk-hv): the loop goes on,
         * info_collect takes the answer. */
        r = ops->info_start(sv->dom, &afd);
        if (r == 0) {
            if (async_watch(sv, afd, XTK__ASYNC_INFO) == 0)
                return;
            r = ops->info_finish(sv->dom, &info);
        }
    } else {
        r = ops->info(sv->dom, &info);
    }
    watch_check(sv, r, &info);
}

static void suspended(struct xtk_save *sv, uint64_t ack);

static void on_suspend(evutil_socket_t fd, short what, void *arg)
{
    const struct xtk__backend_ops *ops;
    struct xtk_save *sv = arg;
    uint64_t ack;
    int r, afd;

    (void)fd, (void)what;
    if (sv->phase != PH_SUSPEND || (sv->async & XTK__ASYNC_STOP))
        return;
    ops = sv->dom->ops;
    /* The guest's own notification (event channel or store request): it
     * has taken the request and quiesced; what follows stops its vCPUs
     * (sent ahead where the backend can: on_async goes on). */
    ack = xtk_now_ns();
    if (ops->suspend_check_ahead && ops->async_ready) {
        r = ops->suspend_check_ahead(sv->dom, &afd);
        if (r == 2) {
            sv->t_ack = ack;
            if (async_watch(sv, afd, XTK__ASYNC_STOP) == 0)
                return;
            r = ops->stop_finish(sv->dom) < 0 ? -1 : 1;
        }
    } else {
        r = ops->suspend_check(sv->dom);
    }
    if (r == 0)
        return; /* a stray notification: keep waiting */
    if (r < 0) {
        XTK_PERROR(sv->ctx, "domain %u: suspend failed", sv->dom->domid);
        fail_errno(sv);
        return;
    }
    suspended(sv, ack);
}

/* The stop sent ahead (on_suspend) is answered. */
static void stop_collect(struct xtk_save *sv)
{
    async_done(sv, XTK__ASYNC_STOP);
    if (sv->dom->ops->stop_finish(sv->dom) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: suspend failed", sv->dom->domid);
        fail_errno(sv);
        return;
    }
    if (sv->phase == PH_SUSPEND)
        suspended(sv, sv->t_ack);
}

/* The guest has suspended (acknowledged at ack) and is stopped: the final
 * round. */
static void suspended(struct xtk_save *sv, uint64_t ack)
{
    uint64_t now, n, dirty = 0;

    now = xtk_now_ns();
    if (sv->opt.suspend != XTK_SUSPEND_PAUSE)
        xtk_stats_phase_at(sv->st, "guest acknowledged", ack);
    xtk_stats_phase_at(sv->st, "suspended notified", now);
    hist(sv, "suspend", now - sv->t_request);
    sv->stopped = 1;
    if (sv->holding) {
        /* The stop closed the guest's output epoch: this epoch's (its
         * numbers go on from a hold a dead save left). */
        if (!sv->out_based) {
            sv->out_base = sv->dom->output_epoch - (sv->epoch + 1);
            sv->out_released = sv->out_base + 1;
            sv->out_based = 1;
        }
        sv->out_closed = sv->dom->output_epoch;
    }
    event_del(sv->ev_suspend);
    evtimer_del(sv->ev_timer);
    evtimer_del(sv->ev_watch);

    sv->phase = PH_FINAL;
    /* An epoch to a backup: it owes the acknowledgement from now (and
     * the senders' progress shows it takes what they send). */
    if (sv->ev_heartbeat && sv->epoch > 0 && !sv->owed_since)
        sv->owed_since = now;
    /* The guest runs again after this round: what it sends is copied to
     * memory while the guest is stopped, and sent once it runs.  So is a
     * last round whose output has no room now (a peer or a pipe's reader
     * behind): the drain thread waits for it, not the caller's loop. */
    sv->stage_for_room = !stage_wanted(sv) &&
                         !(sv->opt.flags & POSTCOPY_FLAGS) &&
                         xtk__stream_room(sv->out) < END_ROOM;
    if (stage_wanted(sv) || sv->stage_for_room) {
        if (xtk__stream_stage_begin(sv->out, STAGE_LIMIT) < 0) {
            XTK_PERROR(sv->ctx, "domain %u: cannot stage its epoch",
                       sv->dom->domid);
            fail_errno(sv);
            return;
        }
        sv->staging = 1;
        if (sv->stage_for_room)
            xtk_stats_count(sv->st, "final rounds staged for want of room", 1);
    }
    /* The state goes first, before even the final dirty-log read: a
     * destination can load it while the last pages are on their way (the
     * domain stays stopped meanwhile).  A native stream has it after the
     * pages (after_final_round). */
    if (!sv->native && send_state(sv) < 0) {
        fail_errno(sv);
        return;
    }
    if (sv->logdirty &&
        sv->dom->ops->logdirty_read(sv->dom, XTK__LOGDIRTY_FINAL, sv->bitmap,
                                    sv->words * 64, &dirty) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: final dirty log read failed",
                   sv->dom->domid);
        fail_errno(sv);
        return;
    }
    stamp(sv, "final dirty sync");
    if (sv->epoch == 0 && !(sv->opt.flags & XTK_SAVE_LIVE)) {
        /* Not live: this is round 0, everything, and what was never
         * written is known now that the guest is stopped. */
        if (sv->frames_late) {
            if (frame_space(sv) < 0) {
                fail_errno(sv);
                return;
            }
            stamp(sv, "frame space read");
        }
        if (sv->dom->ops->populated &&
            sv->dom->ops->populated(sv->dom, sv->populated, sv->words * 64) <
                0) {
            XTK_PERROR(sv->ctx, "domain %u: cannot tell its populated memory",
                       sv->dom->domid);
            fail_errno(sv);
            return;
        }
        n = all_pfns(sv);
        sv->round_dirty = n;
        start_round(sv, n, sv->populated);
    } else {
        /* What the last pre-copy read found is still to be sent. */
        for (uint64_t w = 0; w < sv->words; w++) {
            sv->bitmap[w] |= sv->pending[w];
            sv->pending[w] = 0;
        }
        if (sv->pc_decided)
            postcopy_split(sv);
        n = bitmap_to_pfns(sv);
        sv->round_dirty = n;
        start_round(sv, n, NULL);
    }
}

/* Whether the guest runs again after this final round (a checkpoint kept,
 * or an epoch with more to come): then the round is staged. */
static int stage_wanted(const struct xtk_save *sv)
{
    if (sv->opt.flags & XTK_SAVE_KEEP)
        return 1;
    return sv->opt.checkpoint_interval_ms && !sv->cancel &&
           (!sv->opt.checkpoints || sv->epoch + 1 < sv->opt.checkpoints);
}

/* Checkpointing to a backup, from the first CHECKPOINT on: a write that
 * blocks for the peer timeout means a lost backup (never a guest stopped,
 * or an epoch's send stuck, for the stream's own timeout). */
static void peer_deadline(struct xtk_save *sv)
{
    if (sv->ev_heartbeat &&
        (!sv->out->timeout_ms ||
         (uint32_t)sv->out->timeout_ms > sv->opt.peer_timeout_ms))
        xtk_stream_set_timeout(sv->out, (int)sv->opt.peer_timeout_ms);
}

/* The guest runs again (resume returned): its pause ends when its vCPUs
 * ran, where the backend can tell (dom->resumed_ns), else now. */
static void resumed_at(struct xtk_save *sv, uint64_t now)
{
    uint64_t t = sv->dom->resumed_ns;

    if (!t || t > now || t < sv->t_request)
        t = now;
    sv->stopped = 0;
    /* Nothing for finish() to undo until the next request: a second
     * resume of a guest not yet out of its suspend was taken, once it
     * ran, for a new request, and left it suspended (a checkpointing
     * source that lost its backup, twice under ASan in CI). */
    sv->suspend_asked = 0;
    xtk_stats_phase_at(sv->st, "source resumed", t);
    hist(sv, "downtime", t - sv->t_request);
    sv->last_pause = t - sv->t_request;
}

static void resumed(struct xtk_save *sv)
{
    resumed_at(sv, xtk_now_ns());
}

/* The guest runs again after its final round (a checkpoint). */
static int resume_after_round(struct xtk_save *sv)
{
    if (sv->dom->ops->resume(sv->dom) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: cannot resume it after a checkpoint",
                   sv->dom->domid);
        return -1;
    }
    resumed(sv);
    return 0;
}

/* A resume sent ahead: its outcome (0, or -1 with errno). */
static int resume_collect(struct xtk_save *sv)
{
    async_done(sv, XTK__ASYNC_RESUME);
    if (sv->dom->ops->resume_finish(sv->dom) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: cannot resume it after a checkpoint",
                   sv->dom->domid);
        return -1;
    }
    resumed(sv);
    return 0;
}

static int tail_work(struct xtk_save *sv);

static void *drain_main(void *arg)
{
    struct xtk_save *sv = arg;

    if (!sv->drain_end)
        fault_point(sv, "sending", sv->epoch);
    sv->drain_err = sv->drain_logged = 0;
    if (sv->drain_staged && xtk__stream_stage_drain(sv->out) < 0) {
        sv->drain_err = errno ? errno : EIO;
    } else if (sv->drain_end && tail_work(sv) < 0) {
        sv->drain_err = errno ? errno : EIO;
        sv->drain_logged = 1;
    }
    wake_loop(sv, sv->drain_fd);
    return NULL;
}

/* The round is in the stage: no more staging (0, or -1 with errno). */
static int stage_close(struct xtk_save *sv)
{
    size_t held = 0;
    int over = 0;

    if (xtk__stream_stage_end(sv->out, &held, &over) < 0)
        return -1;
    sv->staging = 0;
    xtk_stats_count(sv->st, "bytes staged", held);
    if (over)
        xtk_stats_count(sv->st, "epochs too big to stage", 1);
    return 0;
}

/* The drain thread's wake-up, made by make_events or at the first drain
 * (a backend's own save has no other events).  0, or -1 with errno. */
static int drain_events(struct xtk_save *sv)
{
    if (sv->ev_drain)
        return 0;
    sv->drain_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sv->drain_fd < 0)
        return -1;
    sv->ev_drain = event_new(xtk_ctx_event_base(sv->ctx), sv->drain_fd,
                             EV_READ | EV_PERSIST, on_drain_done, sv);
    if (!sv->ev_drain || event_add(sv->ev_drain, NULL) < 0)
        return xtk__fail(ENOMEM);
    return 0;
}

/* The staged epoch (or the stream's end, with end: staged, or its tail,
 * tail_work) is kept: the drain thread writes it out (on_drain_done). */
static void start_drain(struct xtk_save *sv, int end, int staged)
{
    int e;

    if (drain_events(sv) < 0) {
        e = errno ? errno : ENOMEM;
        XTK_PERROR(sv->ctx, "cannot start sending the epoch");
        finish(sv, e);
        return;
    }
    sv->drain_end = end;
    sv->drain_staged = staged;
    sv->phase = PH_SEND;
    sv->t_drain = xtk_now_ns();
    e = pthread_create(&sv->drain_thread, NULL, drain_main, sv);
    if (e) {
        errno = e;
        XTK_PERROR(sv->ctx, "cannot start sending the epoch");
        finish(sv, e);
        return;
    }
    sv->drain_on = 1;
}

/* Checkpointing: an epoch is out (sent); the guest runs until the next. */
static void epoch_sent(struct xtk_save *sv, uint64_t now)
{
    fault_point(sv, "sent", sv->epoch);
    xtk_stats_phase_at(sv->st, "checkpoint sent", now);
    if (sv->ev_heartbeat) {
        /* The backup owes this epoch's acknowledgement, from now. */
        sv->t_epoch_sent = now;
        sv->owed_since = now;
        /* (Its acknowledgement may be in already: the drain's end is
         * seen after the backup's answer to it.) */
        if (!sv->ack_due_since && sv->acked < sv->epoch)
            sv->ack_due_since = now;
    }
    sv->phase = PH_INTERVAL;
    if (sv->cancel) { /* asked while it was sent: the END comes now */
        epoch_stop(sv);
        return;
    }
    {
        /* Epochs start on a grid of the interval from the first stop,
         * not an interval after the last one is out: what was asked for
         * is a rate.  An epoch late for its slot is made up by the next
         * one's coming at once; more than one slot behind (a stall), the
         * grid starts again from now rather than stop back to back. */
        uint64_t iv = (uint64_t)sv->opt.checkpoint_interval_ms * 1000000;
        uint64_t t = xtk_now_ns(), due, left;

        due = (sv->t_slot ? sv->t_slot : sv->t_request) + iv;
        if (due + iv < t)
            due = t;
        sv->t_slot = due;
        left = due > t ? due - t : 0;
        struct timeval tv = {(time_t)(left / 1000000000),
                             (suseconds_t)(left % 1000000000 / 1000)};

        evtimer_add(sv->ev_timer, &tv);
    }
    if (sv->ev_heartbeat && !evtimer_pending(sv->ev_heartbeat, NULL)) {
        struct timeval tv = {sv->opt.heartbeat_ms / 1000,
                             (long)(sv->opt.heartbeat_ms % 1000) * 1000};

        event_add(sv->ev_heartbeat, &tv);
    }
}

static void on_resumed(struct xtk_save *sv);
static void epoch_resumed(struct xtk_save *sv, struct xtk_stats_epoch *rowp,
                          int staged, uint64_t now);

/* Checkpointing: the epoch is complete; the guest runs until the next. */
static void next_epoch(struct xtk_save *sv)
{
    struct xtk_stats_epoch row = {0};
    uint64_t now;
    int staged;

    if ((sv->native && send_state(sv) < 0) ||
        xtk_stream_write_checkpoint(sv->out) < 0) {
        fail_errno(sv);
        return;
    }
    peer_deadline(sv);
    now = xtk_now_ns();
    hist(sv, "final round", now - sv->t_request);
    row.copy_ns = now - sv->t_request;
    row.pages = sv->round_dirty;
    row.bytes = stream_bytes(sv) - sv->round_bytes0;
    staged = sv->staging;
    if (staged)
        xtk_stats_phase_at(sv->st, "checkpoint staged", now);
    fault_point(sv, "stopped", sv->epoch + 1);
    if (staged && stage_close(sv) < 0) {
        fail_errno(sv);
        return;
    }
    if (staged && sv->dom->ops->resume_start) {
        /* The epoch is in memory: the loop need not wait while the
         * vCPUs restart (the hypervisor side's round trip, ms under
         * load); on_resumed goes on from here. */
        int fd;

        if (sv->dom->ops->resume_start(sv->dom, &fd) < 0) {
            XTK_PERROR(sv->ctx,
                       "domain %u: cannot resume it after a "
                       "checkpoint",
                       sv->dom->domid);
            fail_errno(sv);
            return;
        }
        if (async_watch(sv, fd, XTK__ASYNC_RESUME) == 0) {
            sv->resume_row = row;
            sv->resume_staged = staged;
            sv->resume_now = now;
            return;
        }
        if (resume_collect(sv) < 0) { /* no event: wait here */
            fail_errno(sv);
            return;
        }
    } else if (resume_after_round(sv) < 0) {
        fail_errno(sv);
        return;
    }
    epoch_resumed(sv, &row, staged, now);
}

/* The backend's answer to a resume sent ahead (next_epoch). */
static void on_resumed(struct xtk_save *sv)
{
    if (resume_collect(sv) < 0) {
        fail_errno(sv);
        return;
    }
    epoch_resumed(sv, &sv->resume_row, sv->resume_staged, sv->resume_now);
}

/* ---- requests sent ahead ------------------------------------------- */

static void on_async(evutil_socket_t fd, short what, void *arg);

/* kind's request is out: the backend's fd says when its answer is in.
 * 0, or -1 with no event (the caller then collects at once). */
static int async_watch(struct xtk_save *sv, int fd, unsigned int kind)
{
    if (sv->ev_async && event_get_fd(sv->ev_async) != fd) {
        if (sv->async)
            return -1; /* not the handle's one fd: not expected */
        event_free(sv->ev_async);
        sv->ev_async = NULL;
    }
    if (!sv->ev_async)
        sv->ev_async = event_new(xtk_ctx_event_base(sv->ctx), fd,
                                 EV_READ | EV_PERSIST, on_async, sv);
    if (!sv->ev_async || (!sv->async && event_add(sv->ev_async, NULL) < 0))
        return -1;
    sv->async |= kind;
    return 0;
}

static void async_done(struct xtk_save *sv, unsigned int kind)
{
    sv->async &= ~kind;
    if (!sv->async)
        ev_stop(sv->ev_async);
}

static void live_round_read(struct xtk_save *sv, int r);

/* A pre-copy round's dirty-log read sent ahead is answered. */
static void dirty_collect(struct xtk_save *sv)
{
    uint64_t dirty = 0;
    int r;

    async_done(sv, XTK__ASYNC_DIRTY);
    r = sv->dom->ops->logdirty_finish(sv->dom, sv->bitmap, sv->words * 64,
                                      &dirty);
    live_round_read(sv, r);
}

/* An answer is in: one is taken at a time (the fd stays readable while
 * another is in). */
static void on_async(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;
    unsigned int ready;

    (void)fd, (void)what;
    ready = sv->dom->ops->async_ready(sv->dom) & sv->async;
    if (ready & XTK__ASYNC_STOP)
        stop_collect(sv);
    else if (ready & XTK__ASYNC_RELEASE)
        release_collect(sv);
    else if (ready & XTK__ASYNC_RESUME)
        on_resumed(sv);
    else if (ready & XTK__ASYNC_DIRTY)
        dirty_collect(sv);
    else if (ready & XTK__ASYNC_INFO)
        info_collect(sv);
}

/* The save ends: what was sent ahead and is still out is collected, on
 * the end's thread (the loop stopped ev_async; nothing else touches sv):
 * a resume's and a release's outcomes are kept for ended() to tell, a
 * release acknowledged meanwhile goes too, a dirty-log read or an info is
 * dropped.  0, or an errno. */
static int async_settle(struct xtk_save *sv)
{
    const struct xtk__backend_ops *ops = sv->dom->ops;
    int err = 0;
    uint64_t dirty;

    if (sv->async & XTK__ASYNC_RESUME) {
        sv->settle_resume = 1;
        sv->settle_resume_rc = ops->resume_finish(sv->dom);
        sv->settle_resume_errno = errno;
        sv->settle_resume_ns = xtk_now_ns();
        if (sv->settle_resume_rc < 0)
            err = errno ? errno : EIO;
        else /* (resumed_at's, for end_domain) */
            sv->stopped = sv->suspend_asked = 0;
    }
    if (sv->async & XTK__ASYNC_STOP) {
        /* stopped: the end resumes it or destroys it */
        if (ops->stop_finish(sv->dom) < 0 && !err)
            err = errno ? errno : EIO;
    }
    if (sv->async & XTK__ASYNC_RELEASE) {
        uint32_t upto = sv->release_upto;

        for (unsigned int i = 0; i < 2 && upto; i++) {
            struct xtk__output o = {0};
            int r = i ? ops->output_release(sv->dom, upto, &o)
                      : ops->output_release_finish(sv->dom, &o);

            sv->settle_rel[i].r = r;
            sv->settle_rel[i].err = errno;
            sv->settle_rel[i].upto = upto;
            sv->settle_rel[i].o = o;
            sv->settle_nrel = i + 1;
            if (r < 0)
                break;
            sv->out_released = upto + 1; /* (release_done's, again) */
            upto = sv->release_next > upto ? release_bound(sv, sv->release_next)
                                           : 0;
        }
        sv->release_next = 0;
    }
    if (sv->async & XTK__ASYNC_DIRTY)
        (void)ops->logdirty_finish(sv->dom, sv->bitmap, sv->words * 64, &dirty);
    if (sv->async & XTK__ASYNC_INFO) {
        struct xtk_domain_info info;

        (void)ops->info_finish(sv->dom, &info);
    }
    sv->async = 0;
    return err;
}

/* What async_settle collected, told on the loop. */
static void settled(struct xtk_save *sv)
{
    if (sv->settle_resume) {
        sv->settle_resume = 0;
        errno = sv->settle_resume_errno;
        if (sv->settle_resume_rc < 0)
            XTK_PERROR(sv->ctx,
                       "domain %u: cannot resume it after a checkpoint",
                       sv->dom->domid);
        else
            resumed_at(sv, sv->settle_resume_ns);
    }
    for (unsigned int i = 0; i < sv->settle_nrel; i++) {
        errno = sv->settle_rel[i].err;
        release_done(sv, sv->settle_rel[i].upto, sv->settle_rel[i].r,
                     &sv->settle_rel[i].o);
    }
    sv->settle_nrel = 0;
}

/* Checkpointing: the guest runs again after epoch n's stop: its row, then
 * its send (staged) or the interval. */
static void epoch_resumed(struct xtk_save *sv, struct xtk_stats_epoch *rowp,
                          int staged, uint64_t now)
{
    struct xtk_stats_epoch row = *rowp;

    sv->epoch++;
    row.epoch = sv->epoch;
    row.pause_ns = sv->last_pause;
    xtk_stats_epoch(sv->st, &row);
    if (staged)
        start_drain(sv, 0, 1);
    else
        epoch_sent(sv, now);
}

static void drain_joined(struct xtk_save *sv);

/* The staged bytes are out (or failed). */
static void on_drain_done(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;
    uint64_t v;

    (void)fd, (void)what;
    if (read(sv->drain_fd, &v, sizeof(v)) != sizeof(v))
        return;
    join_then(sv, &sv->drain_thread, &sv->drain_on, drain_joined);
}

static void drain_joined(struct xtk_save *sv)
{
    uint64_t now = xtk_now_ns();

    if (sv->drain_staged)
        hist(sv, "epoch send", now - sv->t_drain);
    if (!sv->drain_end)
        xtk_stats_epoch(
            sv->st, &(struct xtk_stats_epoch){.epoch = sv->epoch,
                                              .send_ns = now - sv->t_drain});
    if (sv->drain_err) {
        errno = sv->drain_err;
        if (!sv->drain_logged)
            XTK_PERROR(sv->ctx, "domain %u: sending the %s failed",
                       sv->dom->domid,
                       sv->drain_end ? "stream's end" : "epoch");
        fail_errno(sv);
        return;
    }
    if (sv->drain_end) {
        end_out(sv);
        return;
    }
    epoch_sent(sv, now);
}

/*
 * A plain file of xtk's KVM layout gets the lazy restore's index after its
 * END (lib/lazy-index.h), built from the file itself (its records' heads,
 * read back while they are still in the page cache): a lazy restore then
 * reads one place at the file's end instead of every record's head.  Not
 * for checkpoints, post-copy, checksummed, compressed or framed streams,
 * or Xen's layouts.  A file that cannot be indexed is complete without it
 * (why, at debug level).  0, or -1 (the file could not be written).
 */
static int index_wanted(struct xtk_save *sv)
{
    return !(sv->native || sv->delegate || sv->opt.checkpoint_interval_ms ||
             sv->pc_decided || (sv->out->flags & XTK_STREAM_CHECKSUM) ||
             sv->out->fr.framing != XTK_STREAM_FRAMING_LIBXC ||
             xtk__stream_file_fd(sv->out) < 0);
}

static int write_index(struct xtk_save *sv)
{
    struct xtk_stream_counters c;
    char link[64], why[256];
    size_t len;
    void *buf;
    off_t at;
    int fd, rfd, r;

    if (!index_wanted(sv))
        return 0;
    fd = xtk__stream_file_fd(sv->out);
    if (xtk_stream_flush(sv->out) < 0 ||
        xtk_stream_get_counters(sv->out, &c) < 0)
        return -1;
    at = lseek(fd, 0, SEEK_CUR);
    if (at < 0 || (uint64_t)at < c.raw_bytes)
        return 0;
    /* The fd may be open for writing only. */
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    rfd = open(link, O_RDONLY | O_CLOEXEC);
    if (rfd < 0) {
        XTK_DEBUG(sv->ctx, "no lazy index: cannot read the file back: %s",
                  strerror(errno));
        return 0;
    }
    r = xtk__lzx_build(rfd, (uint64_t)at - c.raw_bytes, (uint64_t)at,
                       sv->cfg.nr_pages, &buf, &len, why, sizeof(why));
    close(rfd);
    if (r != 0) {
        if (r < 0)
            snprintf(why, sizeof(why), "%s", strerror(errno));
        XTK_DEBUG(sv->ctx, "no lazy index: %s", why);
        return 0;
    }
    r = xtk_stream_write(sv->out, buf, len);
    free(buf);
    if (r < 0 || xtk_stream_flush(sv->out) < 0)
        return -1;
    xtk_stats_phase(sv->st, "lazy index written");
    xtk_stats_count(sv->st, "lazy index bytes", len);
    return 0;
}

/* Whether the stream's end has work that may take long: a lazy index
 * to build (the file read back) or the caller's commit (a file synced and
 * renamed). */
static int tail_wanted(struct xtk_save *sv)
{
    return sv->opt.commit || index_wanted(sv);
}

/* The lazy index, then the caller's commit (0; or -1 with errno, having
 * logged why: the save fails). */
static int end_commit(struct xtk_save *sv)
{
    if (write_index(sv) < 0) {
        XTK_PERROR(sv->ctx, "cannot write the stream's lazy index");
        return -1;
    }
    if (sv->opt.commit && sv->opt.commit(sv, sv->opt.commit_arg) < 0) {
        XTK_ERROR(sv->ctx, "the stream is complete but could not be "
                           "committed: the domain runs on");
        return -1;
    }
    sv->t_committed = xtk_now_ns();
    return 0;
}

/* The stream's tail, on the drain thread: the END if the loop left it
 * (tail_end), then the index and the commit.  0, or -1 with errno, having
 * logged why. */
static int tail_work(struct xtk_save *sv)
{
    if (sv->tail_state) {
        void *buf = sv->tail_state;

        sv->tail_state = NULL;
        if (put_state(sv, buf, sv->tail_state_len, sv->tail_state_t0) < 0) {
            XTK_PERROR(sv->ctx, "domain %u: sending its state failed",
                       sv->dom->domid);
            return -1;
        }
    }
    if (sv->tail_end && xtk_stream_write_end(sv->out) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: sending the stream's end failed",
                   sv->dom->domid);
        return -1;
    }
    if (sv->tail_end || sv->drain_staged)
        sv->t_end_sent = xtk_now_ns();
    return end_commit(sv);
}

/*
 * The stream ends (the native state written if it goes last): the END
 * from the loop when the output has room for it (end_written: it is out
 * already), else, like the index and the commit, on the drain thread
 * (start_tail); then end_out.
 */
static void stream_end(struct xtk_save *sv, int end_written)
{
    int tail_end = 0;

    sv->drain_staged = 0; /* (an earlier epoch's drain may have set it) */
    if (!end_written) {
        if (!sv->tail_state && xtk__stream_room(sv->out) >= END_ROOM) {
            if (xtk_stream_write_end(sv->out) < 0) {
                fail_errno(sv);
                return;
            }
        } else {
            tail_end = 1;
        }
    }
    if (!tail_end)
        sv->t_end_sent = xtk_now_ns();
    if (tail_end || tail_wanted(sv)) {
        sv->tail_end = tail_end;
        start_drain(sv, 1, 0);
        return;
    }
    sv->t_committed = xtk_now_ns();
    end_out(sv);
}

/* The stream's END is out (sent, or staged and drained) and committed:
 * their figures, then the reply of a migration, or the end. */
static void end_out(struct xtk_save *sv)
{
    xtk_stats_phase_at(sv->st, "end sent", sv->t_end_sent);
    if (sv->t_request && (!sv->drain_staged || sv->stage_for_room) &&
        !sv->pc_switched)
        /* else: once staged, or at the post-copy switch */
        hist(sv, "final round", sv->t_end_sent - sv->t_request);
    xtk_stats_phase_at(sv->st, "committed", sv->t_committed);
    if (sv->opt.flags & XTK_SAVE_MIGRATE) {
        sv->phase = PH_PEER;
        if (sv->reply_early) { /* on_peer kept it */
            reply_in(sv, sv->reply_early);
            return;
        }
        arm_timer(sv, sv->opt.timeout_ms);
        return;
    }
    finish(sv, 0);
}

static void after_final_round(struct xtk_save *sv)
{
    if (sv->opt.checkpoint_interval_ms && !sv->cancel &&
        (!sv->opt.checkpoints || sv->epoch + 1 < sv->opt.checkpoints)) {
        next_epoch(sv);
        return;
    }
    if (sv->pc_decided) {
        postcopy_switch(sv);
        return;
    }
    if (sv->staging) {
        /* A checkpoint kept: the guest runs while the stream's end goes
         * out and is committed (a file synced and renamed). */
        uint64_t now;

        if (sv->native && send_state(sv) < 0) {
            fail_errno(sv);
            return;
        }
        now = xtk_now_ns();

        if (xtk_stream_write_end(sv->out) < 0) {
            fail_errno(sv);
            return;
        }
        xtk_stats_phase_at(sv->st, "end staged", now);
        if (!sv->stage_for_room) /* else once it is out (end_out) */
            hist(sv, "final round", now - sv->t_request);
        if (stage_close(sv) < 0 ||
            ((sv->opt.flags & XTK_SAVE_KEEP) && resume_after_round(sv) < 0)) {
            fail_errno(sv);
            return;
        }
        if (sv->opt.flags & XTK_SAVE_KEEP)
            sv->suspend_asked = 0; /* resumed: finish() has nothing to do */
        sv->tail_end = 0;
        start_drain(sv, 1, 1);
        return;
    }
    if (sv->native) {
        /* Xen's layout: the state after the pages, taken here (the
         * backend is the loop's), written from here if the output has
         * room for it and the END, else by the drain thread. */
        sv->tail_state_t0 = xtk_now_ns();
        if (take_state(sv, &sv->tail_state, &sv->tail_state_len) < 0) {
            fail_errno(sv);
            return;
        }
        if (xtk__stream_room(sv->out) >= sv->tail_state_len + END_ROOM) {
            void *buf = sv->tail_state;

            sv->tail_state = NULL;
            if (put_state(sv, buf, sv->tail_state_len, sv->tail_state_t0) < 0) {
                fail_errno(sv);
                return;
            }
        }
    }
    stream_end(sv, 0);
}

/* ---- post-copy ------------------------------------------------------ */

/*
 * The final round of a post-copy: only the dirty frames the destination
 * needs before it runs (below XTK__POSTCOPY_EAGER) stay in it; the others
 * go after the switch (pc_todo).  Nothing left for after it: an ordinary
 * stop and copy.
 */
#define EAGER_MASK ((1ull << XTK__POSTCOPY_EAGER) - 1)
_Static_assert(XTK__POSTCOPY_EAGER < 64, "the eager frames: word 0");

/* The frames of dirty a post-copy sends after its switch (all but the
 * eager ones) into pc_todo; how many. */
static uint64_t postcopy_todo(struct xtk_save *sv, const uint64_t *dirty)
{
    uint64_t words = (sv->cfg.nr_pages + 63) / 64, n = 0;

    for (uint64_t w = 0; w < words; w++) {
        sv->pc_todo[w] = w ? dirty[w] : dirty[w] & ~EAGER_MASK;
        n += (uint64_t)__builtin_popcountll(sv->pc_todo[w]);
    }
    return n;
}

static void postcopy_split(struct xtk_save *sv)
{
    sv->pc_frames = postcopy_todo(sv, sv->bitmap);
    sv->bitmap[0] &= EAGER_MASK; /* the final round's */
    memset(sv->bitmap + 1, 0, (sv->words - 1) * 8);
    if (!sv->pc_frames) {
        sv->pc_decided = 0;
        XTK_INFO(sv->ctx,
                 "domain %u: nothing left for post-copy: the stop "
                 "and copy ends it",
                 sv->dom->domid);
    }
}

/*
 * Before the stop, the guest still running: the frames dirty now will
 * come after the switch (with what it dirties until the stop), so the
 * destination takes them out of its memory now, off the downtime (10 ms
 * for 64 MiB here: the kernel frees each page), and says so; the stop
 * waits for that, PREPARE_MS at most (a destination that does not know
 * the record skips it: it takes them out at the switch instead).
 */
static void postcopy_prepare(struct xtk_save *sv)
{
    uint64_t words = (sv->cfg.nr_pages + 63) / 64;
    struct xtk__sr_postcopy h = {
        .version = XTK__SR_POSTCOPY_VERSION,
        .nr_bits = sv->cfg.nr_pages,
        .count = postcopy_todo(sv, sv->pending),
    };
    struct iovec iov[2] = {{&h, sizeof(h)}, {sv->pc_todo, words * 8}};

    if (xtk_stream_write_recordv(sv->out, XTK_REC_POSTCOPY_PREPARE, iov, 2) <
            0 ||
        xtk_stream_flush(sv->out) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: the post-copy's prepare cannot be sent",
                   sv->dom->domid);
        fail_errno(sv);
        return;
    }
    stamp(sv, "post-copy prepare sent");
    sv->phase = PH_PREPARE;
    arm_timer(sv, PREPARE_MS);
}

/* The destination has taken the frames out (or did not answer). */
static void postcopy_prepared(struct xtk_save *sv, int answered)
{
    evtimer_del(sv->ev_timer);
    if (answered)
        stamp(sv, "destination prepared");
    else
        XTK_WARN(sv->ctx,
                 "domain %u: no answer to the post-copy's prepare in %u "
                 "ms: the destination takes the frames out after the stop",
                 sv->dom->domid, PREPARE_MS);
    request_suspend(sv);
}

/*
 * The switch: the record that lists the frames still to come, after which
 * the destination runs the guest.  From the moment it goes, this copy may
 * be behind the destination's and never runs again: the backend's guard
 * (which resumes the guest if this process dies) is let go.  Then the
 * frames follow (postcopy.c), the destination's requests first.
 */
static void postcopy_switch(struct xtk_save *sv)
{
    struct xtk_domain *dom = sv->dom;
    uint64_t words = (sv->cfg.nr_pages + 63) / 64;
    struct xtk__sr_postcopy h = {
        .version = XTK__SR_POSTCOPY_VERSION,
        .nr_bits = sv->cfg.nr_pages,
        .count = sv->pc_frames,
    };
    struct iovec iov[2] = {{&h, sizeof(h)}, {sv->pc_todo, words * 8}};

    sv->pc = xtk__pc_new(sv->ctx, sv->ram, sv->out, sv->pc_todo,
                         sv->cfg.nr_pages, sv->pc_fd, sv->opt.peer_fd);
    if (!sv->pc) {
        XTK_PERROR(sv->ctx, "domain %u: cannot set up its post-copy",
                   dom->domid);
        fail_errno(sv);
        return;
    }
    /* From the switch this copy must stay stopped even if this process
     * dies: a pause of its own, which outlives the handle (the stop of
     * the pause method, and the guard that resumes a guest a dead save
     * left suspended, both end with it).  Not to be had: no switch. */
    if (dom->ops->pause(dom, 0) < 0) {
        XTK_PERROR(sv->ctx,
                   "domain %u: cannot pause it for good before the "
                   "post-copy switch",
                   dom->domid);
        fail_errno(sv);
        return;
    }
    /* A link that takes nothing for the peer timeout is lost (the guest
     * is stopped here and may run there: no 30 s waits). */
    xtk_stream_set_timeout(sv->out, (int)sv->opt.peer_timeout_ms);
    sv->t_switch = xtk_now_ns();
    sv->pc_switched = 1;
    sv->superseded = 1; /* never resumed here again, whatever happens */
    if (sv->suspend_ready) {
        dom->ops->suspend_teardown(dom);
        sv->suspend_ready = 0;
    }
    if (xtk_stream_write_recordv(sv->out, XTK_REC_POSTCOPY, iov, 2) < 0 ||
        xtk_stream_flush(sv->out) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: the post-copy switch cannot be sent",
                   dom->domid);
        fail_errno(sv);
        return;
    }
    {
        uint64_t now = xtk_now_ns();

        xtk_stats_phase_at(sv->st, "post-copy switch sent", now);
        hist(sv, "final round", now - sv->t_request);
    }
    xtk_stats_count(sv->st, "postcopy frames", sv->pc_frames);
    XTK_INFO(sv->ctx,
             "domain %u: post-copy: %llu frames (%.1f MiB) follow the "
             "switch; the guest runs on the destination from now on",
             dom->domid, (unsigned long long)sv->pc_frames,
             (double)(sv->pc_frames << XTK__PAGE_SHIFT) / (1 << 20));
    sv->phase = PH_POSTCOPY;
    event_add(sv->ev_pc, NULL);
    if (xtk__pc_start(sv->pc, sv->opt.max_postcopy_bandwidth,
                      sv->opt.peer_timeout_ms) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: cannot start its post-copy",
                   dom->domid);
        fail_errno(sv);
    }
}

/* The destination's guest runs: its pause as its users saw it ended
 * then (the message left at once; its way back is half the round trip). */
static void postcopy_running(struct xtk_save *sv, uint64_t now,
                             uint64_t resumed_to_msg)
{
    uint64_t span = now - sv->t_request, rtt = link_rtt_ns(sv);
    uint64_t est =
        span > resumed_to_msg + rtt / 2 ? span - resumed_to_msg - rtt / 2 : 0;

    sv->pc_running = 1;
    xtk_stats_phase_at(sv->st, "destination running", now);
    hist(sv, "downtime", est);
    if (rtt)
        hist(sv, "link rtt", rtt);
}

/* Every frame is out (or the sending failed): END, then the reply. */
static void on_pc_done(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;
    struct xtk__pc_result res;
    uint64_t v;

    if (read(sv->pc_fd, &v, sizeof(v)) != sizeof(v) || sv->phase != PH_POSTCOPY)
        return;
    event_del(sv->ev_pc);
    xtk__pc_result(sv->pc, sv->st, &res);
    xtk_stats_count(sv->st, "postcopy pages asked", res.asked_pages);
    xtk_stats_count(sv->st, "postcopy pages pushed", res.pushed_pages);
    xtk_stats_count(sv->st, "postcopy requests", sv->pc_requests);
    xtk_stats_count(sv->st, "pages sent", res.asked_pages + res.pushed_pages);
    xtk_stats_count(sv->st, "pages with data", res.data_pages);
    xtk_stats_count(sv->st, "zero pages elided", res.zero_pages);
    if (res.err) {
        errno = res.err;
        XTK_PERROR(sv->ctx, "domain %u: post-copy: sending its memory failed",
                   sv->dom->domid);
        finish(sv, res.err);
        return;
    }
    xtk_stats_phase_at(sv->st, "last page sent", res.last_write_ns);
    hist(sv, "postcopy", res.last_write_ns - sv->t_switch);
    stream_end(sv, 0);
}

/* ---- pre-copy rounds --------------------------------------------------- */

static void start_round(struct xtk_save *sv, uint64_t count,
                        const uint64_t *populated)
{
    struct timeval tv = {0, PROGRESS_MS * 1000};
    /* A native stream never elides a zero frame (see XTK__LAYOUT_NATIVE);
     * pre-copy keeps to the bandwidth limit, the final round (the guest
     * waits on it) does not. */
    unsigned int flags = (sv->native ? XTK__ROUND_KEEP_ZERO : 0) |
                         (sv->phase != PH_FINAL ? XTK__ROUND_THROTTLE : 0);
    char label[32];
    int r;

    sv->round_start = xtk_now_ns();
    sv->round_bytes0 = stream_bytes(sv);
    sv->round_total = count;
    sv->progress_shown = 0;
    /* The round's bar starts now (drawn if it lasts, see on_progress), so
     * that its first drawing has a rate. */
    round_label(sv, label, sizeof(label));
    xtk__progress(sv->ctx, "save", label, 0,
                  (unsigned long)(count * XTK__PAGE_SIZE));
    /* A final round of one batch or less: this thread sends it (the
     * guest is stopped, and a hand-off to the senders and back costs
     * more than the pages), if the output takes it without waiting (a
     * file, the stage, a socket or pipe with room for it): the caller's
     * loop does not wait on a peer. */
    if (sv->phase == PH_FINAL && count <= XTK__SAVE_BATCH &&
        (sv->staging || xtk__stream_room(sv->out) >=
                            count * (XTK__PAGE_SIZE + 8) + (16u << 10)))
        r = xtk__senders_round_here(sv->sd, sv->pfns, count, populated, flags);
    else
        r = xtk__senders_round(sv->sd, sv->pfns, count, populated, flags);
    if (r < 0) {
        fail_errno(sv);
        return;
    }
    evtimer_add(sv->ev_progress, &tv);
}

/* Bytes the kernel still holds for the peer (0 when not a socket). */
static int peer_backlog(struct xtk_save *sv)
{
    int q = 0;

    if (!(sv->opt.flags & XTK_SAVE_MIGRATE) ||
        ioctl(sv->opt.peer_fd, SIOCOUTQ, &q) < 0)
        return 0;
    return q;
}

/*
 * A pre-copy round ends when the destination has it, not when the kernel
 * has it: what was sent may still sit in the socket's queue (and, behind
 * it, the destination may be writing round 0 into memory it never
 * touched, ~4 us a page here).  Deciding then, and stopping the guest,
 * would add that backlog to the downtime, and the send rate would be the
 * kernel's, not the link's.  So after a round, the dirty log is read only
 * once the send queue is empty (checked every millisecond, for at most
 * the timeout); xtk-restore keeps a small receive buffer, so an empty
 * send queue means the destination is close behind.
 */
static void after_live_round(struct xtk_save *sv,
                             const struct xtk__round_result *res);

static void drain_then_decide(struct xtk_save *sv,
                              const struct xtk__round_result *res)
{
    struct timeval tv = {0, 1000};

    if (res)
        sv->drain_res = *res;
    if (peer_backlog(sv) > 0 && xtk_now_ns() - sv->round_start <
                                    (uint64_t)sv->opt.timeout_ms * 1000000) {
        sv->phase = PH_DRAIN;
        evtimer_add(sv->ev_timer, &tv);
        return;
    }
    sv->phase = PH_LIVE;
    if (sv->opt.flags & XTK_SAVE_MIGRATE)
        hist(sv, "link drain", xtk_now_ns() - sv->round_end);
    after_live_round(sv, &sv->drain_res);
}

static void after_live_round(struct xtk_save *sv,
                             const struct xtk__round_result *res)
{
    struct xtk__policy_in in = {
        .policy = sv->opt.policy,
        .round = sv->round,
        .sent = res->entries,
        .data_bytes = res->data_pages * XTK__PAGE_SIZE,
        .round_ns = xtk_now_ns() - sv->round_start,
        .total_bytes = stream_bytes(sv),
        .max_bytes = sv->opt.max_bytes,
        .max_rounds = sv->opt.max_rounds,
        .max_downtime_ns = (uint64_t)sv->opt.max_downtime_ms * 1000000,
        .fixed_ns = sv->fixed_ns,
        .postcopy = sv->opt.flags & POSTCOPY_FLAGS,
    };
    const struct xtk__backend_ops *ops = sv->dom->ops;
    uint64_t dirty = 0;
    int r, fd;

    sv->live_in = in;
    sv->live_t0 = xtk_now_ns();
    if (ops->logdirty_start && ops->async_ready) {
        /* Sent ahead: the hypervisor side's sync takes ms under load. */
        r = ops->logdirty_start(sv->dom, 0, &fd);
        if (r == 0) {
            if (async_watch(sv, fd, XTK__ASYNC_DIRTY) == 0) {
                sv->phase = PH_DIRTY;
                return;
            }
            r = ops->logdirty_finish(sv->dom, sv->bitmap, sv->words * 64,
                                     &dirty);
        }
    } else {
        r = ops->logdirty_read(sv->dom, 0, sv->bitmap, sv->words * 64, &dirty);
    }
    live_round_read(sv, r);
}

/* A pre-copy round's dirty-log read is in (r: 0, or -1 with errno): the
 * policy decides on another round or the stop. */
static void live_round_read(struct xtk_save *sv, int r)
{
    struct xtk__policy_in in = sv->live_in;
    uint64_t n;
    const char *reason;
    char counter[XTK_STATS_NAME_MAX + 1];
    enum xtk__policy_verdict v;

    sv->phase = PH_LIVE;
    if (r < 0) {
        XTK_PERROR(sv->ctx, "domain %u: dirty log read failed", sv->dom->domid);
        fail_errno(sv);
        return;
    }
    if (sv->cancel) {
        finish(sv, ECANCELED);
        return;
    }
    in.sync_ns = sv->sync_ns = xtk_now_ns() - sv->live_t0;
    hist(sv, "dirty log read", sv->sync_ns);
    n = bitmap_to_pfns(sv);
    in.dirty = n;
    v = xtk__policy_decide(&sv->ps, &in, &reason);
    if (v == XTK__POLICY_CONTINUE) {
        sv->round_dirty = n;
        start_round(sv, n, NULL);
        return;
    }
    sv->pc_decided = v == XTK__POLICY_POSTCOPY;
    XTK_INFO(sv->ctx,
             "domain %u: %s after %u rounds, %llu pages dirty (a stop and "
             "copy: %.3f ms expected): %s",
             sv->dom->domid,
             sv->pc_decided ? "switch to post-copy" : "stop and copy",
             sv->round, (unsigned long long)n, sv->ps.expected_ns / 1e6,
             reason);
    memcpy(sv->pending, sv->bitmap, sv->words * 8);
    snprintf(counter, sizeof(counter), "stop: %s", reason);
    xtk_stats_count(sv->st, counter, 1);
    xtk_stats_count(sv->st, "expected downtime ns", sv->ps.expected_ns);
    if (sv->pc_decided)
        postcopy_prepare(sv);
    else
        request_suspend(sv);
}

/* The running round's name in progress reports. */
static void round_label(const struct xtk_save *sv, char *buf, size_t size)
{
    if (sv->phase == PH_FINAL)
        snprintf(buf, size, "round %u (final)", sv->round);
    else
        snprintf(buf, size, "round %u", sv->round);
}

/* A round's last batch is out (the sender threads' eventfd). */
static void on_round_done(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;
    struct xtk__round_result res;
    struct xtk_stats_round row;
    char label[32];
    uint64_t v;

    if (read(sv->notify_fd, &v, sizeof(v)) != sizeof(v))
        return;
    evtimer_del(sv->ev_progress);
    sv->round_end = xtk_now_ns();
    xtk__senders_result(sv->sd, sv->st, &res);
    if (sv->progress_shown) {
        round_label(sv, label, sizeof(label));
        xtk__progress(sv->ctx, "save", label,
                      (unsigned long)(res.entries * XTK__PAGE_SIZE),
                      (unsigned long)(res.entries * XTK__PAGE_SIZE));
    }
    row = (struct xtk_stats_round){
        .round = sv->round++,
        .dirty = sv->round_dirty,
        .sent = res.entries,
        .bytes = stream_bytes(sv) - sv->round_bytes0,
        .ns = xtk_now_ns() - sv->round_start,
    };
    xtk_stats_add_round(sv->st, &row);
    xtk_stats_count(sv->st, "pages sent", res.entries);
    xtk_stats_count(sv->st, "pages with data", res.data_pages);
    xtk_stats_count(sv->st, "zero pages elided", res.zero_pages);
    if (res.gone_pages)
        xtk_stats_count(sv->st, "frames gone (XTAB)", res.gone_pages);
    if (sv->cancel && sv->phase == PH_LIVE) {
        finish(sv, ECANCELED);
        return;
    }
    if (res.err) {
        errno = res.err;
        if (backup_gone(sv, res.err)) {
            backup_lost(sv, res.err, strerror(res.err));
            return;
        }
        XTK_PERROR(sv->ctx, "domain %u: sending memory failed", sv->dom->domid);
        finish(sv, res.err);
        return;
    }
    if (sv->phase == PH_LIVE) {
        drain_then_decide(sv, &res);
    } else if (sv->phase == PH_FINAL) {
        xtk_stats_phase_at(sv->st, "last page sent",
                           res.last_write_ns ? res.last_write_ns
                                             : xtk_now_ns());
        after_final_round(sv);
    }
}

/*
 * A round's progress, in bytes of guest memory (each round its own bar,
 * named by its number, as xl's "iter N"): the logger shows the rate, what
 * is left and an ETA.
 */
static void on_progress(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;
    struct timeval tv = {0, PROGRESS_MS * 1000};
    char label[32];
    uint64_t done = xtk__senders_progress(sv->sd);

    /* A complete bar is drawn once, by the round's end (on_round_done). */
    if (done < sv->round_total) {
        sv->progress_shown = 1;
        round_label(sv, label, sizeof(label));
        xtk__progress(sv->ctx, "save", label,
                      (unsigned long)(done * XTK__PAGE_SIZE),
                      (unsigned long)(sv->round_total * XTK__PAGE_SIZE));
    }
    evtimer_add(sv->ev_progress, &tv);
}

/* ---- the destination --------------------------------------------------- */

/*
 * The backup is lost (silent past the peer timeout, or its connection
 * broke) while the guest is protected by checkpoints: the connection is
 * shut (so that nothing more is sent to it, and a backup that was only
 * slow sees the end of its primary), and the guest runs on here,
 * unprotected.  The backup does not promote itself unless told to
 * (xtk-restore's --failover-timeout): see xtk-restore(1).
 */
static void backup_lost(struct xtk_save *sv, int err, const char *why)
{
    xtk_stats_phase(sv->st, "backup lost");
    xtk_stats_count(sv->st, "backup lost", 1);
    sv->backup_gone = 1;
    XTK_WARN(sv->ctx,
             "domain %u: the backup is lost (%s) after %u epoch(s), %u "
             "acknowledged: the domain runs on here, unprotected%s",
             sv->dom->domid, why, sv->epoch, sv->acked,
             sv->acked || sv->hb_answered
                 ? ""
                 : " (it never answered: an xtk-restore that does not "
                   "acknowledge epochs, older than this xtk, takes "
                   "them but cannot protect the domain)");
    shutdown(sv->opt.peer_fd, SHUT_RDWR);
    finish(sv, err);
}

/* An answer owed since `since` (0: none) for longer than the peer
 * timeout: the backup is lost (1). */
static int overdue(struct xtk_save *sv, uint64_t since, uint64_t now,
                   const char *what)
{
    char why[64];

    if (!since || now - since <= (uint64_t)sv->opt.peer_timeout_ms * 1000000)
        return 0;
    snprintf(why, sizeof(why), "%s for %u ms", what, sv->opt.peer_timeout_ms);
    backup_lost(sv, EHOSTDOWN, why);
    return 1;
}

/* Checks on the backup, and between epochs sends it a heartbeat. */
static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;
    uint64_t now = xtk_now_ns();
    struct xtk__sr_heartbeat hb = {0};

    (void)fd, (void)what;
    if (sv->phase == PH_PEER || sv->phase == PH_DONE)
        return; /* END is out: the reply's own timeout */
    /* An epoch sent and not acknowledged: whatever else the backup reads
     * meanwhile (a later epoch), the acknowledgement is owed from then. */
    if (overdue(sv, sv->ack_due_since, now, "no acknowledgement"))
        return;
    if (sv->phase == PH_SEND)
        return; /* the drain owns the stream; a stuck send times out */
    if (overdue(sv, sv->owed_since, now, "no answer"))
        return;
    if (sv->phase == PH_FINAL && sv->sd) {
        /* The epoch's pages going out: the backup takes them. */
        uint64_t p = xtk__senders_progress(sv->sd);

        if (p != sv->hb_progress && sv->owed_since)
            sv->owed_since = now;
        sv->hb_progress = p;
    }
    if (sv->phase != PH_INTERVAL && sv->phase != PH_SUSPEND)
        return; /* an epoch is on its way: its bytes tell the backup */
    if (xtk__stream_room(sv->out) < HEARTBEAT_ROOM) {
        /* The backup has not read what was sent: the heartbeat would
         * wait in the loop for it.  What it owes decides (overdue). */
        xtk_stats_count(sv->st, "heartbeats put off", 1);
        return;
    }
    hb.seq = ++sv->hb_seq;
    hb.epoch = sv->epoch;
    hb.deadline = sv->opt.peer_timeout_ms;
    if (xtk_stream_write_record(sv->out, XTK_REC_HEARTBEAT, &hb, sizeof(hb)) <
            0 ||
        xtk_stream_flush(sv->out) < 0) {
        backup_lost(sv, errno ? errno : EIO, strerror(errno ? errno : EIO));
        return;
    }
    if (!sv->owed_since)
        sv->owed_since = now;
    xtk_stats_count(sv->st, "heartbeats sent", 1);
}

/* A back-channel message (checked): an epoch acknowledged, or a heartbeat
 * answered. */
static void on_message(struct xtk_save *sv, const struct xtk__sr_msg *m)
{
    uint64_t now = xtk_now_ns();

    if (m->kind == XTK__SR_MSG_PREPARED) {
        if (sv->phase == PH_PREPARE)
            postcopy_prepared(sv, 1);
        return;
    }
    if (m->kind == XTK__SR_MSG_RUNNING || m->kind == XTK__SR_MSG_PAGE) {
        if (!sv->pc_switched) {
            XTK_ERROR(sv->ctx, "the destination sent a post-copy message "
                               "before the switch");
            finish(sv, EPROTO);
        } else if (m->kind == XTK__SR_MSG_RUNNING) {
            if (!sv->pc_running)
                postcopy_running(sv, now, m->value);
        } else if (sv->pc) {
            sv->pc_requests++;
            if (xtk__pc_request(sv->pc, m->value) < 0) {
                XTK_ERROR(sv->ctx,
                          "the destination asked for frame %#llx, "
                          "beyond the domain's memory",
                          (unsigned long long)m->value);
                finish(sv, EPROTO);
            }
        }
        return;
    }
    if (m->kind == XTK__SR_MSG_ACK) {
        if (m->seq <= sv->acked || m->seq > sv->epoch) {
            XTK_WARN(sv->ctx,
                     "the backup acknowledged epoch %u (sent %u, "
                     "acknowledged %u): ignored",
                     m->seq, sv->epoch, sv->acked);
            return;
        }
        sv->acked = m->seq;
        /* It acknowledges: what it still owes counts from now. */
        sv->ack_due_since = sv->acked < sv->epoch ? now : 0;
        fault_point(sv, "acked", m->seq);
        output_release(sv, m->seq);
        if (m->seq == sv->epoch && sv->t_epoch_sent) {
            hist(sv, "ack wait", now - sv->t_epoch_sent);
            xtk_stats_epoch(
                sv->st, &(struct xtk_stats_epoch){
                            .epoch = m->seq, .ack_ns = now - sv->t_epoch_sent});
        }
        hist(sv, "backup apply", m->value);
        xtk_stats_count(sv->st, "epochs acknowledged", 1);
    } else {
        if (m->seq > sv->hb_seq || m->seq <= sv->hb_answered)
            return; /* not one this save sent, or late */
        sv->hb_answered = m->seq;
    }
    /* The backup is alive: what it still owes counts from now. */
    sv->owed_since =
        sv->acked < sv->epoch || sv->hb_answered < sv->hb_seq ? now : 0;
}

/*
 * Reads what the destination sent: back-channel messages (handled here),
 * then its reply.  Returns 1 when the whole reply is in, 0 when more is to
 * come, -1 (errno) when the connection ended or broke, or carried what is
 * neither.
 */
static int read_reply(struct xtk_save *sv)
{
    for (;;) {
        char *at = (char *)&sv->in + sv->in_got;
        size_t want = sizeof(sv->in) - sv->in_got;
        /* Through the caller's transport (it may hold bytes it read from
         * the socket already: reading on to EAGAIN takes them too). */
        ssize_t n = sv->opt.peer_io
                        ? sv->opt.peer_io->recv(sv->opt.peer_io->arg, at, want)
                        : recv(sv->opt.peer_fd, at, want, MSG_DONTWAIT);
        if (n == 0)
            return xtk__fail(ECONNRESET);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        sv->in_got += (size_t)n;
        if (sv->in_got < sizeof(sv->in))
            continue;
        sv->in_got = 0;
        if (sv->in.m.magic == XTK__SR_REPLY_MAGIC &&
            sv->in.m.version == XTK__SR_MSG_VERSION) {
            if (xtk__sr_msg_check(&sv->in.m) < 0) {
                XTK_ERROR(sv->ctx, "the destination sent a malformed message");
                return -1;
            }
            on_message(sv, &sv->in.m);
            if (sv->phase == PH_DONE) /* it ended the save */
                return 0;
            continue;
        }
        sv->reply = sv->in.r;
        sv->reply_got = sizeof(sv->reply);
        if (xtk__sr_reply_check(&sv->reply) < 0) {
            XTK_ERROR(sv->ctx, "the destination sent a malformed reply");
            return -1;
        }
        return 1;
    }
}

/*
 * The link's round-trip time as the kernel measured it on the peer's TCP
 * connection, in ns: the smallest it saw (the smoothed one is inflated by
 * the bulk transfer's queues and delayed acknowledgements), or the
 * smoothed one on a kernel without it; 0 when it is not TCP (a local
 * socket: no link to cross).
 */
static uint64_t link_rtt_ns(struct xtk_save *sv)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    memset(&ti, 0, sizeof(ti));
    if (getsockopt(sv->opt.peer_fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
        return 0;
    return (uint64_t)(ti.tcpi_min_rtt ? ti.tcpi_min_rtt : ti.tcpi_rtt) * 1000;
}

/*
 * A migration's downtime crosses two hosts, whose CLOCK_MONOTONIC cannot
 * be compared, so it is made of spans each measured on one clock: here,
 * suspend request to reply received; there (in the reply), END received
 * to the guest running and the guest running to the reply sent; and the
 * link's round trip.  The guest ran again on the destination when the
 * reply left it: the request-to-reply span, less the destination's
 * resumed-to-reply span, less the reply's way back (half the measured
 * round trip).  A destination of reply version 1 gives no spans: then no
 * downtime is reported.  See xtk_save(3).
 */
static void migration_downtime(struct xtk_save *sv, uint64_t now)
{
    const struct xtk__sr_reply *r = &sv->reply;
    uint64_t span = now - sv->t_request, rtt = link_rtt_ns(sv), est;

    xtk_stats_phase_at(sv->st, "reply received", now);
    hist(sv, "request to reply", span);
    if (sv->pc_running) /* its figures came with its RUNNING message */
        return;
    if (rtt)
        hist(sv, "link rtt", rtt);
    if (r->version < 2)
        return;
    hist(sv, "destination end to resumed", r->end_to_resumed_ns);
    est = span > r->resumed_to_reply_ns + rtt / 2
              ? span - r->resumed_to_reply_ns - rtt / 2
              : 0;
    if (est < r->end_to_resumed_ns) /* it stopped before END got there */
        est = r->end_to_resumed_ns;
    hist(sv, "downtime", est);
}

static void on_peer(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;
    int r = read_reply(sv);
    uint64_t now = xtk_now_ns();

    if (r == 0)
        return;
    if (r < 0 && sv->ev_heartbeat && sv->phase != PH_PEER) {
        backup_lost(sv, errno ? errno : EIO,
                    errno == ECONNRESET ? "its connection ended"
                                        : strerror(errno ? errno : EIO));
        return;
    }
    if (r < 0) {
        if (sv->phase == PH_PEER)
            XTK_PERROR(sv->ctx, "the destination went away before it "
                                "replied: the domain resumes here (if the "
                                "destination resumed its copy, both run)");
        else
            XTK_PERROR(sv->ctx, "the destination went away");
        fail_errno(sv);
        return;
    }
    if (sv->reply.status) {
        errno = sv->reply.status;
        XTK_PERROR(sv->ctx, "the destination failed");
        if (sv->pc_switched && !sv->pc_running) {
            /* It says so before it ever ran the guest (its RUNNING
             * would have come first, on this same connection): this
             * copy is the only one, and runs on. */
            sv->superseded = 0;
            sv->pc_switched = 0;
        }
        finish(sv, sv->reply.status);
        return;
    }
    if (sv->phase == PH_SEND && sv->drain_end) {
        /* The END got there before this end saw its own send finish:
         * the reply waits for it (end_out). */
        sv->reply_early = now;
        event_del(sv->ev_peer);
        return;
    }
    reply_in(sv, now);
}

/* The destination's reply, a success, has come (at now). */
static void reply_in(struct xtk_save *sv, uint64_t now)
{
    if (sv->phase != PH_PEER && sv->ev_heartbeat) {
        /* The backup took over (it was told to, or gave up on this
         * source by itself): this copy must not run on beside it. */
        sv->superseded = 1;
        if (sv->dom->ops->pause(sv->dom, 0) < 0)
            XTK_PERROR(sv->ctx, "domain %u: cannot pause it", sv->dom->domid);
        XTK_ERROR(sv->ctx,
                  "the backup runs the domain (as its domain %u) after "
                  "%u epoch(s): domain %u is paused here; destroy it (run "
                  "it only if the backup's copy is gone)",
                  sv->reply.domid, sv->epoch, sv->dom->domid);
        xtk_stats_phase(sv->st, "backup took over");
        finish(sv, EEXIST);
        return;
    }
    if (sv->phase != PH_PEER) {
        XTK_ERROR(sv->ctx, "the destination says it runs the domain before "
                           "the stream ended");
        finish(sv, EPROTO);
        return;
    }
    evtimer_del(sv->ev_timer);
    migration_downtime(sv, now);
    XTK_INFO(sv->ctx, "the domain runs on the destination as domain %u",
             sv->reply.domid);
    finish(sv, 0);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;

    switch (sv->phase) {
    case PH_SUSPEND:
        XTK_ERROR(sv->ctx, "domain %u did not suspend within %u ms",
                  sv->dom->domid, sv->opt.timeout_ms);
        finish(sv, ETIMEDOUT);
        break;
    case PH_INTERVAL:
        if (!sv->stop_deferred)
            fault_point(sv, "interval", sv->epoch + 1);
        epoch_stop(sv);
        break;
    case PH_DRAIN:
        drain_then_decide(sv, NULL);
        break;
    case PH_PREPARE:
        postcopy_prepared(sv, 0);
        break;
    case PH_PEER:
        XTK_ERROR(sv->ctx,
                  "no reply from the destination within %u ms: "
                  "the domain resumes here (if the destination "
                  "resumed its copy, both run)",
                  sv->opt.timeout_ms);
        finish(sv, ETIMEDOUT);
        break;
    default:
        break;
    }
}

/* A release failed on a backend that closes no epoch more until it
 * goes (output_release): the save fails. */
static void on_release_failed(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;

    (void)fd, (void)what;
    if (sv->phase == PH_DONE)
        return;
    errno = sv->release_err;
    fail_errno(sv);
}

/* ---- start and finish ----------------------------------------------- */

static void finish_tail(struct xtk_save *sv, int err);

/* The source destroyed (or not): its phase, or the error that fails the
 * save.  The save's err, updated. */
static int destroyed(struct xtk_save *sv, int err)
{
    if (sv->destroy_rc < 0) {
        errno = sv->destroy_errno;
        XTK_PERROR(sv->ctx,
                   "domain %u: the save is complete, but the "
                   "domain could not be destroyed",
                   sv->dom->domid);
        /* A failed save leaves the domain running, unless another copy
         * runs it already (the destination replied). */
        if (sv->reply_got)
            XTK_ERROR(sv->ctx,
                      "domain %u stays stopped here: the destination "
                      "runs it",
                      sv->dom->domid);
        else if (sv->dom->ops->resume(sv->dom) < 0)
            XTK_PERROR(sv->ctx, "domain %u: cannot resume it either",
                       sv->dom->domid);
        else {
            stamp(sv, "source resumed");
            XTK_WARN(sv->ctx,
                     "domain %u runs on here; the saved stream is whole: "
                     "restoring it too would run a second copy",
                     sv->dom->domid);
        }
        return sv->destroy_errno ? sv->destroy_errno : EIO;
    }
    xtk_stats_phase_at(sv->st, "source destroyed", sv->destroy_ns);
    return err;
}

/* The save ended well and the destination runs the domain: this side's
 * held output goes (the last epoch's release, then the end of holding),
 * then the connection's end tells the destination, which holds its
 * copy's output until then.  On the end's thread (the loop does not
 * wait for the round trips): the release's outcome is kept for the loop
 * to count. */
static void end_output_sent(struct xtk_save *sv)
{
    uint32_t upto = release_bound(sv, sv->out_closed);

    if (upto) {
        sv->end_o = (struct xtk__output){0};
        sv->end_r = sv->dom->ops->output_release(sv->dom, upto, &sv->end_o);
        sv->end_errno = errno;
        sv->end_upto = upto;
        sv->end_rel = 1;
    }
    output_end(sv, 0);
    shutdown(sv->opt.peer_fd, SHUT_WR);
}

/* A failed migration tells its destination by closing: it destroys what
 * it built. */
static int tell_peer(const struct xtk_save *sv, int err)
{
    return err && (sv->opt.flags & XTK_SAVE_MIGRATE) && err != ECONNRESET &&
           !sv->reply_got;
}

/*
 * The domain's side of the end, on the end's thread (end_main), or on the
 * loop's inside xtk_save_start: the threads a failure cut short joined,
 * the senders freed (they were stopped), what was sent ahead collected
 * (async_settle), then a complete save that does not keep its source destroys
 * it, after releasing the output the destination's copy may now send; any other
 * end ends the output's hold (output_end) and resumes a source it had asked to
 * suspend; then the dirty log and the suspend channel are undone. What ended()
 * reports is kept in sv.
 */
static void end_domain(struct xtk_save *sv)
{
    struct xtk_domain *dom = sv->dom;
    int err;

    /* The threads a failure cut short (finish told them) are waited for:
     * the backend's own save cannot be stopped; a peer's send ends with
     * its shutdown, a file's soon. */
    if (sv->dthread_on) {
        pthread_join(sv->dthread, NULL);
        sv->dthread_on = 0;
    }
    if (sv->drain_on) {
        pthread_join(sv->drain_thread, NULL);
        sv->drain_on = 0;
    }
    xtk__pc_free(sv->pc);
    sv->pc = NULL;
    xtk__senders_free(sv->sd);
    sv->sd = NULL;
    /* What was sent ahead is collected before the domain's end: the
     * backend's next operation would wait for it anyway. */
    err = async_settle(sv);
    if (err && !sv->fin_err) {
        sv->fin_err = err;
        if (tell_peer(sv, err))
            shutdown(sv->opt.peer_fd, SHUT_RDWR);
    }
    err = sv->fin_err;
    if (!err && !(sv->opt.flags & XTK_SAVE_KEEP)) {
        if (sv->reply_got)
            end_output_sent(sv);
        vcpu_stats_read(sv);
        sv->destroying = 1;
        sv->destroy_rc = dom->ops->destroy(dom);
        sv->destroy_errno = errno;
        sv->destroy_ns = xtk_now_ns();
    } else {
        if (!err && sv->reply_got)
            end_output_sent(sv);
        else
            output_end(sv, err);
        vcpu_stats_read(sv);
        if (sv->suspend_asked && !sv->superseded) {
            sv->resume_tried = 1;
            sv->resume_rc = dom->ops->resume(dom);
            sv->resume_errno = errno;
            if (sv->resume_rc == 0)
                stamp(sv, "source resumed");
        }
    }
    if (sv->logdirty)
        dom->ops->logdirty_disable(dom);
    if (sv->suspend_ready)
        dom->ops->suspend_teardown(dom);
    sv->logdirty = sv->suspend_ready = sv->stopped = 0;
}

static void *end_main(void *arg)
{
    struct xtk_save *sv = arg;

    end_domain(sv);
    wake_loop(sv, sv->end_fd);
    return NULL;
}

/* The domain's side of the end is done (end_domain): what it did is told,
 * then done. */
static void ended(struct xtk_save *sv)
{
    struct xtk_domain *dom = sv->dom;
    int err = sv->fin_err;

    settled(sv);
    if (sv->end_rel) {
        sv->end_rel = 0;
        errno = sv->end_errno;
        release_done(sv, sv->end_upto, sv->end_r, &sv->end_o);
    }
    vcpu_stats_count(sv);
    if (sv->destroying) {
        err = destroyed(sv, err);
    } else {
        if (sv->resume_tried && sv->resume_rc < 0) {
            errno = sv->resume_errno;
            XTK_PERROR(sv->ctx,
                       "domain %u: cannot resume it (it will be resumed "
                       "when this process exits)",
                       dom->domid);
        }
        /* (t_request: a suspend was ever asked) */
        if (err && sv->t_request && !sv->superseded)
            XTK_WARN(sv->ctx, "domain %u: the save failed; the domain runs on",
                     dom->domid);
    }
    finish_tail(sv, err);
}

static void on_ended(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;

    (void)fd, (void)what;
    join_then(sv, &sv->end_thread, &sv->end_on, ended);
}

/* Starts end_domain on a thread; -1: do it here. */
static int end_async(struct xtk_save *sv)
{
    if (sv->in_start)
        return -1; /* nothing was set up: nothing to wait for */
    if (sv->end_fd < 0)
        sv->end_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sv->end_fd < 0)
        return -1;
    if (!sv->ev_end)
        sv->ev_end = event_new(xtk_ctx_event_base(sv->ctx), sv->end_fd, EV_READ,
                               on_ended, sv);
    if (!sv->ev_end || event_add(sv->ev_end, NULL) < 0)
        return -1;
    if (pthread_create(&sv->end_thread, NULL, end_main, sv) != 0) {
        event_del(sv->ev_end);
        return -1;
    }
    sv->end_on = 1;
    return 0;
}

/* The end: the domain's fate, undoing what was set up, the callback. */
static void finish(struct xtk_save *sv, int err)
{
    struct xtk_domain *dom = sv->dom;

    if (sv->phase == PH_DONE)
        return;
    sv->phase = PH_DONE;
    ev_stop(sv->ev_join); /* a thread's join pending: done here */
    sv->join_next = NULL;
    if (sv->setup_on) { /* freed during the set-up: it ends first */
        pthread_join(sv->setup_thread, NULL);
        sv->setup_on = 0;
    }
    /* A failure cuts a peer's send short (the drain thread's, the
     * post-copy server's write); the end's thread waits for them. */
    if (err && (sv->opt.flags & XTK_SAVE_MIGRATE) && sv->drain_on)
        shutdown(sv->opt.peer_fd, SHUT_RDWR);
    if (err && sv->pc)
        shutdown(sv->opt.peer_fd, SHUT_RDWR);
    ev_stop(sv->ev_pc);
    if (err && sv->pc_switched)
        XTK_ERROR(sv->ctx,
                  "post-copy failed %.0f ms after the switch: domain %u "
                  "stays paused here, its memory and state as at the "
                  "switch; the guest ran on the destination since (which "
                  "destroys its copy).  Destroy this one, or run it (xtk "
                  "unpause) only if what the guest did since the switch "
                  "may be lost",
                  (xtk_now_ns() - sv->t_switch) / 1e6, dom->domid);
    /* The sender threads stop here; they are waited for on the end's
     * thread, before anything changes under them (waking eight
     * threads on a loaded host takes ms the loop need not wait). */
    xtk__senders_abort(sv->sd);
    ev_stop(sv->ev_notify);
    ev_stop(sv->ev_suspend);
    ev_stop(sv->ev_peer);
    ev_stop(sv->ev_timer);
    ev_stop(sv->ev_relfail);
    ev_stop(sv->ev_progress);
    ev_stop(sv->ev_watch);
    ev_stop(sv->ev_busy);
    ev_stop(sv->ev_heartbeat);
    ev_stop(sv->ev_drain);
    ev_stop(sv->ev_async);
    if (tell_peer(sv, err))
        shutdown(sv->opt.peer_fd, SHUT_RDWR);
    sv->fin_err = err;
    if (end_async(sv) == 0)
        return; /* ended() once the end's thread is out */
    end_domain(sv);
    ended(sv);
}

/* What is left of the end once the domain's fate is settled. */
static void finish_tail(struct xtk_save *sv, int err)
{
    xtk_save_done_fn *done = sv->done;
    void *arg = sv->done_arg;

    /* The caller's descriptor as it was given (O_NONBLOCK was ours). */
    if (sv->peer_fl >= 0) {
        fcntl(sv->opt.peer_fd, F_SETFL, sv->peer_fl);
        sv->peer_fl = -1;
    }
    stamp(sv, "save done");
    sv->finished = 1;
    sv->err = err;
    if (sv->in_start && sv->ev_done) {
        /* Ended inside xtk_save_start (a suspend request that failed at
         * once): done comes from the loop, after start has returned. */
        struct timeval now = {0, 0};

        evtimer_add(sv->ev_done, &now);
        return;
    }
    if (done)
        done(sv, err, arg);
}

static void on_done_deferred(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;

    if (sv->done)
        sv->done(sv, sv->err, sv->done_arg);
}

static int check_options(struct xtk_save_options *o)
{
    uint32_t pc = o->flags & POSTCOPY_FLAGS;

    if ((o->flags &
         ~(XTK_SAVE_LIVE | XTK_SAVE_KEEP | XTK_SAVE_MIGRATE |
           XTK_SAVE_POSTCOPY | XTK_SAVE_POSTCOPY_AUTO | XTK_SAVE_UNHELD)) ||
        (o->max_postcopy_bandwidth &&
         o->max_postcopy_bandwidth < MIN_POSTCOPY_BANDWIDTH) ||
        (pc &&
         (pc == POSTCOPY_FLAGS ||
          (o->flags & (XTK_SAVE_LIVE | XTK_SAVE_MIGRATE | XTK_SAVE_KEEP)) !=
              (XTK_SAVE_LIVE | XTK_SAVE_MIGRATE) ||
          o->checkpoint_interval_ms)) ||
        (o->peer_io && (!(o->flags & XTK_SAVE_MIGRATE) || !o->peer_io->recv)) ||
        o->suspend > XTK_SUSPEND_XL || o->policy > XTK_SAVE_POLICY_XEN ||
        o->senders > MAX_SENDERS ||
        ((o->flags & XTK_SAVE_MIGRATE) && o->peer_fd < 0) ||
        (o->checkpoints && !o->checkpoint_interval_ms))
        return xtk__fail(EINVAL);
    if (!o->max_downtime_ms)
        o->max_downtime_ms = DEFAULT_DOWNTIME_MS;
    if (!o->max_rounds)
        o->max_rounds = DEFAULT_ROUNDS;
    if (!o->senders)
        o->senders = DEFAULT_SENDERS;
    if (!o->timeout_ms)
        o->timeout_ms = DEFAULT_TIMEOUT_MS;
    if (!o->heartbeat_ms)
        o->heartbeat_ms = DEFAULT_HEARTBEAT_MS;
    if (!o->peer_timeout_ms)
        o->peer_timeout_ms = DEFAULT_PEER_TIMEOUT_MS;
    if (o->peer_timeout_ms > INT_MAX || o->heartbeat_ms >= o->peer_timeout_ms)
        return xtk__fail(EINVAL);
    return 0;
}

struct xtk_save *xtk_save_new(struct xtk_domain *dom, struct xtk_stream *out,
                              const struct xtk_save_options *opts)
{
    struct xtk_save *sv;

    if (!dom || !out)
        return xtk__fail_null(EINVAL);
    sv = calloc(1, sizeof(*sv));
    if (!sv)
        return NULL;
    sv->ctx = dom->ctx;
    fault_read(sv);
    sv->dom = dom;
    sv->out = out;
    sv->notify_fd = sv->suspend_fd = sv->dfd = sv->fd_flags = -1;
    sv->peer_fl = sv->end_fd = -1;
    sv->drain_fd = sv->pc_fd = sv->setup_fd = -1;
    if (opts)
        sv->opt = *opts;
    if (check_options(&sv->opt) < 0) {
        free(sv);
        return xtk__fail_null(EINVAL);
    }
    sv->st = xtk_stats_new("save");
    if (!sv->st) {
        free(sv);
        return NULL;
    }
    return sv;
}

/*
 * What start needs from the domain first: its shape, its stream layout,
 * how its RAM is mapped (whole where the backend can).
 */
static int prepare(struct xtk_save *sv)
{
    struct xtk_domain *dom = sv->dom;
    struct xtk_domain_info info;

    if (dom->ops->info(dom, &info) < 0)
        return -1;
    if (info.flags & (XTK_DOMINFO_EMPTY | XTK_DOMINFO_CRASHED)) {
        XTK_ERROR(sv->ctx, "domain %u is %s: nothing to save", dom->domid,
                  info.flags & XTK_DOMINFO_EMPTY ? "empty" : "crashed");
        return xtk__fail(EINVAL);
    }
    sv->cfg.nr_pages = info.nr_pages;
    sv->cfg.no_store = !(info.flags & XTK_DOMINFO_STORE);
    if (sv->dom->ops->net_sink &&
        sv->dom->ops->net_sink(sv->dom, sv->cfg.net, sizeof(sv->cfg.net)) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: its network sink", dom->domid);
        return -1;
    }
    sv->cfg.nr_vcpus = info.nr_vcpus;
    memcpy(sv->cfg.name, info.name, sizeof(sv->cfg.name));
    if (dom->ops->layout) {
        if (dom->ops->layout(dom, &sv->layout) < 0) {
            XTK_PERROR(sv->ctx, "domain %u: no stream layout for it",
                       dom->domid);
            return -1;
        }
        sv->native = !!(sv->layout.flags & XTK__LAYOUT_NATIVE);
        sv->delegate = !!(sv->layout.flags & XTK__LAYOUT_DELEGATE);
    }
    if (sv->delegate) {
        if (!dom->ops->save_delegate || sv->opt.checkpoint_interval_ms ||
            (sv->opt.flags & XTK_SAVE_MIGRATE)) {
            XTK_ERROR(sv->ctx,
                      "domain %u: the %s backend's own save writes its "
                      "stream: to a file or pipe, without checkpoints (and "
                      "xtk-restore does not restore it yet: use xl restore)",
                      dom->domid, dom->ops->name);
            return xtk__fail(ENOTSUP);
        }
        return 0;
    }
    if (sv->native && sv->opt.checkpoint_interval_ms)
        XTK_INFO(sv->ctx,
                 "domain %u: a checkpointed stream in the %s backend's own "
                 "layout: xtk-restore takes it; Xen's own restore only as "
                 "Remus's backup",
                 dom->domid, dom->ops->name);
    if (dom->ops->map_all) {
        sv->ram = dom->ops->map_all(dom, PROT_READ);
        if (!sv->ram)
            return -1;
    } else if (!dom->ops->map_batch || !dom->ops->unmap_batch) {
        XTK_ERROR(sv->ctx, "the %s backend cannot map a guest's memory",
                  dom->ops->name);
        return xtk__fail(ENOTSUP);
    }
    if ((sv->opt.flags & POSTCOPY_FLAGS) &&
        (sv->native || !sv->ram || dom->ops->frames)) {
        XTK_ERROR(sv->ctx,
                  "domain %u: post-copy needs the guest's memory mapped "
                  "whole and a destination that can take frames on demand: "
                  "not in the %s backend",
                  dom->domid, dom->ops->name);
        return xtk__fail(ENOTSUP);
    }
    return 0;
}

/*
 * The frame space (once the dirty log is on, where it is sparse: see the
 * backend's frames) and the bitmaps and frame list sized for it.
 */
static int frame_space(struct xtk_save *sv)
{
    struct xtk_domain *dom = sv->dom;

    if (dom->ops->frames) {
        if (dom->ops->frames(dom, sv->frames_late ? XTK__FRAMES_STOPPED : 0,
                             &sv->end, &sv->present) < 0) {
            XTK_PERROR(sv->ctx, "domain %u: cannot tell its frames",
                       dom->domid);
            return -1;
        }
        sv->nr_present = 0;
        for (uint64_t w = 0; w < (sv->end + 63) / 64; w++)
            sv->nr_present += (uint64_t)__builtin_popcountll(sv->present[w]);
    } else {
        sv->end = sv->nr_present = sv->cfg.nr_pages;
    }
    if (!sv->opt.max_bytes)
        sv->opt.max_bytes = 3 * (sv->nr_present << XTK__PAGE_SHIFT);
    sv->words = (sv->end + 63) / 64;
    sv->bitmap = calloc(sv->words ? sv->words : 1, 8);
    sv->pending = calloc(sv->words ? sv->words : 1, 8);
    sv->populated = malloc((sv->words ? sv->words : 1) * 8);
    sv->pfns = malloc((sv->end ? sv->end : 1) * sizeof(*sv->pfns));
    if (sv->opt.flags & POSTCOPY_FLAGS)
        sv->pc_todo = calloc(sv->words ? sv->words : 1, 8);
    if (!sv->bitmap || !sv->pending || !sv->populated || !sv->pfns ||
        ((sv->opt.flags & POSTCOPY_FLAGS) && !sv->pc_todo))
        return -1;
    memset(sv->populated, 0xff, sv->words * 8); /* no populated op */
    return 0;
}

static int make_events(struct xtk_save *sv)
{
    struct event_base *base = xtk_ctx_event_base(sv->ctx);

    if (sv->notify_fd < 0)
        sv->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sv->notify_fd < 0)
        return -1;
    sv->ev_notify =
        event_new(base, sv->notify_fd, EV_READ | EV_PERSIST, on_round_done, sv);
    sv->ev_suspend =
        event_new(base, sv->suspend_fd, EV_READ | EV_PERSIST, on_suspend, sv);
    sv->ev_timer = evtimer_new(base, on_timer, sv);
    sv->ev_relfail = evtimer_new(base, on_release_failed, sv);
    sv->ev_done = evtimer_new(base, on_done_deferred, sv);
    if (!sv->ev_done || !sv->ev_relfail)
        return xtk__fail(ENOMEM);
    if (drain_events(sv) < 0)
        return -1;
    sv->ev_progress = evtimer_new(base, on_progress, sv);
    sv->ev_watch = evtimer_new(base, on_watch, sv);
    sv->ev_busy = evtimer_new(base, on_busy, sv);
    if (sv->opt.flags & POSTCOPY_FLAGS) {
        sv->pc_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (sv->pc_fd < 0)
            return -1;
        sv->ev_pc =
            event_new(base, sv->pc_fd, EV_READ | EV_PERSIST, on_pc_done, sv);
        if (!sv->ev_pc)
            return xtk__fail(ENOMEM);
    }
    if (sv->opt.flags & XTK_SAVE_MIGRATE)
        sv->ev_peer =
            event_new(base, sv->opt.peer_fd, EV_READ | EV_PERSIST, on_peer, sv);
    if ((sv->opt.flags & XTK_SAVE_MIGRATE) && sv->opt.checkpoint_interval_ms &&
        !(sv->ev_heartbeat = event_new(base, -1, EV_PERSIST, on_heartbeat, sv)))
        return xtk__fail(ENOMEM);
    if (!sv->ev_notify || !sv->ev_suspend || !sv->ev_timer ||
        !sv->ev_progress || !sv->ev_watch || !sv->ev_busy ||
        ((sv->opt.flags & XTK_SAVE_MIGRATE) && !sv->ev_peer))
        return xtk__fail(ENOMEM);
    event_add(sv->ev_notify, NULL);
    if (sv->ev_peer)
        event_add(sv->ev_peer, NULL);
    return 0;
}

/*
 * Image and domain headers, then, in xtk's layout, STATIC_DATA_END and the
 * domain's shape; in a native one, the backend's static data and
 * STATIC_DATA_END.
 */
static int write_headers(struct xtk_save *sv)
{
    uint8_t params[XTK__SR_PARAMS_SIZE];
    size_t plen = xtk__sr_config_encode(&sv->cfg, params);
    int r;

    if (sv->native)
        r = xtk_stream_write_image_header(sv->out) < 0 ||
            xtk_stream_write_domain_header(sv->out, sv->layout.domain_type,
                                           sv->layout.xen_major,
                                           sv->layout.xen_minor) < 0 ||
            write_records(sv, sv->layout.static_data, sv->layout.static_len) <
                0 ||
            xtk_stream_write_record(sv->out, XTK_REC_STATIC_DATA_END, NULL, 0) <
                0;
    else
        r = xtk_stream_write_image_header(sv->out) < 0 ||
            xtk_stream_write_domain_header(sv->out, XTK_DOMAIN_X86_HVM, 0, 0) <
                0 ||
            xtk_stream_write_record(sv->out, XTK_REC_STATIC_DATA_END, NULL, 0) <
                0 ||
            xtk_stream_write_record(sv->out, XTK_REC_HVM_PARAMS, params,
                                    (uint32_t)plen) < 0;
    if (r) {
        XTK_PERROR(sv->ctx, "cannot write the stream's headers");
        return -1;
    }
    return 0;
}

/* The backend's suspend, by the method asked for: its fd is then ready. */
static int setup_suspend(struct xtk_save *sv)
{
    struct xtk_domain *dom = sv->dom;
    unsigned int errors = sv->ctx->errors;

    if (dom->ops->suspend_setup(dom, (enum xtk__suspend_method)sv->opt.suspend,
                                &sv->suspend_fd) < 0) {
        if (sv->ctx->errors == errors) /* else the backend said why */
            XTK_PERROR(sv->ctx, "domain %u: cannot suspend it that way",
                       dom->domid);
        return -1;
    }
    sv->suspend_ready = 1;
    stamp(sv, "suspend set up");
    return 0;
}

/* ---- a stream the backend's own save writes (XTK__LAYOUT_DELEGATE) ---- */

/*
 * The backend's save wants the guest stopped: the request, then the wait
 * for the "suspended" notification, on the delegate thread (the loop has
 * nothing else to do for this save meanwhile).
 */
static int delegate_suspend(void *arg)
{
    struct xtk_save *sv = arg;
    struct xtk_domain *dom = sv->dom;
    uint64_t deadline, now;
    int r;

    sv->t_request = xtk_now_ns();
    xtk_stats_phase_at(sv->st, "suspend requested", sv->t_request);
    if (dom->ops->suspend_request(dom) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: cannot ask it to suspend", dom->domid);
        return -1;
    }
    sv->suspend_asked = 1;
    deadline = sv->t_request + sv->opt.timeout_ms * 1000000ull;
    for (;;) {
        struct pollfd p = {.fd = sv->suspend_fd, .events = POLLIN};

        now = xtk_now_ns();
        if (now >= deadline) {
            XTK_ERROR(sv->ctx, "domain %u did not suspend within %u ms",
                      dom->domid, sv->opt.timeout_ms);
            return xtk__fail(ETIMEDOUT);
        }
        r = poll(&p, 1, (int)((deadline - now) / 1000000 + 1));
        if (r < 0 && errno != EINTR)
            return -1;
        if (r <= 0)
            continue;
        r = dom->ops->suspend_check(dom);
        if (r < 0) {
            XTK_PERROR(sv->ctx, "domain %u: suspend failed", dom->domid);
            return -1;
        }
        if (r == 1)
            break;
    }
    sv->stopped = 1;
    now = xtk_now_ns();
    xtk_stats_phase_at(sv->st, "suspended notified", now);
    hist(sv, "suspend", now - sv->t_request);
    return 0;
}

static void *delegate_main(void *arg)
{
    struct xtk_save *sv = arg;

    if (sv->dom->ops->save_delegate(sv->dom, sv->dfd,
                                    !!(sv->opt.flags & XTK_SAVE_LIVE),
                                    delegate_suspend, sv) < 0)
        sv->delegate_err = errno ? errno : EIO;
    wake_loop(sv, sv->notify_fd);
    return NULL;
}

static void delegate_joined(struct xtk_save *sv);

/* The backend's save is over: the framing's end, the commit, the end. */
static void on_delegate_done(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;
    uint64_t v;

    (void)fd, (void)what;
    if (read(sv->notify_fd, &v, sizeof(v)) != sizeof(v))
        return;
    join_then(sv, &sv->dthread, &sv->dthread_on, delegate_joined);
}

static void delegate_joined(struct xtk_save *sv)
{
    if (sv->fd_flags >= 0)
        fcntl(sv->dfd, F_SETFL, sv->fd_flags); /* as the caller gave it */
    if (sv->delegate_err) {
        XTK_ERROR(sv->ctx, "domain %u: the %s backend's save failed: %s",
                  sv->dom->domid, sv->dom->ops->name,
                  strerror(sv->delegate_err));
        finish(sv, sv->delegate_err);
        return;
    }
    if (sv->cancel) {
        finish(sv, ECANCELED);
        return;
    }
    if (xtk__stream_external_end(sv->out) < 0) {
        fail_errno(sv);
        return;
    }
    stream_end(sv, 1);
}

static int delegate_start(struct xtk_save *sv)
{
    struct xtk_domain *dom = sv->dom;
    int e;

    if (xtk__stream_external_begin(sv->out, &sv->dfd) < 0) {
        XTK_ERROR(sv->ctx,
                  "domain %u: the %s backend's own save writes the stream "
                  "itself: to a plain file, pipe or socket (no compression)",
                  dom->domid, dom->ops->name);
        return xtk__fail(EINVAL);
    }
    if (setup_suspend(sv) < 0)
        return -1;
    /* Its writes block. */
    sv->fd_flags = fcntl(sv->dfd, F_GETFL);
    if (sv->fd_flags >= 0 && (sv->fd_flags & O_NONBLOCK))
        fcntl(sv->dfd, F_SETFL, sv->fd_flags & ~O_NONBLOCK);
    else
        sv->fd_flags = -1; /* nothing to give back */
    sv->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sv->notify_fd >= 0)
        sv->ev_notify = event_new(xtk_ctx_event_base(sv->ctx), sv->notify_fd,
                                  EV_READ | EV_PERSIST, on_delegate_done, sv);
    if (!sv->ev_notify)
        goto err;
    event_add(sv->ev_notify, NULL);
    e = pthread_create(&sv->dthread, NULL, delegate_main, sv);
    if (e) {
        errno = e;
        goto err;
    }
    sv->dthread_on = 1;
    XTK_INFO(sv->ctx, "domain %u: the %s backend's own save writes the stream",
             dom->domid, dom->ops->name);
    return 0;
err : {
    int er = errno ? errno : ENOMEM;

    if (sv->fd_flags >= 0)
        fcntl(sv->dfd, F_SETFL, sv->fd_flags);
    finish(sv, er);
    return xtk__fail(er);
}
}

static int start(struct xtk_save *sv, xtk_save_done_fn *done, void *arg);

int xtk_save_start(struct xtk_save *sv, xtk_save_done_fn *done, void *arg)
{
    int r;

    if (!sv)
        return xtk__fail(EINVAL);
    if (sv->started)
        return xtk__fail(EBUSY);
    sv->started = 1;
    sv->in_start = 1;
    r = start(sv, done, arg);
    sv->in_start = 0;
    return r;
}

static void *setup_main(void *arg);
static void on_setup_done(evutil_socket_t fd, short what, void *arg);

/*
 * The start on the caller's thread: the peer's descriptor made
 * non-blocking, the set-up's thread started.  Everything that asks the
 * backend or writes the stream is on that thread (setup_main); what it
 * finds comes to the loop (on_setup_done), and a failure there through
 * done.
 */
static int start(struct xtk_save *sv, xtk_save_done_fn *done, void *arg)
{
    int fl, e;

    stamp(sv, "save started");
    sv->done = done;
    sv->done_arg = arg;
    sv->phase = PH_SETUP;
    if (sv->opt.flags & XTK_SAVE_MIGRATE) {
        fl = fcntl(sv->opt.peer_fd, F_GETFL);
        if (fl < 0 || fcntl(sv->opt.peer_fd, F_SETFL, fl | O_NONBLOCK) < 0)
            goto err;
        if (!(fl & O_NONBLOCK))
            sv->peer_fl = fl;
    }
    sv->setup_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sv->setup_fd < 0)
        goto err;
    sv->ev_setup = event_new(xtk_ctx_event_base(sv->ctx), sv->setup_fd,
                             EV_READ | EV_PERSIST, on_setup_done, sv);
    if (!sv->ev_setup || event_add(sv->ev_setup, NULL) < 0)
        goto err;
    e = pthread_create(&sv->setup_thread, NULL, setup_main, sv);
    if (e) {
        errno = e;
        goto err;
    }
    sv->setup_on = 1;
    return 0;
err:
    /* Nothing was asked of the domain: undo and say so. */
    e = errno ? errno : ENOMEM;
    XTK_PERROR(sv->ctx, "domain %u: cannot start the save", sv->dom->domid);
    sv->done = NULL;
    finish(sv, e);
    return xtk__fail(e);
}

/* The dirty log's enabling returned r (0, or -1 with errno). */
static int dirty_log_on(struct xtk_save *sv, int r)
{
    if (r < 0) {
        XTK_PERROR(sv->ctx, "domain %u: cannot log its dirty memory",
                   sv->dom->domid);
        return -1;
    }
    sv->logdirty = 1;
    stamp(sv, "dirty log on");
    return 0;
}

/* Checkpoints to a backup: the guest's output is held from now until the
 * backup has the epoch it belongs to.  0, or -1 with errno. */
static int hold_output(struct xtk_save *sv)
{
    struct xtk_domain *dom = sv->dom;
    int checkpoints =
        (sv->opt.flags & XTK_SAVE_MIGRATE) && sv->opt.checkpoint_interval_ms;

    if (!checkpoints)
        return 0;
    if (sv->opt.flags & XTK_SAVE_UNHELD) {
        XTK_WARN(sv->ctx,
                 "domain %u: its output is not held (asked): a failover "
                 "may repeat output a client saw",
                 dom->domid);
    } else if (dom->ops->output_hold &&
               dom->ops->output_hold(dom, XTK__OUTPUT_HOLD) == 0) {
        sv->holding = 1;
        stamp(sv, "output held");
    } else if (dom->ops->output_hold && errno != ENOTSUP) {
        XTK_PERROR(sv->ctx, "domain %u: cannot hold its output", dom->domid);
        return -1;
    } else {
        XTK_WARN(sv->ctx,
                 "domain %u: this backend cannot hold the guest's output "
                 "until the backup has its epoch: a failover may repeat "
                 "output",
                 dom->domid);
    }
    return 0;
}

/*
 * The set-up, on its own thread (the loop's thread does nothing with the
 * domain or the stream meanwhile): the domain's shape and layout, the
 * suspend channel, the headers, the dirty log (KVM write-protects the
 * whole memory: ms for a GiB), the frame space and what was ever written,
 * the output hold.  0, or -1 with errno, having logged why.
 */
static int setup_work(struct xtk_save *sv)
{
    struct xtk_domain *dom = sv->dom;

    if (prepare(sv) < 0)
        return -1;
    stamp(sv, "domain prepared");
    vcpu_stats_begin(sv);
    if (sv->delegate)
        return 0; /* delegate_start, from the loop */
    if (setup_suspend(sv) < 0)
        return -1;
    if (write_headers(sv) < 0)
        return -1;
    stamp(sv, "headers sent");
    /* A sparse frame space is read once the guest is stopped when the
     * save is not live (as Xen's save does: the guest's frames cannot
     * change under the reading, and a backend can stop reading once it
     * has found them all); live, it is read now, with the dirty log on,
     * so that frames the guest adds meanwhile are in the log. */
    sv->frames_late = dom->ops->frames && !(sv->opt.flags & XTK_SAVE_LIVE) &&
                      !sv->opt.checkpoint_interval_ms;
    if (((sv->opt.flags & XTK_SAVE_LIVE) || sv->opt.checkpoint_interval_ms ||
         (dom->ops->frames && !sv->frames_late)) &&
        dirty_log_on(sv, dom->ops->logdirty_enable(dom)) < 0)
        return -1;
    if (!sv->frames_late) {
        if (frame_space(sv) < 0)
            return -1;
        if (dom->ops->frames)
            stamp(sv, "frame space read");
    }
    /* Live, frames written from here on are in the log: what was never
     * written so far needs no reading in round 0. */
    if ((sv->opt.flags & XTK_SAVE_LIVE) && dom->ops->populated &&
        dom->ops->populated(dom, sv->populated, sv->words * 64) < 0) {
        XTK_PERROR(sv->ctx, "domain %u: cannot tell its populated memory",
                   dom->domid);
        return -1;
    }
    return hold_output(sv);
}

/* The set-up's end, on its thread too: the sender threads (their starts
 * are ~0.1 ms each), and a live save's first round's pages (a walk of
 * the whole guest: 3 ms of a 1 GiB guest's).  The bandwidth limit is
 * setup_joined's (the caller may change it meanwhile). */
static int setup_senders(struct xtk_save *sv)
{
    sv->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sv->notify_fd < 0)
        return -1;
    sv->sd = xtk__senders_new(sv->dom, sv->opt.senders, sv->ram, sv->out,
                              sv->notify_fd);
    if (!sv->sd)
        return -1;
    if (sv->opt.flags & XTK_SAVE_LIVE)
        sv->first_n = all_pfns(sv);
    return 0;
}

static void *setup_main(void *arg)
{
    struct xtk_save *sv = arg;

    errno = 0;
    if (setup_work(sv) < 0 || (!sv->delegate && setup_senders(sv) < 0))
        sv->setup_err = errno ? errno : EIO;
    wake_loop(sv, sv->setup_fd);
    return NULL;
}

static void setup_joined(struct xtk_save *sv);

/* The set-up is over (setup_main): the first round, or the suspend
 * request; or the end (a failure, a cancel meanwhile: nothing was asked
 * of the guest yet, and finish undoes what the set-up did). */
static void on_setup_done(evutil_socket_t fd, short what, void *arg)
{
    struct xtk_save *sv = arg;
    uint64_t v;

    (void)fd, (void)what;
    if (read(sv->setup_fd, &v, sizeof(v)) != sizeof(v))
        return;
    event_del(sv->ev_setup);
    join_then(sv, &sv->setup_thread, &sv->setup_on, setup_joined);
}

static void setup_joined(struct xtk_save *sv)
{
    struct xtk_domain *dom = sv->dom;

    if (sv->setup_err || sv->cancel) {
        finish(sv, sv->setup_err ? sv->setup_err : ECANCELED);
        return;
    }
    if (sv->delegate) {
        if (delegate_start(sv) < 0 && sv->phase != PH_DONE)
            fail_errno(sv);
        return;
    }
    if (make_events(sv) < 0)
        goto err;
    xtk__senders_set_limit(sv->sd, sv->opt.max_bandwidth);
    sv->fixed_ns = FIXED_ESTIMATE_NS;
    if (sv->opt.flags & XTK_SAVE_LIVE) {
        sv->phase = PH_LIVE;
        sv->round_dirty = sv->first_n;
        start_round(sv, sv->first_n, sv->populated);
    } else {
        request_suspend(sv);
    }
    return;
err:
    XTK_PERROR(sv->ctx, "domain %u: cannot start the save", dom->domid);
    fail_errno(sv);
}

static void run_done(struct xtk_save *sv, int err, void *arg)
{
}

int xtk_save_run(struct xtk_save *sv)
{
    if (!sv)
        return xtk__fail(EINVAL);
    if (xtk_save_start(sv, run_done, NULL) < 0)
        return -1;
    if (xtk__loop_until(sv->ctx, &sv->finished) < 0)
        finish(sv, EIO);
    return sv->err ? xtk__fail(sv->err) : 0;
}

void xtk_save_cancel(struct xtk_save *sv)
{
    if (!sv || !sv->started || sv->phase == PH_DONE)
        return;
    sv->cancel = 1;
    if (sv->opt.checkpoint_interval_ms && sv->epoch > 0) {
        /* Checkpointing: the current epoch ends the stream. */
        if (sv->phase == PH_INTERVAL) {
            evtimer_del(sv->ev_timer);
            epoch_stop(sv);
        }
        return;
    }
    if (sv->phase == PH_POSTCOPY || (sv->phase == PH_PEER && sv->pc_switched))
        /* As QEMU's: the guest runs there on memory that is here. */
        XTK_WARN(sv->ctx,
                 "domain %u: a post-copy cannot be cancelled: it ends when "
                 "the destination has all of the memory, or fails when the "
                 "link is silent for %u ms",
                 sv->dom->domid, sv->opt.peer_timeout_ms);
    else if (sv->phase == PH_LIVE)
        xtk__senders_abort(sv->sd); /* finish() once the round stops */
    else if (sv->phase == PH_SUSPEND || sv->phase == PH_DRAIN ||
             sv->phase == PH_DIRTY || sv->phase == PH_PREPARE)
        finish(sv, ECANCELED);
    /* PH_SETUP: on_setup_done ends it once the set-up's thread is out. */
}

int xtk_save_set_max_downtime(struct xtk_save *sv, uint32_t ms)
{
    if (!sv)
        return xtk__fail(EINVAL);
    /* Read by the policy at each round's end: the next decision uses it. */
    sv->opt.max_downtime_ms = ms ? ms : DEFAULT_DOWNTIME_MS;
    return 0;
}

int xtk_save_set_bandwidth(struct xtk_save *sv, uint64_t bytes_per_s)
{
    if (!sv)
        return xtk__fail(EINVAL);
    sv->opt.max_bandwidth = bytes_per_s;
    /* (once done, the end's thread may be freeing the senders; in the
     * set-up, its thread making them: setup_joined sets the limit) */
    if (sv->sd && sv->phase != PH_DONE && sv->phase != PH_SETUP)
        xtk__senders_set_limit(sv->sd, bytes_per_s);
    return 0;
}

struct xtk_stats *xtk_save_stats(struct xtk_save *sv)
{
    return sv ? sv->st : xtk__fail_null(EINVAL);
}

void xtk_save_free(struct xtk_save *sv)
{
    if (!sv)
        return;
    if (sv->started && sv->phase != PH_DONE) {
        sv->done = NULL;
        finish(sv, ECANCELED);
    }
    if (sv->end_on) { /* freed while the end was under way */
        pthread_join(sv->end_thread, NULL);
        sv->end_on = 0;
        sv->done = NULL;
        ended(sv);
    }
    xtk__senders_free(sv->sd);
    xtk__pc_free(sv->pc);
    ev_free(sv->ev_pc);
    if (sv->pc_fd >= 0)
        close(sv->pc_fd);
    free(sv->pc_todo);
    ev_free(sv->ev_notify);
    ev_free(sv->ev_suspend);
    ev_free(sv->ev_timer);
    ev_free(sv->ev_relfail);
    ev_free(sv->ev_peer);
    ev_free(sv->ev_progress);
    ev_free(sv->ev_watch);
    ev_free(sv->ev_busy);
    ev_free(sv->ev_heartbeat);
    ev_free(sv->ev_drain);
    ev_free(sv->ev_done);
    ev_free(sv->ev_end);
    ev_free(sv->ev_async);
    ev_free(sv->ev_setup);
    ev_free(sv->ev_join);
    if (sv->setup_fd >= 0)
        close(sv->setup_fd);
    if (sv->end_fd >= 0)
        close(sv->end_fd);
    if (sv->notify_fd >= 0)
        close(sv->notify_fd);
    if (sv->drain_fd >= 0)
        close(sv->drain_fd);
    free(sv->tail_state);
    free(sv->bitmap);
    free(sv->pending);
    free(sv->populated);
    free(sv->pfns);
    free(sv->present);
    free(sv->layout.static_data);
    xtk_stats_free(sv->st);
    free(sv);
}
