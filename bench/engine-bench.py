#!/usr/bin/env python3
"""engine-bench.py - the save engine's critical path, against its peer.

Benchmarks 1 and 2 of docs/benchmarks.md, "save/restore" (3 and 4 are
bench/sr-bench):

  final-round   The seed's experiment (seeds/001): the final round of a
                128 MiB idle guest (suspend request to the last byte of the
                epoch sent), RUNS times, the request through the store
                (control/shutdown in xsd-lite) and through the guest's
                suspend event channel, in the seed's form (avg, min, max,
                median) plus p99.  A checkpointing save to /dev/null
                repeats the final round every 20 ms, as the seed's harness
                looped over it.

  migrate       Live-migration downtime (suspend request on the source to
                the guest running on the destination, from the reply's
                resume time) of a 256 MiB guest over TCP on loopback,
                (a) dirtying 2,000 pages/s over 64 MiB, (b) rewriting a
                16 MiB hot set flat out; RUNS migrations each, and in the
                same run QEMU migrating the same guest binary with the same
                workload (downtime from query-migrate, which QEMU measures
                on the source from the stop to the end of its sending, so
                xtk's source-side part is printed too), and for (b) the
                floor: the hot set's bytes over the stream bandwidth, itself
                measured in the same run by non-live migrations of the same
                guest (the guest stopped, memory sent at full speed).

usage: engine-bench.py BUILD_DIR final-round|migrate|all [RUNS]
Run as root (KVM).  Needs qemu-system-x86_64 for migrate.
"""
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 100)) - 1))
    return v[k]


def form(values):
    """The seed's form, in ms: avg, min, max, median, and p99."""
    return ("avg: %.2f ms, min: %.2f, max: %.2f, median: %.2f, p99: %.2f"
            % (statistics.mean(values), min(values), max(values),
               statistics.median(values), pct(values, 99)))


class Env:
    def __init__(self, build):
        self.build = os.path.abspath(build)
        self.work = tempfile.mkdtemp(prefix="xtk-engine-bench.")
        self.env = dict(os.environ,
                        XTK_HV=self.path("xtk-hv"),
                        XTK_GUEST=self.path("guests/xtk-guest.elf"),
                        XTK_RUNDIR=os.path.join(self.work, "src"),
                        XENSTORED_PATH=os.path.join(self.work, "xs.sock"))
        self.procs = []

    def path(self, p):
        return os.path.join(self.build, p)

    def run(self, *args, rundir="src", **kw):
        env = dict(self.env, XTK_RUNDIR=os.path.join(self.work, rundir))
        return subprocess.run(args, env=env, check=True, **kw)

    def spawn(self, *args, rundir="src", **kw):
        env = dict(self.env, XTK_RUNDIR=os.path.join(self.work, rundir))
        p = subprocess.Popen(args, env=env, **kw)
        self.procs.append(p)
        return p

    def xtk(self, *args, rundir="src"):
        return self.run(self.path("xtk"), *args, rundir=rundir,
                        capture_output=True, text=True).stdout

    def wait_up(self, dom, rundir="src"):
        for _ in range(200):
            r = subprocess.run([self.path("xtk"), "check", dom],
                               env=dict(self.env, XTK_RUNDIR=os.path.join(
                                   self.work, rundir)),
                               capture_output=True)
            if r.returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("%s did not come up" % dom)

    def destroy_all(self):
        for rd in ("src", "dst"):
            if not os.path.isdir(os.path.join(self.work, rd)):
                continue
            out = self.xtk("list", rundir=rd)
            for line in out.splitlines()[1:]:
                self.xtk("destroy", line.split()[1], rundir=rd)

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        try:
            self.destroy_all()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)


def hist(report, name):
    for h in report["histograms"]:
        if h["name"] == name:
            return h
    raise KeyError(name)


# ---- 1. the final round, store vs event channel ---------------------------

