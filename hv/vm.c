/*
 * vm.c - the KVM virtual machine: RAM in a memfd, the in-kernel irqchip and
 * PIT, event channel ports (irqfd + ioeventfd), the guest image loaded and
 * started in 64-bit long mode, the vCPU threads and how they park.
 *
 * Parking: a vCPU thread runs KVM_RUN only while hv_vm_must_park() is
 * false.  To stop them, the main thread sets a reason under hv->lock, then
 * for each vCPU sets kvm_run->immediate_exit and sends SIGUSR1 (a no-op
 * handler, so KVM_RUN returns EINTR whether the signal lands inside it or
 * just before), and waits on parked_cond until every thread has parked.
 * A vCPU the guest yielded (the yield doorbell, abi.h) parks by itself and
 * stays so until the next hv_vm_wake(): a suspended guest is stopped
 * before the toolstack asks, as on Xen, and its pause kicks nobody.  A
 * thread whose last exit was port I/O or MMIO enters KVM_RUN once more,
 * with immediate_exit, before it parks (complete_exit()): its state is
 * taken at an instruction's end.
 */
#include "config.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hv.h"

#define TSS_ADDR 0xfffbd000ul
#define IDENTITY_MAP_ADDR 0xfffbc000ul
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define GUEST_IMAGE_MAX (64u << 20)
#define SYNC_REGS (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS)

static const unsigned int hv_ports[] = {XTK_PORT_CONSOLE, XTK_PORT_STORE,
                                        XTK_PORT_SUSPEND, XTK_PORT_ECHO,
                                        XTK_PORT_NET};

/* The ports the guest takes on vCPU 0 (abi.h: XTK_PORT_VECTOR, edge). */
static const unsigned int hv_ports_in[] = {XTK_PORT_CONSOLE, XTK_PORT_STORE,
                                           XTK_PORT_SUSPEND, XTK_PORT_ECHO};

/* ---- memory and platform -------------------------------------------- */

/*
 * RAM as a PC has it (abi.h): its first 3 GiB at guest-physical 0 (slot
 * 0), the rest from 4 GiB (HV_HIGH_SLOT), one memfd and one mapping for
 * both, so that a frame is an offset in it whichever slot holds it.
 */
