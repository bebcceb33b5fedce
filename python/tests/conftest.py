import os
import subprocess
import signal
import threading
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


@pytest.fixture
def ctrl_c():
    # Python turns SIGINT into KeyboardInterrupt only if the process did not inherit it
    # ignored, and a shell ignores it for a job it starts in the background: a test run
    # started that way would wait for a KeyboardInterrupt that never comes.
    # Yields a function that sends the process a SIGINT (Ctrl-C) in 0.2 s, from a timer
    # thread, while the test's main thread is blocked.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield lambda: threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
    signal.signal(signal.SIGINT, old)


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable


@pytest.fixture(scope="session")
def rust_examples():
    """The directory of the Rust examples the tests run (`echo_child`, `python_child`,
    `cancelling_writer`): the one `cargo test` built them in (it says where), or built
    here."""
    built = os.environ.get("SHMPIPE_EXAMPLES_DIR")
    names = ["echo_child", "python_child", "cancelling_writer", "listener_client"]
    if built and all(os.path.exists(os.path.join(built, n)) for n in names):
        return built
    examples = [arg for n in names for arg in ("--example", n)]
    subprocess.run(["cargo", "build", "--quiet", *examples], cwd=REPO, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
    return os.path.join(target, "debug", "examples")


