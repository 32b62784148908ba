/*
 * backend.h - the contract between libxtk's engine and a hypervisor.
 *
 * The save/restore engine never knows which hypervisor it drives.  A backend
 * is a table of operations on a domain, in the manner of libxenguest's
 * struct xc_sr_save_ops and xc_sr_restore_ops; the kvm backend (lib/kvm/)
 * implements it over xtk-hv's control socket, a xen backend will implement
 * it over libxenctrl and friends.
 *
 * Every op returns 0 (or the documented non-negative value) on success and
 * -1 with errno set on failure, and logs its own failures through the
 * domain's context.  "Optional" ops may be NULL; the others never are.
 *
 * Lifecycle of a domain handle, as the engine sees it:
 *
 *   open or create                       exactly once, first
 *   info, pause, unpause, console_read   any time
 *   layout, frames                       at the start of a save
 *   logdirty_enable                      before the first logdirty_read
 *   map_all / map_batch                  any time while open
 *   logdirty_read                        repeatedly; FINAL once, paused
 *   suspend_setup                        once per save, before requesting
 *   suspend_request                      once per suspend
 *   suspend_check                        each time the suspend fd fires
 *   get_state                            while the domain is stopped
 *   logdirty_disable, suspend_teardown   at the end of a save (or abort)
 *   resume                               a suspended source whose save
 *                                        failed; a restored domain
 *   destroy                              the source after a migration
 *   close                                exactly once, last
 *
 * and for a restore:
 *
 *   create(XTK__CREATE_EMPTY)  populate + map_* and writes  set_state
 *   resume  close
 *
 * A backend may keep state per handle in dom->priv.  Ops on one handle are
 * not called concurrently, except map_* and unmap_batch, which sender
 * threads call while the event loop calls the others (so what they share
 * with the other ops must be thread-safe: the xen backend's libxenctrl
 * handle is).
 */
#ifndef XTK_BACKEND_H
#define XTK_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include <xtk/domain.h>

#include "xtk-internal.h"

#define XTK__PAGE_SHIFT 12
#define XTK__PAGE_SIZE (1ul << XTK__PAGE_SHIFT)

struct xtk__backend_ops;

/* The handle behind the public opaque struct xtk_domain. */
struct xtk_domain {
    struct xtk_ctx *ctx;
    const struct xtk__backend_ops *ops;
    uint32_t domid;
    void *priv; /* the backend's */
    /* Set by resume when the backend can tell: when the guest's vCPUs ran
     * again (xtk_now_ns()'s clock); 0 otherwise. */
    uint64_t resumed_ns;
    /* Set by the stop of a save that holds the guest's output
     * (output_hold): the epoch of output it closed; 0 otherwise. */
    uint32_t output_epoch;
    /* Set by output_hold: how many closed epochs of output the backend
     * can hold unreleased at once (Xen's plug: 1); 0 for any number.  A
     * save waits for its backup's acknowledgement before a stop that
     * would close one more. */
    unsigned int output_depth;
};

/* For output_hold. */
#define XTK__OUTPUT_DROP 0
#define XTK__OUTPUT_HOLD 1
#define XTK__OUTPUT_SEND 2

/* What output_release sent. */
struct xtk__output {
    uint64_t items, bytes; /* console writes and packets; their bytes */
    uint64_t held_max_ns;  /* the longest any was held */
    uint64_t held_sum_ns;  /* the sum of their holds */
};

/* Flags for create. */
#define XTK__CREATE_EMPTY 0x1u /* for a restore: see create */

/* Flags for pause and unpause. */
#define XTK__PAUSE_HOLD 0x1u    /* pause: only while this handle is open */
#define XTK__UNPAUSE_FORCE 0x1u /* unpause: release every pause */

