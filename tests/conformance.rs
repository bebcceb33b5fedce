//! One behaviour, every transport: each test here runs against a connected pair made by
//! `pipe()`, by a `Listener`/`Client` on a Unix path (shared memory), on a Unix path
//! speaking CPython's wire protocol, and over TCP. What the API promises must not depend
//! on how the messages travel. (Transport-specific behaviour has files of its own:
//! `api.rs`, `deadlines.rs`, `socket_transport.rs`, `net*.rs`.)

mod common;

use shmpipe::{pipe, wait, Client, Connection, Error, Listener};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

type Pair = (Connection, Connection);

/// A transport's name and how to make a connected pair on it.
type Transport = (&'static str, fn() -> Pair);

/// A socket path of its own for each pair.
fn fresh_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "shmpipe-conformance-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Relaxed)
    ))
}

/// The accepted end and the client's, connected by `listener`.
fn connect(
    listener: Listener,
    client: impl FnOnce(shmpipe::Address) -> Connection + Send + 'static,
) -> Pair {
    let address = listener.address().clone();
    let t = std::thread::spawn(move || client(address));
    let accepted = listener.accept().unwrap();
    (accepted, t.join().unwrap())
}

fn unix(python_wire: bool) -> Pair {
    let listener = Listener::builder()
        .python_wire(python_wire)
        .bind(fresh_path())
        .unwrap();
    let pair = connect(listener, move |address| {
        Client::builder()
            .python_wire(python_wire)
            .connect(address)
            .unwrap()
    });
    assert_eq!(pair.0.is_shared_memory(), !python_wire);
    pair
}

fn tcp() -> Pair {
    let listener = Listener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let pair = connect(listener, |address| Client::connect(address).unwrap());
    assert!(!pair.0.is_shared_memory());
    pair
}

/// Every transport, by name.
fn transports() -> [Transport; 4] {
    [
        ("pipe", || pipe(true).unwrap()),
        ("unix path, shared memory", || unix(false)),
        ("unix path, CPython's protocol", || unix(true)),
        ("tcp", tcp),
    ]
}

/// Runs `check` on a fresh pair of every transport, naming the transport if it fails.
fn on_every_transport(check: impl Fn(Connection, Connection)) {
    for (name, make) in transports() {
        let (a, b) = make();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(a, b)));
        if let Err(e) = outcome {
            eprintln!("failed on: {name}");
            std::panic::resume_unwind(e);
        }
    }
}

#[test]
fn messages_arrive_whole_in_order_both_ways() {
    on_every_transport(|a, b| {
        for m in [&b"one"[..], b"", b"three", &[7u8; 1000][..]] {
            a.send_bytes(m).unwrap();
        }
        b.send_bytes(b"back").unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"one");
        assert_eq!(b.recv_bytes().unwrap(), b"");
        assert_eq!(b.recv_bytes().unwrap(), b"three");
        assert_eq!(b.recv_bytes().unwrap(), vec![7u8; 1000]);
        assert_eq!(a.recv_bytes().unwrap(), b"back");
        assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    });
}

#[test]
fn a_message_larger_than_a_ring_arrives_whole() {
    on_every_transport(|a, b| {
        let big: Vec<u8> = (0..12 << 20).map(|i: u32| (i % 251) as u8).collect();
        let sent = big.clone();
        let t = std::thread::spawn(move || {
            a.send_bytes(&sent).unwrap();
            a
        });
        assert_eq!(b.recv_bytes().unwrap(), big);
        drop(t.join().unwrap());
    });
}

#[test]
fn a_vectored_send_is_one_message() {
    on_every_transport(|a, b| {
        a.send_bytes_vectored(&[b"head:", b"", b"body"]).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"head:body");
    });
}

#[test]
fn buffer_too_short_hands_over_the_whole_message() {
    on_every_transport(|a, b| {
        a.send_bytes(b"longer than four").unwrap();
        a.send_bytes(b"next").unwrap();
        let mut buf = [0u8; 4];
        match b.recv_bytes_into(&mut buf) {
            Err(Error::BufferTooShort(whole)) => assert_eq!(whole, b"longer than four"),
            other => panic!("{other:?}"),
        }
        assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"next");
    });
}

#[test]
fn a_message_over_the_limit_stays_for_a_larger_limit() {
    on_every_transport(|a, b| {
        b.set_max_message_size(4).unwrap();
        a.send_bytes(b"too long").unwrap();
        assert!(matches!(
            b.recv_bytes(),
            Err(Error::MessageTooLong { len: 8, max: 4 })
        ));
        assert_eq!(b.recv_bytes_max(8).unwrap(), b"too long");
    });
}

