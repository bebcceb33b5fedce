"""shmpipe.connection.Listener and Client between processes: shmpipe on both sides (shared
memory), and each side against CPython's own multiprocessing.connection."""
import multiprocessing
import multiprocessing.connection as mpc
import os
import tempfile
import threading

import pytest

import shmpipe
from shmpipe.connection import AuthenticationError, Client, Listener

KEY = b"test key"


def fresh_path():
    return os.path.join(tempfile.mkdtemp(prefix="shmpipe-test-"), "listener.sock")


def shmpipe_client(address, authkey):
    with Client(address, authkey=authkey) as conn:
        conn.send({"hello": os.getpid()})
        conn.send_bytes(conn.recv_bytes() + b" back")


def cpython_client(address, authkey):
    with mpc.Client(address, authkey=authkey) as conn:
        conn.send({"hello": os.getpid()})
        conn.send_bytes(conn.recv_bytes() + b" back")


def start(target, *args):
    p = multiprocessing.get_context("fork").Process(target=target, args=args)
    p.start()
    return p


def serve_one(listener, p):
    with listener.accept() as conn:
        assert conn.recv() == {"hello": p.pid}
        conn.send_bytes(b"there and")
        assert conn.recv_bytes() == b"there and back"
    p.join(30)
    assert p.exitcode == 0


@pytest.mark.parametrize("authkey", [None, KEY])
def test_two_shmpipe_processes_on_a_unix_path(authkey):
    with Listener(fresh_path(), authkey=authkey) as listener:
        p = start(shmpipe_client, listener.address, authkey)
        serve_one(listener, p)
        pid, uid, gid = listener.last_accepted
        assert (pid, uid) == (p.pid, os.getuid())


@pytest.mark.parametrize("address", ["unix", ("127.0.0.1", 0)])
def test_a_multiprocessing_client_reaches_a_shmpipe_listener(address):
    address = fresh_path() if address == "unix" else address
    with Listener(address, authkey=KEY) as listener:
        p = start(cpython_client, listener.address, KEY)
        serve_one(listener, p)


def test_a_shmpipe_client_reaches_a_multiprocessing_listener():
    with mpc.Listener(("127.0.0.1", 0), authkey=KEY) as listener:
        p = start(shmpipe_client, listener.address, KEY)
        serve_one(listener, p)


def test_an_unkeyed_multiprocessing_client_needs_python_wire_on_a_unix_path():
    with Listener(fresh_path(), python_wire=True) as listener:
        p = start(cpython_client, listener.address, None)
        serve_one(listener, p)


def test_a_wrong_key_is_an_authentication_error():
    with Listener(fresh_path(), authkey=KEY) as listener:
        p = start(shmpipe_client, listener.address, b"wrong key")
        with pytest.raises(AuthenticationError):
            listener.accept()
        p.join(30)
        assert p.exitcode != 0


def test_arguments_as_cpython_checks_them():
    with pytest.raises(TypeError, match="authkey should be a byte string"):
        Listener(fresh_path(), authkey="text")
    with pytest.raises(ValueError, match="family"):
        Listener(fresh_path(), family="AF_PIPE")
    listener = Listener()  # a fresh Unix address
    assert isinstance(listener.address, str)
    listener.close()
    listener.close()
    with pytest.raises(OSError):
        listener.accept()
    assert shmpipe.Listener is Listener and shmpipe.Client is Client


def test_a_python_client_reaches_a_rust_listener_by_path_over_shared_memory(rust_examples):
    import subprocess

    path = fresh_path()
    server = subprocess.Popen([os.path.join(rust_examples, "listener_client"), "serve", path],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().startswith("server: listening")
        with Client(path) as conn:
            for n in [3, 7, 1 << 20]:
                # The server receives rkyv's archive of a u64 (its 8 little-endian bytes)
                # and answers with the square.
                conn.send_bytes(n.to_bytes(8, "little"))
                assert int.from_bytes(conn.recv_bytes(), "little") == n * n
        out, _ = server.communicate(timeout=30)
    finally:
        server.kill()
        server.wait()
    assert "shared memory: true" in out


def relay_accepted(conn_pipe):
    # A connection accepted elsewhere, received pickled: it goes on where it was.
    accepted = conn_pipe.recv()
    accepted.send_bytes(accepted.recv_bytes() + b" from the relay")


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_socket_connection_pickled_to_another_process_goes_on(method):
    # As CPython pickles its own connections: the socket goes, duplicated.
    ctx = multiprocessing.get_context(method)
    here, there = shmpipe.Pipe()
    with Listener(("127.0.0.1", 0), authkey=KEY) as listener:
        p = ctx.Process(target=relay_accepted, args=(there,))
        p.start()
        # A keyed client waits for the listener's challenge: connect in another thread.
        clients = []
        t = threading.Thread(target=lambda: clients.append(mpc.Client(listener.address, authkey=KEY)))
        t.start()
        accepted = listener.accept()
        t.join()
        with clients[0] as client, accepted:
            client.send_bytes(b"first")
            assert accepted.recv_bytes() == b"first"
            here.send(accepted)
            client.send_bytes(b"second")
            assert client.recv_bytes() == b"second from the relay"
        p.join(30)
        assert p.exitcode == 0



@pytest.mark.parametrize("address,authkey", [("unix", None), ("unix", KEY), (("127.0.0.1", 0), KEY)])
def test_one_thread_connects_first_and_accepts_after(address, authkey):
    # As with CPython's listener: the handshake does not wait for accept.
    address = fresh_path() if address == "unix" else address
    with Listener(address, authkey=authkey) as listener:
        with Client(listener.address, authkey=authkey) as client, listener.accept() as served:
            client.send("ping")
            assert served.recv() == "ping"
            assert listener.last_accepted is not None
    with pytest.raises(OSError):
        listener.accept()


def test_close_from_another_thread_wakes_every_accept_and_refuses_clients():
    # Each accept blocks (no client comes), or has not begun: closing must end it with
    # an error either way, never leave it waiting.
    listener = Listener(fresh_path())
    address = listener.address
    errors = []

    def accept():
        try:
            listener.accept()
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=accept) for _ in range(3)]
    for t in threads:
        t.start()
    listener.close()
    for t in threads:
        t.join()
    assert len(errors) == 3
    with pytest.raises(OSError):
        Client(address)


def close_inherited(listener, results):
    try:
        listener.accept()
        results.send("accepted")
    except OSError as e:
        results.send(str(e))
    listener.close()  # the parent's listener must not notice
    del listener


def test_a_child_that_inherited_a_listener_leaves_the_parents_alone():
    # The child cannot accept (the listener's thread is the parent's), and its close
    # neither shuts the shared socket down nor waits for a lock a parent thread held.
    with Listener(fresh_path(), authkey=KEY) as listener:
        here, there = shmpipe.Pipe()
        p = multiprocessing.get_context("fork").Process(target=close_inherited, args=(listener, there))
        p.start()
        assert "only in the process that made it" in here.recv()
        p.join(30)
        assert p.exitcode == 0
        clients = []
        t = threading.Thread(target=lambda: clients.append(Client(listener.address, authkey=KEY)))
        t.start()
        with listener.accept() as served:
            t.join()
            clients[0].send("still here")
            assert served.recv() == "still here"
        clients[0].close()
