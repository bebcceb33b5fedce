"""The public API as a typed program uses it: `mypy --strict` checks this file (see
python/test-wheel.sh), and pytest runs it, so the stub and the code cannot drift apart
unnoticed."""

import asyncio
import socket
from multiprocessing import BufferTooShort

import shmpipe
from shmpipe import AsyncConnection, Connection, Pipe, wait


def exchange(a: Connection, b: Connection) -> list[bytes]:
    got: list[bytes] = []
    a.send_bytes(b"bytes")
    a.send_bytes(bytearray(b"a bytearray"), 2, 5)
    a.send_bytes(memoryview(b"a view"))
    for _ in range(3):
        got.append(b.recv_bytes())
    a.send({"any": "object"})
    obj = b.recv()
    assert obj == {"any": "object"}
    buf = bytearray(4)
    a.send_bytes(b"four")
    n: int = b.recv_bytes_into(buf)
    assert n == 4
    a.send_bytes(b"too long for four")
    try:
        b.recv_bytes_into(buf)
    except BufferTooShort as e:
        got.append(e.args[0])
    return got


def test_typed_usage() -> None:
    a, b = Pipe()
    with a, b:
        assert exchange(a, b) == [b"bytes", b"bytea", b"a view", b"too long for four"]
        ready: bool = b.poll(0.0)
        assert not ready
        fd: int = b.fileno()
        assert fd >= 0
        left, right = socket.socketpair()
        with left, right:
            a.send_bytes(b"x")
            right.send(b"y")
            assert wait([b, left], timeout=1.0) == [b, left]
        assert b.readable and b.writable and not b.closed
    assert a.closed
    r, w = shmpipe.Pipe(duplex=False)
    kwargs = r.popen_kwargs("SHMPIPE_TYPED")
    assert "pass_fds" in kwargs
    r.close()
    w.close()


async def ask(conn: AsyncConnection, question: bytes) -> bytes:
    await conn.send_bytes(question)
    answer: bytes = await conn.recv_bytes()
    return answer


def test_typed_async_usage() -> None:
    a, b = Pipe()

    async def main() -> bytes:
        async with AsyncConnection(a) as mine:
            b.send_bytes(b"pong")
            got = await ask(mine, b"ping")
            assert b.recv_bytes() == b"ping"
            ready: bool = await mine.poll(0)
            assert not ready
            return got

    assert asyncio.run(main()) == b"pong"
    b.close()


def test_typed_queue_usage() -> None:
    q: shmpipe.Queue[tuple[int, str]] = shmpipe.Queue(maxsize=10)
    q.put((1, "one"))
    item: tuple[int, str] = q.get(timeout=5.0)
    assert item == (1, "one")
    assert q.qsize() == 0 and q.empty() and not q.full()
    jq: shmpipe.JoinableQueue[int] = shmpipe.JoinableQueue()
    jq.put_nowait(3)
    assert jq.get_nowait() == 3
    jq.task_done()
    jq.join()
    sq: shmpipe.SimpleQueue[str] = shmpipe.SimpleQueue()
    sq.put("x")
    assert sq.get() == "x"
    for closing in (q, jq):
        closing.close()
        closing.join_thread()
    sq.close()