def final_round(env, runs):
    xsd = env.spawn(env.path("xsd-lite/xsd-lite"), "-N", "-s",
                    env.env["XENSTORED_PATH"], "-l", "warning")
    for _ in range(100):
        if os.path.exists(env.env["XENSTORED_PATH"]):
            break
        time.sleep(0.02)
    env.xtk("create", "-n", "seed", "-m", "128", "-w", "idle")
    env.wait_up("seed")
    time.sleep(0.5)
    results = {}
    for method in ("store", "evtchn"):
        js = os.path.join(env.work, method + ".json")
        with open(os.devnull, "wb") as null:
            env.run(env.path("xtk-save"), "-q", "-c", "-l", "-s", method,
                    "-I", "20", "-N", str(runs), "-J", js, "seed", "-",
                    stdout=null)
        rep = json.load(open(js))
        # Every epoch's final round: the histogram has them all; the
        # phases give each one (suspend requested -> checkpoint/end sent).
        vals, t0 = [], None
        for ph in rep["phases"]:
            if ph["name"] == "suspend requested":
                t0 = ph["ns"]
            elif ph["name"] in ("checkpoint sent", "end sent") and t0:
                vals.append((ph["ns"] - t0) / 1e6)
                t0 = None
        susp = hist(rep, "suspend")
        results[method] = vals
        print("  %-7s final round (%d runs): %s" % (method, len(vals),
                                                    form(vals)))
        print("          suspend request -> suspended: median %.3f ms, "
              "p99 %.3f ms" % (susp["p50"] / 1e6, susp["p99"] / 1e6))
    env.xtk("destroy", "seed")
    xsd.terminate()
    xsd.wait()
    s, e = (statistics.median(results[m]) for m in ("store", "evtchn"))
    print("  event channel median / store median = %.2f; target: event "
          "channel median <= 1 ms: %s" % (e / s, "met" if e <= 1 else
                                          "MISSED"))
    return results


# ---- 2. live migration downtime, xtk vs QEMU ----------------------------

SCENARIOS = {
    "a": ("dirtying 2,000 pages/s over 64 MiB", "16384", "2000"),
    "b": ("rewriting a 16 MiB hot set flat out", "4096", "0"),
}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def xtk_migrate(env, pages, rate):
    """One migration; returns the source's report."""
    env.xtk("create", "-n", "mig", "-m", "256", "-w", "dirty", "-P", pages,
            "-r", rate, "--no-store")
    env.wait_up("mig")
    time.sleep(1.0)  # the working set written, the dirtier in its stride
    port = free_port()
    js = os.path.join(env.work, "src.json")
    dst = env.spawn(env.path("xtk-restore"), "-q",
                    "listen:127.0.0.1:%d" % port, rundir="dst",
                    stdout=subprocess.DEVNULL)
    env.run(env.path("xtk-save"), "-q", "-l", "-J", js, "mig",
            "tcp:127.0.0.1:%d" % port)
    if dst.wait(timeout=30) != 0:
        raise RuntimeError("xtk-restore failed")
    env.wait_up("mig", rundir="dst")
    env.xtk("destroy", "mig", rundir="dst")
    return json.load(open(js))


def stream_bandwidth(env, runs=5):
    """
    The stream's bandwidth over loopback TCP: non-live saves (the guest
    stopped, as in a final round) of a guest with 128 MiB of data into a
    TCP connection whose other end only reads and discards; bytes over
    time of the one round.  GB/s, one value per run.
    """
    import threading
    env.xtk("create", "-n", "bw", "-m", "256", "-w", "dirty", "-P", "32768",
            "-r", "0", "--no-store")
    env.wait_up("bw")
    time.sleep(1.5)  # passes over the working set: all of it written
    vals = []
    for _ in range(runs):
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        cli = socket.create_connection(lsock.getsockname())
        srv, _ = lsock.accept()
        lsock.close()

        def drain():
            buf = bytearray(1 << 20)
            while srv.recv_into(buf):
                pass
        t = threading.Thread(target=drain)
        t.start()
        js = os.path.join(env.work, "bw.json")
        env.run(env.path("xtk-save"), "-q", "-c", "-J", js, "bw", "-",
                stdout=cli.fileno())
        cli.close()
        t.join()
        srv.close()
        r = max(json.load(open(js))["rounds"], key=lambda r: r["bytes"])
        vals.append(r["bytes"] / r["ns"])
    env.xtk("destroy", "bw")
    return vals


