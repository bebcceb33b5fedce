"""The Python side of examples/python_interop.rs: an ordinary multiprocessing client.

    python3 examples/python_interop.py ADDRESS AUTHKEY

ADDRESS is a socket path. It sends a few byte strings to the Rust listener, prints the
answers, and sends an empty message to say goodbye.
"""
import sys
from multiprocessing.connection import Client

address, authkey = sys.argv[1], sys.argv[2].encode()
with Client(address, authkey=authkey) as conn:
    for word in [b"spam", b"eggs", b"ham"]:
        conn.send_bytes(word)
        print("python: sent", word, "got back", conn.recv_bytes())
    conn.send_bytes(b"")
