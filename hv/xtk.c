/*
 * xtk.c - the xl-like command: create, list, info, pause, unpause, console,
 * check and destroy domains.  See xtk(1).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "abi.h"
#include "backend.h"
#include "cli.h"
#include "kvm/kvm.h"
#include "parse-num.h"

const char *cli_prog = "xtk";
static struct xtk_ctx *ctx;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: xtk COMMAND [ARGS]\n"
            "  create [-n NAME] [-m MIB] [-c VCPUS] [-w WORKLOAD] [-P PAGES]\n"
            "         [-S STRIDE] [-r RATE] [-k KERNEL] [-a ARGS] [-p] "
            "[--no-store]\n"
            "         [-N udp:HOST:PORT|tcp:HOST:PORT [-i MS]]\n"
            "  list\n"
            "  info DOMAIN\n"
            "  pause DOMAIN\n"
            "  unpause DOMAIN\n"
            "  console [-f] DOMAIN\n"
            "  check DOMAIN\n"
            "  vcpus DOMAIN\n"
            "  rename DOMAIN NEWNAME\n"
            "  output DOMAIN release|drop\n"
            "  destroy DOMAIN\n"
            "  --help | --version\n"
            "DOMAIN is an id or a name.  WORKLOAD: idle, counter, dirty, "
            "spin, ports, nmi.\n");
}

static struct xtk_domain *open_dom(const char *what)
{
    struct xtk_domain *dom = xtk_domain_lookup(ctx, what);

    if (!dom)
        fprintf(stderr, "xtk: %s: %s\n", what,
                errno == ENOENT ? "no such domain" : strerror(errno));
    return dom;
}

static int bad_create(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static int bad_create(const char *fmt, ...)
{
    va_list ap;

    fputs("xtk: create: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return -1;
}

/*
 * Every argument checked before anything starts: what xtk-hv or the
 * guest would refuse later (the guest only on its console, after create
 * has succeeded) is refused here, with the reason.
 */
static int check_create(const struct xtk_domain_config *cfg,
                        const char *workload, const char *pages,
                        const char *stride, const char *rate)
{
    static const char *const workloads[] = {"idle", "counter", "dirty",
                                            "spin", "ports",   "nmi"};
    uint64_t mib = cfg->memory_mib ? cfg->memory_mib : 64, v, need;
    size_t i;

    if (cfg->name && !cli_domain_name_ok(cfg->name))
        return bad_create("bad name '%s' ([A-Za-z0-9_.-], 1 to %d "
                          "characters, not all digits)",
                          cfg->name, XTK_DOMAIN_NAME_MAX);
    if (mib < XTK_GUEST_MIN_MIB || mib > XTK_GUEST_MAX_MIB)
        return bad_create("memory must be %d to %d MiB", XTK_GUEST_MIN_MIB,
                          XTK_GUEST_MAX_MIB);
    if (cfg->nr_vcpus > XTK_GUEST_MAX_VCPUS)
        return bad_create("vcpus must be 1 to %d", XTK_GUEST_MAX_VCPUS);
    if (cfg->kernel && access(cfg->kernel, R_OK) < 0)
        return bad_create("%s: %s", cfg->kernel, strerror(errno));
    if (cfg->kernel)
        return 0; /* another guest: its arguments are its own */
    for (i = 0; workload && i < sizeof(workloads) / sizeof(workloads[0]); i++)
        if (!strcmp(workload, workloads[i]))
            break;
    if (workload && i == sizeof(workloads) / sizeof(workloads[0]))
        return bad_create("unknown workload '%s' (idle, counter, dirty, "
                          "spin, ports or nmi)",
                          workload);
    if (workload && !strcmp(workload, "nmi") && cfg->nr_vcpus < 2)
        return bad_create("the nmi workload needs two vCPUs (-c 2)");
    if ((pages || stride || rate) && (!workload || strcmp(workload, "dirty")))
        return bad_create("-P, -S and -r are for the dirty workload");
    if (stride && cli_parse_u64(stride, 1, UINT32_MAX, 1, &v) < 0)
        return bad_create("bad stride '%s'", stride);
    if (rate && cli_parse_u64(rate, 0, UINT64_MAX, 1, &v) < 0)
        return bad_create("bad rate '%s'", rate);
    if (pages && cli_parse_u64(pages, 1, UINT32_MAX, 1, &v) < 0)
        return bad_create("bad page count '%s'", pages);
    /* The working set and its table, from XTK_GUEST_WORK_GPA. */
    need = XTK_GUEST_WORK_GPA + (pages ? v : 256) * (4096 + 8);
    if (workload && !strcmp(workload, "dirty") && need > mib << 20)
        return bad_create("-P %s: the working set does not fit in %llu MiB",
                          pages ? pages : "256", (unsigned long long)mib);
    return 0;
}

