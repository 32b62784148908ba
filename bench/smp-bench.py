#!/usr/bin/env python3
"""smp-bench.py - the suspend of SMP guests under overcommit (issue 15).

docs/benchmarks.md, "SMP guests under overcommit".  For each workload
(spin: every vCPU takes the guest's shared spin lock in turn; idle) and
each vCPU count, a built-in guest of 64 MiB is checkpointed EPOCHS times
every 20 ms to /dev/null (`xtk-save -c -l -I 20 -N EPOCHS --suspend S`,
the command of the issue's table), once per suspend method (evtchn: the
guest's own rendezvous; pause: xtk-hv stops the vCPUs), and the report's
"suspend" histogram (request to suspended) is printed as p50 / p90 / p99
in microseconds, beside the 1-vCPU figure of the same workload and
method (the issue's targets: an 8-vCPU spin guest on 2 cores within 2x
of 1 vCPU at p50 and under 2 ms at p99; idle SMP within 1.2x of idle UP).
Beside it, "stopped": from the request to "source resumed" (the last
vCPU thread out of its park, running again), p50 / p99: the whole time
some vCPU of the guest is held, which the suspend leaves out (the state,
the copy and the resume).  The guest's self-check must pass after each
run.

Methods: evtchn (the guest's request on its channel; xtk-hv stops the
other vCPUs once vCPU 0 says "suspended", and they park after the
resume), evtchn-park (the same request, but the guest parks every vCPU
before it says "suspended", as it did before: the guest's apstop=guest),
pause (xtk-hv stops the vCPUs without the guest).

Each run is made with the guest's lock-holder measures on (pv: a waiter
that finds the vCPU it waits for preempted gives it its time) and off
(pv=0), interleaved: before and after in one run.

--lock (seed 000's own measure): instead, the spin workload under 4x
overcommit (8 vCPUs on these 2 cores, the lock held 64 pauses each time:
-a hold=64), SECONDS long, pv on and off interleaved REPEAT times: lock
acquisitions per second, mean and longest wait (the guest's clock, from
`xtk vcpus`), and the directed yields made.

--rounds R: every configuration is run R times, the rounds interleaved
(each round runs them all once, in order), and the checkpoints of its
R runs are pooled: p50 / p90 / p99 of them all, and the ratio against
the pooled 1-vCPU figure, with the range of the R rounds' own ratios
(each round's run against the same round's 1-vCPU run).  The spread
between single runs on this machine (the 1-vCPU idle guest's p50 from
237 to 489 us in six runs of one hour) is wider than most of what is
measured here: one run's ratio says little.

--base BASE_DIR: the same configurations with a second build (its own
xtk, xtk-save, xtk-hv and guest), alternated with BUILD_DIR run by run
in every round: before and after in one run.

usage: smp-bench.py BUILD_DIR [--vcpus 1,2,4,8] [--epochs N]
                              [--workloads spin,idle]
                              [--methods evtchn,evtchn-park,pause]
                              [--pv on,off] [--rounds R] [--base DIR]
       smp-bench.py BUILD_DIR --lock [--seconds S] [--repeat R]
                              [--hold H] [--lock-vcpus N]
Run as root (KVM), alone on the machine.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def intervals(report, start, end):
    """Each checkpoint's time (us) from its phase `start` to the next
    phase `end`, in the report's phases."""
    out, t0 = [], None
    for p in report.get("phases", []):
        if p["name"] == start:
            t0 = p["ns"]
        elif p["name"] == end and t0 is not None:
            out.append((p["ns"] - t0) / 1e3)
            t0 = None
    return out


def suspend_samples(report):
    """Each checkpoint's suspend (request to suspended, in us): the same
    interval as the report's "suspend" histogram."""
    out = intervals(report, "suspend requested", "suspended notified")
    if not out:
        raise SystemExit("no suspend phases in the report")
    return out


def stopped_samples(report):
    """Each checkpoint's request to "source resumed" (us): as long as
    some vCPU of the guest was held for it (the hold comes with the
    request; the resume answers once the last vCPU left its park)."""
    return intervals(report, "suspend requested", "source resumed")


