#!/usr/bin/env python3
"""python-bench.py - what driving xtk from Python costs, beside the C CLIs.

docs/benchmarks.md, "Python bindings" (issue 12).  In one run:

  downtime  Live migrations of a 256 MiB guest dirtying 2,000 pages/s over
            64 MiB (scenario (a) of the migration benchmark), on loopback,
            RUNS times, alternating: driven by the C programs (xtk-save to an
            xtk-restore listening in a second run directory), driven from
            Python (Context.migrate to the same xtk-restore), and with both
            ends in Python (Context.restore("listen:0") on a second context
            in this process).  Downtime = the source's
            "downtime" histogram (suspend request to the guest running at
            the destination), the same engine figure both ways.
  epochs    Continuous checkpointing from one asyncio loop: one job alone,
            then 8 jobs at once (8 guests, 8 backups), each asked for an
            epoch every INTERVAL ms for SECONDS: epochs per second per job,
            and each epoch's pause p50 / p99.

usage: python-bench.py BUILD_DIR [RUNS] [--interval MS] [--seconds S]
                       [--jobs N] [--json FILE]
Run as root (KVM), with the interpreter the bindings were built for
(Debian's /usr/bin/python3).
"""
import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "engine_bench", os.path.join(HERE, "engine-bench.py"))
eb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eb)


def load_xtk(build):
    os.environ.update(XTK_HV=os.path.join(build, "xtk-hv"),
                      XTK_GUEST=os.path.join(build, "guests/xtk-guest.elf"))
    sys.path[:0] = [os.path.join(build, "bindings/python/.libs"),
                    os.path.join(HERE, "..", "bindings", "python")]
    import xtk
    return xtk


GUEST = ["-m", "256", "-w", "dirty", "-P", "16384", "-r", "2000",
         "--no-store"]


def listener(env):
    """xtk-restore listening in the "dst" run directory: (process, port)."""
    port = eb.free_port()
    dst = env.spawn(env.path("xtk-restore"), "-q",
                    "listen:127.0.0.1:%d" % port, rundir="dst",
                    stdout=subprocess.DEVNULL)
    eb.wait_listen(port, 100, 0.02)
    return dst, port


def c_driven(env):
    """xtk-save -l to xtk-restore listen: (C); the source's report."""
    env.xtk("create", "-n", "mig", *GUEST)
    env.wait_up("mig")
    time.sleep(1.0)
    dst, port = listener(env)
    js = os.path.join(env.work, "src.json")
    env.run(env.path("xtk-save"), "-q", "-J", js, "-l", "mig",
            "tcp:127.0.0.1:%d" % port, stderr=subprocess.DEVNULL)
    if dst.wait(timeout=30) != 0:
        raise RuntimeError("xtk-restore failed")
    env.xtk("destroy", "mig", rundir="dst")
    return json.load(open(js))


def py_driven(env, xtk, src, dst, both):
    """The same migration driven from Python (Context.migrate), to the same
    xtk-restore, or (both) to Context.restore in this process too."""
    env.xtk("create", "-n", "mig", *GUEST)
    env.wait_up("mig")
    time.sleep(1.0)
    if both:
        r = dst.restore("listen:0")
        port = r.port
    else:
        proc, port = listener(env)
    j = src.migrate("mig", "tcp:127.0.0.1:%d" % port)
    j.wait(60)
    if both:
        r.wait(60)
    elif proc.wait(timeout=30) != 0:
        raise RuntimeError("xtk-restore failed")
    rep = j.stats()
    env.xtk("destroy", "mig", rundir="dst")
    return rep


