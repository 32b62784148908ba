/*
 * xsd.h - what xsd-lite's files share.
 *
 * xsd-lite is an in-memory xenstore daemon.  The pieces:
 *   htab.h   the hash table keyed by path that nodes, watched paths and
 *            a transaction's touched paths each live in.
 *   store.c  the tree: nodes in a hash table keyed by full path, each with
 *            a parent and a list of children; interned permission sets;
 *            per-domain accounting; generation numbers.
 *   view.c   what a request sees and changes: the live tree, or the
 *            overlay of its transaction (txn.c).  Handlers are written once
 *            against this view.
 *   txn.c    transactions: a map of the nodes a transaction touched
 *            (recorded generations + buffered writes) and a log of its
 *            modifying requests, replayed on the live tree at commit.
 *   watch.c  watches, matched by walking the changed path's ancestors.
 *   ops.c    the request dispatcher, one handler per message type.
 *   conn.c   connections: input framing, output queue, back-pressure,
 *            bounded watch-event queues, deferred destruction.
 *   sock.c   Unix sockets; ring.c the shared ring page; domain.c guest
 *            domains (KVM introduction over SCM_RIGHTS, Xen in xen.c).
 *   control.c CONTROL commands; state.c dump and load of the store.
 */
#ifndef XSD_H
#define XSD_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <xen/io/xs_wire.h>

#include "htab.h"
#include "xtk-internal.h"

struct event;
struct event_base;

#define XSD_HDR ((uint32_t)sizeof(struct xsd_sockmsg))
#define XSD_MSG_MAX (XSD_HDR + XENSTORE_PAYLOAD_MAX)
/* An absolute path and its NUL. */
#define XSD_PATH_BUF (XENSTORE_ABS_PATH_MAX + 1)
/* From xen/xen.h, without pulling in the whole hypervisor interface. */
#define XSD_DOMID_FIRST_RESERVED 0x7FF0u
#define XSD_DOMID_SELF 0x7FF0u
#define XSD_NO_GEN UINT64_MAX

/* Permission bits (the wire's n/r/w/b letters) and the owner's extra. */
#define XSD_PERM_NONE 0u
#define XSD_PERM_READ 1u
#define XSD_PERM_WRITE 2u
#define XSD_PERM_OWNER 4u
/* On an entry naming a domain that did not exist when it was set: kept
 * (GET_PERMS shows it) but it grants nothing, as xenstored's
 * XS_PERM_IGNORE (a later domain with that id must not inherit it). */
#define XSD_PERM_IGNORE 0x10u

/* ---- quotas (unprivileged domains only) ------------------------------- */
enum xsd_quota {
    XSD_Q_NODES,       /* nodes a domain owns */
    XSD_Q_WATCHES,     /* watches of a domain */
    XSD_Q_TXNS,        /* open transactions of a domain */
    XSD_Q_OUTSTANDING, /* replies queued before input is paused */
    XSD_Q_MEMORY,      /* bytes: owned nodes + watches + transactions */
    XSD_Q_TXN_NODES,   /* nodes one transaction may touch */
    XSD_Q_PERMS,       /* entries in one permission list */
    XSD_Q_NODE_SIZE,   /* value + permissions of one node */
    XSD_Q_COUNT
};
extern const char *const xsd_quota_names[XSD_Q_COUNT];
int xsd_quota_from_name(const char *name);

/* ---- store ------------------------------------------------------------- */
struct xsd_perm {
    uint32_t id;
    uint32_t perm; /* XSD_PERM_* */
};

/* An interned, immutable permission list; nodes share them. */
struct xsd_perms {
    struct xsd_perms *hnext;
    uint32_t refs;
    uint32_t hash;
    uint32_t num;
    struct xsd_perm p[];
};

