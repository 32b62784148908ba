/*
 * tls.h - TLS for the streams that cross a network (xtk-save's tcp:,
 * xtk-restore's listen:), on GnuTLS: x509 certificates verified both ways,
 * or a pre-shared key; an allowlist of the peer names accepted.
 *
 * A TLS link (struct cli_link) goes in line: the stream through
 * xtk_stream_custom() with cli_tls_stream_io, the engines' messages the
 * other way through the options' peer_io (cli_link_peer_io), both on the
 * TCP socket, with no thread between the engines and it
 * (docs/architecture.md, "Streams across a network").  The same struct
 * without TLS is the ssh transport's far end: a relay of two threads
 * between pipes and a socket pair (cli_link_stdio).  Built into each
 * program (not part of libxtk).
 */
#ifndef XTK_CLI_TLS_H
#define XTK_CLI_TLS_H

#include <stddef.h>

/* Where x509 credentials are looked for (QEMU's file names, below). */
#define CLI_TLS_DIR "/etc/pki/xtk"
#define CLI_TLS_AUTHZ_MAX 32

struct cli_tls_opts {
    /*
     * x509: the directory of ca-cert.pem (the authorities whose
     * certificates are trusted), server-cert.pem and server-key.pem (the
     * listener's), client-cert.pem and client-key.pem (the connecting
     * side's), and optionally ca-crl.pem.  NULL: no x509.
     */
    const char *dir;
    /* PSK: a file of "IDENTITY:HEXKEY" lines (psktool's format).  The
     * connecting side uses psk_identity's line (NULL: the first). */
    const char *psk_file;
    const char *psk_identity;
    /* The peer names accepted (none: any the CA signed; --tls-authz, once
     * a name): a certificate's common name, one of its DNS names or its
     * whole distinguished name ("CN=b,O=xtk"); with PSK, identities. */
    const char *authz[CLI_TLS_AUTHZ_MAX];
    int n_authz;
    /* Connecting, x509: the name the listener's certificate must carry
     * (NULL: the HOST of tcp:HOST:PORT). */
    const char *hostname;
};

/* Whether o asks for TLS at all. */
int cli_tls_wanted(const struct cli_tls_opts *o);

/*
 * The options both programs take (getopt_long values past any short
 * option's): --tls, --tls-dir DIR, --tls-psk FILE, --tls-psk-identity
 * NAME (connecting), --tls-authz NAMES, --tls-hostname NAME (connecting).
 */
enum {
    CLI_OPT_TLS = 0x1000,
    CLI_OPT_TLS_DIR,
    CLI_OPT_TLS_PSK,
    CLI_OPT_TLS_PSK_IDENTITY,
    CLI_OPT_TLS_AUTHZ,
    CLI_OPT_TLS_HOSTNAME,
};
#define CLI_TLS_LONGOPTS                                                       \
    {"tls", no_argument, NULL, CLI_OPT_TLS},                                   \
        {"tls-dir", required_argument, NULL, CLI_OPT_TLS_DIR},                 \
        {"tls-psk", required_argument, NULL, CLI_OPT_TLS_PSK},                 \
    {                                                                          \
        "tls-authz", required_argument, NULL, CLI_OPT_TLS_AUTHZ                \
    }
#define CLI_TLS_CLIENT_LONGOPTS                                                \
    {"tls-psk-identity", required_argument, NULL, CLI_OPT_TLS_PSK_IDENTITY},   \
    {                                                                          \
        "tls-hostname", required_argument, NULL, CLI_OPT_TLS_HOSTNAME          \
    }

/* Takes getopt's c if it is one of those: 1; 0 if it is not one; -1 (and
 * a message) for too many --tls-authz. */
int cli_tls_option(int c, const char *arg, struct cli_tls_opts *o);

/* Checks that the options make sense together: 0, or -1 (and a message). */
int cli_tls_options_ok(const struct cli_tls_opts *o);

struct cli_tls_creds;

/*
 * Checks the options and loads the credentials, before anything connects:
 * the listener's (server) or the connecting side's.  NULL (and a message
 * on stderr) if they are incomplete or unreadable.
 */
struct cli_tls_creds *cli_tls_creds_load(const struct cli_tls_opts *o,
                                         int server);
void cli_tls_creds_free(struct cli_tls_creds *c);

struct cli_link;

/*
 * TLS on the connected socket fd (blocking): the handshake within
 * timeout_ms, the peer's certificate checked (chain, name, allowlist) or
 * its PSK identity, and each side's word that it accepts the other; the
 * socket is then non-blocking.  host: the name connected to
 * (connecting side).  On success the session owns fd.  NULL on failure,
 * with why (a sentence) filled in; fd is left open to the caller.
 */
struct cli_link *cli_tls_start(struct cli_tls_creds *c, int fd,
                               const char *host, int timeout_ms, char *why,
                               size_t why_len);

/*
 * A relay of two threads between two plain fds and the engine's socket:
 * the ssh transport's far end (xtk-restore --stdio), whose stream comes on
 * stdin and whose reply goes to stdout, pipes where the engine needs a socket.
 * The fds stay the caller's.  NULL on failure, with why.
 */
struct cli_link *cli_link_stdio(int in_fd, int out_fd, char *why,
                                size_t why_len);

/*
 * The stream over a TLS link: xtk_stream_custom(ctx, cli_link_tcp_fd(t),
 * flags, &cli_tls_stream_io, t) gives the save's stream (written by its
 * senders) or the restore's (read by its reader).
 */
#include <xtk/stream.h>
extern const struct xtk_stream_io cli_tls_stream_io;

/* A listener's: reads up to len (<= 16) bytes of the stream ahead, within
 * timeout_ms, for a look at them (gzip's magic); the stream reads them
 * again.  How many it has. */
int cli_link_peek(struct cli_link *t, void *buf, size_t len, int timeout_ms);

/* A TLS link's peer_io for the engines' options (NULL for a plain one). */
const struct xtk_peer_io *cli_link_peer_io(const struct cli_link *t);

/* The engine's peer_fd: a relay's end of its socket pair, or a TLS link's
 * TCP socket (the link owns it: do not close it). */
int cli_link_plain_fd(const struct cli_link *t);

/* The TCP socket under the session (for its queue and round-trip time;
 * the session owns it). */
int cli_link_tcp_fd(const struct cli_link *t);

/* What was negotiated and who the peer is, for a log line. */
const char *cli_link_describe(const struct cli_link *t);

/*
 * After the engine is done: a TLS link says close_notify and closes; a
 * relay lets what the engine wrote go out, drains what the far side still
 * sends (bounded by grace_ms), joins its threads.  Everything is freed.
 */
void cli_link_end(struct cli_link *t, int grace_ms);

#endif /* XTK_CLI_TLS_H */