static int cmd_create(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, NULL, 'n'},
        {"memory", required_argument, NULL, 'm'},
        {"vcpus", required_argument, NULL, 'c'},
        {"workload", required_argument, NULL, 'w'},
        {"pages", required_argument, NULL, 'P'},
        {"stride", required_argument, NULL, 'S'},
        {"rate", required_argument, NULL, 'r'},
        {"kernel", required_argument, NULL, 'k'},
        {"args", required_argument, NULL, 'a'},
        {"paused", no_argument, NULL, 'p'},
        {"no-store", no_argument, NULL, 's'},
        {"net", required_argument, NULL, 'N'},
        {"net-interval", required_argument, NULL, 'i'},
        {NULL, 0, NULL, 0},
    };
    struct xtk_domain_config cfg = {0};
    const char *net_ms = NULL;
    const char *workload = NULL, *pages = NULL, *stride = NULL, *rate = NULL;
    const char *extra = NULL;
    char cmdline[XTK_GUEST_CMDLINE_MAX];
    struct xtk_domain *dom;
    uint64_t v;
    int c;

    while ((c = getopt_long(argc, argv, "n:m:c:w:P:S:r:k:a:pN:i:", longopts,
                            NULL)) != -1) {
        switch (c) {
        case 'n':
            cfg.name = optarg;
            break;
        case 'm':
        case 'c':
            if (xtk__parse_u64(optarg, 1, UINT32_MAX, 0, &v)) {
                fprintf(stderr, "xtk: bad number '%s'\n", optarg);
                return 2;
            }
            if (c == 'm')
                cfg.memory_mib = v;
            else
                cfg.nr_vcpus = (uint32_t)v;
            break;
        case 'w':
            workload = optarg;
            break;
        case 'P':
            pages = optarg;
            break;
        case 'S':
            stride = optarg;
            break;
        case 'r':
            rate = optarg;
            break;
        case 'k':
            cfg.kernel = optarg;
            break;
        case 'a':
            extra = optarg;
            break;
        case 'p':
            cfg.flags |= XTK_DOMCFG_PAUSED;
            break;
        case 's':
            cfg.flags |= XTK_DOMCFG_NO_STORE;
            break;
        case 'N':
            cfg.net = optarg;
            break;
        case 'i':
            if (xtk__parse_u64(optarg, 1, 3600000, 0, &v)) {
                fprintf(stderr,
                        "xtk: create: bad --net-interval '%s' "
                        "(1 to 3600000 ms)\n",
                        optarg);
                return 2;
            }
            net_ms = optarg;
            break;
        default:
            return cli_usage_error(NULL);
        }
    }
    if (optind != argc)
        return cli_usage_error("create: unexpected argument '%s'",
                               argv[optind]);
    if (check_create(&cfg, workload, pages, stride, rate) < 0)
        return 2;
    if (net_ms && !cfg.net) {
        bad_create("--net-interval needs --net");
        return 2;
    }
    if (snprintf(cmdline, sizeof(cmdline), "workload=%s%s%s%s%s%s%s%s%s%s%s",
                 workload ? workload : "idle", pages ? " pages=" : "",
                 pages ? pages : "", stride ? " stride=" : "",
                 stride ? stride : "", rate ? " rate=" : "", rate ? rate : "",
                 net_ms ? " net=" : "", net_ms ? net_ms : "", extra ? " " : "",
                 extra ? extra : "") >= (int)sizeof(cmdline)) {
        fprintf(stderr, "xtk: command line too long\n");
        return 2;
    }
    cfg.cmdline = cmdline;
    dom = xtk_domain_create(ctx, &cfg);
    if (!dom) {
        if (errno == EEXIST) /* the backend leaves this one to us */
            fprintf(stderr, "xtk: create: a domain called %s exists already\n",
                    cfg.name ? cfg.name : "so");
        else
            cli_error("create: %s", strerror(errno));
        return 1;
    }
    printf("%u\n", xtk_domain_id(dom));
    xtk_domain_close(dom);
    return 0;
}