/* Kinds of request sent ahead (async_ready). */
#define XTK__ASYNC_STATE 0x1u   /* set_state_start */
#define XTK__ASYNC_RESUME 0x2u  /* resume_start */
#define XTK__ASYNC_DIRTY 0x4u   /* logdirty_start */
#define XTK__ASYNC_RELEASE 0x8u /* output_release_start */
#define XTK__ASYNC_STOP 0x10u   /* suspend_check_ahead */
#define XTK__ASYNC_INFO 0x20u   /* info_start */

/* Flags for logdirty_read. */
#define XTK__LOGDIRTY_FINAL 0x1u /* the last read of a save: see below */

/* Flags for frames. */
#define XTK__FRAMES_STOPPED 0x1u /* the domain stays stopped: see below */

/* How a save asks the guest to suspend (xtk-save --suspend). */
enum xtk__suspend_method {
    XTK__SUSPEND_EVTCHN, /* notify the guest's suspend event channel */
    XTK__SUSPEND_STORE,  /* write "suspend" to its control/shutdown node */
    XTK__SUSPEND_PAUSE,  /* no guest help: the hypervisor stops the vCPUs */
    XTK__SUSPEND_XL,     /* STORE's request, noticed by a store watch on
                            @releaseDomain (xl's way: a baseline) */
};

/*
 * State records.  get_state hands out the domain's vCPU and platform state
 * as records framed exactly as migration stream v2 records are: a header
 * {uint32_t type; uint32_t length;}, `length` bytes of body, then zero
 * padding to a multiple of 8 bytes.  Types have bit 31 set (optional
 * records), so the engine can copy them into a stream unchanged, or wrap
 * the whole buffer in one record; it never looks inside a body.  A backend
 * with a native layout (XTK__LAYOUT_NATIVE, below) gives its hypervisor's
 * own records instead (Xen's TSC_INFO, HVM_CONTEXT, HVM_PARAMS), which
 * the engine writes as they are.  Note:
 * Xen's verify-stream-v2 refuses any record type it does not know, optional
 * or not (checked: "Unrecognised record type 0xcb560011"), while it accepts
 * an HVM_CONTEXT (0x09) of any content: a stream that must pass it carries
 * the buffer as one HVM_CONTEXT record, and set_state takes it back whole.
 */
#define XTK__REC_OPTIONAL 0x80000000u

struct xtk__rec_hdr {
    uint32_t type;
    uint32_t length;
};

/*
 * Walks a buffer of records: at *off, checks the next record's framing and
 * fills *type, *body and *length, then moves *off past it.  Returns 1 for
 * a record, 0 at the end of the buffer, -1 (EBADMSG) for a record that
 * does not fit or has non-zero padding.
 */
int xtk__rec_next(const void *buf, size_t len, size_t *off, uint32_t *type,
                  const void **body, uint32_t *length);

/*
 * Appends one record to *buf (of *len bytes, *cap allocated), growing it
 * with realloc.  Returns 0, or -1 (ENOMEM, or EINVAL for a body over 16 MiB).
 */
int xtk__rec_append(void **buf, size_t *len, size_t *cap, uint32_t type,
                    const void *body1, size_t len1, const void *body2,
                    size_t len2);

/*
 * How a save lays out its stream, where a backend has a layout of its own.
 *
 * xtk's layout (no layout op; what KVM uses): domain header of type
 * X86_HVM with xen_major/minor 0, STATIC_DATA_END, an HVM_PARAMS record
 * holding xtk's description of the domain, PAGE_DATA (a zero frame goes as
 * XALLOC, whichever round), and get_state's records wrapped behind xtk's
 * header in one HVM_CONTEXT record sent as soon as the guest is stopped.
 *
 * XTK__LAYOUT_NATIVE: the hypervisor's own layout, so that its own tools
 * restore the stream (Xen's for an HVM or PVH guest, xg_sr_save_x86_hvm.c:
 * CPUID and MSR policy, STATIC_DATA_END, PAGE_DATA..., TSC_INFO,
 * HVM_CONTEXT, HVM_PARAMS, END):
 *   - the domain header carries domain_type, xen_major and xen_minor;
 *   - static_data (records, framed as get_state's) goes before
 *     STATIC_DATA_END, and no record of xtk's own is sent;
 *   - get_state's records are the stream's records, written unchanged,
 *     after the last PAGE_DATA of each checkpoint (Xen's restore clears
 *     some of the pages HVM_PARAMS names when it reads it);
 *   - a zero frame is never elided: it goes with its zeroes.  Xen's
 *     restore populates an XALLOC frame with whatever page Xen hands out,
 *     which is not always zeroed (a page a running domain gave back is
 *     not scrubbed by default), and ignores XALLOC for a frame it has
 *     populated already; Xen's own save never sends XALLOC for HVM.  (A
 *     restored guest whose zero pages came back as another guest's old
 *     data crashed in a spin lock: found in the testbed.)
 */
