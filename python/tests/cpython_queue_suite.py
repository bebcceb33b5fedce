"""CPython's own tests of `multiprocessing.Queue`, `JoinableQueue` and `SimpleQueue`
(`_TestQueue` and `TestSimpleQueue` from `test._test_multiprocessing`), run with
shmpipe's queues in place of multiprocessing's.

Run as `python -m unittest cpython_queue_suite` from this directory, with the start
method in `SHMPIPE_START_METHOD` (fork, spawn or forkserver); `test_cpython_suite.py`
does that for pytest. Children started with spawn or forkserver import this module by
name, so the replacement is made at import time, in every process.
"""

import multiprocessing

import shmpipe
from cpython_suite import cpython, install

CLASSES = ["_TestQueue"]

# CPython's tests that cannot pass here, and why (the README's "Differences from
# multiprocessing"):
SKIPPED = {
    # shmpipe's `put` pickles in the caller (there is no feeder thread), so an object
    # that cannot be pickled raises at `put` instead of being reported by the feeder.
    ("_TestQueue", "test_queue_feeder_donot_stop_onexc"): "put pickles in the caller",
    # A test of multiprocessing.queues.Queue's own feeder hook (a subclass of it).
    ("_TestQueue", "test_queue_feeder_on_queue_feeder_error"): "multiprocessing's feeder hook",
    # Looks at CPython's SimpleQueue's private pipe ends (`_reader`, `_writer`).
    ("TestSimpleQueue", "test_closed"): "CPython's private attributes",
}

if cpython is not None:
    cpython.ProcessesMixin.Queue = staticmethod(shmpipe.Queue)
    cpython.ProcessesMixin.JoinableQueue = staticmethod(shmpipe.JoinableQueue)
    # Some tests make queues with `multiprocessing.Queue()` itself.
    multiprocessing.Queue = shmpipe.Queue
    multiprocessing.JoinableQueue = shmpipe.JoinableQueue
    multiprocessing.SimpleQueue = shmpipe.SimpleQueue
    install(globals(), CLASSES, SKIPPED)
    # A plain TestCase, not one installed per start method.
    TestSimpleQueue = cpython.TestSimpleQueue
