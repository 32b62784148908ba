/*
 * save-internal.h - the save engine's parts: the sender threads
 * (senders.c), the stop policy (policy.c) and the engine on the event loop
 * (save.c).
 */
#ifndef XTK_SAVE_INTERNAL_H
#define XTK_SAVE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <xtk/save.h>

#include "backend.h"

/* Frames in one PAGE_DATA record: Xen's MAX_BATCH_SIZE (4 MiB of data). */
#define XTK__SAVE_BATCH 1024u

/* ---- sender threads (senders.c) --------------------------------------- */

struct xtk__senders;

/* What one round sent. */
struct xtk__round_result {
    uint64_t entries;       /* frames sent (PAGE_DATA entries) */
    uint64_t data_pages;    /* of which with data */
    uint64_t zero_pages;    /* of which elided as zero (XALLOC) */
    uint64_t gone_pages;    /* of which gone from the frame space (XTAB) */
    uint64_t last_write_ns; /* when the last record was written */
    int err;                /* 0, or the errno the round failed with */
};

/*
 * Starts n threads that send rounds of dom's frames into out, read from
 * its RAM mapped whole at ram, or, with ram NULL, from a mapping of each
 * batch (the backend's map_batch and unmap_batch), one PAGE_DATA record of up
 * to XTK__SAVE_BATCH frames at a time under a mutex, each thread timing its
 * batches into its own histograms.  When a round is complete, 8 bytes are
 * written to notify_fd (an eventfd the event loop watches).  NULL on
 * failure, in which case errno will be set.
 */
struct xtk__senders *xtk__senders_new(struct xtk_domain *dom, unsigned int n,
                                      const uint8_t *ram,
                                      struct xtk_stream *out, int notify_fd);

/* A round's flags. */
#define XTK__ROUND_KEEP_ZERO 0x1u /* zero frames go with their data */
#define XTK__ROUND_THROTTLE 0x2u  /* keeps to the bandwidth limit */

/*
 * Sends the count frames pfns[] (they must stay valid until the round
 * ends).  populated: NULL, or a bitmap of the frames that may hold data
 * (the others are sent as zero pages without being read).  flags:
 * XTK__ROUND_KEEP_ZERO, or 0 to send zero frames as XALLOC entries.
 * Returns at once; EBUSY if a round is running.
 */
int xtk__senders_round(struct xtk__senders *sd, const uint64_t *pfns,
                       uint64_t count, const uint64_t *populated,
                       unsigned int flags);

/*
 * The same round sent by the calling thread before this returns (notify_fd
 * is written all the same, so the round ends on the loop as any other).
 * For a final round of a few pages: waking a sender thread and being woken
 * back costs more than the sending.  EBUSY if a round is running.
 */
int xtk__senders_round_here(struct xtk__senders *sd, const uint64_t *pfns,
                            uint64_t count, const uint64_t *populated,
                            unsigned int flags);

/*
 * The bandwidth limit of the rounds that keep to one (XTK__ROUND_THROTTLE),
 * in bytes a second (0: none).  Any thread; the batches not yet booked
 * obey the new limit, and 0 ends every wait.
 */
void xtk__senders_set_limit(struct xtk__senders *sd, uint64_t bytes_per_s);

/* Frames of the current round written so far (for progress). */
uint64_t xtk__senders_progress(const struct xtk__senders *sd);

/*
 * The result of the round that ended (notify_fd fired), and the senders
 * are ready for the next.  Also merges the threads' histograms into st.
 */
void xtk__senders_result(struct xtk__senders *sd, struct xtk_stats *st,
                         struct xtk__round_result *out);

/* Makes a running round stop after the batches in progress. */
void xtk__senders_abort(struct xtk__senders *sd);

/* Waits for the round in progress (if any), stops and joins the threads.
 * Accepts NULL. */
void xtk__senders_free(struct xtk__senders *sd);

/* Whether a 4 KiB page is all zeroes. */
int xtk__page_is_zero(const uint8_t *p);

