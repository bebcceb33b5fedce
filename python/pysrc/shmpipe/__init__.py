"""shmpipe: ``multiprocessing.Pipe`` on shared memory.

Change one import and a pipe's messages travel through a shared-memory ring instead of
a kernel socket, with the same API and the same exceptions::

    from shmpipe import Pipe          # instead of: from multiprocessing import Pipe

    a, b = Pipe()
    a.send({"spam": 1})
    assert b.recv() == {"spam": 1}

Connections are inherited by ``fork`` and can be passed to ``multiprocessing.Process``
under every start method (``fork``, ``spawn``, ``forkserver``) and sent over other
pipes; a Rust program can take one end (``popen_kwargs`` / ``Connection::from_parent``)
and a Rust parent can give one to a Python child (``Connection.from_parent``).
"""

import asyncio
import io
import os
import pickle
import sys
import threading
from multiprocessing import BufferTooShort, reduction
from multiprocessing.connection import wait as _mp_wait

if not sys.platform.startswith("linux"):
    raise ImportError(
        f"shmpipe works on Linux only (memfd_create, sealed memfds, membarrier); "
        f"this is {sys.platform}: use multiprocessing.Pipe here"
    )

from . import _shmpipe  # noqa: E402

__all__ = ["Pipe", "Connection", "AsyncConnection", "Listener", "Client", "wait", "BufferTooShort",
           "Queue", "SimpleQueue", "JoinableQueue"]

_ForkingPickler = reduction.ForkingPickler

# A message that carries out-of-band buffers (pickle protocol 5) starts with this; a
# pickle never does (it starts with the PROTO opcode, 0x80).
_OOB_MAGIC = b"SHMPIPE-PICKLE5\x00"
# Buffers smaller than this are copied into the pickle stream instead.
_OOB_MIN = 64 * 1024


