/*
 * xl's text config (what `xl save DOM FILE CONFIG` and `xtk-save --config`
 * put in an xl file) read into a libxl domain config, for the domain
 * builder of a restore.
 *
 * libxlutil parses the file (the grammar xl itself reads); which keys mean
 * what is xl's own code (xl_parse.c), not a library, so this reads the
 * ones a guest xtk can build has: a PV or PVH guest with its console, its
 * disks (libxlutil's own disk syntax) and its network interfaces (xl's
 * vif keys, those that do not need COLO or a driver domain).  Every
 * other key is refused by name, rather than ignored: a restored domain
 * that silently differs from its config (a TSC mode, a CPU pinning, a
 * PCI device) is worse than a clear "use xl restore".  Other device lists
 * are accepted only empty.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxl.h>
#include <libxl_utils.h>
#include <libxlutil.h>

#include "xen/xlcfg.h"
#include "xtk-internal.h"

#define XTK_LOG_CONTEXT "xen"

/* Keys read here. */
static const char *const known[] = {"name",
                                    "uuid",
                                    "type",
                                    "builder",
                                    "memory",
                                    "maxmem",
                                    "vcpus",
                                    "maxvcpus",
                                    "kernel",
                                    "ramdisk",
                                    "cmdline",
                                    "extra",
                                    "root",
                                    "on_poweroff",
                                    "on_reboot",
                                    "on_crash",
                                    "on_soft_reset",
                                    "cpuid",
                                    "max_grant_frames",
                                    "max_maptrack_frames",
                                    "max_event_channels",
                                    "disk",
                                    "vif",
                                    NULL};

/* Device lists: accepted when empty (xtk builds no device but the
 * console, disks and network interfaces). */
static const char *const devices[] = {
    "pci",    "vfb",  "vkb",       "vtpm",    "p9",     "pvcalls",
    "vdispl", "vsnd", "channel",   "usbctrl", "usbdev", "dtdev",
    "rdm",    "usb",  "usbdevice", "serial",  "vif2",   NULL};

static int in(const char *const *set, const char *key)
{
    for (; *set; set++)
        if (!strcmp(*set, key))
            return 1;
    return 0;
}

/*
 * The keys the text assigns, in order, each once: a scan of xl's grammar
 * at its top level (KEY = VALUE or KEY += VALUE, statements ended by a
 * newline or ';', '#' comments, strings in single or double quotes with
 * backslash escapes, lists in brackets over several lines).  Calls fn for
 * each; stops at fn's first nonzero return.  -1 (EINVAL) on text that is
 * not of that shape.
 */
static int scan_keys(const char *t, size_t len,
                     int (*fn)(const char *key, void *arg), void *arg)
{
    size_t i = 0;

    for (;;) {
        char key[64];
        size_t k = 0;
        int depth = 0, r;

        while (i < len && (isspace((unsigned char)t[i]) || t[i] == ';'))
            i++;
        if (i < len && t[i] == '#') {
            while (i < len && t[i] != '\n')
                i++;
            continue;
        }
        if (i >= len || !t[i])
            return 0;
        if (!isalpha((unsigned char)t[i]) && t[i] != '_')
            return xtk__fail(EINVAL);
        while (i < len && (isalnum((unsigned char)t[i]) || t[i] == '_')) {
            if (k + 1 >= sizeof(key))
                return xtk__fail(EINVAL);
            key[k++] = t[i++];
        }
        key[k] = 0;
        while (i < len && (t[i] == ' ' || t[i] == '\t'))
            i++;
        if (i < len && t[i] == '+')
            i++;
        if (i >= len || t[i] != '=')
            return xtk__fail(EINVAL);
        i++;
        /* The value: up to a newline or ';' outside brackets. */
        while (i < len && t[i]) {
            char c = t[i];

            if (c == '"' || c == '\'') {
                for (i++; i < len && t[i] != c; i++)
                    if (t[i] == '\\')
                        i++;
                if (i >= len)
                    return xtk__fail(EINVAL);
                i++;
                continue;
            }
            if (c == '#') {
                while (i < len && t[i] != '\n')
                    i++;
                continue;
            }
            if (c == '[')
                depth++;
            else if (c == ']' && --depth < 0)
                return xtk__fail(EINVAL);
            else if ((c == '\n' || c == ';') && !depth)
                break;
            i++;
        }
        if (depth)
            return xtk__fail(EINVAL);
        if ((r = fn(key, arg)) != 0)
            return r;
    }
}

