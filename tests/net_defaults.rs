//! Listener and Client defaults that keep a user safe: socket file modes, stale and live
//! socket files, TCP exposure, peer credentials, cleanup, several acceptors; and the
//! address rules (Python's, with the classic mistake).

use shmpipe::{Address, Client, Error, Listener, Peer};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;

fn socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shmpipe-def-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("s.sock")
}

fn mode_of(path: &PathBuf) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn the_socket_file_is_0600_unless_told_otherwise() {
    let path = socket_path("mode");
    let l = Listener::bind(&path).unwrap();
    assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
    assert_eq!(mode_of(&path), 0o600);
    drop(l);
    let l = Listener::builder().mode(0o660).bind(&path).unwrap();
    assert_eq!(mode_of(&path), 0o660);
    drop(l);
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_is_in_use() {
    let path = socket_path("stale");
    // A socket file nobody listens on: what a crashed listener leaves.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let live = Listener::bind(&path).unwrap();
    // Now it is live: a second listener must not steal it.
    match Listener::bind(&path) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse),
        other => panic!("{other:?}"),
    }
    // The live listener still works.
    let t = std::thread::spawn({
        let path = path.clone();
        move || Client::connect(&path).unwrap().send_bytes(b"still here")
    });
    assert_eq!(live.accept().unwrap().recv_bytes().unwrap(), b"still here");
    t.join().unwrap().unwrap();
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let path = socket_path("regular");
    std::fs::write(&path, b"precious").unwrap();
    match Listener::bind(&path) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&path).unwrap(), b"precious");
}

#[test]
fn close_and_drop_remove_the_file_but_not_a_successors() {
    let path = socket_path("cleanup");
    let mut a = Listener::bind(&path).unwrap();
    a.close();
    assert!(!path.exists());
    assert!(matches!(a.accept(), Err(Error::Closed)));
    drop(a);

    let a = Listener::bind(&path).unwrap();
    // Someone removes the file and another listener takes the path: dropping the first
    // must not remove the second's file.
    std::fs::remove_file(&path).unwrap();
    let b = Listener::bind(&path).unwrap();
    drop(a);
    assert!(path.exists());
    drop(b);
    assert!(!path.exists());
}

#[test]
fn tcp_beyond_loopback_needs_an_authkey_or_a_say_so() {
    let any = (Ipv4Addr::UNSPECIFIED, 0);
    assert!(matches!(Listener::bind(any), Err(Error::Invalid(_))));
    assert!(Listener::builder().authkey(b"k").bind(any).is_ok());
    assert!(Listener::builder()
        .allow_unauthenticated(true)
        .bind(any)
        .is_ok());
    assert!(Listener::bind((Ipv4Addr::LOCALHOST, 0)).is_ok());
}

