"""Connections between processes: the three start methods, pickling into a Process,
EOF on SIGKILL, a 300 MiB message, Ctrl-C and the GIL, and pipes between Python and
Rust."""
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import shmpipe
from conftest import PYTHON, REPO


def echo(conn, other=None):
    if other is not None:
        other.close()  # under fork the child has a copy of the parent's end too
    while True:
        try:
            conn.send_bytes(conn.recv_bytes())
        except EOFError:
            return


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_a_connection_goes_to_a_process_under_every_start_method(method):
    ctx = multiprocessing.get_context(method)
    a, b = shmpipe.Pipe()
    p = ctx.Process(target=echo, args=(b, a))
    p.start()
    b.close()  # the child holds the only other copy now
    for n in [0, 1, 1000, 5_000_000]:
        a.send_bytes(bytes(n))
        assert a.recv_bytes() == bytes(n)
    a.close()  # the child sees EOF and exits
    p.join(30)
    assert p.exitcode == 0


def test_eof_when_the_peer_process_is_killed():
    a, b = shmpipe.Pipe()
    pid = os.fork()
    if pid == 0:
        a.close()
        b.send("alive")
        time.sleep(3600)
        os._exit(0)
    b.close()
    assert a.recv() == "alive"
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    with pytest.raises(EOFError):
        a.recv()


def sum_big(conn):
    m = conn.recv_bytes()
    conn.send((len(m), m[:3], m[-3:]))


def test_a_300_mib_message():
    a, b = shmpipe.Pipe()
    p = multiprocessing.get_context("fork").Process(target=sum_big, args=(b,))
    p.start()
    big = b"abc" + bytes(300 << 20) + b"xyz"
    a.send_bytes(big)
    assert a.recv() == (len(big), b"abc", b"xyz")
    p.join(30)


def test_ctrl_c_interrupts_a_blocked_recv(ctrl_c):
    a, b = shmpipe.Pipe()
    ctrl_c()
    with pytest.raises(KeyboardInterrupt):
        b.recv()
    # Nothing was lost: the pipe still works.
    a.send("after")
    assert b.recv() == "after"


def test_ctrl_c_that_lands_on_another_thread_still_interrupts_a_blocked_recv(ctrl_c):
    # The kernel may run a process's signal handler on any thread, and a signal can land
    # between two of the receive's sleeps: either way no system call of the receiving
    # thread is interrupted. Python's handler still marks the signal for the main
    # thread, and the receive must notice (it used to sleep on until a message came).
    a, b = shmpipe.Pipe()
    done = threading.Event()
    bystander = threading.Thread(target=done.wait, args=(30,))
    bystander.start()
    timer = threading.Timer(0.2, signal.pthread_kill, (bystander.ident, signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            b.recv()
    finally:
        done.set()
        bystander.join()
    a.send("after")
    assert b.recv() == "after"


def test_a_handler_that_does_not_raise_lets_recv_go_on():
    a, b = shmpipe.Pipe()
    seen = []
    old = signal.signal(signal.SIGUSR1, lambda *_: seen.append(1))
    try:
        def later():
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.1)
            a.send("delivered")

        threading.Thread(target=later).start()
        assert b.recv() == "delivered"  # PEP 475: retried after the handler
        assert seen == [1]
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_other_threads_run_while_one_blocks():
    a, b = shmpipe.Pipe()
    progress = []

    def worker():
        # Pure Python work: it needs the GIL, which the blocked recv must have let go.
        for i in range(100_000):
            progress.append(i)
        a.send(len(progress))

    threading.Thread(target=worker).start()
    assert b.recv() == 100_000


def test_python_parent_rust_child(rust_examples):
    a, b = shmpipe.Pipe()
    child = subprocess.Popen([os.path.join(rust_examples, "echo_child")], **b.popen_kwargs("SHMPIPE_CONN"))
    b.close()
    for m in [b"", b"from python", bytes(10_000_000)]:
        a.send_bytes(m)
        assert a.recv_bytes() == m
    a.close()
    assert child.wait(30) == 0


def test_rust_parent_python_child(rust_examples):
    out = subprocess.run([os.path.join(rust_examples, "python_child"), PYTHON],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "rust got: b\"FROM RUST\"" in out.stdout


SEEDS = os.path.join(os.path.dirname(__file__), "seeds")


def with_shmpipe(source):
    """The seed program with only its import of Pipe changed."""
    if "from multiprocessing import Pipe, Process" in source:
        return source.replace("from multiprocessing import Pipe, Process",
                              "from shmpipe import Pipe\nfrom multiprocessing import Process")
    if "from multiprocessing import Pipe\n" in source:
        return source.replace("from multiprocessing import Pipe\n", "from shmpipe import Pipe\n")
    return source.replace("import multiprocessing\n", "import multiprocessing\nfrom shmpipe import Pipe\n") \
        .replace("multiprocessing.Pipe(", "Pipe(")


def run(source, seconds):
    """Runs a program; returns what it printed by its end, or by `seconds` if it runs on
    (some seeds never end: they say so themselves)."""
    # A fixed hash seed: one seed prints a set, whose order would differ run to run.
    # Unbuffered output, as on a terminal: a program that never ends is killed, and what
    # its processes printed must not die in their buffers.
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONUNBUFFERED="1")
    p = subprocess.Popen([PYTHON, "-c", source], stdout=subprocess.PIPE, text=True,
                         start_new_session=True, env=env)
    try:
        out, _ = p.communicate(timeout=seconds)
        return out, True
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        return out, False


@pytest.mark.parametrize("seed", sorted(f for f in os.listdir(SEEDS) if f.endswith(".py")))
def test_every_seed_program_prints_what_it_prints_with_multiprocessing(seed):
    source = open(os.path.join(SEEDS, seed)).read()
    changed = with_shmpipe(source)
    assert changed != source and "shmpipe" in changed
    expected, ended = run(source, 4)
    got, got_ended = run(changed, 4)
    assert got_ended == ended
    if ended:
        assert got == expected
    else:
        # A program that runs on (and prints with a clock): the same first lines.
        lines = min(len(expected.splitlines()), len(got.splitlines()), 4)
        assert lines >= 1
        assert got.splitlines()[:lines] == expected.splitlines()[:lines]


def test_one_thread_receives_while_another_sends_on_the_same_connection():
    a, b = shmpipe.Pipe()
    got = []
    reader = threading.Thread(target=lambda: got.append(a.recv()))
    reader.start()
    # Wait until the reader is inside recv (its innermost Python frame), where it blocks.
    while (f := sys._current_frames().get(reader.ident)) is None or f.f_code.co_name != "recv":
        time.sleep(0.001)
    a.send("sent while the other thread waits")  # on the same connection
    assert b.recv() == "sent while the other thread waits"
    b.send("answer")
    reader.join(10)
    assert got == ["answer"]
