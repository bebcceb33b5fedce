"""CPython's own tests of `multiprocessing.connection` (`Pipe`, `Listener`, `Client`,
`wait`, connections passed between processes), from the standard library's
`test._test_multiprocessing`, run with shmpipe's `Pipe` and `shmpipe.connection` in
place of multiprocessing's.

Run as `python -m unittest cpython_connection_suite` from this directory, with the start
method in `SHMPIPE_START_METHOD` (fork, spawn or forkserver); `test_cpython_suite.py`
does that for pytest. Children started with spawn or forkserver import this module by
name, so the replacement is made at import time, in every process.
"""

import shmpipe
import shmpipe.connection
from cpython_suite import cpython, install

# The classes that test connections; the rest of the suite tests queues, pools, locks...
CLASSES = [
    "_TestConnection",
    "_TestPoll",
    "_TestListener",
    "_TestListenerClient",
    "_TestPicklingConnections",
]

# CPython's tests that cannot pass here, and why (README, "Differences from
# multiprocessing"):
SKIPPED = {
    # `multiprocessing.reduction.send_handle` passes a descriptor with SCM_RIGHTS over
    # the connection's `fileno()`, which must then be a Unix socket; a shared-memory
    # end's `fileno()` is an epoll descriptor that only signals readiness.
    ("_TestConnection", "test_fd_transfer"): "descriptor passing over fileno()",
    ("_TestConnection", "test_large_fd_transfer"): "descriptor passing over fileno()",
    ("_TestConnection", "test_missing_fd_transfer"): "descriptor passing over fileno()",
}

if cpython is not None:
    cpython.ProcessesMixin.connection = shmpipe.connection
    cpython.ProcessesMixin.Pipe = staticmethod(shmpipe.Pipe)
    install(globals(), CLASSES, SKIPPED)
