/*
 * _xtk.c - the C half of the Python bindings (`import xtk`; the Python
 * half, bindings/python/xtk/, gives the public classes).
 *
 * Threads.  Each Context runs libxtk's event loop on a thread of its own
 * (the "loop thread"); every libxtk call is made there, handed over with
 * event_base_once() by the calling thread, which waits for it with the GIL
 * released.  Jobs (saves, restores) run on that loop, with libxtk's own
 * threads under them.  No Python code ever runs on any of those threads:
 * what they produce (a job's phases, rounds, epochs, its end) goes into
 * the job's event log under a mutex, and an eventfd (Job.fileno()) wakes
 * whoever waits -- a blocking wait() or an asyncio reader.
 *
 * Objects.  A Job's C state (struct job) is made with the Python object
 * and freed with it, but only once the loop has let go of it (the job has
 * ended and its libxtk objects are freed): a Job collected while it runs
 * is cancelled and waited for first.  Jobs and Domains keep their Context
 * alive.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include <xtk/xtk.h>

/* ---- errors ------------------------------------------------------------ */

static PyObject *XtkError; /* _xtk.Error, replaced by xtk.Error at import */

/* Raises _xtk.Error(errno, strerror, message, phase). */
static PyObject *raise_error(int err, const char *message, const char *phase)
{
    PyObject *args = Py_BuildValue("(iszz)", err, strerror(err),
                                   message && *message ? message : NULL,
                                   phase && *phase ? phase : NULL);

    if (args) {
        PyErr_SetObject(XtkError, args);
        Py_DECREF(args);
    }
    return NULL;
}

/* ---- the context: a loop thread ----------------------------------------- */

typedef struct {
    PyObject_HEAD struct xtk_ctx *ctx;
    struct event_base *base;
    pthread_t thread;
    int running;
    struct xtk_logger logger;
    int level; /* messages at or above it go to stderr */
    pthread_mutex_t lock;
    char recent[16][512]; /* the last 16 error messages, by number % 16 */
    uint64_t errors;      /* how many were logged */
    struct job *jobs;     /* every job of the context (under lock) */
} ContextObject;

struct job;
static void context_end_jobs(ContextObject *c);

static PyTypeObject ContextType;

static void log_vmessage(struct xtk_logger *lg, xtk_log_level level,
                         int errnoval, const char *context, const char *fmt,
                         va_list al) __attribute__((format(printf, 5, 0)));

static void log_vmessage(struct xtk_logger *lg, xtk_log_level level,
                         int errnoval, const char *context, const char *fmt,
                         va_list al)
{
    ContextObject *c =
        (ContextObject *)((char *)lg - offsetof(ContextObject, logger));
    char msg[512];
    int e = errno;

    vsnprintf(msg, sizeof(msg), fmt, al);
    if (level >= XTK_LOG_ERROR) {
        pthread_mutex_lock(&c->lock);
        snprintf(c->recent[c->errors % 16], sizeof(c->recent[0]), "%s", msg);
        c->errors++;
        pthread_mutex_unlock(&c->lock);
    }
    if ((int)level >= c->level)
        fprintf(stderr, "xtk: %s: %s%s%s\n", context, msg,
                errnoval > 0 ? ": " : "",
                errnoval > 0 ? strerror(errnoval) : "");
    errno = e;
}