class Qemu:
    def __init__(self, env, name, append, incoming=False):
        self.dir = os.path.join(env.work, name)
        os.makedirs(self.dir, exist_ok=True)
        self.qmp_path = os.path.join(self.dir, "qmp")
        self.serial = os.path.join(self.dir, "serial")
        args = ["qemu-system-x86_64", "-enable-kvm",
                "-cpu", "host,-cx16,-arch-capabilities", "-smp", "1",
                "-m", "256", "-nodefaults", "-no-user-config",
                "-display", "none", "-no-reboot",
                "-kernel", env.path("guests/xtk-guest.elf"),
                "-append", append,
                "-serial", "file:" + self.serial,
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]
        if incoming:
            args += ["-incoming", "defer"]
        self.proc = env.spawn(*args)
        for _ in range(200):
            if os.path.exists(self.qmp_path):
                break
            time.sleep(0.02)
        self.sock = socket.socket(socket.AF_UNIX)
        for _ in range(100):
            try:
                self.sock.connect(self.qmp_path)
                break
            except OSError:
                time.sleep(0.02)
        self.f = self.sock.makefile("rw")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, c, **a):
        self.f.write(json.dumps({"execute": c, "arguments": a}) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError("%s: %s" % (c, r["error"]))

    def wait_serial(self, text, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            try:
                if text in open(self.serial).read():
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise RuntimeError("QEMU guest: no '%s'" % text)

    def close(self):
        self.proc.kill()
        self.proc.wait()


def qemu_migrate(env, pages, rate):
    append = "workload=dirty pages=%s rate=%s" % (pages, rate)
    src = Qemu(env, "qsrc", append)
    dst = Qemu(env, "qdst", append, incoming=True)
    try:
        src.wait_serial("xtk-guest: running")
        time.sleep(1.0)
        port = free_port()
        dst.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % port)
        src.cmd("migrate-set-parameters", **{"downtime-limit": 300,
                                             "max-bandwidth": 4 << 30})
        src.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
        while True:
            st = src.cmd("query-migrate")
            if st["status"] == "completed":
                return st
            if st["status"] in ("failed", "cancelled"):
                raise RuntimeError("QEMU migration %s" % st["status"])
            time.sleep(0.01)
    finally:
        src.close()
        dst.close()


def migrate(env, runs):
    have_qemu = shutil.which("qemu-system-x86_64") is not None
    out = {}
    for key, (what, pages, rate) in SCENARIOS.items():
        xd, xs, qd = [], [], []
        bw = stream_bandwidth(env) if key == "b" else []
        for i in range(runs):
            rep = xtk_migrate(env, pages, rate)
            xd.append(hist(rep, "downtime")["max"] / 1e6)
            xs.append(hist(rep, "final round")["max"] / 1e6)
            if have_qemu:
                qd.append(qemu_migrate(env, pages, rate)["downtime"])
        print("  (%s) %s, %d runs" % (key, what, runs))
        print("      xtk  downtime p50 %.2f ms, p99 %.2f ms [%.2f-%.2f]"
              % (statistics.median(xd), pct(xd, 99), min(xd), max(xd)))
        print("      xtk  source side only (suspend request -> END sent, as "
              "QEMU counts): p50 %.2f ms, p99 %.2f ms"
              % (statistics.median(xs), pct(xs, 99)))
        if qd:
            print("      QEMU downtime p50 %.2f ms, p99 %.2f ms [%.2f-%.2f]"
                  % (statistics.median(qd), pct(qd, 99), min(qd), max(qd)))
            ratio = statistics.median(xd) / statistics.median(qd)
            print("      xtk p50 / QEMU p50 = %.2f (target <= 0.5: %s)"
                  % (ratio, "met" if ratio <= 0.5 else "MISSED"))
        if bw:
            gbs = statistics.median(bw)
            floor = (int(pages) * 4096) / gbs / 1e6
            print("      stream bandwidth (loopback TCP, 5 runs) %.2f GB/s "
                  "[%.2f-%.2f]; floor = 16 MiB / bandwidth = %.2f ms; "
                  "xtk p50 / floor = %.2f (target <= 1.5: %s)"
                  % (gbs, min(bw), max(bw), floor,
                     statistics.median(xd) / floor,
                     "met" if statistics.median(xd) <= 1.5 * floor
                     else "MISSED"))
        out[key] = (xd, qd, bw)
    return out


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    build, what = sys.argv[1], sys.argv[2]
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    env = Env(build)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    try:
        print("load: %s" % open("/proc/loadavg").read().strip())
        if what in ("final-round", "all"):
            print("1. final round of a 128 MiB idle guest "
                  "(suspend request -> last byte sent)")
            final_round(env, runs or 100)
        if what in ("migrate", "all"):
            print("2. live migration downtime, 256 MiB guest, loopback TCP")
            migrate(env, runs or 30)
        print("load: %s" % open("/proc/loadavg").read().strip())
    finally:
        env.close()


if __name__ == "__main__":
    main()