struct xsd_node {
    struct xsd_node *hnext;  /* hash chain */
    struct xsd_node *parent; /* NULL for / and the special @ nodes */
    struct xsd_node *child;  /* first child; children form a circular */
    struct xsd_node *prev;   /* doubly linked list, in creation order */
    struct xsd_node *next;
    struct xsd_perms *perms;
    union {
        char *ptr;   /* vlen > sizeof(inl) */
        char inl[8]; /* short values (most of them) live here */
    } v;
    uint64_t gen;  /* bumped when value, permissions or existence change */
    uint64_t cgen; /* bumped when the set of children changes */
    uint32_t hash;
    uint32_t vlen;
    uint16_t plen;
    char path[]; /* full path, NUL-terminated */
};

/* Per-domain accounting, and the ring connection of an introduced one. */
struct xsd_dom {
    struct xsd_dom *hnext;
    uint32_t domid;
    uint32_t nodes;   /* nodes it owns */
    uint64_t mem;     /* bytes charged to it */
    uint32_t watches; /* watches of its connections */
    uint32_t txns;    /* open transactions of its connections */
    /* Introduced domains. */
    struct xsd_conn *conn;       /* its ring connection */
    struct xsd_conn *introducer; /* KVM: the socket that introduced it */
    const char *kind;            /* "kvm" or "xen" */
    uint64_t gfn;
    uint32_t port;
    uint32_t target; /* SET_TARGET, valid when has_target */
    bool has_target;
    bool shutdown;
};

/* ---- watches ------------------------------------------------------------ */
struct xsd_watch;
struct xsd_wpath {
    struct xsd_wpath *hnext;
    struct xsd_watch *head;
    uint32_t hash;
    uint32_t plen;
    char path[];
};

struct xsd_watch {
    struct xsd_watch *wnext, *wprev; /* on the same path */
    struct xsd_watch *cnext;         /* the connection's watches */
    struct xsd_wpath *wp;
    struct xsd_conn *c;
    uint32_t rel_off; /* bytes stripped from event paths (relative) */
    uint32_t tlen;
    char token[];
};

/* ---- transactions ------------------------------------------------------- */
struct xsd_tnode;
struct xsd_txop;
struct xsd_txn {
    struct xsd_txn *next; /* the connection's transactions */
    struct xsd_conn *c;
    uint32_t id;
    struct xsd_htab map; /* struct xsd_tnode, by path */
    struct xsd_tnode *list;
    struct xsd_txop *ops, **ops_tail;
    uint32_t nshadow; /* nodes it removed (hiding their live subtrees) */
    uint32_t created; /* nodes it created (quota: an upper bound) */
    uint32_t mods;    /* creations and removals, for DIRECTORY_PART */
    uint64_t mem;     /* bytes it holds (quota) */
    bool doomed;      /* saw a change it depends on: commit gives EAGAIN */
    bool failed;      /* out of memory mid-way: commit gives ENOMEM */
};

/* ---- connections -------------------------------------------------------- */
struct xsd_conn;
struct xsd_transport {
    const char *name;
    /* Pushes queued output; may kill the connection. */
    void (*flush)(struct xsd_conn *c);
    /* Stops or restarts reading input (back-pressure). */
    void (*pause)(struct xsd_conn *c, bool paused);
    /* Releases the transport (fds, mappings).  Called once. */
    void (*destroy)(struct xsd_conn *c);
};

/* One queued message: header and payload, partly written after off. */
struct xsd_out {
    struct xsd_out *next;
    uint32_t len;
    uint32_t off;
    bool event;
    char buf[];
};

struct xsd_ring;

