/*
 * main.c - the xsd-lite daemon: options, logging, daemon mode, pid file,
 * readiness (sd_notify), signals, and the store's state across restarts.
 * See xsd-lite(8).
 */
#include "config.h"

#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "cli.h"
#include "parse-num.h"
#include "xsd.h"

const char *cli_prog = "xsd-lite";

#define XTK_LOG_CONTEXT "xsd-lite"
#define DEFAULT_SOCKET "/run/xenstored/socket"

/* ---- logging: to a file/stderr or to syslog, at xsd_log_level ---------- */

struct daemon_logger {
    struct xtk_logger vtable;
    FILE *f;          /* NULL: syslog */
    bool also_stderr; /* a daemon not ready yet: its parent's terminal */
};

static void __attribute__((format(printf, 5, 0)))
dl_vmessage(struct xtk_logger *lg, xtk_log_level level, int errnoval,
            const char *context, const char *fmt, va_list al)
{
    struct daemon_logger *dl = (struct daemon_logger *)lg;
    int saved = errno;
    char msg[1024];
    int n;

    if ((int)level < xsd_log_level)
        return;
    n = vsnprintf(msg, sizeof(msg), fmt, al);
    if (errnoval >= 0 && n >= 0 && (size_t)n < sizeof(msg))
        snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(errnoval));
    if (dl->also_stderr && level >= XTK_LOG_WARN)
        fprintf(stderr, "xsd-lite: %s\n", msg);
    if (dl->f) {
        struct timespec ts;
        struct tm tm;
        char stamp[32];

        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
        fprintf(dl->f, "%s.%03ld xsd-lite[%d]: %s: %s: %s\n", stamp,
                ts.tv_nsec / 1000000, (int)getpid(), xtk_log_level_name(level),
                context, msg);
        fflush(dl->f);
    } else {
        int prio = level >= XTK_LOG_ERROR    ? LOG_ERR
                   : level >= XTK_LOG_WARN   ? LOG_WARNING
                   : level >= XTK_LOG_NOTICE ? LOG_NOTICE
                   : level >= XTK_LOG_INFO   ? LOG_INFO
                                             : LOG_DEBUG;

        syslog(prio, "%s: %s", context, msg);
    }
    errno = saved;
}

static struct daemon_logger logger = {.vtable = {.vmessage = dl_vmessage}};

/* ---- readiness -----------------------------------------------------------
 */

/* systemd's notification protocol, which is one datagram on the socket
 * named by $NOTIFY_SOCKET (a leading '@' means the abstract namespace). */
