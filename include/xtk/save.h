/*
 * xtk/save.h - saving a running domain: to a file, to a pipe, or live to
 * another host (migration), once or as repeated checkpoints, with every
 * phase of the critical path timed.  See xtk_save(3) and, for the stream
 * it writes, xtk-stream(5).
 *
 * A struct xtk_save is one save of one domain into one record stream.  It
 * runs on the context's event loop (xtk_ctx_event_base()): the suspend
 * notification, the destination's reply and the sender threads' "round
 * done" all arrive there, and the completion callback is called from it.
 * xtk_save_run() is the blocking form: it runs the loop until the save
 * ends.
 *
 * What happens to the domain:
 *   - success: destroyed (a save to a file, like `xl save`; a migration
 *     once the destination has said its copy runs), or, with
 *     XTK_SAVE_KEEP, resumed (a live checkpoint, like `xl save -c`);
 *   - failure at any point (I/O error, disk full, the destination went
 *     away or refused, the guest did not suspend, xtk_save_cancel()): the
 *     domain is resumed and runs on as if nothing happened, and no
 *     destination copy runs (the destination destroys what it built; see
 *     xtk-stream(5) for the one window where both may run).
 * If the process dies in the middle, the hypervisor side resumes the
 * domain (the backend's suspend guard).
 *
 * Conventions of xtk/ctx.h: -1 and errno, NULL and errno, arguments
 * checked, destructors accept NULL.
 */
#ifndef XTK_SAVE_H
#define XTK_SAVE_H

#include <stdint.h>

#include <xtk/domain.h>
#include <xtk/stats.h>
#include <xtk/stream.h>

