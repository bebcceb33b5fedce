#!/usr/bin/env python3
"""Python's own multiprocessing.connection Listener and Client over TCP loopback, driven
by benches/connected.rs so that it runs in the same criterion run as shmpipe.

    python_connection.py SIZE

Forks: the child connects with Client and sends; this process accepts with Listener
and receives. For every count N read from stdin, the child sends N messages of SIZE
bytes and this process receives them, reading every 64th byte of each, and prints the
nanoseconds that took.
"""
import os
import sys
import time
from multiprocessing.connection import Client, Listener


def main():
    size = int(sys.argv[1])
    listener = Listener(("127.0.0.1", 0))
    control_r, control_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        listener._listener._socket.close()
        os.close(control_w)
        conn = Client(listener.address)
        payload = b"\x5a" * size
        with os.fdopen(control_r, "rb") as control:
            for line in control:
                for _ in range(int(line)):
                    conn.send_bytes(payload)
        os._exit(0)
    os.close(control_r)
    conn = listener.accept()
    control = os.fdopen(control_w, "wb", buffering=0)
    for line in sys.stdin:
        n = int(line)
        start = time.perf_counter_ns()
        control.write(b"%d\n" % n)
        for _ in range(n):
            m = conn.recv_bytes()
            m[::64]
        print(time.perf_counter_ns() - start, flush=True)
    control.close()
    os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
