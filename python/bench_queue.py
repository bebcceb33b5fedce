#!/usr/bin/env python3
"""Queues from Python beside multiprocessing.Queue and faster-fifo, in one run (forked
producer and consumer processes; the parent times from "go" until every consumer has
its share).

    python python/bench_queue.py [--quick] [--json FILE]

Rows: 64 B and 1 KiB `bytes` messages, producers x consumers 1x1, 4x1, 1x4 and 4x4.
Every contender runs every row once per round, rounds interleaved; a figure is the
median over rounds of the messages per second, and each row's ratio to
multiprocessing.Queue is taken within each round, then its median. faster-fifo
(PyPI `faster-fifo`) is left out when it is not installed.
"""
import json
import multiprocessing as mp
import statistics
import sys
import time

import shmpipe

try:
    import faster_fifo
except ImportError:  # optional
    faster_fifo = None

CTX = mp.get_context("fork")


def make(kind):
    if kind == "multiprocessing.Queue":
        return CTX.Queue()
    if kind == "faster_fifo.Queue":
        return faster_fifo.Queue(max_size_bytes=4 << 20)
    return shmpipe.Queue()


def producer(q, go, n, size):
    msg = bytes(size)
    go.wait()
    for _ in range(n):
        q.put(msg)


def consumer(q, go, n):
    go.wait()
    for _ in range(n):
        q.get()


def one(kind, size, producers, consumers, total):
    q = make(kind)
    go = CTX.Event()
    total -= total % (producers * consumers)
    procs = [CTX.Process(target=producer, args=(q, go, total // producers, size))
             for _ in range(producers)]
    procs += [CTX.Process(target=consumer, args=(q, go, total // consumers))
              for _ in range(consumers)]
    for p in procs:
        p.start()
    time.sleep(0.2)  # every process started and waiting on `go` (not timed)
    start = time.perf_counter()
    go.set()
    for p in procs:
        p.join()
    took = time.perf_counter() - start
    assert all(p.exitcode == 0 for p in procs), kind
    return total / took


def main():
    quick = "--quick" in sys.argv
    rounds = 2 if quick else 5
    total = 20_000 if quick else 100_000
    kinds = ["multiprocessing.Queue", "shmpipe.Queue"]
    if faster_fifo is not None:
        kinds.insert(1, "faster_fifo.Queue")
    rows = [(size, p, c) for size in (64, 1024) for p, c in ((1, 1), (4, 1), (1, 4), (4, 4))]
    rates = {}
    for _ in range(rounds):
        for row in rows:
            for kind in kinds:
                rates.setdefault((row, kind), []).append(one(kind, *row, total))
    print("| message | producers x consumers | " + " | ".join(f"{k} (msg/s)" for k in kinds)
          + " | shmpipe ÷ multiprocessing | shmpipe ÷ faster-fifo |")
    print("|---|---|" + "---:|" * (len(kinds) + 2))
    out = {"python": sys.version.split()[0], "rounds": rounds, "messages": total, "rows": []}
    for row in rows:
        size, p, c = row
        med = {k: statistics.median(rates[(row, k)]) for k in kinds}
        ratio = lambda other: statistics.median(  # noqa: E731
            s / o for s, o in zip(rates[(row, "shmpipe.Queue")], rates[(row, other)]))
        vs_mp = ratio("multiprocessing.Queue")
        vs_ff = ratio("faster_fifo.Queue") if faster_fifo else None
        cells = " | ".join(f"{med[k]:,.0f}" for k in kinds)
        ff = f"{vs_ff:.1f}x" if vs_ff is not None else "–"
        print(f"| {size} B | {p}x{c} | {cells} | {vs_mp:.1f}x | {ff} |")
        out["rows"].append({"size": size, "producers": p, "consumers": c,
                            "rates": med, "vs_multiprocessing": vs_mp, "vs_faster_fifo": vs_ff})
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
