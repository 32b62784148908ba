/*
 * work.c - the workloads, chosen on the command line:
 *
 *   workload=idle                      halt; a timer wakes vCPU 0 every 10 ms
 *   workload=counter                   vCPU 0 increments status->counter
 *   workload=dirty pages=N stride=S rate=R
 *                                      rewrite every S-th page of an N-page
 *                                      area, R pages/s (0: flat out)
 *   workload=spin hold=H               every vCPU takes a spin lock in turn
 *                                      (and holds it H pause instructions)
 *   workload=ports                     vCPU 0 writes "0123456789" over and
 *                                      over to the debug port, a byte at a
 *                                      time: every byte an exit to the host
 *                                      (the tests of a vCPU stopped at one)
 *   workload=nmi                       vCPU 0 sends vCPU 1 an NMI, waits for
 *                                      its handler to count it, and again:
 *                                      an NMI to a stopped vCPU that its
 *                                      saved state leaves out stalls it
 *
 * Each keeps its self-check in the status page and in its own memory (the
 * dirtier: a pattern in every page and a table of sequence numbers; spin:
 * guards and counts; idle and counter: patterned pages and a mirror of the
 * progress word, struct xtk_guest_fill), which work_verify() and the
 * host-side checker read.
 */
#include "guest.h"

static enum xtk_guest_workload workload;
static uint8_t *area;
static uint64_t *table;
static uint64_t ws_pages;         /* pages in the working set */
static uint64_t spin_hold;        /* spin: pauses inside the lock */
static volatile uint64_t *mirror; /* idle, counter: ~progress word */
static volatile uint64_t *top;    /* its second copy, in RAM's last page */

/* Idle and counter: the patterned pages and the mirror (abi.h). */
static void fill_setup(void)
{
    struct xtk_guest_fill *f = &status->fill;
    uint64_t base = XTK_GUEST_WORK_GPA / PAGE_SIZE;

    f->seed = status->boot_tsc | 1;
    for (uint64_t p = 0; p < XTK_GUEST_FILL_PAGES; p++) {
        uint64_t *page = (uint64_t *)(XTK_GUEST_WORK_GPA + p * PAGE_SIZE);
        for (uint64_t i = 0; i < PAGE_SIZE / 8; i++)
            page[i] = xtk_guest_pattern(base + p, f->seed, i);
    }
    f->mirror_gpa = XTK_GUEST_WORK_GPA + XTK_GUEST_FILL_PAGES * PAGE_SIZE;
    mirror = (volatile uint64_t *)f->mirror_gpa;
    *mirror = ~0ull; /* the progress word is 0 */
    f->pages = XTK_GUEST_FILL_PAGES;

    /* RAM's last page, through the address abi.h places it at (xtk-hv's
     * layout: above the MMIO hole past 3 GiB). */
    status->top_gpa = status->top_frame = 0;
    top = NULL;
    if (boot && guest_mem_bytes() >= XTK_GUEST_WORK_GPA + 2 * PAGE_SIZE +
                                         XTK_GUEST_FILL_PAGES * PAGE_SIZE) {
        uint64_t frame = guest_mem_bytes() / PAGE_SIZE - 1;
        uint64_t *page = (uint64_t *)xtk_guest_ram_gpa(frame * PAGE_SIZE);

        page[0] = ~0ull; /* the mirror's copy */
        for (uint64_t i = 1; i < PAGE_SIZE / 8; i++)
            page[i] = xtk_guest_pattern(frame, f->seed, i);
        status->top_frame = frame;
        status->top_gpa = (uint64_t)page;
        top = page;
    }
}

/* The progress word the mirror follows. */
static volatile uint64_t *progress_word(void)
{
    return workload == XTK_WORK_COUNTER ? &status->counter
                                        : &status->heartbeat[0];
}

static int word_is(const char *v, size_t len, const char *w)
{
    return len == strlen(w) && !strncmp(v, w, len);
}

