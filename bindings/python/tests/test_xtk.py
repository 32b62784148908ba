"""The Python bindings against real KVM guests (xtk-hv of this build)."""

import asyncio
import errno
import gc
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest

import xtk
from conftest import console_has, self_check

# A pre-copy that never converges at a 1 ms target: a 4 MiB area rewritten
# as fast as the guest can, sent through zlib at level 9 (about 5,000 pages
# a second here: the whole area is dirty again at each round's end), rounds
# and bytes unbounded.
HOT = dict(workload="dirty", pages=1024, rate=0)
NEVER = dict(max_downtime_ms=1, max_rounds=1000000, max_bytes=1 << 50,
             compress=9)


def wait_for(job, kind, n=1, seconds=10.0):
    """Polls the job's events until n of this kind came; returns them."""
    got = []
    end = time.monotonic() + seconds
    while len(got) < n:
        got += [e for e in job.events_now() if e.kind == kind]
        if time.monotonic() > end:
            raise AssertionError("%d %s events after %ss" % (len(got), kind,
                                                             seconds))
        time.sleep(0.01)
    return got


def test_context_arguments(tmp_path):
    with pytest.raises(ValueError):
        xtk.Context(log_level="loud")
    with xtk.Context(run_dir=str(tmp_path / "r"), log_level="none") as ctx:
        assert ctx.domains() == []
        with pytest.raises(xtk.NoSuchDomain) as e:
            ctx.domain("nobody")
        assert e.value.errno == errno.ENOENT
        assert "no such domain" in str(e.value)
    with pytest.raises(ValueError):
        ctx.domains()  # closed


def test_domain_lifecycle(host):
    ctx = host()
    d = ctx.create(name="web", memory_mib=32, workload="counter")
    assert isinstance(d, xtk.Domain)
    info = d.info()
    assert (info.name, info.vcpus, info.pages) == ("web", 1, 32 * 256)
    assert [i.name for i in ctx.domains()] == ["web"]
    assert ctx.domain("web").domid == d.domid
    assert ctx.domain(d.domid).name == "web"
    with pytest.raises(xtk.Error) as e:
        ctx.create(name="web")
    assert e.value.errno == errno.EEXIST
    d.pause()
    assert d.info().flags & xtk.DOMINFO_PAUSED
    d.unpause()
    assert not d.info().flags & xtk.DOMINFO_PAUSED
    console_has(d, "xtk-guest")
    off, data = d.console(0, 16)
    assert len(data) <= 16
    d.rename("web2")
    assert d.name == "web2"
    self_check(ctx.run_dir, "web2")
    d.destroy()
    d.close()
    assert ctx.domains() == []
    with pytest.raises(ValueError):
        d.info()


def test_vcpus_seen_by_the_host(host):
    """Domain.vcpus(): every vCPU's thread, its run and wait time, and
    the directed yields of a spin guest overcommitted 4 to 1 (issue 15)."""
    ctx = host()
    n = 4 * (os.cpu_count() or 1)
    n = min(n, 8)
    d = ctx.create(name="spin", memory_mib=32, vcpus=n, workload="spin",
                   extra="hold=64")
    time.sleep(1.5)
    v = d.vcpus()
    assert [x.vcpu for x in v] == list(range(n))
    for x in v:
        assert x.flags & xtk.VCPU_WAIT and x.flags & xtk.VCPU_PUBLISHED
        assert x.cpu_ns > 0 and x.slices > 0
    if n > (os.cpu_count() or 1):
        assert sum(x.wait_ns for x in v) > 0
        assert sum(x.yields_successful for x in v) > 0
    self_check(ctx.run_dir, "spin")
    d.destroy()