async def checkpointing(xtk, src, dst, n, interval, seconds):
    """n guests checkpointed at once for `seconds`, then END; per job:
    epochs/s and the pauses (ms)."""
    names = ["ck%d" % i for i in range(n)]
    for name in names:
        src.create(name=name, workload="dirty", pages=2048, rate=2000,
                   store=False)
    backups = [dst.restore("listen:0") for _ in names]
    jobs = [src.checkpoint(name, "tcp:127.0.0.1:%d" % b.port, interval)
            for name, b in zip(names, backups)]
    t0 = time.monotonic()

    async def follow(job):
        async for _ in job.events():
            pass
        await job

    tasks = [asyncio.ensure_future(follow(j)) for j in jobs]
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    counts = [len([e for e in j.stats()["epochs"] if e["pause_ns"]])
              for j in jobs]
    for j in jobs:
        j.cancel()  # END after the current epoch: the guests move
    await asyncio.gather(*tasks, *backups)
    pauses = [e["pause_ns"] / 1e6 for j in jobs for e in j.stats()["epochs"]
              if e["pause_ns"]]
    for name in names:
        dst.domain(name).destroy()
    return [c / elapsed for c in counts], pauses


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("runs", type=int, nargs="?", default=10)
    ap.add_argument("--interval", type=int, default=25)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--json")
    a = ap.parse_args()
    env = eb.Env(a.build)
    xtk = load_xtk(env.build)
    res = {"c_downtime_ms": [], "py_downtime_ms": [], "py2_downtime_ms": []}
    try:
        src = xtk.Context(os.path.join(env.work, "src"), log_level="error")
        dst = xtk.Context(os.path.join(env.work, "dst"), log_level="error")
        for i in range(a.runs):
            rep = c_driven(env)
            res["c_downtime_ms"].append(eb.hist(rep, "downtime")["max"] / 1e6)
            rep = py_driven(env, xtk, src, dst, False)
            res["py_downtime_ms"].append(
                eb.hist(rep, "downtime")["max"] / 1e6)
            rep = py_driven(env, xtk, src, dst, True)
            res["py2_downtime_ms"].append(
                eb.hist(rep, "downtime")["max"] / 1e6)
            print("run %d/%d done" % (i + 1, a.runs), file=sys.stderr)
        one, one_p = asyncio.run(checkpointing(xtk, src, dst, 1, a.interval,
                                               a.seconds))
        many, many_p = asyncio.run(checkpointing(xtk, src, dst, a.jobs,
                                                 a.interval, a.seconds))
        res.update(one_rate=one, one_pause_ms=one_p, many_rate=many,
                   many_pause_ms=many_p)
        src.close()
        dst.close()
    finally:
        env.close()

    def p(v, q):
        return eb.pct(v, q)

    c, py, py2 = (res["c_downtime_ms"], res["py_downtime_ms"],
                  res["py2_downtime_ms"])
    print("live migration, 256 MiB guest dirtying 2,000 pages/s, %d runs "
          "each, alternating" % a.runs)
    print("  driven by                              downtime ms p50 / p99")
    print("  C: xtk-save -> xtk-restore             %7.3f / %.3f"
          % (p(c, 50), p(c, 99)))
    print("  Python: Context.migrate -> xtk-restore %7.3f / %.3f"
          % (p(py, 50), p(py, 99)))
    print("  Python, both ends in this process      %7.3f / %.3f"
          % (p(py2, 50), p(py2, 99)))
    print("  ratio Python-driven / C at p50: %.3f (target <= 1.05), at p99: "
          "%.3f; both ends in Python / C at p50: %.3f"
          % (p(py, 50) / p(c, 50), p(py, 99) / p(c, 99),
             p(py2, 50) / p(c, 50)))
    asked = 1000.0 / a.interval
    print("\ncheckpointing from one asyncio loop, %.0f epochs/s asked, "
          "%.0f s" % (asked, a.seconds))
    print("  jobs   epochs/s per job (min / mean)   pause ms p50 / p99")
    for n, rate, pauses in ((1, one, one_p), (a.jobs, many, many_p)):
        print("  %4d   %8.1f / %-8.1f            %6.2f / %.2f" % (
            n, min(rate), sum(rate) / len(rate), p(pauses, 50),
            p(pauses, 99)))
    print("  per job with %d at once / alone: %.2f" % (
        a.jobs, (sum(many) / len(many)) / one[0]))
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