#define XTK__LAYOUT_NATIVE 0x1u

/*
 * XTK__LAYOUT_DELEGATE: the hypervisor's own save writes the whole stream
 * (save_delegate): the engine frames it, stops the guest when asked,
 * times it, and ends the save as its own.  A Xen PV guest's: its stream
 * needs its page tables rewritten frame by frame, which libxenguest's
 * save does.
 */
#define XTK__LAYOUT_DELEGATE 0x2u

struct xtk__layout {
    unsigned int flags;
    uint32_t domain_type; /* XTK_DOMAIN_* */
    uint32_t xen_major, xen_minor;
    void *static_data; /* malloc()ed records; the caller frees */
    size_t static_len;
};

/*
 * What a restore of a hypervisor's own stream knows before its memory:
 * the toolstack config it carried (xl's: libxl's JSON, or xl's own text).
 */
struct xtk__native_config {
    const char *name;   /* NULL: the config's */
    const void *config; /* as the stream carried it */
    uint32_t config_len;
    int json;             /* libxl's JSON (NUL-terminated), else xl's text */
    uint32_t stream_type; /* the stream's domain type (XTK_DOMAIN_X86_*) */
    /* out */
    int delegate;      /* the backend's own restore reads the stream
                        * (restore_delegate), not the engine */
    uint64_t nr_pages; /* the guest's memory, for progress */
    uint64_t max_pfn;  /* frames the stream may bring lie below this */
    uint32_t nr_vcpus;
    char cfg_name[64]; /* the name the domain got */
};

struct xtk__backend_ops {
    const char *name; /* "kvm", "xen" */

    /* -- discovery (no handle) ---------------------------------------- */

    /* Lists live domains, as xtk_domain_list(). */
    int (*list)(struct xtk_ctx *ctx, struct xtk_domain_info **infos,
                size_t *nr);

    /* The id of the live domain called name (ENOENT if none). */
    int (*lookup)(struct xtk_ctx *ctx, const char *name, uint32_t *domid);

    /* -- the handle ---------------------------------------------------- */

    /*
     * Opens the live domain dom->domid: called exactly once per handle,
     * before any other op.  On failure close is not called.
     */
    int (*open)(struct xtk_domain *dom);

    /*
     * Creates a domain and opens dom on it (dom->domid is set).  Called
     * instead of open.  Without flags the domain boots cfg->kernel.  With
     * XTK__CREATE_EMPTY it is an empty shell for a restore: cfg's memory
     * and vCPUs exist, memory is all zero, no vCPU runs until resume; the
     * name must be free (EEXIST).  On failure nothing is left behind.
     */
    int (*create)(struct xtk_domain *dom, const struct xtk_domain_config *cfg,
                  unsigned int flags);

    /*
     * Creates an empty domain for a restore of the hypervisor's own stream
     * (XTK__LAYOUT_NATIVE), shaped by the toolstack config that stream
     * carried (xl's), and opens dom on it: as create(XTK__CREATE_EMPTY),
     * except that no memory exists yet (populate makes each frame the
     * stream brings) and the state comes as the hypervisor's own records
     * (set_state).  Fills nc's outputs.  Optional: a backend without it
     * restores only xtk's own layout.
     */
    int (*create_native)(struct xtk_domain *dom, struct xtk__native_config *nc);

