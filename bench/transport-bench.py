#!/usr/bin/env python3
"""transport-bench.py - what TLS and ssh cost a migration, beside clear TCP.

docs/benchmarks.md, "TLS and ssh" (issue 16).  In one run, interleaved
(one of each transport, RUNS times), on loopback:

  live     Live migrations of a 256 MiB guest dirtying 2,000 pages/s over
           64 MiB: the downtime (the source's "downtime" histogram: suspend
           request to the guest running at the destination), the migration's
           wall time (xtk-save's start to its end), and pre-copy round 0's
           rate (its bytes over its time).
  bulk     Non-live migrations of a stopped 256 MiB guest whose 128 MiB of
           data are all written (the stop-and-copy at full speed): the
           one round's rate.

Transports: tcp (clear), tls (x509, ECDSA P-256 certificates, TLS 1.3
AES-128-GCM), psk (TLS 1.3 with a pre-shared key, ECDHE-PSK), ssh (Debian's
OpenSSH on 127.0.0.1, key authentication, aes128-gcm@openssh.com, the far
side run as `xtk-restore --stdio`).  The physical limit beside them: one
core's AES-128-GCM rate from `gnutls-cli --benchmark-ciphers` (every byte
is encrypted once and decrypted once, on a 2-core machine).

usage: transport-bench.py BUILD_DIR [RUNS] [--transports tcp,tls,psk,ssh]
                          [--json FILE] [--no-bulk]
Run as root (KVM).  Needs gnutls-bin (certtool, psktool, gnutls-cli) and
openssh-server.
"""
import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time

_spec = importlib.util.spec_from_file_location(
    "engine_bench", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                 "engine-bench.py"))
eb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eb)


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True,
                          **kw)


def make_pki(d):
    """A CA, a certificate for the listener and one for the source, a PSK
    file; the two directories in xtk's layout."""
    os.makedirs(d)

    def key(name):
        sh("certtool", "-p", "--key-type", "ecdsa", "--outfile",
           os.path.join(d, name + "-key.pem"))

    def tmpl(name, lines):
        p = os.path.join(d, name + ".tmpl")
        open(p, "w").write("\n".join(lines + ["expiration_days = 2"]) + "\n")
        return p

    key("ca")
    sh("certtool", "-s", "--load-privkey", os.path.join(d, "ca-key.pem"),
       "--template", tmpl("ca", ["cn = bench CA", "ca", "cert_signing_key"]),
       "--outfile", os.path.join(d, "ca-cert.pem"))
    for name, purpose in (("server", "tls_www_server"),
                          ("client", "tls_www_client")):
        key(name)
        sh("certtool", "-c", "--load-privkey",
           os.path.join(d, name + "-key.pem"), "--load-ca-certificate",
           os.path.join(d, "ca-cert.pem"), "--load-ca-privkey",
           os.path.join(d, "ca-key.pem"), "--template",
           tmpl(name, ["cn = localhost", "dns_name = localhost",
                       "ip_address = 127.0.0.1", purpose]),
           "--outfile", os.path.join(d, name + "-cert.pem"))
    sh("psktool", "-u", "bench", "-p", os.path.join(d, "keys.psk"))


def start_sshd(env, d):
    """An sshd on a free loopback port taking one key; the ssh command."""
    os.makedirs(d)
    os.makedirs("/run/sshd", exist_ok=True)
    os.chmod(d, 0o700)
    for k in ("host", "user"):
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
           os.path.join(d, k))
    port = eb.free_port()
    open(os.path.join(d, "auth"), "w").write(
        open(os.path.join(d, "user.pub")).read())
    cfg = os.path.join(d, "sshd_config")
    open(cfg, "w").write(
        "Port %d\nListenAddress 127.0.0.1\nHostKey %s/host\n"
        "AuthorizedKeysFile %s/auth\nPidFile %s/pid\nStrictModes no\n"
        "UsePAM no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PermitRootLogin prohibit-password\n" % (port, d, d, d))
    open(os.path.join(d, "known"), "w").write(
        "[127.0.0.1]:%d %s" % (port, open(os.path.join(d, "host.pub")).read()))
    env.spawn("/usr/sbin/sshd", "-D", "-e", "-f", cfg,
              stderr=subprocess.DEVNULL)
    for _ in range(100):
        if subprocess.run(["ss", "-Hltn", "sport = :%d" % port],
                          capture_output=True, text=True).stdout.strip():
            break
        time.sleep(0.05)
    return ("ssh -F /dev/null -p %d -i %s/user -o BatchMode=yes "
            "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s/known "
            "-c aes128-gcm@openssh.com" % (port, d, d))


