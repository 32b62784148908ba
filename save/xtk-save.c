/*
 * xtk-save - save a domain to a file or to stdout, or migrate it to an
 * xtk-restore listening on another host.  See xtk-save(1).
 *
 * A thin front end of xtk/save.h: it opens the destination (a temporary
 * file beside the target, renamed into place only once the stream is
 * complete and on disk; a target that is not a regular file, such as
 * /dev/null or a FIFO, written in place; stdout; or a TCP connection),
 * runs the save, and prints the report.
 */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <xtk/save.h>

#include "cli.h"
#include "tls.h"

const char *cli_prog = "xtk-save";

#define SOCKET_TIMEOUT_MS 30000 /* without -t */
#define CONNECT_WAIT_MS 5000    /* likewise */

struct target {
    const char *path;    /* the file asked for, or NULL */
    char real[PATH_MAX]; /* what a rename replaces: path, symlinks followed */
    char tmp[PATH_MAX];  /* its temporary sibling while writing */
    int in_place;        /* not a regular file: written directly */
    int fd;
    struct xtk_stream *out;
    int closed; /* commit closed the stream */
    struct xtk_ctx *ctx;
    struct cli_tls_creds *creds; /* TLS asked for: the credentials */
    struct cli_link *tls;        /* ... and the session (fd is its plain end) */
    int quiet, verbose;
    /* ssh:[USER@]HOST: the ssh that runs the destination there (fd is our
     * end of its stdin and stdout) */
    const char *ssh, *ssh_restore, *ssh_host;
    pid_t ssh_pid;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [options] DOMAIN FILE|-|tcp:HOST:PORT|ssh:[USER@]HOST\n"
            "  -l, --live                   pre-copy while the domain runs\n"
            "  -c, --checkpoint             keep the domain running after "
            "the save\n"
            "  -D, --max-downtime MS        downtime target (default 300)\n"
            "  -P, --policy downtime|xen    when to stop pre-copy\n"
            "  -R, --max-rounds N           pre-copy rounds at most (30)\n"
            "  -B, --max-bytes SIZE         pre-copy bytes at most (3x RAM)\n"
            "  -b, --bandwidth RATE         pre-copy bytes a second at most\n"
            "                               (K/M/G: 100M is 100 MiB/s)\n"
            "  -p, --postcopy[=auto]        a migration: the guest runs on "
            "the\n"
            "                               destination after the first "
            "round,\n"
            "                               its memory following (auto: "
            "when\n"
            "                               pre-copy does not converge)\n"
            "      --postcopy-bandwidth RATE  ... the push after the switch "
            "at most\n"
            "                               (1M or more; default: no "
            "limit)\n"
            "  -s, --suspend evtchn|store|pause\n"
            "  -j, --senders N              sender threads (2)\n"
            "  -z, --compress[=LEVEL]       gzip the stream (1-9)\n"
            "  -f, --format libxc|libxl|xl  the framing (default libxc)\n"
            "      --config FILE            the config an xl file carries\n"
            "  -I, --checkpoint-interval MS repeat the final round every MS\n"
            "  -N, --checkpoints N          ... N epochs in all\n"
            "  -t, --timeout MS             for the suspend and the peer\n"
            "      --heartbeat MS           checkpoints to a backup: a "
            "heartbeat\n"
            "                               between epochs every MS (200)\n"
            "      --peer-timeout MS        ... and the backup is lost "
            "when it owes\n"
            "                               an answer this long (5000)\n"
            "      --no-output-hold         ... the guest's output not held "
            "(unsafe)\n"
            "      --tls                    tcp: TLS, x509 certificates from "
            "%s\n"
            "      --tls-dir DIR            ... from DIR\n"
            "      --tls-psk FILE           tcp: TLS with a pre-shared key\n"
            "      --tls-psk-identity NAME  ... the key of NAME (the file's "
            "first)\n"
            "      --tls-authz NAME         accept only a destination named "
            "NAME\n"
            "      --tls-hostname NAME      the name its certificate must carry"
            "\n"
            "                               (default: HOST)\n"
            "      --ssh CMD                ssh:[USER@]HOST: the ssh command "
            "(ssh)\n"
            "      --ssh-restore CMD        ... and what it runs there "
            "(xtk-restore)\n"
            "  -J, --stats-json FILE        write the report as JSON\n"
            "  -q, --quiet                  no report on stderr\n"
            "  -v, --verbose\n"
            "      --version\n"
            "See xtk-save(1).\n",
            cli_prog, CLI_TLS_DIR);
}