struct check {
    struct xtk_ctx *ctx;
    XLU_Config *cfg;
};

static int check_key(const char *key, void *arg)
{
    struct check *c = arg;
    int n = 0;

    if (in(known, key))
        return 0;
    if (in(devices, key)) {
        if (xlu_cfg_get_list(c->cfg, key, NULL, &n, 1) == 0 && !n)
            return 0;
        XTK_ERROR(c->ctx,
                  "the config (xl's text) gives the guest devices ('%s'): "
                  "xtk's domain builder builds none but the console, disks "
                  "and network interfaces (use xl restore)",
                  key);
        return xtk__fail(ENOTSUP);
    }
    XTK_ERROR(c->ctx,
              "the config (xl's text) sets '%s', which xtk's domain builder "
              "does not read: it builds from a config's name, uuid, type, "
              "memory, maxmem, vcpus, maxvcpus, kernel, ramdisk, cmdline, "
              "extra, root, on_* actions, cpuid, disk, vif and grant, "
              "maptrack and event channel limits (use xl restore, or a "
              "file with libxl's "
              "JSON config, which xl save and xtk-save without --config "
              "write)",
              key);
    return xtk__fail(ENOTSUP);
}

/* An optional string; 0 (and *v NULL if absent) or -1. */
static int get_str(struct xtk_ctx *ctx, XLU_Config *cfg, const char *key,
                   const char **v)
{
    int r = xlu_cfg_get_string(cfg, key, v, 1);

    if (r == ESRCH) {
        *v = NULL;
        return 0;
    }
    if (r) {
        XTK_ERROR(ctx, "the config's '%s' is not a string", key);
        return xtk__fail(EINVAL);
    }
    return 0;
}

/* An optional number in [min, max]; 0 (*v untouched if absent) or -1. */
static int get_num(struct xtk_ctx *ctx, XLU_Config *cfg, const char *key,
                   long min, long max, long *v)
{
    int r = xlu_cfg_get_bounded_long(cfg, key, min, max, v, 1);

    if (r == ESRCH || !r)
        return 0;
    XTK_ERROR(ctx, "the config's '%s' is not a number from %ld to %ld", key,
              min, max);
    return xtk__fail(EINVAL);
}

static int action(struct xtk_ctx *ctx, XLU_Config *cfg, const char *key,
                  libxl_action_on_shutdown *a, libxl_action_on_shutdown def)
{
    const char *s;

    *a = def;
    if (get_str(ctx, cfg, key, &s) < 0)
        return -1;
    if (s && libxl_action_on_shutdown_from_string(s, a)) {
        XTK_ERROR(ctx, "the config's %s = \"%s\" is not an action", key, s);
        return xtk__fail(EINVAL);
    }
    return 0;
}

static int dup_to(char **dst, const char *s)
{
    if (!s)
        return 0;
    free(*dst);
    *dst = strdup(s);
    return *dst ? 0 : -1;
}

/*
 * cpuid = "host,FEATURE=VALUE,...": as xl reads the string form, "host"
 * first, then each item through libxl.  (The list form, xend's, is
 * refused.)
 */
static int parse_cpuid(struct xtk_ctx *ctx, libxl_cpuid_policy_list *cpuid,
                       const char *s)
{
    char *copy = strdup(s), *save = NULL, *p;
    int r = 0;

    if (!copy)
        return -1;
    p = strtok_r(copy, ",", &save);
    if (!p || strcmp(p, "host")) {
        XTK_ERROR(ctx,
                  "the config's cpuid = \"%s\": the first word must be "
                  "\"host\"",
                  s);
        r = xtk__fail(EINVAL);
    }
    while (!r && (p = strtok_r(NULL, ",", &save)))
        if (libxl_cpuid_parse_config(cpuid, p)) {
            XTK_ERROR(ctx,
                      "the config's cpuid: \"%s\" is not one libxl "
                      "takes",
                      p);
            r = xtk__fail(EINVAL);
        }
    free(copy);
    return r;
}

