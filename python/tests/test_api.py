"""Every method and exception of multiprocessing.connection.Connection, on shmpipe."""
import array
import multiprocessing
import pickle
import select
import socket
import threading
from multiprocessing import BufferTooShort

import pytest

import shmpipe
from shmpipe import Pipe


def test_objects_and_bytes_round_trip():
    a, b = Pipe()
    for obj in [None, 0, "123456", ["spam", 42, "eggs"], {"name": "bob"}, b"", (1, 2.5)]:
        a.send(obj)
        assert b.recv() == obj
    b.send_bytes(b"")
    assert a.recv_bytes() == b""
    # Longer than the ring: it streams through while the other end reads.
    t = threading.Thread(target=b.send_bytes, args=(b"x" * 10_000_000,))
    t.start()
    assert a.recv_bytes() == b"x" * 10_000_000
    t.join()


def test_send_bytes_offset_and_size_as_cpython():
    a, b = Pipe()
    a.send_bytes(b"hello world", 6)
    assert b.recv_bytes() == b"world"
    a.send_bytes(b"hello world", 0, 5)
    assert b.recv_bytes() == b"hello"
    a.send_bytes(array.array("i", [1, 2, 3]), 4, 4)  # offsets in bytes
    assert b.recv_bytes() == array.array("i", [2]).tobytes()
    a.send_bytes(memoryview(b"abc"))
    assert b.recv_bytes() == b"abc"
    for args, text in [((-1,), "offset is negative"), ((12,), "buffer length < offset"),
                       ((0, -1), "size is negative"), ((6, 6), "buffer length < offset \\+ size")]:
        with pytest.raises(ValueError, match=text):
            a.send_bytes(b"hello world", *args)
    assert not b.poll()  # nothing was sent


def test_recv_bytes_maxlength():
    a, b = Pipe()
    with pytest.raises(ValueError, match="negative maxlength"):
        b.recv_bytes(-1)
    a.send_bytes(b"too long")
    with pytest.raises(OSError, match="bad message length"):
        b.recv_bytes(3)
    # Unlike CPython (which then disables the connection), the message stays for a
    # receive with a larger limit.
    assert b.recv_bytes(8) == b"too long"


def test_recv_bytes_into_any_writable_buffer():
    a, b = Pipe()
    buf = bytearray(10)
    a.send_bytes(b"abc")
    assert b.recv_bytes_into(buf, 2) == 3
    assert buf == b"\0\0abc\0\0\0\0\0"
    arr = array.array("i", [0, 0, 0])
    a.send_bytes(array.array("i", [7, 8]))
    assert b.recv_bytes_into(arr, 4) == 8
    assert arr.tolist() == [0, 7, 8]
    m = memoryview(bytearray(4))
    a.send_bytes(b"spam")
    assert b.recv_bytes_into(m) == 4 and m.tobytes() == b"spam"
    a.send_bytes(b"spam and eggs")
    with pytest.raises(BufferTooShort) as e:
        b.recv_bytes_into(bytearray(4))
    assert e.value.args[0] == b"spam and eggs"  # consumed, and handed over
    assert type(e.value) is multiprocessing.BufferTooShort
    with pytest.raises(ValueError, match="negative offset"):
        b.recv_bytes_into(buf, -1)
    with pytest.raises(ValueError, match="offset too large"):
        b.recv_bytes_into(buf, 11)
    with pytest.raises(TypeError):
        b.recv_bytes_into(b"read-only")
    a.send_bytes(b"")
    assert b.recv_bytes_into(bytearray(0)) == 0


def test_poll_timeouts():
    a, b = Pipe()
    assert b.poll() is False
    assert b.poll(0.01) is False
    assert b.poll(-1) is False  # negative: do not wait
    a.send(1)
    assert b.poll(None) is True
    assert b.poll() is True  # still there
    b.recv()
    a.close()
    assert b.poll() is True  # EOF is readable


def test_eof_and_broken_pipe():
    a, b = Pipe()
    a.send("last")
    a.close()
    assert b.recv() == "last"
    with pytest.raises(EOFError):
        b.recv()
    with pytest.raises(EOFError):
        b.recv_bytes()
    c, d = Pipe()
    d.close()
    with pytest.raises(BrokenPipeError):
        for _ in range(10_000):
            c.send_bytes(b"x" * 4096)


def test_closed_and_directions():
    reader, writer = Pipe(duplex=False)
    assert (reader.readable, reader.writable, writer.readable, writer.writable) == (True, False, False, True)
    with pytest.raises(OSError, match="connection is read-only"):
        reader.send(1)
    with pytest.raises(OSError, match="connection is write-only"):
        writer.recv()
    with pytest.raises(OSError, match="connection is write-only"):
        writer.poll()
    writer.send(1)
    assert reader.recv() == 1
    with writer:
        pass
    assert writer.closed
    writer.close()  # idempotent
    for call in [lambda: writer.send(1), lambda: writer.send_bytes(b""), writer.fileno,
                 lambda: writer.recv(), writer.poll]:
        with pytest.raises(OSError, match="handle is closed"):
            call()