#ifdef __cplusplus
extern "C" {
#endif

struct xtk_save;

/* How the guest is asked to stop for the final round. */
enum xtk_suspend_method {
    XTK_SUSPEND_EVTCHN = 0, /* its suspend event channel (the default) */
    XTK_SUSPEND_STORE = 1,  /* "suspend" in its control/shutdown node */
    XTK_SUSPEND_PAUSE = 2,  /* no guest help: the hypervisor stops it */
    /* xl's own way, the baseline of seed 001: "suspend" in control/shutdown
     * and the "suspended" notification through the store (its
     * @releaseDomain watch), as libxl does it.  Xen only. */
    XTK_SUSPEND_XL = 3,
};

/* When pre-copy stops and the final (stop-and-copy) round starts. */
enum xtk_save_policy {
    /* The default: when the final round is expected to fit max_downtime_ms
     * (dirty pages over the send rate measured in the previous rounds,
     * plus the dirty log's read time and an estimated 1 ms for suspend,
     * state and resume) and the last round did not shrink the dirty set
     * by a quarter, or fewer than 50 pages are dirty. */
    XTK_SAVE_POLICY_DOWNTIME = 0,
    /* Xen's: after 5 rounds, or when fewer than 50 pages are dirty. */
    XTK_SAVE_POLICY_XEN = 1,
};

/* Flags in struct xtk_save_options. */
#define XTK_SAVE_LIVE 0x1u /* pre-copy rounds while the guest runs */
#define XTK_SAVE_KEEP 0x2u /* resume the domain after success */
#define XTK_SAVE_MIGRATE                                                       \
    0x4u /* the stream goes to an xtk restore on peer_fd:                      \
            wait for its reply before destroying */
/*
 * Post-copy (with XTK_SAVE_LIVE and XTK_SAVE_MIGRATE, not checkpointing,
 * a backend that maps the guest's RAM whole: KVM's): the guest stops, its
 * state goes, and the destination runs it at once, fetching each frame it
 * touches from here on demand while the rest is pushed after it.  The
 * guest's memory is then on two hosts: if the link or either side fails
 * before the last frame is in, the destination's copy is destroyed and
 * this one stays paused, consistent as of the switch but behind whatever
 * the guest did on the destination (xtk-save(1), "POST-COPY").
 * XTK_SAVE_POSTCOPY: the switch comes after the first pre-copy round.
 * XTK_SAVE_POSTCOPY_AUTO: pre-copy goes on by the policy, and a stop
 * that would not fit the downtime target becomes the switch.
 */
#define XTK_SAVE_POSTCOPY 0x8u
#define XTK_SAVE_POSTCOPY_AUTO 0x10u
/*
 * Checkpointing to a backup, the guest's output is not held (xl remus's
 * -n): unsafe, a backup promoted from its last checkpoint may repeat
 * output a client already saw; for a guest with no outward output, or to
 * measure what the holding costs.
 */
#define XTK_SAVE_UNHELD 0x20u

/*
 * Options.  Zero-fill, then set what you need: zero fields take the
 * defaults given.
 */
struct xtk_save_options {
    uint32_t flags;           /* XTK_SAVE_*; unknown bits are refused */
    uint32_t suspend;         /* enum xtk_suspend_method */
    uint32_t policy;          /* enum xtk_save_policy */
    uint32_t max_downtime_ms; /* the downtime target; 0: 300 (as QEMU) */
    uint32_t max_rounds;      /* pre-copy rounds at most; 0: 30 */
    uint32_t senders;         /* sender threads; 0: 2 */
    uint64_t max_bytes;       /* pre-copy stops once this much was sent;
                                 0: 3 times the guest's memory */
    /*
     * Checkpointing: after the first final round, write CHECKPOINT instead
     * of END, resume the guest, and every checkpoint_interval_ms suspend it
     * again and send what it dirtied, `checkpoints` epochs in all (0: until
     * xtk_save_cancel()), then END.  0: a plain stream.
     */
    uint32_t checkpoint_interval_ms;
    uint32_t checkpoints;
    uint32_t timeout_ms; /* for the guest to suspend and the destination
                            to reply; 0: 30000 */
    int peer_fd;         /* XTK_SAVE_MIGRATE: the connected socket the
                            stream writes to; the reply is read from it */
    /*
     * Called once the stream is complete (END written and flushed), before
     * the domain is destroyed: a file is made durable and renamed into
     * place here.  Returning -1 fails the save (the domain is resumed).
     * NULL: nothing to do.  Called on a thread of the save's own, not the
     * loop's: it must not call the save's functions.
     */
    int (*commit)(struct xtk_save *sv, void *arg);
    void *commit_arg;
    /*
     * Checkpointing to a backup (XTK_SAVE_MIGRATE with an interval): while
     * the guest runs between epochs, a heartbeat record every
     * heartbeat_ms (0: 200); the backup acknowledges each epoch and
     * answers each heartbeat.  A backup that owes an answer for
     * peer_timeout_ms (0: 5000) is lost: the save ends with EHOSTDOWN and
     * the domain runs on here, unprotected ("backup lost" in the report).
     * (Were reserved, zero.)
     */
    uint32_t heartbeat_ms;
    uint32_t peer_timeout_ms;
    /*
     * XTK_SAVE_MIGRATE over a transport of the caller's (TLS, with the
     * stream an xtk_stream_custom() one): the destination's messages are
     * read through peer_io (xtk_stream(3)); peer_fd stays the socket under
     * it, which the engine polls, shuts down and reads the queue and round
     * trip of.  NULL: recv(2) on peer_fd.  (Was reserved; libtool current
     * 4 on.)
     */
    const struct xtk_peer_io *peer_io;
    /*
     * Bytes a second the pre-copy rounds send at most, as QEMU's
     * max-bandwidth and libvirt's virDomainMigrateSetMaxSpeed; the final
     * round and a checkpoint's epochs, which the stopped guest waits on,
     * are not limited.  0: no limit.  (Was reserved; XTK_0.8.)
     */
    uint64_t max_bandwidth;
    /*
     * Bytes a second a post-copy's push sends at most after the switch
     * (the frames the destination asks for are never held back), as
     * QEMU's max-postcopy-bandwidth: the guest runs there and waits for
     * every frame it touches that is not in yet.  0: no limit.  (Was
     * reserved.)
     */
    uint64_t max_postcopy_bandwidth;
};

/*
 * Prepares a save of dom into out (a write stream that nothing has been
 * written to, but perhaps its framing; the caller owns both and keeps them
 * until xtk_save_free()).  To write an xl save file (or libxl's stream),
 * call xtk_stream_write_framing() on out first, with the domain's config:
 * the stream then adds libxl's records itself (xtk_stream(3), "framing").
 * Nothing happens to the domain yet.  opts may be NULL for the defaults.
 * NULL on failure, in which case errno will be set (EINVAL: bad options).
 */
struct xtk_save *xtk_save_new(struct xtk_domain *dom, struct xtk_stream *out,
                              const struct xtk_save_options *opts);

/*
 * Called exactly once, from the event loop, when the save has ended: err
 * is 0 on success, else the errno it failed with (the domain then runs
 * on).
 */
typedef void xtk_save_done_fn(struct xtk_save *sv, int err, void *arg);

/*
 * Starts the save on the context's event loop and returns; done is called
 * when it ends.  Once only (EBUSY).  Returns 0, or -1 with errno set (and
 * then done is not called and the domain was not touched).  The set-up
 * (the backend's round trips, the headers) runs on a thread of the save's
 * own: a failure there comes through done, the domain as it was.
 */
int xtk_save_start(struct xtk_save *sv, xtk_save_done_fn *done, void *arg);

/*
 * The blocking form: starts the save and runs the event loop until it
 * ends.  Returns 0, or -1 with errno set to what the save failed with.
 */
int xtk_save_run(struct xtk_save *sv);

/*
 * Asks a running save to stop: a checkpointing save ends after the current
 * epoch with END (a success); a save in pre-copy or waiting for the guest
 * to suspend is aborted (the domain resumes; done gets ECANCELED); one in
 * its final round completes.  Call it from the event loop's thread (for a
 * signal, from a libevent signal event, as xtk-save does).
 */
void xtk_save_cancel(struct xtk_save *sv);

/*
 * Changes the downtime target of a running (or not yet started) save, as
 * QEMU's migrate-set-parameters downtime-limit and libvirt's
 * virDomainMigrateSetMaxDowntime do: the policy's next decision (at the
 * end of the current pre-copy round) uses it.  0: the default, 300.  From
 * the event loop's thread.  Added in XTK_0.7.
 */
int xtk_save_set_max_downtime(struct xtk_save *sv, uint32_t ms);

/*
 * The save's report: phases ("suspend requested", "suspended notified",
 * "final dirty sync", "last page sent", "state sent", "end sent",
 * "destination resumed"...), a row per round, histograms ("final round",
 * "downtime", "suspend", "batch build", "batch write") and counters (see
 * xtk_save(3)).  Valid until xtk_save_free(); read it after done.
 */
/*
 * Changes max_bandwidth of a running (or not yet started) save, as
 * libvirt's virDomainMigrateSetMaxSpeed: the batches not yet sent keep
 * to it (0, no limit, also ends the waits of those already waiting).  From the
 * event loop's thread (as xtk_save_set_max_downtime).  Added in XTK_0.8.
 */
int xtk_save_set_bandwidth(struct xtk_save *sv, uint64_t bytes_per_s);

struct xtk_stats *xtk_save_stats(struct xtk_save *sv);

/* Frees a save that has ended or was never started.  Accepts NULL. */
void xtk_save_free(struct xtk_save *sv);

#ifdef __cplusplus
}
#endif

#endif /* XTK_SAVE_H */
