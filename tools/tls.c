/*
 * tls.c - TLS for the streams that cross a network: credentials, the
 * handshake and the peer's checks, the stream and the engines' messages
 * through the session in line; and the relay for ssh's far side (tls.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "cli.h"
#include "tls.h"

/*
 * TLS 1.3 only (nothing older is offered or taken); AES-128-GCM first (the
 * fastest with AES-NI: a migration is bulk data), then AES-256-GCM and
 * ChaCha20-Poly1305.  PSK: with an (EC)DHE exchange, so a key that leaks
 * later does not open recorded streams.
 */
#define PRIO_X509                                                              \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:"     \
    "+CHACHA20-POLY1305"
#define PRIO_PSK PRIO_X509 ":-KX-ALL:+ECDHE-PSK:+DHE-PSK"

/* What a relay thread moves at a time: what it holds is hidden from the
 * save's view of the link's queue (peer_backlog), so not much. */
#define RELAY_BUF (128u << 10)
#define OUT_BUF (64u << 10) /* the stream's writes, gathered into records */
#define EBUF (OUT_BUF + (16u << 10)) /* OUT_BUF's records, encrypted */

struct cli_tls_creds {
    int server;
    gnutls_certificate_credentials_t x509;
    gnutls_psk_server_credentials_t psk_server;
    gnutls_psk_client_credentials_t psk_client;
    const char *authz[CLI_TLS_AUTHZ_MAX]; /* the caller's strings */
    int n_authz;
    char *hostname; /* a copy, or NULL */
};

struct cli_link {
    gnutls_session_t s; /* TLS; NULL: plain fds */
    int tcp;            /* the TLS side */
    int in_fd, out_fd;  /* without TLS: the far side's two ends */
    int plain[2];       /* [0] the relay's end, [1] the engine's */
    char *ubuf, *dbuf;  /* the threads' buffers (freed at the end, even
                           when a thread was cancelled) */
    /* The stream's own direction (cli_tls_stream_io): */
    pthread_mutex_t send_lock; /* the session's senders */
    char *obuf;                /* writes gathered, up to OUT_BUF */
    size_t out_used, out_sent;
    /* Their records, encrypted, gathered for one send(2) (tls_push):
     * [e_sent, e_used) not yet out. */
    char *ebuf;
    size_t e_used, e_sent;
    int gathering;
    unsigned char peek[16]; /* read ahead by cli_link_peek */
    size_t peek_len, peek_off;
    struct xtk_peer_io peer_io; /* the engines' messages, in line */
    pthread_t up, down;
    char desc[256];
};

int cli_tls_wanted(const struct cli_tls_opts *o)
{
    return o->dir || o->psk_file;
}

int cli_tls_option(int c, const char *arg, struct cli_tls_opts *o)
{
    switch (c) {
    case CLI_OPT_TLS:
        if (!o->dir)
            o->dir = CLI_TLS_DIR;
        return 1;
    case CLI_OPT_TLS_DIR:
        o->dir = arg;
        return 1;
    case CLI_OPT_TLS_PSK:
        o->psk_file = arg;
        return 1;
    case CLI_OPT_TLS_PSK_IDENTITY:
        o->psk_identity = arg;
        return 1;
    case CLI_OPT_TLS_AUTHZ:
        if (o->n_authz == CLI_TLS_AUTHZ_MAX || !*arg) {
            fprintf(stderr, "%s: --tls-authz: %s\n", cli_prog,
                    *arg ? "too many names" : "an empty name");
            return -1;
        }
        o->authz[o->n_authz++] = arg;
        return 1;
    case CLI_OPT_TLS_HOSTNAME:
        o->hostname = arg;
        return 1;
    }
    return 0;
}

int cli_tls_options_ok(const struct cli_tls_opts *o)
{
    if (o->dir && o->psk_file) {
        fprintf(stderr,
                "%s: x509 (--tls, --tls-dir) or a pre-shared key "
                "(--tls-psk), not both\n",
                cli_prog);
        return -1;
    }
    if (!cli_tls_wanted(o) && (o->n_authz || o->hostname || o->psk_identity)) {
        fprintf(stderr,
                "%s: --tls-authz, --tls-hostname and --tls-psk-identity "
                "need --tls, --tls-dir or --tls-psk\n",
                cli_prog);
        return -1;
    }
    if (o->hostname && !o->dir) {
        fprintf(stderr, "%s: --tls-hostname is for x509 (--tls)\n", cli_prog);
        return -1;
    }
    if (o->psk_identity && !o->psk_file) {
        fprintf(stderr, "%s: --tls-psk-identity needs --tls-psk\n", cli_prog);
        return -1;
    }
    return 0;
}

