/*
 * lazy-index.h - the index a saved file carries after its END, for a lazy
 * restore (xtk-stream(5), "LAZY INDEX"; lib/lazy-index.c).
 *
 * A lazy restore must know, before the guest runs, where each frame's last
 * contents lie in the file.  Without this index it reads every PAGE_DATA
 * record's head to find out, one read per record all over the file; with
 * it, one read at the file's end.  The save appends it to a plain file of
 * xtk's KVM layout once the stream is complete: a trailer after END, which
 * stream v2 readers (Xen's restore, verify-stream-v2, xtk's own eager
 * restore) never reach.
 *
 * Layout (little-endian; file offsets are absolute, in the file):
 *
 *   head    64 bytes: magic "xtkLZIX1", u32 version (1), u32 page shift
 *           (12), u64 the domain's frames, u64 the first PAGE_DATA
 *           record's offset, u64 the end of the last, u64 the END
 *           record's offset, u32 records, u32 runs, u32 others, u32 zero
 *   records u64 each: the offsets of the PAGE_DATA records that hold a
 *           frame's last contents, ascending
 *   others  u64 each: the offsets of the records after the first
 *           PAGE_DATA that are not PAGE_DATA (the state, between the
 *           rounds and the last one), ascending, END not among them: what
 *           a lazy restore reads of the stream from the first PAGE_DATA on
 *   runs    24 bytes each: u64 first frame, u64 its contents' offset, u32
 *           frames, u32 the record (an index into records); frames that
 *           follow one another and whose contents do too; ascending by
 *           frame, not overlapping; a frame in no run has no contents
 *           (zero)
 *   foot    24 bytes, the file's last: u64 the head's offset (the END
 *           record's end), u32 CRC-32 (zlib's) of head, records and runs,
 *           u32 zero, magic "xtkLZIXE"
 *
 * Trust: the CRC and the checks of xtk__lzx_parse() catch an index that was
 * damaged; an index that does not fit the file is refused before the guest
 * runs where that can be known without reading the records (its offsets
 * against the END the stream reaches), and each record it names is read
 * and checked against it (xtk__lzx_check_record) before any of its pages
 * goes into the guest.  A mismatch then stops the domain, as a truncated
 * file does: it never runs on a page the index misplaced.
 */
#ifndef XTK_LAZY_INDEX_H
#define XTK_LAZY_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include <xtk/ctx.h>

#define XTK__LZX_MAGIC "xtkLZIX1"
#define XTK__LZX_FOOT_MAGIC "xtkLZIXE"
#define XTK__LZX_VERSION 1u
#define XTK__LZX_HEAD_SIZE 64u
#define XTK__LZX_RUN_SIZE 24u
#define XTK__LZX_FOOT_SIZE 24u
/* Bounds a reader holds an index to (a 16 TiB domain's worth). */
#define XTK__LZX_MAX_PAGES (1ull << 32)
#define XTK__LZX_MAX_RUNS (1u << 26)

struct xtk__lzx_run {
    uint64_t pfn;
    uint64_t off; /* the first frame's contents */
    uint32_t count;
    uint32_t rec;
};

struct xtk__lzx {
    uint64_t nr_pages;
    uint64_t pages_begin, pages_end; /* [first PAGE_DATA, the next record) */
    uint64_t end_off;                /* the END record */
    uint64_t trailer_off;            /* the head: the END record's end */
    uint32_t nr_recs, nr_runs, nr_others;
    uint64_t *recs, *others;
    struct xtk__lzx_run *runs;
    /* Per record: its first run (by frame) and each run's next of the
     * same record (UINT32_MAX: none), for xtk__lzx_check_record. */
    uint32_t *rec_first, *run_next;
};

/*
 * Parses and checks an index (head, records and runs: len bytes at buf,
 * which lay at file offset trailer_off; crc is the foot's).  Fills *ix
 * (arrays allocated: xtk__lzx_free).  0; or -1 with errno (EBADMSG: why
 * says what; ENOMEM).
 */
int xtk__lzx_parse(const void *buf, size_t len, uint64_t trailer_off,
                   uint32_t crc, struct xtk__lzx *ix, char *why, size_t whylen);

/*
 * Reads the index at the end of file fd, if it has one.  0 (*ix filled),
 * 1 when it has none (no foot), -1 with errno and why (a foot, but what
 * it points at is not an index, or not readable).
 */
int xtk__lzx_read(int fd, struct xtk__lzx *ix, char *why, size_t whylen);

void xtk__lzx_free(struct xtk__lzx *ix);

/* The run that holds frame pfn, or -1 (no contents). */
int64_t xtk__lzx_find(const struct xtk__lzx *ix, uint64_t pfn);

/* The first run that holds a frame >= pfn (nr_runs: none). */
uint32_t xtk__lzx_next(const struct xtk__lzx *ix, uint64_t pfn);

/* Where a lazy restore that is at file offset at (a record's start)
 * reads its next record: at itself, or past PAGE_DATA records. */
uint64_t xtk__lzx_next_read(const struct xtk__lzx *ix, uint64_t at);

/*
 * Checks record rec against its head: head_len bytes read at its offset
 * (at least its 16-byte head, then its frame entries; *need says how many
 * bytes the check wants when fewer were given: return 1).  0 when every
 * run of the record names frames the record holds, at the offsets it
 * holds them; -1 (EBADMSG, why) when not.
 */
int xtk__lzx_check_record(const struct xtk__lzx *ix, uint32_t rec,
                          const void *head, size_t head_len, size_t *need,
                          char *why, size_t whylen);

/*
 * Builds the index of a stream just written to a file: rfd reads it, the
 * stream's image header at file offset base, its END record's end at
 * end, nr_pages the domain's frames.  0 with *out (malloc'd) and *out_len
 * (head to foot); 1 when the stream is not one to index (checkpointed,
 * checksummed, a type of PV page, not xtk's KVM layout: why says which); -1
 * with errno (a read failed; ENOMEM).
 */
int xtk__lzx_build(int rfd, uint64_t base, uint64_t end, uint64_t nr_pages,
                   void **out, size_t *out_len, char *why, size_t whylen);

#endif /* XTK_LAZY_INDEX_H */
