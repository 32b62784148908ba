/*
 * test-stats.c - phases, rounds, counters, histograms (accuracy against
 * exact percentiles, merging, one histogram per thread) and the output.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <xtk/stats.h>

#include "test.h"

static uint64_t rnd = 88172645463325252ull;

static uint64_t next(void)
{
    rnd ^= rnd << 13;
    rnd ^= rnd >> 7;
    rnd ^= rnd << 17;
    return rnd;
}

/* Values spread over many orders of magnitude, as latencies are. */
static uint64_t log_uniform(void)
{
    unsigned bits = (unsigned)(next() % 64);
    uint64_t v = next();

    return bits ? v >> (64 - bits) : v & 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Nearest rank over sorted values. */
static uint64_t exact(const uint64_t *v, size_t n, double p)
{
    double r = p / 100.0 * (double)n;
    size_t rank = (size_t)r;

    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    return v[rank - 1];
}

static void check_close(uint64_t got, uint64_t want, const char *what)
{
    /* Within 1/128 of the true value (exact below 128). */
    uint64_t diff = got > want ? got - want : want - got;

    TEST_ASSERT(diff <= want / 128, "%s: %llu vs exact %llu", what,
                (unsigned long long)got, (unsigned long long)want);
}

static void test_hist_accuracy(void)
{
    enum { N = 200000 };
    static const double ps[] = {1, 10, 25, 50, 75, 90, 99, 99.9, 100};
    uint64_t *v = malloc(N * sizeof(*v)), sum = 0;
    struct xtk_hist *h = xtk_hist_new();
    struct xtk_hist_summary s;

    TEST_ASSERT(v && h, "alloc");
    for (size_t i = 0; i < N; i++) {
        v[i] = i < 1000 ? i % 300 : log_uniform() >> 20; /* sum fits */
        xtk_hist_record(h, v[i]);
        sum += v[i];
    }
    qsort(v, N, sizeof(*v), cmp_u64);
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        uint64_t got;
        char what[32];

        TEST_ASSERT(xtk_hist_percentile(h, ps[i], &got) == 0, "percentile");
        snprintf(what, sizeof(what), "p%g", ps[i]);
        check_close(got, exact(v, N, ps[i]), what);
    }
    TEST_ASSERT(xtk_hist_summarize(h, &s) == 0, "summary");
    TEST_ASSERT(s.count == N && s.min == v[0] && s.max == v[N - 1] &&
                    s.mean == sum / N,
                "exact count/min/max/mean");
    check_close(s.p50, exact(v, N, 50), "p50");
    check_close(s.p90, exact(v, N, 90), "p90");
    check_close(s.p99, exact(v, N, 99), "p99");

    /* Small values are exact. */
    xtk_hist_reset(h);
    for (uint64_t i = 0; i < 100; i++)
        xtk_hist_record(h, i);
    xtk_hist_summarize(h, &s);
    TEST_ASSERT(s.p50 == 49 && s.p90 == 89 && s.p99 == 98 && s.min == 0 &&
                    s.max == 99,
                "exact below 128: %llu %llu %llu", (unsigned long long)s.p50,
                (unsigned long long)s.p90, (unsigned long long)s.p99);

    /* The extremes of uint64_t. */
    xtk_hist_reset(h);
    xtk_hist_record(h, UINT64_MAX);
    xtk_hist_record(h, UINT64_MAX);
    xtk_hist_record(h, 0);
    xtk_hist_summarize(h, &s);
    TEST_ASSERT(s.max == UINT64_MAX && s.min == 0 &&
                    s.mean == (UINT64_MAX / 3) * 2,
                "extremes: mean %llu", (unsigned long long)s.mean);
    check_close(s.p99, UINT64_MAX, "p99 of the extremes");
    free(v);
    xtk_hist_free(h);
}