def test_save_restore_file(host, tmp_path):
    ctx = host()
    ctx.create(name="g", workload="dirty", pages=512, rate=2000)
    self_check(ctx.run_dir, "g")
    path = tmp_path / "g.xtk"
    job = ctx.save("g", str(path), live=True)
    assert job.wait() is None
    assert ctx.domains() == []
    st = job.stats()
    names = [p["name"] for p in st["phases"]]
    assert "suspend requested" in names and "committed" in names
    assert st["schema"] == "xtk-stats/1" and st["rounds"]
    assert "final round" in [h["name"] for h in st["histograms"]]
    assert os.path.getsize(path) > 0
    r = ctx.restore(str(path))
    r.wait()
    assert r.domid and ctx.domain("g").domid == r.domid
    self_check(ctx.run_dir, "g")
    # Gzip, read back by its magic.
    gz = tmp_path / "g.xtk.gz"
    ctx.save("g", str(gz), compress=6).wait()
    with open(gz, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    ctx.restore(str(gz)).wait()
    self_check(ctx.run_dir, "g")


def test_lazy_restore(host, tmp_path):
    ctx = host()
    ctx.create(name="lz", workload="dirty", pages=4096, rate=20000)
    self_check(ctx.run_dir, "lz")
    path = tmp_path / "lz.xtk"
    ctx.save("lz", str(path), live=True).wait()
    r = ctx.restore(str(path), lazy=True)
    evs = []
    while not r.done():  # every event, as it comes
        evs += r.events_now()
        time.sleep(0.001)
    evs += r.events_now()  # (wait() would take the rest)
    r.wait()
    assert r.domid and ctx.domain("lz").domid == r.domid
    phases = [e.data for e in evs if e.kind == "phase"]
    assert "resumed" in phases and "memory complete" in phases, str(phases)
    assert phases.index("resumed") < phases.index("memory complete")
    st = r.stats()
    assert st["counters"]["lazy pages prefetched"] > 0
    assert "lazy fault service" in [h["name"] for h in st["histograms"]]
    self_check(ctx.run_dir, "lz")
    with pytest.raises(xtk.Error):
        ctx.restore("listen:0", lazy=True)


def test_failed_save_keeps_the_file(host, tmp_path):
    ctx = host()
    ctx.create(name="hot", **HOT)
    path = tmp_path / "good.xtk"
    path.write_bytes(b"a good file" * 1000)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    job = ctx.save("hot", str(path), live=True, **NEVER)
    wait_for(job, "round", 2)
    job.cancel()
    with pytest.raises(xtk.CancelledError) as e:
        job.wait()
    assert e.value.errno == errno.ECANCELED and e.value.phase
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(tmp_path)) == ["a", "good.xtk"]  # no temp file
    self_check(ctx.run_dir, "hot")  # the guest runs on
    assert not ctx.domain("hot").info().flags & xtk.DOMINFO_LOGDIRTY


def test_bad_arguments(host, tmp_path):
    ctx = host()
    ctx.create(name="g")
    with pytest.raises(xtk.Error) as e:
        ctx.save("g", str(tmp_path))
    assert e.value.errno == errno.EISDIR
    with pytest.raises(xtk.NoSuchDomain):
        ctx.save("nobody", str(tmp_path / "x"))
    assert not os.path.exists(tmp_path / "x")
    with pytest.raises(ValueError):
        ctx.save("g", str(tmp_path / "x"), suspend="politely")
    with pytest.raises(xtk.Error) as e:
        ctx.save("g", "tcp:nowhere", timeout_ms=200)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(xtk.Error) as e:
        ctx.restore(str(tmp_path / "missing"))
    assert e.value.errno == errno.ENOENT
    assert not isinstance(e.value, xtk.NoSuchDomain)
    with pytest.raises(ValueError):
        ctx.migrate("g", str(tmp_path / "x"))
    # A corrupt stream: a clear error, nothing half-built.
    bad = tmp_path / "bad.xtk"
    bad.write_bytes(b"\x00" * 4096)
    with pytest.raises(xtk.Error) as e:
        ctx.restore(str(bad)).wait()
    assert e.value.message
    assert [i.name for i in ctx.domains()] == ["g"]
    self_check(ctx.run_dir, "g")