static void *loop_main(void *arg)
{
    ContextObject *c = arg;

    event_base_loop(c->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* One call handed to the loop thread, and its caller's wait. */
struct call {
    void (*fn)(void *arg);
    void *arg;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int done;
};

static void call_trampoline(evutil_socket_t fd, short what, void *arg)
{
    struct call *k = arg;

    k->fn(k->arg);
    pthread_mutex_lock(&k->m);
    k->done = 1;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->m);
}

/*
 * Runs fn(arg) on the loop thread and waits for it.  Called without the
 * GIL (fn must not touch Python objects).  -1 if the loop cannot take it.
 */
static int on_loop(ContextObject *c, void (*fn)(void *), void *arg)
{
    struct call k = {.fn = fn, .arg = arg};
    struct timeval now = {0, 0};

    /* On the loop's thread, or with no loop left (the context closed):
     * nothing else runs libxtk calls of this context. */
    if (!c->running || pthread_equal(pthread_self(), c->thread)) {
        fn(arg);
        return 0;
    }
    pthread_mutex_init(&k.m, NULL);
    pthread_cond_init(&k.cv, NULL);
    if (event_base_once(c->base, -1, EV_TIMEOUT, call_trampoline, &k, &now) <
        0) {
        pthread_mutex_destroy(&k.m);
        pthread_cond_destroy(&k.cv);
        errno = ENOMEM;
        return -1;
    }
    pthread_mutex_lock(&k.m);
    while (!k.done)
        pthread_cond_wait(&k.cv, &k.m);
    pthread_mutex_unlock(&k.m);
    pthread_mutex_destroy(&k.m);
    pthread_cond_destroy(&k.cv);
    return 0;
}

/* The same without waiting (fn frees what it needs to). */
static int on_loop_async(ContextObject *c,
                         void (*fn)(evutil_socket_t, short, void *), void *arg)
{
    struct timeval now = {0, 0};

    return event_base_once(c->base, -1, EV_TIMEOUT, fn, arg, &now);
}

static void break_loop(void *arg)
{
    event_base_loopbreak(arg);
}

static int Context_init(ContextObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"run_dir", "log_level", NULL};
    const char *run_dir = NULL;
    int level = XTK_LOG_WARN, e;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|zi", kwlist, &run_dir, &level))
        return -1;
    if (self->ctx) {
        PyErr_SetString(PyExc_RuntimeError, "Context initialised twice");
        return -1;
    }
    pthread_mutex_init(&self->lock, NULL);
    self->level = level;
    self->logger.vmessage = log_vmessage;
    self->ctx = xtk_ctx_open(&self->logger, NULL, 0);
    if (!self->ctx) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (run_dir && xtk_ctx_set_rundir(self->ctx, run_dir) < 0) {
        e = errno;
        xtk_ctx_close(self->ctx);
        self->ctx = NULL;
        raise_error(e, "run_dir must be an absolute path", NULL);
        return -1;
    }
    self->base = xtk_ctx_event_base(self->ctx);
    e = pthread_create(&self->thread, NULL, loop_main, self);
    if (e) {
        xtk_ctx_close(self->ctx);
        self->ctx = NULL;
        errno = e;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->running = 1;
    return 0;
}

static void context_stop(ContextObject *self)
{
    if (!self->running)
        return;
    /* With the GIL held: no Job is freed meanwhile. */
    context_end_jobs(self);
    Py_BEGIN_ALLOW_THREADS;
    on_loop(self, break_loop, self->base);
    pthread_join(self->thread, NULL);
    Py_END_ALLOW_THREADS;
    self->running = 0;
}

static void Context_dealloc(ContextObject *self)
{
    context_stop(self);
    if (self->ctx) {
        xtk_ctx_close(self->ctx);
        pthread_mutex_destroy(&self->lock);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int context_ok(ContextObject *c)
{
    if (!c->ctx || !c->running) {
        PyErr_SetString(PyExc_ValueError, "the Context is closed");
        return 0;
    }
    return 1;
}

/*
 * The first error message logged after the first `since` (the cause, as a
 * rule: what follows it is its consequences), or "".  Messages of other
 * jobs of the context may come between; the first is still the likeliest.
 */
static void context_message(ContextObject *c, uint64_t since, char *buf,
                            size_t size)
{
    pthread_mutex_lock(&c->lock);
    if (c->errors > since) {
        if (c->errors - since > 16)
            since = c->errors - 16; /* the oldest kept */
        snprintf(buf, size, "%s", c->recent[since % 16]);
    } else {
        snprintf(buf, size, "%s", "");
    }
    pthread_mutex_unlock(&c->lock);
}

static uint64_t context_errors(ContextObject *c)
{
    uint64_t n;

    pthread_mutex_lock(&c->lock);
    n = c->errors;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* ---- domains ------------------------------------------------------------ */

typedef struct {
    PyObject_HEAD ContextObject *ctx;
    struct xtk_domain *dom;
    uint32_t domid;
} DomainObject;

static PyTypeObject DomainType;

static PyObject *info_tuple(const struct xtk_domain_info *i)
{
    return Py_BuildValue("(IsIKIK)", i->domid, i->name, i->nr_vcpus,
                         (unsigned long long)i->nr_pages, i->flags,
                         (unsigned long long)i->uptime_ns);
}

struct list_call {
    struct xtk_ctx *ctx;
    struct xtk_domain_info *infos;
    size_t nr;
    int rc, err;
};

static void do_list(void *arg)
{
    struct list_call *l = arg;

    l->rc = xtk_domain_list(l->ctx, &l->infos, &l->nr);
    l->err = errno;
}

static PyObject *Context_list(ContextObject *self, PyObject *unused)
{
    struct list_call l = {.ctx = self->ctx};
    PyObject *out;

    if (!context_ok(self))
        return NULL;
    Py_BEGIN_ALLOW_THREADS;
    on_loop(self, do_list, &l);
    Py_END_ALLOW_THREADS;
    if (l.rc < 0)
        return raise_error(l.err, "listing the domains", NULL);
    out = PyList_New((Py_ssize_t)l.nr);
    for (size_t i = 0; out && i < l.nr; i++) {
        PyObject *t = info_tuple(&l.infos[i]);

        if (!t) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, (Py_ssize_t)i, t);
    }
    free(l.infos);
    return out;
}

struct open_call {
    struct xtk_ctx *ctx;
    const char *what;
    const struct xtk_domain_config *cfg;
    struct xtk_domain *dom;
    int err;
};

static void do_lookup(void *arg)
{
    struct open_call *o = arg;

    o->dom = xtk_domain_lookup(o->ctx, o->what);
    o->err = errno;
}

static void do_create(void *arg)
{
    struct open_call *o = arg;

    o->dom = xtk_domain_create(o->ctx, o->cfg);
    o->err = errno;
}

/* The class of the handles made (xtk.Domain, a subclass). */
static PyTypeObject *domain_class = &DomainType;

static PyObject *new_domain(ContextObject *c, struct xtk_domain *d)
{
    DomainObject *o = (DomainObject *)domain_class->tp_alloc(domain_class, 0);

    if (!o) {
        Py_BEGIN_ALLOW_THREADS;
        on_loop(c, (void (*)(void *))xtk_domain_close, d);
        Py_END_ALLOW_THREADS;
        return NULL;
    }
    Py_INCREF(c);
    o->ctx = c;
    o->dom = d;
    o->domid = xtk_domain_id(d);
    return (PyObject *)o;
}

static PyObject *Context_lookup(ContextObject *self, PyObject *args)
{
    struct open_call o = {.ctx = self->ctx};
    uint64_t before;
    char msg[512];

    if (!PyArg_ParseTuple(args, "s", &o.what) || !context_ok(self))
        return NULL;
    before = context_errors(self);
    Py_BEGIN_ALLOW_THREADS;
    on_loop(self, do_lookup, &o);
    Py_END_ALLOW_THREADS;
    if (!o.dom) {
        context_message(self, before, msg, sizeof(msg));
        if (!*msg)
            snprintf(msg, sizeof(msg), "%s: %s", o.what,
                     o.err == ENOENT ? "no such domain" : strerror(o.err));
        return raise_error(o.err, msg, NULL);
    }
    return new_domain(self, o.dom);
}

static PyObject *Context_create(ContextObject *self, PyObject *args,
                                PyObject *kw)
{
    static char *kwlist[] = {"name", "memory_mib", "vcpus", "cmdline", "kernel",
                             "net",  "paused",     "store", NULL};
    struct xtk_domain_config cfg = {0};
    struct open_call o = {.ctx = self->ctx, .cfg = &cfg};
    unsigned long long mem = 0;
    unsigned int vcpus = 0;
    int paused = 0, store = 1;
    uint64_t before;
    char msg[512];

    if (!PyArg_ParseTupleAndKeywords(args, kw, "|zKIzzzpp", kwlist, &cfg.name,
                                     &mem, &vcpus, &cfg.cmdline, &cfg.kernel,
                                     &cfg.net, &paused, &store) ||
        !context_ok(self))
        return NULL;
    cfg.memory_mib = mem;
    cfg.nr_vcpus = vcpus;
    cfg.flags =
        (paused ? XTK_DOMCFG_PAUSED : 0) | (store ? 0 : XTK_DOMCFG_NO_STORE);
    before = context_errors(self);
    Py_BEGIN_ALLOW_THREADS;
    on_loop(self, do_create, &o);
    Py_END_ALLOW_THREADS;
    if (!o.dom) {
        context_message(self, before, msg, sizeof(msg));
        if (!*msg && o.err == EEXIST)
            snprintf(msg, sizeof(msg), "a domain called %s exists already",
                     cfg.name ? cfg.name : "so");
        return raise_error(o.err, msg, NULL);
    }
    return new_domain(self, o.dom);
}

static PyObject *Context_close(ContextObject *self, PyObject *unused)
{
    context_stop(self);
    Py_RETURN_NONE;
}

/* One domain operation on the loop thread. */
struct dom_call {
    struct xtk_domain *dom;
    int op;
    const char *name;
    struct xtk_domain_info info;
    struct xtk_vcpu_stats *vcpus; /* D_VCPUS: room for max_vcpus */
    unsigned int max_vcpus, nr_vcpus;
    uint64_t offset;
    char *buf;
    size_t len;
    int rc, err;
};

enum {
    D_INFO,
    D_VCPUS,
    D_PAUSE,
    D_UNPAUSE,
    D_RESUME,
    D_DESTROY,
    D_RENAME,
    D_CONSOLE,
    D_CLOSE,
    D_OUTPUT_SEND,
    D_OUTPUT_DROP
};

static void do_dom(void *arg)
{
    struct dom_call *d = arg;

    switch (d->op) {
    case D_INFO:
        d->rc = xtk_domain_info(d->dom, &d->info);
        break;
    case D_VCPUS:
        d->rc = xtk_domain_vcpus(d->dom, d->vcpus, d->max_vcpus, &d->nr_vcpus);
        break;
    case D_PAUSE:
        d->rc = xtk_domain_pause(d->dom);
        break;
    case D_UNPAUSE:
        d->rc = xtk_domain_unpause(d->dom);
        break;
    case D_RESUME:
        d->rc = xtk_domain_resume(d->dom);
        break;
    case D_DESTROY:
        d->rc = xtk_domain_destroy(d->dom);
        break;
    case D_RENAME:
        d->rc = xtk_domain_rename(d->dom, d->name);
        break;
    case D_CONSOLE:
        d->rc = xtk_domain_console_read(d->dom, &d->offset, d->buf, &d->len);
        break;
    case D_OUTPUT_SEND:
    case D_OUTPUT_DROP:
        d->rc = xtk_domain_output_end(
            d->dom, d->op == D_OUTPUT_SEND ? XTK_OUTPUT_SEND : XTK_OUTPUT_DROP);
        break;
    case D_CLOSE:
        xtk_domain_close(d->dom);
        d->rc = 0;
        break;
    }
    d->err = errno;
}

static int domain_ok(DomainObject *self)
{
    if (!self->dom) {
        PyErr_SetString(PyExc_ValueError, "the Domain handle is closed");
        return 0;
    }
    return context_ok(self->ctx);
}

static int dom_run(DomainObject *self, struct dom_call *d, const char *what)
{
    uint64_t before = context_errors(self->ctx);
    char msg[512];

    d->dom = self->dom;
    Py_BEGIN_ALLOW_THREADS;
    on_loop(self->ctx, do_dom, d);
    Py_END_ALLOW_THREADS;
    if (d->rc == 0)
        return 0;
    context_message(self->ctx, before, msg, sizeof(msg));
    if (!*msg)
        snprintf(msg, sizeof(msg), "domain %u: %s: %s", self->domid, what,
                 strerror(d->err));
    raise_error(d->err, msg, NULL);
    return -1;
}

static PyObject *Domain_info(DomainObject *self, PyObject *unused)
{
    struct dom_call d = {.op = D_INFO};

    if (!domain_ok(self) || dom_run(self, &d, "info") < 0)
        return NULL;
    return info_tuple(&d.info);
}

/* _vcpus() -> [(vcpu, flags, cpu_ns, wait_ns, slices, preemptions, blocks,
 *               yields_attempted, yields_successful, boosts), ...] */
static PyObject *Domain_vcpus(DomainObject *self, PyObject *unused)
{
    struct xtk_vcpu_stats v[64];
    struct dom_call d = {.op = D_VCPUS, .vcpus = v, .max_vcpus = 64};
    PyObject *list;

    if (!domain_ok(self) || dom_run(self, &d, "vcpus") < 0)
        return NULL;
    list = PyList_New(0);
    for (unsigned int i = 0; list && i < d.nr_vcpus && i < 64; i++) {
        PyObject *t = Py_BuildValue("(IIKKKKKKKK)", v[i].vcpu, v[i].flags,
                                    (unsigned long long)v[i].cpu_ns,
                                    (unsigned long long)v[i].wait_ns,
                                    (unsigned long long)v[i].slices,
                                    (unsigned long long)v[i].preemptions,
                                    (unsigned long long)v[i].blocks,
                                    (unsigned long long)v[i].yields_attempted,
                                    (unsigned long long)v[i].yields_successful,
                                    (unsigned long long)v[i].boosts);
        if (!t || PyList_Append(list, t) < 0) {
            Py_XDECREF(t);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(t);
    }
    return list;
}

#define DOMAIN_SIMPLE(fn, OP, what)                                            \
    static PyObject *fn(DomainObject *self, PyObject *unused)                  \
    {                                                                          \
        struct dom_call d = {.op = OP};                                        \
                                                                               \
        if (!domain_ok(self) || dom_run(self, &d, what) < 0)                   \
            return NULL;                                                       \
        Py_RETURN_NONE;                                                        \
    }
DOMAIN_SIMPLE(Domain_pause, D_PAUSE, "pause")
DOMAIN_SIMPLE(Domain_unpause, D_UNPAUSE, "unpause")
DOMAIN_SIMPLE(Domain_resume, D_RESUME, "resume")
DOMAIN_SIMPLE(Domain_destroy, D_DESTROY, "destroy")
DOMAIN_SIMPLE(Domain_output_send, D_OUTPUT_SEND, "output release")
DOMAIN_SIMPLE(Domain_output_drop, D_OUTPUT_DROP, "output drop")

static PyObject *Domain_rename(DomainObject *self, PyObject *args)
{
    struct dom_call d = {.op = D_RENAME};

    if (!PyArg_ParseTuple(args, "s", &d.name) || !domain_ok(self) ||
        dom_run(self, &d, "rename") < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* console_read(offset, size) -> (offset, bytes) */
static PyObject *Domain_console_read(DomainObject *self, PyObject *args)
{
    unsigned long long off = 0;
    Py_ssize_t size = 65536;
    struct dom_call d = {.op = D_CONSOLE};
    PyObject *out;

    if (!PyArg_ParseTuple(args, "|Kn", &off, &size) || !domain_ok(self))
        return NULL;
    if (size <= 0 || size > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "size must be 1 to 16 MiB");
        return NULL;
    }
    d.buf = malloc((size_t)size);
    if (!d.buf)
        return PyErr_NoMemory();
    d.offset = off;
    d.len = (size_t)size;
    if (dom_run(self, &d, "console") < 0) {
        free(d.buf);
        return NULL;
    }
    out = Py_BuildValue("(Ky#)", (unsigned long long)d.offset, d.buf,
                        (Py_ssize_t)d.len);
    free(d.buf);
    return out;
}

static void domain_close(DomainObject *self)
{
    struct dom_call d = {.op = D_CLOSE, .dom = self->dom};

    if (!self->dom)
        return;
    if (self->ctx->running) {
        Py_BEGIN_ALLOW_THREADS;
        on_loop(self->ctx, do_dom, &d);
        Py_END_ALLOW_THREADS;
    } else {
        xtk_domain_close(self->dom);
    }
    self->dom = NULL;
}

static PyObject *Domain_close(DomainObject *self, PyObject *unused)
{
    domain_close(self);
    Py_RETURN_NONE;
}

static void Domain_dealloc(DomainObject *self)
{
    domain_close(self);
    Py_XDECREF(self->ctx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Domain_get_domid(DomainObject *self, void *unused)
{
    return PyLong_FromUnsignedLong(self->domid);
}

/* ---- jobs: a save or a restore ----------------------------------------- */

enum job_kind { JOB_SAVE, JOB_RESTORE };
enum ev_kind { EV_PHASE = 1, EV_ROUND, EV_EPOCH, EV_LOST, EV_END };

struct jev {
    uint8_t kind;
    uint64_t ns;
    char phase[XTK_STATS_NAME_MAX + 1];
    union {
        struct xtk_stats_round round;
        struct xtk_stats_epoch epoch;
    } u;
};

/* The event log keeps this many events (the oldest are dropped). */
#define JOB_LOG_MAX 262144

struct job {
    enum job_kind kind;
    ContextObject *c;        /* kept alive by the Job object */
    struct job *next, *prev; /* the context's list */

    /* Owned by the loop thread while the job runs. */
    struct xtk_domain *dom;
    struct xtk_save *sv;
    struct xtk_restore *rs;
    struct xtk_stream *stream;
    struct xtk_save_options so;
    struct xtk_restore_options ro;
    char *name;       /* the restored domain's name */
    int fd;           /* file or socket under the stream */
    int lfd;          /* restore from a listener: the listening socket */
    struct event *ev; /* ... waiting on it */
    char tmp[PATH_MAX], real[PATH_MAX]; /* a save to a file: commit */
    int in_place, closed;
    int zlib;         /* compression level, or -2: none */
    uint64_t errors0; /* the context's error count at the start */

    /* Shared, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int started, ended, released; /* released: the loop has let go */
    int err;
    uint32_t domid;
    char message[512];
    char last_phase[XTK_STATS_NAME_MAX + 1];
    char *final_json;
    struct jev *log;
    size_t log_cap, log_len; /* a ring of log_cap, log_len valid */
    uint64_t log_next;       /* absolute index of the next event */
    int efd;
};

static void job_push(struct job *j, const struct jev *e)
{
    uint64_t one = 1;
    ssize_t r;

    pthread_mutex_lock(&j->lock);
    if (j->log_len == j->log_cap && j->log_cap < JOB_LOG_MAX) {
        /* Grow the ring; an event's slot stays its index modulo the size. */
        size_t ncap = j->log_cap ? j->log_cap * 2 : 256;
        struct jev *n = malloc(ncap * sizeof(*n));

        if (n) {
            for (uint64_t i = j->log_next - j->log_len; i < j->log_next; i++)
                n[i % ncap] = j->log[i % j->log_cap];
            free(j->log);
            j->log = n;
            j->log_cap = ncap;
        }
    }
    if (j->log_cap) {
        j->log[j->log_next % j->log_cap] = *e;
        j->log_next++;
        if (j->log_len < j->log_cap)
            j->log_len++;
    }
    /* The phase a failure came after: the engine's closing stamp is not
     * one. */
    if (e->kind == EV_PHASE && strcmp(e->phase, "save done"))
        snprintf(j->last_phase, sizeof(j->last_phase), "%s", e->phase);
    pthread_mutex_unlock(&j->lock);
    do
        r = write(j->efd, &one, sizeof(one));
    while (r < 0 && errno == EINTR);
}

/* libxtk's report observer: any thread, quick, no Python. */
static void observe(struct xtk_stats *st, const struct xtk_stats_event *ev,
                    void *arg)
{
    struct job *j = arg;
    struct jev e = {.ns = ev->ns};

    switch (ev->kind) {
    case XTK_STATS_EVENT_PHASE:
        e.kind = EV_PHASE;
        snprintf(e.phase, sizeof(e.phase), "%s", ev->phase);
        break;
    case XTK_STATS_EVENT_ROUND:
        e.kind = EV_ROUND;
        e.u.round = *ev->round;
        break;
    case XTK_STATS_EVENT_EPOCH:
        e.kind = EV_EPOCH;
        e.u.epoch = *ev->epoch;
        break;
    default:
        return;
    }
    job_push(j, &e);
}

/* Loop thread: the job's libxtk objects go; then it is released. */
static void job_release(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    int failed;

    pthread_mutex_lock(&j->lock);
    failed = j->err != 0;
    pthread_mutex_unlock(&j->lock);
    if (j->ev)
        event_free(j->ev);
    j->ev = NULL;
    xtk_save_free(j->sv);
    xtk_restore_free(j->rs);
    j->sv = NULL;
    j->rs = NULL;
    if (!j->closed && j->stream)
        xtk_stream_close(j->stream);
    j->stream = NULL;
    if (j->fd >= 0)
        close(j->fd);
    if (j->lfd >= 0)
        close(j->lfd);
    j->fd = j->lfd = -1;
    if (failed && j->tmp[0])
        unlink(j->tmp); /* never a half-written file in place */
    j->tmp[0] = 0;
    xtk_domain_close(j->dom);
    j->dom = NULL;
    /* Under the lock to the end: once released is seen, the owner may
     * free j (it takes the lock first); readers of the descriptor see
     * the job done (asyncio). */
    pthread_mutex_lock(&j->lock);
    j->released = 1;
    pthread_cond_broadcast(&j->cv);
    {
        uint64_t one = 1;
        ssize_t r;

        do
            r = write(j->efd, &one, sizeof(one));
        while (r < 0 && errno == EINTR);
    }
    pthread_mutex_unlock(&j->lock);
}

/* Loop thread: the job has ended with err. */
static void job_end(struct job *j, int err, struct xtk_stats *st)
{
    char *json = st ? xtk_stats_format(st, XTK_STATS_JSON) : NULL;
    struct jev e = {.kind = EV_END, .ns = xtk_now_ns()};
    char msg[512] = "";

    if (err)
        context_message(j->c, j->errors0, msg, sizeof(msg));
    pthread_mutex_lock(&j->lock);
    j->err = err;
    if (err && !j->message[0])
        snprintf(j->message, sizeof(j->message), "%s", msg);
    j->final_json = json;
    if (!err && j->rs)
        j->domid = xtk_restore_domid(j->rs);
    j->ended = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->lock);
    job_push(j, &e);
    /* Not from inside libxtk's own callback. */
    if (on_loop_async(j->c, job_release, j) < 0)
        job_release(-1, 0, j);
}

/* A backup lost its source (or failed by itself): the owner decides,
 * promote() or cancel().  The event carries the errno. */
static void restore_lost(struct xtk_restore *rs, int err, void *arg)
{
    struct jev e = {.kind = EV_LOST, .ns = xtk_now_ns()};

    e.u.round.round = (uint32_t)err;
    job_push(arg, &e);
}

static void save_done(struct xtk_save *sv, int err, void *arg)
{
    job_end(arg, err, xtk_save_stats(sv));
}

static void restore_done(struct xtk_restore *rs, int err, void *arg)
{
    job_end(arg, err, xtk_restore_stats(rs));
}

/* A save's commit: the stream complete, the file durable, then renamed
 * over the target (as xtk-save does). */
static int commit_file(struct xtk_save *sv, void *arg)
{
    struct job *j = arg;
    char dir[PATH_MAX];
    int r, dfd;

    j->closed = 1;
    r = xtk_stream_close(j->stream);
    j->stream = NULL;
    if (r == 0 && !j->in_place)
        r = fsync(j->fd);
    if (r < 0) {
        snprintf(j->message, sizeof(j->message), "writing %.400s: %s", j->real,
                 strerror(errno));
        return -1;
    }
    if (j->in_place)
        return 0;
    if (rename(j->tmp, j->real) < 0) {
        snprintf(j->message, sizeof(j->message),
                 "renaming %.200s to %.200s: %s", j->tmp, j->real,
                 strerror(errno));
        return -1;
    }
    j->tmp[0] = 0;
    snprintf(dir, sizeof(dir), "%s", j->real);
    dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

typedef struct {
    PyObject_HEAD ContextObject *ctx;
    struct job *j;
    int port; /* a restore's listening port */
} JobObject;

static PyTypeObject JobType;

static struct job *job_new(ContextObject *c, enum job_kind kind)
{
    struct job *j = calloc(1, sizeof(*j));

    if (!j)
        return NULL;
    j->kind = kind;
    j->c = c;
    j->fd = j->lfd = -1;
    pthread_mutex_lock(&c->lock);
    j->next = c->jobs;
    if (c->jobs)
        c->jobs->prev = j;
    c->jobs = j;
    pthread_mutex_unlock(&c->lock);
    j->zlib = -2;
    j->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (j->efd < 0) {
        free(j);
        return NULL;
    }
    pthread_mutex_init(&j->lock, NULL);
    {
        pthread_condattr_t ca;

        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&j->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    return j;
}

static void job_free(struct job *j)
{
    if (!j)
        return;
    pthread_mutex_lock(&j->c->lock);
    if (j->prev)
        j->prev->next = j->next;
    else
        j->c->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    pthread_mutex_unlock(&j->c->lock);
    close(j->efd);
    free(j->log);
    free(j->final_json);
    free(j->name);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->cv);
    free(j);
}

/* ---- starting a save ---------------------------------------------------- */

struct start_call {
    struct job *j;
    const char *domain;
    int rc, err;
    char why[512];
};

static void do_save_start(void *arg)
{
    struct start_call *s = arg;
    struct job *j = s->j;

    j->errors0 = context_errors(j->c);
    j->dom = xtk_domain_lookup(j->c->ctx, s->domain);
    if (!j->dom) {
        s->err = errno;
        snprintf(s->why, sizeof(s->why), "%s: %s", s->domain,
                 errno == ENOENT ? "no such domain" : strerror(errno));
        goto fail;
    }
    j->stream = j->so.flags & XTK_SAVE_MIGRATE
                    ? xtk_stream_socket(j->c->ctx, j->fd, XTK_STREAM_WRITE)
                    : xtk_stream_fd(j->c->ctx, j->fd, XTK_STREAM_WRITE);
    if (!j->stream ||
        (j->zlib != -2 && xtk_stream_push_zlib(j->stream, j->zlib) < 0)) {
        s->err = errno;
        snprintf(s->why, sizeof(s->why), "the stream: %s", strerror(errno));
        goto fail;
    }
    if (j->so.flags & XTK_SAVE_MIGRATE)
        xtk_stream_set_timeout(
            j->stream, j->so.timeout_ms ? (int)j->so.timeout_ms : 30000);
    j->sv = xtk_save_new(j->dom, j->stream, &j->so);
    if (!j->sv) {
        s->err = errno;
        snprintf(s->why, sizeof(s->why), "%s",
                 errno == EINVAL ? "bad options" : strerror(errno));
        goto fail;
    }
    xtk_stats_set_observer(xtk_save_stats(j->sv), observe, j);
    if (xtk_save_start(j->sv, save_done, j) < 0) {
        s->err = errno;
        snprintf(s->why, sizeof(s->why), "starting the save: %s",
                 strerror(errno));
        goto fail;
    }
    pthread_mutex_lock(&j->lock);
    j->started = 1;
    pthread_mutex_unlock(&j->lock);
    s->rc = 0;
    return;
fail:
    s->rc = -1;
    {
        char m[512];

        context_message(j->c, j->errors0, m, sizeof(m));
        if (*m && s->err != ENOENT)
            snprintf(s->why, sizeof(s->why), "%s", m);
    }
    pthread_mutex_lock(&j->lock);
    j->err = s->err;
    pthread_mutex_unlock(&j->lock);
    job_release(-1, 0, j);
}

/* A temporary file beside path (or path itself, not a regular file). */
static int open_target(struct job *j, const char *path, char *why, size_t n)
{
    char dir[PATH_MAX], base[PATH_MAX];
    struct stat sb;
    mode_t um;

    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        if (S_ISDIR(sb.st_mode)) {
            snprintf(why, n, "%s is a directory", path);
            return EISDIR;
        }
        j->in_place = 1;
        j->fd = open(path, O_WRONLY | O_CLOEXEC);
        snprintf(j->real, sizeof(j->real), "%s", path);
        if (j->fd < 0) {
            snprintf(why, n, "cannot open %s: %s", path, strerror(errno));
            return errno;
        }
        return 0;
    }
    if (!realpath(path, j->real)) {
        if (errno != ENOENT || snprintf(j->real, sizeof(j->real), "%s", path) >=
                                   (int)sizeof(j->real)) {
            snprintf(why, n, "%s: %s", path, strerror(errno));
            return errno ? errno : ENAMETOOLONG;
        }
    }
    snprintf(dir, sizeof(dir), "%s", j->real);
    snprintf(base, sizeof(base), "%s", j->real);
    if (snprintf(j->tmp, sizeof(j->tmp), "%s/.%s.xtk-XXXXXX", dirname(dir),
                 basename(base)) >= (int)sizeof(j->tmp)) {
        snprintf(why, n, "%s: name too long", path);
        return ENAMETOOLONG;
    }
    j->fd = mkostemp(j->tmp, O_CLOEXEC);
    if (j->fd < 0) {
        int e = errno;

        snprintf(why, n, "cannot create a file beside %s: %s", path,
                 strerror(e));
        j->tmp[0] = 0;
        return e;
    }
    um = umask(0);
    umask(um);
    if (fchmod(j->fd, 0666 & ~um) < 0) {
        /* the temporary file's 0600 stays: safe, just stricter */
    }
    return 0;
}

/* HOST:PORT or [V6]:PORT into host and port (NUL-terminated copies). */
static int split_endpoint(const char *s, char *host, size_t hn, char *port,
                          size_t pn)
{
    const char *colon;

    if (*s == '[') {
        const char *end = strchr(s, ']');

        if (!end || end[1] != ':')
            return -1;
        if ((size_t)(end - s - 1) >= hn)
            return -1;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = 0;
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= hn)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    if (!colon[1] || strlen(colon + 1) >= pn)
        return -1;
    strcpy(port, colon + 1);
    return 0;
}

/* Connects to host:port within wait_ms (the destination may be starting
 * to listen).  The socket, or -1 and errno. */
static int tcp_connect(const char *host, const char *port, int wait_ms)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *a;
    struct timespec t0, t;
    int fd = -1, e = ECONNREFUSED, one = 1;

    if (getaddrinfo(host, port, &hints, &res) != 0) {
        errno = EHOSTUNREACH;
        return -1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        for (a = res; a; a = a->ai_next) {
            fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC,
                        a->ai_protocol);
            if (fd < 0) {
                e = errno;
                continue;
            }
            if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                freeaddrinfo(res);
                return fd;
            }
            e = errno;
            close(fd);
            fd = -1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (e != ECONNREFUSED || (t.tv_sec - t0.tv_sec) * 1000 +
                                         (t.tv_nsec - t0.tv_nsec) / 1000000 >=
                                     wait_ms)
            break;
        nanosleep(&(struct timespec){0, 50000000}, NULL);
    }
    freeaddrinfo(res);
    errno = e;
    return -1;
}

/*
 * Runs a job's start on the loop (fn fills s->rc, s->err, s->why and, on
 * failure, releases the job).  Without the GIL.  0, or the errno.
 */
static int start_on_loop(ContextObject *c, void (*fn)(void *),
                         struct start_call *s)
{
    if (on_loop(c, fn, s) < 0) {
        s->rc = -1;
        s->err = errno;
        job_release(-1, 0, s->j);
    }
    return s->rc < 0 ? s->err : 0;
}

static void job_cancel_and_wait(struct job *j);

/* The Python object of a started job; if it cannot be made, the job is
 * cancelled and waited for (without Python), and NULL. */
static PyObject *job_object(ContextObject *c, struct job *j, int port)
{
    JobObject *jo = PyObject_New(JobObject, &JobType);

    if (!jo) {
        Py_BEGIN_ALLOW_THREADS;
        job_cancel_and_wait(j);
        Py_END_ALLOW_THREADS;
        job_free(j);
        return NULL;
    }
    Py_INCREF(c);
    jo->ctx = c;
    jo->j = j;
    jo->port = port;
    return (PyObject *)jo;
}

static const char *suspend_names[] = {"evtchn", "store", "pause", "xl"};

/*
 * save(domain, target, flags, suspend, max_downtime_ms, max_rounds, senders,
 *      max_bytes, interval_ms, checkpoints, timeout_ms, heartbeat_ms,
 *      peer_timeout_ms, compress, max_bandwidth, postcopy,
 *      postcopy_bandwidth, output_hold) -> Job
 * postcopy: 0 none, 1 the switch after the first round, 2 when pre-copy
 * does not converge.
 * target: a path, or "tcp:HOST:PORT" (a migration / a backup).
 */
static PyObject *Context_save(ContextObject *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"domain",       "target",
                             "live",         "keep",
                             "suspend",      "max_downtime_ms",
                             "max_rounds",   "senders",
                             "max_bytes",    "interval_ms",
                             "checkpoints",  "timeout_ms",
                             "heartbeat_ms", "peer_timeout_ms",
                             "compress",     "max_bandwidth",
                             "postcopy",     "postcopy_bandwidth",
                             "output_hold",  NULL};
    const char *domain, *target, *suspend = "evtchn";
    int live = 0, keep = 0, compress = -2, hold = 1;
    unsigned int downtime = 0, rounds = 0, senders = 0, interval = 0, count = 0,
                 timeout = 0, hb = 0, peer = 0;
    unsigned long long max_bytes = 0, bandwidth = 0, pc_bandwidth = 0;
    unsigned int postcopy = 0;
    struct start_call s = {0};
    struct job *j;
    int e = 0;
    size_t k;

    if (!PyArg_ParseTupleAndKeywords(
            args, kw, "ss|ppsIIIKIIIIIiKIKp", kwlist, &domain, &target, &live,
            &keep, &suspend, &downtime, &rounds, &senders, &max_bytes,
            &interval, &count, &timeout, &hb, &peer, &compress, &bandwidth,
            &postcopy, &pc_bandwidth, &hold) ||
        !context_ok(self))
        return NULL;
    for (k = 0; k < sizeof(suspend_names) / sizeof(*suspend_names); k++)
        if (!strcmp(suspend, suspend_names[k]))
            break;
    if (k == sizeof(suspend_names) / sizeof(*suspend_names)) {
        PyErr_Format(PyExc_ValueError,
                     "suspend: %s (evtchn, store, pause or xl)", suspend);
        return NULL;
    }
    if (postcopy > 2) {
        PyErr_SetString(PyExc_ValueError, "postcopy: 0, 1 or 2");
        return NULL;
    }
    if (compress != -2 && (compress < -1 || compress > 9)) {
        PyErr_SetString(PyExc_ValueError, "compress: -1 to 9, or None");
        return NULL;
    }
    j = job_new(self, JOB_SAVE);
    if (!j)
        return PyErr_SetFromErrno(PyExc_OSError);
    j->zlib = compress;
    j->so = (struct xtk_save_options){
        .flags = (live ? XTK_SAVE_LIVE : 0) | (keep ? XTK_SAVE_KEEP : 0) |
                 (postcopy == 1   ? XTK_SAVE_POSTCOPY
                  : postcopy == 2 ? XTK_SAVE_POSTCOPY_AUTO
                                  : 0) |
                 (hold ? 0 : XTK_SAVE_UNHELD),
        .suspend = (uint32_t)k,
        .max_downtime_ms = downtime,
        .max_rounds = rounds,
        .senders = senders,
        .max_bytes = max_bytes,
        .checkpoint_interval_ms = interval,
        .checkpoints = count,
        .timeout_ms = timeout,
        .heartbeat_ms = hb,
        .peer_timeout_ms = peer,
        .peer_fd = -1,
        .max_bandwidth = bandwidth,
        .max_postcopy_bandwidth = pc_bandwidth,
    };
    Py_BEGIN_ALLOW_THREADS;
    if (!strncmp(target, "tcp:", 4)) {
        char host[256], port[32];

        if (split_endpoint(target + 4, host, sizeof(host), port, sizeof(port)) <
            0) {
            e = EINVAL;
            snprintf(s.why, sizeof(s.why), "%s: not tcp:HOST:PORT", target);
        } else {
            j->fd = tcp_connect(host, port, timeout ? (int)timeout : 5000);
            if (j->fd < 0) {
                e = errno;
                snprintf(s.why, sizeof(s.why), "%s:%s: %s", host, port,
                         strerror(e));
            }
        }
        j->so.flags |= XTK_SAVE_MIGRATE;
        j->so.peer_fd = j->fd;
    } else {
        e = open_target(j, target, s.why, sizeof(s.why));
        j->so.commit = commit_file;
        j->so.commit_arg = j;
    }
    if (!e) {
        s.j = j;
        s.domain = domain;
        e = start_on_loop(self, do_save_start, &s);
    } else {
        if (j->fd >= 0)
            close(j->fd);
        if (j->tmp[0])
            unlink(j->tmp);
        j->fd = -1;
    }
    Py_END_ALLOW_THREADS;
    if (e) {
        job_free(j);
        return raise_error(e, s.why, NULL);
    }
    return job_object(self, j, 0);
}

/* ---- starting a restore -------------------------------------------------- */

static int restore_begin(struct job *j, char *why, size_t n)
{
    j->rs = xtk_restore_new(j->c->ctx, j->stream, &j->ro);
    if (!j->rs) {
        snprintf(why, n, "%s",
                 errno == EINVAL ? "bad options" : strerror(errno));
        return -1;
    }
    xtk_stats_set_observer(xtk_restore_stats(j->rs), observe, j);
    if (xtk_restore_start(j->rs, restore_done, j) < 0) {
        snprintf(why, n, "starting the restore: %s", strerror(errno));
        return -1;
    }
    pthread_mutex_lock(&j->lock);
    j->started = 1;
    pthread_mutex_unlock(&j->lock);
    return 0;
}

/*
 * A migration's receive buffer, as xtk-restore sets it (see its comment):
 * small during pre-copy, so that the source can tell when what it sent is
 * applied here; widened by the restore for the stop-and-copy.  The
 * listener gets the wide one first, so that the window scale allows it.
 */
#define RCVBUF_PRECOPY (256 * 1024)
#define RCVBUF_FINAL (4 * 1024 * 1024)

static int set_rcvbuf(int fd, int size)
{
    if (!setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)))
        return 0;
    return setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
}

static void job_fail(struct job *j, int e, const char *why)
{
    pthread_mutex_lock(&j->lock);
    snprintf(j->message, sizeof(j->message), "%s", why);
    pthread_mutex_unlock(&j->lock);
    job_end(j, e ? e : EIO, NULL);
}

/* Loop thread: the source's first bytes are there (or it went quiet for
 * 30 s): a gzip stream gets zlib, then the restore starts. */
static void on_first_bytes(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    unsigned char m[2];
    ssize_t n = 0;
    char why[512];
    int e;

    if (what & EV_TIMEOUT) {
        job_fail(j, ETIMEDOUT, "the source sent nothing for 30 s");
        return;
    }
    n = recv(fd, m, 2, MSG_PEEK | MSG_DONTWAIT);
    if (n == 1 || (n < 0 && (errno == EAGAIN || errno == EINTR)))
        return; /* the event stays: more to come */
    event_free(j->ev);
    j->ev = NULL;
    if (n < 0) {
        e = errno;
        snprintf(why, sizeof(why), "the source's connection: %s", strerror(e));
        job_fail(j, e, why);
        return;
    }
    j->stream = xtk_stream_socket(j->c->ctx, fd, XTK_STREAM_READ);
    if (!j->stream) {
        e = errno;
        snprintf(why, sizeof(why), "the stream: %s", strerror(e));
        job_fail(j, e, why);
        return;
    }
    xtk_stream_set_timeout(j->stream, 30000);
    if ((j->zlib != -2 || (n == 2 && m[0] == 0x1f && m[1] == 0x8b)) &&
        xtk_stream_push_zlib(j->stream, -1) < 0) {
        e = errno;
        snprintf(why, sizeof(why), "decompression: %s", strerror(e));
        job_fail(j, e, why);
        return;
    }
    j->ro.flags |= XTK_RESTORE_REPLY;
    j->ro.peer_fd = fd;
    j->ro.final_rcvbuf = RCVBUF_FINAL;
    j->ro.name = j->name;
    if (restore_begin(j, why, sizeof(why)) < 0)
        job_fail(j, errno, why);
}

/* Loop thread: the listener has a connection. */
static void on_accept(evutil_socket_t lfd, short what, void *arg)
{
    struct job *j = arg;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), one = 1, e;
    struct timeval quiet = {30, 0};
    char why[512];

    if (fd < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
            return; /* the event stays; wait on */
        e = errno;
        snprintf(why, sizeof(why), "accept: %s", strerror(e));
        job_fail(j, e, why);
        return;
    }
    event_free(j->ev);
    close(j->lfd);
    j->lfd = -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    set_rcvbuf(fd, RCVBUF_PRECOPY);
    j->fd = fd;
    j->ev = event_new(j->c->base, fd, EV_READ | EV_PERSIST, on_first_bytes, j);
    if (!j->ev || event_add(j->ev, &quiet) < 0)
        job_fail(j, ENOMEM, "cannot wait for the source's stream");
}

