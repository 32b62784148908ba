/*
 * main.c - xtk-hv: one KVM domain, one process.  See xtk-hv(8).
 *
 * Start-up: take a domain id (and the name) by locking files in the run
 * directory, create the VM, register it in the store, load the guest,
 * start the vCPUs, listen on <rundir>/<domid>.sock, then tell whoever
 * started us (--ready-fd) the id.  The main loop serves the control
 * socket and the console until DESTROY or SIGTERM.
 *
 * Ids without races: id N belongs to the process holding an flock on
 * <rundir>/<N>.lock; names likewise on <rundir>/name-<name>.lock.  The
 * kernel drops the locks when a process dies, so a crash frees both.  A
 * domain that goes removes its files and keeps its log in log/; the next
 * xtk-hv sweeps what a crashed one left (rundir.c).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "hv.h"
#include "parse-num.h"

const char *cli_prog = "xtk-hv";

#define DOMID_MAX 32751 /* as Xen: ids above are reserved */

#ifndef XTK_GUEST_DEFAULT
#define XTK_GUEST_DEFAULT "xtk-guest.elf"
#endif

static void usage(FILE *f)
{
    fprintf(f,
            "usage: xtk-hv [options]\n"
            "  -n, --name NAME         domain name (default domain-<id>)\n"
            "  -m, --memory MIB        guest RAM (default 64)\n"
            "  -c, --vcpus N           vCPUs (default 1, at most %d)\n"
            "  -k, --kernel FILE       guest image (default the built-in "
            "guest)\n"
            "  -a, --cmdline STRING    guest command line\n"
            "  -r, --rundir DIR        run directory (default $XTK_RUNDIR or "
            "/run/xtk)\n"
            "  -s, --store PATH        register in the store at PATH "
            "(required)\n"
            "  -S, --no-store          do not register in the store\n"
            "  -e, --empty             an empty domain for a restore\n"
            "  -p, --paused            start paused\n"
            "  -l, --log FILE          log here (default stderr)\n"
            "  -L, --console-log FILE  copy the console here\n"
            "  -N, --net SPEC          the network ring's packets to "
            "udp:HOST:PORT\n"
            "                          or tcp:HOST:PORT\n"
            "  -R, --ready-fd FD       write the domain id there when ready\n"
            "  -h, --help, --version\n",
            XTK_GUEST_MAX_VCPUS);
}

/* A number of the command line (parse-num.h), any uint64_t. */
static int parse_u64(const char *s, uint64_t *v)
{
    return xtk__parse_u64(s, 0, UINT64_MAX, 0, v);
}

/* [A-Za-z0-9_.-], 1 to 63 characters, not all digits (that reads as an
 * id): tools/cli.c's rule, which xtk create checks up front too. */
static int valid_name(const char *n)
{
    return cli_domain_name_ok(n);
}

/* A bad option: said on stderr, or, when a toolstack started us
 * (--ready-fd, which it gives first), kept for the ready fd. */
static void __attribute__((format(printf, 2, 3)))
opt_error(const struct hv_options *o, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(hv_log_last, sizeof(hv_log_last), fmt, ap);
    va_end(ap);
    if (o->ready_fd < 0)
        fprintf(stderr, "xtk-hv: %s\n", hv_log_last);
}

