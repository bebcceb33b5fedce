#!/usr/bin/env python3
"""Baseline: Python's own multiprocessing.Pipe() on the workloads of benches/transfer.rs.

Standard library only (Python 3.11).  Uses the 'fork' start method and the
default duplex Pipe (a socketpair on Linux).

Workloads
  stream    the child calls conn.send_bytes(payload) N times; the parent calls
            conn.recv_bytes() N times, checks the length and touches a few bytes
            of every message (every 4096th byte; recv_bytes has already copied
            the whole message into a fresh bytes object, so it is really received).
  pingpong  the parent sends a payload and waits for the child's echo.

Each measurement is repeated 5 times; the median time per message (per round
trip) is reported.

Usage:  python3 benches/python_pipe.py [OUT_JSON]
        (default OUT_JSON: benches/results/python.json in the repository;
         PYPIPE_VERBOSE=1 also prints every sample)
"""

import json
import multiprocessing as mp
import os
import platform
import statistics
import struct
import sys
import time

STREAM_SIZES = [8, 64, 1024, 65536, 1048576, 16777216]
PINGPONG_SIZES = [64, 4096]
REPEATS = 5

# Streaming: aim for ~0.7 s per measurement.
STREAM_TARGET_S = 0.7
STREAM_MAX_MSGS = 200_000
# Ping-pong: 20000 round trips, fewer if a round trip is slow.
PINGPONG_N = 20_000
PINGPONG_MAX_S = 1.5

VERBOSE = os.environ.get("PYPIPE_VERBOSE") == "1"  # print every sample

CMD = struct.Struct("!QQ")  # (size, count); size == 0 means "exit"

_now = time.perf_counter_ns


def make_payload(size):
    pattern = bytes(range(256))
    return (pattern * (size // 256 + 1))[:size]


def stream_floor(size):
    """Minimum message count per measurement: 200, but no more than ~1 GiB
    per measurement for the biggest messages (16 MiB -> 64 messages)."""
    return min(200, max(16, (1 << 30) // size))


# --------------------------------------------------------------------------
# child processes


def stream_child(conn):
    payload = b""
    while True:
        size, n = CMD.unpack(conn.recv_bytes())
        if size == 0:
            break
        if n == 0:  # prepare: build the payload outside any timed region
            payload = make_payload(size)
            conn.send_bytes(b"ok")
            continue
        send = conn.send_bytes
        for _ in range(n):
            send(payload)
    conn.close()


def echo_child(conn):
    recv = conn.recv_bytes
    send = conn.send_bytes
    while True:
        m = recv()
        if not m:
            break
        send(m)
    conn.close()


# --------------------------------------------------------------------------
# parent side


def stream_run(conn, size, n, payload):
    """Receive n messages of `size` bytes; return elapsed nanoseconds."""
    recv = conn.recv_bytes
    acc = 0
    m = b""
    t0 = _now()
    conn.send_bytes(CMD.pack(size, n))
    for _ in range(n):
        m = recv()
        if len(m) != size:
            raise RuntimeError(f"expected {size} bytes, got {len(m)}")
        acc += sum(m[::4096])
    t1 = _now()
    if m != payload:
        raise RuntimeError(f"payload mismatch at size {size}")
    # acc depends on every message; keep it "used".
    if acc < 0:
        print(acc)
    return t1 - t0


def pingpong_run(conn, payload, n):
    send = conn.send_bytes
    recv = conn.recv_bytes
    size = len(payload)
    t0 = _now()
    for _ in range(n):
        send(payload)
        r = recv()
        if len(r) != size:
            raise RuntimeError(f"expected {size} bytes, got {len(r)}")
    t1 = _now()
    return t1 - t0


def show_samples(samples):
    if VERBOSE:
        print("    samples (ns):", " ".join(f"{x:,.0f}" for x in samples), flush=True)


def spread(samples):
    med = statistics.median(samples)
    return (max(samples) - min(samples)) / med * 100.0


def stop(p):
    """Join the child; if a run failed half-way the child may be stuck in send."""
    p.join(timeout=10)
    if p.is_alive():
        p.terminate()
        p.join()


def fmt_size(n):
    for unit, k in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k and n % k == 0:
            return f"{n // k} {unit}"
    return f"{n} B"


def bench_stream(ctx):
    parent, child = ctx.Pipe()
    p = ctx.Process(target=stream_child, args=(child,))
    p.start()
    child.close()
    results = {}
    try:
        for size in STREAM_SIZES:
            payload = make_payload(size)
            parent.send_bytes(CMD.pack(size, 0))
            assert parent.recv_bytes() == b"ok"
            # Calibration (doubles as warm-up): ~64 MiB or 2000 messages.
            n_try = max(4, min(2000, (64 << 20) // size))
            per_msg = stream_run(parent, size, n_try, payload) / n_try
            n = int(STREAM_TARGET_S * 1e9 / per_msg)
            n = max(stream_floor(size), min(STREAM_MAX_MSGS, n))
            samples = [stream_run(parent, size, n, payload) / n for _ in range(REPEATS)]
            show_samples(samples)
            med = statistics.median(samples)
            results[str(size)] = med
            msgs = 1e9 / med
            print(
                f"{fmt_size(size):>8} {n:>8} {msgs:>14,.0f} {msgs * size / (1 << 20):>12,.1f}"
                f" {med:>14,.0f} {spread(samples):>7.1f}%",
                flush=True,
            )
    finally:
        parent.send_bytes(CMD.pack(0, 0))
        stop(p)
        parent.close()
    return results


def bench_pingpong(ctx):
    parent, child = ctx.Pipe()
    p = ctx.Process(target=echo_child, args=(child,))
    p.start()
    child.close()
    results = {}
    try:
        for size in PINGPONG_SIZES:
            payload = make_payload(size)
            n_try = 1000
            per_rt = pingpong_run(parent, payload, n_try) / n_try  # warm-up + calibration
            n = PINGPONG_N
            if per_rt * n > PINGPONG_MAX_S * 1e9:
                n = max(1000, int(1.0e9 / per_rt))
            samples = [pingpong_run(parent, payload, n) / n for _ in range(REPEATS)]
            show_samples(samples)
            med = statistics.median(samples)
            results[str(size)] = med
            print(
                f"{fmt_size(size):>8} {n:>8} {med / 1000:>14.2f} {1e9 / med:>14,.0f}"
                f" {spread(samples):>7.1f}%",
                flush=True,
            )
    finally:
        parent.send_bytes(b"")
        stop(p)
        parent.close()
    return results


def main():
    if len(sys.argv) > 1:
        out = sys.argv[1]
    else:
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        out = os.path.join(repo, "benches", "results", "python.json")

    ctx = mp.get_context("fork")
    machine = platform.platform()
    print(f"multiprocessing.Pipe() baseline  |  {machine}  |  Python {platform.python_version()}")
    print(f"median of {REPEATS} runs; spread = (max - min) / median\n")

    print("one-way streaming (child send_bytes -> parent recv_bytes)")
    print(f"{'size':>8} {'N':>8} {'msgs/s':>14} {'MiB/s':>12} {'ns/msg':>14} {'spread':>8}")
    stream = bench_stream(ctx)

    print("\nping-pong (parent send_bytes, child echoes)")
    print(f"{'size':>8} {'N':>8} {'round trip µs':>14} {'round trips/s':>14} {'spread':>8}")
    pingpong = bench_pingpong(ctx)

    data = {
        "machine": machine,
        "python": platform.python_version(),
        "stream": stream,
        "pingpong": pingpong,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