void cli_tls_creds_free(struct cli_tls_creds *c)
{
    if (!c)
        return;
    if (c->x509)
        gnutls_certificate_free_credentials(c->x509);
    if (c->psk_server)
        gnutls_psk_free_server_credentials(c->psk_server);
    if (c->psk_client)
        gnutls_psk_free_client_credentials(c->psk_client);
    free(c->hostname);
    free(c);
}

static int load_x509(struct cli_tls_creds *c, const char *dir)
{
    const char *who = c->server ? "server" : "client";
    char ca[4096], crl[4096], cert[4096], key[4096];
    int r;

    snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
    snprintf(crl, sizeof(crl), "%s/ca-crl.pem", dir);
    snprintf(cert, sizeof(cert), "%s/%s-cert.pem", dir, who);
    snprintf(key, sizeof(key), "%s/%s-key.pem", dir, who);
    r = gnutls_certificate_allocate_credentials(&c->x509);
    if (r < 0)
        goto fail;
    r = gnutls_certificate_set_x509_trust_file(c->x509, ca,
                                               GNUTLS_X509_FMT_PEM);
    if (r <= 0) { /* no authority at all verifies nobody */
        fprintf(stderr, "%s: %s: %s\n", cli_prog, ca,
                r < 0 ? gnutls_strerror(r) : "no certificate in it");
        return -1;
    }
    if (access(crl, F_OK) == 0) {
        r = gnutls_certificate_set_x509_crl_file(c->x509, crl,
                                                 GNUTLS_X509_FMT_PEM);
        if (r < 0) {
            fprintf(stderr, "%s: %s: %s\n", cli_prog, crl, gnutls_strerror(r));
            return -1;
        }
    }
    r = gnutls_certificate_set_x509_key_file(c->x509, cert, key,
                                             GNUTLS_X509_FMT_PEM);
    if (r < 0) {
        fprintf(stderr, "%s: %s and %s: %s\n", cli_prog, cert, key,
                gnutls_strerror(r));
        return -1;
    }
    return 0;
fail:
    fprintf(stderr, "%s: TLS credentials: %s\n", cli_prog, gnutls_strerror(r));
    return -1;
}

/* The key of identity's line in a psktool file (the first line's when
 * identity is NULL); *id gets the identity.  0 or -1 (and a message). */
static int psk_lookup(const char *path, const char *identity, char **id,
                      gnutls_datum_t *key)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    int found = 0;

    if (!f) {
        fprintf(stderr, "%s: %s: %s\n", cli_prog, path, strerror(errno));
        return -1;
    }
    while (!found && fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':'), *end;

        line[strcspn(line, "\r\n")] = 0;
        if (!colon || colon == line)
            continue;
        *colon = 0;
        if (identity && strcmp(line, identity))
            continue;
        end = colon + 1;
        if (!*end || strspn(end, "0123456789abcdefABCDEF") != strlen(end) ||
            strlen(end) % 2)
            break; /* found, but not a hex key */
        *id = strdup(line);
        key->data = (unsigned char *)strdup(end);
        key->size = (unsigned int)strlen(end);
        found = *id && key->data ? 1 : -1;
    }
    fclose(f);
    if (found == 1)
        return 0;
    if (found < 0)
        fprintf(stderr, "%s: %s\n", cli_prog, strerror(ENOMEM));
    else
        fprintf(stderr, "%s: %s: no %s%s%s line of IDENTITY:HEXKEY\n", cli_prog,
                path, identity ? "'" : "", identity ? identity : "",
                identity ? "'" : "good");
    return -1;
}

