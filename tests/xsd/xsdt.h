/*
 * xsdt.h - what xsd-lite's tests and benchmarks share: a daemon in a
 * temporary directory, a raw wire-protocol client (no libxenstore), and a
 * guest that talks through a KVM-style ring (memfd + two eventfds) from its
 * own thread, as a vCPU would.
 */
#ifndef XSDT_H
#define XSDT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <xen/io/xs_wire.h>

/* ---- the daemon ---------------------------------------------------------- */
struct xsdt_daemon {
    char dir[64];   /* its temporary directory */
    char sock[128]; /* dir/sock */
    char ro[128];   /* dir/sock_ro */
    char log[128];  /* dir/log */
    pid_t pid;
};

/* The xsd-lite binary: $XSD_LITE, else $top_builddir/xsd-lite/xsd-lite. */
const char *xsdt_binary(void);
/* Starts xsd-lite -N on its own socket with extra arguments (NULL-ended),
 * and waits for its sd_notify READY=1.  Fails the test on error. */
void xsdt_daemon_start(struct xsdt_daemon *d, ...);
/* SIGTERM; the daemon must exit 0 (ASan builds: no leak).  Removes dir
 * unless keep. */
void xsdt_daemon_stop(struct xsdt_daemon *d, bool keep);
/* How many descriptors the daemon has open (to catch leaks). */
int xsdt_daemon_fds(const struct xsdt_daemon *d);
/* Raises RLIMIT_NOFILE to its hard limit. */
void xsdt_raise_fd_limit(void);

/* ---- raw clients ----------------------------------------------------------
 */
struct xsdt_msg {
    struct xsd_sockmsg h;
    char body[XENSTORE_PAYLOAD_MAX + 1]; /* NUL added after len bytes */
};

#define XSDT_MAX_EVENTS 256
#define XSDT_MAX_REPLIES 256
struct xsdt_client {
    int fd;
    uint32_t next_req;
    struct xsdt_msg *ev; /* watch events seen while waiting for replies */
    int nev;
};

int xsdt_connect(struct xsdt_client *c, const char *path);
void xsdt_close(struct xsdt_client *c);
/* Sends a message; payload is len bytes. */
void xsdt_send(struct xsdt_client *c, uint32_t type, uint32_t req_id,
               uint32_t tx, const void *payload, uint32_t len);
/* Receives one message within timeout_ms: 0, or -1 (timeout, EOF). */
int xsdt_recv(struct xsdt_client *c, struct xsdt_msg *m, int timeout_ms);
/* A request and its reply; watch events on the way are kept in c->ev. */
void xsdt_rpc(struct xsdt_client *c, uint32_t type, uint32_t tx,
              const void *payload, uint32_t len, struct xsdt_msg *reply);
/* Joins NUL-terminated strings (NULL-ended list) into buf. */
uint32_t xsdt_strings(char *buf, size_t size, ...);
/* A next watch event (kept, or read within timeout_ms): 0 or -1. */
int xsdt_event(struct xsdt_client *c, struct xsdt_msg *m, int timeout_ms);

/*
 * Shorthands returning the reply's payload for success, or the error name
 * ("ENOENT") for an error: a per-thread buffer, valid until the next call.
 */
const char *xsdt_req(struct xsdt_client *c, uint32_t type, uint32_t tx, ...);
const char *xsdt_write(struct xsdt_client *c, uint32_t tx, const char *path,
                       const char *value);
const char *xsdt_read(struct xsdt_client *c, uint32_t tx, const char *path);
/* TRANSACTION_START: the id (fails the test on error). */
uint32_t xsdt_txn(struct xsdt_client *c);

/* Fails the test unless the answer got (evaluated once) is want. */
#define XSDT_EXPECT(got, want)                                                 \
    do {                                                                       \
        const char *xsdt_got_ = (got);                                         \
                                                                               \
        TEST_ASSERT(!strcmp(xsdt_got_, (want)), "got \"%s\", wanted \"%s\"",   \
                    xsdt_got_, (want));                                        \
    } while (0)

/* ---- a guest on a KVM-style ring ----------------------------------------- */
struct xsdt_guest {
    int memfd;   /* the guest's "RAM" */
    int irq_fd;  /* xsd-lite writes: the guest's interrupt */
    int kick_fd; /* the guest writes: its notification to xsd-lite */
    int cmd_fd;  /* wakes the guest thread */
    uint64_t gfn;
    struct xenstore_domain_interface *intf;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    bool hold; /* responses are left in the ring (xsdt_guest_hold) */
    /* Bytes to put on the request ring. */
    char *out;
    size_t out_len, out_off;
    /* Parsed responses. */
    char in[2 * (sizeof(struct xsd_sockmsg) + XENSTORE_PAYLOAD_MAX)];
    size_t in_len;
    struct xsdt_msg *replies, *events;
    int nreplies, nevents;
    uint32_t next_req;
    uint64_t irqs;
};

/* A guest with npages of RAM whose ring is at frame gfn, thread running. */
void xsdt_guest_new(struct xsdt_guest *g, size_t npages, uint64_t gfn);
void xsdt_guest_free(struct xsdt_guest *g);
/* Stops (hold) or resumes consuming the response ring: a guest that does
 * not read its replies and events.  Requests still go out. */
void xsdt_guest_hold(struct xsdt_guest *g, bool hold);
/* Queues raw bytes for the request ring (the thread writes them). */
void xsdt_guest_send_bytes(struct xsdt_guest *g, const void *buf, size_t n);
/* A request and its reply over the ring. */
void xsdt_guest_rpc(struct xsdt_guest *g, uint32_t type, uint32_t tx,
                    const void *payload, uint32_t len, struct xsdt_msg *reply);
const char *xsdt_guest_req(struct xsdt_guest *g, uint32_t type, uint32_t tx,
                           ...);
const char *xsdt_guest_write(struct xsdt_guest *g, uint32_t tx,
                             const char *path, const char *value);
/* The next watch event within timeout_ms: 0 or -1. */
int xsdt_guest_event(struct xsdt_guest *g, struct xsdt_msg *m, int timeout_ms);

#endif /* XSDT_H */