    /*
     * Closes the handle: called exactly once for each successful open or
     * create, last.  Unmaps what map_all mapped and releases a pause taken
     * with XTK__PAUSE_HOLD; the domain itself runs on.
     */
    void (*close)(struct xtk_domain *dom);

    /* -- control ----------------------------------------------------------- */

    int (*info)(struct xtk_domain *dom, struct xtk_domain_info *info);

    /* xtk_domain_vcpus(): out has room for max; *nr gets the count.
     * Optional (ENOSYS). */
    int (*vcpus)(struct xtk_domain *dom, struct xtk_vcpu_stats *out,
                 unsigned int max, unsigned int *nr);

    /*
     * Stops every vCPU: when it returns, no vCPU runs guest code.
     * XTK__PAUSE_HOLD makes the pause last only as long as the handle (so a
     * toolstack that dies never leaves the domain stuck); without it the
     * pause lasts until an unpause.
     */
    int (*pause)(struct xtk_domain *dom, unsigned int flags);

    /*
     * Releases this handle's pauses; XTK__UNPAUSE_FORCE releases every
     * pause, whoever took it.
     */
    int (*unpause)(struct xtk_domain *dom, unsigned int flags);

    /*
     * Destroys the domain.  Afterwards only close may be called (and
     * other handles on it fail with ESRCH).
     */
    int (*destroy)(struct xtk_domain *dom);

    /* Gives the domain another name (EEXIST: taken). */
    int (*rename)(struct xtk_domain *dom, const char *name);

    /* As xtk_domain_xl_config().  Optional (ENOTSUP without it). */
    int (*xl_config)(struct xtk_domain *dom, char **config, size_t *len);

    /* As xtk_domain_console_read().  Optional. */
    int (*console_read)(struct xtk_domain *dom, uint64_t *offset, char *buf,
                        size_t *len);

    /* -- memory -------------------------------------------------------- */

    /*
     * Maps the whole guest RAM once, persistently: frame pfn is at
     * base + (pfn << XTK__PAGE_SHIFT), for pfn < info.nr_pages, until close.
     * prot is PROT_READ or PROT_READ|PROT_WRITE; a second call returns the
     * same mapping (upgraded to the wider prot).  Optional (KVM has it: the
     * memfd); a backend without it has map_batch.
     */
    void *(*map_all)(struct xtk_domain *dom, int prot);

    /*
     * Maps nr frames, frame pfns[i] at base + (i << XTK__PAGE_SHIFT), as a
     * foreign mapping of a batch (Xen's xenforeignmemory_map).  errs[i] is
     * set to 0 or to a positive errno for a frame that could not be mapped
     * (then its page must not be touched): ENOENT for a frame that is gone
     * from the frame space since frames said it existed (the guest
     * unmapped it), which a save sends without data (XTAB).  Thread-safe.
     * Optional when map_all exists.
     */
    void *(*map_batch)(struct xtk_domain *dom, int prot, const uint64_t *pfns,
                       unsigned int nr, int *errs);
    int (*unmap_batch)(struct xtk_domain *dom, void *base, unsigned int nr);

    /*
     * The guest's frame space, where it is sparse: *end is one past its
     * highest frame number, and *present (malloc()ed, the caller frees;
     * room for *end bits rounded up to 64, laid out as logdirty_read's)
     * has the bit of each frame that exists.  Holes are never mapped,
     * sent or populated.  Called once the dirty log is on (a save of a
     * domain with a sparse frame space always logs): a frame the guest
     * adds later is in the log, one it removes is ENOENT to map_batch.  Xen:
     * the p2m's size (xc_domain_nr_gpfns) and the frames whose type is neither
     * XTAB nor BROKEN; a 128 MiB PVH guest has RAM at 0-0x7fff, ACPI tables at
     * 0xfc000 and its special pages at 0xfeff8-0xfefff.  Optional: without it
     * the frames are 0..info.nr_pages-1, all present (KVM).
     * XTK__FRAMES_STOPPED: the domain is stopped and stays so until the
     * save has read its last page (a save that is not live: no dirty log
     * is on), so the backend may stop looking once it has found every
     * frame the domain owns.
     */
    int (*frames)(struct xtk_domain *dom, unsigned int flags, uint64_t *end,
                  uint64_t **present);