struct cli_tls_creds *cli_tls_creds_load(const struct cli_tls_opts *o,
                                         int server)
{
    struct cli_tls_creds *c = calloc(1, sizeof(*c));
    int r;

    if (!c) {
        fprintf(stderr, "%s: %s\n", cli_prog, strerror(errno));
        return NULL;
    }
    c->server = server;
    memcpy(c->authz, o->authz, sizeof(c->authz));
    c->n_authz = o->n_authz;
    if (o->hostname && !(c->hostname = strdup(o->hostname))) {
        fprintf(stderr, "%s: %s\n", cli_prog, strerror(errno));
        goto fail;
    }
    if (o->dir)
        return load_x509(c, o->dir) < 0 ? (cli_tls_creds_free(c), NULL) : c;
    if (server) {
        if (access(o->psk_file, R_OK) < 0) {
            fprintf(stderr, "%s: %s: %s\n", cli_prog, o->psk_file,
                    strerror(errno));
            goto fail;
        }
        r = gnutls_psk_allocate_server_credentials(&c->psk_server);
        if (r >= 0)
            r = gnutls_psk_set_server_credentials_file(c->psk_server,
                                                       o->psk_file);
        if (r < 0) {
            fprintf(stderr, "%s: %s: %s\n", cli_prog, o->psk_file,
                    gnutls_strerror(r));
            goto fail;
        }
    } else {
        char *id = NULL;
        gnutls_datum_t key = {0};

        if (psk_lookup(o->psk_file, o->psk_identity, &id, &key) < 0)
            goto fail;
        r = gnutls_psk_allocate_client_credentials(&c->psk_client);
        if (r >= 0)
            r = gnutls_psk_set_client_credentials(c->psk_client, id, &key,
                                                  GNUTLS_PSK_KEY_HEX);
        free(id);
        free(key.data);
        if (r < 0) {
            fprintf(stderr, "%s: %s: %s\n", cli_prog, o->psk_file,
                    gnutls_strerror(r));
            goto fail;
        }
    }
    return c;
fail:
    cli_tls_creds_free(c);
    return NULL;
}

/* Whether name (len bytes) is one of the allowlist's (DNS names and
 * identities compare without case, as DNS does). */
static int in_list(const struct cli_tls_creds *c, const char *name, size_t len)
{
    for (int i = 0; i < c->n_authz; i++)
        if (strlen(c->authz[i]) == len && !strncasecmp(c->authz[i], name, len))
            return 1;
    return 0;
}

/* Whether the peer's certificate carries a name of the allowlist: its
 * common name, a DNS name, or its distinguished name. */
static int x509_authorized(gnutls_session_t s, const struct cli_tls_creds *c,
                           char *who, size_t who_len)
{
    const gnutls_datum_t *certs;
    unsigned int n = 0;
    gnutls_x509_crt_t crt;
    gnutls_datum_t dn = {0};
    char buf[1024];
    size_t len;
    int ok = 0, authz = c->n_authz > 0;

    certs = gnutls_certificate_get_peers(s, &n);
    if (!certs || !n || gnutls_x509_crt_init(&crt) < 0)
        return 0;
    if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) < 0)
        goto out;
    if (gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0) {
        snprintf(who, who_len, "%.*s", (int)dn.size, (const char *)dn.data);
        ok = authz && in_list(c, (const char *)dn.data, dn.size);
        gnutls_free(dn.data);
    }
    len = sizeof(buf);
    if (!ok && authz &&
        gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0,
                                      buf, &len) >= 0)
        ok = in_list(c, buf, strlen(buf));
    for (unsigned int i = 0; !ok && authz; i++) {
        unsigned int critical;
        int type;

        len = sizeof(buf) - 1;
        type =
            gnutls_x509_crt_get_subject_alt_name(crt, i, buf, &len, &critical);
        if (type < 0)
            break;
        buf[len] = 0;
        if (type == GNUTLS_SAN_DNSNAME)
            ok = in_list(c, buf, strlen(buf));
    }
    if (!authz)
        ok = 1;
out:
    gnutls_x509_crt_deinit(crt);
    return ok;
}