def migrate(env, how, pki, sshcmd, live):
    """One migration of domain "mig" over `how`; the source's report and
    xtk-save's wall time (s)."""
    port = eb.free_port()
    js = os.path.join(env.work, "src.json")
    save = [env.path("xtk-save"), "-q", "-J", js] + (["-l"] if live else [])
    dst = None
    if how == "ssh":
        far = "env XTK_RUNDIR=%s XTK_HV=%s XTK_GUEST=%s %s" % (
            os.path.join(env.work, "dst"), env.env["XTK_HV"],
            env.env["XTK_GUEST"], env.path("xtk-restore"))
        save += ["--ssh", sshcmd, "--ssh-restore", far, "mig",
                 "ssh:127.0.0.1"]
    else:
        restore = [env.path("xtk-restore"), "-q"]
        if how == "tls":
            restore += ["--tls-dir", pki, "--tls-authz", "localhost"]
            save += ["--tls-dir", pki, "--tls-authz", "localhost"]
        elif how == "psk":
            restore += ["--tls-psk", os.path.join(pki, "keys.psk")]
            save += ["--tls-psk", os.path.join(pki, "keys.psk")]
        dst = env.spawn(*restore, "listen:127.0.0.1:%d" % port, rundir="dst",
                        stdout=subprocess.DEVNULL)
        for _ in range(100):
            if subprocess.run(["ss", "-Hltn", "sport = :%d" % port],
                              capture_output=True, text=True).stdout.strip():
                break
            time.sleep(0.02)
        save += ["mig", "tcp:127.0.0.1:%d" % port]
    t0 = time.monotonic()
    env.run(*save, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    if dst and dst.wait(timeout=30) != 0:
        raise RuntimeError("xtk-restore failed (%s)" % how)
    env.wait_up("mig", rundir="dst")
    env.xtk("destroy", "mig", rundir="dst")
    return json.load(open(js)), wall


def cipher_limit():
    """One core's AES-128-GCM rate (GB/s) as gnutls-cli measures it."""
    out = subprocess.run(["gnutls-cli", "--benchmark-ciphers"],
                         capture_output=True, text=True).stdout
    best = None
    for line in out.splitlines():
        m = re.search(r"AES-128-GCM\s+([0-9.]+)\s+([GM])B/sec", line)
        if m:
            v = float(m.group(1)) * (1 if m.group(2) == "G" else 1e-3)
            best = v if best is None else max(best, v)
    return best


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("runs", type=int, nargs="?", default=10)
    ap.add_argument("--transports", default="tcp,tls,psk,ssh")
    ap.add_argument("--json")
    ap.add_argument("--no-bulk", action="store_true",
                    help="the live migrations only (more runs in the time)")
    a = ap.parse_args()
    hows = a.transports.split(",")
    env = eb.Env(a.build)
    res = {h: {"downtime_ms": [], "wall_s": [], "round0_gbs": [],
               "bulk_gbs": []} for h in hows}
    try:
        pki = os.path.join(env.work, "pki")
        make_pki(pki)
        # both roles' files in one directory: xtk-save reads client-*,
        # xtk-restore server-*
        sshcmd = start_sshd(env, os.path.join(env.work, "ssh")) \
            if "ssh" in hows else None
        limit = cipher_limit()
        for i in range(a.runs):
            for h in hows:
                env.xtk("create", "-n", "mig", "-m", "256", "-w", "dirty",
                        "-P", "16384", "-r", "2000", "--no-store")
                env.wait_up("mig")
                time.sleep(1.0)
                rep, wall = migrate(env, h, pki, sshcmd, True)
                r = res[h]
                r["downtime_ms"].append(eb.hist(rep, "downtime")["max"] / 1e6)
                r["wall_s"].append(wall)
                r0 = rep["rounds"][0]
                r["round0_gbs"].append(r0["bytes"] / r0["ns"])
                if a.no_bulk:
                    continue
                # the stop-and-copy at full speed: all 128 MiB written
                env.xtk("create", "-n", "mig", "-m", "256", "-w", "dirty",
                        "-P", "32768", "-r", "0", "--no-store")
                env.wait_up("mig")
                time.sleep(1.5)
                rep, wall = migrate(env, h, pki, sshcmd, False)
                rb = max(rep["rounds"], key=lambda x: x["bytes"])
                r["bulk_gbs"].append(rb["bytes"] / rb["ns"])
            print("run %d/%d done" % (i + 1, a.runs), file=sys.stderr)
    finally:
        env.close()

    def p(v, q):
        return eb.pct(v, q) if v else float("nan")

    print("transport   downtime ms p50 / p99    wall s p50   round 0 GB/s p50"
          "   bulk GB/s p50 / p99")
    for h in hows:
        r = res[h]
        print("%-9s %9.2f / %-9.2f %9.2f %14.3f %15.3f / %.3f" % (
            h, p(r["downtime_ms"], 50), p(r["downtime_ms"], 99),
            p(r["wall_s"], 50), p(r["round0_gbs"], 50), p(r["bulk_gbs"], 50),
            p(r["bulk_gbs"], 99)))
    base = res.get("tcp")
    if base:
        print("\nratios to tcp at p50 (downtime, wall, bulk rate):")
        for h in hows:
            if h == "tcp":
                continue
            r = res[h]
            print("  %-4s downtime %.2f (min/min %.2f)  wall %.2f  bulk rate "
                  "%.2f" % (
                      h, p(r["downtime_ms"], 50) / p(base["downtime_ms"], 50),
                      min(r["downtime_ms"]) / min(base["downtime_ms"]),
                      p(r["wall_s"], 50) / p(base["wall_s"], 50),
                      p(r["bulk_gbs"], 50) / p(base["bulk_gbs"], 50)))
    if limit and not a.no_bulk:
        print("\nphysical limit: one core's AES-128-GCM (gnutls-cli "
              "--benchmark-ciphers) %.2f GB/s; TLS bulk p50 is %.0f%% of it"
              % (limit, 100 * p(res["tls"]["bulk_gbs"], 50) / limit
                 if "tls" in res else 0))
    if a.json:
        json.dump({"results": res, "aes128gcm_gbs": limit}, open(a.json, "w"),
                  indent=1)


if __name__ == "__main__":
    main()
