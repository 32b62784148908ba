/*
 * hvctl.c - checks of xtk-hv control messages, shared by xtk-hv (requests)
 * and the kvm backend (replies).  Everything a peer sends goes through
 * xtk__hvctl_check() before any field is trusted.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "kvm/hvctl.h"

struct op_desc {
    const char *name;
    uint32_t min, max; /* payload bytes */
    uint32_t flags;    /* the flags the op accepts */
};

static const struct op_desc ops[XTK_HVCTL_OP_MAX + 1] = {
    [XTK_HVCTL_OP_HELLO] = {"hello", 0, 0, XTK_HVCTL_HELLO_OWN},
    [XTK_HVCTL_OP_INFO] = {"info", 0, 0, 0},
    [XTK_HVCTL_OP_PAUSE] = {"pause", 0, 0,
                            XTK_HVCTL_PAUSE_HOLD | XTK_HVCTL_PAUSE_APS |
                                XTK_HVCTL_PAUSE_NOTIFY},
    [XTK_HVCTL_OP_UNPAUSE] = {"unpause", 0, 0,
                              XTK_HVCTL_UNPAUSE_FORCE | XTK_HVCTL_UNPAUSE_APS},
    [XTK_HVCTL_OP_LOGDIRTY_ENABLE] = {"logdirty-enable", 0, 0, 0},
    [XTK_HVCTL_OP_LOGDIRTY_DISABLE] = {"logdirty-disable", 0, 0, 0},
    [XTK_HVCTL_OP_LOGDIRTY_SYNC] = {"logdirty-sync", 0, 0,
                                    XTK_HVCTL_LOGDIRTY_FINAL},
    [XTK_HVCTL_OP_GET_STATE] = {"get-state", 0, 0, 0},
    [XTK_HVCTL_OP_SET_STATE] =
        {"set-state", 0, XTK_HVCTL_MSG_MAX - sizeof(struct xtk_hvctl_hdr), 0},
    [XTK_HVCTL_OP_RESUME] = {"resume", 0, 0, 0},
    [XTK_HVCTL_OP_DESTROY] = {"destroy", 0, 0, 0},
    [XTK_HVCTL_OP_CONSOLE_READ] = {"console-read",
                                   sizeof(struct xtk_hvctl_console_req),
                                   sizeof(struct xtk_hvctl_console_req), 0},
    [XTK_HVCTL_OP_SUSPEND_GUARD] = {"suspend-guard", 0, 0,
                                    XTK_HVCTL_SUSPEND_GUARD_ON},
    [XTK_HVCTL_OP_RENAME] = {"rename", 2, XTK_HVCTL_NAME_MAX, 0},
    [XTK_HVCTL_OP_STOP] = {"stop", 0, 0, 0},
    [XTK_HVCTL_OP_OUTPUT_HOLD] = {"output-hold", 0, 0,
                                  XTK_HVCTL_OUTPUT_HOLD_ON |
                                      XTK_HVCTL_OUTPUT_SEND},
    [XTK_HVCTL_OP_OUTPUT_RELEASE] = {"output-release",
                                     sizeof(struct xtk_hvctl_release),
                                     sizeof(struct xtk_hvctl_release), 0},
    [XTK_HVCTL_OP_LAZY] = {"lazy", 0, 0, XTK_HVCTL_LAZY_DONE},
    [XTK_HVCTL_OP_VCPUS] = {"vcpus", 0, 0, 0},
};

const char *xtk__hvctl_op_name(unsigned int op)
{
    op &= ~XTK_HVCTL_REPLY;
    return op <= XTK_HVCTL_OP_MAX && ops[op].name ? ops[op].name : "?";
}

int xtk__hvctl_check(const void *msg, size_t n, int truncated, int reply)
{
    struct xtk_hvctl_hdr h;
    const struct op_desc *d;

    if (n < sizeof(h))
        return -1;
    memcpy(&h, msg, sizeof(h));
    if (h.magic != XTK_HVCTL_MAGIC)
        return -1;
    if (h.version != XTK_HVCTL_VERSION)
        return EPROTONOSUPPORT;
    if (truncated || n > XTK_HVCTL_MSG_MAX || h.len != n - sizeof(h))
        return EBADMSG;
    if (reply) {
        if (!(h.op & XTK_HVCTL_REPLY) || h.error < 0 || (h.error && h.len))
            return EBADMSG;
        return 0;
    }
    if (h.op & XTK_HVCTL_REPLY || h.error)
        return EINVAL;
    if (h.op > XTK_HVCTL_OP_MAX || !ops[h.op].name)
        return ENOSYS;
    d = &ops[h.op];
    if (h.len < d->min || h.len > d->max || (h.flags & ~d->flags))
        return EINVAL;
    return 0;
}