/* The peer's checks after the handshake: 0, or -1 with why. */
static int check_peer(struct cli_tls_creds *c, struct cli_link *t,
                      const char *host, char *why, size_t why_len)
{
    char who[512] = "";

    if (c->x509) {
        const char *name = c->server ? NULL : c->hostname ? c->hostname : host;
        unsigned int status = 0, n = 0;
        gnutls_typed_vdata_st data[2];
        int r;

        /* The chain, the name connected to, and the certificate's purpose
         * (a listener's for TLS servers, a source's for clients), when it
         * says. */
        data[n].type = GNUTLS_DT_KEY_PURPOSE_OID;
        data[n].data = (unsigned char *)(c->server ? GNUTLS_KP_TLS_WWW_CLIENT
                                                   : GNUTLS_KP_TLS_WWW_SERVER);
        data[n++].size = 0;
        if (name) {
            data[n].type = GNUTLS_DT_DNS_HOSTNAME;
            data[n].data = (unsigned char *)name;
            data[n++].size = 0;
        }
        r = gnutls_certificate_verify_peers(t->s, data, n, &status);

        if (r < 0) {
            snprintf(why, why_len, "the peer's certificate: %s",
                     gnutls_strerror(r));
            return -1;
        }
        if (status) {
            gnutls_datum_t out = {0};

            gnutls_certificate_verification_status_print(
                status, GNUTLS_CRT_X509, &out, 0);
            snprintf(why, why_len, "the peer's certificate%s%s is refused: %s",
                     name ? " for " : "", name ? name : "",
                     out.data ? (const char *)out.data : "not trusted");
            gnutls_free(out.data);
            return -1;
        }
        if (!x509_authorized(t->s, c, who, sizeof(who))) {
            snprintf(why, why_len, "'%s' is not an accepted peer (--tls-authz)",
                     who);
            return -1;
        }
    } else {
        const char *id = c->server ? gnutls_psk_server_get_username(t->s) : "";

        snprintf(who, sizeof(who), "PSK identity '%s'", id ? id : "");
        if (c->server && c->n_authz && !(id && in_list(c, id, strlen(id)))) {
            snprintf(why, why_len, "%s is not an accepted peer (--tls-authz)",
                     who);
            return -1;
        }
    }
    {
        char *d = gnutls_session_get_desc(t->s);

        snprintf(t->desc, sizeof(t->desc), "%s%s%s", d ? d : "TLS",
                 who[0] ? ", peer " : "", who);
        gnutls_free(d);
    }
    return 0;
}

/*
 * In TLS 1.3 either side may still refuse the other once its own handshake
 * is over: the listener checks the source's certificate after the source
 * has finished, and the source the listener's after the listener has.  So
 * before any of the stream goes, each says it accepts the other, the
 * listener first: one byte each way.  A refusal then arrives as the
 * other's alert, here, where it can be said and (listening) the next
 * connection taken, rather than as a stream that breaks at its start.
 */
#define AGREE_BYTE 0x58 /* "X" */

static int agree(struct cli_tls_creds *c, struct cli_link *t, int timeout_ms,
                 char *why, size_t why_len)
{
    unsigned char b = AGREE_BYTE;
    ssize_t r = 0;

    gnutls_record_set_timeout(t->s,
                              timeout_ms > 0 ? (unsigned)timeout_ms : 10000u);
    for (int step = 0; step < 2; step++) {
        int sending = (step == 0) == (c->server != 0);

        do {
            if (sending)
                r = gnutls_record_send(t->s, &b, 1);
            else
                r = gnutls_record_recv(t->s, &b, 1);
        } while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
        if (r == 1 && (sending || b == AGREE_BYTE))
            continue;
        if (r == GNUTLS_E_FATAL_ALERT_RECEIVED)
            snprintf(why, why_len, "the peer refused this side: %s",
                     gnutls_alert_get_name(gnutls_alert_get(t->s)));
        else if (r < 0)
            snprintf(why, why_len, "the TLS session broke: %s",
                     gnutls_strerror((int)r));
        else
            snprintf(why, why_len, "it ended the session unaccepted");
        return -1;
    }
    gnutls_record_set_timeout(t->s, 0);
    return 0;
}

/* ---- the relay ---------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Waits for the (non-blocking) TCP socket; a TLS call said E_AGAIN. */
static void tcp_wait(struct cli_link *t, short events)
{
    struct pollfd p = {.fd = t->tcp, .events = events};

    while (poll(&p, 1, -1) < 0 && errno == EINTR)
        ;
}

