"""The PyPI package iceoryx2 on the workloads of bench.py it can do the same way: 64-byte
messages streamed one way, and a 64-byte round trip, between two processes.

iceoryx2 has no pipe: each direction is a publish-subscribe service (payload
`ctypes.c_uint8 * 64`, copied in with `send_copy`), the publisher waits when the
subscriber's buffer is full (`RetryUntilDelivered`, so nothing is dropped), and a
receiver busy-polls `receive()`, which returns None while nothing has arrived (the Python
API has no blocking receive; an event service would add a system call per message).

The peer is a fresh interpreter (`python bench_iceoryx2.py child ...`), not a fork:
iceoryx2 nodes keep threads and shared state that a fork does not carry over. The two
sides first agree that both services are connected (the parent pings on its service until
the child answers on the other), so that no measured message meets an unconnected port.
"""
import ctypes
import os
import subprocess
import sys
import time

import iceoryx2 as iox2

iox2.set_log_level(iox2.LogLevel.Error)  # not "No config file was loaded" per process

Payload = ctypes.c_uint8 * 64

READY, GO, DATA = 1, 2, 3


def _ports(node, out_name, in_name):
    def service(name):
        return (node.service_builder(iox2.ServiceName.new(name))
                .publish_subscribe(Payload)
                .enable_safe_overflow(False)
                .subscriber_max_buffer_size(16)
                .open_or_create())
    out_svc, in_svc = service(out_name), service(in_name)
    pub = (out_svc.publisher_builder()
           .backpressure_strategy(iox2.BackpressureStrategy.RetryUntilDelivered)
           .create())
    sub = in_svc.subscriber_builder().buffer_size(16).create()
    return (out_svc, in_svc), pub, sub


def _send(pub, tag):
    p = Payload()
    p[0] = tag
    pub.send_copy(p)


def _recv(sub, deadline=None):
    """The tag of the next sample (busy-polling), or None once `deadline` passes."""
    while True:
        s = sub.receive()
        if s is not None:
            tag = s.payload().contents[0]
            s.delete()
            return tag
        if deadline is not None and time.perf_counter() > deadline:
            return None


def child(kind, n, prefix):
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    _keep, pub, sub = _ports(node, prefix + "/up", prefix + "/down")
    while True:  # answer every ping until told to go
        tag = _recv(sub)
        if tag == READY:
            _send(pub, READY)
        elif tag == GO:
            break
    if kind == "bytes":
        for _ in range(n):
            _send(pub, DATA)
    else:
        for _ in range(n):
            while _recv(sub) != DATA:
                pass
            _send(pub, DATA)
    _recv(sub)  # wait for the parent to finish before dropping the ports


def measure(kind, n):
    """Seconds per message (`bytes`) or per round trip (`pingpong`)."""
    prefix = f"shmpipe-bench/{os.getpid()}/{time.monotonic_ns()}"
    proc = subprocess.Popen([sys.executable, __file__, "child", kind, str(n), prefix])
    try:
        node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
        _keep, pub, sub = _ports(node, prefix + "/down", prefix + "/up")
        while True:  # until the child's answer shows both directions connected
            _send(pub, READY)
            if _recv(sub, time.perf_counter() + 0.002) == READY:
                break
            if proc.poll() is not None:
                raise RuntimeError("the iceoryx2 child exited")
        _send(pub, GO)
        start = time.perf_counter()
        if kind == "bytes":
            got = 0
            while got < n:
                if _recv(sub) == DATA:
                    got += 1
        else:
            for _ in range(n):
                _send(pub, DATA)
                while _recv(sub) != DATA:
                    pass
        elapsed = time.perf_counter() - start
        _send(pub, GO)
        proc.wait(timeout=60)
        return elapsed / n
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