static int parse_options(struct hv *hv, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, NULL, 'n'},
        {"memory", required_argument, NULL, 'm'},
        {"vcpus", required_argument, NULL, 'c'},
        {"kernel", required_argument, NULL, 'k'},
        {"cmdline", required_argument, NULL, 'a'},
        {"rundir", required_argument, NULL, 'r'},
        {"store", required_argument, NULL, 's'},
        {"no-store", no_argument, NULL, 'S'},
        {"empty", no_argument, NULL, 'e'},
        {"paused", no_argument, NULL, 'p'},
        {"log", required_argument, NULL, 'l'},
        {"console-log", required_argument, NULL, 'L'},
        {"net", required_argument, NULL, 'N'},
        {"ready-fd", required_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    struct hv_options *o = &hv->opt;
    uint64_t v;
    int c;

    o->memory_mib = 64;
    o->nr_vcpus = 1;
    o->cmdline = "";
    o->ready_fd = -1;
    o->rundir = getenv("XTK_RUNDIR");
    if (!o->rundir || !*o->rundir)
        o->rundir = "/run/xtk";
    o->kernel = getenv("XTK_GUEST");
    if (!o->kernel || !*o->kernel)
        o->kernel = XTK_GUEST_DEFAULT;

    while ((c = getopt_long(argc, argv, "n:m:c:k:a:r:s:Sepl:L:N:R:h", longopts,
                            NULL)) != -1) {
        switch (c) {
        case 'n':
            if (!valid_name(optarg)) {
                opt_error(o,
                          "bad name '%s' ([A-Za-z0-9_.-], "
                          "1 to 63 characters)",
                          optarg);
                return -1;
            }
            o->name = optarg;
            break;
        case 'm':
            if (parse_u64(optarg, &v) || v < XTK_GUEST_MIN_MIB ||
                v > XTK_GUEST_MAX_MIB) {
                opt_error(o, "memory must be %d to %d MiB", XTK_GUEST_MIN_MIB,
                          XTK_GUEST_MAX_MIB);
                return -1;
            }
            o->memory_mib = v;
            break;
        case 'c':
            if (parse_u64(optarg, &v) || v < 1 || v > XTK_GUEST_MAX_VCPUS) {
                opt_error(o, "vcpus must be 1 to %d", XTK_GUEST_MAX_VCPUS);
                return -1;
            }
            o->nr_vcpus = (unsigned int)v;
            break;
        case 'k':
            o->kernel = optarg;
            break;
        case 'a':
            if (strlen(optarg) >= XTK_GUEST_CMDLINE_MAX) {
                opt_error(o, "command line too long");
                return -1;
            }
            o->cmdline = optarg;
            break;
        case 'r':
            o->rundir = optarg;
            break;
        case 's':
            o->store_path = optarg;
            o->store_required = 1;
            break;
        case 'S':
            o->no_store = 1;
            break;
        case 'e':
            o->empty = 1;
            break;
        case 'p':
            o->paused = 1;
            break;
        case 'l':
            o->log_path = optarg;
            break;
        case 'L':
            o->console_log = optarg;
            break;
        case 'N': {
            struct sockaddr_storage sa;
            socklen_t sl;
            int tcp;

            if (hv_net_parse(optarg, &tcp, &sa, &sl) < 0) {
                opt_error(o, "bad --net '%s' (udp:HOST:PORT or tcp:HOST:PORT)",
                          optarg);
                return -1;
            }
            if (strlen(optarg) >= XTK_HVCTL_NET_MAX) {
                opt_error(o, "--net: at most %d characters",
                          XTK_HVCTL_NET_MAX - 1);
                return -1;
            }
            o->net = optarg;
            break;
        }
        case 'R':
            if (parse_u64(optarg, &v) || v > INT_MAX) {
                opt_error(o, "bad --ready-fd");
                return -1;
            }
            o->ready_fd = (int)v;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case 'V':
            cli_print_version();
            exit(0);
        default:
            cli_usage_error(NULL);
            return -1;
        }
    }
    if (optind != argc) {
        cli_usage_error("unexpected argument '%s'", argv[optind]);
        return -1;
    }
    return 0;
}

/* ---- ids and names -------------------------------------------------- */

static int take_id(struct hv *hv)
{
    char path[PATH_MAX];
    uint64_t hint = 1;
    FILE *f;

    if (mkdir(hv->opt.rundir, 0700) < 0 && errno != EEXIST) {
        hv_log("%s: %m", hv->opt.rundir);
        return -1;
    }
    /* Where the last allocation stopped (a hint only: the locks decide),
     * so that ids are not reused at once, as on Xen. */
    snprintf(path, sizeof(path), "%s/next-domid", hv->opt.rundir);
    if ((f = fopen(path, "re"))) {
        if (fscanf(f, "%" SCNu64, &hint) != 1 || hint < 1 || hint > DOMID_MAX)
            hint = 1;
        fclose(f);
    }
    for (uint32_t tries = 0, id = (uint32_t)hint; tries < DOMID_MAX;
         tries++, id = id % DOMID_MAX + 1) {
        snprintf(path, sizeof(path), "%s/%u.lock", hv->opt.rundir, id);
        hv->lock_fd = hv_lock_path(path, 1);
        if (hv->lock_fd >= 0) {
            hv->domid = id;
            hv_log_domid = id;
            snprintf(path, sizeof(path), "%s/next-domid", hv->opt.rundir);
            if ((f = fopen(path, "we"))) {
                fprintf(f, "%u\n", id % DOMID_MAX + 1);
                fclose(f);
            }
            return 0;
        }
        if (errno != EEXIST) {
            hv_log("%s: %m", path);
            return -1;
        }
    }
    hv_log("no free domain id");
    errno = ENOSPC;
    return -1;
}