    /*
     * Fills bitmap (room for nr_bits >= the frame space's end bits, laid
     * out as
     * logdirty_read's) with the frames that may hold data, and clears the
     * bits of frames that certainly read as zero because nothing ever
     * wrote them (holes in KVM's memory file).  A save uses it to skip
     * untouched memory without reading it, which would allocate it.
     * Optional: without it every frame counts as populated.
     */
    int (*populated)(struct xtk_domain *dom, uint64_t *bitmap,
                     uint64_t nr_bits);

    /*
     * Restore only: writes nr consecutive frames from pfn on, from buf
     * (nr * 4 KiB).  KVM writes its memory file (pwrite), which costs a
     * fraction of faulting each new page in through the mapping (~0.5 vs
     * ~3 us a page measured here).  Optional: without it the engine copies
     * through map_all.
     */
    int (*write_frames)(struct xtk_domain *dom, uint64_t pfn, unsigned int nr,
                        const void *buf);

    /*
     * Restore only: makes frames pfns[0..nr-1] exist so they can be mapped
     * writable (Xen: populate_physmap; KVM: checks they are in range).
     */
    int (*populate)(struct xtk_domain *dom, const uint64_t *pfns,
                    unsigned int nr);

    /*
     * Restore only, optional: a lazy restore (XTK_RESTORE_LAZY).  On an
     * empty domain before its resume, instead of map_all and writes: *uffd
     * gets a userfaultfd (the caller owns it) that reports each access to
     * a frame not yet in the domain's memory and takes its contents
     * (UFFDIO_COPY; the accessing vCPU or host thread waits until then).
     * Its addresses are another process's: frame pfn is at *base + pfn *
     * 4 KiB.  The first *eager frames are read by the host itself (not
     * only through the guest) and must be filled before the resume.
     * lazy_end: every frame is in, the domain is an ordinary one.  Until
     * then, closing the handle destroys the domain (nothing may ever run
     * on frames that did not come).  ENOSYS: not on this host.
     */
    int (*lazy_begin)(struct xtk_domain *dom, int *uffd, uint64_t *base,
                      uint64_t *eager);
    int (*lazy_end)(struct xtk_domain *dom);
    /*
     * Restore only, optional: takes nr frames from pfn on out of an empty
     * domain's memory (their contents are gone; they read as never
     * written), before lazy_begin: a post-copy's frames still to come,
     * which pre-copy may have written an older version of.
     */
    int (*discard)(struct xtk_domain *dom, uint64_t pfn, uint64_t nr);

    /* -- dirty log ----------------------------------------------------- */

    /*
     * Starts logging the frames the guest writes.  Only one handle may log
     * a domain at a time (EBUSY); logging stops when that handle closes.
     */
    int (*logdirty_enable)(struct xtk_domain *dom);

    /*
     * Reads and cleans the log: sets in bitmap the bit of every frame
     * written since the previous read (or since enable), clears the others,
     * and re-arms logging, atomically frame by frame.  bitmap has room for
     * nr_bits >= info.nr_pages bits: bit (pfn % 64) of uint64_t word
     * pfn / 64.  *dirty_count gets the number of bits set.
     *
     * XTK__LOGDIRTY_FINAL: the read that ends a save.  The domain must be
     * stopped (paused, or suspended and then stopped by suspend_check;
     * EBUSY otherwise), and the result is complete: it also holds the
     * frames the hypervisor side itself wrote (device rings), which a guest
     * write log cannot see.
     */
    int (*logdirty_read)(struct xtk_domain *dom, unsigned int flags,
                         uint64_t *bitmap, uint64_t nr_bits,
                         uint64_t *dirty_count);

