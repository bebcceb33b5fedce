"""What a peer can and cannot do to a Python process through a shmpipe connection
(issue 22): no allocation sized by its word, no blocking receive failing on an honest
fragmented message, no thread holding the GIL while it waits for a connection's lock,
no list sized by a count it wrote."""
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import pytest

import shmpipe
from shmpipe import _shmpipe



def small_ring_pipe(capacity=4096):
    a, b = _shmpipe.pipe(True, capacity)
    return shmpipe.Connection(a), shmpipe.Connection(b)


def test_blocking_receives_wait_for_a_fragmented_message():
    # 20 KB messages through a 4 KiB ring arrive in fragments: a blocking receive that
    # finds only part of one waits for the rest (it used to raise "would block").
    a, b = small_ring_pipe()
    msgs = [bytes([i % 251]) * 20_000 for i in range(300)]

    def send():
        for m in msgs:
            b.send_bytes(m)
        for m in msgs[:50]:
            b.send(m)

    t = threading.Thread(target=send)
    t.start()
    for m in msgs:
        assert a.recv_bytes() == m
    for m in msgs[:50]:
        assert a.recv() == m
    t.join()


def test_an_announced_length_is_not_allocated(rust_examples):
    # A writer announcing 1 GiB a thousand times and sending none of it: the receive
    # skips the cancelled messages and returns the real one, and the process never held
    # more than a few MiB beyond what it started with (it used to allocate and
    # prefault the announced GiB). In a fresh interpreter, so that the peak is this
    # test's alone.
    script = textwrap.dedent(
        f"""
        import resource, subprocess, shmpipe
        a, b = shmpipe.Pipe()
        p = subprocess.Popen([{os.path.join(rust_examples, "cancelling_writer")!r}, "1000"],
                             **b.popen_kwargs("SHMPIPE_CONN"))
        b.close()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert a.recv_bytes() == b"end"
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        a.close()
        assert p.wait() == 0
        print(grew)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    grew_kib = int(out.stdout.strip())
    assert grew_kib < 64 * 1024, f"peak memory grew by {grew_kib} KiB"


def test_fileno_does_not_hold_the_gil_while_a_send_holds_the_connection():
    # A send blocked on a full ring holds the connection; `fileno` from another thread
    # waits for it without the GIL, so this thread can read and let the send finish.
    # (It used to wait holding the GIL: nothing could read, and everything froze.)
    a, b = shmpipe.Pipe()
    big = b"x" * (16 << 20)  # four default rings
    sender = threading.Thread(target=a.send_bytes, args=(big,))
    sender.start()
    assert b.poll(30)  # the send has started, and will fill the ring
    got = []
    asker = threading.Thread(target=lambda: got.append(a.fileno()))
    asker.start()
    assert b.recv_bytes() == big
    sender.join()
    asker.join()
    assert got and got[0] >= 0
    assert a.fileno() == got[0]
    a.close()
    with pytest.raises(OSError):
        a.fileno()


def test_a_forged_buffer_count_is_refused_before_anything_is_built():
    a, b = shmpipe.Pipe()
    # The out-of-band framing with a count of 2**32 - 1 buffers and no lengths.
    forged = shmpipe._OOB_MAGIC + (2**32 - 1).to_bytes(4, "little") + (0).to_bytes(8, "little")
    a.send_bytes(forged)
    with pytest.raises(pickle.UnpicklingError):
        b.recv()
