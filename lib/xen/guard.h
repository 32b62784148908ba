/*
 * guard.h - what the xen backend tells its guard (xtk-xen-guard(8)).
 *
 * On KVM, what a save holds on a domain (a pause, the dirty log, the
 * suspend guard) belongs to its connection to xtk-hv and ends with it.  On
 * Xen it belongs to the domain: a toolstack killed in the middle of a save
 * would leave the guest paused or suspended, its dirty log on and Xen
 * signalling a dead port instead of VIRQ_DOM_EXC.  So each handle that
 * takes any of these starts a guard, a small process in a session of its
 * own, and keeps it told, over a stream socket, what it holds: whenever
 * that changes it writes one struct xtk__xen_guard_state (the guard puts
 * partial reads together).  When the pipe reaches end of
 * file, the guard undoes the last state it read; a handle that closes
 * cleanly sends an all-zero state first, which leaves nothing to undo.
 * A restore's handle keeps the guard told that its domain is being built,
 * from its creation until it first runs, so that a restore killed half-way
 * leaves no domain behind.
 */
#ifndef XTK_XEN_GUARD_H
#define XTK_XEN_GUARD_H

#include <stdint.h>

#define XTK__XEN_GUARD_MAGIC 0x5854474bu /* "XTGK" */

struct xtk__xen_guard_state {
    uint32_t magic;
    uint32_t domid;
    uint32_t held_pauses; /* pauses to release */
    uint32_t logdirty;    /* 1: switch the dirty log off */
    uint32_t subscribed;  /* 1: give the suspend notification back to Xen */
    uint32_t requested;   /* 1: a suspend was requested: resume the guest,
                             also if it suspends only later */
    uint32_t store;       /* 1: the request was written to control/shutdown:
                             take it back if the guest has not seen it */
    uint32_t building;    /* 1: the domain is being built for a restore and
                             has not run: destroy it (a restore that dies
                             leaves no half-built domain) */
};

#endif /* XTK_XEN_GUARD_H */
