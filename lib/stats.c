/*
 * stats.c - latency instrumentation: phases, rounds, counters and
 * log-linear histograms, reported as a table or as JSON.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <xtk/stats.h>

#include "xtk-internal.h"

/* ---- histograms ------------------------------------------------------- */

#define SUB_BITS 6
#define SUB (1u << SUB_BITS)                 /* buckets per power of two */
#define LINEAR (2 * SUB)                     /* values below: exact */
#define NBUCKETS ((64 - SUB_BITS + 1) * SUB) /* 3776 */

struct xtk_hist {
    uint64_t count, min, max;
    unsigned __int128 sum;
    uint64_t b[NBUCKETS];
};

static unsigned bucket_of(uint64_t v)
{
    unsigned e, shift;

    if (v < LINEAR)
        return (unsigned)v;
    e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS + 1 */
    shift = e - SUB_BITS;
    return (shift + 1) * SUB + (unsigned)((v >> shift) - SUB);
}

/* The smallest value of bucket i and the bucket's width. */
static void bucket_range(unsigned i, uint64_t *low, uint64_t *width)
{
    unsigned shift;

    if (i < LINEAR) {
        *low = i;
        *width = 1;
        return;
    }
    shift = i / SUB - 1;
    *low = (uint64_t)(SUB + i % SUB) << shift;
    *width = 1ull << shift;
}

struct xtk_hist *xtk_hist_new(void)
{
    struct xtk_hist *h = calloc(1, sizeof(*h));

    if (h)
        h->min = UINT64_MAX;
    return h;
}

void xtk_hist_free(struct xtk_hist *h)
{
    free(h);
}

