"""A xenstore client in Python, for xsd-lite (and any xenstored's socket).

It speaks the store's wire protocol (xenstore's xs_wire.h: a 16-byte
header of type, request id, transaction id and length, then the payload)
on the daemon's Unix socket::

    from xtk.xenstore import Client
    with Client() as xs:                     # $XENSTORED_PATH or /run/xenstored/socket
        xs.write("/vm/a", b"1")
        xs["/vm/b"] = b"2"
        print(xs.list("/vm"), xs.read("/vm/a"), xs.get_perms("/vm/a"))
        with xs.transaction() as t:           # committed on exit, EAGAIN -> xtk.xenstore.Conflict
            t.write("/vm/c", t.read("/vm/a") + b"!")
        xs.watch("/vm", "tok")
        path, token = xs.read_watch(timeout=1.0)

Watch events are queued as they arrive, also while a request waits for
its reply; :meth:`Client.fileno` can go into a poll loop (then
:meth:`Client.read_watch` with ``timeout=0``).  Errors are
:class:`Error` (an OSError with the store's errno).  One client is one
connection and is not for concurrent use by several threads.
"""

import collections
import errno as _errno
import os
import select
import socket
import struct
import time

__all__ = ["Client", "Transaction", "Error", "Conflict"]

# xs_wire.h's message types.
XS_CONTROL = 0
XS_DIRECTORY = 1
XS_READ = 2
XS_GET_PERMS = 3
XS_WATCH = 4
XS_UNWATCH = 5
XS_TRANSACTION_START = 6
XS_TRANSACTION_END = 7
XS_GET_DOMAIN_PATH = 10
XS_WRITE = 11
XS_MKDIR = 12
XS_RM = 13
XS_SET_PERMS = 14
XS_WATCH_EVENT = 15
XS_ERROR = 16

_HEADER = struct.Struct("=IIII")
_PAYLOAD_MAX = 4096


class Error(OSError):
    """The store refused a request: ``errno`` is its error (ENOENT,
    EACCES, EINVAL, EAGAIN...), ``path`` the node it was about."""

    def __init__(self, err, path=None):
        super().__init__(err, os.strerror(err))
        self.path = path

    def __str__(self):
        return "[Errno %d] %s%s" % (self.errno, self.strerror,
                                    ": %s" % self.path if self.path else "")


class Conflict(Error):
    """A transaction's commit lost a race (EAGAIN): run it again."""


def _errno_of(name):
    return getattr(_errno, name, _errno.EIO)


def _default_path():
    p = os.environ.get("XENSTORED_PATH")
    if p:
        return p
    d = os.environ.get("XENSTORED_RUNDIR")
    if d:
        return os.path.join(d, "socket")
    return "/run/xenstored/socket"


def _path_arg(path):
    if isinstance(path, bytes):
        path = path.decode()
    if not path or "\0" in path:
        raise ValueError("a store path: %r" % (path,))
    return path.encode()


class _Ops:
    """The requests, with or without a transaction (tx 0)."""

    _tx = 0

    def _call(self, type_, payload, path=None):
        raise NotImplementedError

    def read(self, path):
        """The node's value (bytes)."""
        return self._call(XS_READ, _path_arg(path) + b"\0", path)

    def write(self, path, value):
        """Sets the node's value, creating it (and its parents)."""
        if isinstance(value, str):
            value = value.encode()
        self._call(XS_WRITE, _path_arg(path) + b"\0" + bytes(value), path)

    def mkdir(self, path):
        """Creates the node (empty) if it is not there."""
        self._call(XS_MKDIR, _path_arg(path) + b"\0", path)

    def rm(self, path):
        """Removes the node and everything under it."""
        self._call(XS_RM, _path_arg(path) + b"\0", path)

    def list(self, path):
        """The names of the node's children."""
        out = self._call(XS_DIRECTORY, _path_arg(path) + b"\0", path)
        return [n.decode() for n in out.split(b"\0") if n]

    def exists(self, path):
        """True if the node is there (and may be read)."""
        try:
            self.read(path)
            return True
        except Error as e:
            if e.errno == _errno.ENOENT:
                return False
            raise

    def get_perms(self, path):
        """The node's permissions, as the store gives them: ["n0", "r1"]
        (the first is the owner and everyone else's access: n none, r
        read, w write, b both)."""
        out = self._call(XS_GET_PERMS, _path_arg(path) + b"\0", path)
        return [p.decode() for p in out.split(b"\0") if p]

    def set_perms(self, path, perms):
        """Sets the node's permissions (a list such as ["n0", "r5"])."""
        for p in perms:
            if not p or p[0] not in "nrwb" or not p[1:].isdigit():
                raise ValueError("a permission: %r" % (p,))
        body = _path_arg(path) + b"\0" + b"".join(
            p.encode() + b"\0" for p in perms)
        self._call(XS_SET_PERMS, body, path)

    def __getitem__(self, path):
        return self.read(path)

    def __setitem__(self, path, value):
        self.write(path, value)

    def __delitem__(self, path):
        self.rm(path)