#[test]
fn a_tcp_peer_is_named_by_its_address() {
    let l = Listener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = l.address().clone();
    let t = std::thread::spawn(move || Client::connect(addr).unwrap());
    let conn = l.accept().unwrap();
    assert!(!conn.is_shared_memory());
    let client = t.join().unwrap();
    assert!(!client.is_shared_memory());
    match l.last_accepted() {
        Some(Peer::Tcp(a)) => assert_eq!(a.ip(), Ipv4Addr::LOCALHOST),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_listener_polls_readable_when_a_client_waits() {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let l = Listener::bind("\0shmpipe-test-listener-poll").unwrap();
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let ready = |l: &Listener| {
        let mut fds = [PollFd::new(l, PollFlags::IN)];
        poll(&mut fds, Some(&zero)).unwrap() == 1
    };
    assert!(!ready(&l));
    let t = std::thread::spawn(|| Client::connect("\0shmpipe-test-listener-poll").unwrap());
    // The client waits in its handshake until we accept, so it stays queued.
    let mut fds = [PollFd::new(&l, PollFlags::IN)];
    poll(&mut fds, None).unwrap();
    assert!(ready(&l));
    let _conn = l.accept().unwrap();
    t.join().unwrap();
}

#[test]
fn several_threads_accept_on_one_listener() {
    let l = std::sync::Arc::new(Listener::bind("\0shmpipe-test-many-acceptors").unwrap());
    let acceptors: Vec<_> = (0..3)
        .map(|_| {
            let l = l.clone();
            std::thread::spawn(move || l.accept().unwrap().recv_bytes().unwrap())
        })
        .collect();
    let clients: Vec<_> = (0..3u8)
        .map(|i| Client::connect("\0shmpipe-test-many-acceptors").map(|c| (i, c)))
        .collect::<Result<_, _>>()
        .unwrap();
    for (i, c) in &clients {
        c.send_bytes(&[*i]).unwrap();
    }
    let mut got: Vec<u8> = acceptors
        .into_iter()
        .map(|t| t.join().unwrap()[0])
        .collect();
    got.sort();
    assert_eq!(got, [0, 1, 2]);
}

#[test]
fn addresses_follow_pythons_rules() {
    assert_eq!(
        Address::from("/tmp/a.sock"),
        Address::Unix("/tmp/a.sock".into())
    );
    assert_eq!(Address::from("\0name"), Address::Abstract(b"name".to_vec()));
    assert_eq!(
        Address::from(PathBuf::from("rel.sock")),
        Address::Unix("rel.sock".into())
    );
    // The classic mistake: a string is a path, even one that looks like host:port.
    assert_eq!(
        Address::from("127.0.0.1:6000"),
        Address::Unix("127.0.0.1:6000".into())
    );
    let tcp: SocketAddr = "127.0.0.1:6000".parse().unwrap();
    assert_eq!(
        "127.0.0.1:6000".parse::<Address>().unwrap(),
        Address::Tcp(tcp)
    );
    assert_eq!(
        Address::from((Ipv4Addr::LOCALHOST, 6000)),
        Address::Tcp(tcp)
    );
    assert_eq!(
        "/x/y".parse::<Address>().unwrap(),
        Address::Unix("/x/y".into())
    );
    assert_eq!(
        "@abc".parse::<Address>().unwrap(),
        Address::Abstract(b"abc".to_vec())
    );
    assert!(matches!(
        "no-such-host-shmpipe.invalid:1".parse::<Address>(),
        Err(Error::Invalid(_))
    ));
    for a in [
        Address::Unix("/tmp/a.sock".into()),
        Address::Abstract(b"abc".to_vec()),
        Address::Tcp(tcp),
    ] {
        assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
    }
    assert_eq!(Address::Abstract(b"a\x01".to_vec()).to_string(), "@a\\x01");
}

#[test]
fn a_zero_connect_timeout_is_invalid() {
    let r = Client::builder()
        .timeout(std::time::Duration::ZERO)
        .connect("\0shmpipe-test-zero-timeout");
    assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
}

#[test]
fn connecting_to_nobody_is_an_io_error() {
    match Client::connect(socket_path("nobody")) {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
}

/// Two shmpipe sides with an authkey run CPython's handshake in its 3.12 form (SHA-256)
/// and still move to shared memory: each recognises the other's challenge.
#[test]
fn an_authkey_between_shmpipe_sides_still_gives_shared_memory() {
    let l = Listener::builder()
        .authkey(b"k")
        .bind("\0shmpipe-test-key-shm")
        .unwrap();
    let t = std::thread::spawn(|| {
        Client::builder()
            .authkey(b"k")
            .connect("\0shmpipe-test-key-shm")
            .unwrap()
    });
    let a = l.accept().unwrap();
    let b = t.join().unwrap();
    assert!(a.is_shared_memory() && b.is_shared_memory());
    a.send_bytes(b"over shared memory").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"over shared memory");
}

/// With an authkey, one side asking for Python's protocol is enough: the other sees an
/// unmarked challenge and speaks it too.
#[test]
fn with_an_authkey_python_wire_on_either_side_is_honoured_by_both() {
    for (listener_wire, client_wire) in [(true, false), (false, true)] {
        let name = format!("\0shmpipe-test-wire-{listener_wire}");
        let l = Listener::builder()
            .authkey(b"k")
            .python_wire(listener_wire)
            .bind(name.as_str())
            .unwrap();
        let t = std::thread::spawn(move || {
            Client::builder()
                .authkey(b"k")
                .python_wire(client_wire)
                .connect(name.as_str())
                .unwrap()
        });
        let a = l.accept().unwrap();
        let b = t.join().unwrap();
        assert!(!a.is_shared_memory() && !b.is_shared_memory());
        b.send_bytes(b"python wire").unwrap();
        assert_eq!(a.recv_bytes().unwrap(), b"python wire");
    }
}

/// A key on one side only: both fail (neither hangs), with an authentication error
/// that says so on the side that can tell (never challenge bytes taken for an offer, nor
/// a bare EOF).
#[test]
fn a_key_on_one_side_only_fails_both() {
    let why = |r: shmpipe::Result<shmpipe::Connection>| match r {
        Err(Error::Authentication(why)) => why,
        other => panic!("{other:?}"),
    };
    let l = Listener::builder()
        .authkey(b"k")
        .bind("\0shmpipe-test-one-key")
        .unwrap();
    let t = std::thread::spawn(|| Client::connect("\0shmpipe-test-one-key"));
    assert!(why(l.accept()).contains("has no authkey"));
    assert!(why(t.join().unwrap()).contains("asks for an authkey"));

    // The listener waits for a hello, the client for a challenge: the listener's
    // handshake timeout ends it for both, and the client learns why it heard none.
    let l = Listener::builder()
        .handshake_timeout(std::time::Duration::from_millis(200))
        .bind("\0shmpipe-test-other-key")
        .unwrap();
    let t = std::thread::spawn(|| {
        Client::builder()
            .authkey(b"k")
            .connect("\0shmpipe-test-other-key")
    });
    assert!(matches!(l.accept(), Err(Error::Timeout)));
    assert!(why(t.join().unwrap()).contains("no challenge"));
}
