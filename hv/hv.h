/*
 * hv.h - xtk-hv's parts: the VM and its vCPU threads (vm.c), state records
 * (state.c), the control socket (ctl.c), the store (store.c), and the
 * process around them (main.c).
 *
 * Threads: the main thread runs the control loop (poll() on the listening
 * socket, the connections, the console's event channel, the store
 * connection and a signalfd) and is the only one that issues VM ioctls
 * other than KVM_RUN.  Each vCPU has a thread that loops on KVM_RUN and
 * parks, under hv->lock, whenever the domain must not run.
 */
#ifndef XTK_HV_H
#define XTK_HV_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <linux/kvm.h>

#include "abi.h"
#include <xtk/domain.h>

#include "kvm/hvctl.h"

#define HV_MAX_CONNS 16
#define HV_CONSOLE_BYTES (64u * 1024) /* console history kept */
#define HV_MAX_MSRS 256

/* A struct kvm_msrs with room for n entries (it ends in a flexible array,
 * so it goes in a union, not a struct). */
#define HV_MSRS(n)                                                             \
    union {                                                                    \
        struct kvm_msrs m;                                                     \
        char raw_[sizeof(struct kvm_msrs) +                                    \
                  (n) * sizeof(struct kvm_msr_entry)];                         \
    }

struct hv;

struct hv_vcpu {
    struct hv *hv;
    unsigned int index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    int thread_started;
    int crashed;     /* under hv->lock */
    int parked;      /* under hv->lock: in its park */
    int yielded;     /* under hv->lock: the guest gave it back (abi.h) */
    uint64_t run_ns; /* under hv->lock: when it last left its park */
    /* kvm_run's sync_regs hold what KVM_RUN last left: regs, sregs and
     * events as the GET ioctls would read them (hv->sync_regs), until
     * SET_STATE changes them.  Written by the vCPU thread after KVM_RUN,
     * read by the main thread with the vCPU parked.  Only what the vCPU
     * itself changes, though: a sibling that runs after its exit may
     * send it an NMI, an SMI, an INIT or a SIPI, which KVM keeps where
     * the events (and, an INIT once taken, every register) show it but
     * the copy does not.  So out_seq: hv->out_seq when it last left
     * KVM_RUN; the copy is whole only for the vCPU that left last. */
    int synced;
    uint64_t out_seq;
    /* Its last exit was port I/O or MMIO that KVM finishes only in the
     * next KVM_RUN (the vCPU thread's own; vm.c complete_exit()). */
    int exit_pending;
    /* sched.c, set by the thread before its first KVM_RUN. */
    uint32_t tid;
    int stats_fd;     /* KVM_GET_STATS_FD, or -1 */
    void *sched_page; /* its context-switch event's pages, in the guest;
                         NULL */
    /* Directed yields (sched.c), atomics: asked for by the guest, given
     * (the target still preempted), and with the target moved here. */
    uint64_t yields, yields_given, yields_moved;
    /* The control thread gave it its CPU (hv_sched_boost), or made it
     * real-time for a request it was late to take (ctl.c). */
    uint64_t boosts;
    int boosting;   /* a waiter has moved this vCPU's thread to its CPU */
    int rt_boosted; /* atomic: at SCHED_FIFO for a late request (ctl.c) */
    /* Kicked (vm.c, under hv->lock) since its thread last left the lock
     * for KVM_RUN: it is on its way out, and takes the lock and sees why
     * before it runs the guest again, so another signal only costs the
     * kicker a system call (~8 us here: a wake-up on another CPU). */
    int kicked;
    /* Its records that cannot change while it does not run (CPUID, XSAVE,
     * XCRs, debug registers, MSRs but for the TSC), taken by its own thread
     * when a suspend request's hold parks it (hv_state_prefetch), so that the
     * STOP that follows copies them instead of asking KVM: pf_valid (under
     * hv->lock) until it runs again or its state is set. */
    void *pf_buf;
    size_t pf_cap, pf_off[16], pf_len[16];
    int pf_valid;
    /* The host's TSC at the middle of the last KVM_GET_MSRS, and half
     * its length (state.c: the guest's TSC moved on from a kept read);
     * pf_tsc*: the kept one's. */
    uint64_t msrs_tsc, msrs_tsc_err, pf_tsc, pf_tsc_err;
    /* Its CPUID record as last read: KVM changes a vCPU's table only when
     * told (KVM_SET_CPUID2: at creation, at SET_STATE, which empty it),
     * so a STOP copies it (state.c; cpuid_len 0: not read yet). */
    void *cpuid_rec;
    size_t cpuid_len;
    /* Its records at a GET_STATE taken on two threads (state.c): where
     * whichever thread took them put them, and its errno (0: taken). */
    void *st_buf;
    size_t st_cap, st_len;
    int st_err;
};