/* disk = [ SPEC, ... ]: each in libxlutil's disk syntax, as xl reads it. */
static int parse_disks(struct xtk_ctx *ctx, XLU_Config *cfg, FILE *rf,
                       char **report, libxl_domain_config *c)
{
    XLU_ConfigList *list;
    const char *spec;
    int n = 0;

    if (xlu_cfg_get_list(cfg, "disk", &list, &n, 1))
        return 0;
    for (int i = 0; (spec = xlu_cfg_get_listitem(list, i)) != NULL; i++) {
        libxl_device_disk *d =
            realloc(c->disks, (size_t)(c->num_disks + 1) * sizeof(*d));
        int r;

        if (!d)
            return -1;
        c->disks = d;
        d = &c->disks[c->num_disks++];
        libxl_device_disk_init(d);
        r = xlu_disk_parse(cfg, 1, &spec, d);
        if (r) {
            fflush(rf);
            XTK_ERROR(ctx,
                      "the config's disk \"%s\" is not one xl reads: %.160s",
                      spec, *report ? *report : strerror(r));
            return xtk__fail(r == ENOMEM ? ENOMEM : EINVAL);
        }
    }
    return 0;
}

/* One KEY=VALUE of a vif spec, as xl's parse_nic_config reads it. */
static int nic_key(struct xtk_ctx *ctx, XLU_Config *cfg, libxl_device_nic *n,
                   const char *key, const char *v)
{
    char **str = NULL;

    if (!strcmp(key, "type")) {
        if (!strcmp(v, "vif"))
            n->nictype = LIBXL_NIC_TYPE_VIF;
        else if (!strcmp(v, "ioemu"))
            n->nictype = LIBXL_NIC_TYPE_VIF_IOEMU;
        else
            goto bad;
        return 0;
    }
    if (!strcmp(key, "mac")) {
        const char *p = v;

        for (int i = 0; i < 6; i++) {
            char *end;
            unsigned long b = strtoul(p, &end, 16);

            if (end == p || b > 255 || (i < 5 ? *end != ':' : *end != 0))
                goto bad;
            n->mac[i] = (uint8_t)b;
            p = end + 1;
        }
        return 0;
    }
    if (!strcmp(key, "rate")) {
        if (xlu_vif_parse_rate(cfg, v, n))
            goto bad;
        return 0;
    }
    if (!strcmp(key, "mtu")) {
        char *end;
        long m = strtol(v, &end, 10);

        if (end == v || *end || m < 68 || m > 65535)
            goto bad;
        n->mtu = (int)m;
        return 0;
    }
    if (!strcmp(key, "backend")) {
        /* A driver domain's backend: xtk adds devices served by dom0. */
        if (strcmp(v, "0") && strcmp(v, "Domain-0")) {
            XTK_ERROR(ctx,
                      "the config's vif has backend=%s: xtk builds network "
                      "interfaces served by dom0 only (use xl restore)",
                      v);
            return xtk__fail(ENOTSUP);
        }
        return 0;
    }
    if (!strcmp(key, "bridge"))
        str = &n->bridge;
    else if (!strcmp(key, "gatewaydev") || !strcmp(key, "netdev"))
        str = &n->gatewaydev;
    else if (!strcmp(key, "ip"))
        str = &n->ip;
    else if (!strcmp(key, "script"))
        str = &n->script;
    else if (!strcmp(key, "vifname"))
        str = &n->ifname;
    else if (!strcmp(key, "model"))
        str = &n->model;
    if (str)
        return dup_to(str, v);
    XTK_ERROR(ctx,
              "the config's vif sets '%s', which xtk's domain builder does "
              "not read: it reads type, mac, bridge, gatewaydev, ip, script, "
              "vifname, model, rate, mtu and backend (dom0 only); use xl "
              "restore",
              key);
    return xtk__fail(ENOTSUP);
bad:
    XTK_ERROR(ctx, "the config's vif has %s=%s, which is not a valid %s", key,
              v, key);
    return xtk__fail(EINVAL);
}

/* vif = [ "KEY=VALUE,...", ... ]: xl's network interfaces. */
static int parse_vifs(struct xtk_ctx *ctx, XLU_Config *cfg,
                      libxl_domain_config *c)
{
    XLU_ConfigList *list;
    const char *spec;
    int n = 0;

    if (xlu_cfg_get_list(cfg, "vif", &list, &n, 1))
        return 0;
    for (int i = 0; (spec = xlu_cfg_get_listitem(list, i)) != NULL; i++) {
        libxl_device_nic *nic =
            realloc(c->nics, (size_t)(c->num_nics + 1) * sizeof(*nic));
        char *copy, *save = NULL, *tok;
        int r = 0;

        if (!nic)
            return -1;
        c->nics = nic;
        nic = &c->nics[c->num_nics++];
        libxl_device_nic_init(nic);
        nic->devid = i; /* as xl numbers them */
        copy = strdup(spec);
        if (!copy)
            return -1;
        for (tok = strtok_r(copy, ",", &save); !r && tok;
             tok = strtok_r(NULL, ",", &save)) {
            char *eq;

            while (*tok == ' ')
                tok++;
            if (!*tok)
                continue;
            eq = strchr(tok, '=');
            if (!eq) {
                XTK_ERROR(ctx,
                          "the config's vif \"%s\": \"%s\" is not "
                          "KEY=VALUE",
                          spec, tok);
                r = xtk__fail(EINVAL);
                break;
            }
            *eq = 0;
            r = nic_key(ctx, cfg, nic, tok, eq + 1);
        }
        free(copy);
        if (r)
            return -1;
    }
    return 0;
}

