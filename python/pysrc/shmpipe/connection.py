"""``multiprocessing.connection`` on shmpipe: ``Listener`` and ``Client`` connect
processes that did not start each other, by a Unix socket path or over TCP.

Between two shmpipe processes on a Unix path the connection is shared memory, like a
``Pipe()`` end; with a ``multiprocessing`` peer, or over TCP, it speaks CPython's own
wire protocol, both directions and both handshake forms. An unkeyed listener on a Unix
path cannot tell a ``multiprocessing`` client from a shmpipe one: give it an ``authkey``
(the handshake then tells them apart) or ``python_wire=True``.
"""

from multiprocessing.connection import (  # noqa: F401  (the same names as CPython's)
    AuthenticationError,
    answer_challenge,
    deliver_challenge,
)
from multiprocessing.connection import address_type, arbitrary_address

import os
import queue
import threading

from . import Connection, _shmpipe, wait

__all__ = [
    "families",
    "default_family",
    "Listener",
    "Client",
    "Connection",
    "wait",
    "answer_challenge",
    "deliver_challenge",
    "AuthenticationError",
]

#: The address families a Listener can use, as in ``multiprocessing.connection``
#: (which lists ``AF_PIPE`` too on Windows).
families = ["AF_INET", "AF_UNIX"]
#: The family of a Listener made without an address.
default_family = "AF_UNIX"
_FAMILIES = tuple(families)


def _check(address, family, authkey):
    family = family or (address and address_type(address)) or default_family
    if family not in _FAMILIES:
        raise ValueError(f"unrecognized family {family!r}: shmpipe supports {_FAMILIES}")
    if authkey is not None and not isinstance(authkey, bytes):
        raise TypeError("authkey should be a byte string")
    return family


class Listener:
    """Listens on ``address`` (a ``str`` path, ``'\\0'`` + an abstract name, or a
    ``(host, port)`` tuple; a fresh address when ``None``) and accepts connections, as
    ``multiprocessing.connection.Listener`` does. ``python_wire=True`` speaks CPython's
    protocol to every client (for unkeyed ``multiprocessing`` clients on a Unix path).

    A thread of the listener's own takes clients as they come and runs their handshakes
    (authentication, the move to shared memory), up to ``backlog`` ahead of ``accept``:
    a ``Client`` does not wait for ``accept`` to be called, so one thread can connect
    first and accept after, as with CPython's listener."""

    def __init__(self, address=None, family=None, backlog=1, authkey=None, *, python_wire=False):
        family = _check(address, family, authkey)
        address = address or arbitrary_address(family)
        self._raw = _shmpipe.listen(address, backlog, authkey, python_wire)
        self._backlog = max(1, backlog)
        self._last = None
        self._serve()

    def _serve(self):
        """Starts the thread that takes clients."""
        self._pid = os.getpid()
        self._ready = queue.Queue()
        self._closing = threading.Event()
        self._slots = threading.Semaphore(self._backlog)
        threading.Thread(
            target=_take_clients,
            args=(self._raw, self._ready, self._closing, self._slots),
            name="shmpipe-listener",
            daemon=True,
        ).start()

    def accept(self):
        """Accept a connection on the bound socket or named pipe of `self`.

        Returns a `Connection` object.
        """
        if self._raw is None:
            raise OSError("listener is closed")
        if self._pid != os.getpid():
            # Inherited through fork: the listener's thread stayed in the parent.
            raise OSError("a Listener accepts only in the process that made it")
        item = self._ready.get()
        if item is _CLOSED:
            self._ready.put(_CLOSED)  # for any other thread in accept
            raise OSError("listener is closed")
        self._slots.release()
        if isinstance(item, BaseException):
            raise item
        conn, self._last = item
        return conn

    def close(self):
        """Close the bound socket or named pipe of `self`."""
        raw, self._raw = self._raw, None
        if raw is not None:
            self._closing.set()
            raw.close()
            self._slots.release()  # a thread waiting for a free slot sees the close

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def address(self):
        return None if self._raw is None else self._raw.address()

    @property
    def last_accepted(self):
        """``(pid, uid, gid)`` of the last client on a Unix address, its ``(host,
        port)`` over TCP; ``None`` before the first."""
        return None if self._raw is None else self._last

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()


_CLOSED = object()


def _take_clients(raw, ready, closing, slots):
    """The listener's thread: takes clients while fewer than ``backlog`` wait for
    ``accept``, each as ``(Connection, last_accepted)`` or the error its handshake gave;
    ``_CLOSED`` once the listener is closed. It holds no reference to the Listener, which
    can be collected (and closed) while the thread waits."""
    try:
        while True:
            slots.acquire()
            if closing.is_set():
                return
            try:
                conn = Connection(raw.accept())
            except Exception as e:
                if closing.is_set():
                    return
                ready.put(e)
                continue
            ready.put((conn, raw.last_accepted()))
    finally:
        ready.put(_CLOSED)


def Client(address, family=None, authkey=None, *, python_wire=False):
    """Returns a connection to the address of a `Listener`"""
    _check(address, family, authkey)
    return Connection(_shmpipe.connect(address, authkey, python_wire))