struct hv_port {
    int to_guest;   /* eventfd, irqfd on GSI 16+p */
    int from_guest; /* eventfd, ioeventfd on the MMIO doorbell (abi.h) */
};

struct hv_conn {
    int fd;    /* -1: free slot */
    int held;  /* holds a pause (XTK_HVCTL_PAUSE_HOLD) */
    int guard; /* suspending the guest (XTK_HVCTL_OP_SUSPEND_GUARD) */
};

struct hv_options {
    const char *name;
    uint64_t memory_mib;
    unsigned int nr_vcpus;
    const char *kernel;
    const char *cmdline;
    const char *rundir;
    const char *store_path; /* NULL: the default, optional */
    const char *log_path;
    const char *console_log;
    const char *net; /* --net: udp:HOST:PORT or tcp:HOST:PORT; NULL */
    int no_store;
    int store_required; /* --store given: failing to register is fatal */
    int empty;          /* --empty: a shell for a restore */
    int paused;         /* --paused */
    int ready_fd;       /* -1: none */
};

struct hv {
    struct hv_options opt;
    char name[XTK_HVCTL_NAME_MAX];
    uint32_t domid;
    uint64_t mem_bytes, nr_pages;
    unsigned int nr_vcpus;
    uint64_t start_ns;

    /* KVM */
    int kvm_fd, vm_fd;
    size_t run_size;
    int mem_fd;
    uint8_t *mem;
    struct hv_vcpu vcpus[XTK_GUEST_MAX_VCPUS];
    struct hv_port ports[XTK_PORT_MAX + 1];
    uint32_t port_mask; /* ports that exist */
    struct kvm_cpuid2 *cpuid;
    uint32_t msrs[HV_MAX_MSRS];
    unsigned int nr_msrs;
    size_t xsave_size;
    uint64_t entry;
    int sync_regs; /* KVM_CAP_SYNC_REGS: each KVM_RUN leaves them */

    /* Dirty log: the bitmap is a memfd the clients map. */
    int bitmap_fd;
    uint64_t *bitmap;
    size_t bitmap_bytes;
    int logdirty;
    int logdirty_owner; /* connection index, -1 */

    /* Run control, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t parked_cond, run_cond;
    int pause_sticky;
    unsigned int pause_holds;
    int aps_held; /* 1 + the connection holding vCPUs 1.. (PAUSE_APS), 0 */
    uint32_t resumed_nr; /* the last suspend resumed (abi.h, yield); the
                            guest counts its suspends from 1 */
    int empty;           /* restore shell: runs only after RESUME */
    int quit;            /* the vCPU threads must exit */
    unsigned int parked;
    unsigned int run_waiters; /* in hv_vm_wait_running() */
    /* The vCPUs it waits for that have not left their park yet: the last
     * one to leave wakes it (vm.c). */
    uint32_t run_wait_mask;
    /* Exits from KVM_RUN so far, every vCPU's (hv_vcpu.out_seq). */
    uint64_t out_seq;
    /* vCPU threads past sched.c's set-up, and those it published (on a
     * thread of its own: hv_sched_start), and whether it is done. */
    unsigned int sched_set_up, sched_published;
    int sched_told; /* the vCPUs may run */
    int control_rt; /* the main (control) thread runs at SCHED_FIFO */
    int sched_done;
    pthread_t sched_th;
    int sched_th_started;
    int crashed;

