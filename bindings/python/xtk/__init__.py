"""xtk: save, restore, migrate and checkpoint virtual machines from Python.

The bindings of libxtk (see libxtk(3), xtk_save(3), xtk_restore(3)).  A
:class:`Context` is libxtk's context with its event loop on a thread of
its own; every libxtk call runs there, with the GIL released while the
caller waits.  Saves, restores, migrations and checkpoints are
:class:`Job` objects that run concurrently on that loop::

    import xtk
    with xtk.Context() as ctx:
        job = ctx.migrate("g1", "tcp:10.0.0.2:7000")
        for ev in job.events_now(): ...       # or: async for ev in job.events()
        job.wait()                              # raises xtk.Error on failure
        print(job.stats()["phases"])

No Python code ever runs on libxtk's threads: a job's events (phases,
rounds, epochs, its end) are queued in C and a descriptor
(:meth:`Job.fileno`) becomes readable when there are new ones, which is
what the asyncio support (``await job``, ``async for ev in
job.events()``) is built on.  Ctrl-C during a blocking :meth:`Job.wait`
cancels the job, waits for it to end cleanly, and raises
KeyboardInterrupt.
"""

import asyncio
import errno as _errno
import json
import os
from collections import namedtuple

try:  # installed: the C layer sits in the package
    from . import _xtk
except ImportError:  # the build tree: it is beside it (PYTHONPATH)
    import _xtk

__all__ = [
    "Context", "Domain", "DomainInfo", "VcpuStats", "Job", "Event", "Error",
    "CancelledError", "NoSuchDomain", "version",
]

version = _xtk.version

# ---- errors -----------------------------------------------------------------


class Error(OSError):
    """A libxtk failure: ``errno`` (as OSError's), ``message`` (libxtk's
    own sentence, or None) and ``phase`` (the last phase the job reached
    when it failed, or None)."""

    def __init__(self, errno=0, strerror=None, message=None, phase=None):
        super().__init__(errno, strerror or os.strerror(errno))
        self.message = message
        self.phase = phase

    def __new__(cls, errno=0, strerror=None, message=None, phase=None):
        # OSError's constructor would pick a subclass by errno: keep ours,
        # but map the two an orchestrator tests for.
        if cls is Error and errno == _errno.ECANCELED:
            cls = CancelledError
        return OSError.__new__(cls, errno, strerror or os.strerror(errno))

    def __str__(self):
        s = "[Errno %d] %s" % (self.errno, self.strerror)
        if self.message:
            s += ": " + self.message
        if self.phase:
            s += " (after phase %r)" % self.phase
        return s

    def __reduce__(self):
        return (Error, (self.errno, self.strerror, self.message, self.phase))


class CancelledError(Error):
    """The job was cancelled (ECANCELED): the source guest runs on."""


class NoSuchDomain(Error):
    """No such domain (ENOENT, from a lookup by name or id)."""


class _domain_errors:
    """Turns a lookup's ENOENT into NoSuchDomain (a file's stays an
    Error)."""

    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        if (isinstance(exc, Error) and not isinstance(exc, NoSuchDomain)
                and exc.errno == _errno.ENOENT and exc.message
                and exc.message.endswith("no such domain")):
            raise NoSuchDomain(exc.errno, exc.strerror, exc.message,
                               exc.phase) from None
        return False


_xtk._set_error_class(Error)

# ---- domains ----------------------------------------------------------------

DomainInfo = namedtuple(
    "DomainInfo", "domid name vcpus pages flags uptime_ns")
DomainInfo.__doc__ = """A domain's state: ``flags`` are DOMINFO_* bits."""

DOMINFO_PAUSED = _xtk.DOMINFO_PAUSED
DOMINFO_SUSPENDED = _xtk.DOMINFO_SUSPENDED
DOMINFO_EMPTY = _xtk.DOMINFO_EMPTY
DOMINFO_LOGDIRTY = _xtk.DOMINFO_LOGDIRTY
DOMINFO_CRASHED = _xtk.DOMINFO_CRASHED
DOMINFO_STORE = _xtk.DOMINFO_STORE