def self_check(xtk, env, name):
    """Exits if the guest's self-check fails."""
    c = subprocess.run([xtk, "check", name], env=env, capture_output=True,
                       text=True)
    if c.returncode:
        sys.exit("%s: the self-check failed: %s" % (name, c.stdout + c.stderr))


def destroy(xtk, env, name):
    subprocess.run([xtk, "destroy", name], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def vcpus_report(xtk, env, name):
    """The lock line and the per-vCPU yields of `xtk vcpus NAME`."""
    out = subprocess.run([xtk, "vcpus", name], env=env, check=True,
                         capture_output=True, text=True).stdout
    lock = re.search(r"lock: (\d+) acquisitions, (\d+) waited, wait mean "
                     r"([\d.]+) us, longest ([\d.]+) us", out)
    if not lock:
        sys.exit("%s: no lock line in xtk vcpus:\n%s" % (name, out))
    yields = 0
    guest = False
    for line in out.splitlines():
        if line.startswith("VCPU  SAW-PREEMPTED"):
            guest = True
            continue
        f = line.split()
        if guest and len(f) == 4 and f[0].isdigit():
            yields += int(f[2])
    return (int(lock.group(1)), float(lock.group(3)), float(lock.group(4)),
            yields)


def lock_bench(a, xtk, env):
    print("seed 000's measure: the spin lock, %d vCPUs on %d CPUs, "
          "hold=%d, %g s each" % (a.lock_vcpus, os.cpu_count(), a.hold,
                                  a.seconds))
    print("run  pv   acquisitions/s   wait mean us   longest wait ms"
          "   yields/s")
    res = {"on": [], "off": []}
    for r in range(a.repeat):
        for pv in ("on", "off"):
            name = "lock-%d-%s" % (r, pv)
            subprocess.run([xtk, "create", "-n", name, "-m", "64", "-c",
                            str(a.lock_vcpus), "-w", "spin", "-a",
                            "hold=%d pv=%d" % (a.hold, pv == "on"),
                            "--no-store"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            try:
                time.sleep(a.seconds)
                acq, mean, longest, yields = vcpus_report(xtk, env, name)
                rate = acq / a.seconds
                res[pv].append((rate, mean, longest / 1e3, yields / a.seconds))
                print("%3d  %-3s  %14.0f   %12.1f   %15.1f   %8.0f"
                      % (r, pv, rate, mean, longest / 1e3,
                         yields / a.seconds), flush=True)
                self_check(xtk, env, name)
            finally:
                destroy(xtk, env, name)
    on = sorted(x[0] for x in res["on"])
    off = sorted(x[0] for x in res["off"])
    lon = sorted(x[2] for x in res["on"])
    loff = sorted(x[2] for x in res["off"])
    print("median: acquisitions/s on %.0f, off %.0f: %.2fx; longest wait "
          "on %.1f ms, off %.1f ms: %.2fx"
          % (pct(on, 50), pct(off, 50), pct(on, 50) / pct(off, 50),
             pct(lon, 50), pct(loff, 50), pct(lon, 50) / pct(loff, 50)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--vcpus", default="1,2,4,8")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--workloads", default="spin,idle")
    ap.add_argument("--methods", default="evtchn,evtchn-park,pause")
    ap.add_argument("--pv", default="on,off")
    ap.add_argument("--lock", action="store_true")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hold", type=int, default=64)
    ap.add_argument("--lock-vcpus", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--base")
    a = ap.parse_args()
    if a.rounds < 1 or a.epochs < 1:
        sys.exit("smp-bench.py: --rounds and --epochs must be at least 1")
    for d in [a.build] + ([a.base] if a.base else []):
        for prog in ("xtk", "xtk-save", "xtk-hv"):
            if not os.access(os.path.join(d, prog), os.X_OK):
                sys.exit("smp-bench.py: %s: no %s there (a build directory?)"
                         % (d, prog))
    tmp = tempfile.mkdtemp(prefix="xtk-smp-")
    builds = []
    for label, d in ([("base", a.base)] if a.base else []) + [("", a.build)]:
        b = os.path.abspath(d)
        env = dict(os.environ, XTK_HV=os.path.join(b, "xtk-hv"),
                   XTK_GUEST=os.path.join(b, "guests", "xtk-guest.elf"),
                   XTK_RUNDIR=os.path.join(tmp, "run"))
        builds.append((label, env, os.path.join(b, "xtk"),
                       os.path.join(b, "xtk-save")))
    if a.lock:
        lock_bench(a, builds[-1][2], builds[-1][1])
        return
    configs = [(wl, n, m, pv) for wl in a.workloads.split(",")
               for n in [int(x) for x in a.vcpus.split(",")]
               for m in a.methods.split(",") for pv in a.pv.split(",")]
    samples = {}  # (build, config) -> every checkpoint's suspend, us
    stopped = {}  # (build, config) -> every checkpoint's stop, us
    p50s = {}     # (build, config) -> each round's p50
    print("round  build  workload  vCPUs  method       pv   suspend us p50 "
          "/ p90 / p99   stopped us p50 / p99", flush=True)
    for rnd in range(1, a.rounds + 1):
        for (wl, n, m, pv) in configs:
            for label, env, xtk, save in builds:
                name = "smp-%s-%d-%s-%s" % (wl, n, m, pv)
                extra = ["apstop=guest"] if m == "evtchn-park" else []
                if pv == "off":
                    extra.append("pv=0")
                args = ["-a", " ".join(extra)] if extra else []
                subprocess.run([xtk, "create", "-n", name, "-m", "64", "-c",
                                str(n), "-w", wl, "--no-store"] + args,
                               env=env, check=True, stdout=subprocess.DEVNULL)
                try:
                    js = os.path.join(tmp, "%s.json" % name)
                    subprocess.run([save, "-q", "-c", "-l", "-I", "20", "-N",
                                    str(a.epochs), "--suspend",
                                    m.split("-")[0], "--stats-json", js, name,
                                    "/dev/null"], env=env, check=True)
                    rep = json.load(open(js))
                    v = suspend_samples(rep)
                    st = stopped_samples(rep)
                    key = (label, (wl, n, m, pv))
                    samples.setdefault(key, []).extend(v)
                    stopped.setdefault(key, []).extend(st)
                    p50s.setdefault(key, []).append(pct(v, 50))
                    print("%5d  %-5s  %-8s  %5d  %-11s  %-3s  %8.0f / %6.0f / "
                          "%6.0f   %8.0f / %6.0f"
                          % (rnd, label or "-", wl, n, m, pv, pct(v, 50),
                             pct(v, 90), pct(v, 99), pct(st, 50),
                             pct(st, 99)), flush=True)
                    self_check(xtk, env, name)
                finally:
                    destroy(xtk, env, name)
    print()
    print("%d round(s) of %d checkpoints pooled; p50 vs 1 vCPU: the pooled "
          "figures', [the rounds' own, lowest-highest]" % (a.rounds, a.epochs))
    print("build  workload  vCPUs  method       pv   suspend us p50 / p90 / "
          "p99        p50 vs 1 vCPU        stopped us p50 / p99  (p50 vs 1)")
    for (wl, n, m, pv) in configs:
        for label, _, _, _ in builds:
            key = (label, (wl, n, m, pv))
            one = (label, (wl, 1, m, pv))
            v = samples[key]
            ratio, rng = float("nan"), ""
            if one in samples:
                ratio = pct(v, 50) / pct(samples[one], 50)
                r = [x / y for x, y in zip(p50s[key], p50s[one])]
                if len(r) > 1:
                    rng = "  [%.2f-%.2f]" % (min(r), max(r))
            st = stopped[key]
            sr = float("nan")
            if one in stopped and stopped[one] and st:
                sr = pct(st, 50) / pct(stopped[one], 50)
            print("%-5s  %-8s  %5d  %-11s  %-3s  %8.0f / %6.0f / %6.0f      "
                  "%5.2fx%-16s  %8.0f / %6.0f  (%.2fx)"
                  % (label or "-", wl, n, m, pv, pct(v, 50), pct(v, 90),
                     pct(v, 99), ratio, rng, pct(st, 50), pct(st, 99), sr),
                  flush=True)

if __name__ == "__main__":
    main()