    int (*logdirty_disable)(struct xtk_domain *dom);

    /* -- suspend ------------------------------------------------------- */

    /*
     * Prepares a suspend by method and gives the fd that becomes readable
     * when the domain has suspended: the engine watches it in its event
     * loop (never a store watch).  The fd belongs to the backend and stays
     * valid until suspend_teardown.  ENOTSUP if the guest cannot suspend
     * that way (no suspend channel, no store).
     *
     * From here to suspend_teardown the handle guards the suspend: if it is
     * closed first (the toolstack died in the middle of a save), the
     * domain is resumed, also when the guest only finishes suspending
     * afterwards.  A dead save never leaves a guest suspended or paused.
     */
    int (*suspend_setup)(struct xtk_domain *dom,
                         enum xtk__suspend_method method, int *fd);

    /*
     * Asks the guest to suspend, by the method given to suspend_setup.
     * Does not wait for the guest.  XTK__SUSPEND_PAUSE makes the fd
     * readable at once; the vCPUs are stopped here (Xen: a pause
     * hypercall) or by suspend_check / suspend_check_ahead (KVM: the
     * STOP, a round trip to xtk-hv, sent ahead there).
     */
    int (*suspend_request)(struct xtk_domain *dom);

    /*
     * Optional: 1 while a suspend request now would have to wait (KVM's
     * event channel: the guest has not yet left the suspended state of
     * the last suspend, and a request meanwhile would be taken for the
     * resume; suspend_request then sleeps until it has, up to 1 s), else
     * 0.  A caller with a loop asks first and tries again later.
     */
    int (*suspend_busy)(struct xtk_domain *dom);

    /*
     * Called when the fd is readable: consumes the notification and
     * returns 1 if the domain has suspended, 0 if it has not (a stray
     * event: keep waiting).  On 1 the domain is stopped, as by
     * pause(XTK__PAUSE_HOLD): no vCPU runs and memory no longer changes.
     */
    int (*suspend_check)(struct xtk_domain *dom);

    /*
     * Optional, both or neither: suspend_check with the stop, where it is
     * a request to the hypervisor side, sent ahead (see "requests sent
     * ahead": XTK__ASYNC_STOP, *fd).  Returns as suspend_check, or 2: the
     * domain has suspended and its stop is on its way; stop_finish returns
     * its outcome (0: stopped, as suspend_check's 1).
     */
    int (*suspend_check_ahead)(struct xtk_domain *dom, int *fd);
    int (*stop_finish)(struct xtk_domain *dom);

    /* Undoes suspend_setup.  Accepts a handle without setup. */
    void (*suspend_teardown)(struct xtk_domain *dom);

    /* -- state --------------------------------------------------------- */

    /*
     * The stream's layout for this domain, as libxenguest's save_ops own
     * theirs (see struct xtk__layout).  Optional: without it, xtk's own
     * layout (KVM's).
     */
    int (*layout)(struct xtk_domain *dom, struct xtk__layout *layout);

    /*
     * Gets every vCPU's and the platform's state as records (see above) in
     * a malloc()ed buffer the caller frees.  The domain must be stopped
     * (EBUSY).
     */
    int (*get_state)(struct xtk_domain *dom, void **buf, size_t *len);

    /*
     * For XTK__LAYOUT_DELEGATE: writes the domain's whole migration stream
     * (image header to END) on fd, which blocks, by the hypervisor's own
     * save; live: pre-copy rounds first.  It calls suspend(arg) when it
     * wants the guest stopped; that returns 0 once it is (stopped as by
     * suspend_check), or -1.  Blocks: the engine runs it on a thread of
     * its own, and calls no other op on the handle meanwhile.
     */
    int (*save_delegate)(struct xtk_domain *dom, int fd, int live,
                         int (*suspend)(void *arg), void *arg);

