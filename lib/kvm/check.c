/*
 * check.c - the host side of the built-in guest's self-check: reads the
 * guest's status page and workload data out of its RAM (see kvm.h).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "abi.h"
#include "kvm/kvm.h"

static int fail(int err, char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(int err, char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;

    if (why && whylen) {
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    errno = err;
    return -1;
}

static int check_dirty(const uint8_t *ram, uint64_t nr_pages,
                       const struct xtk_guest_dirty *d, char *why,
                       size_t whylen)
{
    uint64_t base = XTK_GUEST_WORK_GPA >> 12, sum = 0;
    /* The area is below the MMIO hole, where frame and address agree. */
    uint64_t low = xtk_guest_low_bytes(nr_pages << 12) >> 12;
    const uint64_t *table;

    if (!d->stride || !d->pages || d->pages > low ||
        base + d->pages + (d->pages * 8 + 4095) / 4096 > low ||
        d->table_gpa != XTK_GUEST_WORK_GPA + d->pages * 4096)
        return fail(EILSEQ, why, whylen, "dirty: bad parameters");
    table = (const uint64_t *)(ram + d->table_gpa);
    for (uint64_t idx = 0; idx < d->pages; idx += d->stride) {
        uint64_t pfn = base + idx, seq = table[idx];
        const uint64_t *page = (const uint64_t *)(ram + (pfn << 12));

        sum += seq;
        if (!seq || pfn == d->writing)
            continue;
        if (seq > d->seq)
            return fail(EILSEQ, why, whylen,
                        "dirty: page %#llx has seq %llu beyond the last %llu",
                        (unsigned long long)pfn, (unsigned long long)seq,
                        (unsigned long long)d->seq);
        for (uint64_t i = 0; i < 512; i++)
            if (page[i] != xtk_guest_pattern(pfn, seq, i))
                return fail(EILSEQ, why, whylen,
                            "dirty: page %#llx word %llu is not seq %llu's",
                            (unsigned long long)pfn, (unsigned long long)i,
                            (unsigned long long)seq);
    }
    if (!d->writing && sum != d->table_sum)
        return fail(EILSEQ, why, whylen,
                    "dirty: the table sums to %llu, not %llu",
                    (unsigned long long)sum, (unsigned long long)d->table_sum);
    return 0;
}

static int check_spin(const struct xtk_guest_spin *s, char *why, size_t whylen)
{
    uint64_t sum = 0;

    for (int i = 0; i < XTK_GUEST_MAX_VCPUS; i++)
        sum += s->per_cpu[i];
    if (s->holder) /* stopped inside the section: one count may lag */
        return sum == s->shared_count || sum + 1 == s->shared_count
                   ? 0
                   : fail(EILSEQ, why, whylen, "spin: counts do not add up");
    if (s->guard_a != s->guard_b || sum != s->shared_count)
        return fail(
            EILSEQ, why, whylen, "spin: guards %llu/%llu, counts %llu vs %llu",
            (unsigned long long)s->guard_a, (unsigned long long)s->guard_b,
            (unsigned long long)sum, (unsigned long long)s->shared_count);
    return 0;
}

/* Idle and counter: the patterned pages, and the mirror of the progress
 * word, which the guest writes just after the word (so it may lag by one
 * if the guest stopped between the two). */
