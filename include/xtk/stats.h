/*
 * xtk/stats.h - latency instrumentation: a CLOCK_MONOTONIC phase recorder,
 * per-round rows, mergeable histograms, and a report as a human table or
 * as JSON.  See xtk_stats(3).
 *
 * Histograms are log-linear: values below 128 each have a bucket of
 * their own; above, every power of two [2^e, 2^(e+1)) is split into 64
 * equal buckets.  A reported percentile is the middle of its bucket,
 * clamped to the exact min and max, so it is within 1/128 (0.8 %) of the
 * true sample value; count, min, max and mean are exact.  3776 buckets
 * cover all of uint64_t (30 KiB a histogram).  Percentiles are
 * nearest-rank: pN is the smallest recorded value with at least N % of
 * the samples at or below it.
 *
 * Threads: nothing here locks.  xtk_now_ns() may be called from any
 * thread.  A histogram is written by one thread at a time: give each
 * sender thread its own, then xtk_hist_merge() them into the report's
 * histogram once the threads are joined (or under the caller's lock).  A
 * struct xtk_stats belongs to one thread (the engine's coordinator);
 * another thread may take a timestamp with xtk_now_ns() and hand it over
 * for xtk_stats_phase_at().
 */
#ifndef XTK_STATS_H
#define XTK_STATS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t xtk_now_ns(void);

/* ---- histograms ------------------------------------------------------- */

struct xtk_hist;

struct xtk_hist_summary {
    uint64_t count;
    uint64_t min, max; /* exact */
    uint64_t mean;     /* exact (rounded down) */
    uint64_t p50, p90, p99;
};

/* An empty histogram.  NULL on failure, in which case errno will be set. */
struct xtk_hist *xtk_hist_new(void);

/* Frees a histogram.  Accepts NULL. */
void xtk_hist_free(struct xtk_hist *h);

/* Empties a histogram. */
void xtk_hist_reset(struct xtk_hist *h);

/* Records one value (a few ns, no allocation, no failure).  h: not NULL. */
void xtk_hist_record(struct xtk_hist *h, uint64_t value);

/* Adds every sample of src to dst.  Returns 0, or -1 with errno set. */
int xtk_hist_merge(struct xtk_hist *dst, const struct xtk_hist *src);

/*
 * The value at percentile p (0 < p <= 100; 100 is the max).  Returns 0,
 * or -1 with errno set: EINVAL for a bad p, ENODATA if h is empty.
 */
int xtk_hist_percentile(const struct xtk_hist *h, double p, uint64_t *out);

/* count, min, max, mean, p50, p90, p99 (all 0 for an empty histogram). */
int xtk_hist_summarize(const struct xtk_hist *h, struct xtk_hist_summary *out);

/* ---- the report ----------------------------------------------------- */

struct xtk_stats;

/* One round of a save (or one epoch of a checkpointed stream). */
struct xtk_stats_round {
    uint32_t round;
    uint64_t dirty; /* pages the dirty log reported for this round */
    uint64_t sent;  /* pages sent */
    uint64_t bytes; /* bytes written to the stream */
    uint64_t ns;    /* how long the round took */
};

/* One epoch of a checkpointed stream (xtk-save -I): its row in the
 * report, filled in as its phases end. */
struct xtk_stats_epoch {
    uint32_t epoch;    /* from 1 */
    uint32_t reserved; /* zero */
    uint64_t pause_ns; /* suspend request to the guest running again */
    uint64_t copy_ns;  /* suspend request to the epoch staged (its final
                          round: the copy while the guest is stopped) */
    uint64_t send_ns;  /* the staged epoch's sending, the guest running */
    uint64_t ack_ns;   /* the epoch sent to the backup's acknowledgement */
    uint64_t held_ns;  /* the longest its output was held (0: none) */
    uint64_t pages;    /* pages in it */
    uint64_t bytes;    /* its bytes on the stream */
};

/* Limits: a report keeps at most this many phases, rounds, counters and
 * histograms; past them the adding call fails with ENOSPC.  Of epochs it
 * keeps the last XTK_STATS_MAX_EPOCHS (a checkpointed stream runs for
 * days). */
#define XTK_STATS_MAX_EPOCHS 65536
#define XTK_STATS_MAX_PHASES 4096
#define XTK_STATS_MAX_ROUNDS 65536
#define XTK_STATS_MAX_NAMED 64
#define XTK_STATS_NAME_MAX 63 /* longer names are refused (EINVAL) */

/* A report called title.  NULL on failure, in which case errno will be
 * set. */
struct xtk_stats *xtk_stats_new(const char *title);