static void test_hist_edges(void)
{
    struct xtk_hist *h = xtk_hist_new();
    struct xtk_hist_summary s;
    uint64_t out = 7;

    TEST_ASSERT(h, "new");
    TEST_ASSERT_ERRNO(xtk_hist_percentile(h, 50, &out), ENODATA);
    TEST_ASSERT(out == 7, "output untouched");
    TEST_ASSERT(xtk_hist_summarize(h, &s) == 0 && s.count == 0 && s.max == 0,
                "empty summary is zeros");
    xtk_hist_record(h, 5);
    TEST_ASSERT_ERRNO(xtk_hist_percentile(h, 0, &out), EINVAL);
    TEST_ASSERT_ERRNO(xtk_hist_percentile(h, 100.5, &out), EINVAL);
    TEST_ASSERT_ERRNO(xtk_hist_percentile(NULL, 50, &out), EINVAL);
    TEST_ASSERT_ERRNO(xtk_hist_merge(h, h), EINVAL);
    TEST_ASSERT_ERRNO(xtk_hist_merge(h, NULL), EINVAL);
    xtk_hist_record(NULL, 1);
    xtk_hist_free(NULL);
    xtk_hist_free(h);
}

/* Merging parts gives exactly the histogram of the whole. */
static void test_hist_merge(void)
{
    struct xtk_hist *all = xtk_hist_new(), *part[4], *merged = xtk_hist_new();
    struct xtk_hist_summary a, m;

    for (int i = 0; i < 4; i++)
        part[i] = xtk_hist_new();
    for (int i = 0; i < 50000; i++) {
        uint64_t v = log_uniform();
        xtk_hist_record(all, v);
        xtk_hist_record(part[next() % 4], v);
    }
    for (int i = 0; i < 4; i++)
        TEST_ASSERT(xtk_hist_merge(merged, part[i]) == 0, "merge");
    xtk_hist_summarize(all, &a);
    xtk_hist_summarize(merged, &m);
    TEST_ASSERT(!memcmp(&a, &m, sizeof(a)), "merged summary = whole");
    for (double p = 0.5; p <= 100; p += 0.5) {
        uint64_t x, y;
        xtk_hist_percentile(all, p, &x);
        xtk_hist_percentile(merged, p, &y);
        TEST_ASSERT(x == y, "p%g: %llu vs %llu", p, (unsigned long long)x,
                    (unsigned long long)y);
    }
    for (int i = 0; i < 4; i++)
        xtk_hist_free(part[i]);
    xtk_hist_free(all);
    xtk_hist_free(merged);
}

/* The documented pattern: a histogram per sender thread, merged after. */
static void *sender(void *p)
{
    struct xtk_hist *h = p;

    for (int i = 0; i < 100000; i++) {
        uint64_t t = xtk_now_ns();
        xtk_hist_record(h, xtk_now_ns() - t);
    }
    return NULL;
}

static void test_hist_threads(void)
{
    struct xtk_stats *st = xtk_stats_new("threads");
    struct xtk_hist *h[4], *total = xtk_stats_hist(st, "clock read", "ns");
    pthread_t th[4];
    struct xtk_hist_summary s;

    TEST_ASSERT(st && total, "stats");
    for (int i = 0; i < 4; i++) {
        h[i] = xtk_hist_new();
        TEST_ASSERT(pthread_create(&th[i], NULL, sender, h[i]) == 0, "thread");
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        xtk_hist_merge(total, h[i]);
        xtk_hist_free(h[i]);
    }
    xtk_hist_summarize(total, &s);
    TEST_ASSERT(s.count == 400000, "count %llu", (unsigned long long)s.count);
    TEST_ASSERT(s.min <= s.p50 && s.p50 <= s.p90 && s.p90 <= s.p99 &&
                    s.p99 <= s.max,
                "ordered");
    xtk_stats_free(st);
}