static const char *state_letters(uint32_t flags, char *buf)
{
    snprintf(buf, 8, "%c%c%c%c", flags & XTK_DOMINFO_EMPTY ? 'e' : 'r',
             flags & XTK_DOMINFO_PAUSED ? 'p' : '-',
             flags & XTK_DOMINFO_SUSPENDED ? 's' : '-',
             flags & XTK_DOMINFO_CRASHED ? 'c' : '-');
    return buf;
}

static int cmd_list(int argc, char **argv)
{
    struct xtk_domain_info *v;
    size_t n;
    char st[8];

    (void)argv;
    if (argc != 1)
        return cli_usage_error("list takes no arguments");
    if (xtk_domain_list(ctx, &v, &n) < 0) {
        cli_error("list: %s", strerror(errno));
        return 1;
    }
    printf("%-24s %5s %8s %5s %5s %10s\n", "Name", "ID", "Mem", "VCPUs",
           "State", "Time(s)");
    for (size_t i = 0; i < n; i++)
        printf("%-24s %5u %8" PRIu64 " %5u %5s %10.1f\n", v[i].name, v[i].domid,
               v[i].nr_pages >> 8, v[i].nr_vcpus, state_letters(v[i].flags, st),
               v[i].uptime_ns / 1e9);
    free(v);
    return 0;
}

static int cmd_info(struct xtk_domain *dom)
{
    struct xtk_domain_info info;

    if (xtk_domain_info(dom, &info) < 0)
        return -1;
    printf("domid:     %u\n"
           "name:      %s\n"
           "memory:    %" PRIu64 " MiB\n"
           "vcpus:     %u\n"
           "paused:    %s\n"
           "suspended: %s\n"
           "empty:     %s\n"
           "logdirty:  %s\n"
           "crashed:   %s\n"
           "store:     %s\n"
           "uptime:    %.3f s\n",
           info.domid, info.name, info.nr_pages >> 8, info.nr_vcpus,
           info.flags & XTK_DOMINFO_PAUSED ? "yes" : "no",
           info.flags & XTK_DOMINFO_SUSPENDED ? "yes" : "no",
           info.flags & XTK_DOMINFO_EMPTY ? "yes" : "no",
           info.flags & XTK_DOMINFO_LOGDIRTY ? "yes" : "no",
           info.flags & XTK_DOMINFO_CRASHED ? "yes" : "no",
           info.flags & XTK_DOMINFO_STORE ? "yes" : "no", info.uptime_ns / 1e9);
    return 0;
}

static int cmd_console(struct xtk_domain *dom, int follow)
{
    char buf[16384];
    uint64_t off = 0;

    for (;;) {
        size_t n = sizeof(buf);

        if (xtk_domain_console_read(dom, &off, buf, &n) < 0)
            return errno == ESRCH && follow ? 0 : -1;
        if (n) {
            fwrite(buf, 1, n, stdout);
            fflush(stdout);
            off += n;
            continue;
        }
        if (!follow)
            return 0;
        nanosleep(&(struct timespec){0, 50000000}, NULL); /* 20 Hz */
    }
}

/*
 * Always works: drops every pause, whoever took it, and wakes a guest a
 * dead save left suspended.  An empty domain (a restore in progress) is
 * not started.
 */
static int cmd_unpause(struct xtk_domain *dom)
{
    struct xtk_domain_info info;

    if (xtk_domain_unpause(dom) < 0 || xtk_domain_info(dom, &info) < 0)
        return -1;
    if ((info.flags & XTK_DOMINFO_SUSPENDED) &&
        !(info.flags & XTK_DOMINFO_EMPTY))
        return xtk_domain_resume(dom);
    return 0;
}

/* Holds a pause while it reads the guest's memory: the check sees one
 * instant, and the domain runs on afterwards. */
