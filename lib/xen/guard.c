/*
 * xtk-xen-guard - undoes what a dead toolstack held on a Xen domain.
 *
 * Started by libxtk's xen backend (lib/xen/xen.c) with its end of a socket
 * on standard input; see guard.h for the protocol.  It detaches at once
 * (its own session, so that a ^C aimed at the toolstack does not reach
 * it), says it is ready with a byte on the socket, and reads states until
 * end of file (or SIGTERM).  If the last state holds
 * anything, the toolstack died with it: then, in this order, the guard
 *
 *   releases the pauses it held,
 *   waits for a guest whose suspend it had requested (taking back a
 *   "suspend" still unread in control/shutdown after 5 s, and waiting up
 *   to a minute for a guest that read it to suspend),
 *   gives the suspend notification back to Xen (DOMCTL_subscribe of
 *   port 0: otherwise Xen signals a dead port instead of VIRQ_DOM_EXC,
 *   and xl's next save waits a minute for @releaseDomain),
 *   switches the dirty log off,
 *   resumes the guest, if it suspended (last, so that a save started as
 *   soon as it runs finds nothing of the dead one's left),
 *
 * and says what it did on standard error.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libxl.h>
#include <xenctrl.h>
#include <xenguest.h>

#include "xen/guard.h"
#include "xs-client.h"

#define XS_RESUME 18
/* How long a guest that took the request may take to suspend (libxl
 * waits as long once the guest has acknowledged). */
#define SUSPEND_WAIT_MS 60000
/* How long an unacknowledged request is left before it is taken back,
 * and how long a guest may still suspend after that. */
#define ACK_WAIT_MS 5000
#define WITHDRAWN_WAIT_MS 30000

static const char *me = "xtk-xen-guard";
static volatile sig_atomic_t terminated;

static void on_term(int sig)
{
    (void)sig;
    terminated = 1;
}

