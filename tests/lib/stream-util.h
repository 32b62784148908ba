/*
 * stream-util.h - a known migration stream for the stream tests: the
 * records a test writes and the exact bytes it expects to read back.
 */
#ifndef XTK_TEST_STREAM_UTIL_H
#define XTK_TEST_STREAM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <xtk/xtk.h>

struct trec {
    uint32_t type;
    uint32_t length;
    uint8_t *body; /* as on the wire (8-byte aligned) */
    /* PAGE_DATA: the entries and one separately allocated copy of each
     * page, so that the writer gathers pages that are not adjacent. */
    uint32_t count;
    uint64_t *pfns;
    void **pages;
};

struct tstream {
    uint32_t domain_type;
    struct trec *recs;
    size_t nrecs;
};

/* Options for tstream_build(). */
#define TS_OPTIONAL 0x1u /* add an xtk optional record to each epoch */

/*
 * An HVM stream: STATIC_DATA_END; then `epochs` epochs, each of PAGE_DATA
 * records of up to `batch` entries (epoch 0: pages 0..npages-1, later ones
 * a random subset; every 16th page is XALLOC, every 32nd entry an XTAB),
 * TSC_INFO, HVM_PARAMS, an HVM_CONTEXT of odd length (so padding follows)
 * and CHECKPOINT between epochs; END.  Deterministic for a seed.
 */
void tstream_build(struct tstream *t, uint64_t seed, unsigned npages,
                   unsigned batch, unsigned epochs, unsigned opts);
void tstream_free(struct tstream *t);

/* Writes all of t through s (asserting success). */
void tstream_write(const struct tstream *t, struct xtk_stream *s);

/*
 * Reads s and compares every header field and record, byte for byte,
 * with t (asserting).  Checksum records are skipped; returns how many.
 */
unsigned tstream_check(const struct tstream *t, struct xtk_stream *s);

/* t as bytes: written with `flags` (XTK_STREAM_CHECKSUM) and, if level
 * >= 0, the zlib layer.  The caller frees the buffer. */
uint8_t *tstream_bytes(const struct tstream *t, unsigned flags, int level,
                       size_t *len);

/* A read stream over a copy of data (a memfd).  level >= 0: push zlib. */
struct xtk_stream *mem_reader(struct xtk_ctx *ctx, const void *data, size_t len,
                              unsigned flags, int zlib);

/*
 * Reads a whole stream strictly: the headers, every record up to END
 * (an optional record that xtk does not know counts as an error, as in
 * xtk-stream verify), and then the end of the data.  Returns 0 if all is
 * well, else the errno of the failure.
 */
int read_all(struct xtk_ctx *ctx, const void *data, size_t len, unsigned flags,
             int zlib);

/* A context that logs nothing (or everything, with XTK_TEST_VERBOSE=1). */
struct xtk_ctx *test_ctx(void);

uint64_t test_rand(uint64_t *state);

#endif /* XTK_TEST_STREAM_UTIL_H */
