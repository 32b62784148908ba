#!/usr/bin/env python3
"""suspend-cpu.py - where the CPU time of a checkpoint's suspend goes, and
the least the suspend could take on this machine's CPUs with that work
(issue 15).

docs/benchmarks.md, "SMP guests under overcommit".  A built-in guest of
64 MiB (WORKLOAD spin or idle, N vCPUs) is checkpointed EPOCHS times every
20 ms to /dev/null (`xtk-save -c -l -I 20 --suspend evtchn`, as
bench/smp-bench.py does), under `perf record -e sched:sched_switch -a`
on the monotonic clock, the clock of xtk-save's --stats-json phases.
For each checkpoint, from the request to "suspended" (the "suspend"
figure of the report), the time every CPU spent on each thread is summed
by who it is:

  vcpu0, aps      the guest's vCPU threads (vCPU 0; the others)
  control         xtk-hv's control thread (the hold, the STOP)
  helper          xtk-hv-state, the STOP's second thread (4 vCPUs or more)
  xtk-save        the toolstack
  idle            no thread at all
  other           anything else on the machine (perf itself included)

and printed per checkpoint (mean), with the suspend's own p50, and the
"packed" bound: the threads' CPU time (all but idle and other) over the
number of CPUs, the suspend's length if that work kept every CPU busy
from its start to its end.  A suspend cannot be shorter than that
without less work: so the bound against the 1-vCPU guest's measured p50
says whether a target ratio (issue 15: an idle SMP guest within 1.2x of
one vCPU; 8 spinning vCPUs within 2x) can be met by better scheduling
alone.  perf's own tracing adds to every figure (~10-20% here): compare
within one run.

usage: suspend-cpu.py BUILD_DIR [--vcpus 1,8] [--workloads idle,spin]
                                [--epochs 60]
Run as root (KVM, perf), alone on the machine; needs perf (linux-perf).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

GROUPS = ("vcpu0", "aps", "control", "helper", "xtk-save", "idle", "other")
WORK = ("vcpu0", "aps", "control", "helper", "xtk-save")


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


def hv_threads(name, nr_vcpus):
    """xtk-hv's pid (its control thread) and its vCPU threads' ids in
    vCPU order: named xtk-hv-vcpuN, or (an older xtk-hv) the threads
    named as the process, created in order (other threads have names of
    their own, or are gone once the domain is up)."""
    for _ in range(100):
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
            except OSError:
                continue
            if not cmd or not cmd[0].endswith(b"xtk-hv"):
                continue
            if b"--name" not in cmd or \
                    cmd[cmd.index(b"--name") + 1] != name.encode():
                continue
            tids, named = [], {}
            for t in sorted(os.listdir("/proc/%s/task" % pid), key=int):
                try:
                    comm = open("/proc/%s/task/%s/comm" % (pid, t)).read()
                except OSError:
                    continue
                comm = comm.strip()
                if comm.startswith("xtk-hv-vcpu"):
                    named[int(comm[len("xtk-hv-vcpu"):])] = int(t)
                elif t != pid and comm == "xtk-hv":  # before they had names
                    tids.append(int(t))
            if len(named) == nr_vcpus:
                return int(pid), [named[i] for i in sorted(named)]
            if len(tids) == nr_vcpus:
                return int(pid), tids
        time.sleep(0.05)
    sys.exit("%s: cannot tell its xtk-hv's vCPU threads" % name)


def suspends(report):
    out, req = [], None
    for p in report.get("phases", []):
        if p["name"] == "suspend requested":
            req = p["ns"]
        elif p["name"] == "suspended notified" and req is not None:
            out.append((req, p["ns"]))
            req = None
    return out


SWITCH = re.compile(r"\[(\d+)\]\s+([\d.]+):\s+sched:sched_switch:.*?"
                    r"prev_pid=(\d+) .*==> next_comm=(.+?) next_pid=(\d+)")


def account(perf_txt, windows, ctl, vcpus, save_pids):
    """CPU ns per group summed over the windows [start, end]."""
    sw = []
    for line in open(perf_txt):
        m = SWITCH.search(line)
        if m:
            sw.append((int(round(float(m.group(2)) * 1e9)), int(m.group(1)),
                       m.group(4), int(m.group(5))))
    sw.sort()

    def group(comm, pid):
        if pid == 0:
            return "idle"
        if pid in vcpus:
            return "vcpu0" if pid == vcpus[0] else "aps"
        if pid == ctl:
            return "control"
        if comm.startswith("xtk-hv-state"):
            return "helper"
        if comm.startswith("xtk-save") or pid in save_pids:
            return "xtk-save"
        return "other"

    tot = dict.fromkeys(GROUPS, 0)
    cpus = sorted({s[1] for s in sw})
    i = 0
    on = {}  # cpu -> group running on it
    for start, end in windows:
        while i < len(sw) and sw[i][0] <= start:
            on[sw[i][1]] = group(sw[i][2], sw[i][3])
            i += 1
        since = dict.fromkeys(cpus, start)
        j = i
        while j < len(sw) and sw[j][0] <= end:
            t, cpu, comm, pid = sw[j]
            tot[on.get(cpu, "other")] += t - since[cpu]
            since[cpu] = t
            on[cpu] = group(comm, pid)
            j += 1
        for cpu in cpus:
            tot[on.get(cpu, "other")] += end - since[cpu]
    return tot, len(cpus)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--vcpus", default="1,8")
    ap.add_argument("--workloads", default="idle,spin")
    ap.add_argument("--epochs", type=int, default=60)
    a = ap.parse_args()
    b = os.path.abspath(a.build)
    if a.epochs < 1:
        sys.exit("suspend-cpu.py: --epochs must be at least 1")
    for prog in ("xtk", "xtk-save", "xtk-hv"):
        if not os.access(os.path.join(b, prog), os.X_OK):
            sys.exit("suspend-cpu.py: %s: no %s there (a build directory?)"
                     % (b, prog))
    if not shutil.which("perf"):
        sys.exit("suspend-cpu.py: needs perf (Debian: linux-perf)")
    tmp = tempfile.mkdtemp(prefix="xtk-cpu-")
    env = dict(os.environ, XTK_HV=os.path.join(b, "xtk-hv"),
               XTK_GUEST=os.path.join(b, "guests", "xtk-guest.elf"),
               XTK_RUNDIR=os.path.join(tmp, "run"))
    xtk, save = os.path.join(b, "xtk"), os.path.join(b, "xtk-save")
    print("CPU time per suspend (mean us, request to suspended, perf on); "
          "packed: the threads' time over the CPUs")
    print("workload  vCPUs  p50 us  " +
          "  ".join("%8s" % g for g in GROUPS) + "    packed  vs 1 vCPU p50")
    one = {}
    for wl in a.workloads.split(","):
        for n in [int(x) for x in a.vcpus.split(",")]:
            name = "cpu-%s-%d" % (wl, n)
            subprocess.run([xtk, "create", "-n", name, "-m", "64", "-c",
                            str(n), "-w", wl, "--no-store"], env=env,
                           check=True, stdout=subprocess.DEVNULL)
            try:
                ctl, vcpus = hv_threads(name, n)
                js = os.path.join(tmp, name + ".json")
                data = os.path.join(tmp, name + ".perf")
                p = subprocess.Popen(
                    ["perf", "record", "-q", "-o", data, "-k",
                     "CLOCK_MONOTONIC", "-e", "sched:sched_switch", "-a",
                     "--", save, "-q", "-c", "-l", "-I", "20", "-N",
                     str(a.epochs), "--suspend", "evtchn", "--stats-json",
                     js, name, "/dev/null"], env=env)
                if p.wait():
                    sys.exit("%s: perf record / xtk-save failed" % name)
                txt = data + ".txt"
                with open(txt, "w") as f:
                    subprocess.run(["perf", "script", "-i", data, "-F",
                                    "comm,tid,cpu,time,event,trace"],
                                   stdout=f, stderr=subprocess.DEVNULL,
                                   check=True)
                w = suspends(json.load(open(js)))
                tot, ncpu = account(txt, w, ctl, vcpus, set())
                ms = [(e - s) / 1e3 for s, e in w]
                per = {g: tot[g] / len(w) / 1e3 for g in GROUPS}
                packed = sum(per[g] for g in WORK) / ncpu
                p50 = pct(ms, 50)
                if n == 1:
                    one[wl] = p50
                print("%-8s  %5d  %6.0f  " % (wl, n, p50) +
                      "  ".join("%8.0f" % per[g] for g in GROUPS) +
                      "  %8.0f  %s" % (packed, "%.2fx" % (packed / one[wl])
                                       if wl in one else "-"), flush=True)
                c = subprocess.run([xtk, "check", name], env=env,
                                   capture_output=True, text=True)
                if c.returncode:
                    sys.exit("%s: the self-check failed: %s" %
                             (name, c.stdout + c.stderr))
            finally:
                subprocess.run([xtk, "destroy", name], env=env,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