def test_bytes_methods_taken_before_close_check_as_the_class_methods_do():
    # send_bytes and recv_bytes are the native methods themselves, bound to the object
    # (a Python frame per call cost more than a short message): they must check what
    # multiprocessing checks, in the same order, also when taken before `close`.
    a, b = Pipe()
    send, recv = a.send_bytes, b.recv_bytes
    with pytest.raises(ValueError, match="negative maxlength"):
        recv(-1)
    send(b"hello world", 6)
    assert recv() == b"world"
    send(bytearray(b"abc"), 1, 1)
    assert recv(10) == b"b"
    reader, writer = Pipe(duplex=False)
    with pytest.raises(OSError, match="connection is read-only"):
        reader.send_bytes(b"x")
    with pytest.raises(OSError, match="connection is write-only"):
        writer.recv_bytes()
    a.close()
    b.close()
    for call in [lambda: send(b"x"), lambda: send(b"x", 1), recv, lambda: recv(-1),
                 lambda: a.send_bytes(b"x"), lambda: b.recv_bytes()]:
        with pytest.raises(OSError, match="handle is closed"):
            call()


def test_fileno_and_wait_with_other_waitables():
    a, b = Pipe()
    mp_a, mp_b = multiprocessing.Pipe()
    s1, s2 = socket.socketpair()
    assert select.select([b.fileno()], [], [], 0)[0] == []
    assert shmpipe.wait([b, mp_b, s2], 0.01) == []
    a.send(1)
    assert select.select([b.fileno()], [], [], 0)[0] == [b.fileno()]
    assert shmpipe.wait([b, mp_b, s2], None) == [b]
    mp_a.send(2)
    s1.send(b"3")
    assert set(map(id, shmpipe.wait([b, mp_b, s2], 1))) == {id(b), id(mp_b), id(s2)}
    b.recv()
    assert select.select([b.fileno()], [], [], 0)[0] == []


def test_pickle5_buffers_travel_out_of_band():
    a, b = Pipe()
    big = bytearray(range(256)) * 4096  # 1 MiB
    a.send(pickle.PickleBuffer(big))
    got = b.recv()
    assert bytes(got) == bytes(big)
    # A view of the received message, which is writable (NumPy arrays sent this way
    # arrive writable, as they do through multiprocessing's in-band copy).
    assert not memoryview(got).readonly
    a.send({"payload": big, "small": b"x"})
    got = b.recv()
    assert got["payload"] == big and got["small"] == b"x"
    # A message with buffers is still a message: recv_bytes sees shmpipe's framing.
    a.send(pickle.PickleBuffer(big))
    assert b.recv_bytes().startswith(b"SHMPIPE-PICKLE5")


def test_a_connection_sent_over_a_pipe_works():
    a, b = Pipe()
    c, d = Pipe()
    a.send(c)  # the end goes over another pipe (descriptors duplicated)
    c2 = b.recv()
    c2.send("through the copy")
    assert d.recv() == "through the copy"
    mp_a, mp_b = multiprocessing.Pipe()
    mp_a.send(d)  # and over multiprocessing's own
    d2 = mp_b.recv()
    c.send("to the other copy")
    assert d2.recv() == "to the other copy"


def test_numpy_arrays():
    np = pytest.importorskip("numpy")  # installed by python/test-wheel.sh
    a, b = Pipe()
    arr = np.arange(1 << 20, dtype=np.float64)  # 8 MiB: out of band
    t = threading.Thread(target=a.send, args=(arr,))
    t.start()
    got = b.recv()
    t.join()
    assert np.array_equal(got, arr) and got.dtype == arr.dtype
    got[0] = 42.0  # writable, as after multiprocessing's in-band copy
    # send_bytes and recv_bytes_into on arrays of any item size, with byte offsets.
    a.send_bytes(np.array([1, 2, 3, 4], dtype=np.int32), 4, 8)
    dst = np.zeros(4, dtype=np.int32)
    assert b.recv_bytes_into(dst, 4) == 8
    assert dst.tolist() == [0, 2, 3, 0]


def _voluntary_switches(tid):
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


def test_a_blocked_recv_sleeps_like_a_rust_one():
    # A receive with nothing to receive sleeps until the peer rings, waking only for the
    # library's backstop (a few times a second), as a Rust recv does; it used to wake
    # every 10 ms to let other threads at the connection.
    import threading
    import time

    a, b = shmpipe.Pipe()
    tids = []
    started = threading.Event()

    def receive():
        tids.append(threading.get_native_id())
        started.set()
        assert a.recv_bytes() == b"wake up"

    t = threading.Thread(target=receive)
    t.start()
    started.wait()
    time.sleep(0.2)  # into its sleep
    before = _voluntary_switches(tids[0])
    time.sleep(1.0)  # the window counted: 100 wake-ups at the old 10 ms steps
    woken = _voluntary_switches(tids[0]) - before
    b.send_bytes(b"wake up")
    t.join()
    assert woken < 40, woken


def test_a_waiting_receive_lets_another_thread_use_its_connection():
    # Sends and polls on the connection a receive is waiting on, from another thread:
    # each ends the wait's hold on the connection, and the receive goes on waiting.
    import threading

    a, b = shmpipe.Pipe()
    got = []
    t = threading.Thread(target=lambda: got.append(a.recv_bytes()))
    t.start()
    for i in range(300):
        a.send_bytes(b"%d" % i)
        assert not a.poll(0) or got
    assert [b.recv_bytes() for _ in range(300)] == [b"%d" % i for i in range(300)]
    b.send_bytes(b"done")
    t.join()
    assert got == [b"done"]