def test_migrate_between_hosts(host):
    a, b = host("a"), host("b")
    a.create(name="m", memory_mib=128, workload="dirty", pages=2048,
             rate=2000)
    self_check(a.run_dir, "m")
    r = b.restore("listen:0")
    assert r.port and r.kind == "restore"
    j = a.migrate("m", "tcp:127.0.0.1:%d" % r.port)
    assert j.kind == "save"
    j.wait(30)
    r.wait(30)
    evs = j.events_now()  # all were read by wait(); the log keeps them
    st = j.stats()
    assert st["rounds"] and st["rounds"][0]["sent"] >= 128 * 256 * 0.9
    assert a.domains() == []
    assert [i.name for i in b.domains()] == ["m"]
    self_check(b.run_dir, "m")
    assert r.stats()["schema"] == "xtk-stats/1"
    assert evs == []  # already pumped by wait()


def test_postcopy_migration(host):
    a, b = host("a"), host("b")
    a.create(name="pc", memory_mib=128, workload="dirty", pages=8192, rate=0)
    self_check(a.run_dir, "pc")
    r = b.restore("listen:0")
    j = a.migrate("pc", "tcp:127.0.0.1:%d" % r.port, postcopy=True,
                  max_bandwidth=64 << 20)
    evs = []
    while not r.done():  # the destination's events, as they come
        evs += r.events_now()
        time.sleep(0.001)
    evs += r.events_now()
    r.wait(30)
    j.wait(30)
    # The events as they came: the destination ran before its memory was
    # in.  (The last of them may come with the job's end, which wait()
    # takes in: the order is checked on the report, which has them all.)
    assert "resumed" in [e.data for e in evs if e.kind == "phase"], evs
    phases = [p["name"] for p in r.stats()["phases"]]
    assert phases.index("resumed") < phases.index("memory complete"), phases
    sc, dc = j.stats()["counters"], r.stats()["counters"]
    assert sc["postcopy frames"] == dc["postcopy frames"] > 0
    assert dc["postcopy pages faulted"] + dc["postcopy pages pushed"] == \
        dc["postcopy frames"]
    assert "postcopy fault service" in [h["name"]
                                        for h in r.stats()["histograms"]]
    assert a.domains() == []
    self_check(b.run_dir, "pc")
    with pytest.raises(ValueError):
        a.save("x", "tcp:127.0.0.1:1", live=True, postcopy="yes")


def test_events_in_order(host):
    a, b = host("a"), host("b")
    a.create(name="e", workload="dirty", pages=1024, rate=5000)
    r = b.restore("listen:0")
    j = a.migrate("e", "tcp:127.0.0.1:%d" % r.port)
    seen = []
    while not j.done():
        seen += j.events_now()
        time.sleep(0.005)
    seen += j.events_now()
    r.wait()
    idx = [e.index for e in seen]
    assert idx == list(range(idx[0], idx[0] + len(idx)))
    kinds = [e.kind for e in seen]
    assert kinds[-1] == "end" and kinds.count("end") == 1
    assert "round" in kinds
    rounds = [e.data for e in seen if e.kind == "round"]
    assert [x["round"] for x in rounds] == sorted(x["round"] for x in rounds)
    phases = [e.data for e in seen if e.kind == "phase"]
    assert phases.index("suspend requested") < phases.index("end sent")
    ns = [e.ns for e in seen]
    assert ns[-1] >= ns[0]


def test_set_max_downtime_mid_job(host):
    a, b = host("a"), host("b")
    a.create(name="h", **HOT)
    r = b.restore("listen:0")
    # Rounds of ~0.25 s (16 MiB/s): the hot guest rewrites its 1,024
    # pages in each even on a loaded host (a starved guest's round of
    # fewer than 50 dirty pages ends any migration: "converged").
    j = a.migrate("h", "tcp:127.0.0.1:%d" % r.port,
                  **dict(NEVER, max_bandwidth=16 << 20))
    wait_for(j, "round", 3)
    assert not j.done()  # 1 ms cannot be met
    j.set_max_downtime(60000)
    j.wait(30)
    r.wait(30)
    self_check(b.run_dir, "h")