    /* state.c's helper: a GET_STATE's vCPUs taken by two threads, this
     * one and the control thread, each claiming the next vCPU (st_next,
     * st_finished atomics) once told (st_gen, under st_lock). */
    pthread_t st_th;
    int st_th_started, st_quit;
    unsigned int st_gen, st_next, st_finished;
    pthread_mutex_t st_lock;
    pthread_cond_t st_cond, st_done_cond;

    /* Console history (ring buffer), under console_lock. */
    pthread_mutex_t console_lock;
    char console[HV_CONSOLE_BYTES];
    uint64_t console_end;
    FILE *console_log;

    /* Output held for a checkpointing save (output.c), under console_lock:
     * the holding connection (or HV_HOLD_*), the open epoch, the queue. */
    int hold_owner;
    uint32_t hold_epoch;
    struct hv_held *held_head, **held_tail;
    size_t held_bytes;
    uint64_t held_lost; /* debug-port bytes with no room to wait */
    int drain_all;      /* a STOP takes the rings whatever the bound */
    int at_bound;       /* the rings wait: said once per stretch */

    /* The network sink (--net), under console_lock. */
    int net_fd, net_tcp, net_connecting, net_failed_said;
    struct sockaddr_storage net_addr;
    socklen_t net_addrlen;
    char *net_out; /* TCP: bytes the socket has not taken */
    size_t net_out_len;
    uint64_t net_retry_ns, net_lost;

    /* Control. */
    int listen_fd;
    char sock_path[256];
    struct hv_conn conns[HV_MAX_CONNS];
    int lock_fd, name_lock_fd;
    int store_fd; /* the privileged store connection; -1 */
    int destroy;  /* DESTROY received: leave the loop */
    int creator;  /* empty domain: the restore's connection, or -1 */
    /* A lazy restore's userfaultfd on the RAM (XTK_HVCTL_OP_LAZY), kept
     * until LAZY_DONE; -1.  While it is open the creator's connection
     * closing destroys the domain. */
    int lazy_fd;
    /* A guarded suspend whose connection died: resume the guest once it
     * reports suspended, until this time (hv_now_ns); 0: none. */
    uint64_t orphan_until;
    /* A hold's suspend request that vCPU 0 has not taken by rescue_at
     * (hv_now_ns; 0: none) gets vCPU 0 real-time until it does, or
     * rescue_until at the latest (ctl.c, hv_ctl_rescue_check). */
    uint64_t rescue_at, rescue_until;
};

/* sched.c */
/* Real-time priorities (SCHED_FIFO): the control thread and state.c's
 * helper above a vCPU made real-time for a late request (ctl.c), so that
 * they can always end it. */
#define HV_RT_CONTROL 2
#define HV_RT_VCPU 1
#define HV_SCHED_SLOT0 1 /* memory slots 1.. : vCPU i's scheduling pages */
/* The memory slot of RAM above 4 GiB (slot 0: below the MMIO hole). */
#define HV_HIGH_SLOT (HV_SCHED_SLOT0 + XTK_GUEST_MAX_VCPUS)
/* A vCPU thread's own set-up, before its first KVM_RUN. */
void hv_sched_thread_init(struct hv_vcpu *v);
/* Publishes every vCPU thread's scheduling pages to the guest on a thread
 * of its own (the vCPUs run meanwhile), then sets XTK_BOOT_SCHED.  0 or
 * -1 (not started: the guest is not told). */
int hv_sched_start(struct hv *hv);
/* Waits for that thread (hv->quit set first). */
void hv_sched_stop(struct hv *hv);
void hv_sched_yield_to(struct hv *hv, struct hv_vcpu *v, uint32_t target);
/* The calling thread's CPU to vCPU v's thread, if it is preempted. */
void hv_sched_boost(struct hv_vcpu *v);
/* vCPU v's thread at SCHED_FIFO priority 1 (1), already (0), or not
 * allowed (-1); and back to SCHED_OTHER if it was so boosted. */
