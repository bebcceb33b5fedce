"""The Python side of shmpipe's interoperability tests (tests/net.rs).

    peer.py listen ADDR KEY      Listener on ADDR; prints its address; echoes one client
    peer.py connect ADDR KEY     Client to ADDR; echoes
    peer.py sizes ADDR KEY       Client to ADDR; answers each message with its length

ADDR is a path, or tcp:HOST:PORT. KEY is the authkey, or - for none. An echo sends every
message back until EOF, then prints "eof". An AuthenticationError is printed, not raised.
"""
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener


def parse(addr):
    if addr.startswith("tcp:"):
        host, port = addr[4:].rsplit(":", 1)
        return (host, int(port))
    return addr


def echo(conn, answer=lambda m: m):
    while True:
        try:
            m = conn.recv_bytes()
        except EOFError:
            break
        conn.send_bytes(answer(m))
    print("eof", flush=True)


def main():
    mode, addr, key = sys.argv[1:4]
    key = None if key == "-" else key.encode()
    try:
        if mode == "listen":
            with Listener(parse(addr), authkey=key) as listener:
                a = listener.address
                print(f"tcp:{a[0]}:{a[1]}" if isinstance(a, tuple) else a, flush=True)
                echo(listener.accept())
        elif mode == "connect":
            echo(Client(parse(addr), authkey=key))
        elif mode == "sizes":
            echo(Client(parse(addr), authkey=key), lambda m: str(len(m)).encode())
        else:
            sys.exit(f"unknown mode {mode}")
    except AuthenticationError as e:
        print(f"AuthenticationError: {e}", flush=True)


if __name__ == "__main__":
    main()
