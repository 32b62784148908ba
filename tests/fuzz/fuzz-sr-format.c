/*
 * fuzz-sr-format.c - libFuzzer target for what the restore engine reads of
 * xtk's own conventions in a stream it does not trust (lib/sr-format.c):
 * the domain's shape (HVM_PARAMS), the state blob (HVM_CONTEXT, checked
 * against a shape), the migration reply and back-channel messages (a
 * message that passes must be one: a known kind, a non-zero number,
 * reserved fields zero), and a post-copy switch's body (one that passes
 * lists only frames of the domain, none below the eager ones, and counts
 * them right), and the lazy restore's index after a file's END
 * (lib/lazy-index.c: parsed with its CRC made good and its offset taken
 * from its own END field, so that the checks behind the CRC are reached;
 * one that passes must keep its promises to find and next_read; and a
 * record's head checked against it).  The first byte picks which.
 * A shape that decodes must encode back to the same shape.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "lazy-index.h"
#include "sr-format.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An index from len bytes at b (the CRC computed, at the offset its END
 * field implies): 0 and *ix, or -1. */
static int lzx_parse(const uint8_t *b, size_t len, struct xtk__lzx *ix)
{
    uint64_t end = 0;
    char why[256];

    if (len >= 48)
        memcpy(&end, b + 40, 8);
    if (xtk__lzx_parse(b, len, end + 8, (uint32_t)crc32(0, b, (uInt)len), ix,
                       why, sizeof(why)) < 0)
        return -1;
    /* What it promises. */
    for (uint32_t i = 0; i < ix->nr_runs; i++) {
        const struct xtk__lzx_run *r = &ix->runs[i];

        if (!r->count || r->pfn + r->count > ix->nr_pages ||
            r->rec >= ix->nr_recs || xtk__lzx_find(ix, r->pfn) != (int64_t)i ||
            xtk__lzx_find(ix, r->pfn + r->count - 1) != (int64_t)i ||
            (i && r->pfn < ix->runs[i - 1].pfn + ix->runs[i - 1].count))
            abort();
    }
    for (uint64_t at = 0; at < 4096; at += 8)
        if (xtk__lzx_next_read(ix, at) < at)
            abort();
    for (uint32_t i = 0; i < ix->nr_others; i++)
        if (xtk__lzx_next_read(ix, ix->others[i]) != ix->others[i])
            abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct xtk__sr_config c, c2, fixed = {.nr_pages = 4096, .nr_vcpus = 2};
    uint8_t again[XTK__SR_PARAMS_SIZE];
    char why[192];
    const void *recs;
    size_t len;
    uint64_t *body; /* the stream hands out 8-byte aligned bodies */

    if (size < 1 || size > (1u << 20))
        return 0;
    body = malloc(size + 8);
    if (!body)
        return 0;
    memcpy(body, data + 1, size - 1);
    switch (data[0] % 6) {
    case 0:
        if (xtk__sr_config_decode(body, (uint32_t)(size - 1), &c, why,
                                  sizeof(why)) == 0) {
            size_t alen = xtk__sr_config_encode(&c, again);
            if (xtk__sr_config_decode(again, (uint32_t)alen, &c2, why,
                                      sizeof(why)) != 0 ||
                c2.nr_pages != c.nr_pages || c2.nr_vcpus != c.nr_vcpus ||
                c2.no_store != c.no_store || strcmp(c2.name, c.name))
                abort();
        }
        break;
    case 1:
        if (xtk__sr_state_check(body, (uint32_t)(size - 1), "kvm", &fixed,
                                &recs, &len, why, sizeof(why)) == 0 &&
            ((const uint8_t *)recs < (const uint8_t *)body ||
             (const uint8_t *)recs + len > (const uint8_t *)body + size - 1))
            abort();
        break;
    case 4: {
        struct xtk__lzx ix;

        if (lzx_parse((const uint8_t *)body, size - 1, &ix) == 0)
            xtk__lzx_free(&ix);
        break;
    }
    case 5: {
        /* u32 the index's length, the index, then a record's head */
        struct xtk__lzx ix;
        const uint8_t *b = (const uint8_t *)body;
        uint32_t k;

        if (size - 1 < 4)
            break;
        memcpy(&k, b, 4);
        if (k > size - 1 - 4)
            break;
        if (lzx_parse(b + 4, k, &ix) == 0) {
            for (uint32_t rec = 0; rec < ix.nr_recs && rec < 4; rec++) {
                size_t need = 0;
                int r =
                    xtk__lzx_check_record(&ix, rec, b + 4 + k, size - 1 - 4 - k,
                                          &need, why, sizeof(why));

                if (r == 1 && need <= size - 1 - 4 - k)
                    abort(); /* it had what it wanted */
            }
            xtk__lzx_free(&ix);
        }
        break;
    }
    default:
        if (size - 1 >= sizeof(struct xtk__sr_reply)) {
            struct xtk__sr_reply r;
            struct xtk__sr_msg m;

            memcpy(&r, body, sizeof(r));
            xtk__sr_reply_check(&r);
            memcpy(&m, body, sizeof(m));
            if (xtk__sr_msg_check(&m) == 0 &&
                (m.version != XTK__SR_MSG_VERSION || !m.seq || m.reserved ||
                 m.reserved2 || m.kind < XTK__SR_MSG_ACK ||
                 m.kind > XTK__SR_MSG_LAST))
                abort();
        }
        break;
    case 3: {
        /* 200 frames: the last word is partly beyond the domain */
        const uint64_t *bits;
        uint64_t count, n = 0;

        if (xtk__sr_postcopy_check(body, (uint32_t)(size - 1), 200,
                                   XTK__POSTCOPY_EAGER, &bits, &count, why,
                                   sizeof(why)) == 0) {
            if ((const uint8_t *)bits < (const uint8_t *)body ||
                (const uint8_t *)(bits + 4) > (const uint8_t *)body + size - 1)
                abort();
            for (uint64_t pfn = 0; pfn < 256; pfn++)
                if (bits[pfn / 64] & (1ull << (pfn % 64))) {
                    if (pfn < XTK__POSTCOPY_EAGER || pfn >= 200)
                        abort();
                    n++;
                }
            if (n != count)
                abort();
        }
        break;
    }
    }
    free(body);
    return 0;
}