VcpuStats = namedtuple(
    "VcpuStats", "vcpu flags cpu_ns wait_ns slices preemptions blocks "
    "yields_attempted yields_successful boosts")
VcpuStats.__doc__ = """One vCPU as its host sees it (xtk_domain_vcpus(3)):
``wait_ns`` is the time it was runnable but waiting for a CPU (the
guest's steal time); ``flags`` are VCPU_* bits saying what is known."""

VCPU_WAIT = _xtk.VCPU_WAIT
VCPU_YIELDS = _xtk.VCPU_YIELDS
VCPU_RUNNING = _xtk.VCPU_RUNNING
VCPU_BLOCKED = _xtk.VCPU_BLOCKED
VCPU_PUBLISHED = _xtk.VCPU_PUBLISHED


class Domain(_xtk.Domain):
    """A handle on one running domain (closing it leaves the domain
    running).  Made by :meth:`Context.domain` and :meth:`Context.create`."""

    def info(self):
        """The domain's :class:`DomainInfo`."""
        return DomainInfo(*self._info())

    def vcpus(self):
        """A :class:`VcpuStats` per vCPU, in order (never waits for the
        guest)."""
        return [VcpuStats(*t) for t in self._vcpus()]

    @property
    def name(self):
        return self.info().name

    def console(self, offset=0, size=65536):
        """Console bytes from ``offset`` on: ``(offset, data)``; the
        returned offset moves past bytes that were dropped.  The next
        call asks from ``offset + len(data)``."""
        return self._console_read(offset, size)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "<xtk.Domain %d>" % self.domid


_xtk._set_domain_class(Domain)

# ---- jobs -------------------------------------------------------------------

Event = namedtuple("Event", "index kind ns data")
Event.__doc__ = """One thing that happened in a job, in order.

``kind`` is ``"phase"`` (``data`` its name, as in the report), ``"round"``
(``data`` a dict: round, dirty, sent, bytes, ns), ``"epoch"`` (a dict:
epoch, pause_ns, copy_ns, send_ns, ack_ns, held_ns, pages, bytes; an
epoch is reported again as each phase of it is filled in), ``"lost"`` (a
backup lost its source: ``data`` the errno; decide with
:meth:`Job.promote` or :meth:`Job.cancel`) or ``"end"`` (the last one).
``ns`` is CLOCK_MONOTONIC nanoseconds."""

_ROUND = ("round", "dirty", "sent", "bytes", "ns")
_EPOCH = ("epoch", "pause_ns", "copy_ns", "send_ns", "ack_ns", "held_ns",
          "pages", "bytes")


def _event(t):
    index, kind, ns, data = t
    if kind == "round":
        data = dict(zip(_ROUND, data))
    elif kind == "epoch":
        data = dict(zip(_EPOCH, data))
    return Event(index, kind, ns, data)


