"""xtk.xenstore against xsd-lite of this build, and beside Debian's
xenstore-* tools (the same store seen by both)."""

import errno
import os
import subprocess
import time

import pytest

from xtk import xenstore


@pytest.fixture
def store(tmp_path):
    """A foreground xsd-lite on a private socket; XENSTORED_PATH names it
    for the clients (ours and the xenstore-* tools)."""
    sock = str(tmp_path / "sock")
    pidf = tmp_path / "pid"
    p = subprocess.Popen([os.environ.get("XSD_LITE", "xsd-lite"), "-N",
                          "-s", sock, "-F", str(pidf), "-L",
                          str(tmp_path / "log")])
    for _ in range(200):
        if pidf.exists() and pidf.read_text().strip():
            break
        time.sleep(0.02)
    else:
        p.kill()
        pytest.fail("xsd-lite did not start")
    old = os.environ.get("XENSTORED_PATH")
    os.environ["XENSTORED_PATH"] = sock
    yield sock
    if old is None:
        del os.environ["XENSTORED_PATH"]
    else:
        os.environ["XENSTORED_PATH"] = old
    assert p.poll() is None, "xsd-lite died"
    p.kill()
    p.wait()


def test_read_write_list_rm(store):
    with xenstore.Client() as xs:
        xs.write("/vm/a", b"1")
        xs["/vm/b"] = "two"
        xs.mkdir("/vm/c")
        assert xs.read("/vm/a") == b"1"
        assert xs["/vm/b"] == b"two"
        assert xs.read("/vm/c") == b""
        assert sorted(xs.list("/vm")) == ["a", "b", "c"]
        assert xs.exists("/vm/a") and not xs.exists("/vm/zz")
        with pytest.raises(xenstore.Error) as e:
            xs.read("/vm/zz")
        assert e.value.errno == errno.ENOENT and e.value.path == "/vm/zz"
        del xs["/vm/b"]
        xs.rm("/vm/c")
        assert xs.list("/vm") == ["a"]
        with pytest.raises(ValueError):
            xs.write("/vm/big", b"x" * 5000)
        with pytest.raises(ValueError):
            xs.read("")
        assert xs.get_domain_path(3) == "/local/domain/3"


def test_same_store_as_the_tools(store):
    with xenstore.Client() as xs:
        xs.write("/shared/k", b"from python")
        out = subprocess.run(["xenstore-read", "/shared/k"], check=True,
                             capture_output=True, text=True).stdout
        assert out.strip() == "from python"
        subprocess.run(["xenstore-write", "/shared/t", "from the tools"],
                       check=True)
        assert xs.read("/shared/t") == b"from the tools"


def test_permissions(store):
    with xenstore.Client() as xs:
        xs.write("/p", b"v")
        xs.set_perms("/p", ["n0", "r5"])
        assert xs.get_perms("/p") == ["n0", "r5"]
        with pytest.raises(ValueError):
            xs.set_perms("/p", ["x1"])
        with pytest.raises(xenstore.Error) as e:
            xs.set_perms("/missing", ["n0"])
        assert e.value.errno == errno.ENOENT


def test_watch(store):
    with xenstore.Client() as xs, xenstore.Client() as other:
        xs.watch("/w", "tok")
        assert xs.read_watch(timeout=2) == ("/w", "tok")  # fired at once
        other.write("/w/x", b"1")
        assert xs.read_watch(timeout=2) == ("/w/x", "tok")
        # Events that come while a request waits are kept for later.
        other.write("/w/y", b"2")
        time.sleep(0.05)
        assert xs.read("/w/x") == b"1"
        assert xs.read_watch(timeout=2) == ("/w/y", "tok")
        assert xs.read_watch(timeout=0.05) is None
        xs.unwatch("/w", "tok")
        other.write("/w/z", b"3")
        assert xs.read_watch(timeout=0.1) is None
        assert xs.fileno() >= 0


def test_transactions(store):
    with xenstore.Client() as xs, xenstore.Client() as other:
        xs.write("/t/n", b"0")
        with xs.transaction() as t:
            t.write("/t/n", t.read("/t/n") + b"1")
        assert xs.read("/t/n") == b"01"
        # Abandoned on an exception: nothing written.
        with pytest.raises(RuntimeError):
            with xs.transaction() as t:
                t.write("/t/n", b"lost")
                raise RuntimeError("no")
        assert xs.read("/t/n") == b"01"
        # A commit that lost a race says so (EAGAIN).
        with pytest.raises(xenstore.Conflict) as e:
            with xs.transaction() as t:
                t.read("/t/n")
                t.write("/t/n", b"mine")
                other.write("/t/n", b"theirs")
        assert e.value.errno == errno.EAGAIN
        assert xs.read("/t/n") == b"theirs"


def test_bad_client_leaves_the_store_up(store):
    """A client that sends garbage is dropped; the store serves on."""
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.connect(store)
    s.sendall(b"\xff" * 64)
    s.close()
    with xenstore.Client() as xs:
        xs.write("/alive", b"yes")
        assert xs.read("/alive") == b"yes"
