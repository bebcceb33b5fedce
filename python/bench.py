#!/usr/bin/env python3
"""shmpipe from Python beside multiprocessing.Pipe, in one run (same machine, same
process layout: a forked child, the parent measures).

    python python/bench.py [--quick]

Workloads (time per message, median of 5 repeats):
  stream_64      the child sends 64-byte messages with send_bytes; the parent recv_bytes
  pingpong_64    a 64-byte message and its echo (time per round trip)
  stream_1m      1 MiB messages, send_bytes / recv_bytes
  dict           send / recv of a small dict (pickle both ways)
  bytearray_64m  a 64 MiB bytearray sent with send (shmpipe: pickle protocol 5, the
                 buffer out of band; Pipe: pickled in band)
  numpy_64m      the same with a 64 MiB NumPy array, if NumPy is installed (unpickled as
                 a view of the received message: no copy after the receive)
With the PyPI package iceoryx2 installed, it runs the two 64-byte workloads too, in the
same interleaved repeats (bench_iceoryx2.py: publish-subscribe, busy-polling; it has no
pipe, no pickling and no blocking receive, so the other workloads are not comparable).
Prints a table; --json FILE also writes the figures.
"""
import json
import multiprocessing as mp
import os

# NumPy's OpenBLAS starts threads that spin; on 2 cores they took 6% of a profile of the
# 64 MiB rows from both sides. No workload here does linear algebra.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import statistics
import sys
import time

import shmpipe
from bench_plot import fmt  # the same time format as the README's table

REPEATS = 5
QUICK = "--quick" in sys.argv


def child(conn, other, kind, payload, n):
    other.close()
    if kind == "pingpong":
        for _ in range(n):
            conn.send_bytes(conn.recv_bytes())
    elif kind == "bytes":
        for _ in range(n):
            conn.send_bytes(payload)
    else:
        for _ in range(n):
            conn.send(payload)
    conn.recv_bytes()  # wait for the parent to finish before exiting


def measure(Pipe, kind, payload, n):
    a, b = Pipe()
    p = mp.get_context("fork").Process(target=child, args=(b, a, kind, payload, n))
    p.start()
    b.close()
    start = time.perf_counter()
    if kind == "pingpong":
        for _ in range(n):
            a.send_bytes(payload)
            a.recv_bytes()
    elif kind == "bytes":
        for _ in range(n):
            a.recv_bytes()
    else:
        for _ in range(n):
            a.recv()
    elapsed = time.perf_counter() - start
    a.send_bytes(b"done")
    p.join()
    a.close()
    return elapsed / n


WORKLOADS = [
    ("stream_64", "bytes", b"x" * 64, 200_000),
    ("pingpong_64", "pingpong", b"x" * 64, 20_000),
    ("stream_1m", "bytes", b"x" * (1 << 20), 500),
    ("dict", "objects", {"id": 7, "name": "spam", "tags": ["a", "b"], "score": 1.5}, 100_000),
    ("bytearray_64m", "objects", bytearray(64 << 20), 10),
]
try:
    import numpy

    WORKLOADS.append(("numpy_64m", "objects", numpy.zeros(64 << 20, dtype=numpy.uint8), 10))
except ImportError:  # NumPy is optional
    pass

TRANSPORTS = [("multiprocessing.Pipe", mp.Pipe), ("shmpipe.Pipe", shmpipe.Pipe)]

try:
    import bench_iceoryx2
except ImportError:  # iceoryx2 is optional
    bench_iceoryx2 = None
# The workloads iceoryx2 can do the same way (64-byte messages, one way or a round trip).
ICEORYX2_KINDS = {"stream_64": "bytes", "pingpong_64": "pingpong"}


def call_floor():
    """What a call costs from Python at the least, in this process (median of 5)."""
    from shmpipe import _shmpipe

    class Nothing:
        def method(self):
            pass

    a, b = shmpipe.Pipe()
    msg = b"x" * 64
    n = 20_000 if QUICK else 200_000

    def native(n, f=_shmpipe._bytes64):
        for _ in range(n):
            f()

    def send_recv(n, s=a.send_bytes, r=b.recv_bytes):
        for _ in range(n):
            s(msg)
            r()

    def method(n, o=Nothing()):
        for _ in range(n):
            o.method()

    out = {}
    for name, f in [("native_64", native), ("send_recv_64", send_recv), ("python_method", method)]:
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            f(n)
            times.append((time.perf_counter() - start) / n)
        out[name] = statistics.median(times)
    return out


def main():
    results = {}
    for name, kind, payload, n in WORKLOADS:
        n = max(n // 10, 2) if QUICK else n
        row = {}
        for _ in range(REPEATS):
            # Interleaved, so that a noisy moment hits both.
            for tname, Pipe in TRANSPORTS:
                row.setdefault(tname, []).append(measure(Pipe, kind, payload, n))
            if bench_iceoryx2 and name in ICEORYX2_KINDS:
                row.setdefault("iceoryx2", []).append(
                    bench_iceoryx2.measure(ICEORYX2_KINDS[name], n))
        results[name] = {t: statistics.median(v) for t, v in row.items()}
        mpv, shv = results[name]["multiprocessing.Pipe"], results[name]["shmpipe.Pipe"]
        iox = results[name].get("iceoryx2")
        iox = f"  iceoryx2 {fmt(iox):>10}" if iox else ""
        print(f"{name:12} Pipe {fmt(mpv):>10}  shmpipe {fmt(shv):>10}  speed-up {mpv / shv:5.1f}x"
              + iox, flush=True)
    floor = call_floor()
    print(f"per call, in one process: a native call returning 64 bytes {fmt(floor['native_64'])}, "
          f"shmpipe send_bytes + recv_bytes of 64 bytes {fmt(floor['send_recv_64'])}, "
          f"a Python method call doing nothing {fmt(floor['python_method'])}")
    if "--json" in sys.argv:
        with open(sys.argv[sys.argv.index("--json") + 1], "w") as f:
            json.dump({"python": sys.version.split()[0], "machine": os.uname().release,
                       "results": results, "floor": floor}, f, indent=1)


if __name__ == "__main__":
    main()