class Job:
    """A save, restore, migration or checkpointing job on a Context's loop.

    It has started when the call that made it returned; it ends exactly
    once, with a definite status: :meth:`wait` returns (or ``await job``
    gives) None on success and raises :class:`Error` on failure;
    :meth:`stats` has the job's report (the content of ``--stats-json``:
    phases, rounds, epochs, histograms and counters once it has ended; the
    phases, rounds and epochs seen so far while it runs).
    """

    def __init__(self, cjob, ctx, what):
        self._j = cjob
        self._ctx = ctx
        self.what = what
        self._next = 0
        self._phases = []
        self._rounds = []
        self._epochs = {}
        self._lost = None

    # -- state --
    @property
    def kind(self):
        """``"save"`` or ``"restore"``."""
        return self._j.kind

    @property
    def port(self):
        """A restore from ``listen:``: the port it listens on."""
        return self._j.port

    def fileno(self):
        """A descriptor that is readable when the job has new events (or
        has ended): for select/poll/asyncio.  Reading events clears it."""
        return self._j.fileno()

    def done(self):
        """True once the job has ended."""
        return self._j._result() is not None

    @property
    def domid(self):
        """A restore that succeeded: the new domain's id."""
        r = self._j._result()
        return r[4] if r and r[4] else None

    # -- control --
    def cancel(self):
        """Asks the job to stop.  A save in pre-copy or waiting for the
        guest is aborted (the guest runs on here; the job fails with
        :class:`CancelledError`); a save in its final round completes; a
        checkpointing save ends after the current epoch with END (a
        success).  A restore stops and destroys what it built (unless the
        stream was complete).  Returns at once; :meth:`wait` for the end."""
        self._j.cancel()

    def set_max_downtime(self, ms):
        """A save: the downtime target from the next round's decision on
        (0: the default, 300 ms)."""
        self._j.set_max_downtime(int(ms))

    def set_bandwidth(self, bytes_per_s):
        """A save: the pre-copy rounds send at most this many bytes a
        second from now on (0: no limit), as libvirt's
        ``migrateSetMaxSpeed``; the final round is never limited."""
        self._j.set_bandwidth(int(bytes_per_s))

    def promote(self):
        """A backup whose source was lost: run the last complete epoch."""
        self._j.promote()

    # -- events and stats --
    def _pump(self):
        nxt, evs = self._j._events(self._next)
        self._next = nxt
        out = [_event(t) for t in evs]
        for e in out:
            if e.kind == "phase":
                self._phases.append((e.data, e.ns))
            elif e.kind == "round":
                self._rounds.append(e.data)
            elif e.kind == "epoch":
                self._epochs[e.data["epoch"]] = e.data
                if len(self._epochs) > 65536:
                    del self._epochs[min(self._epochs)]
            elif e.kind == "lost":
                self._lost = e.data
        return out

    def events_now(self):
        """The events that came since the last call (never blocks)."""
        return self._pump()

    def wait(self, timeout=None):
        """Waits for the end (the GIL released).  None on success; raises
        :class:`Error` on failure, or TimeoutError if ``timeout`` seconds
        passed first.  Ctrl-C cancels the job, waits for its end, and
        raises KeyboardInterrupt."""
        if not self._j._wait(-1.0 if timeout is None else float(timeout)):
            raise TimeoutError("the job is still running")
        return self._outcome()

    def _outcome(self):
        self._pump()
        err, message, phase, _, _ = self._j._result()
        if err:
            raise Error(err, os.strerror(err), message, phase)
        return None

    def stats(self):
        """The job's report as a dict (see the class's description)."""
        r = self._j._result()
        if r is not None and r[3]:
            return json.loads(r[3])
        self._pump()
        return {
            "phases": [{"name": n, "ns": ns} for n, ns in self._phases],
            "rounds": list(self._rounds),
            "epochs": [self._epochs[k] for k in sorted(self._epochs)],
            "running": r is None,
        }

    # -- asyncio --
    def __await__(self):
        return self._wait_async().__await__()

    async def _wait_async(self):
        async for _ in self.events():
            pass
        return self._outcome()

    async def events(self):
        """Yields the job's events as they come, in the running asyncio
        loop (on the job's descriptor: no thread), until the job has
        ended (the last one is ``"end"``).  Events are handed out once:
        one consumer at a time (``await job`` is one too)."""
        loop = asyncio.get_running_loop()
        fd = self.fileno()
        ready = asyncio.Event()
        loop.add_reader(fd, ready.set)
        try:
            while True:
                for e in self._pump():
                    yield e
                if self.done():  # every event was queued before that
                    for e in self._pump():
                        yield e
                    return
                await ready.wait()
                ready.clear()
        finally:
            loop.remove_reader(fd)

    def __repr__(self):
        return "<xtk.Job %s %s%s>" % (self.kind, self.what,
                                      " done" if self.done() else "")


# ---- the context ------------------------------------------------------------

