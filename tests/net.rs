//! Listener and Client between processes that did not start each other: shmpipe to
//! shmpipe over shared memory, and shmpipe to CPython's `multiprocessing.connection`
//! (the real `python3` on the machine) over Unix sockets and TCP.
//!
//! Rust peers are this same test binary run again with `--exact child_role` and the role
//! in `SHMPIPE_TEST_ROLE` (as in `exec.rs`): an exec'd process, not a fork of the test.
//! Python peers run `tests/python/peer.py`.

mod common;

use shmpipe::{Address, Client, Error, Listener, Peer};
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

trait SpawnProc {
    fn spawn_proc(&mut self) -> Proc;
}

impl SpawnProc for Command {
    fn spawn_proc(&mut self) -> Proc {
        Proc(self.spawn().unwrap())
    }
}

fn rust_peer(role: &str, addr: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("SHMPIPE_TEST_ROLE", role)
        .env("SHMPIPE_TEST_ADDR", addr)
        .stdout(Stdio::piped());
    cmd
}

fn python_peer(mode: &str, addr: &str, key: Option<&str>) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/peer.py"))
        .args([mode, addr, key.unwrap_or("-")])
        .stdout(Stdio::piped());
    cmd
}

/// A peer process, killed and reaped if the test fails before it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads the next line the peer printed that is not the test harness's (its handshake
/// with the test).
fn line_from(peer: &mut Proc) -> String {
    let mut out = BufReader::new(peer.0.stdout.as_mut().unwrap());
    loop {
        let mut line = String::new();
        assert_ne!(
            out.read_line(&mut line).unwrap(),
            0,
            "the peer said nothing"
        );
        let line = line.trim_end().trim_start_matches("test child_role ... ");
        if !line.is_empty() && !line.starts_with("running ") {
            return line.to_string();
        }
    }
}

/// Waits for the peer to exit successfully; returns what else it printed.
fn finish(mut peer: Proc) -> String {
    let rest = std::io::read_to_string(peer.0.stdout.take().unwrap()).unwrap();
    let status = peer.0.wait().unwrap();
    assert!(status.success(), "peer failed: {status}; printed {rest:?}");
    rest
}

/// A socket path of our own, in a fresh directory.
fn socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shmpipe-net-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("s.sock")
}

