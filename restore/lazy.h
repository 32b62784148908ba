/*
 * lazy.h - a lazy restore's pager (restore/lazy.c), for the restore engine.
 *
 * The restore reads a file's records without its page contents, noting
 * where each frame's last contents lie (xtk__lazy_note); the domain then
 * runs at once, and every frame it touches first is read from the file
 * and put in on the spot through the backend's userfaultfd, while a
 * background thread puts in the others.  The file is held under a read
 * lease: whoever opens it for writing or truncates it breaks the lease,
 * and the pager fails (the restore then destroys the domain) before any
 * changed byte can reach the guest.
 */
#ifndef XTK_RESTORE_LAZY_H
#define XTK_RESTORE_LAZY_H

#include <stdint.h>

#include <xtk/ctx.h>
#include <xtk/stats.h>

struct xtk__lazy;

/*
 * A pager for a domain of nr_pages frames whose contents lie in file fd
 * (read with pread; not closed here).  Takes the read lease at once:
 * NULL (errno, logged) if it cannot be had.
 */
struct xtk__lazy *xtk__lazy_new(struct xtk_ctx *ctx, int fd, const char *path,
                                uint64_t nr_pages, struct xtk_stats *st);

/*
 * A post-copy migration's pager (no file): the frames whose bits are set
 * in todo (nr_pages bits) come in the stream after the switch and are put
 * in with xtk__lazy_put; the guest's first touch of one before it came is
 * asked for with ask(arg, pfn) (from the fault thread: 0, or -1 and errno
 * fails the pager), once.  Any other frame missing from memory is zero.
 */
struct xtk__lazy *xtk__lazy_new_remote(struct xtk_ctx *ctx, uint64_t nr_pages,
                                       const uint64_t *todo,
                                       struct xtk_stats *st,
                                       int (*ask)(void *arg, uint64_t pfn),
                                       void *arg);

/* Post-copy: n frames from pfn on came, their pages at buf (NULL: zero
 * frames).  0, or -1 (EPROTO: one was not to come, or came twice; or the
 * pager failed), logged. */
int xtk__lazy_put(struct xtk__lazy *lz, uint64_t pfn, const void *buf,
                  unsigned int n);

/* 0, or -1 (errno) if the pager has failed (logged when it did). */
int xtk__lazy_check(struct xtk__lazy *lz);

/* Post-copy: frames still to come. */
uint64_t xtk__lazy_missing(const struct xtk__lazy *lz);

/* Frame pfn (< nr_pages) is at file offset off (a whole page), or is zero
 * (off 0).  The last note of a frame wins. */
void xtk__lazy_note(struct xtk__lazy *lz, uint64_t pfn, uint64_t off);

struct xtk__lzx;

/*
 * The frames' places from the file's own index (lib/lazy-index.h), taken
 * over (*ix is left empty), instead of notes: each record it names is
 * read and checked against it before a page of it goes in.  0 or -1.
 */
int xtk__lazy_use_index(struct xtk__lazy *lz, struct xtk__lzx *ix);

/* The index taken (NULL: none). */
const struct xtk__lzx *xtk__lazy_index(const struct xtk__lazy *lz);

/*
 * Serves the domain's faults on uffd (whose frame 0 is at base in the
 * domain's process) from now on.  The pager owns uffd from here.  0, or
 * -1 (errno, logged; nothing then runs on the memory).
 */
int xtk__lazy_start(struct xtk__lazy *lz, int uffd, uint64_t base);

/* Frame pfn's contents (4 KiB, zeroes for a frame without any) into page,
 * under the lease: for the frames the host writes itself.  0 or -1. */
int xtk__lazy_read(struct xtk__lazy *lz, uint64_t pfn, void *page);

/* Starts the background fill (once the domain runs).  0 or -1. */
int xtk__lazy_fill(struct xtk__lazy *lz);

/*
 * Waits until every frame with contents is in (0), or the pager failed
 * (-1, errno; logged): it serves no more, and the caller frees it before
 * it destroys the domain.  Frames without contents are still served
 * (zeroes) until the pager is freed.
 */
int xtk__lazy_wait(struct xtk__lazy *lz);

/* Stops serving, closes the userfaultfd, puts the counters and the
 * faults' histogram into the report, lets the lease go, frees. */
void xtk__lazy_free(struct xtk__lazy *lz);

#endif /* XTK_RESTORE_LAZY_H */
