/*
 * xtk/restore.h - restoring a domain from a record stream: a file, a pipe,
 * or a socket an xtk save migrates into.  See xtk_restore(3) and
 * xtk-stream(5).
 *
 * A restore creates an empty domain of the size the stream gives, fills
 * its memory as the records arrive, loads its vCPU and platform state and
 * resumes it.  A checkpointed stream is applied one epoch at a time: the
 * records of an epoch are buffered and applied only when its CHECKPOINT
 * (or END) arrives; if the stream breaks after at least one complete
 * checkpoint, the domain is resumed from the last complete one
 * (failover).  A stream that is corrupt, truncated or foreign is refused
 * with a message saying why, and then no domain is left behind.
 *
 * The restore reads the stream on a thread of its own, so the event loop
 * stays free; the completion callback is called from the context's event
 * loop.  xtk_restore_run() is the blocking form.
 *
 * Conventions of xtk/ctx.h: -1 and errno, NULL and errno, arguments
 * checked, destructors accept NULL.
 */
#ifndef XTK_RESTORE_H
#define XTK_RESTORE_H

#include <stdint.h>

#include <xtk/ctx.h>
#include <xtk/stats.h>
#include <xtk/stream.h>

#ifdef __cplusplus
extern "C" {
#endif

struct xtk_restore;

/* Flags in struct xtk_restore_options. */
#define XTK_RESTORE_REPLY                                                      \
    0x1u /* peer_fd is the migrating save's socket:                            \
            send it the reply (xtk-stream(5)) */
/*
 * With XTK_RESTORE_REPLY, a checkpointed stream (this restore is a backup):
 * when the source is lost (its stream breaks, or is silent for
 * peer_timeout_ms), resume the last complete epoch at once.  Without it,
 * the backup holds that epoch, built and not running, reports the loss
 * (lost) and waits for xtk_restore_promote() or xtk_restore_cancel(): the
 * source's host may still run the guest, and only whoever can fence it
 * (a cluster manager) knows.  This flag is for two hosts without one,
 * and risks two running copies of the guest (xtk-restore(1)).
 */
#define XTK_RESTORE_FAILOVER 0x2u
/*
 * A lazy restore (xtk-restore --lazy): the stream must be a plain file
 * (a regular file read by xtk_stream_file() or xtk_stream_fd(), not
 * compressed; not a checkpointed stream, and not with
 * XTK_RESTORE_REPLY).  Its records are read without the page contents,
 * the domain is resumed at once, and each page comes from the file when
 * first touched, while a background thread fills in the others; done is
 * called once every page is in (the "resumed" phase says when the domain
 * first ran, "memory complete" when the last page came).  The file is
 * held under a read lease: opened for writing or truncated meanwhile
 * (the lease broken), unreadable or short, the restore fails and the
 * domain is destroyed, never run on memory other than the file's.  The
 * caller keeps the stream open until done.  ENOTSUP from a backend that
 * cannot (Xen).
 */
#define XTK_RESTORE_LAZY 0x4u

/* Options: zero-fill, then set what you need. */
struct xtk_restore_options {
    uint32_t flags;     /* XTK_RESTORE_*; unknown bits are refused */
    uint32_t reserved0; /* zero */
    const char *name;   /* the new domain's name; NULL: the stream's */
    int peer_fd;        /* XTK_RESTORE_REPLY: where the reply goes */
    /*
     * XTK_RESTORE_REPLY: peer_fd's receive buffer (SO_RCVBUF) once the
     * source's stop-and-copy begins (its state arrives, in a plain
     * stream), for the final round at the link's speed; 0: unchanged.
     * (Was reserved, zero.)
     */
    uint32_t final_rcvbuf;
    /*
     * XTK_RESTORE_REPLY, once the stream is checkpointed: the source is
     * lost when nothing (an epoch, a heartbeat) has come from it for this
     * long; 0: 5000.  (Was reserved, zero.)
     */
    uint32_t peer_timeout_ms;
    uint32_t reserved1; /* zero */
    /*
     * Called on the event loop when a backup holding a complete epoch has
     * lost its source (err: why; not with XTK_RESTORE_FAILOVER, which
     * promotes it), or has failed by itself and left its source: decide
     * then with xtk_restore_promote() or xtk_restore_cancel().  May be
     * NULL.  (Were reserved, zero.)
     */
    void (*lost)(struct xtk_restore *rs, int err, void *arg);
    void *lost_arg;
    /*
     * XTK_RESTORE_REPLY over a transport of the caller's (TLS, with the
     * stream an xtk_stream_custom() one): the reply and a backup's
     * messages go through peer_io (xtk_stream(3)); peer_fd stays the
     * socket under it, which the engine polls and shuts down.  NULL:
     * send(2) on peer_fd.  (Was reserved; libtool current 4 on.)
     */
    const struct xtk_peer_io *peer_io;
};

/*
 * Prepares a restore from in (a read stream positioned at its start,
 * which the caller owns and keeps until xtk_restore_free()).  The stream
 * may be an xl save file or a libxl stream (xtk_stream(3), "framing"):
 * the restore reads the framing and ignores the config, unless the caller
 * read it already with xtk_stream_read_framing() (to keep the config),
 * in which case the restore starts at the image header.  opts may be
 * NULL.  NULL on failure, in which case errno will be set.
 */
struct xtk_restore *xtk_restore_new(struct xtk_ctx *ctx, struct xtk_stream *in,
                                    const struct xtk_restore_options *opts);

/*
 * Called exactly once, from the event loop, when the restore has ended:
 * err 0 means the domain runs (xtk_restore_domid() says which); else the
 * errno it failed with, and no domain was left behind.
 */
typedef void xtk_restore_done_fn(struct xtk_restore *rs, int err, void *arg);

/* Starts the restore and returns; once only (EBUSY). */
int xtk_restore_start(struct xtk_restore *rs, xtk_restore_done_fn *done,
                      void *arg);

/* The blocking form: returns 0 when the domain runs, else -1 and errno. */
int xtk_restore_run(struct xtk_restore *rs);

/* The restored domain's id, once done reported success; 0 before. */
uint32_t xtk_restore_domid(const struct xtk_restore *rs);

/*
 * The restore's report: phases ("stream started", "domain created",
 * "end received", "state loaded", "resumed"...), counters and
 * histograms.  Read it after done.
 */
struct xtk_stats *xtk_restore_stats(struct xtk_restore *rs);

/*
 * A backup (XTK_RESTORE_REPLY, a checkpointed stream) takes over: it stops
 * reading (shutting peer_fd for reading), drops an epoch it has only in
 * part, and resumes the last complete one; done reports as usual (ENODATA
 * if no epoch was complete).  For when the source is known dead (fenced):
 * promoting a backup whose source runs gives two running copies.  Call it
 * from the event loop's thread.  0, or -1 (EINVAL: not such a restore, or
 * it has ended).
 */
int xtk_restore_promote(struct xtk_restore *rs);

/*
 * Ends a restore that has not: it stops reading at once (a socket's is
 * shut; a wait on a pipe or a quiet socket ends) and destroys what it
 * built; done
 * gets ECANCELED, unless the stream was complete already (then the domain
 * runs, as if cancel had come later).  A backup's way to stand down.
 * From the event loop's thread.  0, or -1 (EINVAL).
 */
int xtk_restore_cancel(struct xtk_restore *rs);

/* Frees a restore that has ended or was never started.  Accepts NULL. */
void xtk_restore_free(struct xtk_restore *rs);

#ifdef __cplusplus
}
#endif

#endif /* XTK_RESTORE_H */