/// The body of the exec'd Rust peers.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("SHMPIPE_TEST_ROLE") else {
        return;
    };
    let addr: Address = std::env::var("SHMPIPE_TEST_ADDR").unwrap().parse().unwrap();
    let echo = |conn: shmpipe::Connection| loop {
        match conn.recv_bytes() {
            Ok(m) => conn.send_bytes(&m).unwrap(),
            Err(Error::Eof) => break,
            Err(e) => panic!("{e}"),
        }
    };
    match role.as_str() {
        "client-echo" => {
            let conn = Client::connect(addr).unwrap();
            assert!(conn.is_shared_memory());
            echo(conn);
        }
        "client-send-then-hang" => {
            let conn = Client::connect(addr).unwrap();
            conn.send_bytes(b"here").unwrap();
            loop {
                std::thread::park();
            }
        }
        "listener-send-then-hang" => {
            let listener = Listener::bind(addr).unwrap();
            println!("listening");
            let conn = listener.accept().unwrap();
            conn.send_bytes(b"here").unwrap();
            loop {
                std::thread::park();
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_client_process_gets_shared_memory_by_path() {
    let path = socket_path("shm");
    let listener = Listener::bind(&path).unwrap();
    let child = rust_peer("client-echo", path.to_str().unwrap()).spawn_proc();
    let conn = listener.accept().unwrap();
    assert!(conn.is_shared_memory());
    let Some(Peer::Unix { pid, uid, .. }) = listener.last_accepted() else {
        panic!("no peer")
    };
    assert_eq!(pid as u32, child.0.id());
    assert_eq!(uid, rustix::process::getuid().as_raw());
    for len in [0, 1, 64, 100_000, 10 << 20] {
        let m = common::message(len as u64, len);
        conn.send_bytes(&m).unwrap();
        assert_eq!(conn.recv_bytes().unwrap(), m);
    }
    drop(conn);
    finish(child);
}

#[test]
fn eof_when_a_connected_client_is_killed() {
    let path = socket_path("kill-client");
    let listener = Listener::bind(&path).unwrap();
    let mut child = rust_peer("client-send-then-hang", path.to_str().unwrap()).spawn_proc();
    let conn = listener.accept().unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"here");
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(matches!(conn.recv_bytes(), Err(Error::Eof)));
    let broke = (0..10_000).find_map(|_| conn.send_bytes(&[0; 4096]).err());
    assert!(matches!(broke, Some(Error::BrokenPipe)), "{broke:?}");
}

#[test]
fn eof_when_the_listener_process_is_killed() {
    let path = socket_path("kill-listener");
    let mut child = rust_peer("listener-send-then-hang", path.to_str().unwrap()).spawn_proc();
    assert_eq!(line_from(&mut child), "listening");
    let conn = Client::connect(&path).unwrap();
    assert!(conn.is_shared_memory());
    assert_eq!(conn.recv_bytes().unwrap(), b"here");
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    assert!(matches!(conn.recv_bytes(), Err(Error::Eof)));
}

/// Message lengths for the Python tests: the edges of the framing and a long one.
const SIZES: [usize; 7] = [0, 1, 3, 255, 65_536, 1 << 20, 64 << 20];

fn echo_through(conn: &shmpipe::Connection) {
    assert!(!conn.is_shared_memory());
    for &len in &SIZES {
        let m = common::message(len as u64, len);
        conn.send_bytes(&m).unwrap();
        assert_eq!(conn.recv_bytes().unwrap().len(), len);
    }
    // Interleaved: several in flight at once.
    for i in 0..50u64 {
        conn.send_bytes(&common::message(i, 100)).unwrap();
    }
    for i in 0..50u64 {
        assert_eq!(conn.recv_bytes().unwrap(), common::message(i, 100));
    }
}

/// A Rust client against Python's Listener.
fn rust_client_python_listener(addr: &str, key: Option<&str>, python_wire: bool) {
    let mut py = python_peer("listen", addr, key).spawn_proc();
    let real: Address = line_from(&mut py).replace("tcp:", "").parse().unwrap();
    let mut b = Client::builder().python_wire(python_wire);
    if let Some(k) = key {
        b = b.authkey(k.as_bytes());
    }
    let conn = b.connect(real).unwrap();
    echo_through(&conn);
    drop(conn);
    assert_eq!(finish(py).trim(), "eof");
}

/// Python's Client against a Rust Listener.
fn python_client_rust_listener(addr: Address, key: Option<&str>, python_wire: bool) {
    let mut b = Listener::builder().python_wire(python_wire);
    if let Some(k) = key {
        b = b.authkey(k.as_bytes());
    }
    let listener = b.bind(addr).unwrap();
    let shown = match listener.address() {
        Address::Tcp(a) => format!("tcp:{a}"),
        other => other.to_string(),
    };
    let py = python_peer("connect", &shown, key).spawn_proc();
    let conn = listener.accept().unwrap();
    echo_through(&conn);
    drop(conn);
    assert_eq!(finish(py).trim(), "eof");
}

#[test]
fn rust_client_to_python_listener_on_a_path() {
    let path = socket_path("py-listener");
    let p = path.to_str().unwrap();
    // Without a key nothing tells the two apart: the client is told.
    rust_client_python_listener(p, None, true);
    // With a key the handshake shows the listener is Python: no telling needed.
    rust_client_python_listener(p, Some("secret"), false);
}

#[test]
fn rust_client_to_python_listener_over_tcp() {
    rust_client_python_listener("tcp:127.0.0.1:0", None, false);
    rust_client_python_listener("tcp:127.0.0.1:0", Some("secret"), false);
}

#[test]
fn python_client_to_rust_listener_on_a_path() {
    python_client_rust_listener(socket_path("py-client").into(), None, true);
    python_client_rust_listener(socket_path("py-client-key").into(), Some("secret"), false);
}

#[test]
fn python_client_to_rust_listener_over_tcp() {
    let any_port = || Address::from((Ipv4Addr::LOCALHOST, 0));
    python_client_rust_listener(any_port(), None, false);
    python_client_rust_listener(any_port(), Some("secret"), false);
}

#[test]
fn a_wrong_key_is_an_authentication_error_on_both_sides() {
    // Rust client, Python listener.
    let mut py = python_peer("listen", "tcp:127.0.0.1:0", Some("right")).spawn_proc();
    let real: Address = line_from(&mut py).replace("tcp:", "").parse().unwrap();
    let r = Client::builder().authkey(b"wrong").connect(real);
    assert!(matches!(r, Err(Error::Authentication(_))), "{r:?}");
    assert!(finish(py).starts_with("AuthenticationError"));

    // Python client, Rust listener.
    let listener = Listener::builder()
        .authkey(b"right")
        .bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap();
    let Address::Tcp(a) = listener.address() else {
        unreachable!()
    };
    let py = python_peer("connect", &format!("tcp:{a}"), Some("wrong")).spawn_proc();
    let r = listener.accept();
    assert!(matches!(r, Err(Error::Authentication(_))), "{r:?}");
    assert!(finish(py).starts_with("AuthenticationError"));
}

/// A message of 2 GiB and more has CPython's long header; Python reads it.
#[test]
fn a_message_over_2_gib_reaches_python() {
    let listener = Listener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let Address::Tcp(a) = listener.address() else {
        unreachable!()
    };
    let py = python_peer("sizes", &format!("tcp:{a}"), None).spawn_proc();
    let conn = listener.accept().unwrap();
    let len = (2usize << 30) + 3;
    conn.send_bytes(&vec![7u8; len]).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), len.to_string().as_bytes());
    drop(conn);
    finish(py);
}