void work_setup(const char *cmdline)
{
    struct xtk_guest_dirty *d = &status->dirty;
    size_t len;
    const char *w = cmdline_get(cmdline, "workload", &len);
    uint64_t mem = guest_mem_bytes(), need;

    workload = XTK_WORK_IDLE;
    if (w && word_is(w, len, "counter"))
        workload = XTK_WORK_COUNTER;
    else if (w && word_is(w, len, "dirty"))
        workload = XTK_WORK_DIRTY;
    else if (w && word_is(w, len, "spin"))
        workload = XTK_WORK_SPIN;
    else if (w && word_is(w, len, "ports"))
        workload = XTK_WORK_PORTS;
    else if (w && word_is(w, len, "nmi"))
        workload = XTK_WORK_NMI;
    else if (w && !word_is(w, len, "idle"))
        guest_fail("unknown workload");
    status->workload = workload;

    if (workload == XTK_WORK_IDLE || workload == XTK_WORK_COUNTER)
        fill_setup();
    if (workload == XTK_WORK_SPIN)
        spin_hold = cmdline_u64(cmdline, "hold", 0);
    if (workload == XTK_WORK_NMI) {
        status->nmi_sent = status->nmi_taken = 0;
        if (nr_vcpus < 2)
            guest_fail("nmi: the workload needs two vCPUs");
    }
    if (workload != XTK_WORK_DIRTY)
        return;
    d->pages = cmdline_u64(cmdline, "pages", 256);
    d->stride = cmdline_u64(cmdline, "stride", 1);
    d->rate = cmdline_u64(cmdline, "rate", 0);
    if (!d->stride)
        d->stride = 1;
    /* The working set and its table below the MMIO hole. */
    need = XTK_GUEST_WORK_GPA + d->pages * PAGE_SIZE + d->pages * 8;
    if (!d->pages || (mem && need > xtk_guest_low_bytes(mem))) {
        guest_fail("dirty: the working set does not fit in memory");
        d->pages = 0;
        return;
    }
    area = (uint8_t *)XTK_GUEST_WORK_GPA;
    table = (uint64_t *)(XTK_GUEST_WORK_GPA + d->pages * PAGE_SIZE);
    d->table_gpa = (uint64_t)table;
    ws_pages = (d->pages + d->stride - 1) / d->stride;
    kprintf("xtk-guest: dirty: %lu of %lu pages from %lx, %lu pages/s\n",
            ws_pages, d->pages, (uint64_t)XTK_GUEST_WORK_GPA, d->rate);
}

/* Rewrites the k-th page of the working set. */
static void dirty_one(uint64_t k)
{
    struct xtk_guest_dirty *d = &status->dirty;
    uint64_t idx = k * d->stride;
    uint64_t pfn = XTK_GUEST_WORK_GPA / PAGE_SIZE + idx;
    uint64_t *page = (uint64_t *)(area + idx * PAGE_SIZE);
    uint64_t seq = d->seq + 1;

    WRITE_ONCE(d->writing, pfn);
    barrier();
    for (uint64_t i = 0; i < PAGE_SIZE / 8; i++)
        page[i] = xtk_guest_pattern(pfn, seq, i);
    d->table_sum += seq - table[idx];
    table[idx] = seq;
    d->seq = seq;
    barrier();
    WRITE_ONCE(d->writing, 0);
}

static void run_dirty(void)
{
    struct xtk_guest_dirty *d = &status->dirty;
    uint64_t k = 0, done = 0, start = now_ns();

    for (;;) {
        poll_events();
        status->heartbeat[0]++;
        if (!ws_pages) {
            idle_wait(0);
            continue;
        }
        if (d->rate) {
            uint64_t el = now_ns() - start;
            if (el >= 1000000000ull) { /* a new second: no catch-up burst */
                start += el - el % 1000000000ull;
                el %= 1000000000ull;
                done = 0;
            }
            if (done >= el * d->rate / 1000000000ull) {
                idle_wait(0);
                continue;
            }
        }
        dirty_one(k);
        done++;
        if (++k == ws_pages) {
            k = 0;
            d->passes++;
        }
    }
}

/*
 * Waits for the spin lock, already found taken.  A holder the host has
 * preempted is not spun on: the waiter gives it its time (pv.c).
 */
