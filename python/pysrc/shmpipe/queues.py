"""``multiprocessing.Queue``, ``SimpleQueue`` and ``JoinableQueue`` on shared memory.

Drop-ins for ``multiprocessing``'s: the same methods, the same exceptions
(``queue.Empty``, ``queue.Full``, ``ValueError`` after ``close``), passed to
``multiprocessing.Process`` under every start method. Any number of processes put and
get; a process killed at any point (even while it puts or gets) does not block the
others: the message it was putting is lost, the one it was getting stays for another
getter (unless longer than half the queue's capacity: such a message goes in fragments
and is lost with its getter).

Where they differ on purpose from ``multiprocessing``'s:

* ``put`` pickles in the caller and writes the message into the queue itself: there is
  no feeder thread, so an object that cannot be pickled raises at ``put``, a message is
  in the queue (visible to ``get`` in any process) when ``put`` returns, and
  ``join_thread`` / ``cancel_join_thread`` have nothing to wait for.
* A message longer than half the queue's capacity (4 MiB by default, ``capacity=``)
  goes in fragments while a getter takes them: ``put``'s timeout can take it back
  (``queue.Full``, nothing put), and a ``get`` that has begun one reads it to its end.
* ``qsize`` works on every platform this package runs on (Linux).
"""

import io
import pickle
import queue as _queue
import threading
import types
from multiprocessing import context, reduction

from . import _Pickler, _refresh_table, _shmpipe

__all__ = ["Queue", "SimpleQueue", "JoinableQueue"]


#: Bytes of messages a queue holds unless told otherwise.
DEFAULT_CAPACITY = 4 << 20


class Queue:
    """A queue shared by processes, as ``multiprocessing.Queue(maxsize)``."""

    def __init__(self, maxsize=0, *, ctx=None, capacity=DEFAULT_CAPACITY):
        self._maxsize = maxsize
        self._bind(_shmpipe.queue(capacity, maxsize if maxsize > 0 else None))

    def _bind(self, raw):
        self._raw = raw
        # The native methods themselves, which pickle, put, get and unpickle as the
        # methods below do: a call of a Python method costs more than a put of a short
        # message. (After `close` they raise ValueError("queue is closed").)
        self.put = raw.put_obj
        self.get = raw.get_obj

    def put(self, obj, block=True, timeout=None):
        self._raw.put_obj(obj, block, timeout)

    def get(self, block=True, timeout=None):
        return self._raw.get_obj(block, timeout)

    def qsize(self):
        return self._raw.qsize()

    def empty(self):
        return self._raw.qsize() == 0

    def full(self):
        return self._raw.full()

    def get_nowait(self):
        return self.get(False)

    def put_nowait(self, obj):
        return self.put(obj, False)

    def close(self):
        self._raw.close()

    def join_thread(self):
        # As multiprocessing's: only after `close`. There is no feeder thread to wait for.
        assert self._raw.closed(), f"Queue {self!r} not closed"

    def cancel_join_thread(self):
        pass

    __class_getitem__ = classmethod(types.GenericAlias)

    def __reduce__(self):
        # As multiprocessing's queues: only to a process being started (its arguments),
        # where the descriptors are duplicated for the child.
        context.assert_spawning(self)
        ring, control = self._raw.fds()
        return _rebuild, (type(self), self._maxsize,
                          reduction.DupFd(ring), reduction.DupFd(control))


class JoinableQueue(Queue):
    """A ``Queue`` whose getters say when each message is dealt with
    (``task_done``), so that ``join`` can wait for all of them."""

    def task_done(self):
        self._raw.task_done()

    def join(self):
        self._raw.join()


class SimpleQueue:
    """As ``multiprocessing.SimpleQueue``: ``put``, ``get``, ``empty``, ``close``."""

    def __init__(self, *, ctx=None, capacity=DEFAULT_CAPACITY):
        self._raw = _shmpipe.queue(capacity, None)

    def put(self, obj):
        try:
            self._raw.put_obj(obj)
        except ValueError:
            self._closed_error()
            raise

    def get(self):
        try:
            return self._raw.get_obj()
        except ValueError:
            self._closed_error()
            raise

    def _closed_error(self):
        # multiprocessing's SimpleQueue, closed, raises what its closed pipe ends raise.
        if self._raw.closed():
            raise OSError("handle is closed") from None

    def empty(self):
        return self._raw.qsize() == 0

    def close(self):
        self._raw.close()

    __class_getitem__ = classmethod(types.GenericAlias)

    def __reduce__(self):
        context.assert_spawning(self)
        ring, control = self._raw.fds()
        return _rebuild, (type(self), 0, reduction.DupFd(ring), reduction.DupFd(control))


_local = threading.local()
# Types whose pickle no reducer of multiprocessing's touches: `pickle.dumps` makes the
# same bytes `ForkingPickler.dumps` would, faster.
_PLAIN = frozenset({bytes, str, int, float, bool, type(None)})


def _pickle(obj):
    """``ForkingPickler.dumps(obj)``, with a pickler per thread, reused (making one
    costs more than pickling a small object); plain scalars through ``pickle.dumps``."""
    if type(obj) in _PLAIN:
        return pickle.dumps(obj, 5)
    _refresh_table()
    state = getattr(_local, "pickler", None)
    if state is None:
        f = io.BytesIO()
        state = _local.pickler = (f, _Pickler(f, 5))
    f, p = state
    f.seek(0)
    f.truncate()
    p.clear_memo()
    p.dump(obj)
    data = f.getvalue()
    if len(data) > 64 * 1024:
        _local.pickler = None  # do not keep a large buffer for the thread's lifetime
    return data


def _rebuild(cls, maxsize, ring, control):
    q = cls.__new__(cls)
    raw = _shmpipe.queue_from_fds(ring.detach(), control.detach())
    if cls is SimpleQueue:
        q._raw = raw
    else:
        q._bind(raw)
    if maxsize is not None and cls is not SimpleQueue:
        q._maxsize = maxsize
    return q