static void test_phases_rounds_counters(void)
{
    struct xtk_stats *st = xtk_stats_new("save");
    struct xtk_stats_round r = {.round = 0,
                                .dirty = 100,
                                .sent = 90,
                                .bytes = 4096 * 90,
                                .ns = 1000000};
    const char *name;
    uint64_t ns, a = xtk_now_ns(), b = xtk_now_ns();

    TEST_ASSERT(st, "new");
    TEST_ASSERT(b >= a, "monotonic");
    TEST_ASSERT(xtk_stats_phase_at(st, "suspend requested", 1000) == 0 &&
                    xtk_stats_phase_at(st, "suspended", 1750) == 0 &&
                    xtk_stats_phase_at(st, "checkpoint", 2000) == 0 &&
                    xtk_stats_phase_at(st, "checkpoint", 5000) == 0 &&
                    xtk_stats_phase(st, "now") == 0,
                "phases");
    TEST_ASSERT(xtk_stats_interval(st, "suspend requested", "suspended", &ns) ==
                        0 &&
                    ns == 750,
                "interval %llu", (unsigned long long)ns);
    TEST_ASSERT(xtk_stats_interval(st, "suspended", "checkpoint", &ns) == 0 &&
                    ns == 250,
                "first later occurrence");
    TEST_ASSERT_ERRNO(xtk_stats_interval(st, "suspended", "nope", &ns), ENOENT);
    TEST_ASSERT_ERRNO(xtk_stats_interval(st, "checkpoint", "suspended", &ns),
                      ENOENT);
    TEST_ASSERT(xtk_stats_phase_count(st) == 5, "count");
    TEST_ASSERT(xtk_stats_phase_get(st, 1, &name, &ns) == 0 &&
                    !strcmp(name, "suspended") && ns == 1750,
                "get");
    TEST_ASSERT_ERRNO(xtk_stats_phase_get(st, 5, &name, &ns), EINVAL);
    TEST_ASSERT_ERRNO(xtk_stats_phase(st, ""), EINVAL);
    TEST_ASSERT_ERRNO(
        xtk_stats_phase(st, "a name much longer than sixty-three characters, "
                            "which is the limit"),
        EINVAL);

    TEST_ASSERT(xtk_stats_add_round(st, &r) == 0, "round");
    r.round = 1;
    r.dirty = 10;
    TEST_ASSERT(xtk_stats_add_round(st, &r) == 0, "round");
    TEST_ASSERT(xtk_stats_round_count(st) == 2, "rounds");
    TEST_ASSERT(xtk_stats_round_get(st, 1, &r) == 0 && r.dirty == 10, "get");

    TEST_ASSERT(xtk_stats_count(st, "pages", 5) == 0 &&
                    xtk_stats_count(st, "pages", 6) == 0,
                "count");
    TEST_ASSERT(xtk_stats_counter(st, "pages", &ns) == 0 && ns == 11, "11");
    TEST_ASSERT_ERRNO(xtk_stats_counter(st, "nope", &ns), ENOENT);
    for (int i = 0; i < XTK_STATS_MAX_NAMED - 1; i++) {
        char n[16];
        snprintf(n, sizeof(n), "c%d", i);
        TEST_ASSERT(xtk_stats_count(st, n, 1) == 0, "counter %d", i);
    }
    TEST_ASSERT_ERRNO(xtk_stats_count(st, "one too many", 1), ENOSPC);
    TEST_ASSERT(xtk_stats_hist(st, "h", "ns") == xtk_stats_hist(st, "h", "ns"),
                "same histogram by name");
    errno = 0;
    TEST_ASSERT(!xtk_stats_hist(st, "h2", "") && errno == EINVAL, "unit");
    errno = 0;
    TEST_ASSERT(!xtk_stats_new(NULL) && errno == EINVAL, "title");
    xtk_stats_free(st);
    xtk_stats_free(NULL);
}