/* Lets the current name go, its lock file removed. */
static void drop_name(struct hv *hv)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/name-%s.lock", hv->opt.rundir, hv->name);
    hv_unlock_path(path, hv->name_lock_fd);
    hv->name_lock_fd = -1;
}

int hv_take_name(struct hv *hv, const char *name)
{
    char path[PATH_MAX];
    int fd;

    if (!valid_name(name)) {
        errno = EINVAL;
        return -1;
    }
    snprintf(path, sizeof(path), "%s/name-%s.lock", hv->opt.rundir, name);
    fd = hv_lock_path(path, 1);
    if (fd < 0) {
        hv_log("name %s: %s", name,
               errno == EEXIST ? "in use by another domain" : strerror(errno));
        return -1;
    }
    if (hv->name_lock_fd >= 0)
        drop_name(hv);
    hv->name_lock_fd = fd;
    snprintf(hv->name, sizeof(hv->name), "%s", name);
    return 0;
}

static int take_name(struct hv *hv)
{
    char name[XTK_HVCTL_NAME_MAX];

    if (hv->opt.name)
        snprintf(name, sizeof(name), "%s", hv->opt.name);
    else
        snprintf(name, sizeof(name), "domain-%u", hv->domid);
    return hv_take_name(hv, name);
}

/* ---- the loop ------------------------------------------------------- */

static void tell_ready(struct hv *hv, int err)
{
    char buf[32 + HV_LOG_LAST_MAX];
    int n;

    if (hv->opt.ready_fd < 0)
        return;
    n = err ? snprintf(buf, sizeof(buf), "-%d%s%s\n", err,
                       hv_log_last[0] ? " " : "", hv_log_last)
            : snprintf(buf, sizeof(buf), "%u\n", hv->domid);
    if (n >= (int)sizeof(buf)) {
        n = (int)sizeof(buf) - 1;
        buf[n - 1] = '\n';
    }
    if (write(hv->opt.ready_fd, buf, (size_t)n) != n)
        hv_log("ready fd: %m");
    close(hv->opt.ready_fd);
    hv->opt.ready_fd = -1;
}

