/*
 * xtk/domain.h - domains: open, inspect, pause, create and destroy them.
 *
 * A struct xtk_domain is a handle on one running domain (a virtual machine),
 * opened from a struct xtk_ctx by numeric id or by name, in the manner of
 * libxl's domain calls.  The handle is the toolstack's connection to the
 * domain; it is not the domain: closing the handle leaves the domain
 * running, and a domain outlives the process that created it.
 *
 * Domain ids are numbers from 1 (0 is the toolstack's own domain, as on
 * Xen), unique among live domains and allocated without races; names are
 * unique among live domains too.
 *
 * The hypervisor behind the handle is chosen by the backend (see libxtk(3)):
 * on KVM each domain is an xtk-hv(8) process.  Everything here follows the
 * conventions of xtk/ctx.h: -1 and errno (or NULL and errno), arguments
 * checked, outputs untouched on failure, destructors accept NULL.
 */
#ifndef XTK_DOMAIN_H
#define XTK_DOMAIN_H

#include <stddef.h>
#include <stdint.h>

#include <xtk/ctx.h>

#ifdef __cplusplus
extern "C" {
#endif

struct xtk_domain;

/* The longest domain name, without its NUL.  Names are [A-Za-z0-9_.-]. */
#define XTK_DOMAIN_NAME_MAX 63

/* Flags in struct xtk_domain_info. */
#define XTK_DOMINFO_PAUSED 0x1u    /* no vCPU runs (paused by a toolstack) */
#define XTK_DOMINFO_SUSPENDED 0x2u /* the guest suspended itself */
#define XTK_DOMINFO_EMPTY 0x4u     /* created for a restore, not started */
#define XTK_DOMINFO_LOGDIRTY 0x8u  /* dirty logging is on */
#define XTK_DOMINFO_CRASHED 0x10u  /* a vCPU stopped on an error */
#define XTK_DOMINFO_STORE 0x20u    /* registered in the store */

struct xtk_domain_info {
    uint32_t domid;
    uint32_t nr_vcpus;
    uint64_t nr_pages;  /* guest RAM in 4 KiB frames: frames 0..nr_pages-1 */
    uint32_t flags;     /* XTK_DOMINFO_* */
    uint32_t reserved;  /* zero */
    uint64_t uptime_ns; /* since the domain was created */
    char name[XTK_DOMAIN_NAME_MAX + 1];
};

/*
 * What xtk_domain_create() builds.  Zero-fill it, then set what you need:
 * zero and NULL fields take the defaults given.
 */
struct xtk_domain_config {
    const char *name;        /* unique; NULL: "domain-<id>" */
    uint64_t memory_mib;     /* guest RAM; 0: 64 MiB */
    uint32_t nr_vcpus;       /* 0: 1 */
    uint32_t flags;          /* XTK_DOMCFG_*; unknown bits are refused */
    const char *kernel;      /* guest image; NULL: the built-in guest */
    const char *cmdline;     /* the guest's command line (built-in guest: its
                                workload, see xtk(1)); NULL: "" */
    const char *net;         /* KVM: where the built-in guest's network
                                ring goes: "udp:HOST:PORT" or
                                "tcp:HOST:PORT"; NULL: nowhere */
    const char *reserved[3]; /* NULL */
};

/* Flags for struct xtk_domain_config. */
#define XTK_DOMCFG_NO_STORE 0x1u /* do not register the domain in the store */
#define XTK_DOMCFG_PAUSED 0x2u   /* create it paused */

/*
 * Creates and starts a domain.  The built-in guest (kernel NULL, not
 * paused) has booted when this returns: it answers a suspend request at
 * once.  Returns an open handle on it, or NULL (and
 * then no domain is left behind), in which case errno will be set: EEXIST
 * for a name already in use, EINVAL for a bad configuration, ENOENT for a
 * missing kernel.
 */
struct xtk_domain *xtk_domain_create(struct xtk_ctx *ctx,
                                     const struct xtk_domain_config *cfg);

/*
 * Opens a handle on the live domain with this id (ENOENT: no such domain).
 */
struct xtk_domain *xtk_domain_open(struct xtk_ctx *ctx, uint32_t domid);

/*
 * Opens a handle on a live domain given as xl does: a decimal id, or a name
 * (ENOENT: no such domain).
 */
struct xtk_domain *xtk_domain_lookup(struct xtk_ctx *ctx, const char *what);

/*
 * Closes a handle.  The domain runs on, except that a pause the handle's
 * owner took for the duration of an operation (the save engine does) is
 * released.  Accepts NULL.
 */
void xtk_domain_close(struct xtk_domain *dom);

/* The domain's id. */
uint32_t xtk_domain_id(const struct xtk_domain *dom);

/* Fills *info. */
int xtk_domain_info(struct xtk_domain *dom, struct xtk_domain_info *info);

/* Flags in struct xtk_vcpu_stats. */
#define XTK_VCPU_WAIT 0x1u    /* wait_ns and preemptions are known */
#define XTK_VCPU_YIELDS 0x2u  /* the yield counters are known */
#define XTK_VCPU_RUNNING 0x4u /* on a CPU now (Xen) */
#define XTK_VCPU_BLOCKED 0x8u /* waiting for an event now (Xen) */
/* The guest is told when this vCPU's host thread is preempted (KVM:
 * xtk-hv(8), "vCPU threads"). */
#define XTK_VCPU_PUBLISHED 0x10u

/*
 * One vCPU as its host sees it, since the vCPU was created (a restored
 * domain's vCPUs start again from zero).  What the backend cannot know is
 * zero, its flag clear.
 */
struct xtk_vcpu_stats {
    uint32_t vcpu;
    uint32_t flags;       /* XTK_VCPU_* */
    uint64_t cpu_ns;      /* time it ran */
    uint64_t wait_ns;     /* time runnable but not running: the guest's steal
                             time (XTK_VCPU_WAIT) */
    uint64_t slices;      /* times it got a CPU (XTK_VCPU_WAIT) */
    uint64_t preemptions; /* times it lost its CPU to another task */
    uint64_t blocks;      /* times it gave its CPU up (halts, waits) */
    /* Directed yields it made (its time given to a preempted vCPU of the
     * same guest, XTK_VCPU_YIELDS): asked for, and given. */
    uint64_t yields_attempted;
    uint64_t yields_successful;
    /* Times its host raised its thread's priority to take a suspend
     * request it was late to (KVM: xtk-hv(8), "vCPU threads";
     * XTK_VCPU_YIELDS).  Since XTK_0.9 too (was reserved, zero). */
    uint64_t boosts;
    uint64_t reserved[3]; /* zero */
};

/*
 * Fills out[0..max-1] with the domain's vCPUs, in order; *nr gets how many
 * the domain has (more than max: the rest are left out).  Cheap: never
 * waits for a vCPU to stop.  Since XTK_0.9.
 */
int xtk_domain_vcpus(struct xtk_domain *dom, struct xtk_vcpu_stats *out,
                     unsigned int max, unsigned int *nr);

/*
 * Lists the live domains, ordered by id: *infos gets an array of *nr
 * entries that the caller frees with free().
 */
int xtk_domain_list(struct xtk_ctx *ctx, struct xtk_domain_info **infos,
                    size_t *nr);

/*
 * Pauses the domain: when this returns, no vCPU runs guest code, and none
 * will until xtk_domain_unpause().  Pausing a paused domain succeeds.
 */
int xtk_domain_pause(struct xtk_domain *dom);

/*
 * Unpauses the domain, whoever paused it: it always works, which is how a
 * domain left paused by a toolstack that died is recovered.  A save in
 * progress on the domain then fails instead of writing an inconsistent
 * image.
 */
int xtk_domain_unpause(struct xtk_domain *dom);

/*
 * Resumes a guest that suspended itself (a save that did not finish left it
 * suspended; a restored domain starts so): it carries on where it stopped.
 * Also unpauses.  Succeeds on a running guest.
 */
int xtk_domain_resume(struct xtk_domain *dom);

/*
 * Destroys the domain: its vCPUs stop, its memory is freed, it leaves the
 * store.  The handle must still be closed.
 */
int xtk_domain_destroy(struct xtk_domain *dom);

/*
 * Renames the domain (EEXIST: the name is taken; EINVAL: not a valid name).
 * A restore on the same host uses it as libxl does: the destination runs
 * under a temporary name until the source is gone.
 */
int xtk_domain_rename(struct xtk_domain *dom, const char *name);

/*
 * A checkpointing save to a backup holds the guest's outward output (its
 * console and network) until the backup has the epoch it came from (KVM;
 * see xtk-save(1), "Output").  When that save dies, the output stays held:
 * this copy cannot know whether the backup will take over.  Whoever knows
 * ends the hold: XTK_OUTPUT_SEND (this copy runs on: what is held goes
 * out, and output flows again) or XTK_OUTPUT_DROP (another copy runs the
 * domain: what is held is never sent).  EPERM while a live save holds it;
 * 0 if nothing is held; ENOTSUP where the backend holds no output.
 */
int xtk_domain_output_end(struct xtk_domain *dom, unsigned int how);
#define XTK_OUTPUT_SEND 1u
#define XTK_OUTPUT_DROP 2u

/*
 * The domain's configuration as xl saves it in its file's header: libxl's
 * JSON (what libxl_retrieve_domain_configuration() gives), as one string
 * with its NUL; *config is malloc()ed and the caller frees it, *len counts
 * the NUL.  ENOTSUP where the hypervisor has no such thing (KVM: xtk's
 * own stream carries the domain's shape).
 */
int xtk_domain_xl_config(struct xtk_domain *dom, char **config, size_t *len);

/*
 * Reads the domain's console output.  The console is a stream of bytes
 * numbered from 0, of which the most recent ones are kept (the oldest are
 * dropped).  On entry *offset is the first byte wanted and *len the room in
 * buf; on return buf holds *len bytes starting at *offset, which is moved
 * forward past any dropped bytes; the next call should pass *offset + *len.
 * *len is 0 when there is nothing new.
 */
int xtk_domain_console_read(struct xtk_domain *dom, uint64_t *offset, char *buf,
                            size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* XTK_DOMAIN_H */