struct xsd_conn {
    struct xsd *x;
    struct xsd_conn *next, *prev; /* all connections */
    struct xsd_conn *dirty_next;  /* on x->dirty when output is new */
    struct xsd_conn *dead_next;   /* on x->dead when killed */
    const struct xsd_transport *tp;
    uint32_t id;         /* for logs */
    uint32_t domid;      /* 0 for sockets */
    struct xsd_dom *dom; /* accounting (NULL for privileged) */
    bool priv;           /* socket or dom0: no checks, no quotas */
    bool ro;             /* read-only socket */
    bool dead;           /* being destroyed (deferred) */
    bool dirty;
    bool paused;
    bool failed;  /* ring: protocol error, ignored until released */
    bool msg_fds; /* the message being dispatched carries c->fds */
    /* Input: at most one whole message plus a partial one. */
    char *in;
    uint32_t inlen;
    uint64_t in_off; /* stream offset of in[0] */
    /* File descriptors received with input (privileged socket only). */
    int fds[3];
    int nfds;                /* -1: a bad set was received */
    uint64_t fds_lo, fds_hi; /* stream range of the data that carried them */
    /* Output. */
    struct xsd_out *out_head, **out_tail;
    uint32_t out_replies, out_events;
    uint64_t events_dropped;
    /* Watches and transactions. */
    struct xsd_watch *watches;
    uint32_t nwatches;
    struct xsd_txn *txns;
    uint32_t ntxns;
    uint32_t next_txid;
    struct xsd_txn *in_txn; /* a transaction being committed */
    /* Transport state. */
    int fd;
    struct event *rev, *wev;
    struct xsd_ring *ring;
    char prefix[24]; /* "/local/domain/<domid>" */
    uint8_t prefix_len;
};

/* ---- the daemon --------------------------------------------------------- */
struct xsd_config {
    uint32_t quota[XSD_Q_COUNT];
    uint32_t watch_queue_max;  /* queued watch events per connection */
    uint32_t sock_outstanding; /* replies queued on a socket before pause */
    bool no_files;             /* CONTROL save refused (the fuzzer) */
};

struct xsd {
    struct xtk_ctx *ctx;
    struct event_base *base;
    struct xsd_config cfg;
    /* Store. */
    struct xsd_htab nodes; /* struct xsd_node, by path */
    struct xsd_perms **pbuckets;
    uint64_t npbuckets, nperms;
    struct xsd_node *root;
    uint64_t gen;
    struct xsd_dom **dbuckets;
    uint32_t ndbuckets;
    /* Watches. */
    struct xsd_htab wpaths; /* struct xsd_wpath, by path */
    uint64_t nwatches;
    /* Connections. */
    struct xsd_conn *conns;
    struct xsd_conn *dirty;
    struct xsd_conn *dead;
    uint32_t next_conn_id;
    uint32_t nconns;
    bool reaping;
    /* Counters for CONTROL stats. */
    uint64_t stat_requests, stat_commits, stat_conflicts;
    /* Xen support state (xen.c), NULL where not built or not used. */
    void *xen;
    char scratch[XSD_MSG_MAX];
};

extern const struct xsd_transport xsd_null_transport;

/* ---- store.c ------------------------------------------------------------ */
int xsd_init(struct xsd *x, struct xtk_ctx *ctx, struct event_base *base,
             const struct xsd_config *cfg);
void xsd_fini(struct xsd *x);
void xsd_config_default(struct xsd_config *cfg);
uint32_t xsd_hash(const char *s, size_t n);
struct xsd_node *xsd_find(struct xsd *x, const char *path, size_t plen);
struct xsd_perms *xsd_perms_get(struct xsd *x, const struct xsd_perm *p,
                                uint32_t num);
struct xsd_perms *xsd_perms_ref(struct xsd_perms *ps);
void xsd_perms_put(struct xsd *x, struct xsd_perms *ps);
/* Parses num "r5"-style NUL-terminated strings; -1 + errno EINVAL. */
int xsd_perms_parse(const char *s, size_t len, struct xsd_perm *out,
                    uint32_t num);
/* Formats as "r5\0w0\0"; returns the length. */
size_t xsd_perms_format(const struct xsd_perms *ps, char *buf, size_t size);
/* Same owner, with the owner for a creator (unprivileged) applied. */
struct xsd_perms *xsd_perms_with_owner(struct xsd *x, struct xsd_perms *ps,
                                       uint32_t owner);
uint64_t xsd_node_bytes(const struct xsd_node *n);
struct xsd_node *xsd_node_new(struct xsd *x, struct xsd_node *parent,
                              const char *path, size_t plen,
                              struct xsd_perms *perms);