/* Frees a report and its histograms.  Accepts NULL. */
void xtk_stats_free(struct xtk_stats *st);

/*
 * Stamps phase `name` now (or at ns, a CLOCK_MONOTONIC time from
 * xtk_now_ns()).  Phases are kept in the order they were stamped; a name
 * may be stamped more than once.  Returns 0, or -1 with errno set.
 */
int xtk_stats_phase(struct xtk_stats *st, const char *name);
int xtk_stats_phase_at(struct xtk_stats *st, const char *name, uint64_t ns);

/*
 * The time from the first phase called `from` to the first phase called
 * `to` stamped after it.  Returns 0, or -1 with errno set (ENOENT if
 * either is missing, or `to` is not later, EINVAL for bad arguments).
 */
int xtk_stats_interval(const struct xtk_stats *st, const char *from,
                       const char *to, uint64_t *ns);

/* How many phases; the i-th one's name (valid while st lives) and time. */
size_t xtk_stats_phase_count(const struct xtk_stats *st);
int xtk_stats_phase_get(const struct xtk_stats *st, size_t i, const char **name,
                        uint64_t *ns);

/* Appends a round row.  Returns 0, or -1 with errno set. */
int xtk_stats_add_round(struct xtk_stats *st, const struct xtk_stats_round *r);
size_t xtk_stats_round_count(const struct xtk_stats *st);
int xtk_stats_round_get(const struct xtk_stats *st, size_t i,
                        struct xtk_stats_round *out);

/*
 * Adds epoch e->epoch's row, or, if the report has it, merges e into it:
 * the fields that are 0 in e are left as they were.  Returns 0, or -1
 * with errno set.
 */
int xtk_stats_epoch(struct xtk_stats *st, const struct xtk_stats_epoch *e);
/* How many epoch rows are kept; the i-th oldest. */
size_t xtk_stats_epoch_count(const struct xtk_stats *st);
int xtk_stats_epoch_get(const struct xtk_stats *st, size_t i,
                        struct xtk_stats_epoch *out);

/* Adds delta to the counter `name` (made at 0 on first use). */
int xtk_stats_count(struct xtk_stats *st, const char *name, uint64_t delta);
/* Reads a counter.  ENOENT if it was never added to. */
int xtk_stats_counter(const struct xtk_stats *st, const char *name,
                      uint64_t *out);

/*
 * The report's histogram called name, made empty on first use.  unit is
 * what its values are: "ns" (shown in the table as microseconds), or
 * anything else, shown as is.  It belongs to the report (freed with it).
 * NULL on failure, in which case errno will be set.
 */
struct xtk_hist *xtk_stats_hist(struct xtk_stats *st, const char *name,
                                const char *unit);

/*
 * Watching a report as it is filled in (a binding's per-phase and
 * per-round events, a progress display).  The observer is called after
 * each phase stamp, round row and epoch row update (an epoch's row is
 * reported again each time a phase of it is merged in, with the merged
 * row), on whichever thread recorded it (the event loop's, or one of the
 * engine's own: a restore reads its stream on a thread), possibly with the
 * engine's locks held: it must return quickly, must not block, and must
 * not call into libxtk; it copies what it needs (the pointers are valid
 * during the call only).  Set it before the job starts; NULL removes it.
 * Added in XTK_0.7.
 */
#define XTK_STATS_EVENT_PHASE 1 /* phase, ns: a phase was stamped */
#define XTK_STATS_EVENT_ROUND 2 /* round: a round row was added */
#define XTK_STATS_EVENT_EPOCH 3 /* epoch: an epoch's row, as merged */
struct xtk_stats_event {
    uint32_t kind; /* XTK_STATS_EVENT_* */
    uint32_t reserved;
    uint64_t ns;       /* when (xtk_now_ns()'s clock) */
    const char *phase; /* PHASE: its name */
    const struct xtk_stats_round *round;
    const struct xtk_stats_epoch *epoch;
};
typedef void xtk_stats_observer_fn(struct xtk_stats *st,
                                   const struct xtk_stats_event *ev, void *arg);
int xtk_stats_set_observer(struct xtk_stats *st, xtk_stats_observer_fn *fn,
                           void *arg);

/* Output formats. */
#define XTK_STATS_TABLE 1 /* for people; the layout may change */
#define XTK_STATS_JSON 2  /* schema "xtk-stats/1", see xtk_stats(3) */

/*
 * The report as text in a string the caller frees with free().  NULL on
 * failure, in which case errno will be set.
 */
char *xtk_stats_format(const struct xtk_stats *st, int format);

#ifdef __cplusplus
}
#endif

#endif /* XTK_STATS_H */
