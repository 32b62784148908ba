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
The guest's self-check must pass after each run.

Methods: evtchn (the guest's request on its channel; xtk-hv stops the
other vCPUs once vCPU 0 says "suspended", and they park after the
resume), evtchn-park (the same request, but the guest parks every vCPU
before it says "suspended", as it did before: the guest's apstop=guest),
pause (xtk-hv stops the vCPUs without the guest).

usage: smp-bench.py BUILD_DIR [--vcpus 1,2,4,8] [--epochs N]
                              [--workloads spin,idle]
                              [--methods evtchn,evtchn-park,pause]
Run as root (KVM), alone on the machine.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def suspend_hist(report):
    for h in report.get("histograms", []):
        if h["name"] == "suspend":
            return h
    raise SystemExit("no suspend histogram in the report")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--vcpus", default="1,2,4,8")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--workloads", default="spin,idle")
    ap.add_argument("--methods", default="evtchn,evtchn-park,pause")
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    env = dict(os.environ, XTK_HV=os.path.join(b, "xtk-hv"),
               XTK_GUEST=os.path.join(b, "guests", "xtk-guest.elf"))
    tmp = tempfile.mkdtemp(prefix="xtk-smp-")
    env["XTK_RUNDIR"] = os.path.join(tmp, "run")
    xtk = os.path.join(b, "xtk")
    save = os.path.join(b, "xtk-save")
    print("workload  vCPUs  method       suspend us p50 / p90 / p99"
          "        p50 vs 1 vCPU")
    base = {}
    for wl in a.workloads.split(","):
        for n in [int(x) for x in a.vcpus.split(",")]:
            for m in a.methods.split(","):
                name = "smp-%s-%d-%s" % (wl, n, m)
                args = ["-a", "apstop=guest"] if m == "evtchn-park" else []
                subprocess.run([xtk, "create", "-n", name, "-m", "64", "-c",
                                str(n), "-w", wl, "--no-store"] + args,
                               env=env, check=True, stdout=subprocess.DEVNULL)
                try:
                    js = os.path.join(tmp, "%s.json" % name)
                    subprocess.run([save, "-q", "-c", "-l", "-I", "20", "-N",
                                    str(a.epochs), "--suspend",
                                    m.split("-")[0], "--stats-json", js, name,
                                    "/dev/null"], env=env, check=True)
                    h = suspend_hist(json.load(open(js)))
                    p50, p90, p99 = (h["p50"] / 1e3, h["p90"] / 1e3,
                                     h["p99"] / 1e3)
                    if n == 1:
                        base[(wl, m)] = p50
                    ratio = (p50 / base[(wl, m)]
                             if base.get((wl, m)) else float("nan"))
                    print("%-8s  %5d  %-11s  %8.0f / %6.0f / %6.0f      "
                          "%5.2fx" % (wl, n, m, p50, p90, p99, ratio),
                          flush=True)
                    r = subprocess.run([xtk, "check", name], env=env,
                                       capture_output=True, text=True)
                    if r.returncode:
                        sys.exit("%s: the self-check failed: %s"
                                 % (name, r.stdout + r.stderr))
                finally:
                    subprocess.run([xtk, "destroy", name], env=env,
                                   stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
