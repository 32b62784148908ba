"""Shared fixtures: contexts on private run directories (two "hosts"),
whatever a test leaves running destroyed after it, and the built-in
guest's self-check through the build's `xtk check`."""

import os
import subprocess
import time

import pytest

import xtk

BUILD = os.environ.get("XTK_BUILD", "")


def xtk_cli(run_dir, *args, check=True):
    """Runs the build's xtk(1) against run_dir."""
    env = dict(os.environ, XTK_RUNDIR=run_dir)
    return subprocess.run([os.path.join(BUILD, "xtk")] + list(args), env=env,
                          check=check, capture_output=True, text=True)


def self_check(run_dir, name, seconds=5.0):
    """Waits until the guest's self-check passes (the built-in guest's
    status page and workload data; see xtk(1) check)."""
    end = time.monotonic() + seconds
    while True:
        r = xtk_cli(run_dir, "check", name, check=False)
        if r.returncode == 0:
            return
        if time.monotonic() > end:
            raise AssertionError("self-check of %s: %s%s" %
                                 (name, r.stdout, r.stderr))
        time.sleep(0.05)


def console_has(dom, text, seconds=5.0):
    end = time.monotonic() + seconds
    while True:
        _, data = dom.console(0, 1 << 20)
        if text.encode() in data:
            return data
        if time.monotonic() > end:
            raise AssertionError("console lacks %r: %r" % (text, data[-400:]))
        time.sleep(0.05)


def _destroy_all(ctx):
    for info in ctx.domains():
        try:
            with ctx.domain(info.domid) as d:
                d.destroy()
        except xtk.Error:
            pass


@pytest.fixture
def host(tmp_path):
    """A Context on a fresh run directory; its domains are destroyed
    after the test."""
    ctxs = []

    def make(name="a"):
        ctx = xtk.Context(run_dir=str(tmp_path / name), log_level="none")
        ctxs.append(ctx)
        return ctx

    yield make
    for ctx in ctxs:
        _destroy_all(ctx)
        ctx.close()