static int cmd_check(struct xtk_domain *dom)
{
    struct xtk_domain_info info;
    char why[256];
    void *ram;

    if (xtk_domain_info(dom, &info) < 0 || xtk__domain_pause_hold(dom) < 0)
        return -1;
    ram = dom->ops->map_all ? dom->ops->map_all(dom, PROT_READ) : NULL;
    if (!ram)
        return -1;
    if (xtk__guest_check(ram, info.nr_pages, why, sizeof(why)) < 0) {
        printf("domain %u: self-check FAILED: %s\n", info.domid, why);
        return 1;
    }
    printf("domain %u: self-check passed\n", info.domid);
    return 0;
}

/* The built-in guest's own lock-holder measures (guests/abi.h), if the
 * domain runs it; read as they are, without a pause. */
static void print_guest_pv(struct xtk_domain *dom,
                           const struct xtk_domain_info *info)
{
    const struct xtk_guest_status *s;
    const struct xtk_guest_pv *pv;
    uint8_t *ram;

    if (info->nr_pages <= (XTK_GUEST_STATUS_GPA >> 12) || !dom->ops->map_all)
        return;
    ram = dom->ops->map_all(dom, PROT_READ);
    if (!ram)
        return;
    s = (const void *)(ram + XTK_GUEST_STATUS_GPA);
    if (s->magic != XTK_GUEST_STATUS_MAGIC)
        return;
    pv = &s->pv;
    printf("guest: preemption notification %s, directed yield %s\n",
           pv->used & XTK_GUEST_PV_PREEMPTED       ? "used"
           : pv->features & XTK_GUEST_PV_PREEMPTED ? "offered, off"
                                                   : "none",
           pv->used & XTK_GUEST_PV_YIELD       ? "used"
           : pv->features & XTK_GUEST_PV_YIELD ? "offered, off"
                                               : "none");
    printf("VCPU  SAW-PREEMPTED  YIELDS  HEARTBEAT\n");
    for (unsigned int i = 0; i < info->nr_vcpus && i < XTK_GUEST_MAX_VCPUS; i++)
        printf("%4u  %13" PRIu64 "  %6" PRIu64 "  %9" PRIu64 "\n", i,
               pv->saw_preempted[i], pv->yields[i], s->heartbeat[i]);
    if (s->workload == XTK_WORK_SPIN)
        printf("lock: %" PRIu64 " acquisitions, %" PRIu64
               " waited, wait mean %.1f us, longest %.1f us\n",
               s->spin.shared_count, pv->lock_waits,
               pv->lock_waits ? pv->lock_wait_total_ns / 1e3 / pv->lock_waits
                              : 0.0,
               pv->lock_wait_max_ns / 1e3);
    if (info->nr_vcpus > 1)
        printf("suspends: %" PRIu64 ", %" PRIu64
               " of them with other vCPUs stopped where they were\n",
               s->suspends, s->unparked_suspends);
    if (s->workload == XTK_WORK_NMI)
        printf("nmi: %" PRIu64 " sent to vCPU 1, %" PRIu64 " taken\n",
               s->nmi_sent, s->nmi_taken);
}

/* xl vcpu-list, with what the host knows of each vCPU's thread. */
static int cmd_vcpus(struct xtk_domain *dom)
{
    struct xtk_domain_info info;
    struct xtk_vcpu_stats v[64];
    unsigned int n;

    if (xtk_domain_info(dom, &info) < 0 || xtk_domain_vcpus(dom, v, 64, &n) < 0)
        return -1;
    printf("VCPU   CPU(s)    WAIT(s)  SLICES  PREEMPTED   BLOCKED  "
           "YIELDS(OK/TRIED)  NOTIFIED  BOOSTS\n");
    for (unsigned int i = 0; i < n && i < 64; i++) {
        char wait[16] = "-", sl[24] = "-", pre[24] = "-", y[40] = "-",
             b[24] = "-";
        if (v[i].flags & XTK_VCPU_WAIT) {
            snprintf(wait, sizeof(wait), "%.3f", v[i].wait_ns / 1e9);
            snprintf(sl, sizeof(sl), "%" PRIu64, v[i].slices);
            snprintf(pre, sizeof(pre), "%" PRIu64, v[i].preemptions);
        }
        if (v[i].flags & XTK_VCPU_YIELDS) {
            snprintf(y, sizeof(y), "%" PRIu64 "/%" PRIu64,
                     v[i].yields_successful, v[i].yields_attempted);
            snprintf(b, sizeof(b), "%" PRIu64, v[i].boosts);
        }
        printf("%4u  %7.3f  %9s  %6s  %9s  %8" PRIu64 "  %16s  %8s  %6s\n",
               v[i].vcpu, v[i].cpu_ns / 1e9, wait, sl, pre, v[i].blocks, y,
               v[i].flags & XTK_VCPU_PUBLISHED ? "yes" : "no", b);
    }
    print_guest_pv(dom, &info);
    return 0;
}

