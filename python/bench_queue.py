#!/usr/bin/env python3
"""Queues from Python beside multiprocessing.Queue and faster-fifo, in one run (forked
producer and consumer processes; the parent times from "go" until every consumer has
its share).

    python python/bench_queue.py [--quick] [--json FILE] [--svg FILE]

`python/bench_queue.py --plot JSON SVG` draws the chart of an earlier run.

Rows: 64 B and 1 KiB `bytes` messages, producers x consumers 1x1, 4x1, 1x4 and 4x4;
and a small tuple (`TUPLE`, 40 bytes pickled) 1x1 and 4x4. shmpipe.Queue sends a
`bytes` object as its bytes, unpickled; every other object, and every object in the
other queues, is pickled: the tuple rows show what a put and a get cost then.
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

#: The message of the "tuple" rows: a record of a few fields, as a program might send.
TUPLE = ("resize", 1024, 768, 0.75, True)


def message(size):
    return TUPLE if size == "tuple" else bytes(size)


def label(size):
    return "tuple" if size == "tuple" else f"{size} B"


def make(kind):
    if kind == "multiprocessing.Queue":
        return CTX.Queue()
    if kind == "faster_fifo.Queue":
        return faster_fifo.Queue(max_size_bytes=4 << 20)
    return shmpipe.Queue()


def producer(q, go, n, size):
    msg = message(size)
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
    rows += [("tuple", 1, 1), ("tuple", 4, 4)]
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
        print(f"| {label(size)} | {p}x{c} | {cells} | {vs_mp:.1f}x | {ff} |")
        out["rows"].append({"size": size, "producers": p, "consumers": c,
                            "rates": med, "vs_multiprocessing": vs_mp, "vs_faster_fifo": vs_ff})
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            json.dump(out, f, indent=1)
    if "--svg" in sys.argv:
        with open(sys.argv[sys.argv.index("--svg") + 1], "w") as f:
            f.write(svg(out))


def svg(results):
    """A bar chart of each row's messages per second, one bar per queue."""
    colours = {"multiprocessing.Queue": "#999", "faster_fifo.Queue": "#68c",
               "shmpipe.Queue": "#2a7"}
    rows = results["rows"]
    kinds = [k for k in colours if k in rows[0]["rates"]]
    width, bar_h, left = 680, 9, 130
    group = bar_h * len(kinds) + 10
    height = len(rows) * group + 60
    top = max(r["rates"][k] for r in rows for k in kinds) * 1.2
    scale = (width - left - 70) / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<text x="{left}" y="16">Messages per second, from Python '
           f'({results["rounds"]} rounds of {results["messages"]:,} messages, medians)</text>']
    for j, k in enumerate(kinds):
        out.append(f'<rect x="{left + j * 170}" y="24" width="10" height="10" fill="{colours[k]}"/>')
        out.append(f'<text x="{left + j * 170 + 14}" y="33">{k}</text>')
    for i, r in enumerate(rows):
        y = 46 + i * group
        text = f'{label(r["size"])}, {r["producers"]}x{r["consumers"]}'
        out.append(f'<text x="{left - 8}" y="{y + group / 2}" text-anchor="end">{text}</text>')
        for j, k in enumerate(kinds):
            v = r["rates"][k]
            yy = y + j * bar_h
            out.append(f'<rect x="{left}" y="{yy}" width="{v * scale:.1f}" height="{bar_h - 1}" '
                       f'fill="{colours[k]}"/>')
            if k == "shmpipe.Queue":
                out.append(f'<text x="{left + v * scale + 4:.1f}" y="{yy + bar_h - 1}">'
                           f'{v / 1e6:.2f} M/s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["--plot"]:
        with open(sys.argv[3], "w") as f:
            f.write(svg(json.load(open(sys.argv[2]))))
    else:
        main()