/* Epoch rows: filled in as an epoch's phases end, the last ones kept. */
static void test_epochs(void)
{
    struct xtk_stats *st = xtk_stats_new("epochs");
    struct xtk_stats_epoch e = {.epoch = 1, .pause_ns = 100, .pages = 3};
    char *j;

    TEST_ASSERT(st && xtk_stats_epoch(st, &e) == 0, "row 1");
    TEST_ASSERT(
        xtk_stats_epoch(
            st, &(struct xtk_stats_epoch){.epoch = 2, .pause_ns = 200}) == 0,
        "row 2");
    /* A later phase of epoch 1: merged, what it does not set kept. */
    TEST_ASSERT(xtk_stats_epoch(
                    st, &(struct xtk_stats_epoch){.epoch = 1, .ack_ns = 7}) ==
                    0,
                "merge");
    TEST_ASSERT(xtk_stats_epoch_count(st) == 2, "two rows");
    TEST_ASSERT(xtk_stats_epoch_get(st, 0, &e) == 0 && e.epoch == 1 &&
                    e.pause_ns == 100 && e.ack_ns == 7 && e.pages == 3,
                "merged row");
    TEST_ASSERT_ERRNO(xtk_stats_epoch_get(st, 2, &e), EINVAL);
    TEST_ASSERT_ERRNO(
        xtk_stats_epoch(st, &(struct xtk_stats_epoch){.epoch = 0}), EINVAL);
    j = xtk_stats_format(st, XTK_STATS_JSON);
    TEST_ASSERT(j && strstr(j, "\"epochs\":[{\"epoch\":1,\"pause_ns\":100,"
                               "\"copy_ns\":0,\"send_ns\":0,\"ack_ns\":7,"),
                "json: %s", j);
    free(j);
    /* Past the limit the oldest go. */
    for (uint32_t n = 3; n <= XTK_STATS_MAX_EPOCHS + 10; n++)
        TEST_ASSERT(
            xtk_stats_epoch(
                st, &(struct xtk_stats_epoch){.epoch = n, .bytes = n}) == 0,
            "row %u", n);
    TEST_ASSERT(xtk_stats_epoch_count(st) == XTK_STATS_MAX_EPOCHS, "capped");
    TEST_ASSERT(xtk_stats_epoch_get(st, 0, &e) == 0 && e.epoch == 11,
                "oldest kept: %u", e.epoch);
    TEST_ASSERT(xtk_stats_epoch_get(st, XTK_STATS_MAX_EPOCHS - 1, &e) == 0 &&
                    e.epoch == XTK_STATS_MAX_EPOCHS + 10 &&
                    e.bytes == XTK_STATS_MAX_EPOCHS + 10,
                "newest");
    /* The newest is still merged into. */
    TEST_ASSERT(
        xtk_stats_epoch(
            st, &(struct xtk_stats_epoch){.epoch = XTK_STATS_MAX_EPOCHS + 10,
                                          .held_ns = 5}) == 0 &&
            xtk_stats_epoch_count(st) == XTK_STATS_MAX_EPOCHS &&
            xtk_stats_epoch_get(st, XTK_STATS_MAX_EPOCHS - 1, &e) == 0 &&
            e.held_ns == 5,
        "merge when full");
    xtk_stats_free(st);
}