static int known_command(const char *cmd)
{
    static const char *const cmds[] = {
        "create", "list",   "info",    "pause",  "unpause", "console",
        "check",  "rename", "destroy", "output", "vcpus",
    };

    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(cmd, cmds[i]))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    struct xtk_domain *dom;
    const char *cmd;
    int follow = 0, r;

    cli_init(argv);
    if (argc < 2)
        return cli_usage_error("no command");
    cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        cli_print_version();
        return 0;
    }
    if (cmd[0] == '-') {
        fprintf(stderr, "xtk: unrecognized option '%s'\n", cmd);
        return cli_usage_error(NULL);
    }
    if (!known_command(cmd)) {
        fprintf(stderr, "xtk: unknown command '%s'\n", cmd);
        return cli_usage_error(NULL);
    }
    ctx = cli_ctx_open();
    if (!ctx)
        return 1;
    argc--;
    argv++;
    argv[0] = (char *)cli_prog; /* for getopt's messages */
    if (!strcmp(cmd, "create")) {
        r = cmd_create(argc, argv);
        goto out;
    }
    if (!strcmp(cmd, "list")) {
        r = cmd_list(argc, argv);
        goto out;
    }
    if (!strcmp(cmd, "rename")) {
        if (argc != 3) {
            r = cli_usage_error("rename: expected DOMAIN NEWNAME");
            goto out;
        }
        dom = open_dom(argv[1]);
        r = !dom || xtk_domain_rename(dom, argv[2]) < 0;
        if (dom && r)
            fprintf(stderr, "xtk: rename %s %s: %s\n", argv[1], argv[2],
                    errno == EEXIST ? "the name is taken" : strerror(errno));
        xtk_domain_close(dom);
        goto out;
    }
    if (!strcmp(cmd, "output")) {
        /* The hold a dead checkpointing save left: which copy runs on. */
        if (argc != 3 ||
            (strcmp(argv[2], "release") && strcmp(argv[2], "drop"))) {
            r = cli_usage_error("output: expected DOMAIN release|drop");
            goto out;
        }
        dom = open_dom(argv[1]);
        r = !dom || xtk_domain_output_end(dom, strcmp(argv[2], "release")
                                                   ? XTK_OUTPUT_DROP
                                                   : XTK_OUTPUT_SEND) < 0;
        if (dom && r)
            fprintf(stderr, "xtk: output %s %s: %s\n", argv[1], argv[2],
                    errno == EPERM ? "a running save holds it"
                                   : strerror(errno));
        xtk_domain_close(dom);
        goto out;
    }
    if (!strcmp(cmd, "console") && argc == 3 && !strcmp(argv[1], "-f")) {
        follow = 1;
        argc--;
        argv++;
    }
    if (argc != 2) {
        r = cli_usage_error("%s: expected %sDOMAIN", cmd,
                            !strcmp(cmd, "console") ? "[-f] " : "");
        goto out;
    }
    dom = open_dom(argv[1]);
    if (!dom) {
        r = 1;
        goto out;
    }
    if (!strcmp(cmd, "info"))
        r = cmd_info(dom);
    else if (!strcmp(cmd, "pause"))
        r = xtk_domain_pause(dom);
    else if (!strcmp(cmd, "unpause"))
        r = cmd_unpause(dom);
    else if (!strcmp(cmd, "console"))
        r = cmd_console(dom, follow);
    else if (!strcmp(cmd, "check"))
        r = cmd_check(dom);
    else if (!strcmp(cmd, "vcpus"))
        r = cmd_vcpus(dom);
    else
        r = xtk_domain_destroy(dom);
    if (r < 0) {
        cli_error("%s %s: %s", cmd, argv[1], strerror(errno));
        r = 1;
    }
    xtk_domain_close(dom);
out:
    xtk_ctx_close(ctx);
    return r;
}