/* A restore that was never started ends: cancel() of a listener. */
static void do_restore_cancel(void *arg)
{
    struct job *j = arg;
    int ended;

    pthread_mutex_lock(&j->lock);
    ended = j->ended;
    pthread_mutex_unlock(&j->lock);
    if (ended)
        return;
    if (j->rs) {
        xtk_restore_cancel(j->rs);
        return;
    }
    /* Still listening. */
    snprintf(j->message, sizeof(j->message), "cancelled while listening");
    job_end(j, ECANCELED, NULL);
}

static void do_restore_start(void *arg)
{
    struct start_call *s = arg;
    struct job *j = s->j;

    j->errors0 = context_errors(j->c);
    if (j->lfd >= 0) {
        j->ev =
            event_new(j->c->base, j->lfd, EV_READ | EV_PERSIST, on_accept, j);
        if (!j->ev || event_add(j->ev, NULL) < 0) {
            s->err = ENOMEM;
            snprintf(s->why, sizeof(s->why), "cannot wait for a connection");
            goto fail;
        }
        pthread_mutex_lock(&j->lock);
        j->started = 1;
        pthread_mutex_unlock(&j->lock);
        s->rc = 0;
        return;
    }
    if (j->zlib != -2 && xtk_stream_push_zlib(j->stream, -1) < 0) {
        s->err = errno;
        snprintf(s->why, sizeof(s->why), "decompression: %s", strerror(errno));
        goto fail;
    }
    j->ro.name = j->name;
    if (restore_begin(j, s->why, sizeof(s->why)) < 0) {
        s->err = errno;
        goto fail;
    }
    s->rc = 0;
    return;
fail:
    s->rc = -1;
    pthread_mutex_lock(&j->lock);
    j->err = s->err;
    pthread_mutex_unlock(&j->lock);
    job_release(-1, 0, j);
}