/* The engine's bytes to the far side's stdout (ssh's pipe); at their end,
 * its end. */
static void *up_main(void *arg)
{
    struct cli_link *t = arg;
    char *buf = t->ubuf;

    for (;;) {
        ssize_t n = read(t->plain[0], buf, RELAY_BUF);
        int r;

        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0) {
            if (shutdown(t->out_fd, SHUT_WR) < 0)
                close(t->out_fd); /* a pipe: its end is its close */
            break;
        }
        if (n < 0)
            break;
        r = write_all(t->out_fd, buf, (size_t)n);
        if (r < 0) {
            /* The far side is gone: the engine's writes fail (EPIPE) and
             * its reads end, so it sees the connection go. */
            shutdown(t->plain[0], SHUT_RDWR);
            break;
        }
    }
    return NULL;
}

/* The far side's stdin (ssh's pipe) to the engine; at its end, the
 * engine's. */
static void *down_main(void *arg)
{
    struct cli_link *t = arg;
    char *buf = t->dbuf;

    for (;;) {
        ssize_t r = read(t->in_fd, buf, RELAY_BUF);

        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            /* the stream's own END says whether all of it came */
            shutdown(t->plain[0], SHUT_WR);
            break;
        }
        if (r < 0) {
            shutdown(t->plain[0], SHUT_RDWR);
            break;
        }
        if (write_all(t->plain[0], buf, (size_t)r) < 0)
            break; /* the engine is gone */
    }
    return NULL;
}

/* ---- the stream's own direction, in line (xtk_stream_custom) -------------
 *
 * The stream itself does not go through the relay: the save's senders
 * encrypt as they write, the restore's reader decrypts as it reads, with
 * no thread between them and the socket (a hop each way cost the
 * stop-and-copy about as much as the rest of it: docs/benchmarks.md).
 * Writes gather into the link's buffer (pages come 4 KiB at a time; a
 * record is up to 16 KiB) and go out on the stream's flush.  A listener's
 * session has one reader (the restore's) and one sender (the relay's up
 * thread); a source's, one reader (the relay's down thread) and senders
 * serialised by the send lock (the stream's writers, the relay's bye).
 */

/*
 * The source's session writes its records through here (the send lock
 * held): while drain_out encrypts a gather buffer, and while some of its
 * records are not out yet, they are appended to ebuf, which leaves in one
 * send(2) (a 64 KiB buffer is four 16 KiB records: one write, not four);
 * otherwise, straight to the socket.
 */
static ssize_t tls_push(gnutls_transport_ptr_t p, const void *data, size_t len)
{
    struct cli_link *t = p;
    ssize_t n;

    if (t->gathering || t->e_sent < t->e_used) {
        if (t->e_used + len > EBUF) {
            gnutls_transport_set_errno(t->s, EAGAIN);
            return -1;
        }
        memcpy(t->ebuf + t->e_used, data, len);
        t->e_used += len;
        return (ssize_t)len;
    }
    n = send(t->tcp, data, len, MSG_NOSIGNAL);
    if (n < 0)
        gnutls_transport_set_errno(t->s, errno);
    return n;
}

/* Sends the encrypted records gathered: 0, or -1 with errno (EAGAIN:
 * call again; the rest is kept). */
static int flush_records(struct cli_link *t)
{
    while (t->e_sent < t->e_used) {
        ssize_t n = send(t->tcp, t->ebuf + t->e_sent, t->e_used - t->e_sent,
                         MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                fprintf(stderr, "%s: TLS: sending: %s\n", cli_prog,
                        strerror(errno));
                errno = EPIPE;
            } else {
                errno = EAGAIN;
            }
            return -1;
        }
        t->e_sent += (size_t)n;
    }
    t->e_used = t->e_sent = 0;
    return 0;
}

/* Sends what the gather buffer holds (the send lock held): 0, or -1 with
 * errno (EAGAIN: call again, the same bytes are still there). */