    /*
     * For a native stream create_native said it restores itself
     * (nc->delegate; a Xen PV guest's, whose page tables libxenguest's
     * restore rewrites frame by frame): reads the migration stream, image
     * header to END, from fd (which blocks) into the domain, state
     * included, so that resume runs it.  Blocks: the engine runs it on a
     * thread of its own, feeding fd, and calls no other op meanwhile.
     */
    int (*restore_delegate)(struct xtk_domain *dom, int fd);

    /*
     * Loads records that get_state produced (in any order, possibly from
     * another host): the domain must be stopped or EMPTY.  Records of
     * another backend's types are skipped; malformed ones (or state for a
     * vCPU the domain lacks) fail with EINVAL, and then nothing was
     * applied that resume could run with.
     */
    int (*set_state)(struct xtk_domain *dom, const void *buf, size_t len);

    /*
     * Optional, both or neither: set_state in two halves, so that the
     * loading overlaps the caller's other work.  set_state_start hands the
     * records over and returns without waiting (buf may be freed at
     * once); set_state_finish waits for the outcome and returns what
     * set_state would have.  Any other operation on the handle first
     * waits for the outcome (kept for set_state_finish).  A caller must
     * call set_state_finish, and see it succeed, before resume.
     */
    int (*set_state_start)(struct xtk_domain *dom, const void *buf, size_t len);
    int (*set_state_finish)(struct xtk_domain *dom);

    /*
     * Runs a domain again: a restored (EMPTY) domain starts from the loaded
     * state; a guest sitting suspended carries on (it learns the suspend
     * ended); every pause is released.  Sets dom->resumed_ns (0 if the
     * backend cannot tell).
     */
    int (*resume)(struct xtk_domain *dom);

    /*
     * Optional, both or neither: resume in two halves, so that the
     * caller's loop does not wait while the hypervisor side restarts the
     * vCPUs.  resume_start asks and returns; resume_finish returns what
     * resume would have (setting dom->resumed_ns).  A request sent ahead
     * (see "requests sent ahead" below: *fd, async_ready).
     */
    int (*resume_start)(struct xtk_domain *dom, int *fd);
    int (*resume_finish)(struct xtk_domain *dom);

    /*
     * Requests sent ahead, so that a caller's event loop never waits on
     * the hypervisor side (optional; a backend with any of them, or with
     * resume_start, has async_ready).  Each *_start sends its request and
     * returns; at most one of each kind (XTK__ASYNC_*) is in flight on a
     * handle (EBUSY).  *fd, the same for every kind on a handle, is
     * readable (level) while an outcome is in that no *_finish has taken:
     * also when another operation on the handle read it on its way (a
     * handle's operations keep their order).  async_ready reads what has
     * come in, never waiting, and returns the kinds whose outcome is in;
     * a *_finish returns what the one-call operation would have,
     * waiting for its outcome if it is not in yet.  A caller collects
     * every outcome it asked for (a finish, or closing the handle).
     *
     * logdirty_start / logdirty_finish: logdirty_read in two halves
     * (flags at the start; bitmap, nr_bits and the count at the finish).
     * output_release_start / output_release_finish: output_release.
     * info_start / info_finish: info (a save's watch on a guest slow
     * to suspend asks it every 100 ms).
     */
    unsigned int (*async_ready)(struct xtk_domain *dom);
    int (*logdirty_start)(struct xtk_domain *dom, unsigned int flags, int *fd);
    int (*logdirty_finish)(struct xtk_domain *dom, uint64_t *bitmap,
                           uint64_t nr_bits, uint64_t *dirty_count);
    int (*output_release_start)(struct xtk_domain *dom, uint32_t epoch,
                                int *fd);
    int (*output_release_finish)(struct xtk_domain *dom,
                                 struct xtk__output *out);
    int (*info_start)(struct xtk_domain *dom, int *fd);
    int (*info_finish)(struct xtk_domain *dom, struct xtk_domain_info *info);