int xsd_node_set_value(struct xsd *x, struct xsd_node *n, const char *v,
                       uint32_t vlen);
void xsd_node_set_perms(struct xsd *x, struct xsd_node *n,
                        struct xsd_perms *perms);
/* Removes n and its subtree, children first; cb sees each node first. */
void xsd_node_remove(struct xsd *x, struct xsd_node *n,
                     void (*cb)(struct xsd *x, struct xsd_node *n, void *arg),
                     void *arg);
/* Iteration over a node's children, in creation order. */
#define xsd_for_children(p, c)                                                 \
    for ((c) = (p)->child; (c);                                                \
         (c) = ((c)->next == (p)->child) ? NULL : (c)->next)
/* A node's value (vlen bytes, not NUL-terminated). */
static inline const char *xsd_node_value(const struct xsd_node *n)
{
    return n->vlen > sizeof(n->v.inl) ? n->v.ptr : n->v.inl;
}
/* The last path component of a child of parent. */
static inline const char *xsd_child_name(const struct xsd_node *c)
{
    return c->path + (c->parent->plen == 1 ? 1 : c->parent->plen + 1);
}
struct xsd_dom *xsd_dom_get(struct xsd *x, uint32_t domid, bool create);
void xsd_dom_maybe_free(struct xsd *x, struct xsd_dom *d);
/* Gives the nodes of a dead domain to dom0 and drops its entries. */
void xsd_store_disown(struct xsd *x, uint32_t domid);
/* Whole-tree walk in pre-order (parents first). */
int xsd_walk(struct xsd_node *n,
             int (*cb)(struct xsd_node *n, int depth, void *arg), void *arg);

/* ---- path helpers (ops.c) ----------------------------------------------- */
/* Length of the parent of an absolute path ("/" -> 0, "/a" -> 1). */
size_t xsd_parent_len(const char *path, size_t plen);
bool xsd_is_child(const char *child, size_t clen, const char *parent,
                  size_t plen);

/* ---- watch.c ------------------------------------------------------------ */
int xsd_watch_add(struct xsd_conn *c, const char *path, size_t plen,
                  const char *token, bool relative);
int xsd_watch_del(struct xsd_conn *c, const char *path, size_t plen,
                  const char *token);
void xsd_watch_del_all(struct xsd_conn *c);
/*
 * Queues events for a change of path: for watches on path and its
 * ancestors, or (exact) on path only.  node is the changed node (it may be
 * about to be removed); old are its permissions before a SET_PERMS.
 */
void xsd_fire(struct xsd *x, const char *path, size_t plen, bool exact,
              const struct xsd_node *node, const struct xsd_perms *old);
void xsd_fire_special(struct xsd *x, const char *name);

/* ---- conn.c ------------------------------------------------------------- */
struct xsd_conn *xsd_conn_new(struct xsd *x, const struct xsd_transport *tp,
                              uint32_t domid, bool priv, bool ro);
/* Marks for destruction at the next xsd_reap(); safe anywhere. */
void xsd_conn_kill(struct xsd_conn *c, const char *why);
/* Parses and dispatches the complete messages in c->in. */
void xsd_conn_process(struct xsd_conn *c);
/* Queues a message; returns -1 (ENOMEM) on failure. */
int xsd_conn_send(struct xsd_conn *c, uint32_t type, uint32_t req_id,
                  uint32_t tx_id, const void *data, uint32_t len, bool event);
void xsd_conn_event(struct xsd_conn *c, const char *path, size_t plen,
                    const char *token, size_t tlen);
/* Output was consumed; lifts back-pressure. */
void xsd_conn_output_done(struct xsd_conn *c, struct xsd_out *o);
/* Flushes the connections with new output and destroys the dead ones. */
void xsd_after_io(struct xsd *x);
void xsd_reap(struct xsd *x);
void xsd_conn_reset(struct xsd_conn *c);
uint32_t xsd_conn_in_room(const struct xsd_conn *c);
void xsd_conn_close_fds(struct xsd_conn *c);