static int drain_out(struct cli_link *t)
{
    if (flush_records(t) < 0)
        return -1;
    t->gathering = 1;
    while (t->out_sent < t->out_used) {
        ssize_t r = gnutls_record_send(t->s, t->obuf + t->out_sent,
                                       t->out_used - t->out_sent);

        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
            t->gathering = 0;
            if (flush_records(t) < 0 && errno != EAGAIN)
                return -1;
            errno = r == GNUTLS_E_AGAIN ? EAGAIN : EINTR;
            return -1;
        }
        if (r < 0) {
            t->gathering = 0;
            fprintf(stderr, "%s: TLS: sending: %s\n", cli_prog,
                    gnutls_strerror((int)r));
            errno = EPIPE;
            return -1;
        }
        t->out_sent += (size_t)r;
    }
    t->gathering = 0;
    t->out_used = t->out_sent = 0;
    return flush_records(t);
}

static ssize_t io_write(void *arg, const void *buf, size_t len)
{
    struct cli_link *t = arg;
    size_t n;

    pthread_mutex_lock(&t->send_lock);
    if (t->out_used == OUT_BUF && drain_out(t) < 0) {
        pthread_mutex_unlock(&t->send_lock);
        return -1;
    }
    n = OUT_BUF - t->out_used < len ? OUT_BUF - t->out_used : len;
    memcpy(t->obuf + t->out_used, buf, n);
    t->out_used += n;
    pthread_mutex_unlock(&t->send_lock);
    return (ssize_t)n;
}

static int io_flush(void *arg)
{
    struct cli_link *t = arg;
    int r;

    pthread_mutex_lock(&t->send_lock);
    r = drain_out(t);
    pthread_mutex_unlock(&t->send_lock);
    return r;
}

static ssize_t io_read(void *arg, void *buf, size_t len)
{
    struct cli_link *t = arg;
    ssize_t r;

    if (t->peek_off < t->peek_len) { /* what cli_link_peek took */
        size_t n = t->peek_len - t->peek_off;

        n = n < len ? n : len;
        memcpy(buf, t->peek + t->peek_off, n);
        t->peek_off += n;
        return (ssize_t)n;
    }
    r = gnutls_record_recv(t->s, buf, len);
    if (r >= 0)
        return r;
    if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED) {
        errno = r == GNUTLS_E_AGAIN ? EAGAIN : EINTR;
        return -1;
    }
    if (r == GNUTLS_E_PREMATURE_TERMINATION)
        return 0; /* the TCP end: the stream's END says if all came */
    fprintf(stderr, "%s: TLS: receiving: %s\n", cli_prog,
            gnutls_strerror((int)r));
    errno = r == GNUTLS_E_PULL_ERROR ? ECONNRESET : EBADMSG;
    return -1;
}

static size_t io_pending(void *arg)
{
    struct cli_link *t = arg;

    return t->peek_len - t->peek_off + gnutls_record_check_pending(t->s);
}

/* The engines' messages (the destination's reply, a backup's answers):
 * as send(2)/recv(2) with MSG_DONTWAIT. */
static ssize_t peer_send(void *arg, const void *buf, size_t len)
{
    struct cli_link *t = arg;
    ssize_t r;

    /* Only a listener sends messages, and it gathers no stream writes:
     * the lock is against nothing but a second sender of its own. */
    pthread_mutex_lock(&t->send_lock);
    r = gnutls_record_send(t->s, buf, len);
    pthread_mutex_unlock(&t->send_lock);
    if (r >= 0)
        return r;
    errno = r == GNUTLS_E_AGAIN         ? EAGAIN
            : r == GNUTLS_E_INTERRUPTED ? EINTR
                                        : EPIPE;
    return -1;
}

static ssize_t peer_recv(void *arg, void *buf, size_t len)
{
    return io_read(arg, buf, len);
}

const struct xtk_stream_io cli_tls_stream_io = {
    .write = io_write,
    .read = io_read,
    .flush = io_flush,
    .pending = io_pending,
};