int hv_sched_rt_boost(struct hv_vcpu *v);
void hv_sched_rt_unboost(struct hv_vcpu *v);
void hv_sched_vcpu_stats(struct hv_vcpu *v, struct xtk_hvctl_vcpu *o);

/* main.c */
/* Takes name (unique among live domains: EEXIST; EINVAL if malformed) and
 * lets the old one go. */
int hv_take_name(struct hv *hv, const char *name);

/* rundir.c */
#define DOMID_MAX 32751 /* as Xen: ids above are reserved */
/* Locks path (creating it if create): the fd, or -1 (EEXIST: held). */
int hv_lock_path(const char *path, int create);
/* Unlinks path, whose lock fd holds, and lets it go.  fd -1: nothing. */
void hv_unlock_path(const char *path, int fd);
/* Moves <rundir>/<domid>.log to the kept logs (log/), pruning them. */
void hv_rundir_keep_log(const char *rundir, uint32_t domid);
/* Removes the files of domains that are gone (their locks free). */
void hv_rundir_sweep(const char *rundir);

/* log.c */
extern uint32_t hv_log_domid;
extern int hv_log_quiet; /* the fuzzer sets it */
/*
 * Started by a toolstack (--ready-fd): lines are held, not printed, until
 * the log is open (hv_log_release() writes them there); a start-up
 * failure's cause, the last line logged (hv_log_last), goes to the
 * toolstack on the ready fd instead, which shows it once.
 */
extern int hv_log_hold;
#define HV_LOG_LAST_MAX 256
extern char hv_log_last[HV_LOG_LAST_MAX];
void hv_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void hv_log_release(void);
uint64_t hv_now_ns(void);

/* vm.c */
int hv_vm_create(struct hv *hv);
int hv_vm_load_guest(struct hv *hv);
int hv_vm_start(struct hv *hv);
void hv_vm_destroy(struct hv *hv);
/* The boot flags this xtk-hv offers besides the store and the scheduling
 * pages (XTK_BOOT_SUSPENDED_EXIT, unless XTK_HV_SUSPENDED_EXIT=0). */
uint32_t hv_vm_offers(void);
/* XTK_BOOT_SCHED in the boot page: on if every vCPU's thread is published
 * (sched.c).  Under hv->lock; for a new guest and a restored one. */
void hv_vm_set_sched_flag(struct hv *hv);
/* Stops every vCPU (caller holds hv->lock and has made them park). */
void hv_vm_wait_parked(struct hv *hv);
void hv_vm_kick_aps(struct hv *hv);
/* How many vCPUs are stopped for a pause: parked, or yielded by the
 * guest (out of KVM_RUN for good until the domain runs; under hv->lock). */
unsigned int hv_vm_stopped(const struct hv *hv);
/* True when the vCPUs must stay parked (hv->lock held). */
int hv_vm_must_park(const struct hv *hv);
void hv_vm_wake(struct hv *hv);
/*
 * The vCPUs parked now, as a mask, for hv_vm_wait_running() (hv->lock
 * held).
 */
uint32_t hv_vm_parked_mask(const struct hv *hv);
/*
 * The guest's view of vCPUs let go of their park and not yet run (the
 * boot page's waking mask): vCPUs of mask marked (a hold's end; a wake
 * marks every parked one itself), and whether vCPU index is (hv->lock
 * held for the first).
 */
void hv_vm_mark_waking(struct hv *hv, uint32_t mask);
int hv_vm_waking(struct hv *hv, unsigned int index);
/*
 * After a wake: waits (hv->lock held, at most a second) until each vCPU of
 * mask has left its park, and returns when the last one did (hv_now_ns),
 * or 0 if one did not in time.
 */