/* ---- ops.c -------------------------------------------------------------- */
struct xsd_req {
    struct xsd_conn *c;
    struct xsd_txn *t; /* the request's transaction, or NULL */
    uint32_t type, req_id, tx_id;
    const char *p; /* payload */
    uint32_t len;
    bool replay; /* a transaction's request replayed at commit */
};
/* Handles one message (header + payload). */
void xsd_dispatch(struct xsd_conn *c, const struct xsd_sockmsg *hdr,
                  const char *payload);
int xsd_reply(struct xsd_req *r, uint32_t type, const void *data, uint32_t len);
int xsd_handle(struct xsd_req *r);
const char *xsd_type_name(uint32_t type);
/* What c may do with a node of permissions ps (XSD_PERM_* bits). */
unsigned int xsd_perm_for(const struct xsd_conn *c, const struct xsd_perms *ps);
const char *xsd_errstr(int err);

/* ---- view.c: what a request sees ---------------------------------------- */
#define XSD_NEED_EXISTS 1u
#define XSD_NEED_VALUE 2u
#define XSD_NEED_PERMS 4u
struct xsd_nv {
    bool exists;
    const char *value;
    uint32_t vlen;
    struct xsd_perms *perms;
    struct xsd_node *live; /* live mode: the node */
};
/*
 * What path looks like to r.  need says what the answer will rest on, so
 * that a transaction records it; 0 is a privileged probe whose answer does
 * not depend on what it finds (a WRITE creates or updates alike).
 */
int xsd_view_get(struct xsd_req *r, const char *path, size_t plen,
                 unsigned int need, struct xsd_nv *nv);
/* Creates path and its missing parents below the existing ancestor of
 * length alen (perms inherited from anc_perms), with value on the last. */
int xsd_view_create(struct xsd_req *r, const char *path, size_t plen,
                    size_t alen, struct xsd_perms *anc_perms, const char *value,
                    uint32_t vlen);
int xsd_view_set_value(struct xsd_req *r, const char *path, size_t plen,
                       const char *value, uint32_t vlen);
int xsd_view_set_perms(struct xsd_req *r, const char *path, size_t plen,
                       struct xsd_perms *perms);
int xsd_view_rm(struct xsd_req *r, const char *path, size_t plen);
/* Removes a live node and its subtree, firing their watches. */
void xsd_remove_fire(struct xsd *x, struct xsd_node *n);
/* Calls cb for each child name (not NUL-terminated) until cb returns
 * non-zero; the generation of the child list goes to *gen. */
int xsd_view_children(struct xsd_req *r, const char *path, size_t plen,
                      uint64_t *gen,
                      int (*cb)(const char *name, size_t len, void *arg),
                      void *arg);

/* ---- txn.c -------------------------------------------------------------- */
struct xsd_txn *xsd_txn_new(struct xsd_conn *c);
struct xsd_txn *xsd_txn_find(struct xsd_conn *c, uint32_t id);
void xsd_txn_free(struct xsd_txn *t);
void xsd_txn_free_all(struct xsd_conn *c);
/* Ends t (freed in every case): 0, or EAGAIN/ENOSPC/ENOMEM. */
int xsd_txn_commit(struct xsd_txn *t);
int xsd_txn_log(struct xsd_txn *t, const struct xsd_req *r);
int xsd_txn_get(struct xsd_req *r, const char *path, size_t plen,
                unsigned int need, struct xsd_nv *nv);
int xsd_txn_create(struct xsd_req *r, const char *path, size_t plen,
                   size_t alen, struct xsd_perms *anc_perms, const char *value,
                   uint32_t vlen);
int xsd_txn_set_value(struct xsd_req *r, const char *path, size_t plen,
                      const char *value, uint32_t vlen);
int xsd_txn_set_perms(struct xsd_req *r, const char *path, size_t plen,
                      struct xsd_perms *perms);
