/*
 * policy.c - when pre-copy stops (xtk_save_options.policy).
 *
 * The default is driven by measurement.  After each round the dirty log
 * says how many frames the final round would carry if the guest stopped
 * now; at the send rate measured in the rounds so far, plus the dirty log
 * read and the suspend-and-state costs (measured in earlier epochs, else
 * an estimate), that is the expected downtime.  Pre-copy stops when
 *   - fewer than 50 frames are dirty (nothing left to gain), or
 *   - the expected downtime fits the target and the last round did not
 *     shrink the dirty set by a quarter (another round would buy
 *     little), or
 *   - a cap is reached: rounds, or bytes sent (a guest that dirties faster
 *     than the link sends never converges; it is stopped anyway and the
 *     reason says so).
 * So a guest that converges is copied with the smallest downtime it
 * allows, and one that does not costs at most the caps.
 *
 * Xen's policy (libxenguest's simple_precopy_policy): stop after 5 rounds
 * or with fewer than 50 dirty frames.
 *
 * Post-copy (XTK_SAVE_POSTCOPY): the switch comes after the first round,
 * the whole memory sent once, unless fewer than 50 frames are dirty then
 * (a stop and copy is as short).  XTK_SAVE_POSTCOPY_AUTO: pre-copy as
 * above, but a stop whose final round would not fit the target (a cap
 * reached, or, from the third round on, an expected downtime over the
 * target while the dirty set no longer shrinks: it is not converging)
 * becomes the switch to post-copy.
 */
#include "config.h"

#include "save-internal.h"

#define SMALL_DIRTY 50              /* Xen's SPP_TARGET_DIRTY_COUNT */
#define XEN_MAX_ROUNDS 5            /* Xen's SPP_MAX_ITERATIONS */
#define RATE_MIN_BYTES (1ull << 20) /* a round this big measures the rate */
#define DEFAULT_RATE 0.1            /* bytes/ns (100 MB/s) until measured */

enum xtk__policy_verdict xtk__policy_decide(struct xtk__policy_state *ps,
                                            const struct xtk__policy_in *in,
                                            const char **reason)
{
    double rate;
    uint64_t expected;

    if (in->round_ns &&
        (in->data_bytes >= RATE_MIN_BYTES || (!ps->rate && in->data_bytes)))
        ps->rate = (double)in->data_bytes / (double)in->round_ns;
    rate = ps->rate > 0 ? ps->rate : DEFAULT_RATE;
    expected = (uint64_t)((double)(in->dirty * XTK__PAGE_SIZE) / rate) +
               in->sync_ns + in->fixed_ns;
    ps->expected_ns = expected;
    *reason = NULL;

    if (in->policy == XTK_SAVE_POLICY_XEN) {
        if (in->dirty < SMALL_DIRTY)
            *reason = "xen policy: fewer than 50 dirty pages";
        else if (in->round >= XEN_MAX_ROUNDS)
            *reason = "xen policy: 5 rounds";
    } else if (in->dirty < SMALL_DIRTY) {
        *reason = "converged: fewer than 50 dirty pages";
    } else if (expected <= in->max_downtime_ns &&
               in->dirty * 4 > in->sent * 3) {
        *reason = "downtime target met, the dirty set no longer shrinks";
    }
    if (in->postcopy == XTK_SAVE_POSTCOPY && !*reason) {
        *reason = "post-copy after the first round";
        return XTK__POLICY_POSTCOPY;
    }
    if (in->postcopy == XTK_SAVE_POSTCOPY_AUTO && !*reason && in->round >= 3 &&
        expected > in->max_downtime_ns && in->dirty * 4 > in->sent * 3) {
        *reason = "not converging: the dirty set no longer shrinks and "
                  "would not fit the downtime target: post-copy";
        return XTK__POLICY_POSTCOPY;
    }
    if (*reason)
        return XTK__POLICY_STOP;
    /* A cap: the final round would carry what the guest keeps dirtying. */
    if (in->round >= in->max_rounds)
        *reason = in->postcopy
                      ? "round cap: the guest dirties faster than the link "
                        "sends: post-copy"
                      : "round cap: the guest dirties faster than the link "
                        "sends";
    else if (in->total_bytes >= in->max_bytes)
        *reason = in->postcopy
                      ? "byte cap: the guest dirties faster than the link "
                        "sends: post-copy"
                      : "byte cap: the guest dirties faster than the link "
                        "sends";
    else
        return XTK__POLICY_CONTINUE;
    return in->postcopy ? XTK__POLICY_POSTCOPY : XTK__POLICY_STOP;
}