_LEVELS = {"debug": 1, "verbose": 2, "detail": 3, "progress": 4, "info": 5,
           "notice": 6, "warn": 7, "warning": 7, "error": 8, "critical": 9,
           "none": 100}


class Context(_xtk.Context):
    """libxtk's context, with its event loop on a thread of its own.

    ``run_dir``: where the KVM backend's domains live (each xtk-hv's
    socket; default ``$XTK_RUNDIR`` or /run/xtk): two contexts with two run
    directories act as two hosts in one process.  ``log_level``: libxtk's
    messages at or above it go to standard error ("warn" by default;
    "none" for silence); a failed job's own message is in its
    :class:`Error` either way.
    """

    def __init__(self, run_dir=None, log_level="warn"):
        if isinstance(log_level, str):
            try:
                log_level = _LEVELS[log_level]
            except KeyError:
                raise ValueError("log_level: one of %s" % ", ".join(_LEVELS))
        if run_dir is not None:
            run_dir = os.path.abspath(run_dir)
        super().__init__(run_dir, log_level)
        self.run_dir = run_dir

    def close(self):
        """Stops the loop thread.  Jobs and domains keep the context
        alive; close it when they are gone (or leave it to the collector)."""
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- domains --
    def domains(self):
        """The live domains, as :class:`DomainInfo`, ordered by id."""
        return [DomainInfo(*t) for t in self._list()]

    def domain(self, which):
        """A handle on a live domain, by name or id (NoSuchDomain if it
        is not there)."""
        with _domain_errors():
            return self._lookup(str(which))

    def create(self, name=None, memory_mib=64, vcpus=1, workload="idle",
               pages=None, stride=None, rate=None, net=None,
               net_interval_ms=None, extra=None, kernel=None, paused=False,
               store=True, cmdline=None):
        """Creates and starts a domain; the built-in guest by default,
        with its workload as xtk(1) create takes it (``workload`` idle,
        dirty, spin..., ``pages``, ``stride``, ``rate``; ``net``
        "udp:HOST:PORT" or "tcp:HOST:PORT" with ``net_interval_ms``).
        ``cmdline`` replaces the whole command line.  Returns a
        :class:`Domain`."""
        if cmdline is None:
            parts = ["workload=%s" % workload]
            for key, val in (("pages", pages), ("stride", stride),
                             ("rate", rate), ("net", net_interval_ms)):
                if val is not None:
                    parts.append("%s=%s" % (key, val))
            if extra:
                parts.append(extra)
            cmdline = " ".join(parts)
        if net_interval_ms is not None and net is None:
            raise ValueError("net_interval_ms needs net")
        return self._create(name=name, memory_mib=int(memory_mib),
                         vcpus=int(vcpus), cmdline=cmdline, kernel=kernel,
                         net=net, paused=bool(paused), store=bool(store))

    # -- jobs --
    @staticmethod
    def _dom(domain):
        if isinstance(domain, _xtk.Domain):
            return str(domain.domid)
        return str(domain)

    def save(self, domain, target, *, live=False, keep=False,
             suspend="evtchn", max_downtime_ms=0, max_rounds=0, senders=0,
             max_bytes=0, interval_ms=0, checkpoints=0, timeout_ms=0,
             heartbeat_ms=0, peer_timeout_ms=0, compress=None,
             max_bandwidth=0, postcopy=False, postcopy_bandwidth=0,
             output_hold=True):
        """Starts saving ``domain`` (name, id or :class:`Domain`) to
        ``target``: a file (written beside it and renamed into place once
        complete and synced: a failed save never replaces a good file) or
        ``tcp:HOST:PORT`` (an xtk-restore or :meth:`restore` listening
        there: a migration).  Every knob of xtk-save(1) is taken here, at
        the start: ``live`` (pre-copy rounds), ``keep`` (the domain runs on
        after success, a checkpoint), ``suspend`` (evtchn, store, pause,
        xl), ``max_downtime_ms`` (changeable later with
        :meth:`Job.set_max_downtime`), ``max_rounds``, ``senders``,
        ``max_bytes``, ``interval_ms``/``checkpoints`` (continuous
        checkpointing), ``timeout_ms``, ``heartbeat_ms``,
        ``peer_timeout_ms``, ``compress`` (a zlib level, -1 its default),
        ``max_bandwidth`` (bytes a second pre-copy sends at most;
        changeable later with :meth:`Job.set_bandwidth`), ``postcopy``
        (a live migration: True switches to post-copy after the first
        round, ``"auto"`` when pre-copy does not converge; the guest then
        runs on the destination while its memory follows, see
        xtk-save(1) "POST-COPY" for what survives a failure),
        ``postcopy_bandwidth`` (bytes a second the push after the switch
        sends at most; 0: no limit), ``output_hold`` (checkpointing to a
        backup: False leaves the guest's output unheld, xtk-save's
        ``--no-output-hold``; unsafe, a promoted backup may repeat output
        a client saw).
        Returns the running :class:`Job`."""
        if postcopy not in (False, True, "auto"):
            raise ValueError("postcopy: False, True or 'auto'")
        with _domain_errors():
            j = self._save(self._dom(domain), str(target), live=bool(live),
                           keep=bool(keep), suspend=suspend,
                           max_downtime_ms=int(max_downtime_ms),
                           max_rounds=int(max_rounds), senders=int(senders),
                           max_bytes=int(max_bytes),
                           interval_ms=int(interval_ms),
                           checkpoints=int(checkpoints),
                           timeout_ms=int(timeout_ms),
                           heartbeat_ms=int(heartbeat_ms),
                           peer_timeout_ms=int(peer_timeout_ms),
                           compress=-2 if compress is None
                           else int(compress),
                           max_bandwidth=int(max_bandwidth),
                           postcopy=2 if postcopy == "auto"
                           else int(bool(postcopy)),
                           postcopy_bandwidth=int(postcopy_bandwidth),
                           output_hold=bool(output_hold))
        return Job(j, self, "save %s -> %s" % (domain, target))

    def migrate(self, domain, target, *, live=True, **kw):
        """A live migration to ``tcp:HOST:PORT`` (:meth:`save` with
        ``live=True``): the domain is destroyed here once the destination
        says its copy runs."""
        if not str(target).startswith("tcp:"):
            raise ValueError("migrate: target must be tcp:HOST:PORT")
        return self.save(domain, target, live=live, **kw)

    def checkpoint(self, domain, target, interval_ms, *, count=0, live=True,
                   **kw):
        """Continuous checkpointing (Remus's epochs) of ``domain`` to a
        backup at ``tcp:HOST:PORT`` every ``interval_ms``, ``count``
        epochs (0: until :meth:`Job.cancel`, which ends the stream with END
        and migrates the guest there)."""
        return self.save(domain, target, live=live, interval_ms=interval_ms,
                         checkpoints=count, **kw)

    def restore(self, source, *, name=None, failover=False,
                peer_timeout_ms=0, decompress=None, lazy=False):
        """Starts restoring from ``source``: a file (gzip is seen), or
        ``listen:[HOST:]PORT`` (this host's loopback unless an address is
        named; port 0 picks one: :attr:`Job.port`), where the restore
        waits for a migration or a checkpoint stream.  ``name`` renames
        the domain; ``failover`` makes a backup promote itself when its
        source is lost (the split-brain risk of xtk-restore(1)'s
        --failover-timeout).  ``lazy`` (a file that is not compressed):
        the domain runs before its memory is in, each page coming from the
        file when first touched (xtk-restore(1) --lazy); the job ends once
        every page is in, its phases say "resumed" and "memory complete".
        A successful job's :attr:`Job.domid` is the new domain."""
        j = self._restore(str(source), name=name, failover=bool(failover),
                          peer_timeout_ms=int(peer_timeout_ms),
                          decompress=-1 if decompress is None
                          else int(bool(decompress)), lazy=bool(lazy))
        return Job(j, self, "restore %s" % source)
