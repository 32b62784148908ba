/*
 * kvm.h - what the kvm backend exports to the rest of xtk (tests, tools,
 * benchmarks) beyond the backend operations table.
 */
#ifndef XTK_KVM_H
#define XTK_KVM_H

#include <stddef.h>
#include <stdint.h>

struct xtk_ctx;

/* Where xtk-hv processes keep their sockets: the context's
 * (xtk_ctx_set_rundir()), else $XTK_RUNDIR, else /run/xtk. */
const char *xtk__kvm_rundir(const struct xtk_ctx *ctx);

/*
 * Checks a built-in guest's self-check (guests/abi.h) in its RAM, mapped at
 * ram (nr_pages frames): the status page says it runs and saw no error,
 * and the workload's data adds up (the dirtier: every page of the working
 * set holds the pattern of the sequence number its table records, and the
 * table sums to table_sum; the spin lock: the per-vCPU counts add up to the
 * shared count).  A rewrite or a critical section in progress (a guest
 * paused rather than suspended) is allowed for.  Returns 0, or -1 with
 * errno EILSEQ (the data is damaged) or EINVAL (not a built-in guest) and
 * why says what.
 */
int xtk__guest_check(const void *ram, uint64_t nr_pages, char *why,
                     size_t whylen);

#endif /* XTK_KVM_H */