class Connection:
    """One end of a pipe, with the methods of ``multiprocessing.connection.Connection``."""

    # A `__dict__` for the two bound methods below.
    __slots__ = ("_raw", "_readable", "_writable", "__weakref__", "__dict__")

    def __init__(self, raw):
        self._raw = raw
        self._readable, self._writable = raw.directions()
        # The native methods themselves, which check what the methods below check: a
        # call of a Python method costs more than sending or receiving a short message.
        # (They keep working after `close`, raising what these would.)
        if self._readable:
            self.recv_bytes = raw.recv_bytes
        if self._writable:
            self.send_bytes = raw.send_bytes_api

    # -- state --------------------------------------------------------------------
    def _check_closed(self):
        if self._raw is None:
            raise OSError("handle is closed")

    def _check_readable(self):
        if not self._readable:
            raise OSError("connection is write-only")

    def _check_writable(self):
        if not self._writable:
            raise OSError("connection is read-only")

    @property
    def closed(self):
        """True if the connection is closed"""
        return self._raw is None

    @property
    def readable(self):
        """True if the connection is readable"""
        return self._readable

    @property
    def writable(self):
        """True if the connection is writable"""
        return self._writable

    def fileno(self):
        """File descriptor that polls readable exactly when ``poll()`` is true."""
        self._check_closed()
        return self._raw.fileno()

    def close(self):
        """Close the connection"""
        if self._raw is not None:
            try:
                self._raw.close()
            finally:
                self._raw = None

    def __del__(self):
        raw = getattr(self, "_raw", None)
        if raw is not None:
            raw.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, exc_tb):
        self.close()

    def __repr__(self):
        state = "closed" if self._raw is None else "open"
        return f"<shmpipe.Connection {state} readable={self._readable} writable={self._writable}>"

    # -- bytes ----------------------------------------------------------------------
    def send_bytes(self, buf, offset=0, size=None):
        """Send the bytes data from a bytes-like object"""
        self._check_closed()
        self._check_writable()
        _send_bytes_general(self._raw, buf, offset, size)

    def recv_bytes(self, maxlength=None):
        """Receive bytes data as a bytes object."""
        self._check_closed()
        self._check_readable()
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        return self._raw.recv_bytes(maxlength)

    def recv_bytes_into(self, buf, offset=0):
        """Receive bytes data into a writeable bytes-like object.
        Return the number of bytes read."""
        self._check_closed()
        self._check_readable()
        with memoryview(buf) as m:
            if m.itemsize > 1 or m.ndim != 1 or m.format != "B":
                m = m.cast("B")
            if m.readonly:
                # CPython raises this too, after consuming the message; we do not.
                raise TypeError(
                    f"a writable bytes-like object is required, not {type(buf).__name__!r}"
                )
            bytesize = m.nbytes
            if offset < 0:
                raise ValueError("negative offset")
            elif offset > bytesize:
                raise ValueError("offset too large")
            size, whole = self._raw.recv_bytes_into(m[offset:])
            if whole is not None:
                raise BufferTooShort(whole)
            return size

    def poll(self, timeout=0.0):
        """Whether there is any input available to be read"""
        self._check_closed()
        self._check_readable()
        return self._raw.poll(timeout)

    # -- objects --------------------------------------------------------------------
    def send(self, obj):
        """Send a (picklable) object"""
        self._check_closed()
        self._check_writable()
        data, buffers = _dumps(obj)
        if not buffers:
            self._raw.send_bytes_of(data)
            return
        self._raw.send_bytes_vectored(_frame_oob(data, buffers))

    def recv(self):
        """Receive a (picklable) object"""
        self._check_closed()
        self._check_readable()
        return _loads_message(self._raw.recv_message())

    # -- other processes ----------------------------------------------------------------
    def popen_kwargs(self, key):
        """``env`` and ``pass_fds`` for ``subprocess.Popen`` (``Popen(cmd,
        **conn.popen_kwargs("KEY"))``): the child, a Rust program, takes this end with
        ``shmpipe::Connection::from_parent("KEY")`` (or Python with
        ``shmpipe.Connection.from_parent("KEY")``). Close this end here afterwards if the
        child is to be its only holder."""
        self._check_closed()
        value, fds = self._raw.handoff()
        env = dict(os.environ)
        env[key] = value
        return {"env": env, "pass_fds": fds}

    @classmethod
    def from_parent(cls, key):
        """Take up the end a parent process (Rust's ``pass_to_child``, or
        ``popen_kwargs``) passed under the environment variable ``key``."""
        return cls(_shmpipe.from_parent(key))