static int vm_memory(struct hv *hv, uint32_t flags)
{
    uint64_t low = xtk_guest_low_bytes(hv->mem_bytes);
    struct kvm_userspace_memory_region r = {
        .slot = 0,
        .flags = flags,
        .guest_phys_addr = 0,
        .memory_size = low,
        .userspace_addr = (uintptr_t)hv->mem,
    };

    if (ioctl(hv->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
        hv_log("KVM_SET_USER_MEMORY_REGION: %m");
        return -1;
    }
    if (hv->mem_bytes == low)
        return 0;
    r.slot = HV_HIGH_SLOT;
    r.guest_phys_addr = XTK_GUEST_HIGH_GPA;
    r.memory_size = hv->mem_bytes - low;
    r.userspace_addr = (uintptr_t)(hv->mem + low);
    if (ioctl(hv->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
        hv_log("KVM_SET_USER_MEMORY_REGION (above 4 GiB): %m");
        return -1;
    }
    return 0;
}

static int vm_ports(struct hv *hv)
{
    for (size_t i = 0; i < sizeof(hv_ports) / sizeof(hv_ports[0]); i++) {
        unsigned int p = hv_ports[i];
        struct hv_port *port = &hv->ports[p];
        struct kvm_irqfd irqfd = {.gsi = XTK_PORT_GSI(p)};
        struct kvm_ioeventfd io = {
            .addr = XTK_PORT_DOORBELL(p),
            .len = 4,
        };

        port->to_guest = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        port->from_guest = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (port->to_guest < 0 || port->from_guest < 0) {
            hv_log("eventfd: %m");
            return -1;
        }
        irqfd.fd = (uint32_t)port->to_guest;
        io.fd = port->from_guest;
        if (ioctl(hv->vm_fd, KVM_IRQFD, &irqfd) < 0 ||
            ioctl(hv->vm_fd, KVM_IOEVENTFD, &io) < 0) {
            hv_log("port %u: KVM_IRQFD/KVM_IOEVENTFD: %m", p);
            return -1;
        }
        hv->port_mask |= 1u << p;
    }
    return 0;
}

/*
 * The ports the guest takes are routed as MSIs (its vector on vCPU 0,
 * fixed, edge: what the guest programs the IOAPIC's pin 16+p with), the
 * rest of the GSIs as KVM's default routing has them (the PICs and the
 * IOAPIC).  An irqfd on an IOAPIC pin is injected by a kernel worker
 * (KVM injects only MSIs in the eventfd's wake-up), a thread that must
 * get a CPU among the vCPU threads: 25-35 us a notification here, a
 * scheduler tick at worst.  As an MSI the toolstack's write of the
 * eventfd delivers it.  XTK_HV_PORT_ROUTE=ioapic keeps the IOAPIC's.
 */
static int vm_route_ports(struct hv *hv)
{
    const char *want = getenv("XTK_HV_PORT_ROUTE");
    union {
        struct kvm_irq_routing r;
        char raw_[sizeof(struct kvm_irq_routing) +
                  40 * sizeof(struct kvm_irq_routing_entry)];
    } t;
    struct kvm_irq_routing_entry *ents = t.r.entries;
    unsigned int n = 0;

    if (want && !strcmp(want, "ioapic"))
        return 0;
    memset(&t, 0, sizeof(t));
    for (uint32_t gsi = 0; gsi < 24; gsi++) {
        struct kvm_irq_routing_entry *e = &ents[n++];
        int msi = 0;

        for (size_t i = 0; i < sizeof(hv_ports_in) / sizeof(hv_ports_in[0]);
             i++) {
            if (XTK_PORT_GSI(hv_ports_in[i]) != gsi)
                continue;
            e->gsi = gsi;
            e->type = KVM_IRQ_ROUTING_MSI;
            e->u.msi.address_lo = 0xfee00000u; /* APIC ID 0, physical */
            e->u.msi.data = XTK_PORT_VECTOR(hv_ports_in[i]); /* fixed, edge */
            msi = 1;
        }
        if (msi)
            continue;
        e->gsi = gsi;
        e->type = KVM_IRQ_ROUTING_IRQCHIP;
        e->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
        e->u.irqchip.pin = gsi;
        if (gsi < 16) {
            e = &ents[n++];
            e->gsi = gsi;
            e->type = KVM_IRQ_ROUTING_IRQCHIP;
            e->u.irqchip.irqchip =
                gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
            e->u.irqchip.pin = gsi % 8;
        }
    }
    t.r.nr = n;
    if (ioctl(hv->vm_fd, KVM_SET_GSI_ROUTING, &t.r) < 0) {
        hv_log("KVM_SET_GSI_ROUTING: %m");
        return -1;
    }
    return 0;
}

/* The host's CPUID for our vCPUs, without cmpxchg16b (kvm-pvm cannot
 * emulate it, and a guest that sees it may use it). */
static int vm_cpuid(struct hv *hv)
{
    for (unsigned int n = 64; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c =
            calloc(1, sizeof(*c) + n * sizeof(struct kvm_cpuid_entry2));

        if (!c)
            return -1;
        c->nent = n;
        if (ioctl(hv->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
            for (unsigned int i = 0; i < c->nent; i++)
                if (c->entries[i].function == 1)
                    c->entries[i].ecx &= ~(1u << 13);
            hv->cpuid = c;
            return 0;
        }
        free(c);
        if (errno != E2BIG) {
            hv_log("KVM_GET_SUPPORTED_CPUID: %m");
            return -1;
        }
    }
    return -1;
}

int hv_vm_create(struct hv *hv)
{
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    int r;

    hv->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (hv->kvm_fd < 0) {
        hv_log("/dev/kvm: %m");
        return -1;
    }
    if (ioctl(hv->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
        hv_log("/dev/kvm: unexpected API version");
        return -1;
    }
    hv->vm_fd = ioctl(hv->kvm_fd, KVM_CREATE_VM, 0);
    if (hv->vm_fd < 0) {
        hv_log("KVM_CREATE_VM: %m");
        return -1;
    }
    r = ioctl(hv->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (r <= 0) {
        hv_log("KVM_GET_VCPU_MMAP_SIZE: %m");
        return -1;
    }
    hv->run_size = (size_t)r;
    r = ioctl(hv->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
    hv->xsave_size = r > (int)sizeof(struct kvm_xsave)
                         ? (size_t)r
                         : sizeof(struct kvm_xsave);

    /* Sealed at its size: whoever gets the fd (toolstack, store) cannot
     * shrink guest RAM under the VM. */
    hv->mem_fd = memfd_create("xtk-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (hv->mem_fd < 0 || ftruncate(hv->mem_fd, (off_t)hv->mem_bytes) < 0 ||
        fcntl(hv->mem_fd, F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        hv_log("guest RAM memfd: %m");
        return -1;
    }
    hv->mem = mmap(NULL, hv->mem_bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
                   hv->mem_fd, 0);
    if (hv->mem == MAP_FAILED) {
        hv->mem = NULL;
        hv_log("mmap guest RAM: %m");
        return -1;
    }
    madvise(hv->mem, hv->mem_bytes, MADV_DONTDUMP);

    hv->bitmap_bytes = (size_t)((hv->nr_pages + 63) / 64 * 8);
    hv->bitmap_fd = memfd_create("xtk-dirty-bitmap", MFD_CLOEXEC);
    if (hv->bitmap_fd < 0 ||
        ftruncate(hv->bitmap_fd, (off_t)hv->bitmap_bytes) < 0) {
        hv_log("bitmap memfd: %m");
        return -1;
    }
    hv->bitmap = mmap(NULL, hv->bitmap_bytes, PROT_READ | PROT_WRITE,
                      MAP_SHARED, hv->bitmap_fd, 0);
    if (hv->bitmap == MAP_FAILED) {
        hv->bitmap = NULL;
        hv_log("mmap bitmap: %m");
        return -1;
    }

    if (ioctl(hv->vm_fd, KVM_SET_TSS_ADDR, TSS_ADDR) < 0) {
        hv_log("KVM_SET_TSS_ADDR: %m");
        return -1;
    }
    uint64_t idmap = IDENTITY_MAP_ADDR;
    if (ioctl(hv->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
        hv_log("KVM_SET_IDENTITY_MAP_ADDR: %m (ignored)");
    if (vm_memory(hv, 0) < 0)
        return -1;
    if (ioctl(hv->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 ||
        ioctl(hv->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        hv_log("KVM_CREATE_IRQCHIP/PIT2: %m");
        return -1;
    }
    if (vm_ports(hv) < 0 || vm_route_ports(hv) < 0 || vm_cpuid(hv) < 0)
        return -1;
    return 0;
}

/* ---- the guest image ------------------------------------------------ */

static int load_elf(struct hv *hv, const uint8_t *img, size_t size)
{
    const Elf64_Ehdr *eh = (const void *)img;
    uint64_t low = xtk_guest_low_bytes(hv->mem_bytes); /* GPA = offset */
    int loaded = 0;

    if (size < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) ||
        eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_machine != EM_X86_64 ||
        eh->e_type != ET_EXEC || eh->e_phentsize != sizeof(Elf64_Phdr) ||
        eh->e_phoff > size ||
        (size - eh->e_phoff) / sizeof(Elf64_Phdr) < eh->e_phnum) {
        hv_log("%s: not an x86-64 ELF executable", hv->opt.kernel);
        errno = ENOEXEC;
        return -1;
    }
    for (unsigned int i = 0; i < eh->e_phnum; i++) {
        Elf64_Phdr ph;

        memcpy(&ph, img + eh->e_phoff + i * sizeof(ph), sizeof(ph));
        if (ph.p_type != PT_LOAD)
            continue;
        if (ph.p_filesz > ph.p_memsz || ph.p_offset > size ||
            size - ph.p_offset < ph.p_filesz ||
            ph.p_paddr < XTK_GUEST_IMAGE_GPA || ph.p_memsz > low ||
            ph.p_paddr > low - ph.p_memsz) {
            hv_log("%s: segment %u does not fit in guest memory",
                   hv->opt.kernel, i);
            errno = ENOEXEC;
            return -1;
        }
        memcpy(hv->mem + ph.p_paddr, img + ph.p_offset, ph.p_filesz);
        memset(hv->mem + ph.p_paddr + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
        loaded = 1;
    }
    if (!loaded || eh->e_entry < XTK_GUEST_IMAGE_GPA || eh->e_entry >= low) {
        hv_log("%s: nothing to load, or the entry is outside RAM",
               hv->opt.kernel);
        errno = ENOEXEC;
        return -1;
    }
    hv->entry = eh->e_entry;
    return 0;
}

/*
 * Identity page tables for the first 4 GiB and the RAM above it (abi.h),
 * user-accessible (the guest runs its workloads in ring 3: kvm-pvm runs
 * guest user mode natively and emulates guest ring 0), and a flat GDT.
 */
static void build_tables(struct hv *hv)
{
    uint64_t *pml4 = (uint64_t *)(hv->mem + XTK_GUEST_PT_GPA);
    uint64_t *pdpt = pml4 + 512;
    uint64_t *pd = pml4 + 1024;
    uint64_t *gdt = (uint64_t *)(hv->mem + XTK_GUEST_GDT_GPA);
    uint64_t top = xtk_guest_ram_gpa(hv->mem_bytes - 1) + 1;
    uint64_t gib =
        top > XTK_GUEST_HIGH_GPA ? (top + (1ull << 30) - 1) >> 30 : 4;

    pml4[0] = (XTK_GUEST_PT_GPA + 0x1000) | 0x7;
    for (uint64_t i = 0; i < gib; i++)
        pdpt[i] = (XTK_GUEST_PT_GPA + 0x2000 + 0x1000 * i) | 0x7;
    for (uint64_t i = 0; i < gib * 512; i++) {
        pd[i] = (i << 21) | 0x87; /* present, writable, user, 2 MiB */
        if ((i << 21) >= XTK_GUEST_LOW_MAX && (i << 21) < XTK_GUEST_HIGH_GPA)
            pd[i] |= 0x18; /* the MMIO hole: uncached */
    }
    gdt[0] = 0;
    gdt[1] = 0x00af9b000000ffffull; /* 0x08: 64-bit code */
    gdt[2] = 0x00cf93000000ffffull; /* 0x10: data */
}

static void fill_boot_page(struct hv *hv)
{
    struct xtk_guest_boot *b = (void *)(hv->mem + XTK_GUEST_BOOT_GPA);
    size_t n = strlen(hv->opt.cmdline);

    memset(b, 0, sizeof(*b));
    b->magic = XTK_GUEST_BOOT_MAGIC;
    b->version = XTK_GUEST_BOOT_VERSION;
    b->flags = (hv->store_fd >= 0 ? XTK_BOOT_STORE : 0) | hv_vm_offers();
    b->mem_bytes = hv->mem_bytes;
    b->nr_vcpus = hv->nr_vcpus;
    int khz = ioctl(hv->vm_fd, KVM_GET_TSC_KHZ, 0);
    b->tsc_khz = khz > 0 ? (uint32_t)khz : 0;
    b->domid = hv->domid;
    if (n >= sizeof(b->cmdline))
        n = sizeof(b->cmdline) - 1;
    memcpy(b->cmdline, hv->opt.cmdline, n);
}

int hv_vm_load_guest(struct hv *hv)
{
    int fd = open(hv->opt.kernel, O_RDONLY | O_CLOEXEC);
    struct stat st;
    uint8_t *img;
    int r = -1;

    if (fd < 0) {
        hv_log("%s: %m", hv->opt.kernel);
        return -1;
    }
    if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > GUEST_IMAGE_MAX) {
        hv_log("%s: not a guest image (size)", hv->opt.kernel);
        errno = ENOEXEC;
        goto err_fd;
    }
    img = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (img == MAP_FAILED) {
        hv_log("%s: mmap: %m", hv->opt.kernel);
        goto err_fd;
    }
    r = load_elf(hv, img, (size_t)st.st_size);
    munmap(img, (size_t)st.st_size);
    if (r == 0) {
        build_tables(hv);
        fill_boot_page(hv);
    }
err_fd:
    close(fd);
    return r;
}

/* ---- vCPUs ---------------------------------------------------------- */

/* The MSRs KVM lists that this vCPU can read (the others would make a
 * save fail). */
static int probe_msrs(struct hv *hv, int vcpu_fd)
{
    union {
        struct kvm_msr_list l;
        char raw[sizeof(struct kvm_msr_list) + HV_MAX_MSRS * sizeof(uint32_t)];
    } list = {.l.nmsrs = HV_MAX_MSRS};
    static HV_MSRS(HV_MAX_MSRS) all;
    unsigned int n, at = 0;
    int deadline = -1;

    if (ioctl(hv->kvm_fd, KVM_GET_MSR_INDEX_LIST, &list) < 0) {
        hv_log("KVM_GET_MSR_INDEX_LIST: %m");
        return -1;
    }
    n = list.l.nmsrs < HV_MAX_MSRS - 2 ? list.l.nmsrs : HV_MAX_MSRS - 2;
    memset(&all, 0, sizeof(all));
    for (unsigned int i = 0; i < n; i++)
        all.m.entries[i].index = list.l.indices[i];
    hv->nr_msrs = 0;
    /* All at once: KVM reads them in order and stops at the first it
     * cannot, which is then left out (one ioctl each took ~0.5 ms of
     * every domain's creation). */
    while (at < n) {
        struct kvm_msr_entry *e = &all.m.entries[at];
        int r;

        memmove(&all.m.entries[0], e, (n - at) * sizeof(*e));
        n -= at;
        at = 0;
        all.m.nmsrs = n;
        r = ioctl(vcpu_fd, KVM_GET_MSRS, &all);
        if (r < 0) {
            hv_log("KVM_GET_MSRS: %m");
            return -1;
        }
        for (unsigned int i = 0; i < (unsigned int)r; i++) {
            uint32_t idx = all.m.entries[i].index;

            if (idx == MSR_IA32_TSC_DEADLINE)
                deadline = 1;
            else
                hv->msrs[hv->nr_msrs++] = idx;
        }
        at = (unsigned int)r + 1; /* past the one that failed */
    }
    /* Not listed by KVM but set at boot, so saved too. */
    hv->msrs[hv->nr_msrs++] = MSR_MTRR_DEF_TYPE;
    /* The TSC deadline goes last: after the TSC and the LAPIC. */
    if (deadline > 0)
        hv->msrs[hv->nr_msrs++] = MSR_IA32_TSC_DEADLINE;
    return 0;
}

static int vcpu_set_cpuid(struct hv *hv, struct hv_vcpu *v)
{
    struct kvm_cpuid2 *c = hv->cpuid;
    size_t sz = sizeof(*c) + c->nent * sizeof(c->entries[0]);
    struct kvm_cpuid2 *mine = malloc(sz);
    int r;

    if (!mine)
        return -1;
    memcpy(mine, c, sz);
    for (unsigned int i = 0; i < mine->nent; i++) {
        struct kvm_cpuid_entry2 *e = &mine->entries[i];
        if (e->function == 1)
            e->ebx = (e->ebx & 0x00ffffff) | (v->index << 24);
        if (e->function == 0xb || e->function == 0x1f)
            e->edx = v->index;
    }
    v->cpuid_len = 0; /* state.c's copy, if any, is not this table */
    r = ioctl(v->fd, KVM_SET_CPUID2, mine);
    if (r < 0)
        hv_log("vCPU %u: KVM_SET_CPUID2: %m", v->index);
    free(mine);
    return r;
}

/* Long mode, flat segments, our page tables; rdi = index, rsi = boot page. */
static int vcpu_boot_state(struct hv *hv, struct hv_vcpu *v)
{
    struct kvm_sregs s;
    struct kvm_regs regs = {
        .rip = hv->entry,
        .rflags = 0x2,
        .rdi = v->index,
        .rsi = XTK_GUEST_BOOT_GPA,
    };
    struct kvm_segment code = {
        .base = 0,
        .limit = 0xffffffff,
        .selector = 0x08,
        .type = 11,
        .present = 1,
        .dpl = 0,
        .db = 0,
        .s = 1,
        .l = 1,
        .g = 1,
    };
    struct kvm_segment data = code;
    struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};
    struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
    /* Fast strings; MTRRs on with write-back as the default type, as a
     * BIOS leaves them (KVM otherwise treats RAM as uncached). */
    HV_MSRS(2) msrs = {.m.nmsrs = 2};
    struct kvm_lapic_state lapic;

    msrs.m.entries[0] =
        (struct kvm_msr_entry){.index = MSR_IA32_MISC_ENABLE, .data = 1};
    msrs.m.entries[1] =
        (struct kvm_msr_entry){.index = MSR_MTRR_DEF_TYPE, .data = 0xc06};
    if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
        goto err;
    data.selector = 0x10;
    data.type = 3;
    data.l = 0;
    data.db = 1;
    s.cs = code;
    s.ds = s.es = s.fs = s.gs = s.ss = data;
    s.tr = (struct kvm_segment){.base = 0,
                                .limit = 0xffff,
                                .selector = 0x18,
                                .type = 11,
                                .present = 1,
                                .s = 0};
    s.ldt = (struct kvm_segment){.selector = 0, .type = 2, .present = 1};
    s.gdt.base = XTK_GUEST_GDT_GPA;
    s.gdt.limit = 3 * 8 - 1;
    s.idt.base = 0;
    s.idt.limit = 0;
    s.cr0 = 0x80050033; /* PG WP NE ET MP PE */
    s.cr3 = XTK_GUEST_PT_GPA;
    s.cr4 = 0x620;  /* OSXMMEXCPT OSFXSR PAE */
    s.efer = 0x500; /* LMA LME */
    if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0 ||
        ioctl(v->fd, KVM_SET_REGS, &regs) < 0 ||
        ioctl(v->fd, KVM_SET_FPU, &fpu) < 0 ||
        ioctl(v->fd, KVM_SET_MSRS, &msrs) != 2)
        goto err;
    /* LINT0 ExtINT, LINT1 NMI, as a BIOS leaves them. */
    if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
        goto err;
    uint32_t *lint0 = (uint32_t *)(lapic.regs + 0x350);
    uint32_t *lint1 = (uint32_t *)(lapic.regs + 0x360);
    *lint0 = (*lint0 & ~0x700u & ~0x10000u) | 0x700u;
    *lint1 = (*lint1 & ~0x700u & ~0x10000u) | 0x400u;
    if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0 ||
        ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
        goto err;
    return 0;
err:
    hv_log("vCPU %u: boot state: %m", v->index);
    return -1;
}

/*
 * A vCPU has stopped (parked, or yielded; under hv->lock): whoever waits
 * on parked_cond is told, if what it waits for may have come: every vCPU
 * stopped (a pause, hv_vm_wait_parked), or any change (a waiter for the
 * vCPUs to run, run_waiters).  Not at each vCPU's park: the control
 * thread, real-time, woken by each of the held vCPUs that a STOP found
 * still on their way to their park, took the CPU from each one in turn,
 * which then had to run again to let go of the lock (traced: ~200 us of
 * such switches for three vCPUs of a spinning 8-vCPU guest).
 */
static void stopped_changed(struct hv *hv)
{
    if (hv->run_waiters || hv_vm_stopped(hv) >= hv->nr_vcpus)
        pthread_cond_broadcast(&hv->parked_cond);
}

static void vcpu_crash(struct hv_vcpu *v, const char *why)
{
    struct hv *hv = v->hv;
    struct kvm_regs regs;

    if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
        hv_log("vCPU %u stopped: %s (rip %#llx)", v->index, why, regs.rip);
    else
        hv_log("vCPU %u stopped: %s", v->index, why);
    pthread_mutex_lock(&hv->lock);
    v->crashed = 1;
    hv->crashed = 1;
    pthread_mutex_unlock(&hv->lock);
}

static void vcpu_io(struct hv_vcpu *v)
{
    struct kvm_run *run = v->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    size_t n = (size_t)run->io.size * run->io.count;

    if (run->io.direction == KVM_EXIT_IO_OUT) {
        if (run->io.port == XTK_GUEST_DEBUG_PORT || run->io.port == 0x3f8)
            hv_output(v->hv, HV_OUT_CONSOLE, (const char *)data, n);
        return;
    }
    /* Reads: a serial line-status register that is always ready, else
     * nothing there. */
    memset(data, run->io.port == 0x3fd ? 0x60 : 0xff, n);
}

static void vcpu_exit(struct hv_vcpu *v)
{
    struct kvm_run *run = v->run;
    char why[96];

    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        vcpu_io(v);
        v->exit_pending = 1;
        return;
    case KVM_EXIT_MMIO:
        /* But for the doorbells (4-byte stores, one piece: KVM has moved
         * past a store when it exits for it, and the suspend's yield and
         * "suspended" lie on its critical path). */
        v->exit_pending = !run->mmio.is_write ||
                          (run->mmio.phys_addr != XTK_GUEST_YIELD_GPA &&
                           run->mmio.phys_addr != XTK_GUEST_SUSPENDED_GPA &&
                           run->mmio.phys_addr != XTK_GUEST_YIELD_TO_GPA);
        if (run->mmio.is_write &&
            (run->mmio.phys_addr == XTK_GUEST_YIELD_GPA ||
             run->mmio.phys_addr == XTK_GUEST_SUSPENDED_GPA)) {
            uint32_t nr;
            memcpy(&nr, run->mmio.data, sizeof(nr));
            pthread_mutex_lock(&v->hv->lock);
            /* Not for a suspend already resumed (abi.h). */
            if ((int32_t)(nr - v->hv->resumed_nr) > 0) {
                v->yielded = 1;
                /* A pause waiting for it has it now (hv_vm_stopped). */
                stopped_changed(v->hv);
            }
            pthread_mutex_unlock(&v->hv->lock);
            hv_sched_rt_unboost(v); /* the request is taken */
            /* "Suspended" too: told once the vCPU is given back, as the
             * suspend port's doorbell would (abi.h). */
            if (run->mmio.phys_addr == XTK_GUEST_SUSPENDED_GPA) {
                uint64_t one = 1;

                if (write(v->hv->ports[XTK_PORT_SUSPEND].from_guest, &one,
                          sizeof(one)) < 0)
                    hv_log("vCPU %u: suspend port: %m", v->index);
            }
        } else if (run->mmio.is_write &&
                   run->mmio.phys_addr == XTK_GUEST_YIELD_TO_GPA) {
            uint32_t target;
            memcpy(&target, run->mmio.data, sizeof(target));
            hv_sched_yield_to(v->hv, v, target);
        } else if (!run->mmio.is_write) {
            memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
        }
        return;
    case KVM_EXIT_HLT:
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
        return;
    case KVM_EXIT_SHUTDOWN:
        vcpu_crash(v, "triple fault");
        return;
    case KVM_EXIT_INTERNAL_ERROR:
        snprintf(why, sizeof(why), "KVM internal error, suberror %u",
                 run->internal.suberror);
        vcpu_crash(v, why);
        return;
    case KVM_EXIT_FAIL_ENTRY:
        snprintf(
            why, sizeof(why), "entry failed, reason %#llx",
            (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        vcpu_crash(v, why);
        return;
    default:
        snprintf(why, sizeof(why), "unhandled exit %u", run->exit_reason);
        vcpu_crash(v, why);
        return;
    }
}

/*
 * The boot page's mask of vCPUs let go of their park that have not run
 * since (abi.h), if the guest is the built-in one (another guest's page
 * is its own memory).  A thread clears its bit as it wakes, whether it
 * leaves its park or finds it must stay.
 */
static uint64_t *waking_word(struct hv *hv)
{
    struct xtk_guest_boot *b = (void *)(hv->mem + XTK_GUEST_BOOT_GPA);

    return hv->mem && b->magic == XTK_GUEST_BOOT_MAGIC ? &b->waking : NULL;
}

int hv_vm_must_park(const struct hv *hv)
{
    return hv->pause_sticky || hv->pause_holds || hv->empty || hv->quit;
}

/* Its thread is to park (under hv->lock). */
static int vcpu_stops(const struct hv *hv, const struct hv_vcpu *v)
{
    return hv_vm_must_park(hv) || v->crashed || v->yielded ||
           (hv->aps_held && v->index);
}

/* A string instruction's port I/O comes a page at most per exit. */
#define COMPLETE_MAX 4096

/* Out of a KVM_RUN (hv_vcpu.synced, out_seq).  Every KVM_RUN, even one
 * cut short, leaves the sync regs. */
static void left_run(struct hv_vcpu *v)
{
    v->synced = v->hv->sync_regs;
    v->out_seq = __atomic_add_fetch(&v->hv->out_seq, 1, __ATOMIC_RELAXED);
}

/*
 * Before a vCPU parks after port I/O or MMIO: KVM finishes such an exit
 * (an IN's or a read's value into its register, RIP past a port write)
 * only in the next KVM_RUN, and keeps what is left to do where no GET
 * ioctl reads it, so state taken now would have the vCPU do a write it
 * has done (KVM's API: userspace must enter KVM_RUN with immediate_exit
 * before it saves the state; QEMU does the same).  immediate_exit lets
 * KVM finish it and return without running the guest; a string
 * instruction may exit for its next part.  Costs a KVM_RUN (a few us)
 * only where a stop finds the vCPU just out of such an exit.
 */
static void complete_exit(struct hv_vcpu *v)
{
    for (int n = 0; v->exit_pending && n < COMPLETE_MAX; n++) {
        int r;

        v->exit_pending = 0;
        __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
        r = ioctl(v->fd, KVM_RUN, 0);
        left_run(v);
        if (r == 0) {
            vcpu_exit(v); /* the next part of a string instruction */
        } else if (errno != EINTR && errno != EAGAIN) {
            char why[64];

            snprintf(why, sizeof(why), "KVM_RUN: %s", strerror(errno));
            vcpu_crash(v, why);
            return;
        }
    }
    if (v->exit_pending)
        hv_log("vCPU %u: an I/O instruction still unfinished after %d "
               "exits: its state is taken at it",
               v->index, COMPLETE_MAX);
    /* A kick meanwhile: the lock, taken next, shows why. */
    __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
}

/*
 * From how many vCPUs the held ones take their unchanging state at their
 * park (hv_state_prefetch).  Measured on 2 cores, 100 checkpoints each,
 * old and new alternated: the STOP takes ~20 us less a held vCPU, but
 * their threads, woken from a halt, take the CPU from vCPU 0 while it
 * takes the request (+30-85 us to its acknowledgement, idle guests):
 * 2 idle vCPUs came out ~50 us slower at p50, 4 spinning ones 20-120 us
 * faster, 8 idle or spinning ones 100-180 us faster.
 */
#define PREFETCH_VCPUS 4

static void *vcpu_thread(void *arg)
{
    struct hv_vcpu *v = arg;
    struct hv *hv = v->hv;
    uint64_t *w;
    sigset_t set;
    char name[16];
    int r;

    /* As top -H and perf show it (QEMU: "CPU 0/KVM"). */
    snprintf(name, sizeof(name), "xtk-hv-vcpu%u", v->index);
    pthread_setname_np(pthread_self(), name);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    /* The guest runs once every thread is set up (its scheduling pages
     * come later: hv_sched_start()). */
    hv_sched_thread_init(v);
    pthread_mutex_lock(&hv->lock);
    hv->sched_set_up++;
    pthread_cond_broadcast(&hv->parked_cond);
    while ((hv->sched_set_up < hv->nr_vcpus || !hv->sched_told) && !hv->quit)
        pthread_cond_wait(&hv->run_cond, &hv->lock);
    pthread_mutex_unlock(&hv->lock);
    for (;;) {
        pthread_mutex_lock(&hv->lock);
        if (v->exit_pending && vcpu_stops(hv, v) && !v->crashed) {
            pthread_mutex_unlock(&hv->lock);
            complete_exit(v);
            pthread_mutex_lock(&hv->lock);
        }
        if (hv->aps_held && v->index && hv->nr_vcpus >= PREFETCH_VCPUS &&
            !v->pf_valid && !hv_vm_must_park(hv) && !v->crashed &&
            !v->yielded) {
            /* Held by a suspend request: what of its state cannot change
             * while it is parked is taken now, by this thread, off the
             * path of the STOP that follows (~20 us of ioctls a vCPU). */
            int ok;

            pthread_mutex_unlock(&hv->lock);
            ok = hv_state_prefetch(hv, v) == 0;
            pthread_mutex_lock(&hv->lock);
            v->pf_valid = ok;
        }
        if (vcpu_stops(hv, v)) {
            while (vcpu_stops(hv, v)) {
                if (hv->quit) {
                    pthread_mutex_unlock(&hv->lock);
                    return NULL;
                }
                hv->parked++;
                v->parked = 1;
                stopped_changed(hv);
                pthread_cond_wait(&hv->run_cond, &hv->lock);
                if ((w = waking_word(hv)))
                    __atomic_and_fetch(w, ~(1ull << v->index),
                                       __ATOMIC_RELEASE);
                v->parked = 0;
                hv->parked--;
            }
            /* A kick that found this thread parked is stale: it must not
             * cost the next KVM_RUN an exit.  Kicks are sent under the
             * lock, so none can be lost here. */
            __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
            v->run_ns = hv_now_ns();
            if (hv->run_waiters && (hv->run_wait_mask & (1u << v->index))) {
                hv->run_wait_mask &= ~(1u << v->index);
                if (!hv->run_wait_mask)
                    pthread_cond_broadcast(&hv->parked_cond);
            }
        }
        v->pf_valid = 0; /* it runs: what it kept goes stale */
        v->kicked = 0;   /* a kick from now on finds it on its way in */
        pthread_mutex_unlock(&hv->lock);
        v->exit_pending = 0; /* this KVM_RUN finishes it */

        r = ioctl(v->fd, KVM_RUN, 0);
        left_run(v);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
                continue;
            }
            char why[64];
            snprintf(why, sizeof(why), "KVM_RUN: %s", strerror(errno));
            vcpu_crash(v, why);
            continue;
        }
        vcpu_exit(v);
    }
}

/*
 * Out of KVM_RUN: immediate_exit for a thread about to enter it, a signal
 * for one inside.  tgkill(2) itself where the thread's id is known: one
 * system call, where pthread_kill() makes four (it blocks and restores
 * the caller's signals around it, and asks for the pid), and a hold or a
 * STOP of an 8-vCPU guest sends seven of them.  The vCPU threads live
 * until the domain is destroyed.
 */
static void kick(struct hv_vcpu *v)
{
    static pid_t pid;
    uint32_t tid = __atomic_load_n(&v->tid, __ATOMIC_ACQUIRE);

    v->kicked = 1;
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    if (!pid)
        pid = getpid();
    if (!tid || syscall(SYS_tgkill, pid, (pid_t)tid, SIGUSR1) < 0)
        pthread_kill(v->thread, SIGUSR1);
}

/* Every vCPU but vCPU 0 out of KVM_RUN and parked, without waiting for
 * them (under hv->lock; hv->aps_held set). */
void hv_vm_kick_aps(struct hv *hv)
{
    for (unsigned int i = 1; i < hv->nr_vcpus; i++)
        if (hv->vcpus[i].thread_started && !hv->vcpus[i].parked &&
            !hv->vcpus[i].kicked)
            kick(&hv->vcpus[i]);
}

/*
 * vCPU v is stopped for a pause (under hv->lock): parked, or given back
 * by the guest (its yield): out of KVM_RUN, its thread parks without
 * entering it again for as long as it stays yielded (until the domain is
 * told to run), its state and memory final.  A pause need not wait for
 * that thread to get to its park: vCPU 0 yields right after it says
 * "suspended", and the toolstack, woken by that on the same CPU, took it
 * from vCPU 0's thread before it parked (traced: the STOP then waited
 * ~50 us for it).
 */
static int vcpu_stopped(const struct hv_vcpu *v)
{
    return v->parked || v->yielded;
}

unsigned int hv_vm_stopped(const struct hv *hv)
{
    unsigned int n = 0;

    for (unsigned int i = 0; i < hv->nr_vcpus; i++)
        n += vcpu_stopped(&hv->vcpus[i]);
    return n;
}

void hv_vm_wait_parked(struct hv *hv)
{
    /* All stopped already (the state ops on a paused domain): a kick
     * would only wake each thread for nothing. */
    if (hv_vm_stopped(hv) >= hv->nr_vcpus)
        return;
    /* Only the ones not stopped: a parked one (the vCPUs a suspend request
     * held, a STOP later) stays so under the lock, and a signal would only
     * wake it (a system call here and a wake-up there, each, on the
     * STOP's critical path: 7 of them for an 8-vCPU guest); nor one the
     * hold kicked that has not got to its park yet (v->kicked). */
    for (unsigned int i = 0; i < hv->nr_vcpus; i++)
        if (hv->vcpus[i].thread_started && !vcpu_stopped(&hv->vcpus[i]) &&
            !hv->vcpus[i].kicked)
            kick(&hv->vcpus[i]);
    while (hv_vm_stopped(hv) < hv->nr_vcpus)
        pthread_cond_wait(&hv->parked_cond, &hv->lock);
}

/* The domain may run: every vCPU, yielded and held ones too (under
 * hv->lock). */
void hv_vm_wake(struct hv *hv)
{
    uint64_t *w = waking_word(hv);

    hv->aps_held = 0;
    for (unsigned int i = 0; i < hv->nr_vcpus; i++)
        hv->vcpus[i].yielded = 0;
    if (w)
        __atomic_store_n(w, hv_vm_parked_mask(hv), __ATOMIC_RELEASE);
    pthread_cond_broadcast(&hv->run_cond);
}

void hv_vm_mark_waking(struct hv *hv, uint32_t mask)
{
    uint64_t *w = waking_word(hv);

    if (w && mask)
        __atomic_or_fetch(w, (uint64_t)mask, __ATOMIC_RELEASE);
}

int hv_vm_waking(struct hv *hv, unsigned int index)
{
    uint64_t *w = waking_word(hv);

    return w && ((__atomic_load_n(w, __ATOMIC_ACQUIRE) >> index) & 1);
}

uint32_t hv_vm_parked_mask(const struct hv *hv)
{
    uint32_t mask = 0;

    for (unsigned int i = 0; i < hv->nr_vcpus; i++)
        if (hv->vcpus[i].parked && !hv->vcpus[i].crashed)
            mask |= 1u << i;
    return mask;
}

uint64_t hv_vm_wait_running(struct hv *hv, uint32_t mask, uint64_t since)
{
    struct timespec until;
    uint64_t last = 0;

    clock_gettime(CLOCK_REALTIME, &until); /* the cond's clock */
    until.tv_sec += 1;
    hv->run_waiters++;
    /* Woken when the last of them leaves its park (or one stops): not at
     * each, which had this real-time thread take a CPU from the vCPU
     * threads as each of them left (an idle 8-vCPU guest's checkpoint,
     * staged to its last vCPU out of its park, 278 -> 143 us at p50,
     * 3 x 100 checkpoints alternated). */
    hv->run_wait_mask = 0;
    for (unsigned int i = 0; i < hv->nr_vcpus; i++)
        if ((mask & (1u << i)) && hv->vcpus[i].run_ns < since)
            hv->run_wait_mask |= 1u << i;
    for (unsigned int i = 0; i < hv->nr_vcpus; i++) {
        struct hv_vcpu *v = &hv->vcpus[i];

        if (!(mask & (1u << i)))
            continue;
        while (v->run_ns < since && !v->crashed && !hv_vm_must_park(hv))
            if (pthread_cond_timedwait(&hv->parked_cond, &hv->lock, &until) ==
                ETIMEDOUT)
                break;
        if (v->run_ns < since) {
            last = 0;
            break;
        }
        if (v->run_ns > last)
            last = v->run_ns;
    }
    hv->run_waiters--;
    hv->run_wait_mask = 0;
    return last;
}

/*
 * The boot flags of what this xtk-hv offers the guest besides the store
 * and the scheduling pages: XTK_BOOT_SUSPENDED_EXIT, unless
 * XTK_HV_SUSPENDED_EXIT=0 (a test: the guest's two writes, as against an
 * older xtk-hv).
 */
uint32_t hv_vm_offers(void)
{
    const char *e = getenv("XTK_HV_SUSPENDED_EXIT");

    return e && !strcmp(e, "0") ? 0 : XTK_BOOT_SUSPENDED_EXIT;
}

void hv_vm_set_sched_flag(struct hv *hv)
{
    struct xtk_guest_boot *b = (void *)(hv->mem + XTK_GUEST_BOOT_GPA);

    if (b->magic != XTK_GUEST_BOOT_MAGIC)
        return;
    if (hv->sched_published == hv->nr_vcpus)
        __atomic_or_fetch(&b->flags, XTK_BOOT_SCHED, __ATOMIC_RELEASE);
    else
        __atomic_and_fetch(&b->flags, ~XTK_BOOT_SCHED, __ATOMIC_RELEASE);
}

static void sigusr1(int sig)
{
}

/*
 * The main thread answers the toolstack (the hold of the other vCPUs and
 * the suspend request, STOP, RESUME): it must get a CPU the moment a
 * request comes, also when the guest's vCPU threads fill every core (an
 * overcommitted SMP guest, issue 15).  At nice -5 it still waited behind
 * them for up to 15 ms (perf sched latency, 8 spinning vCPUs on 2 cores):
 * a woken thread that does not preempt waits for the running one's
 * slice to end at a tick.  So it runs at SCHED_FIFO, priority 2
 * (HV_RT_CONTROL: above vCPU 0 made real-time for a late request, which
 * it ends): it preempts the vCPUs at once, and it sleeps
 * between requests, each a bounded piece of work (the kernel's real-time
 * throttling bounds it besides).  XTK_HV_CONTROL_SCHED=other keeps it a
 * normal thread (at nice -5), as does a host that does not allow it.
 * Set after the vCPU threads and sched.c's exist, and reset on fork: no
 * other thread or child inherits it.
 */
static void control_sched(struct hv *hv)
{
    const char *want = getenv("XTK_HV_CONTROL_SCHED");
    struct sched_param sp = {.sched_priority = HV_RT_CONTROL};

    if (!(want && !strcmp(want, "other")) &&
        sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) == 0) {
        hv->control_rt = 1;
        return;
    }
    if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), -5) < 0)
        hv_log("the control thread keeps its priority: %m");
}

int hv_vm_start(struct hv *hv)
{
    struct sigaction sa = {.sa_handler = sigusr1};
    int r;

    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL); /* no SA_RESTART: KVM_RUN gets EINTR */

    r = ioctl(hv->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
    hv->sync_regs = r > 0 && (r & SYNC_REGS) == SYNC_REGS;
    for (unsigned int i = 0; i < hv->nr_vcpus; i++) {
        struct hv_vcpu *v = &hv->vcpus[i];

        v->hv = hv;
        v->index = i;
        v->stats_fd = -1;
        v->fd = ioctl(hv->vm_fd, KVM_CREATE_VCPU, i);
        if (v->fd < 0) {
            hv_log("KVM_CREATE_VCPU %u: %m", i);
            return -1;
        }
        v->run = mmap(NULL, hv->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                      v->fd, 0);
        if (v->run == MAP_FAILED) {
            v->run = NULL;
            hv_log("vCPU %u: mmap kvm_run: %m", i);
            return -1;
        }
        if (vcpu_set_cpuid(hv, v) < 0)
            return -1;
        if (i == 0 && probe_msrs(hv, v->fd) < 0)
            return -1;
        /* Each vCPU ioctl costs a vcpu_load (~5-10 us under kvm-pvm): with
         * sync regs, GET_STATE reads regs, sregs and events from kvm_run. */
        if (hv->sync_regs)
            v->run->kvm_valid_regs = SYNC_REGS;
        if (!hv->empty && vcpu_boot_state(hv, v) < 0)
            return -1;
    }
    /* Threads last: they start parked if the domain is empty or paused. */
    for (unsigned int i = 0; i < hv->nr_vcpus; i++) {
        struct hv_vcpu *v = &hv->vcpus[i];
        int e = pthread_create(&v->thread, NULL, vcpu_thread, v);

        if (e) {
            errno = e;
            hv_log("vCPU thread: %m");
            return -1;
        }
        v->thread_started = 1;
    }
    /*
     * Each thread sets itself up before its first KVM_RUN (its id is what
     * its scheduling pages are opened for, on a thread of sched.c's).  A
     * guest that boots here is told before its first instruction (it
     * looks once, at boot, whether it has them); an empty domain's vCPUs
     * may run at once, and a restored guest is told once they are there
     * (it looks each time): its restore does not wait for them.
     */
    pthread_mutex_lock(&hv->lock);
    while (hv->sched_set_up < hv->nr_vcpus)
        pthread_cond_wait(&hv->parked_cond, &hv->lock);
    pthread_mutex_unlock(&hv->lock);
    if (hv_sched_start(hv) < 0) {
        pthread_mutex_lock(&hv->lock);
        hv->sched_done = 1;
        pthread_mutex_unlock(&hv->lock);
    }
    pthread_mutex_lock(&hv->lock);
    while (!hv->empty && !hv->sched_done)
        pthread_cond_wait(&hv->parked_cond, &hv->lock);
    hv_vm_set_sched_flag(hv);
    hv->sched_told = 1;
    pthread_cond_broadcast(&hv->run_cond);
    pthread_mutex_unlock(&hv->lock);
    control_sched(hv);
    hv_state_helper_start(hv); /* after: it takes the control's policy */
    return 0;
}

void hv_vm_destroy(struct hv *hv)
{
    pthread_mutex_lock(&hv->lock);
    hv->quit = 1;
    hv_vm_wake(hv);
    for (unsigned int i = 0; i < hv->nr_vcpus; i++)
        if (hv->vcpus[i].thread_started)
            kick(&hv->vcpus[i]);
    pthread_mutex_unlock(&hv->lock);
    hv_sched_stop(hv);
    hv_state_helper_stop(hv);
    /* A lazy restore's pages that never came: a vCPU waiting for one is
     * released by the end of the userfaultfd (the restore's copy gone
     * too) with a signal pending, so it leaves KVM_RUN without running a
     * guest instruction on the page it got. */
    if (hv->lazy_fd >= 0) {
        close(hv->lazy_fd);
        hv->lazy_fd = -1;
    }
    for (unsigned int i = 0; i < hv->nr_vcpus; i++) {
        struct hv_vcpu *v = &hv->vcpus[i];
        if (v->thread_started)
            pthread_join(v->thread, NULL);
        if (v->run)
            munmap(v->run, hv->run_size);
        if (v->fd >= 0)
            close(v->fd);
        free(v->pf_buf);
    }
    for (unsigned int p = 0; p <= XTK_PORT_MAX; p++) {
        if (hv->ports[p].to_guest >= 0)
            close(hv->ports[p].to_guest);
        if (hv->ports[p].from_guest >= 0)
            close(hv->ports[p].from_guest);
    }
    free(hv->cpuid);
    if (hv->bitmap)
        munmap(hv->bitmap, hv->bitmap_bytes);
    if (hv->bitmap_fd >= 0)
        close(hv->bitmap_fd);
    if (hv->mem)
        munmap(hv->mem, hv->mem_bytes);
    if (hv->mem_fd >= 0)
        close(hv->mem_fd);
    if (hv->vm_fd >= 0)
        close(hv->vm_fd);
    if (hv->kvm_fd >= 0)
        close(hv->kvm_fd);
}

/* ---- dirty log ------------------------------------------------------ */

int hv_vm_logdirty(struct hv *hv, int on)
{
    if (vm_memory(hv, on ? KVM_MEM_LOG_DIRTY_PAGES : 0) < 0)
        return -1;
    hv->logdirty = on;
    return 0;
}

/*
 * Writes the frames the guest dirtied since the last sync into the shared
 * bitmap (KVM_GET_DIRTY_LOG reads and re-protects atomically), plus the
 * pages that host-side agents write and KVM cannot see: the boot page,
 * the console ring (out_cons), the store ring (xsd-lite) and the network
 * ring (cons).
 */
int hv_vm_logdirty_sync(struct hv *hv, uint64_t *dirty)
{
    struct kvm_dirty_log log = {.slot = 0, .dirty_bitmap = hv->bitmap};
    static const uint64_t host_written[] = {
        XTK_GUEST_BOOT_GPA, XTK_GUEST_CONS_GPA, XTK_GUEST_STORE_GPA,
        XTK_GUEST_NET_GPA};
    uint64_t low = xtk_guest_low_bytes(hv->mem_bytes), n = 0;

    if (ioctl(hv->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
        hv_log("KVM_GET_DIRTY_LOG: %m");
        return -1;
    }
    /* The RAM above 4 GiB: its bits follow slot 0's (3 GiB is a whole
     * number of the bitmap's words). */
    if (hv->mem_bytes > low) {
        log.slot = HV_HIGH_SLOT;
        log.dirty_bitmap = hv->bitmap + (low >> 12) / 64;
        if (ioctl(hv->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
            hv_log("KVM_GET_DIRTY_LOG (above 4 GiB): %m");
            return -1;
        }
    }
    for (size_t i = 0; i < sizeof(host_written) / sizeof(host_written[0]);
         i++) {
        uint64_t pfn = host_written[i] >> 12;
        hv->bitmap[pfn / 64] |= 1ull << (pfn % 64);
    }
    for (size_t i = 0; i < hv->bitmap_bytes / 8; i++)
        n += (uint64_t)__builtin_popcountll(hv->bitmap[i]);
    *dirty = n;
    return 0;
}

/* ---- console and guest status --------------------------------------- */

void hv_console_emit(struct hv *hv, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hv->console[(hv->console_end + i) % HV_CONSOLE_BYTES] = s[i];
    hv->console_end += n;
    if (hv->console_log) {
        fwrite(s, 1, n, hv->console_log);
        fflush(hv->console_log);
    }
}

struct xtk_guest_status *hv_guest_status(struct hv *hv)
{
    struct xtk_guest_status *s = (void *)(hv->mem + XTK_GUEST_STATUS_GPA);

    return s->magic == XTK_GUEST_STATUS_MAGIC ? s : NULL;
}

void hv_vm_kick_suspended(struct hv *hv)
{
    struct xtk_guest_status *s = hv_guest_status(hv);
    uint64_t one = 1;

    if (s &&
        __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) == XTK_GUEST_SUSPENDED) {
        uint32_t nr = (uint32_t)s->suspends;

        /* This suspend already told to resume, the guest not out of it
         * yet: a second notification would be taken, once it runs, for
         * a new suspend request (a save that resumed twice left its
         * guest suspended for good).  The guest counts a suspend before
         * it says "suspended", so nr is this one's. */
        if (hv->resumed_nr == nr)
            return;
        /* Yields of this suspend that come after now are stale. */
        hv->resumed_nr = nr;
        if (write(hv->ports[XTK_PORT_SUSPEND].to_guest, &one, sizeof(one)) !=
            sizeof(one))
            hv_log("suspend port: %m");
    }
}