void xtk_hist_reset(struct xtk_hist *h)
{
    if (!h)
        return;
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void xtk_hist_record(struct xtk_hist *h, uint64_t v)
{
    if (!h)
        return;
    h->b[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

int xtk_hist_merge(struct xtk_hist *dst, const struct xtk_hist *src)
{
    if (!dst || !src)
        return xtk__fail(EINVAL);
    if (dst == src) /* merging into itself doubles every sample */
        return xtk__fail(EINVAL);
    for (unsigned i = 0; i < NBUCKETS; i++)
        dst->b[i] += src->b[i];
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    return 0;
}

/* Nearest rank: the bucket holding the ceil(p% * count)-th sample. */
static uint64_t percentile(const struct xtk_hist *h, double p)
{
    uint64_t rank, seen = 0, low, width, v;
    double r = p / 100.0 * (double)h->count;

    rank = (uint64_t)r;
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            bucket_range(i, &low, &width);
            v = low + (width - 1) / 2;
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}

int xtk_hist_percentile(const struct xtk_hist *h, double p, uint64_t *out)
{
    if (!h || !out || !(p > 0.0 && p <= 100.0))
        return xtk__fail(EINVAL);
    if (!h->count)
        return xtk__fail(ENODATA);
    *out = p == 100.0 ? h->max : percentile(h, p);
    return 0;
}

int xtk_hist_summarize(const struct xtk_hist *h, struct xtk_hist_summary *out)
{
    struct xtk_hist_summary s = {0};

    if (!h || !out)
        return xtk__fail(EINVAL);
    if (h->count) {
        s.count = h->count;
        s.min = h->min;
        s.max = h->max;
        s.mean = (uint64_t)(h->sum / h->count);
        s.p50 = percentile(h, 50);
        s.p90 = percentile(h, 90);
        s.p99 = percentile(h, 99);
    }
    *out = s;
    return 0;
}

/* ---- the report ----------------------------------------------------- */

uint64_t xtk_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct phase {
    char name[XTK_STATS_NAME_MAX + 1];
    uint64_t ns;
};

struct named_hist {
    char name[XTK_STATS_NAME_MAX + 1];
    char unit[16];
    struct xtk_hist *h;
};

struct counter {
    char name[XTK_STATS_NAME_MAX + 1];
    uint64_t value;
};

struct xtk_stats {
    char title[XTK_STATS_NAME_MAX + 1];
    struct phase *phases;
    size_t nphases, phases_cap;
    struct xtk_stats_round *rounds;
    size_t nrounds, rounds_cap;
    /* Epoch rows: a ring of the last XTK_STATS_MAX_EPOCHS, the oldest at
     * epochs_head once it is full. */
    struct xtk_stats_epoch *epochs;
    size_t nepochs, epochs_cap, epochs_head;
    struct counter counters[XTK_STATS_MAX_NAMED];
    size_t ncounters;
    struct named_hist hists[XTK_STATS_MAX_NAMED];
    size_t nhists;
    xtk_stats_observer_fn *observer;
    void *observer_arg;
};

int xtk_stats_set_observer(struct xtk_stats *st, xtk_stats_observer_fn *fn,
                           void *arg)
{
    if (!st)
        return xtk__fail(EINVAL);
    st->observer = fn;
    st->observer_arg = arg;
    return 0;
}

static void observe(struct xtk_stats *st, const struct xtk_stats_event *ev)
{
    if (st->observer)
        st->observer(st, ev, st->observer_arg);
}

static int name_ok(const char *name)
{
    return name && *name && strlen(name) <= XTK_STATS_NAME_MAX;
}

/* Makes room for one more element in a growing array (at most max). */
static int grow(void **arr, size_t *cap, size_t n, size_t max, size_t size)
{
    size_t ncap;
    void *p;

    if (n < *cap)
        return 0;
    if (n >= max)
        return xtk__fail(ENOSPC);
    ncap = *cap ? *cap * 2 : 16;
    if (ncap > max)
        ncap = max;
    p = realloc(*arr, ncap * size);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

struct xtk_stats *xtk_stats_new(const char *title)
{
    struct xtk_stats *st;

    if (!name_ok(title))
        return xtk__fail_null(EINVAL);
    st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    strcpy(st->title, title);
    return st;
}

void xtk_stats_free(struct xtk_stats *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->nhists; i++)
        xtk_hist_free(st->hists[i].h);
    free(st->phases);
    free(st->rounds);
    free(st->epochs);
    free(st);
}

int xtk_stats_phase_at(struct xtk_stats *st, const char *name, uint64_t ns)
{
    if (!st || !name_ok(name))
        return xtk__fail(EINVAL);
    if (grow((void **)&st->phases, &st->phases_cap, st->nphases,
             XTK_STATS_MAX_PHASES, sizeof(*st->phases)) < 0)
        return -1;
    strcpy(st->phases[st->nphases].name, name);
    st->phases[st->nphases++].ns = ns;
    observe(st, &(struct xtk_stats_event){
                    .kind = XTK_STATS_EVENT_PHASE, .phase = name, .ns = ns});
    return 0;
}

int xtk_stats_phase(struct xtk_stats *st, const char *name)
{
    return xtk_stats_phase_at(st, name, xtk_now_ns());
}

int xtk_stats_interval(const struct xtk_stats *st, const char *from,
                       const char *to, uint64_t *ns)
{
    size_t i;

    if (!st || !from || !to || !ns)
        return xtk__fail(EINVAL);
    for (i = 0; i < st->nphases; i++)
        if (!strcmp(st->phases[i].name, from))
            break;
    for (size_t j = i + 1; j < st->nphases; j++)
        if (!strcmp(st->phases[j].name, to)) {
            if (st->phases[j].ns < st->phases[i].ns)
                break;
            *ns = st->phases[j].ns - st->phases[i].ns;
            return 0;
        }
    return xtk__fail(ENOENT);
}

size_t xtk_stats_phase_count(const struct xtk_stats *st)
{
    return st ? st->nphases : 0;
}

int xtk_stats_phase_get(const struct xtk_stats *st, size_t i, const char **name,
                        uint64_t *ns)
{
    if (!st || i >= st->nphases || !name || !ns)
        return xtk__fail(EINVAL);
    *name = st->phases[i].name;
    *ns = st->phases[i].ns;
    return 0;
}

int xtk_stats_add_round(struct xtk_stats *st, const struct xtk_stats_round *r)
{
    if (!st || !r)
        return xtk__fail(EINVAL);
    if (grow((void **)&st->rounds, &st->rounds_cap, st->nrounds,
             XTK_STATS_MAX_ROUNDS, sizeof(*st->rounds)) < 0)
        return -1;
    st->rounds[st->nrounds++] = *r;
    observe(st, &(struct xtk_stats_event){.kind = XTK_STATS_EVENT_ROUND,
                                          .ns = xtk_now_ns(),
                                          .round = r});
    return 0;
}

size_t xtk_stats_round_count(const struct xtk_stats *st)
{
    return st ? st->nrounds : 0;
}

int xtk_stats_round_get(const struct xtk_stats *st, size_t i,
                        struct xtk_stats_round *out)
{
    if (!st || i >= st->nrounds || !out)
        return xtk__fail(EINVAL);
    *out = st->rounds[i];
    return 0;
}

static struct xtk_stats_epoch *epoch_at(const struct xtk_stats *st, size_t i)
{
    return &st->epochs[(st->epochs_head + i) % st->epochs_cap];
}

int xtk_stats_epoch(struct xtk_stats *st, const struct xtk_stats_epoch *e)
{
    struct xtk_stats_epoch *row = NULL;

    if (!st || !e || !e->epoch || e->reserved)
        return xtk__fail(EINVAL);
    /* Recent epochs are the ones still being filled in. */
    for (size_t k = 0; k < st->nepochs && k < 256 && !row; k++) {
        struct xtk_stats_epoch *r = epoch_at(st, st->nepochs - 1 - k);

        if (r->epoch == e->epoch)
            row = r;
    }
    if (!row) {
        if (st->nepochs == XTK_STATS_MAX_EPOCHS) { /* the oldest goes */
            row = &st->epochs[st->epochs_head];
            st->epochs_head = (st->epochs_head + 1) % st->epochs_cap;
        } else {
            if (grow((void **)&st->epochs, &st->epochs_cap, st->nepochs,
                     XTK_STATS_MAX_EPOCHS, sizeof(*st->epochs)) < 0)
                return -1;
            row = &st->epochs[st->nepochs++];
        }
        *row = (struct xtk_stats_epoch){.epoch = e->epoch};
    }
#define MERGE(f)                                                               \
    if (e->f)                                                                  \
    row->f = e->f
    MERGE(pause_ns);
    MERGE(copy_ns);
    MERGE(send_ns);
    MERGE(ack_ns);
    MERGE(held_ns);
    MERGE(pages);
    MERGE(bytes);
#undef MERGE
    observe(st, &(struct xtk_stats_event){.kind = XTK_STATS_EVENT_EPOCH,
                                          .ns = xtk_now_ns(),
                                          .epoch = row});
    return 0;
}

size_t xtk_stats_epoch_count(const struct xtk_stats *st)
{
    return st ? st->nepochs : 0;
}

int xtk_stats_epoch_get(const struct xtk_stats *st, size_t i,
                        struct xtk_stats_epoch *out)
{
    if (!st || i >= st->nepochs || !out)
        return xtk__fail(EINVAL);
    *out = *epoch_at(st, i);
    return 0;
}

static struct counter *find_counter(const struct xtk_stats *st,
                                    const char *name)
{
    for (size_t i = 0; i < st->ncounters; i++)
        if (!strcmp(st->counters[i].name, name))
            return (struct counter *)&st->counters[i];
    return NULL;
}

int xtk_stats_count(struct xtk_stats *st, const char *name, uint64_t delta)
{
    struct counter *c;

    if (!st || !name_ok(name))
        return xtk__fail(EINVAL);
    c = find_counter(st, name);
    if (!c) {
        if (st->ncounters == XTK_STATS_MAX_NAMED)
            return xtk__fail(ENOSPC);
        c = &st->counters[st->ncounters++];
        strcpy(c->name, name);
        c->value = 0;
    }
    c->value += delta;
    return 0;
}

int xtk_stats_counter(const struct xtk_stats *st, const char *name,
                      uint64_t *out)
{
    const struct counter *c;

    if (!st || !name || !out)
        return xtk__fail(EINVAL);
    c = find_counter(st, name);
    if (!c)
        return xtk__fail(ENOENT);
    *out = c->value;
    return 0;
}

struct xtk_hist *xtk_stats_hist(struct xtk_stats *st, const char *name,
                                const char *unit)
{
    struct named_hist *nh;

    if (!st || !name_ok(name) || !unit || !*unit || strlen(unit) > 15)
        return xtk__fail_null(EINVAL);
    for (size_t i = 0; i < st->nhists; i++)
        if (!strcmp(st->hists[i].name, name))
            return st->hists[i].h;
    if (st->nhists == XTK_STATS_MAX_NAMED)
        return xtk__fail_null(ENOSPC);
    nh = &st->hists[st->nhists];
    nh->h = xtk_hist_new();
    if (!nh->h)
        return NULL;
    strcpy(nh->name, name);
    strcpy(nh->unit, unit);
    st->nhists++;
    return nh->h;
}

/* ---- output ----------------------------------------------------------- */

static double rate(uint64_t amount, uint64_t ns)
{
    return ns ? (double)amount * 1e9 / (double)ns : 0.0;
}

/* A hist's label in the table: "name (us)" for ns, else "name (unit)". */
static void hist_label(const struct named_hist *nh, char *label, size_t size)
{
    snprintf(label, size, "%s (%s)", nh->name,
             strcmp(nh->unit, "ns") ? nh->unit : "us");
}

/*
 * The table: each section's first column as wide as its longest name
 * (at least the usual width), so that a long one (a "stop: ..." reason)
 * does not push its row out of line with the others.
 */
static void format_table(const struct xtk_stats *st, FILE *f)
{
    uint64_t t0 = st->nphases ? st->phases[0].ns : 0;
    int pw = 34, cw = 34, hw = 24;
    char label[96];

    for (size_t i = 0; i < st->nphases; i++)
        if ((int)strlen(st->phases[i].name) > pw)
            pw = (int)strlen(st->phases[i].name);
    for (size_t i = 0; i < st->ncounters; i++)
        if ((int)strlen(st->counters[i].name) > cw)
            cw = (int)strlen(st->counters[i].name);
    for (size_t i = 0; i < st->nhists; i++) {
        hist_label(&st->hists[i], label, sizeof(label));
        if ((int)strlen(label) > hw)
            hw = (int)strlen(label);
    }
    fprintf(f, "== %s ==\n", st->title);
    if (st->nphases) {
        fprintf(f, "%-*s %12s %12s\n", pw + 2, "phase", "t (ms)", "+prev (ms)");
        for (size_t i = 0; i < st->nphases; i++) {
            uint64_t prev = i ? st->phases[i - 1].ns : t0;
            fprintf(f, "  %-*s %12.3f %12.3f\n", pw, st->phases[i].name,
                    (double)(int64_t)(st->phases[i].ns - t0) / 1e6,
                    (double)(int64_t)(st->phases[i].ns - prev) / 1e6);
        }
    }
    if (st->nrounds) {
        fprintf(f, "%6s %10s %10s %14s %11s %10s %11s\n", "round", "dirty",
                "sent", "bytes", "time (ms)", "MiB/s", "pages/s");
        for (size_t i = 0; i < st->nrounds; i++) {
            const struct xtk_stats_round *r = &st->rounds[i];
            fprintf(f, "%6u %10llu %10llu %14llu %11.3f %10.1f %11.0f\n",
                    r->round, (unsigned long long)r->dirty,
                    (unsigned long long)r->sent, (unsigned long long)r->bytes,
                    (double)r->ns / 1e6, rate(r->bytes, r->ns) / 1048576.0,
                    rate(r->sent, r->ns));
        }
    }
    if (st->ncounters) {
        fprintf(f, "%-*s %20s\n", cw + 2, "counter", "value");
        for (size_t i = 0; i < st->ncounters; i++)
            fprintf(f, "  %-*s %20llu\n", cw, st->counters[i].name,
                    (unsigned long long)st->counters[i].value);
    }
    if (st->nhists) {
        fprintf(f, "%-*s %9s %10s %10s %10s %10s %10s %10s\n", hw + 2,
                "histogram", "count", "min", "p50", "p90", "p99", "max",
                "mean");
        for (size_t i = 0; i < st->nhists; i++) {
            const struct named_hist *nh = &st->hists[i];
            struct xtk_hist_summary s;
            int us = !strcmp(nh->unit, "ns");
            uint64_t v[6];

            xtk_hist_summarize(nh->h, &s);
            v[0] = s.min, v[1] = s.p50, v[2] = s.p90, v[3] = s.p99;
            v[4] = s.max, v[5] = s.mean;
            hist_label(nh, label, sizeof(label));
            fprintf(f, "  %-*s %9llu", hw, label, (unsigned long long)s.count);
            for (int k = 0; k < 6; k++) {
                if (us)
                    fprintf(f, " %10.1f", (double)v[k] / 1e3);
                else
                    fprintf(f, " %10llu", (unsigned long long)v[k]);
            }
            fputc('\n', f);
        }
    }
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void format_json(const struct xtk_stats *st, FILE *f)
{
    uint64_t t0 = st->nphases ? st->phases[0].ns : 0;

    fputs("{\"schema\":\"xtk-stats/1\",\"title\":", f);
    json_str(f, st->title);
    fputs(",\"phases\":[", f);
    for (size_t i = 0; i < st->nphases; i++) {
        uint64_t prev = i ? st->phases[i - 1].ns : t0;
        fputs(i ? ",{\"name\":" : "{\"name\":", f);
        json_str(f, st->phases[i].name);
        fprintf(f, ",\"ns\":%llu,\"t_ns\":%lld,\"delta_ns\":%lld}",
                (unsigned long long)st->phases[i].ns,
                (long long)(st->phases[i].ns - t0),
                (long long)(st->phases[i].ns - prev));
    }
    fputs("],\"rounds\":[", f);
    for (size_t i = 0; i < st->nrounds; i++) {
        const struct xtk_stats_round *r = &st->rounds[i];
        fprintf(f,
                "%s{\"round\":%u,\"dirty\":%llu,\"sent\":%llu,\"bytes\":%llu,"
                "\"ns\":%llu,\"bytes_per_s\":%.1f,\"pages_per_s\":%.1f}",
                i ? "," : "", r->round, (unsigned long long)r->dirty,
                (unsigned long long)r->sent, (unsigned long long)r->bytes,
                (unsigned long long)r->ns, rate(r->bytes, r->ns),
                rate(r->sent, r->ns));
    }
    fputs("],\"epochs\":[", f);
    for (size_t i = 0; i < st->nepochs; i++) {
        const struct xtk_stats_epoch *e = epoch_at(st, i);

        fprintf(f,
                "%s{\"epoch\":%u,\"pause_ns\":%llu,\"copy_ns\":%llu,"
                "\"send_ns\":%llu,\"ack_ns\":%llu,\"held_ns\":%llu,"
                "\"pages\":%llu,\"bytes\":%llu}",
                i ? "," : "", e->epoch, (unsigned long long)e->pause_ns,
                (unsigned long long)e->copy_ns, (unsigned long long)e->send_ns,
                (unsigned long long)e->ack_ns, (unsigned long long)e->held_ns,
                (unsigned long long)e->pages, (unsigned long long)e->bytes);
    }
    fputs("],\"counters\":{", f);
    for (size_t i = 0; i < st->ncounters; i++) {
        if (i)
            fputc(',', f);
        json_str(f, st->counters[i].name);
        fprintf(f, ":%llu", (unsigned long long)st->counters[i].value);
    }
    fputs("},\"histograms\":[", f);
    for (size_t i = 0; i < st->nhists; i++) {
        struct xtk_hist_summary s;

        xtk_hist_summarize(st->hists[i].h, &s);
        fputs(i ? ",{\"name\":" : "{\"name\":", f);
        json_str(f, st->hists[i].name);
        fputs(",\"unit\":", f);
        json_str(f, st->hists[i].unit);
        fprintf(f,
                ",\"count\":%llu,\"min\":%llu,\"mean\":%llu,\"p50\":%llu,"
                "\"p90\":%llu,\"p99\":%llu,\"max\":%llu}",
                (unsigned long long)s.count, (unsigned long long)s.min,
                (unsigned long long)s.mean, (unsigned long long)s.p50,
                (unsigned long long)s.p90, (unsigned long long)s.p99,
                (unsigned long long)s.max);
    }
    fputs("]}\n", f);
}

char *xtk_stats_format(const struct xtk_stats *st, int format)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    if (!st || (format != XTK_STATS_TABLE && format != XTK_STATS_JSON))
        return xtk__fail_null(EINVAL);
    f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    if (format == XTK_STATS_TABLE)
        format_table(st, f);
    else
        format_json(st, f);
    if (ferror(f)) {
        fclose(f);
        free(text);
        return xtk__fail_null(ENOMEM);
    }
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