int xtk__xen_config_from_text(struct xtk_ctx *ctx, const char *text, size_t len,
                              libxl_domain_config *c)
{
    struct check chk = {.ctx = ctx};
    char *report = NULL;
    size_t report_len = 0;
    FILE *rf = open_memstream(&report, &report_len);
    XLU_Config *cfg = NULL;
    const char *name, *uuid, *type, *builder, *kernel, *ramdisk, *cmdline,
        *extra, *root, *cpuid;
    long memory = -1, maxmem = -1, vcpus = -1, maxvcpus = -1, gnt = -1,
         mapt = -1, evtchn = -1;
    libxl_domain_type dt;
    libxl_domain_build_info *b = &c->b_info;
    int r = -1, e = EINVAL;

    while (len && !text[len - 1]) /* its NUL, if carried */
        len--;
    if (!rf || len > 1u << 20)
        goto out;
    /* Text: libxlutil asserts (aborts) on a NUL inside a quoted string,
     * and a control character has no place in a config either. */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];

        if (ch < 0x20 && ch != '\n' && ch != '\t' && ch != '\r') {
            XTK_ERROR(ctx,
                      "the stream's config is not text (byte %#x at "
                      "offset %zu)",
                      ch, i);
            goto out;
        }
    }
    cfg = xlu_cfg_init(rf, "the stream's config");
    if (!cfg) {
        e = ENOMEM;
        goto out;
    }
    if (xlu_cfg_readdata(cfg, text, (int)len)) {
        fflush(rf);
        while (report_len && (report[report_len - 1] == '\n'))
            report[--report_len] = 0;
        XTK_ERROR(ctx, "the stream's config is not xl's text format: %.200s",
                  report ? report : "");
        goto out;
    }
    chk.cfg = cfg;
    if (scan_keys(text, len, check_key, &chk) != 0) {
        e = errno;
        if (e == EINVAL)
            XTK_ERROR(ctx, "the stream's config: cannot tell its keys");
        goto out;
    }
    if (get_str(ctx, cfg, "name", &name) < 0 ||
        get_str(ctx, cfg, "uuid", &uuid) < 0 ||
        get_str(ctx, cfg, "type", &type) < 0 ||
        get_str(ctx, cfg, "builder", &builder) < 0 ||
        get_str(ctx, cfg, "kernel", &kernel) < 0 ||
        get_str(ctx, cfg, "ramdisk", &ramdisk) < 0 ||
        get_str(ctx, cfg, "cmdline", &cmdline) < 0 ||
        get_str(ctx, cfg, "extra", &extra) < 0 ||
        get_str(ctx, cfg, "root", &root) < 0 ||
        get_str(ctx, cfg, "cpuid", &cpuid) < 0 ||
        get_num(ctx, cfg, "memory", 1, 1L << 30, &memory) < 0 ||
        get_num(ctx, cfg, "maxmem", 1, 1L << 30, &maxmem) < 0 ||
        get_num(ctx, cfg, "vcpus", 1, 128, &vcpus) < 0 ||
        get_num(ctx, cfg, "maxvcpus", 1, 128, &maxvcpus) < 0 ||
        get_num(ctx, cfg, "max_grant_frames", 1, 1L << 20, &gnt) < 0 ||
        get_num(ctx, cfg, "max_maptrack_frames", 0, 1L << 20, &mapt) < 0 ||
        get_num(ctx, cfg, "max_event_channels", 1, 1L << 20, &evtchn) < 0)
        goto out_e;
    if (!name || !*name) {
        XTK_ERROR(ctx, "the stream's config names no domain");
        goto out;
    }
    /* xl's rules: type, else builder ("hvm"), else PV. */
    if (type) {
        if (libxl_domain_type_from_string(type, &dt) ||
            dt == LIBXL_DOMAIN_TYPE_INVALID) {
            XTK_ERROR(ctx, "the config's type = \"%s\" is not pv, pvh or hvm",
                      type);
            goto out;
        }
    } else {
        dt = builder && !strcmp(builder, "hvm") ? LIBXL_DOMAIN_TYPE_HVM
                                                : LIBXL_DOMAIN_TYPE_PV;
    }
    c->c_info.type = dt;
    libxl_domain_build_info_init_type(b, dt);
    e = ENOMEM;
    if (dup_to(&c->c_info.name, name) < 0)
        goto out;
    if (uuid && libxl_uuid_from_string(&c->c_info.uuid, uuid)) {
        XTK_ERROR(ctx, "the config's uuid = \"%s\" is not a UUID", uuid);
        e = EINVAL;
        goto out;
    }
    if (memory < 0)
        memory = 128; /* xl's default */
    if (maxmem < memory)
        maxmem = memory;
    b->target_memkb = (uint64_t)memory * 1024;
    b->max_memkb = (uint64_t)maxmem * 1024;
    if (dt == LIBXL_DOMAIN_TYPE_PV)
        b->u.pv.slack_memkb = 0; /* libxl's default without e820_host */
    if (vcpus < 0)
        vcpus = 1;
    b->max_vcpus = (int)(maxvcpus > 0 ? maxvcpus : vcpus);
    if (vcpus > b->max_vcpus) {
        XTK_ERROR(ctx, "the config's vcpus (%ld) exceeds its maxvcpus (%d)",
                  vcpus, b->max_vcpus);
        e = EINVAL;
        goto out;
    }
    /* As libxl_bitmap_alloc (which wants a context only to report an
     * allocation failure): bytes, calloc()ed, freed by the dispose. */
    libxl_bitmap_dispose(&b->avail_vcpus);
    b->avail_vcpus.size = (uint32_t)(b->max_vcpus + 7) / 8;
    b->avail_vcpus.map = calloc(b->avail_vcpus.size, 1);
    if (!b->avail_vcpus.map)
        goto out;
    for (long i = 0; i < vcpus; i++)
        libxl_bitmap_set(&b->avail_vcpus, (int)i);
    if (gnt > 0)
        b->max_grant_frames = (uint32_t)gnt;
    if (mapt >= 0)
        b->max_maptrack_frames = (uint32_t)mapt;
    if (evtchn > 0)
        b->event_channels = (uint32_t)evtchn;
    if (dup_to(&b->kernel, kernel) < 0 || dup_to(&b->ramdisk, ramdisk) < 0)
        goto out;
    /* xl: cmdline, else "root=ROOT EXTRA" from what is given. */
    if (cmdline) {
        if (dup_to(&b->cmdline, cmdline) < 0)
            goto out;
    } else if (root || extra) {
        size_t n =
            (root ? strlen(root) + 6 : 0) + (extra ? strlen(extra) : 0) + 2;
        free(b->cmdline);
        b->cmdline = malloc(n);
        if (!b->cmdline)
            goto out;
        snprintf(b->cmdline, n, "%s%s%s%s", root ? "root=" : "",
                 root ? root : "", root && extra ? " " : "",
                 extra ? extra : "");
    }
    e = EINVAL;
    if (cpuid && parse_cpuid(ctx, &b->cpuid, cpuid) < 0)
        goto out_e;
    if (action(ctx, cfg, "on_poweroff", &c->on_poweroff,
               LIBXL_ACTION_ON_SHUTDOWN_DESTROY) < 0 ||
        action(ctx, cfg, "on_reboot", &c->on_reboot,
               LIBXL_ACTION_ON_SHUTDOWN_RESTART) < 0 ||
        action(ctx, cfg, "on_crash", &c->on_crash,
               LIBXL_ACTION_ON_SHUTDOWN_DESTROY) < 0 ||
        action(ctx, cfg, "on_soft_reset", &c->on_soft_reset,
               LIBXL_ACTION_ON_SHUTDOWN_SOFT_RESET) < 0 ||
        parse_disks(ctx, cfg, rf, &report, c) < 0 ||
        parse_vifs(ctx, cfg, c) < 0)
        goto out_e;
    r = 0;
    goto out;
out_e:
    e = errno ? errno : EINVAL;
out:
    if (cfg)
        xlu_cfg_destroy(cfg);
    if (rf)
        fclose(rf);
    free(report);
    if (r)
        errno = e;
    return r;
}