static int check_fill(const uint8_t *ram, uint64_t nr_pages,
                      const struct xtk_guest_status *st, char *why,
                      size_t whylen)
{
    const struct xtk_guest_fill *f = &st->fill;
    uint64_t base = XTK_GUEST_WORK_GPA >> 12, word, mirror;

    if (f->pages != XTK_GUEST_FILL_PAGES ||
        f->mirror_gpa != XTK_GUEST_WORK_GPA + f->pages * 4096 ||
        base + f->pages + 1 > xtk_guest_low_bytes(nr_pages << 12) >> 12)
        return fail(EILSEQ, why, whylen, "fill: bad parameters");
    for (uint64_t p = 0; p < f->pages; p++) {
        const uint64_t *page = (const uint64_t *)(ram + ((base + p) << 12));
        for (uint64_t i = 0; i < 512; i++)
            if (page[i] != xtk_guest_pattern(base + p, f->seed, i))
                return fail(EILSEQ, why, whylen,
                            "fill: page %#llx word %llu is not the pattern",
                            (unsigned long long)(base + p),
                            (unsigned long long)i);
    }
    if (st->top_gpa || st->top_frame) {
        const uint64_t *page;

        if (st->top_frame != nr_pages - 1 ||
            st->top_gpa != xtk_guest_ram_gpa(st->top_frame << 12))
            return fail(
                EILSEQ, why, whylen,
                "fill: RAM's last page is frame %#llx at %#llx, "
                "not frame %#llx at %#llx",
                (unsigned long long)st->top_frame,
                (unsigned long long)st->top_gpa,
                (unsigned long long)(nr_pages - 1),
                (unsigned long long)xtk_guest_ram_gpa((nr_pages - 1) << 12));
        page = (const uint64_t *)(ram + (st->top_frame << 12));
        /* The mirror's copy, written after it: one behind at most. */
        word =
            st->workload == XTK_WORK_COUNTER ? st->counter : st->heartbeat[0];
        if (~page[0] != word && ~page[0] + 1 != word)
            return fail(EILSEQ, why, whylen,
                        "fill: the %s is %llu but its copy in RAM's last "
                        "page says %llu",
                        st->workload == XTK_WORK_COUNTER ? "counter"
                                                         : "heartbeat",
                        (unsigned long long)word, (unsigned long long)~page[0]);
        for (uint64_t i = 1; i < 512; i++)
            if (page[i] != xtk_guest_pattern(st->top_frame, f->seed, i))
                return fail(EILSEQ, why, whylen,
                            "fill: RAM's last page (frame %#llx) word %llu "
                            "is not the pattern",
                            (unsigned long long)st->top_frame,
                            (unsigned long long)i);
    }
    word = st->workload == XTK_WORK_COUNTER ? st->counter : st->heartbeat[0];
    memcpy(&mirror, ram + f->mirror_gpa, sizeof(mirror));
    mirror = ~mirror;
    if (mirror != word && mirror + 1 != word)
        return fail(EILSEQ, why, whylen,
                    "fill: the %s is %llu but its mirror says %llu",
                    st->workload == XTK_WORK_COUNTER ? "counter" : "heartbeat",
                    (unsigned long long)word, (unsigned long long)mirror);
    return 0;
}

int xtk__guest_check(const void *ram, uint64_t nr_pages, char *why,
                     size_t whylen)
{
    struct xtk_guest_status st;

    if (!ram || nr_pages < (XTK_GUEST_WORK_GPA >> 12))
        return fail(EINVAL, why, whylen, "no guest memory");
    memcpy(&st, (const uint8_t *)ram + XTK_GUEST_STATUS_GPA, sizeof(st));
    if (st.magic != XTK_GUEST_STATUS_MAGIC)
        return fail(EINVAL, why, whylen, "not a built-in guest (or not up)");
    st.message[sizeof(st.message) - 1] = 0;
    if (st.state == XTK_GUEST_FAILED || st.errors)
        return fail(EILSEQ, why, whylen, "the guest failed: %s", st.message);
    if (st.state != XTK_GUEST_RUNNING && st.state != XTK_GUEST_SUSPENDED)
        return fail(EILSEQ, why, whylen, "the guest is in state %u", st.state);
    if (st.workload == XTK_WORK_DIRTY && st.dirty.pages)
        return check_dirty(ram, nr_pages, &st.dirty, why, whylen);
    if (st.workload == XTK_WORK_SPIN)
        return check_spin(&st.spin, why, whylen);
    if (st.workload == XTK_WORK_IDLE || st.workload == XTK_WORK_COUNTER)
        return check_fill(ram, nr_pages, &st, why, whylen);
    return 0;
}
