/*
 * lazy-index.c - the lazy restore's index after a file's END: built by
 * the save (xtk__lzx_build), read and checked by the restore (see
 * lazy-index.h for the layout and what is trusted).
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <xtk/stream.h>

#include "lazy-index.h"
#include "xtk-internal.h"

__attribute__((format(printf, 3, 4))) static int
refuse(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;

    if (why && whylen) {
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
    }
    errno = EBADMSG;
    return -1;
}

void xtk__lzx_free(struct xtk__lzx *ix)
{
    if (!ix)
        return;
    free(ix->recs);
    free(ix->others);
    free(ix->runs);
    free(ix->rec_first);
    free(ix->run_next);
    memset(ix, 0, sizeof(*ix));
}

/* The first of the others after offset at (nr_others: none). */
static uint32_t other_after(const struct xtk__lzx *ix, uint64_t at)
{
    uint32_t lo = 0, hi = ix->nr_others;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (ix->others[mid] <= at)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The end of record rec's span: the next record's (of either list) start,
 * or pages_end. */
static uint64_t rec_limit(const struct xtk__lzx *ix, uint32_t rec)
{
    uint64_t lim = rec + 1 < ix->nr_recs ? ix->recs[rec + 1] : ix->pages_end;
    uint32_t o = other_after(ix, ix->recs[rec]);

    if (o < ix->nr_others && ix->others[o] < lim)
        lim = ix->others[o];
    return lim;
}

uint64_t xtk__lzx_next_read(const struct xtk__lzx *ix, uint64_t at)
{
    uint32_t o;

    if (!ix->pages_end || at < ix->pages_begin || at >= ix->end_off)
        return at;
    o = other_after(ix, at - 1);
    return o < ix->nr_others ? ix->others[o] : ix->end_off;
}

int xtk__lzx_parse(const void *buf, size_t len, uint64_t trailer_off,
                   uint32_t crc, struct xtk__lzx *ix, char *why, size_t whylen)
{
    const uint8_t *b = buf;
    const uint8_t *rp;
    uint64_t want;

    memset(ix, 0, sizeof(*ix));
    if (len < XTK__LZX_HEAD_SIZE)
        return refuse(why, whylen, "%zu bytes, less than its head", len);
    if (memcmp(b, XTK__LZX_MAGIC, 8))
        return refuse(why, whylen, "no index head at offset %llu",
                      (unsigned long long)trailer_off);
    if (xtk__get_le32(b + 8) != XTK__LZX_VERSION ||
        xtk__get_le32(b + 12) != XTK_PAGE_SHIFT)
        return refuse(why, whylen, "version %u, page shift %u",
                      xtk__get_le32(b + 8), xtk__get_le32(b + 12));
    if ((uint32_t)crc32(0, b, (uInt)len) != crc)
        return refuse(why, whylen, "its CRC does not match");
    ix->nr_pages = xtk__get_le64(b + 16);
    ix->pages_begin = xtk__get_le64(b + 24);
    ix->pages_end = xtk__get_le64(b + 32);
    ix->end_off = xtk__get_le64(b + 40);
    ix->nr_recs = xtk__get_le32(b + 48);
    ix->nr_runs = xtk__get_le32(b + 52);
    ix->nr_others = xtk__get_le32(b + 56);
    ix->trailer_off = trailer_off;
    if (xtk__get_le32(b + 60))
        return refuse(why, whylen, "its reserved field is set");
    if (!ix->nr_pages || ix->nr_pages > XTK__LZX_MAX_PAGES ||
        ix->nr_runs > XTK__LZX_MAX_RUNS || ix->nr_recs > ix->nr_runs ||
        ix->nr_others > XTK__LZX_MAX_RUNS)
        return refuse(why, whylen,
                      "%llu frames, %u records, %u runs, %u others",
                      (unsigned long long)ix->nr_pages, ix->nr_recs,
                      ix->nr_runs, ix->nr_others);
    want = XTK__LZX_HEAD_SIZE + 8ull * ix->nr_recs + 8ull * ix->nr_others +
           (uint64_t)XTK__LZX_RUN_SIZE * ix->nr_runs;
    if (want != len)
        return refuse(why, whylen,
                      "%zu bytes for %u records, %u others and %u runs", len,
                      ix->nr_recs, ix->nr_others, ix->nr_runs);
    /* No PAGE_DATA at all: no pages and no runs. */
    if (ix->end_off + 8 != trailer_off ||
        (ix->pages_end ? !(ix->pages_begin < ix->pages_end &&
                           ix->pages_end <= ix->end_off &&
                           !(ix->pages_begin % 8) && !(ix->pages_end % 8))
                       : ix->pages_begin || ix->nr_runs || ix->nr_others))
        return refuse(why, whylen,
                      "its pages [%llu, %llu) and END at %llu do not fit "
                      "before it at %llu",
                      (unsigned long long)ix->pages_begin,
                      (unsigned long long)ix->pages_end,
                      (unsigned long long)ix->end_off,
                      (unsigned long long)trailer_off);
    ix->recs = calloc(ix->nr_recs ? ix->nr_recs : 1, sizeof(*ix->recs));
    ix->others = calloc(ix->nr_others ? ix->nr_others : 1, sizeof(*ix->others));
    ix->runs = calloc(ix->nr_runs ? ix->nr_runs : 1, sizeof(*ix->runs));
    ix->rec_first =
        malloc((ix->nr_recs ? ix->nr_recs : 1) * sizeof(*ix->rec_first));
    ix->run_next =
        malloc((ix->nr_runs ? ix->nr_runs : 1) * sizeof(*ix->run_next));
    if (!ix->recs || !ix->others || !ix->runs || !ix->rec_first ||
        !ix->run_next) {
        xtk__lzx_free(ix);
        errno = ENOMEM;
        return -1;
    }
    for (uint32_t i = 0; i < ix->nr_recs; i++) {
        ix->recs[i] = xtk__get_le64(b + XTK__LZX_HEAD_SIZE + 8ull * i);
        ix->rec_first[i] = UINT32_MAX;
        /* A record's head (16 bytes) and at least one page. */
        if (ix->recs[i] % 8 || ix->recs[i] < ix->pages_begin ||
            ix->recs[i] + 16 + 8 + XTK_PAGE_SIZE > ix->pages_end ||
            (i && ix->recs[i] <= ix->recs[i - 1])) {
            int r = refuse(why, whylen, "record %u at offset %llu", i,
                           (unsigned long long)ix->recs[i]);
            xtk__lzx_free(ix);
            return r;
        }
    }
    rp = b + XTK__LZX_HEAD_SIZE + 8ull * ix->nr_recs;
    for (uint32_t i = 0; i < ix->nr_others; i++, rp += 8) {
        ix->others[i] = xtk__get_le64(rp);
        /* After the first PAGE_DATA, a record's head before END. */
        if (ix->others[i] % 8 || ix->others[i] <= ix->pages_begin ||
            ix->others[i] + 8 > ix->end_off ||
            (i && ix->others[i] <= ix->others[i - 1])) {
            int r = refuse(why, whylen, "other record %u at offset %llu", i,
                           (unsigned long long)ix->others[i]);
            xtk__lzx_free(ix);
            return r;
        }
    }
    /* No PAGE_DATA record where another is. */
    for (uint32_t i = 0, o = 0; i < ix->nr_recs; i++) {
        while (o < ix->nr_others && ix->others[o] < ix->recs[i])
            o++;
        if (o < ix->nr_others && ix->others[o] == ix->recs[i]) {
            int r = refuse(why, whylen,
                           "record %u at offset %llu is listed "
                           "twice",
                           i, (unsigned long long)ix->recs[i]);
            xtk__lzx_free(ix);
            return r;
        }
    }
    for (uint32_t i = 0; i < ix->nr_runs; i++, rp += XTK__LZX_RUN_SIZE) {
        struct xtk__lzx_run *r = &ix->runs[i];
        const struct xtk__lzx_run *p = i ? &ix->runs[i - 1] : NULL;

        r->pfn = xtk__get_le64(rp);
        r->off = xtk__get_le64(rp + 8);
        r->count = xtk__get_le32(rp + 16);
        r->rec = xtk__get_le32(rp + 20);
        if (!r->count || r->pfn >= ix->nr_pages ||
            r->count > ix->nr_pages - r->pfn ||
            (p && r->pfn < p->pfn + p->count) || r->rec >= ix->nr_recs ||
            r->off < ix->recs[r->rec] + 16 + 8 ||
            r->off >= rec_limit(ix, r->rec) ||
            (r->off - ix->recs[r->rec]) % 8 ||
            (uint64_t)r->count * XTK_PAGE_SIZE >
                rec_limit(ix, r->rec) - r->off) {
            int e = refuse(why, whylen,
                           "run %u (frames %#llx+%u at offset %llu, record "
                           "%u) does not fit",
                           i, (unsigned long long)r->pfn, r->count,
                           (unsigned long long)r->off, r->rec);
            xtk__lzx_free(ix);
            return e;
        }
    }
    /* Each record's runs, in frame order. */
    for (uint32_t i = ix->nr_runs; i-- > 0;) {
        ix->run_next[i] = ix->rec_first[ix->runs[i].rec];
        ix->rec_first[ix->runs[i].rec] = i;
    }
    for (uint32_t i = 0; i < ix->nr_recs; i++)
        if (ix->rec_first[i] == UINT32_MAX) {
            int e = refuse(why, whylen, "record %u holds no run", i);
            xtk__lzx_free(ix);
            return e;
        }
    return 0;
}

int xtk__lzx_read(int fd, struct xtk__lzx *ix, char *why, size_t whylen)
{
    uint8_t foot[XTK__LZX_FOOT_SIZE];
    struct stat st;
    uint64_t size, at, len;
    void *buf;
    ssize_t n;
    int r;

    memset(ix, 0, sizeof(*ix));
    if (fstat(fd, &st) < 0) {
        snprintf(why, whylen, "fstat: %s", strerror(errno));
        return -1;
    }
    size = (uint64_t)st.st_size;
    if (size < XTK__LZX_FOOT_SIZE + XTK__LZX_HEAD_SIZE)
        return 1;
    n = pread(fd, foot, sizeof(foot), (off_t)(size - sizeof(foot)));
    if (n != (ssize_t)sizeof(foot)) {
        snprintf(why, whylen, "reading its last %zu bytes: %s", sizeof(foot),
                 n < 0 ? strerror(errno) : "short read");
        if (n >= 0)
            errno = EIO;
        return -1;
    }
    if (memcmp(foot + 16, XTK__LZX_FOOT_MAGIC, 8))
        return 1;
    at = xtk__get_le64(foot);
    if (xtk__get_le32(foot + 12) || at >= size - sizeof(foot) ||
        size - sizeof(foot) - at >
            XTK__LZX_HEAD_SIZE + 8ull * XTK__LZX_MAX_RUNS +
                (uint64_t)XTK__LZX_RUN_SIZE * XTK__LZX_MAX_RUNS)
        return refuse(why, whylen, "its foot points at offset %llu",
                      (unsigned long long)at);
    len = size - sizeof(foot) - at;
    buf = malloc(len ? len : 1);
    if (!buf)
        return -1;
    n = pread(fd, buf, len, (off_t)at);
    if (n != (ssize_t)len) {
        snprintf(why, whylen, "reading it: %s",
                 n < 0 ? strerror(errno) : "short read");
        free(buf);
        if (n >= 0)
            errno = EIO;
        return -1;
    }
    r = xtk__lzx_parse(buf, len, at, xtk__get_le32(foot + 8), ix, why, whylen);
    free(buf);
    return r;
}

int64_t xtk__lzx_find(const struct xtk__lzx *ix, uint64_t pfn)
{
    uint32_t i = xtk__lzx_next(ix, pfn);

    if (i < ix->nr_runs && ix->runs[i].pfn <= pfn)
        return i;
    return -1;
}

uint32_t xtk__lzx_next(const struct xtk__lzx *ix, uint64_t pfn)
{
    uint32_t lo = 0, hi = ix->nr_runs;

    /* The first run that ends after pfn. */
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct xtk__lzx_run *r = &ix->runs[mid];

        if (r->pfn + r->count <= pfn)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int xtk__lzx_check_record(const struct xtk__lzx *ix, uint32_t rec,
                          const void *head, size_t head_len, size_t *need,
                          char *why, size_t whylen)
{
    const uint8_t *h = head;
    uint64_t off, data, limit;
    uint32_t type, length, count, npages = 0;
    uint64_t *notab;
    size_t want;

    if (rec >= ix->nr_recs)
        return refuse(why, whylen, "no record %u", rec);
    off = ix->recs[rec];
    limit = rec_limit(ix, rec);
    if (head_len < 16) {
        *need = 16;
        return 1;
    }
    type = xtk__get_le32(h);
    length = xtk__get_le32(h + 4);
    count = xtk__get_le32(h + 8);
    if (type != XTK_REC_PAGE_DATA)
        return refuse(why, whylen, "the record at offset %llu is not PAGE_DATA",
                      (unsigned long long)off);
    if (!count || xtk__get_le32(h + 12) || 8 + 8ull * count > length ||
        off + 8 + (uint64_t)length > limit)
        return refuse(why, whylen,
                      "the PAGE_DATA record at offset %llu (%u entries, %u "
                      "bytes) does not fit its place",
                      (unsigned long long)off, count, length);
    want = 16 + 8 * (size_t)count;
    if (head_len < want) {
        *need = want;
        return 1;
    }
    notab = malloc(count * sizeof(*notab));
    if (!notab) {
        errno = ENOMEM;
        return -1;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint64_t e = xtk__get_le64(h + 16 + 8 * (size_t)i);
        unsigned int t = xtk_pfn_entry_type(e);

        if ((e & XTK_PFN_RESERVED_MASK) || !xtk_page_type_valid(t) ||
            (xtk_page_type_has_data(t) && t != XTK_PAGE_NOTAB)) {
            free(notab);
            return refuse(why, whylen,
                          "the PAGE_DATA record at offset %llu has entry %u "
                          "%#llx",
                          (unsigned long long)off, i, (unsigned long long)e);
        }
        if (t == XTK_PAGE_NOTAB)
            notab[npages++] = xtk_pfn_entry_pfn(e);
    }
    data = off + 16 + 8ull * count;
    if (8 + 8ull * count + (uint64_t)npages * XTK_PAGE_SIZE != length) {
        free(notab);
        return refuse(why, whylen,
                      "the PAGE_DATA record at offset %llu: %u pages in %u "
                      "bytes",
                      (unsigned long long)off, npages, length);
    }
    for (uint32_t j = ix->rec_first[rec]; j != UINT32_MAX;
         j = ix->run_next[j]) {
        const struct xtk__lzx_run *r = &ix->runs[j];
        uint64_t o;

        if (r->off < data || (r->off - data) % XTK_PAGE_SIZE ||
            (o = (r->off - data) / XTK_PAGE_SIZE) + r->count > npages)
            goto mismatch;
        for (uint32_t i = 0; i < r->count; i++)
            if (notab[o + i] != r->pfn + i)
                goto mismatch;
        continue;
mismatch:
        free(notab);
        return refuse(why, whylen,
                      "frames %#llx+%u are not at offset %llu of the "
                      "PAGE_DATA record at offset %llu",
                      (unsigned long long)r->pfn, r->count,
                      (unsigned long long)r->off, (unsigned long long)off);
    }
    free(notab);
    return 0;
}

/* ---- building ------------------------------------------------------ */

struct seen_rec {
    uint64_t off, data, end; /* the record, its pages, their end */
    uint32_t used;           /* its number in the index + 1, or 0 */
};

static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

int xtk__lzx_build(int rfd, uint64_t base, uint64_t end, uint64_t nr_pages,
                   void **out, size_t *out_len, char *why, size_t whylen)
{
    uint64_t *last = NULL, *ents = NULL, *others = NULL, off, begin = 0,
             pend = 0;
    struct seen_rec *recs = NULL;
    size_t nrecs = 0, caprecs = 0, ents_cap = 0, nruns = 0, nused = 0;
    size_t nothers = 0, capothers = 0;
    uint8_t *buf = NULL, *p = NULL;
    int r = -1;

    *out = NULL;
    *out_len = 0;
    if (!nr_pages || nr_pages > XTK__LZX_MAX_PAGES) {
        snprintf(why, whylen, "a domain of %llu frames",
                 (unsigned long long)nr_pages);
        return 1;
    }
    last = calloc(nr_pages, sizeof(*last));
    if (!last)
        return -1;
    off = base + XTK_STREAM_IMAGE_HEADER_SIZE + XTK_STREAM_DOMAIN_HEADER_SIZE;
    for (;;) {
        uint8_t h[16];
        uint32_t type, length, count, npages = 0;
        uint64_t data;

        if (off + 8 > end) {
            snprintf(why, whylen, "no END before offset %llu",
                     (unsigned long long)end);
            r = 1;
            goto out;
        }
        if (read_at(rfd, h, 8, off) < 0)
            goto out;
        type = xtk__get_le32(h);
        length = xtk__get_le32(h + 4);
        if (type == XTK_REC_END) {
            if (length || off + 8 != end) {
                snprintf(why, whylen, "END at %llu, the stream's end at %llu",
                         (unsigned long long)off, (unsigned long long)end);
                r = 1;
                goto out;
            }
            break;
        }
        if (type == XTK_REC_CHECKPOINT || type == XTK_REC_CHECKSUM ||
            type == XTK_REC_POSTCOPY || type == XTK_REC_X86_PV_INFO) {
            snprintf(why, whylen, "a %s record", xtk_stream_record_name(type));
            r = 1;
            goto out;
        }
        if (type != XTK_REC_PAGE_DATA) {
            if (begin) { /* a lazy restore reads it */
                if (nothers == capothers) {
                    size_t cap = capothers ? capothers * 2 : 16;
                    uint64_t *n = realloc(others, cap * sizeof(*n));

                    if (!n)
                        goto out;
                    others = n;
                    capothers = cap;
                }
                others[nothers++] = off;
            }
            off += 8 + (((uint64_t)length + 7) & ~7ull);
            continue;
        }
        if (!begin)
            begin = off;
        if (read_at(rfd, h + 8, 8, off + 8) < 0)
            goto out;
        count = xtk__get_le32(h + 8);
        if (!count || 8 + 8ull * count > length) {
            snprintf(why, whylen, "PAGE_DATA at offset %llu of %u entries",
                     (unsigned long long)off, count);
            r = 1;
            goto out;
        }
        if (count > ents_cap) {
            uint64_t *e = realloc(ents, count * sizeof(*e));

            if (!e)
                goto out;
            ents = e;
            ents_cap = count;
        }
        if (read_at(rfd, ents, 8 * (size_t)count, off + 16) < 0)
            goto out;
        data = off + 16 + 8ull * count;
        if (nrecs == caprecs) {
            size_t cap = caprecs ? caprecs * 2 : 256;
            struct seen_rec *n = realloc(recs, cap * sizeof(*n));

            if (!n)
                goto out;
            recs = n;
            caprecs = cap;
        }
        for (uint32_t i = 0; i < count; i++) {
            uint64_t e = le64toh(ents[i]), pfn = xtk_pfn_entry_pfn(e);
            unsigned int t = xtk_pfn_entry_type(e);

            if ((e & XTK_PFN_RESERVED_MASK) || pfn >= nr_pages ||
                !xtk_page_type_valid(t) ||
                (xtk_page_type_has_data(t) && t != XTK_PAGE_NOTAB)) {
                snprintf(why, whylen,
                         "PAGE_DATA at offset %llu: entry %#llx for a "
                         "domain of %llu frames",
                         (unsigned long long)off, (unsigned long long)e,
                         (unsigned long long)nr_pages);
                r = 1;
                goto out;
            }
            if (t == XTK_PAGE_NOTAB)
                last[pfn] = data + (uint64_t)npages++ * XTK_PAGE_SIZE;
            else
                last[pfn] = 0;
        }
        if (8 + 8ull * count + (uint64_t)npages * XTK_PAGE_SIZE != length) {
            snprintf(why, whylen, "PAGE_DATA at offset %llu of %u bytes",
                     (unsigned long long)off, length);
            r = 1;
            goto out;
        }
        recs[nrecs++] = (struct seen_rec){
            off, data, data + (uint64_t)npages * XTK_PAGE_SIZE, 0};
        off += 8 + (uint64_t)length;
        pend = off;
    }
    if (nothers > XTK__LZX_MAX_RUNS) {
        snprintf(why, whylen, "%zu other records", nothers);
        r = 1;
        goto out;
    }
    /* The runs, twice: counted (and the records they use numbered), then
     * written. */
    for (int pass = 0; pass < 2; pass++) {
        size_t k = 0;

        if (pass) {
            size_t len = XTK__LZX_HEAD_SIZE + 8 * nused + 8 * nothers +
                         XTK__LZX_RUN_SIZE * nruns + XTK__LZX_FOOT_SIZE;

            buf = calloc(1, len);
            if (!buf)
                goto out;
            *out_len = len;
            for (size_t i = 0; i < nrecs; i++)
                if (recs[i].used)
                    xtk__put_le64(buf + XTK__LZX_HEAD_SIZE +
                                      8ull * (recs[i].used - 1),
                                  recs[i].off);
            p = buf + XTK__LZX_HEAD_SIZE + 8 * nused;
            for (size_t i = 0; i < nothers; i++, p += 8)
                xtk__put_le64(p, others[i]);
        }
        for (uint64_t pfn = 0; pfn < nr_pages;) {
            uint64_t o = last[pfn], n = 1;

            if (!o) {
                pfn++;
                continue;
            }
            while (pfn + n < nr_pages && n < UINT32_MAX &&
                   last[pfn + n] == o + n * XTK_PAGE_SIZE)
                n++;
            /* Its record: the last that starts before it (the records
             * were read in the file's order). */
            {
                size_t lo = 0, hi = nrecs;

                while (hi - lo > 1) {
                    size_t mid = lo + (hi - lo) / 2;

                    if (recs[mid].off < o)
                        lo = mid;
                    else
                        hi = mid;
                }
                k = lo;
            }
            if (!pass) {
                if (!recs[k].used)
                    recs[k].used = 1;
                nruns++;
            } else {
                xtk__put_le64(p, pfn);
                xtk__put_le64(p + 8, o);
                xtk__put_le32(p + 16, (uint32_t)n);
                xtk__put_le32(p + 20, recs[k].used - 1);
                p += XTK__LZX_RUN_SIZE;
            }
            pfn += n;
        }
        if (!pass) /* number the records used, in the file's order */
            for (size_t i = 0; i < nrecs; i++)
                if (recs[i].used)
                    recs[i].used = (uint32_t)++nused;
        if (nruns > XTK__LZX_MAX_RUNS) {
            snprintf(why, whylen, "%zu runs", nruns);
            r = 1;
            goto out;
        }
    }
    memcpy(buf, XTK__LZX_MAGIC, 8);
    xtk__put_le32(buf + 8, XTK__LZX_VERSION);
    xtk__put_le32(buf + 12, XTK_PAGE_SHIFT);
    xtk__put_le64(buf + 16, nr_pages);
    xtk__put_le64(buf + 24, begin);
    xtk__put_le64(buf + 32, pend);
    xtk__put_le64(buf + 40, end - 8);
    xtk__put_le32(buf + 48, (uint32_t)nused);
    xtk__put_le32(buf + 52, (uint32_t)nruns);
    xtk__put_le32(buf + 56, (uint32_t)nothers);
    p = buf + *out_len - XTK__LZX_FOOT_SIZE;
    xtk__put_le64(p, end);
    xtk__put_le32(
        p + 8, (uint32_t)crc32(0, buf, (uInt)(*out_len - XTK__LZX_FOOT_SIZE)));
    memcpy(p + 16, XTK__LZX_FOOT_MAGIC, 8);
    *out = buf;
    buf = NULL;
    r = 0;
out:
    free(buf);
    free(last);
    free(ents);
    free(others);
    free(recs);
    if (r)
        *out_len = 0;
    return r;
}