#[test]
fn a_typed_message_over_the_limit_is_refused_however_small() {
    on_every_transport(|a, b| {
        b.set_max_message_size(8).unwrap();
        a.send(&[7u64; 4]).unwrap();
        assert!(matches!(
            b.recv::<[u64; 4]>(),
            Err(Error::MessageTooLong { len: 32, max: 8 })
        ));
        b.set_max_message_size(32).unwrap();
        assert_eq!(b.recv::<[u64; 4]>().unwrap(), [7; 4]);
    });
}

#[test]
fn nothing_there_is_would_block_or_a_timeout_and_consumes_nothing() {
    on_every_transport(|a, b| {
        assert!(!b.poll(Some(Duration::from_millis(1))).unwrap());
        b.set_nonblocking(true).unwrap();
        assert!(matches!(b.recv_bytes(), Err(Error::WouldBlock)));
        b.set_nonblocking(false).unwrap();
        b.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        assert!(matches!(b.recv_bytes(), Err(Error::Timeout)));
        a.send_bytes(b"after").unwrap();
        assert!(b.poll(None).unwrap());
        assert_eq!(b.recv_bytes().unwrap(), b"after");
    });
}

#[test]
fn eof_comes_after_every_message_sent_before_close() {
    on_every_transport(|a, b| {
        a.send_bytes(b"last words").unwrap();
        drop(a);
        assert!(b.poll(None).unwrap());
        assert_eq!(b.recv_bytes().unwrap(), b"last words");
        assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
        assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
        // A closed peer is "ready" for poll and for wait: the receive reports it.
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        assert_eq!(wait(&[&b], Some(Duration::ZERO)).unwrap(), [0]);
    });
}

#[test]
fn a_writer_whose_reader_closed_gets_broken_pipe() {
    on_every_transport(|a, b| {
        drop(b);
        // A socket may take a message or two into its buffer before the kernel says
        // the peer is gone; the ring says so at once. Either way it comes, and stays.
        let mut sends = 0;
        let err = loop {
            match a.send_bytes(b"anyone?") {
                Ok(()) => sends += 1,
                Err(e) => break e,
            }
            assert!(sends < 100, "no BrokenPipe after {sends} sends");
        };
        assert!(matches!(err, Error::BrokenPipe), "{err:?}");
        assert!(matches!(a.send_bytes(b"x"), Err(Error::BrokenPipe)));
    });
}

#[test]
fn closed_ends_say_so_before_anything_else() {
    on_every_transport(|mut a, _b| {
        a.close();
        assert!(a.closed());
        assert!(matches!(a.send_bytes(b"x"), Err(Error::Closed)));
        assert!(matches!(a.recv_bytes(), Err(Error::Closed)));
        assert!(matches!(a.poll(Some(Duration::ZERO)), Err(Error::Closed)));
        assert!(matches!(a.fileno(), Err(Error::Closed)));
        a.close(); // idempotent
    });
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq, Clone)]
struct Job {
    id: u32,
    name: String,
    tags: Vec<String>,
}

#[test]
fn typed_messages_round_trip_and_bad_archives_are_refused() {
    on_every_transport(|a, b| {
        let job = Job {
            id: 7,
            name: "spam".into(),
            tags: vec!["a".into(), "b".into()],
        };
        a.send(&job).unwrap();
        assert_eq!(b.recv::<Job>().unwrap(), job);
        a.send(&job).unwrap();
        assert_eq!(b.recv_archived::<Job>().unwrap().id, 7);
        // Garbage is an error, not a value, and the connection goes on.
        a.send_bytes(&[0xff; 3]).unwrap();
        assert!(matches!(b.recv::<Job>(), Err(Error::Invalid(_))));
        a.send(&job).unwrap();
        assert_eq!(b.recv::<Job>().unwrap(), job);
    });
}

#[test]
fn fileno_polls_readable_exactly_when_a_message_waits() {
    on_every_transport(|a, b| {
        let fd = b.fileno().unwrap();
        let readable = || common::readable_now(fd);
        assert!(!readable());
        a.send_bytes(b"one").unwrap();
        // A socket shows the bytes once they arrive; poll waits for that.
        assert!(b.poll(None).unwrap());
        assert!(readable());
        assert_eq!(b.recv_bytes().unwrap(), b"one");
        assert!(!readable());
    });
}

#[test]
fn halves_of_a_split_end_work_from_two_threads() {
    on_every_transport(|a, b| {
        let (incoming, outgoing) = a.split().unwrap();
        let echo = std::thread::spawn(move || {
            for _ in 0..1000 {
                let m = b.recv_bytes().unwrap();
                b.send_bytes(&m).unwrap();
            }
            b
        });
        let receiver = std::thread::spawn(move || {
            for i in 0..1000u32 {
                assert_eq!(incoming.recv_bytes().unwrap(), i.to_le_bytes());
            }
        });
        for i in 0..1000u32 {
            outgoing.send_bytes(&i.to_le_bytes()).unwrap();
        }
        receiver.join().unwrap();
        drop(echo.join().unwrap());
    });
}