/* A listening socket on host:port; *bound gets the port. */
static int tcp_listen(const char *host, const char *port, int *bound)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *res;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int fd, one = 1, e;

    if ((e = getaddrinfo(host, port, &hints, &res)) != 0) {
        errno = e == EAI_SYSTEM ? errno : EADDRNOTAVAIL;
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (set_rcvbuf(fd, RCVBUF_FINAL) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 4) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        e = errno;
        freeaddrinfo(res);
        close(fd);
        errno = e;
        return -1;
    }
    freeaddrinfo(res);
    *bound =
        ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                       : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static int is_gzip_file(const char *path)
{
    unsigned char m[2];
    int fd = open(path, O_RDONLY | O_CLOEXEC), gz = 0;

    if (fd >= 0) {
        gz = read(fd, m, 2) == 2 && m[0] == 0x1f && m[1] == 0x8b;
        close(fd);
    }
    return gz;
}

/*
 * restore(source, name=None, failover_timeout_ms=0, peer_timeout_ms=0,
 *         decompress=None, lazy=False) -> Job
 * source: a path, or "listen:[HOST:]PORT" (port 0: any; Job.port says).
 * lazy: a file restored lazily (XTK_RESTORE_LAZY).
 */
static PyObject *Context_restore(ContextObject *self, PyObject *args,
                                 PyObject *kw)
{
    static char *kwlist[] = {
        "source",     "name", "failover", "peer_timeout_ms",
        "decompress", "lazy", NULL};
    const char *source, *name = NULL;
    int failover = 0, decompress = -1, lazy = 0; /* decompress -1: look */
    unsigned int peer = 0;
    struct start_call s = {0};
    struct job *j;
    int e = 0, port = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|zpIip", kwlist, &source,
                                     &name, &failover, &peer, &decompress,
                                     &lazy) ||
        !context_ok(self))
        return NULL;
    if (lazy && !strncmp(source, "listen:", 7))
        return raise_error(EINVAL,
                           "a lazy restore reads a file: not listen:", NULL);
    j = job_new(self, JOB_RESTORE);
    if (!j)
        return PyErr_SetFromErrno(PyExc_OSError);
    if (name && !(j->name = strdup(name))) {
        job_free(j);
        return PyErr_NoMemory();
    }
    j->ro.peer_fd = -1;
    j->ro.peer_timeout_ms = peer;
    j->ro.lost = restore_lost;
    j->ro.lost_arg = j;
    j->ro.flags =
        (failover ? XTK_RESTORE_FAILOVER : 0) | (lazy ? XTK_RESTORE_LAZY : 0);
    Py_BEGIN_ALLOW_THREADS;
    if (!strncmp(source, "listen:", 7)) {
        const char *ep = source + 7;
        char host[256] = "127.0.0.1", portbuf[32];

        /* No address named: this host only (the stream is in clear). */
        if (strchr(ep, ':') || *ep == '[') {
            if (split_endpoint(ep, host, sizeof(host), portbuf,
                               sizeof(portbuf)) < 0)
                e = EINVAL;
        } else if (strlen(ep) < sizeof(portbuf) && *ep) {
            strcpy(portbuf, ep);
        } else {
            e = EINVAL;
        }
        if (e)
            snprintf(s.why, sizeof(s.why), "%s: not listen:[HOST:]PORT",
                     source);
        else if ((j->lfd = tcp_listen(host, portbuf, &port)) < 0) {
            e = errno;
            snprintf(s.why, sizeof(s.why), "listening on %s:%s: %s", host,
                     portbuf, strerror(e));
        }
        j->zlib = decompress > 0 ? -1 : -2; /* else: seen in its bytes */
    } else {
        j->stream = xtk_stream_file(self->ctx, source, XTK_STREAM_READ);
        if (!j->stream) {
            e = errno;
            snprintf(s.why, sizeof(s.why), "%s: %s", source, strerror(e));
        }
        j->zlib = decompress > 0 || (decompress < 0 && is_gzip_file(source))
                      ? -1
                      : -2;
    }
    if (!e) {
        s.j = j;
        e = start_on_loop(self, do_restore_start, &s);
    } else {
        xtk_stream_close(j->stream);
        j->stream = NULL;
        if (j->lfd >= 0)
            close(j->lfd);
        j->lfd = -1;
    }
    Py_END_ALLOW_THREADS;
    if (e) {
        job_free(j);
        return raise_error(e, s.why, NULL);
    }
    return job_object(self, j, port);
}