static void spin_wait(struct xtk_guest_spin *s, unsigned int cpu)
{
    unsigned int spins = 0;

    do {
        while (READ_ONCE(s->lock)) {
            /* vCPU 0, waiting, takes a suspend request at once (it holds
             * nothing): not after a holder the host may have preempted
             * gets to run and let go (issue 15). */
            if (!cpu && (READ_ONCE(kernel_events) & (EV_SUSPEND | EV_STORE)))
                poll_events();
            if (++spins % PV_CHECK_SPINS == 0) {
                uint32_t h = READ_ONCE(s->holder);
                if (h)
                    pv_wait_on(cpu, h - 1);
            }
            cpu_relax();
        }
    } while (xchg32(&s->lock, 1));
}

static void run_spin(unsigned int cpu)
{
    struct xtk_guest_spin *s = &status->spin;
    struct xtk_guest_pv *pv = &status->pv;

    for (;;) {
        uint64_t t0 = 0;

        if (cpu)
            ap_poll(cpu);
        else
            poll_events();
        if (xchg32(&s->lock, 1)) {
            t0 = now_ns();
            spin_wait(s, cpu);
        }
        WRITE_ONCE(s->holder, cpu + 1);
        if (t0) { /* held: the measures are the lock's too */
            /* A wait across a migration (the host stops a waiting vCPU
             * where it is) may see the clock start again lower. */
            uint64_t t1 = now_ns(), w = t1 > t0 ? t1 - t0 : 0;
            pv->lock_waits++;
            pv->lock_wait_total_ns += w;
            if (w > pv->lock_wait_max_ns)
                pv->lock_wait_max_ns = w;
        }
        if (READ_ONCE(s->guard_a) != READ_ONCE(s->guard_b))
            guest_fail("spin: two vCPUs in the critical section");
        uint64_t v = s->guard_a + 1;
        WRITE_ONCE(s->guard_a, v);
        WRITE_ONCE(s->guard_b, v);
        s->shared_count++;
        s->per_cpu[cpu]++;
        for (uint64_t i = 0; i < spin_hold; i++)
            cpu_relax();
        WRITE_ONCE(s->holder, 0);
        barrier();
        WRITE_ONCE(s->lock, 0);
        status->heartbeat[cpu]++;
        for (int i = 0; i < 64; i++)
            cpu_relax();
    }
}

/*
 * vCPU 0's side of the nmi workload: one NMI in flight at a time (a second
 * sent before the first is taken may merge with it), so every one sent is
 * taken, and one lost shows as a wait that does not end.  The handler is
 * kernel.c's (vector 2).
 */
static void run_nmi(void)
{
    char msg[96];

    /* An NMI to a vCPU not up yet is lost (or lands before its IDT). */
    while (READ_ONCE(status->nr_vcpus_up) < nr_vcpus) {
        poll_events();
        cpu_relax();
    }
    for (;;) {
        uint64_t n = status->nmi_sent + 1, t0 = READ_ONCE(status->ticks);

        sys_call(SYS_NMI, 1, 0);
        WRITE_ONCE(status->nmi_sent, n);
        while (READ_ONCE(status->nmi_taken) < n) {
            poll_events();
            if (READ_ONCE(status->ticks) - t0 > 200) {
                ksnprintf(msg, sizeof(msg),
                          "nmi: NMI %lu to vCPU 1 not taken in 200 ticks", n);
                guest_fail(msg);
                for (;;)
                    idle_wait(0);
            }
            cpu_relax();
        }
        status->heartbeat[0]++;
        poll_events();
    }
}

