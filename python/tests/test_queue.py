"""shmpipe.Queue, JoinableQueue and SimpleQueue between processes: every start method,
many producers and consumers, a consumer killed with SIGKILL, Ctrl-C in a blocked get,
and where they differ from multiprocessing's on purpose."""
import multiprocessing
import os
import pickle
import queue
import signal
import threading

import pytest

import shmpipe


def produce(q, who, n):
    for seq in range(n):
        q.put((who, seq))


def consume(q, out):
    got = []
    while True:
        item = q.get()
        if item is None:
            break
        got.append(item)
    out.put(got)


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_every_item_of_many_producers_reaches_one_of_many_consumers_in_order(method):
    ctx = multiprocessing.get_context(method)
    q, out = shmpipe.Queue(maxsize=50), shmpipe.Queue()
    producers = [ctx.Process(target=produce, args=(q, who, 2000)) for who in range(3)]
    consumers = [ctx.Process(target=consume, args=(q, out)) for _ in range(2)]
    for p in producers + consumers:
        p.start()
    for p in producers:
        p.join(60)
    for _ in consumers:
        q.put(None)
    seen = set()
    for _ in consumers:
        got = out.get(timeout=60)
        last = {}
        for who, seq in got:
            assert seq > last.get(who, -1), "a producer's items out of order"
            last[who] = seq
            assert (who, seq) not in seen, "an item delivered twice"
            seen.add((who, seq))
    for p in consumers:
        p.join(60)
    assert seen == {(who, seq) for who in range(3) for seq in range(2000)}
    assert q.empty() and q.qsize() == 0
    assert all(p.exitcode == 0 for p in producers + consumers)


def take_forever(q, counter):
    while True:
        q.get()
        counter.value += 1  # the only writer


def test_a_consumer_killed_mid_stream_blocks_nobody_and_loses_at_most_its_item():
    ctx = multiprocessing.get_context("fork")
    q = shmpipe.Queue()
    for i in range(20_000):
        q.put(i)
    # No lock: the parent's reads would starve the child's writes of it.
    counter = ctx.RawValue("q", 0)
    p = ctx.Process(target=take_forever, args=(q, counter))
    p.start()
    while counter.value < 5000:
        pass
    os.kill(p.pid, signal.SIGKILL)
    p.join(30)
    rest = []
    while True:
        try:
            rest.append(q.get(timeout=0.5))
        except queue.Empty:
            break
    assert rest == sorted(rest) and len(set(rest)) == len(rest)
    taken = 20_000 - len(rest)
    # What the child counted, and at most the one it was taking when it died.
    assert counter.value <= taken <= counter.value + 1
    assert q.qsize() == 0


def test_full_empty_and_closed_raise_what_multiprocessing_raises():
    q = shmpipe.Queue(maxsize=2)
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.01)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.close()
    with pytest.raises(ValueError, match="is closed"):
        q.put(1)
    with pytest.raises(ValueError, match="is closed"):
        q.get()
    q.join_thread()
    q.cancel_join_thread()


def test_put_pickles_in_the_caller_so_an_unpicklable_object_raises_there():
    q = shmpipe.Queue()
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        q.put(lambda: None)
    q.put("still works")
    assert q.get() == "still works"


class Bytes(bytes):
    pass


def test_bytes_records_and_other_objects_come_back_equal_and_of_their_type():
    # bytes go unpickled, tuples of scalars through pickle.dumps, the rest through
    # ForkingPickler: each comes back as it went.
    q = shmpipe.Queue()
    values = [b"raw", b"", Bytes(b"a subclass"), ("rec", 1, 2.5, True, None, b"x"),
              ("nested", (1, 2)), (), [1, "a", None], {"k": 1, 2: b"v"}, {"k": [1]},
              "text", 10**30, None]
    for v in values:
        q.put(v)
    for v in values:
        got = q.get()
        assert got == v and type(got) is type(v)


def put_long(q, n):
    q.put(bytes(range(256)) * (n // 256))
    q.put(["after", n])


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_message_longer_than_the_queue_crosses_whole_in_fragments(method):
    q = shmpipe.Queue(capacity=64 * 1024)
    p = multiprocessing.get_context(method).Process(target=put_long, args=(q, 1 << 20))
    p.start()
    assert q.get(timeout=60) == bytes(range(256)) * 4096
    assert q.get(timeout=60) == ["after", 1 << 20]
    p.join(60)
    assert p.exitcode == 0
    assert q.empty()


def test_a_long_put_that_times_out_puts_nothing():
    q = shmpipe.Queue(capacity=64 * 1024)
    with pytest.raises(queue.Full):
        q.put(bytes(1 << 20), timeout=0.05)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    q.put("next")
    assert q.get() == "next"


def test_ctrl_c_interrupts_a_blocked_long_put_and_nothing_is_put(ctrl_c):
    q = shmpipe.Queue(capacity=64 * 1024)
    ctrl_c()
    with pytest.raises(KeyboardInterrupt):
        q.put(bytes(1 << 20))
    q.put("after")
    assert q.get() == "after"


def work(q):
    for item in iter(q.get, None):
        q.task_done()
    q.task_done()


def test_joinable_queue_join_waits_for_task_done_in_other_processes():
    ctx = multiprocessing.get_context("spawn")
    q = shmpipe.JoinableQueue()
    workers = [ctx.Process(target=work, args=(q,)) for _ in range(2)]
    for w in workers:
        w.start()
    for i in range(100):
        q.put(i)
    q.put(None)
    q.put(None)
    q.join()
    for w in workers:
        w.join(60)
    assert q.empty()
    with pytest.raises(ValueError):
        q.task_done()


def test_a_queue_goes_to_a_process_only_at_its_start():
    a, b = shmpipe.Pipe()
    with pytest.raises(RuntimeError, match="through inheritance"):
        a.send(shmpipe.Queue())


def test_simple_queue_puts_gets_and_closes():
    q = shmpipe.SimpleQueue()
    assert q.empty()
    q.put({"spam": 1})
    assert not q.empty()
    assert q.get() == {"spam": 1}
    q.close()
    q.close()


def test_ctrl_c_interrupts_a_blocked_get_and_nothing_is_lost(ctrl_c):
    q = shmpipe.Queue()
    ctrl_c()
    with pytest.raises(KeyboardInterrupt):
        q.get()
    q.put("after")
    assert q.get() == "after"


def test_a_blocked_get_lets_other_threads_run():
    q = shmpipe.Queue()
    ticks = []

    def tick():
        for _ in range(5):
            ticks.append(1)
        q.put("done")

    t = threading.Thread(target=tick)
    t.start()
    assert q.get(timeout=30) == "done"
    t.join()
    assert len(ticks) == 5