static void sleep_ms(unsigned int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* 1: the domain sits suspended; 0: it does not; -1: it is gone. */
static int suspended(xc_interface *xch, uint32_t domid)
{
    xc_domaininfo_t xi;

    if (xc_domain_getinfolist(xch, domid, 1, &xi) != 1 || xi.domain != domid)
        return -1;
    return (xi.flags & XEN_DOMINF_shutdown) &&
           ((xi.flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask) ==
               SHUTDOWN_suspend;
}

/* Takes back a "suspend" the guest has not acknowledged (it clears the
 * node when it reads the request). */
static int withdraw_request(uint32_t domid)
{
    char path[64], val[32];
    int fd = xtk__xs_connect(xtk__xs_path(NULL)), done = 0;

    if (fd < 0)
        return 0;
    snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown", domid);
    if (xtk__xs_request(fd, XTK_XS_READ, path, strlen(path) + 1, NULL, 0, val,
                        sizeof(val) - 1, 5000) >= 0 &&
        !strcmp(val, "suspend") && xtk__xs_write(fd, path, "") == 0) {
        fprintf(stderr, "%s: domain %u: took back the unread suspend request\n",
                me, domid);
        done = 1;
    }
    close(fd);
    return done;
}

static void resume(xc_interface *xch, uint32_t domid)
{
    char payload[16];
    int fd;

    if (xc_domain_resume(xch, domid, 1) < 0) {
        fprintf(stderr, "%s: domain %u: resume: %s\n", me, domid,
                strerror(errno));
        return;
    }
    fd = xtk__xs_connect(xtk__xs_path(NULL));
    snprintf(payload, sizeof(payload), "%u", domid);
    if (fd >= 0)
        xtk__xs_request(fd, XS_RESUME, payload, strlen(payload) + 1, NULL, 0,
                        NULL, 0, 5000);
    if (fd >= 0)
        close(fd);
    fprintf(stderr, "%s: domain %u: resumed the suspended guest\n", me, domid);
}

static void xtl_quiet(struct xentoollog_logger *l, xentoollog_level level,
                      int errnoval, const char *context, const char *format,
                      va_list al)
{
    (void)l, (void)level, (void)errnoval, (void)context, (void)format;
    (void)al;
}

/* A domain built for a restore that never ran: destroyed as xl would. */
static void destroy(uint32_t domid)
{
    xentoollog_logger logger = {.vmessage = xtl_quiet};
    libxl_ctx *lctx = NULL;
    int rc = -1;

    if (!libxl_ctx_alloc(&lctx, LIBXL_VERSION, 0, &logger)) {
        rc = libxl_domain_destroy(lctx, domid, NULL);
        libxl_ctx_free(lctx);
    }
    if (rc)
        fprintf(stderr,
                "%s: domain %u: cannot destroy the half-built "
                "domain (%d)\n",
                me, domid, rc);
    else
        fprintf(stderr, "%s: domain %u: destroyed the half-built domain\n", me,
                domid);
}

static void undo(const struct xtk__xen_guard_state *st)
{
    if (st->building) {
        destroy(st->domid);
        return;
    }

    xc_interface *xch = xc_interface_open(NULL, NULL, 0);
    uint32_t d = st->domid;
    int s = 0;

    if (!xch) {
        fprintf(stderr, "%s: domain %u: no libxenctrl: %s\n", me, d,
                strerror(errno));
        return;
    }
    for (uint32_t i = 0; i < st->held_pauses; i++)
        if (xc_domain_unpause(xch, d) < 0)
            break;
    if (st->held_pauses)
        fprintf(stderr, "%s: domain %u: released %u pause(s)\n", me, d,
                st->held_pauses);
    if (st->requested) {
        /* A store request the guest has not read after ACK_WAIT_MS is
         * taken back; one it has read (or a notification on its
         * channel) is waited for up to SUSPEND_WAIT_MS. */
        /* Taking the request back is a read then a write: a guest that
         * read it just before still suspends, so the wait goes on (up to
         * WITHDRAWN_WAIT_MS more) after it. */
        int withdrawn = 0, until = SUSPEND_WAIT_MS;
        for (int t = 0; t < until; t += 20) {
            s = suspended(xch, d);
            if (s)
                break;
            if (st->store && !withdrawn && t >= ACK_WAIT_MS &&
                withdraw_request(d)) {
                withdrawn = 1;
                until = t + WITHDRAWN_WAIT_MS;
            }
            if (!st->store && t >= ACK_WAIT_MS)
                break; /* EVTCHN: no way to tell it was taken */
            sleep_ms(20);
        }
    }
    /* Both before the resume: a save started once the guest runs again
     * must find neither its subscription nor its log taken away. */
    if (st->subscribed && xc_domain_subscribe_for_suspend(xch, d, 0) == 0)
        fprintf(stderr, "%s: domain %u: suspend notification given back\n", me,
                d);
    if (st->logdirty &&
        xc_shadow_control(xch, d, XEN_DOMCTL_SHADOW_OP_OFF, NULL, 0) == 0)
        fprintf(stderr, "%s: domain %u: dirty log off\n", me, d);
    if (s == 1)
        resume(xch, d);
    else if (st->requested)
        fprintf(stderr,
                "%s: domain %u: it did not suspend: nothing to "
                "resume\n",
                me, d);
    xc_interface_close(xch);
}

int main(int argc, char **argv)
{
    struct xtk__xen_guard_state st, last = {0};
    size_t got = 0;
    ssize_t n;
    pid_t pid;

    (void)argv;
    if (argc != 1) {
        fprintf(stderr,
                "usage: %s  (started by libxtk, with its socket as stdin)\n",
                me);
        return 2;
    }
    /* Detach: the toolstack reaps our parent at once, and nothing aimed at
     * its process group or terminal reaches us. */
    pid = fork();
    if (pid < 0)
        return 1;
    if (pid > 0)
        _exit(0);
    setsid();
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    /* Stopped (a service manager stopping the toolstack's unit): undo as
     * for an end of file. */
    sigaction(SIGTERM, &(struct sigaction){.sa_handler = on_term}, NULL);
    if (write(0, "r", 1) != 1) /* ready */
        return 1;

    for (;;) {
        n = read(0, (char *)&st + got, sizeof(st) - got);
        if (n < 0 && errno == EINTR && !terminated)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got < sizeof(st))
            continue;
        got = 0;
        if (st.magic != XTK__XEN_GUARD_MAGIC) {
            fprintf(stderr, "%s: a malformed state: stopping\n", me);
            return 1;
        }
        last = st;
    }
    if (last.magic == XTK__XEN_GUARD_MAGIC &&
        (last.held_pauses || last.logdirty || last.subscribed ||
         last.requested || last.building)) {
        fprintf(stderr, "%s: domain %u: the toolstack went away holding it\n",
                me, last.domid);
        undo(&last);
    }
    return 0;
}