static void test_format(void)
{
    struct xtk_stats *st = xtk_stats_new("demo \"x\"");
    struct xtk_stats_round r = {
        .round = 3, .dirty = 7, .sent = 5, .bytes = 2000000, .ns = 1000000000};
    struct xtk_hist *h = xtk_stats_hist(st, "batch\twrite", "ns");
    char *t, *j;

    xtk_stats_phase_at(st, "start", 100);
    xtk_stats_phase_at(st, "quote\" back\\slash", 2100);
    xtk_stats_add_round(st, &r);
    xtk_stats_count(st, "pages", 42);
    for (uint64_t i = 1; i <= 100; i++)
        xtk_hist_record(h, i * 1000);
    t = xtk_stats_format(st, XTK_STATS_TABLE);
    j = xtk_stats_format(st, XTK_STATS_JSON);
    TEST_ASSERT(t && j, "format");
    TEST_ASSERT(strstr(t, "== demo \"x\" ==") && strstr(t, "quote\" back") &&
                    strstr(t, "      2000000") && strstr(t, "0.002") &&
                    strstr(t, "batch\twrite (us)") && strstr(t, " 49.9 "),
                "table:\n%s", t);
    TEST_ASSERT(strstr(j, "\"schema\":\"xtk-stats/1\"") &&
                    strstr(j, "\"title\":\"demo \\\"x\\\"\"") &&
                    strstr(j, "\"name\":\"quote\\\" back\\\\slash\","
                              "\"ns\":2100,\"t_ns\":2000,\"delta_ns\":2000}") &&
                    strstr(j, "{\"round\":3,\"dirty\":7,\"sent\":5,\"bytes\":"
                              "2000000,\"ns\":1000000000,\"bytes_per_s\":"
                              "2000000.0,\"pages_per_s\":5.0}") &&
                    strstr(j, "\"counters\":{\"pages\":42}") &&
                    strstr(j, "\"name\":\"batch\\u0009write\",\"unit\":\"ns\","
                              "\"count\":100,\"min\":1000,\"mean\":50500,"
                              "\"p50\":49919,"),
                "json: %s", j);
    free(t);
    free(j);
    errno = 0;
    TEST_ASSERT(!xtk_stats_format(st, 3) && errno == EINVAL, "bad format");
    xtk_stats_free(st);
}

/* The length of the line of t that starts with start (0: none). */
static size_t line_len(const char *t, const char *start)
{
    const char *p = strstr(t, start), *nl;

    if (!p)
        return 0;
    nl = strchr(p, '\n');
    return nl ? (size_t)(nl - p) : strlen(p);
}

/* A long name (the save's "stop: <reason>" counter) widens its section:
 * every row's numbers stay in one column. */
static void test_table_alignment(void)
{
    struct xtk_stats *st = xtk_stats_new("align");
    struct xtk_hist *h1 = xtk_stats_hist(st, "suspend", "ns");
    struct xtk_hist *h2 =
        xtk_stats_hist(st, "a histogram with a long, long name", "ns");
    char *t;

    xtk_stats_phase_at(st, "start", 100);
    xtk_stats_phase_at(st, "a phase whose name is longer than the column", 200);
    xtk_stats_count(st, "pages sent", 8200);
    xtk_stats_count(st, "stop: converged: fewer than 50 dirty pages", 1);
    xtk_stats_count(st, "expected downtime ns", 1108382);
    xtk_hist_record(h1, 1000);
    xtk_hist_record(h2, 1000);
    t = xtk_stats_format(st, XTK_STATS_TABLE);
    TEST_ASSERT(t, "format");
    TEST_ASSERT(
        line_len(t, "counter ") &&
            line_len(t, "  pages sent") == line_len(t, "counter ") &&
            line_len(t, "  stop: converged") == line_len(t, "counter ") &&
            line_len(t, "  expected downtime") == line_len(t, "counter "),
        "counters out of line:\n%s", t);
    TEST_ASSERT(line_len(t, "phase ") &&
                    line_len(t, "  start") == line_len(t, "phase ") &&
                    line_len(t, "  a phase whose") == line_len(t, "phase "),
                "phases out of line:\n%s", t);
    TEST_ASSERT(
        line_len(t, "histogram ") &&
            line_len(t, "  suspend (us)") == line_len(t, "histogram ") &&
            line_len(t, "  a histogram with") == line_len(t, "histogram "),
        "histograms out of line:\n%s", t);
    free(t);
    xtk_stats_free(st);
}

int main(void)
{
    TEST_RUN(test_hist_accuracy);
    TEST_RUN(test_hist_edges);
    TEST_RUN(test_hist_merge);
    TEST_RUN(test_hist_threads);
    TEST_RUN(test_phases_rounds_counters);
    TEST_RUN(test_epochs);
    TEST_RUN(test_format);
    TEST_RUN(test_table_alignment);
    return 0;
}
