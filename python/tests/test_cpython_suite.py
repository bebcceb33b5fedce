"""CPython's own connection tests (`cpython_connection_suite.py`) under each start
method, in a process of their own (they set the start method and start children)."""

import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))

try:
    from test import _test_multiprocessing  # noqa: F401
except ImportError:
    _test_multiprocessing = None


@pytest.mark.skipif(
    _test_multiprocessing is None, reason="this Python has no test package (test._test_multiprocessing)"
)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_cpython_connection_tests_pass(method):
    run_suite("cpython_connection_suite", method, at_least=20)


@pytest.mark.skipif(
    _test_multiprocessing is None, reason="this Python has no test package (test._test_multiprocessing)"
)
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_cpython_queue_tests_pass(method):
    run_suite("cpython_queue_suite", method, at_least=13)


def run_suite(name, method, at_least):
    suite = __import__(name)
    run = subprocess.run(
        [sys.executable, "-m", "unittest", "-v", name],
        cwd=HERE,
        env=dict(os.environ, SHMPIPE_START_METHOD=method),
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    ran = int(re.search(r"^Ran (\d+) tests?", run.stderr, re.M).group(1))
    skipped = run.stderr.count(" ... skipped ")
    # Every connection test CPython has for these classes ran, less the ones named.
    assert skipped == len(suite.SKIPPED), run.stderr[-4000:]
    assert ran >= at_least
