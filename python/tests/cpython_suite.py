"""What the two suites of CPython's own tests run with shmpipe share
(`cpython_connection_suite.py`, `cpython_queue_suite.py`): installing some classes of
`test._test_multiprocessing` for one start method, less the tests that cannot pass
here, each with its reason."""

import os
import unittest

try:
    from test import _test_multiprocessing as cpython
except ImportError:  # a Python built without its test package
    cpython = None


def install(module_globals, classes, skipped):
    """Installs the process variants of `classes` (names of CPython's mixin-based test
    classes) into `module_globals` for the start method in `SHMPIPE_START_METHOD`,
    skipping the tests of `skipped` ({(class, test): why})."""
    for (cls, test), why in skipped.items():
        owner = getattr(cpython, cls)
        setattr(owner, test, unittest.skip(why)(getattr(owner, test)))
    start_method = os.environ.get("SHMPIPE_START_METHOD", "fork")
    before = set(module_globals)
    # Every class of the suite (3.9 and 3.10 cannot install the process variants alone),
    # then all but the process variants of the ones asked for go again.
    cpython.install_tests_in_module_dict(module_globals, start_method)
    wanted = {"WithProcesses" + name[1:] for name in classes}
    for name in set(module_globals) - before - wanted:
        if isinstance(module_globals[name], type):
            del module_globals[name]