void work_run(unsigned int cpu)
{
    if (cpu == 0 && workload == XTK_WORK_NMI && nr_vcpus >= 2)
        run_nmi();
    if (workload == XTK_WORK_SPIN)
        run_spin(cpu);
    if (cpu == 0 && workload == XTK_WORK_DIRTY)
        run_dirty();
    if (cpu == 0 && workload == XTK_WORK_PORTS) {
        /* No two bytes in a row the same: a byte seen twice on the console
         * is one port write done twice (a vCPU saved between its exit and
         * KVM's completion of it, then restored, does that). */
        for (unsigned int i = 0;; i = i == 9 ? 0 : i + 1) {
            user_outb(XTK_GUEST_DEBUG_PORT, (uint8_t)('0' + i));
            status->heartbeat[0]++;
            poll_events();
        }
    }
    if (cpu == 0 && workload == XTK_WORK_COUNTER) {
        for (;;) {
            uint64_t c = status->counter + 1;
            WRITE_ONCE(status->counter, c);
            *mirror = ~c;
            if (top)
                *top = ~c;
            if (!(c & 0xff))
                status->heartbeat[0]++;
            poll_events();
        }
    }
    for (;;) {
        uint64_t h = status->heartbeat[cpu] + 1;
        WRITE_ONCE(status->heartbeat[cpu], h);
        if (cpu == 0 && mirror) {
            *mirror = ~h; /* after the word: the mirror may lag by one */
            if (top)
                *top = ~h;
        }
        idle_wait(cpu);
    }
}

void work_verify(void)
{
    struct xtk_guest_dirty *d = &status->dirty;
    struct xtk_guest_spin *s = &status->spin;
    struct xtk_guest_fill *f = &status->fill;
    char msg[128];

    if (mirror) {
        uint64_t base = XTK_GUEST_WORK_GPA / PAGE_SIZE;
        for (uint64_t p = 0; p < f->pages; p++) {
            const uint64_t *page =
                (const uint64_t *)(XTK_GUEST_WORK_GPA + p * PAGE_SIZE);
            for (uint64_t i = 0; i < PAGE_SIZE / 8; i++)
                if (page[i] != xtk_guest_pattern(base + p, f->seed, i)) {
                    ksnprintf(msg, sizeof(msg),
                              "fill: page %lx word %lu is not the pattern",
                              base + p, i);
                    guest_fail(msg);
                    return;
                }
        }
        if (top) {
            const uint64_t *page = (const uint64_t *)top;
            if (~page[0] != *progress_word()) {
                guest_fail("fill: the progress word and its copy in RAM's "
                           "last page differ");
                return;
            }
            for (uint64_t i = 1; i < PAGE_SIZE / 8; i++)
                if (page[i] !=
                    xtk_guest_pattern(status->top_frame, f->seed, i)) {
                    ksnprintf(msg, sizeof(msg),
                              "fill: RAM's last page (%lx at %lx) word %lu "
                              "is not the pattern",
                              status->top_frame, status->top_gpa, i);
                    guest_fail(msg);
                    return;
                }
        }
        /* vCPU 0 is here, between two updates: the two agree exactly. */
        if (~*mirror != *progress_word())
            guest_fail("fill: the progress word and its mirror differ");
    }

    if (workload == XTK_WORK_DIRTY && ws_pages) {
        uint64_t sum = 0;
        for (uint64_t k = 0; k < ws_pages; k++) {
            uint64_t idx = k * d->stride;
            uint64_t pfn = XTK_GUEST_WORK_GPA / PAGE_SIZE + idx;
            const uint64_t *page = (const uint64_t *)(area + idx * PAGE_SIZE);
            uint64_t seq = table[idx];
            sum += seq;
            if (!seq)
                continue;
            for (uint64_t i = 0; i < PAGE_SIZE / 8; i++) {
                if (page[i] != xtk_guest_pattern(pfn, seq, i)) {
                    ksnprintf(msg, sizeof(msg),
                              "dirty: page %lx word %lu is not seq %lu", pfn, i,
                              seq);
                    guest_fail(msg);
                    return;
                }
            }
        }
        if (sum != d->table_sum)
            guest_fail("dirty: the table does not add up");
    }
    if (workload == XTK_WORK_SPIN) {
        uint64_t sum = 0;
        for (unsigned int i = 0; i < XTK_GUEST_MAX_VCPUS; i++)
            sum += s->per_cpu[i];
        if (s->guard_a != s->guard_b || sum != s->shared_count)
            guest_fail("spin: the counts do not add up");
    }
}