/* ---- a post-copy migration's sender (postcopy.c) ---------------------- */

/*
 * The frames the destination runs without (bits set in todo, nr_pages
 * bits), from RAM mapped whole at ram, into out: each once, the frames
 * the destination asks for first (xtk__pc_request), the others pushed in
 * frame order at the bandwidth limit, never far ahead of what the socket
 * sock (-1: none) has sent.  When all are out, or a write
 * failed, 8 bytes go to notify_fd.  Frames below XTK__POSTCOPY_EAGER
 * must not be in todo (the destination needs them before it runs).
 */
struct xtk__pc;

struct xtk__pc_result {
    uint64_t asked_pages;  /* sent because asked for */
    uint64_t pushed_pages; /* sent in the push */
    uint64_t data_pages;   /* of all, with data (the others: XALLOC) */
    uint64_t zero_pages;
    uint64_t last_write_ns;
    int err; /* 0, or the errno the sending failed with */
};

struct xtk__pc *xtk__pc_new(struct xtk_ctx *ctx, const uint8_t *ram,
                            struct xtk_stream *out, const uint64_t *todo,
                            uint64_t nr_pages, int notify_fd, int sock);

/* Starts the sending thread; bytes_per_s: the push's limit (0: none);
 * a socket that sends nothing of a full queue for stall_ms is lost
 * (ETIMEDOUT; the stream's own writes time out too). */
int xtk__pc_start(struct xtk__pc *pc, uint64_t bytes_per_s, uint32_t stall_ms);

/* The destination asks for frame pfn (any thread): 1 if queued, 0 if
 * sent or queued already, -1 (EINVAL) if not one of the domain's. */
int xtk__pc_request(struct xtk__pc *pc, uint64_t pfn);

/* Once notify_fd fired: what was sent, and the requests' service times
 * (asked to written) into st's "postcopy request service". */
void xtk__pc_result(struct xtk__pc *pc, struct xtk_stats *st,
                    struct xtk__pc_result *out);

/* Stops the thread (what it writes meanwhile is cut short) and frees.
 * Accepts NULL. */
void xtk__pc_free(struct xtk__pc *pc);

/* ---- the stop policy (policy.c) ----------------------------------------- */

enum xtk__policy_verdict {
    XTK__POLICY_CONTINUE, /* another pre-copy round */
    XTK__POLICY_STOP,     /* stop and copy */
    XTK__POLICY_POSTCOPY, /* stop, and copy the rest after the switch */
};

/* What the policy knows after a round, the dirty log just read. */
struct xtk__policy_in {
    uint32_t policy;     /* enum xtk_save_policy */
    uint32_t round;      /* rounds done (1 after round 0) */
    uint64_t dirty;      /* frames dirty now: the next round's */
    uint64_t sent;       /* frames the last round sent */
    uint64_t data_bytes; /* page bytes the last round sent */
    uint64_t round_ns;   /* how long it took */
    uint64_t sync_ns;    /* how long the dirty log read took */
    uint64_t total_bytes;
    uint64_t max_bytes;
    uint32_t max_rounds;
    uint64_t max_downtime_ns;
    uint64_t fixed_ns; /* suspend + state, measured or estimated */
    uint32_t postcopy; /* 0; XTK_SAVE_POSTCOPY: after round 0;
                          XTK_SAVE_POSTCOPY_AUTO: when not converging */
};

/* What the policy carries from round to round. */
struct xtk__policy_state {
    double rate; /* bytes per ns, the latest good measurement; 0: none */
    uint64_t expected_ns; /* the final round's expected time, last call */
};

/*
 * Decides after a round.  *reason gets a short static text saying why
 * pre-copy stops (NULL when it goes on).
 */
enum xtk__policy_verdict xtk__policy_decide(struct xtk__policy_state *ps,
                                            const struct xtk__policy_in *in,
                                            const char **reason);

#endif /* XTK_SAVE_INTERNAL_H */
