/*
 * sr-format.h - xtk's conventions inside Xen's migration stream, shared by
 * the save and restore engines (man/xtk-stream.5, "KVM domains").
 *
 * A KVM domain's stream is an x86 HVM stream (page shift 12) that Xen
 * 4.17's verify-stream-v2 accepts, since that verifier refuses every
 * record type it does not know, optional ones too.  So xtk's data rides in
 * records Xen defines, in forms Xen's own restore refuses cleanly:
 *
 *   - the domain's shape (memory, vCPUs, name), which the restore needs
 *     before the first page arrives, is an HVM_PARAMS record right after
 *     STATIC_DATA_END, with parameter indices in a range Xen does not have
 *     (Xen's restore fails setting them: EINVAL);
 *   - the vCPU and platform state (the backend's get_state records) is the
 *     body of the one HVM_CONTEXT record, behind a header of its own whose
 *     first bytes Xen's hvm_load reads as a bad descriptor type.
 *
 * And the migration reply: after END, the destination sends the source one
 * fixed message on the same connection.
 */
#ifndef XTK_SR_FORMAT_H
#define XTK_SR_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include <xtk/domain.h>

/* ---- the domain's shape: HVM_PARAMS ----------------------------------- */

#define XTK__NET_MAX 63 /* a network sink's spec, without the NUL */

#define XTK__SR_PARAM_BASE 0x58544b00u /* "XTK": Xen's indices are < 64 */
#define XTK__SR_PARAM_VERSION (XTK__SR_PARAM_BASE + 0x00) /* value 1 */
#define XTK__SR_PARAM_NR_PAGES (XTK__SR_PARAM_BASE + 0x01)
#define XTK__SR_PARAM_NR_VCPUS (XTK__SR_PARAM_BASE + 0x02)
/* Value 1: the domain was in no store (so its copy is created without
 * one).  Only in streams of such domains: the others' shape is what it
 * was before, for restores that do not know this entry. */
#define XTK__SR_PARAM_NO_STORE (XTK__SR_PARAM_BASE + 0x03)
/* 8 entries, each 8 bytes of the name (little-endian), NUL-padded. */
#define XTK__SR_PARAM_NAME (XTK__SR_PARAM_BASE + 0x10)
#define XTK__SR_NAME_PARAMS 8
/* 8 entries, each 8 bytes of the network sink (xtk create --net),
 * NUL-padded; only in streams of domains that have one. */
#define XTK__SR_PARAM_NET (XTK__SR_PARAM_BASE + 0x20)
#define XTK__SR_NET_PARAMS 8
#define XTK__SR_PARAMS 11 /* entries always there */
#define XTK__SR_PARAMS_SIZE                                                    \
    (8 + 16 * (XTK__SR_PARAMS + 1 + XTK__SR_NET_PARAMS)) /* at most */

struct xtk__sr_config {
    uint64_t nr_pages;
    uint32_t nr_vcpus;
    uint32_t no_store; /* 1: the domain was in no store */
    char name[XTK_DOMAIN_NAME_MAX + 1];
    char net[XTK__NET_MAX + 1]; /* "": none */
};

/* Writes the HVM_PARAMS body (at most XTK__SR_PARAMS_SIZE bytes) into
 * buf; returns its length. */
size_t xtk__sr_config_encode(const struct xtk__sr_config *c, void *buf);

/*
 * Reads an HVM_PARAMS body: 0 and *c filled, or -1 (EPROTO: not xtk's, or
 * a shape xtk cannot restore) with the reason in why.
 */
int xtk__sr_config_decode(const void *body, uint32_t len,
                          struct xtk__sr_config *c, char *why, size_t whylen);

/* ---- the state: HVM_CONTEXT ----------------------------------------- */

#define XTK__SR_STATE_MAGIC "XTKSTATE" /* 8 bytes, no NUL */
#define XTK__SR_STATE_VERSION 1

struct xtk__sr_state_hdr {
    char magic[8];      /* XTK__SR_STATE_MAGIC */
    uint32_t version;   /* XTK__SR_STATE_VERSION */
    uint32_t length;    /* bytes of records after this header */
    char backend[8];    /* "kvm", NUL-padded: whose records follow */
    uint32_t nr_vcpus;  /* as in the shape */
    uint32_t reserved;  /* zero */
    uint64_t nr_pages;  /* as in the shape */
    uint64_t reserved2; /* zero */
};

/* Fills the header for len bytes of backend records. */
void xtk__sr_state_header(struct xtk__sr_state_hdr *h, const char *backend,
                          const struct xtk__sr_config *c, size_t len);

/*
 * Checks an HVM_CONTEXT body against the backend and the shape: header,
 * lengths, and the records' framing.  0 with *recs and *len set to the
 * records, or -1 (EPROTO: not xtk's or another backend's; EBADMSG:
 * malformed) with the reason in why.
 */