static int pick(const char *arg, const char *const *names, unsigned int n,
                uint32_t *out)
{
    for (unsigned int i = 0; i < n; i++)
        if (!strcmp(arg, names[i])) {
            *out = i;
            return 0;
        }
    return -1;
}

/* The framing of the stream (xtk_stream(3), "framing"). */
struct framing {
    uint32_t framing; /* XTK_STREAM_FRAMING_* */
    uint8_t *config;  /* xl: the domain's config, or NULL */
    uint32_t config_len;
    int json;
};

static int parse_options(int argc, char **argv, struct xtk_save_options *o,
                         int *level, const char **json, int *quiet,
                         int *verbose, struct framing *fr,
                         struct cli_tls_opts *tls, struct target *t)
{
    static const struct option longopts[] = {
        {"live", no_argument, NULL, 'l'},
        {"checkpoint", no_argument, NULL, 'c'},
        {"max-downtime", required_argument, NULL, 'D'},
        {"policy", required_argument, NULL, 'P'},
        {"max-rounds", required_argument, NULL, 'R'},
        {"max-bytes", required_argument, NULL, 'B'},
        {"bandwidth", required_argument, NULL, 'b'},
        {"postcopy", optional_argument, NULL, 'p'},
        {"postcopy-bandwidth", required_argument, NULL, 'W'},
        {"suspend", required_argument, NULL, 's'},
        {"senders", required_argument, NULL, 'j'},
        {"compress", optional_argument, NULL, 'z'},
        {"format", required_argument, NULL, 'f'},
        {"config", required_argument, NULL, 'K'},
        {"ssh", required_argument, NULL, 'S'},
        {"ssh-restore", required_argument, NULL, 'E'},
        {"checkpoint-interval", required_argument, NULL, 'I'},
        {"checkpoints", required_argument, NULL, 'N'},
        {"timeout", required_argument, NULL, 't'},
        {"heartbeat", required_argument, NULL, 'H'},
        {"no-output-hold", no_argument, NULL, 'U'},
        {"peer-timeout", required_argument, NULL, 'T'},
        {"stats-json", required_argument, NULL, 'J'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        CLI_TLS_LONGOPTS,
        CLI_TLS_CLIENT_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    static const char *const suspends[] = {"evtchn", "store", "pause", "xl"};
    static const char *const policies[] = {"downtime", "xen"};
    static const char *const framings[] = {"libxc", "libxl", "xl"};
    uint64_t v;
    int c;

    while ((c = getopt_long(argc, argv, "lcD:P:R:B:b:p::s:j:z::f:I:N:t:J:qvh",
                            longopts, NULL)) != -1) {
        int r = cli_tls_option(c, optarg, tls);

        if (r < 0)
            return -1;
        if (r)
            continue;
        switch (c) {
        case 'l':
            o->flags |= XTK_SAVE_LIVE;
            break;
        case 'c':
            o->flags |= XTK_SAVE_KEEP;
            break;
        case 'p':
            if (optarg && strcmp(optarg, "auto")) {
                fprintf(stderr, "%s: --postcopy or --postcopy=auto\n",
                        cli_prog);
                return -1;
            }
            o->flags &= ~(XTK_SAVE_POSTCOPY | XTK_SAVE_POSTCOPY_AUTO);
            o->flags |= optarg ? XTK_SAVE_POSTCOPY_AUTO : XTK_SAVE_POSTCOPY;
            break;
        case 'D':
        case 'R':
        case 'j':
        case 'I':
        case 'N':
        case 't':
        case 'H':
        case 'T':
            if (cli_parse_u64(optarg, 1, c == 'j' ? 64 : 86400000, 0, &v) < 0) {
                if (c == 'H' || c == 'T')
                    fprintf(stderr, "%s: --%s: bad number '%s'\n", cli_prog,
                            c == 'H' ? "heartbeat" : "peer-timeout", optarg);
                else
                    fprintf(stderr, "%s: -%c: bad number '%s'\n", cli_prog, c,
                            optarg);
                return -1;
            }
            if (c == 'D')
                o->max_downtime_ms = (uint32_t)v;
            else if (c == 'R')
                o->max_rounds = (uint32_t)v;
            else if (c == 'j')
                o->senders = (uint32_t)v;
            else if (c == 'I')
                o->checkpoint_interval_ms = (uint32_t)v;
            else if (c == 'N')
                o->checkpoints = (uint32_t)v;
            else if (c == 'H')
                o->heartbeat_ms = (uint32_t)v;
            else if (c == 'T')
                o->peer_timeout_ms = (uint32_t)v;
            else
                o->timeout_ms = (uint32_t)v;
            break;
        case 'B':
            if (cli_parse_u64(optarg, 1, UINT64_MAX, 1, &o->max_bytes) < 0) {
                fprintf(stderr, "%s: bad size '%s'\n", cli_prog, optarg);
                return -1;
            }
            break;
        case 'U':
            o->flags |= XTK_SAVE_UNHELD;
            break;
        case 'W':
            if (cli_parse_u64(optarg, 1 << 20, UINT64_MAX, 1,
                              &o->max_postcopy_bandwidth) < 0) {
                fprintf(stderr, "%s: --postcopy-bandwidth: bad rate '%s'\n",
                        cli_prog, optarg);
                return -1;
            }
            break;
        case 'b':
            if (cli_parse_u64(optarg, 1, UINT64_MAX, 1, &o->max_bandwidth) <
                0) {
                fprintf(stderr, "%s: --bandwidth: bad rate '%s'\n", cli_prog,
                        optarg);
                return -1;
            }
            break;
        case 'P':
            if (pick(optarg, policies, 2, &o->policy) < 0) {
                fprintf(stderr, "%s: policy downtime or xen\n", cli_prog);
                return -1;
            }
            break;
        case 's':
            if (pick(optarg, suspends, 4, &o->suspend) < 0) {
                fprintf(stderr, "%s: suspend evtchn, store, pause or xl\n",
                        cli_prog);
                return -1;
            }
            break;
        case 'z':
            *level = -1;
            if (optarg && cli_parse_u64(optarg, 1, 9, 0, &v) < 0) {
                fprintf(stderr, "%s: compression level 1 to 9\n", cli_prog);
                return -1;
            }
            if (optarg)
                *level = (int)v;
            break;
        case 'f':
            if (pick(optarg, framings, 3, &fr->framing) < 0) {
                fprintf(stderr, "%s: format libxc, libxl or xl\n", cli_prog);
                return -1;
            }
            break;
        case 'S':
            t->ssh = optarg;
            break;
        case 'E':
            t->ssh_restore = optarg;
            break;
        case 'K':
            free(fr->config);
            fr->config = cli_read_config(optarg, &fr->config_len, &fr->json);
            if (!fr->config)
                return -1;
            break;
        case 'J':
            *json = optarg;
            break;
        case 'q':
            *quiet = 1;
            break;
        case 'v':
            *verbose = 1;
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
    if (fr->config && fr->framing != XTK_STREAM_FRAMING_XL) {
        fprintf(stderr, "%s: --config needs --format xl\n", cli_prog);
        return -1;
    }
    if ((o->heartbeat_ms ? o->heartbeat_ms : 200) >=
        (o->peer_timeout_ms ? o->peer_timeout_ms : 5000)) {
        fprintf(stderr, "%s: --heartbeat must be shorter than --peer-timeout\n",
                cli_prog);
        return -1;
    }
    if ((o->flags & (XTK_SAVE_POSTCOPY | XTK_SAVE_POSTCOPY_AUTO)) &&
        (!(o->flags & XTK_SAVE_LIVE) || (o->flags & XTK_SAVE_KEEP) ||
         o->checkpoint_interval_ms ||
         (strncmp(argv[argc - 1], "tcp:", 4) &&
          strncmp(argv[argc - 1], "ssh:", 4)))) {
        fprintf(stderr,
                "%s: --postcopy is for a live migration (--live, to "
                "tcp:HOST:PORT or ssh:HOST), not a checkpoint\n",
                cli_prog);
        return -1;
    }
    if (o->checkpoints && !o->checkpoint_interval_ms) {
        fprintf(stderr, "%s: --checkpoints needs --checkpoint-interval\n",
                cli_prog);
        return -1;
    }
    if (optind + 2 != argc) {
        cli_usage_error(optind + 2 > argc ? "expected a DOMAIN and a FILE, - "
                                            "or tcp:HOST:PORT"
                                          : "too many arguments");
        return -1;
    }
    if (cli_tls_options_ok(tls) < 0)
        return -1;
    if (cli_tls_wanted(tls) && strncmp(argv[optind + 1], "tcp:", 4)) {
        fprintf(stderr, "%s: TLS is for a destination tcp:HOST:PORT\n",
                cli_prog);
        return -1;
    }
    if ((t->ssh || t->ssh_restore) && strncmp(argv[optind + 1], "ssh:", 4)) {
        fprintf(stderr, "%s: --ssh and --ssh-restore are for ssh:HOST\n",
                cli_prog);
        return -1;
    }
    if (!strncmp(argv[optind + 1], "ssh:", 4)) {
        const char *h = argv[optind + 1] + 4;

        /* No option smuggled to ssh as a host name. */
        if (!*h || *h == '-' || strspn(h, " \t\n;&|$`'\"\\<>()") ||
            h[strcspn(h, " \t\n;&|$`'\"\\<>()")]) {
            fprintf(stderr, "%s: ssh:[USER@]HOST: bad host '%s'\n", cli_prog,
                    h);
            return -1;
        }
    }
    return 0;
}

/* ---- the destination -------------------------------------------------- */

/*
 * A temporary file beside the target: the stream goes there until commit,
 * which renames it over the target (through symlinks: the file a symlink
 * names is replaced, not the link).  A target that exists and is not a
 * regular file (/dev/null, a FIFO, a terminal) cannot be replaced so, and
 * is not meant to be: it is written in place, as `xl save` would.
 */
static int open_file(struct xtk_ctx *ctx, struct target *t)
{
    char dir[PATH_MAX], base[PATH_MAX];
    struct stat sb;

    if (stat(t->path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        if (S_ISDIR(sb.st_mode)) {
            fprintf(stderr, "%s: %s is a directory\n", cli_prog, t->path);
            return -1;
        }
        t->in_place = 1;
        t->fd = open(t->path, O_WRONLY | O_CLOEXEC);
        if (t->fd < 0) {
            fprintf(stderr, "%s: cannot open %s: %s\n", cli_prog, t->path,
                    strerror(errno));
            return -1;
        }
        t->out = xtk_stream_fd(ctx, t->fd, XTK_STREAM_WRITE);
        return t->out ? 0 : -1;
    }
    if (!realpath(t->path, t->real)) {
        if (errno != ENOENT || snprintf(t->real, sizeof(t->real), "%s",
                                        t->path) >= (int)sizeof(t->real)) {
            fprintf(stderr, "%s: %s: %s\n", cli_prog, t->path,
                    errno == ENOENT ? "name too long" : strerror(errno));
            return -1;
        }
    }
    snprintf(dir, sizeof(dir), "%s", t->real);
    snprintf(base, sizeof(base), "%s", t->real);
    if (snprintf(t->tmp, sizeof(t->tmp), "%s/.%s.xtk-XXXXXX", dirname(dir),
                 basename(base)) >= (int)sizeof(t->tmp)) {
        fprintf(stderr, "%s: %s: name too long\n", cli_prog, t->path);
        return -1;
    }
    t->fd = mkostemp(t->tmp, O_CLOEXEC);
    if (t->fd < 0) {
        fprintf(stderr, "%s: cannot create a file beside %s: %s\n", cli_prog,
                t->path, strerror(errno));
        t->tmp[0] = 0;
        return -1;
    }
    {
        mode_t um = umask(0); /* as a file created in place would be */

        umask(um);
        fchmod(t->fd, 0666 & ~um);
    }
    t->out = xtk_stream_fd(ctx, t->fd, XTK_STREAM_WRITE);
    return t->out ? 0 : -1;
}

/*
 * The stream is complete: finish it (the gzip trailer), make it durable,
 * and only then put it in place of whatever the target was.
 */
static int commit_file(struct xtk_save *sv, void *arg)
{
    struct target *t = arg;
    char dir[PATH_MAX];
    int dfd, r;

    (void)sv;
    t->closed = 1;
    r = xtk_stream_close(t->out);
    t->out = NULL;
    if (r == 0 && !t->in_place) {
        /* The fsync can take a while for a big file: say so (a progress
         * line on a terminal, in bytes like the rounds'). */
        struct xtk_logger *lg = xtk_ctx_logger(t->ctx);
        struct stat sb;
        unsigned long size =
            fstat(t->fd, &sb) == 0 ? (unsigned long)sb.st_size : 0;

        if (lg && lg->progress) /* drawn at once: total unknown */
            lg->progress(lg, "save", "syncing to disk", 0, 0);
        r = fsync(t->fd);
        if (r == 0 && lg && lg->progress)
            lg->progress(lg, "save", "syncing to disk", size, size);
    }
    if (r < 0) {
        fprintf(stderr, "%s: writing %s: %s\n", cli_prog, t->path,
                strerror(errno));
        return -1;
    }
    if (t->in_place)
        return 0;
    if (rename(t->tmp, t->real) < 0) {
        fprintf(stderr, "%s: cannot rename %s to %s: %s\n", cli_prog, t->tmp,
                t->real, strerror(errno));
        return -1;
    }
    t->tmp[0] = 0;
    snprintf(dir, sizeof(dir), "%s", t->real);
    dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* the rename itself */
        close(dfd);
    }
    return 0;
}

/*
 * ssh:[USER@]HOST, as xl migrate does it: ssh runs `xtk-restore --stdio`
 * there, and the stream goes on ssh's stdin, the destination's reply
 * comes on its stdout; both are one end of a socket pair, whose other end
 * the engine gets (it needs a socket).  What the far side says on stderr
 * comes out on ours as it is.  Our end, or -1 (and a message).
 */
static int ssh_start(struct target *t)
{
    char cmd[4096], remote[4096];
    int sp[2];

    if (snprintf(cmd, sizeof(cmd), "exec %s \"$@\"", t->ssh ? t->ssh : "ssh") >=
            (int)sizeof(cmd) ||
        snprintf(remote, sizeof(remote), "%s --stdio%s",
                 t->ssh_restore ? t->ssh_restore : "xtk-restore",
                 t->verbose ? " -v" : " -q") >= (int)sizeof(remote)) {
        fprintf(stderr, "%s: --ssh or --ssh-restore: too long\n", cli_prog);
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
        fprintf(stderr, "%s: socketpair: %s\n", cli_prog, strerror(errno));
        return -1;
    }
    t->ssh_pid = fork();
    if (t->ssh_pid < 0) {
        fprintf(stderr, "%s: fork: %s\n", cli_prog, strerror(errno));
        close(sp[0]);
        close(sp[1]);
        return -1;
    }
    if (t->ssh_pid == 0) {
        /* ssh's stdin and stdout: the pair's far end (dup2 clears
         * close-on-exec); its stderr is ours. */
        if (dup2(sp[1], 0) < 0 || dup2(sp[1], 1) < 0)
            _exit(127);
        signal(SIGPIPE, SIG_DFL);
        execl("/bin/sh", "sh", "-c", cmd, "sh", t->ssh_host, remote,
              (char *)NULL);
        _exit(127);
    }
    close(sp[1]);
    if (!t->quiet)
        fprintf(stderr, "%s: ssh %s: %s\n", cli_prog, t->ssh_host, remote);
    return sp[0];
}

/* ssh's end: it has its stdin's end by now and goes; one that does not
 * within 5 s is stopped.  Its failure is said (255: ssh's own). */
static void ssh_end(struct target *t, int failed)
{
    int status = 0;

    for (int i = 0; i < 500; i++) {
        pid_t r = waitpid(t->ssh_pid, &status, WNOHANG);

        if (r == t->ssh_pid)
            goto reaped;
        if (r < 0)
            return;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    kill(t->ssh_pid, SIGTERM);
    waitpid(t->ssh_pid, &status, 0);
reaped:
    if (WIFEXITED(status) && WEXITSTATUS(status) == 255)
        fprintf(stderr,
                "%s: ssh to %s failed (exit 255: see ssh's message "
                "above)\n",
                cli_prog, t->ssh_host);
    else if (failed && WIFEXITED(status) && WEXITSTATUS(status))
        fprintf(stderr, "%s: the destination at %s exited %d\n", cli_prog,
                t->ssh_host, WEXITSTATUS(status));
}

/* The stream of a migration on the connected socket t->fd (with TLS,
 * through the session, in line, and the reply comes back so). */
static int migration_stream(struct xtk_ctx *ctx, struct target *t,
                            struct xtk_save_options *o)
{
    t->out =
        t->tls ? xtk_stream_custom(ctx, cli_link_tcp_fd(t->tls),
                                   XTK_STREAM_WRITE, &cli_tls_stream_io, t->tls)
               : xtk_stream_socket(ctx, t->fd, XTK_STREAM_WRITE);
    if (!t->out ||
        xtk_stream_set_timeout(t->out, o->timeout_ms ? (int)o->timeout_ms
                                                     : SOCKET_TIMEOUT_MS) < 0)
        return -1;
    o->flags |= XTK_SAVE_MIGRATE;
    o->peer_fd = t->fd;
    o->peer_io = t->tls ? cli_link_peer_io(t->tls) : NULL;
    return 0;
}

static int open_target(struct xtk_ctx *ctx, const char *where, struct target *t,
                       struct xtk_save_options *o)
{
    t->fd = -1;
    if (!strcmp(where, "-")) {
        t->out = xtk_stream_fd(ctx, 1, XTK_STREAM_WRITE);
        return t->out ? 0 : -1;
    }
    if (!strncmp(where, "ssh:", 4)) {
        t->ssh_host = where + 4;
        t->fd = ssh_start(t);
        return t->fd < 0 ? -1 : migration_stream(ctx, t, o);
    }
    if (!strncmp(where, "tcp:", 4)) {
        char *host, *port;

        if (cli_split_endpoint(where + 4, 0, &host, &port) < 0)
            return -1;
        /* -t bounds the wait for the destination too. */
        t->fd = cli_tcp_connect(
            host, port, o->timeout_ms ? (int)o->timeout_ms : CONNECT_WAIT_MS,
            t->creds != NULL);
        if (t->fd >= 0 && t->creds) {
            char why[512];

            t->tls = cli_tls_start(t->creds, t->fd, host,
                                   o->timeout_ms ? (int)o->timeout_ms
                                                 : SOCKET_TIMEOUT_MS,
                                   why, sizeof(why));
            if (!t->tls) {
                fprintf(stderr, "%s: %s:%s: %s\n", cli_prog, host, port, why);
                close(t->fd);
                t->fd = -1;
            } else {
                if (!t->quiet)
                    fprintf(stderr, "%s: %s:%s: %s\n", cli_prog, host, port,
                            cli_link_describe(t->tls));
                t->fd = cli_link_plain_fd(t->tls);
            }
        }
        free(host);
        free(port);
        if (t->fd < 0)
            return -1;
        return migration_stream(ctx, t, o);
    }
    t->path = where;
    t->ctx = ctx;
    o->commit = commit_file;
    o->commit_arg = t;
    return open_file(ctx, t);
}

static void close_target(struct target *t, int failed)
{
    if (!t->closed)
        xtk_stream_close(t->out);
    if (t->tls) /* the session owns fd, its plain end */
        cli_link_end(t->tls, 5000);
    else if (t->fd >= 0)
        close(t->fd);
    if (t->ssh_pid > 0)
        ssh_end(t, failed);
    cli_tls_creds_free(t->creds);
    if (failed && t->tmp[0])
        unlink(t->tmp); /* never a half-written file in place */
}

/* ---- main ------------------------------------------------------------- */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    fprintf(stderr, "%s: signal %d: stopping\n", cli_prog, (int)sig);
    xtk_save_cancel(arg);
}

int main(int argc, char **argv)
{
    struct xtk_save_options o = {0};
    struct framing fr = {0};
    struct target t = {0};
    struct cli_tls_opts tls = {0};
    const char *json = NULL;
    int level = -2, quiet = 0, verbose = 0, rc = 1;
    struct event *sigs[3] = {0};
    static const int signums[3] = {SIGINT, SIGTERM, SIGHUP};
    struct xtk_domain *dom = NULL;
    struct xtk_save *sv = NULL;
    struct xtk_ctx *ctx;
    sigset_t stop_sigs;

    cli_init(argv);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&stop_sigs);
    for (int i = 0; i < 3; i++)
        sigaddset(&stop_sigs, signums[i]);
    if (parse_options(argc, argv, &o, &level, &json, &quiet, &verbose, &fr,
                      &tls, &t) < 0) {
        free(fr.config);
        return 2;
    }
    if (!strncmp(argv[optind + 1], "tcp:", 4)) { /* checked up front */
        char *host = NULL, *port = NULL;
        int ok =
            cli_split_endpoint(argv[optind + 1] + 4, 0, &host, &port) == 0 &&
            cli_port_ok(port, 0);

        free(host);
        free(port);
        if (!ok) {
            free(fr.config);
            return 2;
        }
    }
    /* The credentials are read before anything starts. */
    if (cli_tls_wanted(&tls)) {
        t.creds = cli_tls_creds_load(&tls, 0);
        if (!t.creds) {
            free(fr.config);
            return 1;
        }
    }
    t.quiet = quiet;
    t.verbose = verbose;
    ctx = cli_ctx_open();
    if (!ctx) {
        cli_tls_creds_free(t.creds);
        return 1;
    }
    if (verbose)
        cli_verbose();
    dom = xtk_domain_lookup(ctx, argv[optind]);
    if (!dom) {
        fprintf(stderr, "%s: %s: %s\n", cli_prog, argv[optind],
                errno == ENOENT ? "no such domain" : strerror(errno));
        goto out;
    }
    /* xl's file without --config: the domain's own, as xl save writes it
     * (libxl's JSON, on Xen); none where the hypervisor has none. */
    if (fr.framing == XTK_STREAM_FRAMING_XL && !fr.config) {
        char *cfg = NULL;
        size_t clen = 0;

        if (xtk_domain_xl_config(dom, &cfg, &clen) == 0) {
            if (clen > XTK_XL_OPTIONAL_MAX - 4) {
                fprintf(stderr,
                        "%s: the domain's config is %zu bytes: too "
                        "big for xl's header\n",
                        cli_prog, clen);
                free(cfg);
                goto out;
            }
            fr.config = (uint8_t *)cfg;
            fr.config_len = (uint32_t)clen;
            fr.json = 1;
        } else if (errno != ENOTSUP) {
            fprintf(stderr,
                    "%s: %s: its config for xl's header: %s (give "
                    "one with --config)\n",
                    cli_prog, argv[optind], strerror(errno));
            goto out;
        }
    }
    if (open_target(ctx, argv[optind + 1], &t, &o) < 0)
        goto out;
    /* From here a stop signal before the save's handlers are in is held,
     * not fatal (the target is open: a file's temporary copy, a
     * connection), and then cancels the save as any other; before, while
     * the target may take seconds to connect, it ends xtk-save at once. */
    sigprocmask(SIG_BLOCK, &stop_sigs, NULL);
    if (level != -2 && xtk_stream_push_zlib(t.out, level) < 0) {
        fprintf(stderr, "%s: compression: %s\n", cli_prog, strerror(errno));
        goto out;
    }
    /* An xl save file (or libxl's stream): the stream adds libxl's records
     * after each CHECKPOINT and the END itself. */
    if (xtk_stream_write_framing(t.out, fr.framing,
                                 fr.json ? XTK_XL_CONFIG_JSON : 0, fr.config,
                                 fr.config_len) < 0) {
        fprintf(stderr, "%s: the stream's framing: %s\n", cli_prog,
                strerror(errno));
        goto out;
    }
    sv = xtk_save_new(dom, t.out, &o);
    if (!sv) {
        fprintf(stderr, "%s: %s\n", cli_prog, strerror(errno));
        goto out;
    }
    for (int i = 0; i < 3; i++) {
        sigs[i] =
            evsignal_new(xtk_ctx_event_base(ctx), signums[i], on_signal, sv);
        if (sigs[i])
            evsignal_add(sigs[i], NULL);
    }
    sigprocmask(SIG_UNBLOCK, &stop_sigs, NULL);
    if (xtk_save_run(sv) == 0)
        rc = 0;
    else
        cli_error("%s: save failed: %s", argv[optind], strerror(errno));
    /* A failed save's report with -v only, as xtk-restore's: one line
     * says why. */
    if (!quiet && (rc == 0 || verbose))
        cli_write_report(xtk_save_stats(sv), XTK_STATS_TABLE, NULL);
    if (json && cli_write_report(xtk_save_stats(sv), XTK_STATS_JSON, json) < 0)
        rc = 1;
out:
    for (int i = 0; i < 3; i++)
        if (sigs[i])
            event_free(sigs[i]);
    xtk_save_free(sv);
    close_target(&t, rc != 0);
    xtk_domain_close(dom);
    xtk_ctx_close(ctx);
    free(fr.config);
    return rc;
}