int xsd_txn_rm(struct xsd_req *r, const char *path, size_t plen);
int xsd_txn_children(struct xsd_req *r, const char *path, size_t plen,
                     uint64_t *gen,
                     int (*cb)(const char *name, size_t len, void *arg),
                     void *arg);

/* ---- domain.c ----------------------------------------------------------- */
/* INTRODUCE: fds (taken over, -1 terminated count n) are the KVM form. */
int xsd_domain_introduce(struct xsd_req *r, uint32_t domid, uint64_t gfn,
                         uint32_t port, int *fds, int nfds);
/* How an introduced domain's connection ends. */
enum xsd_dom_end {
    XSD_DOM_RELEASED, /* RELEASE */
    XSD_DOM_DIED,     /* Xen: dying or gone; the toolstack cleans up */
    XSD_DOM_LOST,     /* KVM: its introducer went away; its home goes too */
};
int xsd_domain_release(struct xsd *x, uint32_t domid, enum xsd_dom_end how);
/* The introducer of KVM domains went away: they are dead. */
void xsd_domain_introducer_gone(struct xsd_conn *c);
struct xsd_dom *xsd_domain_find(struct xsd *x, uint32_t domid);
/* Whether domid exists: dom0, an introduced domain, or (Xen) one the
 * hypervisor knows, as xenstored asks before taking a permission list. */
bool xsd_domain_exists(struct xsd *x, uint32_t domid);

/* ---- ring.c ------------------------------------------------------------- */
struct xsd_ring_ops {
    /* Tells the guest there is something to read or space to write. */
    void (*notify)(struct xsd_ring *ring);
    /* Unmaps the page and releases the notification channel. */
    void (*destroy)(struct xsd_ring *ring);
};
struct xsd_ring {
    struct xenstore_domain_interface *intf;
    const struct xsd_ring_ops *ops;
    struct xsd_conn *c;
    void *priv;
};
extern const struct xsd_transport xsd_ring_transport;
/*
 * Makes a connection for a mapped ring (takes ring over, even on error):
 * a guest's (subject to its domain's quotas), or with priv dom0's own
 * kernel's, privileged as the sockets are.
 */
struct xsd_conn *xsd_ring_conn_new(struct xsd *x, uint32_t domid,
                                   struct xsd_ring *ring, bool priv);
/* The guest notified us: move requests in and responses out. */
void xsd_ring_kick(struct xsd_conn *c);

/* ---- xen.c / xen-none.c ------------------------------------------------- */
int xsd_xen_introduce(struct xsd *x, uint32_t domid, uint32_t port,
                      struct xsd_ring **ring);
void xsd_xen_fini(struct xsd *x);
/*
 * Serves dom0's own kernel on its xenbus ring, as xenstored does: the page
 * the kernel set aside (xsd_kva) and its port (xsd_port).  Its backends
 * (blkback, netback) see the store only through it.  0, ENOENT where there
 * is no such ring (not dom0 on Xen), or another errno.
 */
int xsd_xen_dom0_ring(struct xsd *x);
/* Whether the hypervisor knows domid (false without one). */
bool xsd_xen_domain_exists(struct xsd *x, uint32_t domid);

/* ---- sock.c ------------------------------------------------------------- */
struct xsd_listener;
struct xsd_listener *xsd_listen(struct xsd *x, const char *path, bool ro,
                                unsigned int mode);
void xsd_listener_close(struct xsd_listener *l, bool unlink_path);

/* ---- control.c / state.c ------------------------------------------------ */
int xsd_control(struct xsd_req *r);
/* Writes the store to path atomically (tmp + rename). */
int xsd_state_save(struct xsd *x, const char *path);
/* Loads a state file into an empty store. */
int xsd_state_load(struct xsd *x, const char *path);
/* Set by main.c: the state file for CONTROL save without a path. */
extern const char *xsd_state_file;
/* The daemon's log level (CONTROL log changes it). */
extern int xsd_log_level;
/* Checks a stored path: Xen's characters, no "//", no trailing "/". */
bool xsd_path_ok(const char *path, size_t len);

#endif /* XSD_H */