class AsyncConnection:
    """A ``Connection`` for asyncio: ``await conn.recv()``, ``await conn.send(obj)`` and the
    bytes methods, without a thread per connection.

    A receive takes a message that is there without waiting; otherwise it waits for the
    connection's ``fileno`` to become readable in the running event loop (``add_reader``)
    and looks again. Cancelling a receive loses nothing: a message is taken only when it
    is there whole (part of a long one taken meanwhile is kept for the next receive). A
    send that fits in the pipe goes at once; one that does not (the ring is full, or the
    message is larger than it) is handed to the loop's default executor, so that the
    event loop never blocks. EOF and a broken pipe raise ``EOFError`` and
    ``BrokenPipeError`` as the blocking methods do. One task may receive while another
    sends; the blocking methods of the same ``Connection`` stay usable too.
    """

    __slots__ = ("_conn",)

    def __init__(self, conn):
        if not isinstance(conn, Connection):
            raise TypeError(f"AsyncConnection wraps a shmpipe.Connection, not {type(conn).__name__}")
        self._conn = conn

    @property
    def connection(self):
        """The ``Connection`` this wraps."""
        return self._conn

    def _raw(self, readable):
        conn = self._conn
        conn._check_closed()
        conn._check_readable() if readable else conn._check_writable()
        return conn._raw

    async def _readable(self):
        loop = asyncio.get_running_loop()
        fd = self._conn.fileno()
        ready = loop.create_future()

        def wake():
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await ready
        finally:
            loop.remove_reader(fd)

    async def _receive(self, maxlength, for_unpickling):
        while True:
            got = self._raw(True).recv_bytes_nowait(maxlength, for_unpickling)
            if got is not None:
                return got
            await self._readable()

    async def recv_bytes(self, maxlength=None):
        """Receive bytes data as a bytes object."""
        if maxlength is not None and maxlength < 0:
            raise ValueError("negative maxlength")
        return await self._receive(maxlength, False)

    async def recv(self):
        """Receive a (picklable) object"""
        return _loads_message(await self._receive(None, True))

    async def poll(self, timeout=0.0):
        """Whether there is data to read, waiting up to ``timeout`` seconds (``None``:
        as long as it takes) without blocking the event loop."""
        if self._conn.poll(0):
            return True
        if timeout is not None and timeout <= 0:
            return False
        try:
            await asyncio.wait_for(self._poll_forever(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _poll_forever(self):
        while not self._conn.poll(0):
            await self._readable()

    async def send_bytes(self, buf, offset=0, size=None):
        """Send the bytes data from a bytes-like object"""
        raw = self._raw(False)
        await _send_async(raw, _sliced(buf, offset, size))

    async def send(self, obj):
        """Send a (picklable) object"""
        raw = self._raw(False)
        data, buffers = _dumps(obj)
        if not buffers:
            await _send_async(raw, data)
            return
        parts = _frame_oob(data, buffers)
        await asyncio.get_running_loop().run_in_executor(None, raw.send_bytes_vectored, parts)

    def close(self):
        """Close the connection"""
        self._conn.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, exc_type, exc_value, exc_tb):
        self.close()


async def _send_async(raw, data):
    """Sends `data` without blocking the event loop. A message that fits in half a ring
    waits for room in short sleeps, the connection free meanwhile (so that a task
    receiving on it goes on: the peer may be waiting for that before it reads). A longer
    one, which can never go whole at once, is sent from the loop's default executor, and
    holds the connection until it is out."""
    if raw.send_bytes_nowait(data):
        return
    capacity = raw.ring_capacity()
    if capacity is None or len(data) > capacity // 2:
        await asyncio.get_running_loop().run_in_executor(None, raw.send_bytes, data)
        return
    delay = 20e-6
    while not raw.send_bytes_nowait(data):
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.005)


class _Pickler(pickle.Pickler):
    # ForkingPickler's table (copyreg's, and every reducer registered with
    # multiprocessing.reduction.register), kept up to date in place by
    # `_refresh_table`: the C pickler looks the table up once, when it is made.
    dispatch_table = {}


_table_key = None
_local = threading.local()


def _refresh_table():
    global _table_key
    # Registering adds a type; replacing a type's reducer, which this would miss, is
    # not something multiprocessing does.
    key = (len(_ForkingPickler._copyreg_dispatch_table), len(_ForkingPickler._extra_reducers))
    if key != _table_key:
        _Pickler.dispatch_table.clear()
        _Pickler.dispatch_table.update(_ForkingPickler._copyreg_dispatch_table)
        _Pickler.dispatch_table.update(_ForkingPickler._extra_reducers)
        _table_key = key


def _dumps(obj):
    """``ForkingPickler.dumps(obj)`` at protocol 5, large buffers kept out of band:
    returns the pickle and those buffers. One pickler per thread, reused (making a
    pickler costs more than pickling a small object)."""
    _refresh_table()
    state = getattr(_local, "pickler", None)
    if state is None:
        f = io.BytesIO()
        buffers = []

        def in_band(b):
            # Pickle protocol 5: a false answer keeps the buffer out of band.
            if b.raw().nbytes < _OOB_MIN:
                return True
            buffers.append(b)
            return False

        state = _local.pickler = (f, _Pickler(f, 5, buffer_callback=in_band), buffers)
    f, p, buffers = state
    f.seek(0)
    f.truncate()
    p.clear_memo()
    buffers.clear()
    try:
        p.dump(obj)
        data = f.getvalue()
        return data, list(buffers)
    finally:
        buffers.clear()
        if f.tell() > _OOB_MIN:
            _local.pickler = None  # do not keep a large buffer for the thread's lifetime