/* ---- Job methods ----------------------------------------------------------
 */

static void do_cancel(void *arg)
{
    struct job *j = arg;

    if (j->kind == JOB_SAVE) {
        if (j->sv)
            xtk_save_cancel(j->sv);
    } else {
        do_restore_cancel(j);
    }
}

static void job_cancel_and_wait(struct job *j)
{
    int released;

    pthread_mutex_lock(&j->lock);
    released = j->released;
    pthread_mutex_unlock(&j->lock);
    if (released)
        return;
    on_loop(j->c, do_cancel, j);
    pthread_mutex_lock(&j->lock);
    while (!j->released)
        pthread_cond_wait(&j->cv, &j->lock);
    pthread_mutex_unlock(&j->lock);
}

/*
 * The context closes: what still runs is cancelled, as Job.cancel() does
 * (a save in pre-copy aborted, a checkpointing one ended with END, a
 * restore stopped), and waited for, with the GIL held.
 */
static void context_end_jobs(ContextObject *c)
{
    for (;;) {
        struct job *j, *pick = NULL;

        pthread_mutex_lock(&c->lock);
        for (j = c->jobs; j && !pick; j = j->next) {
            pthread_mutex_lock(&j->lock);
            if (!j->released)
                pick = j;
            pthread_mutex_unlock(&j->lock);
        }
        pthread_mutex_unlock(&c->lock);
        if (!pick)
            return;
        /* The GIL stays held: a Job freed by another thread meanwhile
         * would take pick with it (the loop needs no GIL). */
        job_cancel_and_wait(pick);
    }
}

