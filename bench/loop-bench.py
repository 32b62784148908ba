#!/usr/bin/env python3
"""loop-bench.py - how long libxtk holds up the caller's own event loop.

docs/benchmarks.md, "The caller's loop" (issue 12, item 1).  bench/loop-bench
(C, libxtk in its own libevent loop with a 1 ms timer) first runs the timer
alone for 2 s, then with, on the same loop, a live migration of a 1 GiB
guest dirtying 2,000 pages/s over 256 MiB and continuous checkpointing of
a 256 MiB guest (EPOCHS epochs every INTERVAL ms), each to an xtk-restore
on loopback in a second run directory, until both end: the timer's
lateness p50 / p99 / max.  RUNS times.

With --trace, each run goes under `perf trace --duration 0.5`: every
system call of the loop thread that took over 0.5 ms other than the loop's
own wait (epoll_wait) is listed: a wait inside a callback, libxtk's or the
bench's.  A stall "held" with none of those is the loop thread kept from
running some other way (on this nested VM: a wake-up delivered late).

With --nice N, the loop thread alone runs at nice N (libxtk's threads,
the guests and the destinations at 0): a caller that cares about its
loop's latency gives it the CPU first; the lateness left is then the
loop's own.

With --fifo P, the loop thread alone runs in SCHED_FIFO at priority P
(SCHED_RESET_ON_FORK: every thread it starts, libxtk's included, is an
ordinary one): the machine's other work can no longer delay the loop's
wake-ups (only the kernel, interrupts and, on a VM, the host can), so the
lateness left is the loop's own work and libxtk's holds of it.

usage: loop-bench.py BUILD_DIR [RUNS] [--epochs N] [--interval MS] [--trace]
                     [--nice N] [--fifo P]
Run as root (KVM); `make bench` first.
"""
import re
import argparse
import importlib.util
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "engine_bench", os.path.join(HERE, "engine-bench.py"))
eb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eb)


def listener(env):
    port = eb.free_port()
    p = env.spawn(env.path("xtk-restore"), "-q", "listen:127.0.0.1:%d" % port,
                  rundir="dst", stdout=subprocess.DEVNULL)
    for _ in range(100):
        if subprocess.run(["ss", "-Hltn", "sport = :%d" % port],
                          capture_output=True, text=True).stdout.strip():
            break
        time.sleep(0.02)
    return p, port


def waits(out, tf):
    """The loop thread's system calls over 0.5 ms but its epoll_wait."""
    m = re.search(r"^loop thread (\d+)$", out, re.M)
    if not m:
        return "  (no loop thread id in the output)"
    tid = m.group(1)
    rows = []
    for line in open(tf, errors="replace"):
        t = re.match(r"\s*([\d.]+) \(\s*([\d.]+) ms\): [^/]*/(\d+) (\w+)\(",
                     line)
        if t and t.group(3) == tid and not t.group(4).startswith("epoll"):
            rows.append("  loop thread: %s %.2f ms (at %.1f ms)" %
                        (t.group(4), float(t.group(2)), float(t.group(1))))
    return "\n".join(rows) or "  loop thread: no system call over 0.5 ms " \
        "but its epoll_wait"


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("runs", type=int, nargs="?", default=3)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--interval", type=int, default=25)
    ap.add_argument("--trace", action="store_true")
    ap.add_argument("--nice", type=int, default=None,
                    help="the loop thread alone at this nice value")
    ap.add_argument("--fifo", type=int, default=None,
                    help="the loop thread alone in SCHED_FIFO at this "
                         "priority (the threads it starts are not)")
    a = ap.parse_args()
    if a.nice is not None:
        os.environ["LOOP_BENCH_NICE"] = str(a.nice)
    if a.fifo is not None:
        os.environ["LOOP_BENCH_FIFO"] = str(a.fifo)
    env = eb.Env(a.build)
    try:
        for i in range(a.runs):
            env.xtk("create", "-n", "mig", "-m", "1024", "-w", "dirty", "-P",
                    "65536", "-r", "2000", "--no-store")
            env.xtk("create", "-n", "ck", "-m", "256", "-w", "dirty", "-P",
                    "16384", "-r", "2000", "--no-store")
            env.wait_up("mig")
            env.wait_up("ck")
            time.sleep(1.0)
            pm, portm = listener(env)
            pc, portc = listener(env)
            cmd = [env.path("bench/loop-bench"), "mig",
                   "tcp:127.0.0.1:%d" % portm, "ck",
                   "tcp:127.0.0.1:%d" % portc, str(a.epochs), str(a.interval)]
            tf = os.path.join(env.work, "trace.out")
            if a.trace:
                cmd = ["perf", "trace", "--duration", "0.5", "-o", tf] + \
                    (["--call-graph", "dwarf", "-e", os.environ["LB_CG"]]
                     if os.environ.get("LB_CG") else []) + ["--"] + cmd
            out = env.run(*cmd, capture_output=True, text=True).stdout
            print("run %d:\n%s" % (i + 1, out), flush=True)
            if a.trace:
                print(waits(out, tf), flush=True)
                if os.environ.get("LB_KEEP"):
                    subprocess.run(["cp", tf, os.environ["LB_KEEP"]])
            pm.wait(timeout=60)
            pc.wait(timeout=60)
            env.destroy_all()
    finally:
        env.close()


if __name__ == "__main__":
    main()