def _loads_message(buf):
    """The object a message received for unpickling (``recv_message``) carries."""
    if type(buf) is bytes or type(buf) is bytearray:
        oob = buf.startswith(_OOB_MAGIC)
    else:
        # A long message received as it arrived: a buffer object, read as is.
        buf = memoryview(buf)
        oob = buf[: len(_OOB_MAGIC)] == _OOB_MAGIC
    if oob:
        data, buffers = _unframe_oob(buf)
        return _ForkingPickler.loads(data, buffers=buffers)
    return _ForkingPickler.loads(buf)


def _frame_oob(data, buffers):
    """One message, in pieces for a gather send: magic, counts and lengths, the pickle,
    then each buffer, each copied once, straight into the ring."""
    raws = [b.raw() for b in buffers]
    head = _OOB_MAGIC + len(raws).to_bytes(4, "little") + len(data).to_bytes(8, "little")
    head += b"".join(r.nbytes.to_bytes(8, "little") for r in raws)
    return [head, data] + raws


def _unframe_oob(buf):
    m = memoryview(buf)
    at = len(_OOB_MAGIC)
    count = int.from_bytes(m[at : at + 4], "little")
    plen = int.from_bytes(m[at + 4 : at + 12], "little")
    at += 12
    # The count is the peer's word: each length it announces takes 8 bytes of the
    # message, so a count the message cannot hold is refused before any list is built.
    if count > (len(m) - at) // 8:
        raise pickle.UnpicklingError("malformed shmpipe message")
    lens = [int.from_bytes(m[at + 8 * i : at + 8 * i + 8], "little") for i in range(count)]
    at += 8 * count
    data = m[at : at + plen]
    at += plen
    buffers = []
    for n in lens:
        buffers.append(m[at : at + n])
        at += n
    if at != len(m):
        raise pickle.UnpicklingError("malformed shmpipe message")
    return data, buffers


def _sliced(buf, offset, size):
    """The bytes ``send_bytes(buf, offset, size)`` sends, checked as ``multiprocessing``
    checks them: a byte view of ``buf[offset:offset + size]``."""
    m = memoryview(buf)
    if m.itemsize > 1 or m.ndim != 1 or m.format != "B":
        m = m.cast("B")
    n = m.nbytes
    if offset < 0:
        raise ValueError("offset is negative")
    if n < offset:
        raise ValueError("buffer length < offset")
    if size is None:
        size = n - offset
    elif size < 0:
        raise ValueError("size is negative")
    elif offset + size > n:
        raise ValueError("buffer length < offset + size")
    return m[offset : offset + size]


def _send_bytes_general(raw, buf, offset, size):
    """``send_bytes`` of anything but a whole ``bytes`` object (the native
    ``send_bytes_api`` calls this)."""
    raw.send_bytes(_sliced(buf, offset, size))


def Pipe(duplex=True):
    """Returns a pair of connection objects at either end of a pipe
    (``(reader, writer)`` when ``duplex`` is false)."""
    a, b = _shmpipe.pipe(duplex)
    return Connection(a), Connection(b)


def wait(object_list, timeout=None):
    """Wait till an object in object_list is ready/readable (shmpipe connections, other
    connections, sockets, descriptors); returns the list of those that are."""
    return _mp_wait(object_list, timeout)


# -- pickling into other processes -------------------------------------------------------
def _rebuild_connection(end, dfs):
    fds = [df.detach() for df in dfs]
    return Connection(_shmpipe.from_fds(end, *fds))


def _rebuild_socket_connection(df):
    return Connection(_shmpipe.from_socket(df.detach()))


def _reduce_connection(conn):
    conn._check_closed()
    if conn._raw.ring_capacity() is None:
        # Over a socket (CPython's protocol, from a Listener or Client): the socket goes,
        # duplicated, as CPython pickles its own connections.
        return _rebuild_socket_connection, (reduction.DupFd(conn._raw.socket_fd()),)
    end, fds = conn._raw.parts()
    return _rebuild_connection, (end, [reduction.DupFd(fd) for fd in fds])


reduction.register(Connection, _reduce_connection)


from .connection import Client, Listener  # noqa: E402  (it imports Connection from here)
from .queues import JoinableQueue, Queue, SimpleQueue  # noqa: E402
