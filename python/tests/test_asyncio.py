"""AsyncConnection: asyncio receives and sends against a peer process, cancellation that
loses nothing, EOF, and one task receiving while another sends."""
import asyncio
import multiprocessing

import pytest

import shmpipe
from shmpipe import AsyncConnection


@pytest.fixture(autouse=True, params=["asyncio", "uvloop"])
def event_loop_kind(request):
    """Every test on asyncio's own loop and on uvloop's (python/test-wheel.sh installs
    uvloop; without it those runs are skipped)."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    yield request.param
    asyncio.set_event_loop_policy(None)


def echo_objects(conn, other):
    other.close()
    while True:
        try:
            conn.send(conn.recv())
        except EOFError:
            return


def spawn_echo(b, a):
    p = multiprocessing.get_context("fork").Process(target=echo_objects, args=(b, a))
    p.start()
    b.close()
    return p


def test_objects_and_bytes_round_trip_with_a_process():
    a, b = shmpipe.Pipe()
    p = spawn_echo(b, a)

    async def main():
        conn = AsyncConnection(a)
        for i in range(200):
            await conn.send({"i": i, "pad": b"x" * (i * 50)})
            assert await conn.recv() == {"i": i, "pad": b"x" * (i * 50)}
        # A message larger than the ring goes through the executor, whole.
        big = bytes(range(256)) * (20 << 12)
        await conn.send(big)
        assert await conn.recv() == big

    asyncio.run(main())
    a.close()
    p.join(30)
    assert p.exitcode == 0


def test_a_cancelled_receive_loses_nothing_and_eof_arrives():
    a, b = shmpipe.Pipe()

    async def main():
        conn = AsyncConnection(a)
        waiting = asyncio.ensure_future(conn.recv_bytes())
        await asyncio.sleep(0)  # let it start waiting: nothing is there yet
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        b.send_bytes(b"after the cancel")
        assert await conn.recv_bytes() == b"after the cancel"
        assert not await conn.poll(0)
        b.send_bytes(b"last")
        b.close()
        assert await conn.poll(None)
        assert await conn.recv_bytes() == b"last"
        with pytest.raises(EOFError):
            await conn.recv_bytes()

    asyncio.run(main())


def test_one_task_receives_while_another_sends_through_a_full_ring():
    a, b = shmpipe.Pipe()
    p = spawn_echo(b, a)
    n = 3000

    # Messages of 16 KB against the default 4 MiB ring and a peer that answers each:
    # both directions fill while the two tasks run.
    async def main_objects():
        conn = AsyncConnection(a)

        async def sender():
            for i in range(n):
                await conn.send(i.to_bytes(4, "little") * 4000)

        async def receiver():
            for i in range(n):
                assert await conn.recv() == i.to_bytes(4, "little") * 4000

        await asyncio.gather(sender(), receiver())

    asyncio.run(main_objects())
    a.close()
    p.join(30)
    assert p.exitcode == 0


def test_misuse_raises_what_the_blocking_methods_raise():
    r, w = shmpipe.Pipe(duplex=False)

    async def main():
        with pytest.raises(OSError, match="connection is read-only"):
            await AsyncConnection(r).send_bytes(b"x")
        with pytest.raises(OSError, match="connection is write-only"):
            await AsyncConnection(w).recv_bytes()
        with pytest.raises(ValueError, match="negative maxlength"):
            await AsyncConnection(r).recv_bytes(-1)
        conn = AsyncConnection(r)
        conn.close()
        with pytest.raises(OSError, match="handle is closed"):
            await conn.recv_bytes()
        with pytest.raises(TypeError):
            AsyncConnection(object())  # type: ignore[arg-type]

    asyncio.run(main())
