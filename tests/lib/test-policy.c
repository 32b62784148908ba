/*
 * test-policy.c - the pre-copy stop policy (save/policy.c) as a table of
 * cases: each row is what the engine knows after a round, and what the
 * policy must say (stop or go on, and why), including the send rate it
 * carries from round to round.
 */
#include <string.h>

#include <xtk/save.h>

#include "save-internal.h"
#include "test.h"

#define MS 1000000ull
#define MIB (1ull << 20)

struct row {
    const char *what;
    int fresh; /* start from a new state (no rate measured) */
    struct xtk__policy_in in;
    enum xtk__policy_verdict want;
    const char *why;           /* the start of the reason, or NULL */
    uint64_t want_expected_ns; /* 0: not checked */
};

/* Common: the default policy, 300 ms, 30 rounds, a 3 GiB byte cap. */
#define DEF                                                                    \
    .policy = XTK_SAVE_POLICY_DOWNTIME, .max_rounds = 30,                      \
    .max_bytes = 3072 * MIB, .max_downtime_ns = 300 * MS

static const struct row rows[] = {
    /* Nothing measured yet: 100 MB/s assumed; 1000 frames = 4,096,000
     * bytes = 40.96 ms, plus the dirty log's read and the fixed costs. */
    {"default rate until measured",
     1,
     {DEF, .round = 1, .dirty = 1000, .sent = 100000, .sync_ns = 1 * MS,
      .fixed_ns = 1 * MS},
     XTK__POLICY_CONTINUE,
     NULL,
     40960000 + 2 * MS},
    /* Round 0 sent 400 MiB in 400 ms: 1.048576 bytes/ns measured. */
    {"a big round measures the rate",
     1,
     {DEF, .round = 1, .dirty = 20000, .sent = 102400, .data_bytes = 400 * MIB,
      .round_ns = 400 * MS},
     XTK__POLICY_CONTINUE,
     NULL,
     78125000},
    /* A small round (under 1 MiB) does not replace a measured rate. */
    {"a small round keeps the rate",
     0,
     {DEF, .round = 2, .dirty = 20000, .sent = 100000, .data_bytes = 800 * 1024,
      .round_ns = 100 * MS},
     XTK__POLICY_CONTINUE,
     NULL,
     78125000},
    /* ... but one is better than none at all. */
    {"a small first round gives a rate",
     1,
     {DEF, .round = 1, .dirty = 1000, .sent = 100000, .data_bytes = 409600,
      .round_ns = 409600},
     XTK__POLICY_CONTINUE,
     NULL,
     4096000},
    {"converged: under 50 dirty",
     1,
     {DEF, .round = 1, .dirty = 49, .sent = 5000},
     XTK__POLICY_STOP,
     "converged",
     0},
    {"50 dirty is not converged",
     1,
     {DEF, .round = 1, .dirty = 50, .sent = 1000},
     XTK__POLICY_CONTINUE,
     NULL,
     0},
    /* Fits 300 ms and no longer shrinks (more than 3/4 of the last). */
    {"target met, not shrinking",
     1,
     {DEF, .round = 3, .dirty = 800, .sent = 1000},
     XTK__POLICY_STOP,
     "downtime target met",
     0},
    /* Fits, but shrinking by more than a quarter: one more round. */
    {"target met, still shrinking",
     1,
     {DEF, .round = 3, .dirty = 700, .sent = 1000},
     XTK__POLICY_CONTINUE,
     NULL,
     0},
    /* Would shrink no more, but does not fit the target. */
    {"over the target",
     1,
     {DEF, .round = 3, .dirty = 100000, .sent = 100000},
     XTK__POLICY_CONTINUE,
     NULL,
     0},
    {"the fixed costs count",
     1,
     {DEF, .round = 3, .dirty = 800, .sent = 800, .fixed_ns = 400 * MS},
     XTK__POLICY_CONTINUE,
     NULL,
     0},
    {"round cap",
     1,
     {DEF, .round = 30, .dirty = 100000, .sent = 100000},
     XTK__POLICY_STOP,
     "round cap",
     0},
    {"byte cap",
     1,
     {DEF, .round = 4, .dirty = 100000, .sent = 100000,
      .total_bytes = 3072 * MIB},
     XTK__POLICY_STOP,
     "byte cap",
     0},
    {"a convergence beats the caps' reason",
     1,
     {DEF, .round = 30, .dirty = 10, .sent = 10, .total_bytes = 4096 * MIB},
     XTK__POLICY_STOP,
     "converged",
     0},
    /* Xen's simple policy: 5 rounds or under 50 dirty, the target aside. */
    {"xen: 4 rounds go on",
     1,
     {.policy = XTK_SAVE_POLICY_XEN,
      .round = 4,
      .dirty = 10000,
      .sent = 10000,
      .max_rounds = 30,
      .max_bytes = ~0ull,
      .max_downtime_ns = ~0ull},
     XTK__POLICY_CONTINUE,
     NULL,
     0},
    {"xen: 5 rounds stop",
     1,
     {.policy = XTK_SAVE_POLICY_XEN,
      .round = 5,
      .dirty = 10000,
      .sent = 10000,
      .max_rounds = 30,
      .max_bytes = ~0ull},
     XTK__POLICY_STOP,
     "xen policy: 5 rounds",
     0},
    {"xen: under 50 dirty",
     1,
     {.policy = XTK_SAVE_POLICY_XEN,
      .round = 1,
      .dirty = 3,
      .sent = 10000,
      .max_rounds = 30,
      .max_bytes = ~0ull},
     XTK__POLICY_STOP,
     "xen policy: fewer than 50",
     0},
    {"xen: the round cap still applies",
     1,
     {.policy = XTK_SAVE_POLICY_XEN,
      .round = 2,
      .dirty = 10000,
      .sent = 10000,
      .max_rounds = 2,
      .max_bytes = ~0ull},
     XTK__POLICY_STOP,
     "round cap",
     0},
    /* Post-copy after the first round: the switch at once... */
    {"postcopy: the switch after round 0",
     1,
     {DEF, .round = 1, .dirty = 16384, .sent = 65536,
      .postcopy = XTK_SAVE_POSTCOPY},
     XTK__POLICY_POSTCOPY,
     "post-copy after the first round",
     0},
    /* ... unless nothing is left to fetch on demand. */
    {"postcopy: converged after round 0 is a stop and copy",
     1,
     {DEF, .round = 1, .dirty = 10, .sent = 65536,
      .postcopy = XTK_SAVE_POSTCOPY},
     XTK__POLICY_STOP,
     "converged",
     0},
    /* Auto: a 64 MiB hot set at 128 MiB/s (0.134 bytes/ns) is 500 ms, over
     * the 300 ms target, and does not shrink: not before round 3... */
    {"postcopy auto: round 2 goes on",
     1,
     {DEF, .round = 2, .dirty = 16384, .sent = 16384, .data_bytes = 64 * MIB,
      .round_ns = 500 * MS, .postcopy = XTK_SAVE_POSTCOPY_AUTO},
     XTK__POLICY_CONTINUE,
     NULL,
     0},
    {"postcopy auto: not converging at round 3",
     0,
     {DEF, .round = 3, .dirty = 16384, .sent = 16384, .data_bytes = 64 * MIB,
      .round_ns = 500 * MS, .postcopy = XTK_SAVE_POSTCOPY_AUTO},
     XTK__POLICY_POSTCOPY,
     "not converging",
     0},
    /* ... a dirty set that fits the target is a stop and copy... */
    {"postcopy auto: the target met is a stop and copy",
     1,
     {DEF, .round = 3, .dirty = 1000, .sent = 1000, .data_bytes = 64 * MIB,
      .round_ns = 500 * MS, .postcopy = XTK_SAVE_POSTCOPY_AUTO},
     XTK__POLICY_STOP,
     "downtime target met",
     0},
    /* ... and a cap (the dirty set still shrinking) is the switch. */
    {"postcopy auto: a cap is the switch",
     1,
     {DEF, .round = 30, .dirty = 16384, .sent = 30000, .data_bytes = 64 * MIB,
      .round_ns = 500 * MS, .postcopy = XTK_SAVE_POSTCOPY_AUTO},
     XTK__POLICY_POSTCOPY,
     "round cap",
     0},
};

static void table(void)
{
    struct xtk__policy_state ps = {0};

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        const char *why = "unset";
        enum xtk__policy_verdict v;

        if (r->fresh)
            ps = (struct xtk__policy_state){0};
        v = xtk__policy_decide(&ps, &r->in, &why);
        TEST_ASSERT(v == r->want, "%s: %s", r->what,
                    v == XTK__POLICY_STOP       ? "stopped"
                    : v == XTK__POLICY_POSTCOPY ? "switched to post-copy"
                                                : "went on");
        if (r->why)
            TEST_ASSERT(why && !strncmp(why, r->why, strlen(r->why)),
                        "%s: the reason is '%s'", r->what, why ? why : "");
        else
            TEST_ASSERT(!why, "%s: a reason to go on: '%s'", r->what, why);
        if (r->want_expected_ns) {
            int64_t d = (int64_t)ps.expected_ns - (int64_t)r->want_expected_ns;

            TEST_ASSERT(d > -1000 && d < 1000,
                        "%s: expected downtime %llu ns, not %llu", r->what,
                        (unsigned long long)ps.expected_ns,
                        (unsigned long long)r->want_expected_ns);
        }
    }
}

int main(void)
{
    TEST_RUN(table);
    return 0;
}