class Client(_Ops):
    """One connection to the store's socket (``path``; default
    $XENSTORED_PATH, else $XENSTORED_RUNDIR/socket, else
    /run/xenstored/socket)."""

    def __init__(self, path=None, timeout=30.0):
        self.path = path or _default_path()
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._sock.connect(self.path)
        except OSError:
            self._sock.close()
            raise
        self._rx = b""
        self._watches = collections.deque()
        self._req = 0

    # -- the connection --
    def close(self):
        if self._sock:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def fileno(self):
        """The socket: readable when a reply or a watch event came."""
        return self._sock.fileno()

    def _fill(self, deadline):
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("the store did not answer")
            r, _, _ = select.select([self._sock], [], [], left)
            if not r:
                continue
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("the store closed the connection")
            self._rx += chunk
            return

    def _message(self, deadline):
        """The next whole message (type, req, tx, payload)."""
        while True:
            if len(self._rx) >= _HEADER.size:
                t, req, tx, n = _HEADER.unpack_from(self._rx)
                if n > _PAYLOAD_MAX:
                    raise ConnectionError("the store sent %d bytes" % n)
                if len(self._rx) >= _HEADER.size + n:
                    body = self._rx[_HEADER.size:_HEADER.size + n]
                    self._rx = self._rx[_HEADER.size + n:]
                    return t, req, tx, body
            self._fill(deadline)

    def _call(self, type_, payload, path=None, tx=None):
        if self._sock is None:
            raise ValueError("the client is closed")
        if len(payload) > _PAYLOAD_MAX:
            raise ValueError("a request of %d bytes (the store takes %d)" %
                             (len(payload), _PAYLOAD_MAX))
        self._req = (self._req + 1) & 0xffffffff
        req = self._req
        self._sock.sendall(_HEADER.pack(type_, req,
                                        self._tx if tx is None else tx,
                                        len(payload)) + payload)
        deadline = (None if self.timeout is None
                    else time.monotonic() + self.timeout)
        while True:
            t, rreq, _, body = self._message(deadline)
            if t == XS_WATCH_EVENT:
                self._queue_watch(body)
                continue
            if rreq != req:
                continue  # not ours (cannot happen on one connection)
            if t == XS_ERROR:
                name = body.rstrip(b"\0").decode(errors="replace")
                err = _errno_of(name)
                cls = Conflict if err == _errno.EAGAIN else Error
                raise cls(err, path)
            return body

    def _queue_watch(self, body):
        parts = body.split(b"\0")
        if len(parts) >= 2:
            self._watches.append((parts[0].decode(), parts[1].decode()))

    # -- watches --
    def watch(self, path, token):
        """Watches the node and everything under it; an event
        ``(path, token)`` comes at once, then at each change."""
        self._call(XS_WATCH, _path_arg(path) + b"\0" + str(token).encode() +
                   b"\0", path)

    def unwatch(self, path, token):
        self._call(XS_UNWATCH, _path_arg(path) + b"\0" +
                   str(token).encode() + b"\0", path)

    def read_watch(self, timeout=None):
        """The next watch event ``(path, token)``; None if none came
        within ``timeout`` seconds (None: wait for one)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._watches:
            try:
                t, _, _, body = self._message(deadline)
            except TimeoutError:
                return None
            if t == XS_WATCH_EVENT:
                self._queue_watch(body)
        return self._watches.popleft()

    # -- transactions --
    def transaction(self):
        """A transaction, as a context manager: committed when the block
        ends, abandoned if it raises.  A commit that lost a race raises
        :class:`Conflict` (run the block again)."""
        return Transaction(self)

    def get_domain_path(self, domid):
        """/local/domain/DOMID, as the store says."""
        out = self._call(XS_GET_DOMAIN_PATH, str(int(domid)).encode() + b"\0")
        return out.rstrip(b"\0").decode()


class Transaction(_Ops):
    """Requests inside one store transaction (see Client.transaction)."""

    def __init__(self, client):
        self._client = client
        self._tx = 0
        self._open = False

    def _call(self, type_, payload, path=None):
        if not self._open:
            raise ValueError("the transaction is not open")
        return self._client._call(type_, payload, path, tx=self._tx)

    def __enter__(self):
        out = self._client._call(XS_TRANSACTION_START, b"\0", tx=0)
        self._tx = int(out.rstrip(b"\0"))
        self._open = True
        return self

    def end(self, commit=True):
        """Commits (or abandons) the transaction."""
        if not self._open:
            return
        self._open = False
        self._client._call(XS_TRANSACTION_END, b"T\0" if commit else b"F\0",
                           tx=self._tx)

    def __exit__(self, exc_type, exc, tb):
        self.end(commit=exc_type is None)