uint64_t hv_vm_wait_running(struct hv *hv, uint32_t mask, uint64_t since);
int hv_vm_logdirty(struct hv *hv, int on);
int hv_vm_logdirty_sync(struct hv *hv, uint64_t *dirty);
/* Appends to the console's history and log (console_lock held). */
void hv_console_emit(struct hv *hv, const char *s, size_t n);
struct xtk_guest_status *hv_guest_status(struct hv *hv); /* NULL if none */
/* Wakes a guest that sits suspended (writes its suspend port); under
 * hv->lock. */
void hv_vm_kick_suspended(struct hv *hv);

/* output.c */
enum { HV_OUT_CONSOLE, HV_OUT_NET };
#define HV_HOLD_NONE (-1)   /* output flows */
#define HV_HOLD_ORPHAN (-2) /* held; its holder is gone */
/* The guest's output (console bytes, a packet): sent, or held. */
void hv_output(struct hv *hv, unsigned int kind, const char *s, size_t n);
/* The rings' doorbells rang: take what they hold. */
void hv_console_drain(struct hv *hv);
void hv_net_drain(struct hv *hv);
/* Parses --net's SPEC: 0, or -1 if it is not udp:/tcp:HOST:PORT. */
int hv_net_parse(const char *spec, int *tcp, struct sockaddr_storage *sa,
                 socklen_t *salen);
int hv_net_open(struct hv *hv);
/* A TCP sink: whether the loop should wait for it to be writable, and
 * what it became (failed: an error). */
int hv_net_wants_out(const struct hv *hv);
void hv_net_event(struct hv *hv, int failed);
/* Connection ci holds output from now on, or takes over an orphaned hold
 * (EBUSY: another holds it). */
int hv_output_hold(struct hv *hv, int ci);
/* Holding ends, what is held sent or dropped: by its holder, or by anyone
 * once orphaned (else EPERM). */
int hv_output_end(struct hv *hv, int ci, int send);
/* Connection ci closes: a hold of its is orphaned. */
void hv_output_orphan(struct hv *hv, int ci);
/* With the guest stopped (a STOP of connection ci's): the rings taken and,
 * if ci holds output, the open epoch closed: its number, else 0. */
uint32_t hv_output_mark(struct hv *hv, int ci);
/* Sends the output of epochs up to epoch (closed ones only: EINVAL);
 * EPERM if ci is not the holder. */
int hv_output_release(struct hv *hv, int ci, uint32_t epoch,
                      struct xtk_hvctl_output *o);

/* state.c */
int hv_state_get(struct hv *hv, void *buf, size_t max, size_t *len);
/* Takes v's records that cannot change while it is parked into v->pf_buf
 * (its own thread, not holding hv->lock); 0, or -1 (none kept). */
int hv_state_prefetch(struct hv *hv, struct hv_vcpu *v);
/* The helper thread that takes a GET_STATE's vCPUs with the control
 * thread (an SMP guest's), and its end.  Best effort: without it the
 * control thread takes them all. */
void hv_state_helper_start(struct hv *hv);
void hv_state_helper_stop(struct hv *hv);
int hv_state_set(struct hv *hv, const void *buf, size_t len);
/* Checks records as hv_state_set() would, applying nothing (the fuzzer's
 * entry point: it needs only nr_vcpus and xsave_size). */
int hv_state_check(struct hv *hv, const void *buf, size_t len);

/* ctl.c */
int hv_ctl_listen(struct hv *hv);
void hv_ctl_accept(struct hv *hv);
void hv_ctl_handle(struct hv *hv, int ci);
void hv_ctl_close(struct hv *hv, int ci);
/* Resumes a guest whose guarded suspend lost its connection, once it sits
 * suspended; called from the loop while hv->orphan_until is set. */
void hv_ctl_orphan_check(struct hv *hv);
/* A suspend request's rescue due (hv->rescue_at, rescue_until): done. */
void hv_ctl_rescue_check(struct hv *hv);

/* store.c */
int hv_store_register(struct hv *hv);
void hv_store_handle(struct hv *hv);
/* Rewrites /local/domain/<id>/name after a rename. */
void hv_store_set_name(struct hv *hv);

#endif /* XTK_HV_H */