/// Regression: a forked child that closed (dropped) the listener it inherited shut the
/// listening socket down for its parent too, whose next `accept` failed with EINVAL.
/// Only the process that bound the socket shuts it down now, as only it unlinks it.
#[test]
fn a_child_closing_an_inherited_listener_leaves_the_parents_open() {
    let path = std::env::temp_dir().join(format!(
        "shmpipe-test-inherited-{}.sock",
        std::process::id()
    ));
    let mut listener = Some(Listener::bind(&path).unwrap());
    let closer = common::fork(|| {
        drop(listener.take());
        0
    });
    closer.join();
    let listener = listener.take().unwrap();
    assert!(path.exists(), "the child removed the parent's socket file");
    let address = path.clone();
    let client = std::thread::spawn(move || {
        let conn = Client::connect(address.as_path()).unwrap();
        conn.send_bytes(b"still listening").unwrap();
    });
    let conn = listener.accept().unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"still listening");
    client.join().unwrap();
}

/// A socket connection is handed to Python's pickling (which duplicates its socket) only
/// between messages: what was read of a message, or is left to send, would not go with
/// the copy.
#[test]
fn a_socket_connection_is_handed_over_only_between_messages() {
    use std::io::Write;
    let path = socket_path("handover");
    let listener = Listener::builder().python_wire(true).bind(&path).unwrap();
    let mut raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let conn = listener.accept().unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_millis(1)))
        .unwrap();
    // CPython's framing: a 4-byte big-endian length, then the payload; half of it now.
    raw.write_all(&[0, 0, 0, 8, b'h', b'a']).unwrap();
    assert!(matches!(conn.recv_bytes(), Err(Error::Timeout)));
    assert!(matches!(
        shmpipe::__interop::socket_fd(&conn),
        Err(Error::Invalid(_))
    ));
    raw.write_all(b"lf way").unwrap();
    conn.set_read_timeout(None).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"half way");
    let fd = shmpipe::__interop::socket_fd(&conn).unwrap();
    // SAFETY: `fd` is the connection's socket, open while `conn` is.
    let copy = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
        .try_clone_to_owned()
        .unwrap();
    let twin = shmpipe::__interop::from_socket(copy).unwrap();
    raw.write_all(&[0, 0, 0, 2, b'o', b'k']).unwrap();
    assert_eq!(twin.recv_bytes().unwrap(), b"ok");
    // Not a socket: refused.
    let file = std::fs::File::open("/dev/null").unwrap();
    assert!(matches!(
        shmpipe::__interop::from_socket(file.into()),
        Err(Error::Invalid(_))
    ));
}