int xtk__sr_state_check(const void *body, uint32_t blen, const char *backend,
                        const struct xtk__sr_config *c, const void **recs,
                        size_t *len, char *why, size_t whylen);

/* ---- the migration reply -------------------------------------------- */

#define XTK__SR_REPLY_MAGIC 0x524b5458u /* "XTKR" */
#define XTK__SR_REPLY_VERSION 2

/*
 * 32 bytes, little-endian; see xtk-stream(5).  Version 2 carries the
 * destination's own spans, each measured on its own clock (two hosts'
 * CLOCK_MONOTONIC cannot be compared); version 1 carried a resume time on
 * the destination's clock instead, which a source reads as no timing.
 */
struct xtk__sr_reply {
    uint32_t magic;    /* XTK__SR_REPLY_MAGIC */
    uint16_t version;  /* XTK__SR_REPLY_VERSION */
    uint16_t reserved; /* zero */
    int32_t status;    /* 0: the domain runs here; else a positive errno */
    uint32_t domid;    /* the domain's id here (0 on failure) */
    uint64_t end_to_resumed_ns;   /* END received to the guest running */
    uint64_t resumed_to_reply_ns; /* the guest running to this reply sent */
};

/* Checks a received reply (version 1 or 2): 0, or -1 (EPROTO) if it is not
 * one.  A version 1 reply's timing fields are zeroed. */
int xtk__sr_reply_check(struct xtk__sr_reply *r);

/*
 * The back channel of a checkpointed stream (xtk-stream(5), "BACK
 * CHANNEL"): before its reply, a backup sends 32-byte messages of the
 * reply's size and magic, version XTK__SR_MSG_VERSION, which a source
 * tells from the reply by the version: an acknowledgement of each
 * complete epoch, and an answer to each heartbeat record.
 */
#define XTK__SR_MSG_VERSION 0x100
#define XTK__SR_MSG_ACK 1       /* epoch `seq` is complete and applied */
#define XTK__SR_MSG_HEARTBEAT 2 /* heartbeat `seq` arrived */
/* Post-copy (a migration's, after XTK_REC_POSTCOPY): */
#define XTK__SR_MSG_RUNNING 3  /* the guest runs there (seq 1) */
#define XTK__SR_MSG_PAGE 4     /* frame `value` is wanted first (seq 1) */
#define XTK__SR_MSG_PREPARED 5 /* the PREPARE's frames are out (seq 1) */
#define XTK__SR_MSG_LAST XTK__SR_MSG_PREPARED

/* The frames a post-copy source always sends before its switch record:
 * the host reads them itself before the guest runs (xtk-hv's boot and
 * status frames), so the destination cannot take them on demand. */
#define XTK__POSTCOPY_EAGER 16

/* XTK_REC_POSTCOPY's body: this, then the bitmap's words. */
#define XTK__SR_POSTCOPY_VERSION 1
struct xtk__sr_postcopy {
    uint32_t version;  /* XTK__SR_POSTCOPY_VERSION */
    uint32_t reserved; /* zero */
    uint64_t nr_bits;  /* the bitmap's: the domain's frames */
    uint64_t count;    /* bits set: the frames still to come */
};

/*
 * Checks an XTK_REC_POSTCOPY body against a domain of nr_pages frames
 * whose first `eager` frames the destination needs before it runs: 0 with
 * *bits pointing at the bitmap (in body) and *count its bits set, or -1
 * (EPROTO) with the reason in why.
 */
int xtk__sr_postcopy_check(const void *body, uint32_t len, uint64_t nr_pages,
                           uint64_t eager, const uint64_t **bits,
                           uint64_t *count, char *why, size_t whylen);

struct xtk__sr_msg {
    uint32_t magic;    /* XTK__SR_REPLY_MAGIC */
    uint16_t version;  /* XTK__SR_MSG_VERSION */
    uint16_t kind;     /* XTK__SR_MSG_* */
    uint32_t seq;      /* the epoch (1 is the first CHECKPOINT), or the
                          heartbeat's number */
    uint32_t reserved; /* zero */
    /* ACK: CHECKPOINT received to applied, there; RUNNING: the switch
     * received to the guest running, there; PAGE: the frame asked for */
    uint64_t value;
    uint64_t reserved2; /* zero */
};

/* Checks a received back-channel message: 0, or -1 (EPROTO). */
int xtk__sr_msg_check(const struct xtk__sr_msg *m);

/* The heartbeat record's body (XTK_REC_HEARTBEAT), 16 bytes. */
struct xtk__sr_heartbeat {
    uint32_t seq;      /* 1, 2, ... in the stream */
    uint32_t epoch;    /* the last epoch the source sent */
    uint32_t deadline; /* ms: the source gives up on a backup this silent */
    uint32_t reserved; /* zero */
};

#endif /* XTK_SR_FORMAT_H */