static void sd_notify_send(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n;
    int fd;

    if (!path || !*path || (path[0] != '/' && path[0] != '@'))
        return;
    n = strlen(path);
    if (n >= sizeof(sa.sun_path))
        return;
    memcpy(sa.sun_path, path, n);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0';
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    /* Best effort: a supervisor that does not listen is not our failure. */
    (void)!sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                  (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    close(fd);
}

/* ---- options -------------------------------------------------------------
 */

struct opts {
    const char *socket, *ro_socket, *pid_file, *log_file;
    bool no_fork;
    struct xsd_config cfg;
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: xsd-lite [OPTION]...\n"
               "An in-memory xenstore daemon.\n\n"
               "  -N, --no-fork            stay in the foreground\n"
               "  -F, --pid-file=FILE      write the daemon's pid to FILE\n"
               "  -s, --socket=PATH        privileged socket (" DEFAULT_SOCKET
               ")\n"
               "  -r, --ro-socket=PATH     read-only socket (SOCKET_ro; none)\n"
               "  -S, --state-file=FILE    load FILE at start if it exists, "
               "save it on\n"
               "                           SIGTERM and on `xenstore-control "
               "save`\n"
               "  -l, --log-level=LEVEL    debug, info, notice, warning, error "
               "(info)\n"
               "  -L, --log-file=FILE      log to FILE (default: stderr, or "
               "syslog\n"
               "                           when a daemon)\n"
               "  -Q, --quota=NAME=VALUE   nodes, watches, transactions, "
               "outstanding,\n"
               "                           memory, transaction-nodes,\n"
               "                           node-permissions, node-size\n"
               "  -W, --watch-queue=N      watch events queued per connection "
               "(1024)\n"
               "  -h, --help, -V, --version\n");
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
    static const struct option lopts[] = {
        {"no-fork", no_argument, NULL, 'N'},
        {"pid-file", required_argument, NULL, 'F'},
        {"socket", required_argument, NULL, 's'},
        {"ro-socket", required_argument, NULL, 'r'},
        {"state-file", required_argument, NULL, 'S'},
        {"log-level", required_argument, NULL, 'l'},
        {"log-file", required_argument, NULL, 'L'},
        {"quota", required_argument, NULL, 'Q'},
        {"watch-queue", required_argument, NULL, 'W'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int ch, l;

    xsd_config_default(&o->cfg);
    o->socket = DEFAULT_SOCKET;
    while ((ch = getopt_long(argc, argv, "NF:s:r:S:l:L:Q:W:hV", lopts, NULL)) !=
           -1) {
        switch (ch) {
        case 'N':
            o->no_fork = true;
            break;
        case 'F':
            o->pid_file = optarg;
            break;
        case 's':
            o->socket = optarg;
            break;
        case 'r':
            o->ro_socket = optarg;
            break;
        case 'S':
            xsd_state_file = optarg;
            break;
        case 'l':
            if ((l = xtk_log_level_from_name(optarg)) < 0) {
                fprintf(stderr, "xsd-lite: unknown log level %s\n", optarg);
                return -1;
            }
            xsd_log_level = l;
            break;
        case 'L':
            o->log_file = optarg;
            break;
        case 'Q': {
            char *eq = strchr(optarg, '=');
            int q;

            if (eq)
                *eq = '\0';
            q = eq ? xsd_quota_from_name(optarg) : -1;
            if (q < 0 ||
                xtk__parse_u32(eq + 1, 0, UINT32_MAX, &o->cfg.quota[q])) {
                fprintf(stderr, "xsd-lite: bad quota %s\n", optarg);
                return -1;
            }
            break;
        }
        case 'W':
            if (xtk__parse_u32(optarg, 1, UINT32_MAX,
                               &o->cfg.watch_queue_max)) {
                fprintf(stderr, "xsd-lite: bad watch queue %s\n", optarg);
                return -1;
            }
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

/* ---- the daemon ----------------------------------------------------------
 */

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
    struct xsd *x = arg;

    XTK_INFO(x->ctx, "signal %d: stopping", (int)sig);
    event_base_loopbreak(x->base);
}

static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
    const char *path = arg;
    FILE *f;

    if (!path || !(f = fopen(path, "ae")))
        return;
    if (logger.f && logger.f != stderr)
        fclose(logger.f);
    logger.f = f;
}

/* Forks; the parent waits for the child's readiness byte on a pipe and
 * exits with 0 once it came, 1 if the child failed first. */
static int daemonize(int *ready_fd)
{
    int p[2];
    pid_t pid;
    char b;

    if (pipe2(p, O_CLOEXEC))
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0) {
        close(p[1]);
        exit(read(p[0], &b, 1) == 1 ? 0 : 1);
    }
    close(p[0]);
    setsid();
    if (chdir("/"))
        return -1;
    *ready_fd = p[1];
    return 0;
}

static void quiet_stdio(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

    if (fd < 0)
        return;
    dup2(fd, 0);
    dup2(fd, 1);
    if (logger.f != stderr)
        dup2(fd, 2);
    close(fd);
}

static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int write_pid_file(const char *path)
{
    FILE *f = fopen(path, "we");

    if (!f)
        return -1;
    fprintf(f, "%d\n", (int)getpid());
    return fclose(f);
}

int main(int argc, char **argv)
{
    struct opts o = {0};
    struct xsd x;
    struct xtk_ctx *ctx = NULL;
    struct event_base *base = NULL;
    struct xsd_listener *ls = NULL, *lro = NULL;
    struct event *sigs[4] = {NULL};
    char ro_path[256];
    int ready_fd = -1, rc = 1;

    cli_init(argv);
    if (parse_opts(argc, argv, &o))
        return 2;
    if (o.log_file) {
        logger.f = fopen(o.log_file, "ae");
        if (!logger.f) {
            perror(o.log_file);
            return 1;
        }
    } else {
        logger.f = o.no_fork ? stderr : NULL;
    }
    if (!logger.f)
        openlog("xsd-lite", LOG_PID, LOG_DAEMON);
    if (!o.ro_socket) {
        snprintf(ro_path, sizeof(ro_path), "%s_ro", o.socket);
        o.ro_socket = ro_path;
    }
    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    if (!o.no_fork && daemonize(&ready_fd)) {
        perror("xsd-lite: daemon");
        return 1;
    }
    logger.also_stderr = ready_fd >= 0 && !logger.f;
    base = event_base_new();
    ctx = base ? xtk_ctx_open(&logger.vtable, base, 0) : NULL;
    if (!ctx || xsd_init(&x, ctx, base, &o.cfg)) {
        fprintf(stderr, "xsd-lite: %s\n", strerror(errno));
        goto out_ctx;
    }
    if (xsd_state_file && !access(xsd_state_file, F_OK) &&
        xsd_state_load(&x, xsd_state_file))
        goto out_store;
    ls = xsd_listen(&x, o.socket, false, 0600);
    if (!ls) {
        XTK_PERROR(ctx, "listening on %s", o.socket);
        goto out_store;
    }
    if (strcmp(o.ro_socket, "none")) {
        lro = xsd_listen(&x, o.ro_socket, true, 0660);
        if (!lro) {
            XTK_PERROR(ctx, "listening on %s", o.ro_socket);
            goto out_listen;
        }
    }
    sigs[0] = evsignal_new(base, SIGTERM, stop_cb, &x);
    sigs[1] = evsignal_new(base, SIGINT, stop_cb, &x);
    sigs[2] = evsignal_new(base, SIGHUP, hup_cb, (void *)o.log_file);
    for (int i = 0; i < 3; i++)
        if (!sigs[i] || event_add(sigs[i], NULL))
            goto out_listen;
    if (o.pid_file && write_pid_file(o.pid_file)) {
        XTK_PERROR(ctx, "writing %s", o.pid_file);
        goto out_listen;
    }
    /* On Xen, in dom0: its kernel's own ring (its backends need it). */
    {
        int r = xsd_xen_dom0_ring(&x);

        if (r && r != ENOENT)
            XTK_WARN(ctx,
                     "dom0's kernel is not served (%s): its backends "
                     "(blkback, netback) will not see the store",
                     strerror(r));
    }
    XTK_INFO(ctx, "xsd-lite %s ready on %s", PACKAGE_VERSION, o.socket);
    sd_notify_send("READY=1");
    if (ready_fd >= 0) {
        logger.also_stderr = false;
        quiet_stdio();
        if (write(ready_fd, "", 1) != 1)
            goto out_pid;
        close(ready_fd);
        ready_fd = -1;
    }
    event_base_dispatch(base);
    sd_notify_send("STOPPING=1");
    rc = 0;
    if (xsd_state_file && xsd_state_save(&x, xsd_state_file)) {
        XTK_PERROR(ctx, "saving the store to %s", xsd_state_file);
        rc = 1;
    }
out_pid:
    if (o.pid_file)
        unlink(o.pid_file);
out_listen:
    for (int i = 0; i < 3; i++)
        if (sigs[i])
            event_free(sigs[i]);
    xsd_listener_close(lro, true);
    xsd_listener_close(ls, true);
out_store:
    xsd_fini(&x);
out_ctx:
    xtk_ctx_close(ctx);
    if (base)
        event_base_free(base);
    if (logger.f && logger.f != stderr)
        fclose(logger.f);
    return rc;
}