static PyObject *Job_cancel(JobObject *self, PyObject *unused)
{
    Py_BEGIN_ALLOW_THREADS;
    on_loop(self->j->c, do_cancel, self->j);
    Py_END_ALLOW_THREADS;
    Py_RETURN_NONE;
}

/* Restore jobs: promote a backup that lost its source. */
static void do_promote(void *arg)
{
    struct start_call *s = arg;

    s->rc = s->j->rs ? xtk_restore_promote(s->j->rs) : -1;
    s->err = s->j->rs ? errno : EINVAL;
}

static PyObject *Job_promote(JobObject *self, PyObject *unused)
{
    struct start_call s = {.j = self->j};

    if (self->j->kind != JOB_RESTORE) {
        PyErr_SetString(PyExc_TypeError, "promote(): a restore's only");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS;
    on_loop(self->j->c, do_promote, &s);
    Py_END_ALLOW_THREADS;
    if (s.rc < 0)
        return raise_error(s.err, "promote", NULL);
    Py_RETURN_NONE;
}

/* A running save's knob, changed on the loop (the save may be freed
 * there once it ends). */
enum knob { KNOB_DOWNTIME, KNOB_BANDWIDTH };

struct knob_call {
    struct job *j;
    enum knob knob;
    unsigned long long v;
};

static void do_knob(void *arg)
{
    struct knob_call *k = arg;

    if (!k->j->sv)
        return;
    if (k->knob == KNOB_DOWNTIME)
        xtk_save_set_max_downtime(k->j->sv, (uint32_t)k->v);
    else
        xtk_save_set_bandwidth(k->j->sv, k->v);
}

static PyObject *set_knob(JobObject *self, PyObject *args, enum knob knob,
                          const char *fmt, const char *name)
{
    struct knob_call k = {.j = self->j, .knob = knob};
    unsigned int ms = 0;

    if (!(knob == KNOB_DOWNTIME ? PyArg_ParseTuple(args, fmt, &ms)
                                : PyArg_ParseTuple(args, fmt, &k.v)))
        return NULL;
    if (knob == KNOB_DOWNTIME)
        k.v = ms;
    if (self->j->kind != JOB_SAVE) {
        PyErr_Format(PyExc_TypeError, "%s(): a save's only", name);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS;
    on_loop(self->j->c, do_knob, &k);
    Py_END_ALLOW_THREADS;
    Py_RETURN_NONE;
}

static PyObject *Job_set_max_downtime(JobObject *self, PyObject *args)
{
    return set_knob(self, args, KNOB_DOWNTIME, "I", "set_max_downtime");
}

static PyObject *Job_set_bandwidth(JobObject *self, PyObject *args)
{
    return set_knob(self, args, KNOB_BANDWIDTH, "K", "set_bandwidth");
}

/*
 * _wait(timeout) -> bool: True once the job has ended.  timeout < 0: no
 * bound.  Signals are checked every 100 ms: a KeyboardInterrupt cancels
 * the job, waits for its end, and is raised.
 */
static PyObject *Job_wait(JobObject *self, PyObject *args)
{
    double timeout = -1;
    struct job *j = self->j;
    struct timespec now;
    long long end = 0;
    int ended = 0;

    if (!PyArg_ParseTuple(args, "|d", &timeout))
        return NULL;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (timeout >= 0)
        end = (long long)now.tv_sec * 1000000000LL + now.tv_nsec +
              (long long)(timeout * 1e9);
    for (;;) {
        long long t, slice;
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &now);
        t = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
        slice = t + 100000000LL;
        if (timeout >= 0 && slice > end)
            slice = end;
        ts.tv_sec = (time_t)(slice / 1000000000LL);
        ts.tv_nsec = (long)(slice % 1000000000LL);
        Py_BEGIN_ALLOW_THREADS;
        pthread_mutex_lock(&j->lock);
        while (!j->released &&
               pthread_cond_timedwait(&j->cv, &j->lock, &ts) != ETIMEDOUT)
            ;
        ended = j->released;
        pthread_mutex_unlock(&j->lock);
        Py_END_ALLOW_THREADS;
        if (ended)
            break;
        if (PyErr_CheckSignals() < 0) {
            Py_BEGIN_ALLOW_THREADS;
            job_cancel_and_wait(j);
            Py_END_ALLOW_THREADS;
            return NULL;
        }
        if (timeout >= 0 && slice >= end)
            break;
    }
    return PyBool_FromLong(ended);
}

/* _result() -> None while it runs, else (errno, message, phase, json,
 * domid). */
static PyObject *Job_result(JobObject *self, PyObject *unused)
{
    struct job *j = self->j;
    PyObject *out;

    pthread_mutex_lock(&j->lock);
    if (!j->released) {
        pthread_mutex_unlock(&j->lock);
        Py_RETURN_NONE;
    }
    out = Py_BuildValue("(izzzI)", j->err, j->message[0] ? j->message : NULL,
                        j->err && j->last_phase[0] ? j->last_phase : NULL,
                        j->final_json, j->domid);
    pthread_mutex_unlock(&j->lock);
    return out;
}

static PyObject *event_tuple(const struct jev *e, uint64_t index)
{
    switch (e->kind) {
    case EV_PHASE:
        return Py_BuildValue("(KsKs)", (unsigned long long)index, "phase",
                             (unsigned long long)e->ns, e->phase);
    case EV_ROUND:
        return Py_BuildValue("(KsK(IKKKK))", (unsigned long long)index, "round",
                             (unsigned long long)e->ns, e->u.round.round,
                             (unsigned long long)e->u.round.dirty,
                             (unsigned long long)e->u.round.sent,
                             (unsigned long long)e->u.round.bytes,
                             (unsigned long long)e->u.round.ns);
    case EV_EPOCH:
        return Py_BuildValue("(KsK(IKKKKKKK))", (unsigned long long)index,
                             "epoch", (unsigned long long)e->ns,
                             e->u.epoch.epoch,
                             (unsigned long long)e->u.epoch.pause_ns,
                             (unsigned long long)e->u.epoch.copy_ns,
                             (unsigned long long)e->u.epoch.send_ns,
                             (unsigned long long)e->u.epoch.ack_ns,
                             (unsigned long long)e->u.epoch.held_ns,
                             (unsigned long long)e->u.epoch.pages,
                             (unsigned long long)e->u.epoch.bytes);
    case EV_LOST:
        return Py_BuildValue("(KsKI)", (unsigned long long)index, "lost",
                             (unsigned long long)e->ns, e->u.round.round);
    default:
        return Py_BuildValue("(KsKO)", (unsigned long long)index, "end",
                             (unsigned long long)e->ns, Py_None);
    }
}

/*
 * _events(since) -> (next, [(index, kind, ns, data), ...]): the events
 * from index `since` on (from the oldest kept, if those are gone), and
 * the index to ask from next time.  Drains the eventfd.
 */
static PyObject *Job_events(JobObject *self, PyObject *args)
{
    unsigned long long since = 0;
    struct job *j = self->j;
    uint64_t first, next, cnt;
    struct jev *copy = NULL;
    PyObject *list;

    if (!PyArg_ParseTuple(args, "|K", &since))
        return NULL;
    {
        uint64_t v;

        if (read(j->efd, &v, sizeof(v)) < 0 && errno != EAGAIN) {
            /* nothing to clear */
        }
    }
    pthread_mutex_lock(&j->lock);
    first = j->log_next - j->log_len;
    next = j->log_next;
    if (since < first)
        since = first;
    if (since > next)
        since = next;
    cnt = next - since;
    if (cnt) {
        copy = malloc(cnt * sizeof(*copy));
        if (copy)
            for (uint64_t i = 0; i < cnt; i++)
                copy[i] = j->log[(since + i) % j->log_cap];
    }
    pthread_mutex_unlock(&j->lock);
    if (cnt && !copy)
        return PyErr_NoMemory();
    list = PyList_New((Py_ssize_t)cnt);
    for (uint64_t i = 0; list && i < cnt; i++) {
        PyObject *t = event_tuple(&copy[i], since + i);

        if (!t) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    free(copy);
    if (!list)
        return NULL;
    return Py_BuildValue("(KN)", (unsigned long long)next, list);
}

static PyObject *Job_fileno(JobObject *self, PyObject *unused)
{
    return PyLong_FromLong(self->j->efd);
}

static PyObject *Job_get_port(JobObject *self, void *unused)
{
    if (!self->port)
        Py_RETURN_NONE;
    return PyLong_FromLong(self->port);
}

static PyObject *Job_get_kind(JobObject *self, void *unused)
{
    return PyUnicode_FromString(self->j->kind == JOB_SAVE ? "save" : "restore");
}

static void Job_dealloc(JobObject *self)
{
    if (self->j) {
        Py_BEGIN_ALLOW_THREADS;
        job_cancel_and_wait(self->j);
        Py_END_ALLOW_THREADS;
        job_free(self->j);
    }
    Py_XDECREF(self->ctx);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ---- tables ------------------------------------------------------------- */

static PyMethodDef Context_methods[] = {
    {"_list", (PyCFunction)Context_list, METH_NOARGS, NULL},
    {"_lookup", (PyCFunction)Context_lookup, METH_VARARGS, NULL},
    {"_create", (PyCFunction)(void (*)(void))Context_create,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_save", (PyCFunction)(void (*)(void))Context_save,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_restore", (PyCFunction)(void (*)(void))Context_restore,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_close", (PyCFunction)Context_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ContextType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_xtk.Context",
    .tp_basicsize = sizeof(ContextObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Context_init,
    .tp_dealloc = (destructor)Context_dealloc,
    .tp_methods = Context_methods,
    .tp_doc = "libxtk's context with its event loop on a thread of its own",
};

static PyMethodDef Domain_methods[] = {
    {"_info", (PyCFunction)Domain_info, METH_NOARGS, NULL},
    {"_vcpus", (PyCFunction)Domain_vcpus, METH_NOARGS, NULL},
    {"pause", (PyCFunction)Domain_pause, METH_NOARGS,
     "Pauses the domain: no vCPU runs guest code until unpause()."},
    {"unpause", (PyCFunction)Domain_unpause, METH_NOARGS,
     "Unpauses the domain, whoever paused it."},
    {"resume", (PyCFunction)Domain_resume, METH_NOARGS,
     "Resumes a guest that suspended itself (and unpauses it)."},
    {"destroy", (PyCFunction)Domain_destroy, METH_NOARGS,
     "Destroys the domain."},
    {"rename", (PyCFunction)Domain_rename, METH_VARARGS, "Renames the domain."},
    {"_console_read", (PyCFunction)Domain_console_read, METH_VARARGS, NULL},
    {"release_output", (PyCFunction)Domain_output_send, METH_NOARGS,
     "Ends an orphaned output hold: what is held goes out."},
    {"drop_output", (PyCFunction)Domain_output_drop, METH_NOARGS,
     "Ends an orphaned output hold: what is held is never sent."},
    {"close", (PyCFunction)Domain_close, METH_NOARGS,
     "Closes the handle (the domain runs on)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Domain_getset[] = {
    {"domid", (getter)Domain_get_domid, NULL, "the domain's id", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject DomainType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_xtk.Domain",
    .tp_basicsize = sizeof(DomainObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_dealloc = (destructor)Domain_dealloc,
    .tp_methods = Domain_methods,
    .tp_getset = Domain_getset,
    .tp_doc = "a handle on one domain",
};

static PyMethodDef Job_methods[] = {
    {"cancel", (PyCFunction)Job_cancel, METH_NOARGS, NULL},
    {"promote", (PyCFunction)Job_promote, METH_NOARGS, NULL},
    {"set_max_downtime", (PyCFunction)Job_set_max_downtime, METH_VARARGS, NULL},
    {"set_bandwidth", (PyCFunction)Job_set_bandwidth, METH_VARARGS, NULL},
    {"_wait", (PyCFunction)Job_wait, METH_VARARGS, NULL},
    {"_result", (PyCFunction)Job_result, METH_NOARGS, NULL},
    {"_events", (PyCFunction)Job_events, METH_VARARGS, NULL},
    {"fileno", (PyCFunction)Job_fileno, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Job_getset[] = {
    {"port", (getter)Job_get_port, NULL, NULL, NULL},
    {"kind", (getter)Job_get_kind, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject JobType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_xtk.Job",
    .tp_basicsize = sizeof(JobObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)Job_dealloc,
    .tp_methods = Job_methods,
    .tp_getset = Job_getset,
    .tp_doc = "a save or a restore running on a Context's loop",
};

static PyObject *set_error_class(PyObject *mod, PyObject *cls)
{
    if (!PyType_Check(cls) || !PyObject_IsSubclass(cls, PyExc_Exception)) {
        PyErr_SetString(PyExc_TypeError, "an exception class");
        return NULL;
    }
    Py_INCREF(cls);
    Py_XSETREF(XtkError, cls);
    Py_RETURN_NONE;
}

static PyObject *set_domain_class(PyObject *mod, PyObject *cls)
{
    if (!PyType_Check(cls) ||
        !PyType_IsSubtype((PyTypeObject *)cls, &DomainType)) {
        PyErr_SetString(PyExc_TypeError, "a subclass of _xtk.Domain");
        return NULL;
    }
    Py_INCREF(cls);
    domain_class = (PyTypeObject *)cls;
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"_set_error_class", set_error_class, METH_O, NULL},
    {"_set_domain_class", set_domain_class, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_xtk",
    "libxtk's C layer (use `import xtk`)",
    -1,
    module_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__xtk(void);

PyMODINIT_FUNC PyInit__xtk(void)
{
    PyObject *m;

    if (PyType_Ready(&ContextType) < 0 || PyType_Ready(&DomainType) < 0 ||
        PyType_Ready(&JobType) < 0)
        return NULL;
    m = PyModule_Create(&module);
    if (!m)
        return NULL;
    XtkError = PyErr_NewException("_xtk.Error", PyExc_OSError, NULL);
    Py_INCREF(&ContextType);
    Py_INCREF(&DomainType);
    Py_INCREF(&JobType);
    if (!XtkError ||
        PyModule_AddObject(m, "Context", (PyObject *)&ContextType) < 0 ||
        PyModule_AddObject(m, "Domain", (PyObject *)&DomainType) < 0 ||
        PyModule_AddObject(m, "Job", (PyObject *)&JobType) < 0 ||
        PyModule_AddStringConstant(m, "version", xtk_version()) < 0 ||
        PyModule_AddIntConstant(m, "DOMINFO_PAUSED", XTK_DOMINFO_PAUSED) < 0 ||
        PyModule_AddIntConstant(m, "DOMINFO_SUSPENDED", XTK_DOMINFO_SUSPENDED) <
            0 ||
        PyModule_AddIntConstant(m, "DOMINFO_EMPTY", XTK_DOMINFO_EMPTY) < 0 ||
        PyModule_AddIntConstant(m, "DOMINFO_LOGDIRTY", XTK_DOMINFO_LOGDIRTY) <
            0 ||
        PyModule_AddIntConstant(m, "DOMINFO_CRASHED", XTK_DOMINFO_CRASHED) <
            0 ||
        PyModule_AddIntConstant(m, "DOMINFO_STORE", XTK_DOMINFO_STORE) < 0 ||
        PyModule_AddIntConstant(m, "VCPU_WAIT", XTK_VCPU_WAIT) < 0 ||
        PyModule_AddIntConstant(m, "VCPU_YIELDS", XTK_VCPU_YIELDS) < 0 ||
        PyModule_AddIntConstant(m, "VCPU_RUNNING", XTK_VCPU_RUNNING) < 0 ||
        PyModule_AddIntConstant(m, "VCPU_BLOCKED", XTK_VCPU_BLOCKED) < 0 ||
        PyModule_AddIntConstant(m, "VCPU_PUBLISHED", XTK_VCPU_PUBLISHED) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