static int run_loop(struct hv *hv, int sig_fd)
{
    while (!hv->destroy) {
        struct pollfd pfd[6 + HV_MAX_CONNS];
        int map[6 + HV_MAX_CONNS];
        int n = 0;

        pfd[n] = (struct pollfd){.fd = sig_fd, .events = POLLIN};
        map[n++] = -1;
        pfd[n] = (struct pollfd){.fd = hv->listen_fd, .events = POLLIN};
        map[n++] = -2;
        pfd[n] = (struct pollfd){.fd = hv->ports[XTK_PORT_CONSOLE].from_guest,
                                 .events = POLLIN};
        map[n++] = -3;
        pfd[n] = (struct pollfd){.fd = hv->ports[XTK_PORT_NET].from_guest,
                                 .events = POLLIN};
        map[n++] = -5;
        if (hv_net_wants_out(hv)) {
            pfd[n] = (struct pollfd){.fd = hv->net_fd, .events = POLLOUT};
            map[n++] = -6;
        }
        if (hv->store_fd >= 0) {
            pfd[n] = (struct pollfd){.fd = hv->store_fd, .events = POLLIN};
            map[n++] = -4;
        }
        for (int i = 0; i < HV_MAX_CONNS; i++) {
            if (hv->conns[i].fd < 0)
                continue;
            pfd[n] = (struct pollfd){.fd = hv->conns[i].fd, .events = POLLIN};
            map[n++] = i;
        }
        /* An orphaned suspend is watched every 2 ms, a request's rescue
         * is due at its time (see ctl.c). */
        uint64_t due = hv->orphan_until ? hv_now_ns() + 2000000ull : 0;
        struct timespec ts, *tsp = NULL;

        if (hv->rescue_at && (!due || hv->rescue_at < due))
            due = hv->rescue_at;
        if (hv->rescue_until && (!due || hv->rescue_until < due))
            due = hv->rescue_until;
        if (due) {
            uint64_t now = hv_now_ns(), wait = due > now ? due - now : 0;

            ts.tv_sec = (time_t)(wait / 1000000000ull);
            ts.tv_nsec = (long)(wait % 1000000000ull);
            tsp = &ts;
        }
        if (ppoll(pfd, (nfds_t)n, tsp, NULL) < 0) {
            if (errno == EINTR)
                continue;
            hv_log("poll: %m");
            return -1;
        }
        hv_ctl_orphan_check(hv);
        hv_ctl_rescue_check(hv);
        for (int i = 0; i < n && !hv->destroy; i++) {
            if (!pfd[i].revents)
                continue;
            switch (map[i]) {
            case -1: {
                struct signalfd_siginfo si;
                if (read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
                    hv_log("signal %u: destroying the domain", si.ssi_signo);
                    hv->destroy = 1;
                }
                break;
            }
            case -2:
                hv_ctl_accept(hv);
                break;
            case -3:
                hv_console_drain(hv);
                break;
            case -4:
                hv_store_handle(hv);
                break;
            case -5:
                hv_net_drain(hv);
                break;
            case -6:
                pthread_mutex_lock(&hv->console_lock);
                hv_net_event(hv, !!(pfd[i].revents & (POLLERR | POLLHUP)) &&
                                     !hv->net_connecting);
                pthread_mutex_unlock(&hv->console_lock);
                break;
            default:
                hv_ctl_handle(hv, map[i]);
            }
        }
    }
    return 0;
}

static void hv_init(struct hv *hv)
{
    memset(hv, 0, sizeof(*hv));
    hv->kvm_fd = hv->vm_fd = hv->mem_fd = hv->bitmap_fd = -1;
    hv->listen_fd = hv->lock_fd = hv->name_lock_fd = hv->store_fd = -1;
    hv->logdirty_owner = -1;
    hv->creator = -1;
    hv->lazy_fd = -1;
    hv->hold_owner = -1;
    hv->held_tail = &hv->held_head;
    hv->net_fd = -1;
    for (int i = 0; i < XTK_GUEST_MAX_VCPUS; i++)
        hv->vcpus[i].fd = -1;
    for (int p = 0; p <= XTK_PORT_MAX; p++)
        hv->ports[p].to_guest = hv->ports[p].from_guest = -1;
    for (int i = 0; i < HV_MAX_CONNS; i++)
        hv->conns[i].fd = -1;
    pthread_mutex_init(&hv->lock, NULL);
    pthread_mutex_init(&hv->console_lock, NULL);
    pthread_cond_init(&hv->parked_cond, NULL);
    pthread_cond_init(&hv->run_cond, NULL);
}