def test_set_bandwidth_mid_job(host):
    a, b = host("a"), host("b")
    # 4 MiB of memory written (and rewritten at 2,000 pages/s)
    a.create(name="bw", memory_mib=64, workload="dirty", pages=1024,
             rate=2000)
    r = b.restore("listen:0")
    # 256 KiB/s: the first round, 4 MiB of data at least, cannot end in a
    # second; then the limit is lifted.
    t0 = time.monotonic()
    j = a.migrate("bw", "tcp:127.0.0.1:%d" % r.port, max_bandwidth=256 << 10)
    time.sleep(1.0)
    assert not j.done()
    sent = sum(e.data["bytes"] for e in j.events_now() if e.kind == "round")
    # what the rounds over so far sent: at the limit, and 50 ms of credit
    assert sent <= (time.monotonic() - t0 + 0.05) * (256 << 10), sent
    j.set_bandwidth(0)
    j.wait(30)
    r.wait(30)
    self_check(b.run_dir, "bw")


def test_cancel_live_migration(host):
    a, b = host("a"), host("b")
    a.create(name="c", **HOT)
    r = b.restore("listen:0")
    j = a.migrate("c", "tcp:127.0.0.1:%d" % r.port, **NEVER)
    wait_for(j, "round", 2)
    j.cancel()
    with pytest.raises(xtk.CancelledError):
        j.wait(30)
    with pytest.raises(xtk.Error):
        r.wait(30)
    assert b.domains() == []  # nothing half-built at the destination
    self_check(a.run_dir, "c")  # the source runs on


def test_cancel_listening_restore(host):
    b = host("b")
    r = b.restore("listen:0")
    time.sleep(0.05)
    r.cancel()
    with pytest.raises(xtk.CancelledError):
        r.wait(5)
    assert b.domains() == []


def test_concurrent_checkpoints_asyncio(host):
    a, b = host("a"), host("b")
    n = 4
    for i in range(n):
        a.create(name="c%d" % i, workload="dirty", pages=256, rate=1000)
    backups = [b.restore("listen:0") for _ in range(n)]
    jobs = [a.checkpoint("c%d" % i, "tcp:127.0.0.1:%d" % backups[i].port,
                         20, count=5) for i in range(n)]

    async def follow(job):
        epochs = set()
        async for ev in job.events():
            if ev.kind == "epoch":
                epochs.add(ev.data["epoch"])
        await job
        return epochs

    async def main():
        return await asyncio.gather(*(follow(j) for j in jobs),
                                    *(bk for bk in backups))

    out = asyncio.run(asyncio.wait_for(main(), 60))
    # 5 checkpoints: 4 epochs after which the guest ran on, then the
    # fifth's final round with END (the guest moved to its backup).
    for epochs in out[:n]:
        assert epochs == {1, 2, 3, 4}
    assert a.domains() == []
    assert sorted(i.name for i in b.domains()) == ["c%d" % i
                                                    for i in range(n)]
    for i in range(n):
        self_check(b.run_dir, "c%d" % i)


def test_checkpoint_output_hold(host):
    """Checkpoints to a backup hold the guest's output by default; with
    output_hold=False they do not (xtk-save --no-output-hold)."""
    a, b = host("a"), host("b")
    for held in (True, False):
        a.create(name="h", workload="dirty", pages=256, rate=1000)
        bk = b.restore("listen:0")
        j = a.checkpoint("h", "tcp:127.0.0.1:%d" % bk.port, 20, count=4,
                         output_hold=held)
        j.wait(60)
        bk.wait(60)
        names = [p["name"] for p in j.stats()["phases"]]
        assert ("output held" in names) == held, names
        b.domain("h").destroy()


def test_await_raises(host, tmp_path):
    ctx = host()
    bad = tmp_path / "bad.xtk"
    bad.write_bytes(b"garbage" * 100)

    async def main():
        await ctx.restore(str(bad))

    with pytest.raises(xtk.Error):
        asyncio.run(main())