    /* -- output held for checkpoints (optional) ------------------------- */

    /*
     * XTK__OUTPUT_HOLD: the guest's outward output is held from now on,
     * in epochs: the stop of each final round (suspend_check) closes one
     * and sets dom->output_epoch to its number; dom->output_depth says how
     * many closed epochs the backend can hold unreleased (0: any).  What
     * is held is the backend's to say: KVM's xtk-hv holds the console and
     * the network device; Xen holds each vif's packets in dom0's kernel
     * (a plug qdisc, depth 1), not the console.  An orphaned hold a dead
     * save left is taken over where the backend can (KVM: its output goes
     * with the first release); Xen refuses (EEXIST) until it is ended.
     * XTK__OUTPUT_SEND / _DROP: holding ends, what is still held sent
     * (this copy runs on) or dropped (another copy runs the domain); 0 if
     * nothing was held; EPERM from a handle other than a live save's that
     * holds it.  A handle that closes holding orphans the hold: the
     * output stays held until a toolstack decides.  ENOTSUP, or absent,
     * where the backend cannot hold the domain's output.
     */
    int (*output_hold)(struct xtk_domain *dom, int how);
    /* The domain's network sink (xtk create --net) into buf, "" if none:
     * it travels with the domain.  Optional. */
    int (*net_sink)(struct xtk_domain *dom, char *buf, size_t size);
    /* Sends the output of every epoch up to epoch, which a stop closed
     * (with output_depth 1, only the one closed epoch: more is EPROTO). */
    int (*output_release)(struct xtk_domain *dom, uint32_t epoch,
                          struct xtk__output *out);

    /* -- event channels (optional) --------------------------------------- */

    /*
     * Binds the guest's event channel port: *fd becomes readable when the
     * guest notifies it (consume with evtchn_ack, which returns the number
     * of notifications, 0 if none was pending).  evtchn_notify notifies the
     * guest.  Used by tests and benchmarks; the engine uses the suspend ops.
     */
    int (*evtchn_bind)(struct xtk_domain *dom, uint32_t port, int *fd);
    int (*evtchn_notify)(struct xtk_domain *dom, uint32_t port);
    int (*evtchn_ack)(struct xtk_domain *dom, uint32_t port);
};

/* The backends compiled in. */
extern const struct xtk__backend_ops xtk__kvm_backend;
#ifdef HAVE_XEN_BACKEND
extern const struct xtk__backend_ops xtk__xen_backend;
#endif

/* A backend of the tests' (lib/fake/fake.h), chosen by its name. */
extern const struct xtk__backend_ops *xtk__test_backend;

/* The backend a context uses: $XTK_BACKEND ("kvm" or "xen", or the tests'
 * backend's name), else kvm. */
const struct xtk__backend_ops *xtk__backend_pick(struct xtk_ctx *ctx);

/*
 * Creates a domain for a restore (XTK__CREATE_EMPTY), as the restore engine
 * needs: see create.
 */
struct xtk_domain *
xtk__domain_create_empty(struct xtk_ctx *ctx,
                         const struct xtk_domain_config *cfg);

/*
 * Creates a domain for a restore of the hypervisor's own stream (see
 * create_native); ENOTSUP if the context's backend has no native layout.
 */
struct xtk_domain *xtk__domain_create_native(struct xtk_ctx *ctx,
                                             struct xtk__native_config *nc);

/*
 * Where a helper program is: $env if set, else beside the running program
 * (the build tree's, also from libtool's .libs/), else installed.  buf
 * (size bytes) may hold the result.
 */
const char *xtk__find_program(const char *env, const char *installed,
                              const char *beside, char *buf, size_t size);

/* Takes a pause that lasts as long as the handle (XTK__PAUSE_HOLD). */
int xtk__domain_pause_hold(struct xtk_domain *dom);

#endif /* XTK_BACKEND_H */