int main(int argc, char **argv)
{
    static struct hv hv_storage;
    struct hv *hv = &hv_storage;
    sigset_t sigs;
    int sig_fd, rc = 1, err, own_log = 0;

    hv_init(hv);
    cli_init(argv);
    if (parse_options(hv, argc, argv) < 0) {
        tell_ready(hv, EINVAL);
        return 2;
    }
    hv_log_hold = hv->opt.ready_fd >= 0;
    hv->nr_vcpus = hv->opt.nr_vcpus;
    hv->mem_bytes = hv->opt.memory_mib << 20;
    hv->nr_pages = hv->mem_bytes >> 12;
    hv->empty = hv->opt.empty;
    hv->pause_sticky = hv->opt.paused;
    hv->start_ns = hv_now_ns();

    /* Signals: SIGTERM & co. through a signalfd; SIGUSR1 is the vCPU
     * kick, blocked here and unblocked in vCPU threads only. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    sigdelset(&sigs, SIGUSR1);
    signal(SIGPIPE, SIG_IGN);
    sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sig_fd < 0) {
        hv_log("signalfd: %m");
        goto out;
    }

    if (take_id(hv) < 0 || take_name(hv) < 0)
        goto err_ready;
    /* What gone domains left (a crash), this id's old log included. */
    hv_rundir_sweep(hv->opt.rundir);
    hv_rundir_keep_log(hv->opt.rundir, hv->domid);
    errno = 0; /* a failure below that sets none is EIO, not a lock's */
    if (!hv->opt.log_path && hv->opt.ready_fd >= 0) {
        /* Started as a daemon: log beside the socket (kept in log/ when
         * the domain goes). */
        static char log_path[PATH_MAX];
        own_log = 1;
        snprintf(log_path, sizeof(log_path), "%s/%u.log", hv->opt.rundir,
                 hv->domid);
        hv->opt.log_path = log_path;
    }
    if (hv->opt.log_path) {
        int fd = open(hv->opt.log_path,
                      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd < 0 || dup2(fd, 2) < 0) {
            hv_log("%s: %m", hv->opt.log_path);
            goto err_ready;
        }
        close(fd);
    }
    hv_log_release();
    if (hv->opt.console_log &&
        !(hv->console_log = fopen(hv->opt.console_log, "ae"))) {
        hv_log("%s: %m", hv->opt.console_log);
        goto err_ready;
    }
    snprintf(hv->sock_path, sizeof(hv->sock_path), "%s/%u.sock", hv->opt.rundir,
             hv->domid);
    hv_log("domain %u (%s): %llu MiB, %u vCPU(s)%s", hv->domid, hv->name,
           (unsigned long long)hv->opt.memory_mib, hv->nr_vcpus,
           hv->empty ? ", empty for a restore" : "");
    hv_log_last[0] = 0; /* what follows, if anything, is a failure's cause */

    if (hv_net_open(hv) < 0 || hv_vm_create(hv) < 0)
        goto err_ready;
    if (!hv->opt.no_store && hv_store_register(hv) < 0) {
        if (hv->opt.store_required)
            goto err_ready;
        hv_log_last[0] = 0; /* not the cause of what may fail next */
    }
    if (!hv->empty && hv_vm_load_guest(hv) < 0)
        goto err_ready;
    if (hv_vm_start(hv) < 0 || hv_ctl_listen(hv) < 0)
        goto err_ready;
    /* An empty or paused domain is ready once every vCPU is parked. */
    pthread_mutex_lock(&hv->lock);
    if (hv_vm_must_park(hv))
        hv_vm_wait_parked(hv);
    pthread_mutex_unlock(&hv->lock);
    tell_ready(hv, 0);
    rc = run_loop(hv, sig_fd) < 0;
    goto out;

err_ready:
    err = errno ? errno : EIO;
    tell_ready(hv, err);
out:
    /* Gone from KVM and the store first, then the name and id are free,
     * and only then do clients see their connections close. */
    hv_vm_destroy(hv);
    if (hv->store_fd >= 0)
        close(hv->store_fd); /* xsd-lite releases the domain */
    if (hv->listen_fd >= 0) {
        close(hv->listen_fd);
        unlink(hv->sock_path);
    }
    if (hv->console_log)
        fclose(hv->console_log);
    if (hv->name_lock_fd >= 0)
        drop_name(hv);
    if (hv->lock_fd >= 0) {
        char path[PATH_MAX];

        if (own_log)
            hv_rundir_keep_log(hv->opt.rundir, hv->domid);
        snprintf(path, sizeof(path), "%s/%u.lock", hv->opt.rundir, hv->domid);
        hv_unlock_path(path, hv->lock_fd);
    }
    for (int i = 0; i < HV_MAX_CONNS; i++)
        if (hv->conns[i].fd >= 0)
            close(hv->conns[i].fd);
    if (sig_fd >= 0)
        close(sig_fd);
    hv_log("domain %u gone", hv->domid);
    return rc;
}
