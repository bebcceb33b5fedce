import os
import signal
import sys

import pytest

# Every test runs under a watchdog: a hang fails the test instead of the run. Waits in
# shmpipe are interruptible, so SIGALRM reaches the handler even during a blocked recv.
WATCHDOG_S = 60


@pytest.fixture(autouse=True)
def watchdog():
    def expired(signum, frame):
        raise TimeoutError(f"test still running after {WATCHDOG_S} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(WATCHDOG_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable
