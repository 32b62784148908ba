/*
 * rundir.c - xtk-hv's files in the run directory, and what becomes of them
 * when a domain goes.  See xtk-hv(8), FILES.
 *
 * A live domain N has <N>.lock (its id), name-<name>.lock (its name),
 * <N>.sock (its control socket) and, when libxtk started it, <N>.log.
 * When it goes, so do they: each lock file is unlinked while still locked,
 * and the log moves to log/<N>.log, where the logs of the last
 * XTK_LOG_KEEP (default 10) gone domains are kept, the oldest removed
 * first.  What an xtk-hv killed with SIGKILL left behind is swept by the
 * next xtk-hv that starts in the directory: a lock that nobody holds
 * belongs to no live domain.
 *
 * Unlinking lock files without races: a taker opens the file, locks it,
 * and then checks that the path still names the file it locked; if the
 * owner unlinked it in between, the taker starts over.  A lock on an
 * unlinked file therefore never makes a second owner.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hv.h"
#include "parse-num.h"

#define LOG_KEEP_DEFAULT 10u
#define LOG_KEEP_MAX 100000u

/* A path into buf (PATH_MAX): 0, or -1 if it does not fit. */
static int pathf(char *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int pathf(char *buf, const char *fmt, ...)
{
    va_list al;
    int n;

    va_start(al, fmt);
    n = vsnprintf(buf, PATH_MAX, fmt, al);
    va_end(al);
    return n < 0 || n >= PATH_MAX ? -1 : 0;
}

int hv_lock_path(const char *path, int create)
{
    for (;;) {
        struct stat held, named;
        int fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);

        if (fd < 0)
            return -1;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            close(fd);
            errno = e == EWOULDBLOCK ? EEXIST : e;
            return -1;
        }
        if (fstat(fd, &held) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (stat(path, &named) == 0 && named.st_dev == held.st_dev &&
            named.st_ino == held.st_ino)
            return fd;
        close(fd); /* unlinked (or replaced) meanwhile: not ours */
        if (!create) {
            errno = ENOENT;
            return -1;
        }
    }
}

void hv_unlock_path(const char *path, int fd)
{
    if (fd < 0)
        return;
    if (unlink(path) < 0 && errno != ENOENT)
        hv_log("%s: %m", path);
    close(fd);
}

/* XTK_LOG_KEEP: how many gone domains' logs log/ keeps. */
static unsigned int log_keep(void)
{
    uint32_t v;

    if (xtk__parse_u32(getenv("XTK_LOG_KEEP"), 0, LOG_KEEP_MAX, &v) < 0)
        return LOG_KEEP_DEFAULT;
    return v;
}

struct old_log {
    char name[NAME_MAX + 1];
    struct timespec mtime;
};

static int older_first(const void *a, const void *b)
{
    const struct old_log *x = a, *y = b;

    if (x->mtime.tv_sec != y->mtime.tv_sec)
        return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec)
        return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Removes the oldest logs of dir beyond keep. */
static void prune_logs(const char *dir, unsigned int keep)
{
    struct old_log *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d = opendir(dir);

    if (!d)
        return;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        struct stat st;

        if (len < 5 || strcmp(de->d_name + len - 4, ".log") ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            struct old_log *nv;
            cap = cap ? cap * 2 : 32;
            nv = realloc(v, cap * sizeof(*v));
            if (!nv)
                break;
            v = nv;
        }
        snprintf(v[n].name, sizeof(v[n].name), "%s", de->d_name);
        v[n].mtime = st.st_mtim;
        n++;
    }
    if (n > keep) {
        qsort(v, n, sizeof(*v), older_first);
        for (size_t i = 0; i < n - keep; i++)
            if (unlinkat(dirfd(d), v[i].name, 0) < 0 && errno != ENOENT)
                hv_log("%s/%s: %m", dir, v[i].name);
    }
    closedir(d);
    free(v);
}

void hv_rundir_keep_log(const char *rundir, uint32_t domid)
{
    char from[PATH_MAX], dir[PATH_MAX], to[PATH_MAX];
    unsigned int keep = log_keep();

    if (pathf(from, "%s/%" PRIu32 ".log", rundir, domid) < 0 ||
        access(from, F_OK) < 0)
        return;
    if (!keep) {
        unlink(from);
        return;
    }
    if (pathf(dir, "%s/log", rundir) < 0 ||
        pathf(to, "%s/log/%" PRIu32 ".log", rundir, domid) < 0 ||
        (mkdir(dir, 0700) < 0 && errno != EEXIST) || rename(from, to) < 0) {
        hv_log("keeping %s: %m; removed", from);
        unlink(from);
        return;
    }
    prune_logs(dir, keep);
}

/* The files of id, which nobody holds: gone, the log kept. */
static void sweep_id(const char *rundir, uint32_t id)
{
    char lock[PATH_MAX], sock[PATH_MAX];
    int fd;

    if (pathf(lock, "%s/%" PRIu32 ".lock", rundir, id) < 0 ||
        pathf(sock, "%s/%" PRIu32 ".sock", rundir, id) < 0)
        return;
    fd = hv_lock_path(lock, 1);
    if (fd < 0)
        return; /* a live domain's, or one starting */
    unlink(sock);
    hv_rundir_keep_log(rundir, id);
    hv_unlock_path(lock, fd);
}

static int by_id(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

void hv_rundir_sweep(const char *rundir)
{
    DIR *d = opendir(rundir);
    struct dirent *de;
    uint32_t *ids = NULL;
    size_t n = 0, cap = 0;
    char path[PATH_MAX];

    if (!d)
        return;
    while ((de = readdir(d))) {
        const char *s = de->d_name;
        size_t len = strlen(s);
        char *end;
        unsigned long id;

        if (!strncmp(s, "name-", 5) && len > 10 &&
            !strcmp(s + len - 5, ".lock")) {
            if (pathf(path, "%s/%s", rundir, s) == 0)
                hv_unlock_path(path, hv_lock_path(path, 0));
            continue;
        }
        if (s[0] < '1' || s[0] > '9')
            continue;
        errno = 0;
        id = strtoul(s, &end, 10);
        if (errno || id > DOMID_MAX ||
            (strcmp(end, ".lock") && strcmp(end, ".sock") &&
             strcmp(end, ".log")))
            continue;
        if (n == cap) {
            uint32_t *nv;
            cap = cap ? cap * 2 : 32;
            nv = realloc(ids, cap * sizeof(*ids));
            if (!nv)
                break;
            ids = nv;
        }
        ids[n++] = (uint32_t)id;
    }
    closedir(d);
    qsort(ids, n, sizeof(*ids), by_id);
    for (size_t i = 0; i < n; i++)
        if (!i || ids[i] != ids[i - 1]) /* an id's files: once */
            sweep_id(rundir, ids[i]);
    free(ids);
}
