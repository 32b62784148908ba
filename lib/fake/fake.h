/*
 * fake.h - the fault-injecting backend (XTK_BACKEND=fake), linked into
 * the engine's tests only (libxtk-fake.la), never into libxtk.so or the
 * programs: a test calls xtk__fake_register(), then contexts opened with
 * XTK_BACKEND=fake use it.
 *
 * Its guests are memory in the process: each domain is an anonymous
 * mapping and a thread, the "guest", that writes pages at a set rate over
 * a working set and keeps its own dirty log exactly (it sets the bit of
 * each page it writes).  The guest answers suspend requests (unless told
 * not to), stops when paused, and carries in its state a checksum of its
 * whole memory taken when it stopped: a restored guest checks its memory
 * against it when it is resumed, and is marked crashed when they differ
 * (its self-check).  Domains live as long as the process (or until
 * destroyed), so a test saves and restores in one process.
 *
 * The guest's workload comes from the domain config's cmdline, as the
 * built-in guest's: "dirty=PAGES_PER_S[:WORKING_SET_PAGES[:TOTAL]]"
 * (default 1000 pages/s over the first 1024 frames, without end; 0: an
 * idle guest; TOTAL: it stops writing after that many pages),
 * "nosuspend" (it never answers a suspend request), "slowresume=MS" (after
 * a resume it leaves its suspended state MS ms later, and a suspend request
 * meanwhile waits for that, as on KVM) and "output=DEPTH" (its
 * output can be held for a backup, at most DEPTH closed epochs of it
 * unreleased, 0 for any: output_hold and output_release keep the books;
 * without it output_hold fails with ENOTSUP).
 *
 * Any operation can be made to fail or stall: xtk__fake_faults() or
 * $XTK_FAKE_FAULTS (read when the first operation runs) hold a list
 *
 *     OP[@N][=ERR|=stall:MS],...
 *
 * OP is an operation's name as in struct xtk__backend_ops ("logdirty_read",
 * "get_state", ...); @N its Nth call from now on (1: the next; 0 or no
 * @N: every call); ERR an errno name (EIO, ENOMEM, ...) or number, EIO
 * if absent; stall:MS sleeps MS milliseconds in the call and then does it.
 * Each operation's calls are counted from the last xtk__fake_faults().
 */
#ifndef XTK_FAKE_H
#define XTK_FAKE_H

#include <stdint.h>

/* Makes the fake backend XTK_BACKEND=fake's. */
void xtk__fake_register(void);

/* What a test may look at in a fake domain. */
struct xtk__fake_status {
    uint64_t writes;      /* pages the guest has written since it was created
                             (a restored guest: since its source was) */
    uint64_t ticks;       /* its thread's passes while running (a restored
                             guest: from 0) */
    uint32_t flags;       /* XTK_DOMINFO_* */
    int logging;          /* the dirty log is on */
    int suspend_wanted;   /* a suspend request the guest has not acted on */
    unsigned int handles; /* open handles on it */
    unsigned int pauses;  /* pauses held */
    /* output held ("output=DEPTH" on its command line): epochs the stops
     * closed and released, and how often a stop or a release went beyond
     * the depth (never, with a save that keeps to dom->output_depth) */
    uint32_t out_closed, out_released, out_violations;
};

/*
 * Sets the faults (see above; NULL or "" for none) and restarts every
 * operation's count.  Returns 0, or -1 (EINVAL) for a list it cannot read,
 * which leaves the faults as they were.
 */
int xtk__fake_faults(const char *spec);

/* Calls made to op since the last xtk__fake_faults() (0 for an unknown op). */
unsigned int xtk__fake_calls(const char *op);

/* What the fake saw its callers do, by any handle, since the process
 * started. */
struct xtk__fake_counts {
    /* suspend requests that waited for a guest still in its last suspend
     * ("slowresume=MS": a save asks suspend_busy first and puts the
     * request off instead) */
    unsigned int requests_waited;
    /* resumes of a domain neither suspended, paused, empty nor asked to
     * suspend: a caller that resumes twice (on KVM a second notification
     * to a guest not yet out of its suspend is taken for a new request) */
    unsigned int idle_resumes;
};
struct xtk__fake_counts xtk__fake_counts(void);

/* The status of fake domain domid: 0, or -1 (ENOENT). */
int xtk__fake_status(uint32_t domid, struct xtk__fake_status *st);

/* The violations of output depth counted so far, in every domain (those
 * destroyed too). */
unsigned int xtk__fake_output_violations(void);

/* How many fake domains exist (not destroyed). */
unsigned int xtk__fake_count(void);

#endif /* XTK_FAKE_H */