int cli_link_peek(struct cli_link *t, void *buf, size_t len, int timeout_ms)
{
    while (t->peek_len < len && t->peek_len < sizeof(t->peek)) {
        struct pollfd p = {.fd = t->tcp, .events = POLLIN};
        ssize_t r;

        if (!gnutls_record_check_pending(t->s) &&
            poll(&p, 1, timeout_ms > 0 ? timeout_ms : -1) <= 0)
            break;
        r = gnutls_record_recv(t->s, t->peek + t->peek_len,
                               sizeof(t->peek) - t->peek_len < len - t->peek_len
                                   ? sizeof(t->peek) - t->peek_len
                                   : len - t->peek_len);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            continue;
        if (r <= 0)
            break; /* the stream's own read says what went wrong */
        t->peek_len += (size_t)r;
    }
    len = len < t->peek_len ? len : t->peek_len;
    memcpy(buf, t->peek, len);
    return (int)len;
}

/* Frees what a link holds besides its TLS session and TCP socket: the
 * socket pair, the buffers, the lock, itself. */
static void link_free(struct cli_link *t)
{
    if (t->plain[0] >= 0) {
        close(t->plain[0]);
        close(t->plain[1]);
    }
    free(t->ubuf);
    free(t->dbuf);
    free(t->obuf);
    free(t->ebuf);
    pthread_mutex_destroy(&t->send_lock);
    free(t);
}

/* The socket pair and the two threads: 0, or -1 with why. */
static int start_relay(struct cli_link *t, char *why, size_t why_len)
{
    sigset_t all, old;

    t->ubuf = malloc(RELAY_BUF);
    t->dbuf = malloc(RELAY_BUF);
    if (!t->ubuf || !t->dbuf) {
        snprintf(why, why_len, "%s", strerror(ENOMEM));
        t->plain[0] = t->plain[1] = -1;
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, t->plain) < 0) {
        snprintf(why, why_len, "socketpair: %s", strerror(errno));
        t->plain[0] = t->plain[1] = -1;
        return -1;
    }
    /* The relay takes no signal: the program's own threads do. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (pthread_create(&t->up, NULL, up_main, t) != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        snprintf(why, why_len, "cannot start the relay");
        return -1;
    }
    if (pthread_create(&t->down, NULL, down_main, t) != 0) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        snprintf(why, why_len, "cannot start the relay");
        shutdown(t->plain[1], SHUT_RDWR);
        pthread_join(t->up, NULL);
        return -1;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}

struct cli_link *cli_link_stdio(int in_fd, int out_fd, char *why,
                                size_t why_len)
{
    struct cli_link *t = calloc(1, sizeof(*t));

    if (!t) {
        snprintf(why, why_len, "%s", strerror(errno));
        return NULL;
    }
    t->tcp = -1;
    t->in_fd = in_fd;
    t->out_fd = out_fd;
    snprintf(t->desc, sizeof(t->desc), "standard input and output");
    pthread_mutex_init(&t->send_lock, NULL);
    if (start_relay(t, why, why_len) < 0) {
        link_free(t);
        return NULL;
    }
    return t;
}

struct cli_link *cli_tls_start(struct cli_tls_creds *c, int fd,
                               const char *host, int timeout_ms, char *why,
                               size_t why_len)
{
    struct cli_link *t = calloc(1, sizeof(*t));
    const char *err = NULL;
    int r;

    if (!t) {
        snprintf(why, why_len, "%s", strerror(errno));
        return NULL;
    }
    t->tcp = fd;
    t->in_fd = t->out_fd = -1;
    t->plain[0] = t->plain[1] = -1;
    pthread_mutex_init(&t->send_lock, NULL);
    r = gnutls_init(&t->s, (c->server ? GNUTLS_SERVER : GNUTLS_CLIENT) |
                               GNUTLS_NO_TICKETS);
    if (r < 0) {
        snprintf(why, why_len, "%s", gnutls_strerror(r));
        free(t);
        return NULL;
    }
    r = gnutls_priority_set_direct(t->s, c->x509 ? PRIO_X509 : PRIO_PSK, &err);
    if (r >= 0 && c->x509)
        r = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, c->x509);
    else if (r >= 0 && c->server)
        r = gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, c->psk_server);
    else if (r >= 0)
        r = gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, c->psk_client);
    if (r >= 0 && c->x509 && c->server)
        gnutls_certificate_server_set_request(t->s, GNUTLS_CERT_REQUIRE);
    if (r >= 0 && !c->server && c->x509) {
        const char *sni = c->hostname ? c->hostname : host;

        /* Server name indication for names, not addresses. */
        if (sni && strspn(sni, "0123456789.:[]") != strlen(sni))
            r = gnutls_server_name_set(t->s, GNUTLS_NAME_DNS, sni, strlen(sni));
    }
    if (r < 0) {
        snprintf(why, why_len, "TLS setup: %s", gnutls_strerror(r));
        goto fail;
    }
    gnutls_transport_set_int(t->s, fd);
    gnutls_handshake_set_timeout(t->s, timeout_ms > 0 ? (unsigned)timeout_ms
                                                      : 10000u);
    do
        r = gnutls_handshake(t->s);
    while (r < 0 && !gnutls_error_is_fatal(r));
    if (r < 0) {
        snprintf(why, why_len, "the TLS handshake failed: %s",
                 gnutls_strerror(r));
        goto fail;
    }
    if (check_peer(c, t, host, why, why_len) < 0) {
        gnutls_alert_send(t->s, GNUTLS_AL_FATAL, GNUTLS_A_ACCESS_DENIED);
        goto fail;
    }
    if (agree(c, t, timeout_ms, why, why_len) < 0)
        goto fail;
    /* From here the stream goes in line (cli_tls_stream_io), and so do
     * the engine's messages the other way (cli_link_peer_io): no thread
     * between the engines and the socket. */
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
        snprintf(why, why_len, "O_NONBLOCK: %s", strerror(errno));
        goto fail;
    }
    if (!c->server &&
        (!(t->obuf = malloc(OUT_BUF)) || !(t->ebuf = malloc(EBUF)))) {
        snprintf(why, why_len, "%s", strerror(ENOMEM));
        goto fail;
    }
    if (!c->server) { /* records leave through tls_push (the reads as before) */
        gnutls_transport_set_ptr2(t->s, (gnutls_transport_ptr_t)(intptr_t)fd,
                                  t);
        gnutls_transport_set_push_function(t->s, tls_push);
    }
    t->peer_io.send = peer_send;
    t->peer_io.recv = peer_recv;
    t->peer_io.arg = t;
    return t;