def test_ctrl_c_cancels(host, tmp_path):
    """Ctrl-C in a blocking wait: the job is cancelled and waited for,
    KeyboardInterrupt raised, the guest runs on."""
    script = textwrap.dedent("""
        import faulthandler, signal, sys, xtk
        # Stuck? Its Python threads' stacks go to stderr (the test's log).
        faulthandler.dump_traceback_later(20)
        # A suite started in the background by a non-interactive shell
        # inherits SIGINT ignored, and Python then installs no
        # KeyboardInterrupt for it (this test hung so in a CI run).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ctx = xtk.Context(run_dir=sys.argv[1], log_level="none")
        ctx.create(name="i", workload="dirty", pages=1024, rate=0)
        job = ctx.save("i", sys.argv[2], live=True, max_downtime_ms=1,
                       max_rounds=1000000, max_bytes=1 << 50, compress=9)
        print("waiting", flush=True)
        try:
            job.wait()
            print("ended", flush=True)
        except KeyboardInterrupt:
            try:
                job.wait(0)
            except xtk.CancelledError:
                print("interrupted, cancelled", flush=True)
            d = ctx.domain("i")
            print("flags", d.info().flags, flush=True)
            d.destroy()
    """)
    run = str(tmp_path / "i")
    p = subprocess.Popen([sys.executable, "-c", script, run,
                          str(tmp_path / "i.xtk")], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "waiting"
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        try:
            out = p.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            # Once in CI (under the whole suite's load) it did not end:
            # every thread's C stack, for the next time.
            if shutil.which("gdb"):
                subprocess.run(["gdb", "-p", str(p.pid), "-batch", "-ex",
                                "thread apply all bt"], timeout=60)
            raise
    finally:
        if p.poll() is None:
            p.kill()
    assert "interrupted, cancelled" in out, out
    assert "flags 0" in out, out  # running: not paused, no dirty log
    assert not os.path.exists(tmp_path / "i.xtk")


def _fds():
    return len(os.listdir("/proc/self/fd"))


def test_no_leaks(host, tmp_path):
    """1000 jobs: Python memory and descriptors stay level."""
    ctx = host()
    bad = tmp_path / "bad.xtk"
    bad.write_bytes(b"\x00" * 64)

    def run(n):
        for _ in range(n):
            j = ctx.restore(str(bad))
            with pytest.raises(xtk.Error):
                j.wait()
            j.stats()
            j.events_now()

    run(100)
    gc.collect()
    fds = _fds()
    tracemalloc.start()
    snap1 = tracemalloc.take_snapshot()
    run(1000)
    gc.collect()
    snap2 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in snap2.compare_to(snap1, "filename"))
    assert grown < 64 * 1024, grown
    assert _fds() == fds
    # And real saves: 30 checkpoints kept (the guest runs on).
    ctx.create(name="k")
    fds = _fds()
    for _ in range(30):
        ctx.save("k", "/dev/null", keep=True).wait()
    assert _fds() == fds
    self_check(ctx.run_dir, "k")


def test_close_with_jobs_running(tmp_path):
    """Closing a context cancels what still runs and waits for it: the
    source guest runs on, nothing is left at the destination, and the
    jobs have a definite end."""
    a = xtk.Context(run_dir=str(tmp_path / "a"), log_level="none")
    b = xtk.Context(run_dir=str(tmp_path / "b"), log_level="none")
    try:
        d = a.create(name="h", **HOT)
        r = b.restore("listen:0")
        j = a.migrate("h", "tcp:127.0.0.1:%d" % r.port, **NEVER)
        wait_for(j, "round", 2)
        listening = b.restore("listen:0")
        a.close()  # j: cancelled in pre-copy, waited for
        assert j.done()
        with pytest.raises(xtk.CancelledError):
            j.wait(0)
        with pytest.raises(ValueError):
            d.info()  # the context is closed
        b.close()
        for job in (r, listening):
            assert job.done()
            with pytest.raises(xtk.Error):
                job.wait(0)
    finally:
        a.close()
        b.close()
    c = xtk.Context(run_dir=str(tmp_path / "a"), log_level="none")
    self_check(c.run_dir, "h")
    assert [i.name for i in c.domains()] == ["h"]
    c.domain("h").destroy()
    assert xtk.Context(run_dir=str(tmp_path / "b")).domains() == []