fail:
    gnutls_deinit(t->s);
    link_free(t);
    return NULL;
}

int cli_link_plain_fd(const struct cli_link *t)
{
    return t->s ? t->tcp : t->plain[1];
}

const struct xtk_peer_io *cli_link_peer_io(const struct cli_link *t)
{
    return t->s ? &t->peer_io : NULL;
}

int cli_link_tcp_fd(const struct cli_link *t)
{
    return t->tcp;
}

const char *cli_link_describe(const struct cli_link *t)
{
    return t->desc;
}

/* Joins th within ms; 0, or -1 if it is still running. */
static int join_within(pthread_t th, int ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_timedjoin_np(th, NULL, &ts) == 0 ? 0 : -1;
}

void cli_link_end(struct cli_link *t, int grace_ms)
{
    int up_done, down_done;

    if (!t)
        return;
    if (t->s) { /* TLS: the stream and the messages went in line */
        pthread_mutex_lock(&t->send_lock);
        for (int i = 0; i < 10 && t->e_sent < t->e_used; i++)
            if (flush_records(t) < 0 && errno == EAGAIN)
                tcp_wait(t, POLLOUT);
        for (int i = 0; i < 10; i++) {
            int r = gnutls_bye(t->s, GNUTLS_SHUT_WR);

            if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED)
                break;
            tcp_wait(t, POLLOUT);
        }
        pthread_mutex_unlock(&t->send_lock);
        (void)grace_ms;
        gnutls_deinit(t->s);
        close(t->tcp);
        link_free(t);
        return;
    }
    /* The engine is done: what it wrote is read out, then the end. */
    shutdown(t->plain[1], SHUT_WR);
    up_done = join_within(t->up, grace_ms) == 0;
    down_done = up_done && join_within(t->down, grace_ms) == 0;
    if (!down_done || !up_done) {
        /* A far side that neither takes nor ends: cut it (a pipe's read
         * or write is cut by cancelling the thread in it). */
        pthread_cancel(up_done ? t->down : t->up);
        shutdown(t->plain[0], SHUT_RDWR);
    }
    if (!up_done)
        pthread_join(t->up, NULL);
    if (!down_done)
        pthread_join(t->down, NULL);
    link_free(t);
}
