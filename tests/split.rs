//! `Connection::split`: a receiving half and a sending half used from two threads at
//! once, against a peer in another process, on shared memory and on a socket.

mod common;

use shmpipe::{Builder, Client, Connection, Error, Listener};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;

/// Forked children inherit every descriptor open in the harness at the time: one test
/// forking at a time keeps each child's copies to its own test's ends.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

const MESSAGES: u64 = 20_000;

/// Message `i`: its number, then up to 300 bytes that depend on it.
fn message(i: u64) -> Vec<u8> {
    let mut m = i.to_le_bytes().to_vec();
    m.extend_from_slice(&common::message(i, (i % 301) as usize));
    m
}

/// The peer: answers each message with the same bytes, until EOF.
fn echo(conn: &Connection) -> i32 {
    loop {
        match conn.recv_bytes() {
            Ok(m) => {
                if conn.send_bytes(&m).is_err() {
                    return 2;
                }
            }
            Err(Error::Eof) => return 0,
            Err(_) => return 1,
        }
    }
}

/// Splits `end`, sends `MESSAGES` from one thread while another receives the echoes, and
/// checks every echo, in order. The ring (or socket buffer) is small beside the stream,
/// so both threads block at the same time, each waiting for the other direction.
fn stream_through_halves(end: Connection) {
    let (incoming, outgoing) = end.split().unwrap();
    assert!(incoming.readable() && !incoming.writable());
    assert!(outgoing.writable() && !outgoing.readable());
    assert!(matches!(incoming.send_bytes(b"x"), Err(Error::NotWritable)));
    assert!(matches!(outgoing.recv_bytes(), Err(Error::NotReadable)));
    let receiver = std::thread::spawn(move || {
        for i in 0..MESSAGES {
            assert_eq!(incoming.recv_bytes().unwrap(), message(i), "echo {i}");
        }
        incoming
    });
    for i in 0..MESSAGES {
        outgoing.send_bytes(&message(i)).unwrap();
    }
    let incoming = receiver.join().unwrap();
    // The peer sees EOF once both halves are closed.
    drop(outgoing);
    drop(incoming);
}

#[test]
fn halves_of_a_shared_memory_end_send_and_receive_from_two_threads() {
    let _one = serial();
    let (here, there) = Builder::new().capacity(4096).build().unwrap();
    let (mut here, mut there) = (Some(here), Some(there));
    let child = common::fork(|| {
        drop(here.take());
        echo(there.as_ref().unwrap())
    });
    drop(there.take());
    stream_through_halves(here.take().unwrap());
    child.join();
}

#[test]
fn halves_of_a_socket_connection_send_and_receive_from_two_threads() {
    let _one = serial();
    let listener = Listener::builder()
        .allow_unauthenticated(true)
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .unwrap();
    let address = listener.address().clone();
    let mut listener = Some(listener);
    let child = common::fork(|| {
        drop(listener.take());
        let conn = Client::connect(address.clone()).unwrap();
        echo(&conn)
    });
    let listener = listener.take().unwrap();
    let conn = listener.accept().unwrap();
    assert!(!conn.is_shared_memory());
    stream_through_halves(conn);
    child.join();
}

/// Closing one half leaves the end open: the peer's message still arrives at the other
/// half, and the peer sees EOF only when that one is closed too.
#[test]
fn the_end_closes_when_both_halves_are_closed() {
    let _one = serial();
    let (here, there) = pipe_pair();
    let (mut here, mut there) = (Some(here), Some(there));
    let child = common::fork(|| {
        drop(here.take());
        let there = there.as_ref().unwrap();
        if there.send_bytes(b"still open").is_err() {
            return 1;
        }
        match there.recv_bytes() {
            Err(Error::Eof) => 0,
            _ => 2,
        }
    });
    drop(there.take());
    let (incoming, outgoing) = here.take().unwrap().split().unwrap();
    drop(outgoing);
    assert_eq!(incoming.recv_bytes().unwrap(), b"still open");
    drop(incoming);
    child.join();
}

fn pipe_pair() -> (Connection, Connection) {
    shmpipe::pipe(true).unwrap()
}

#[test]
fn only_a_whole_duplex_end_splits_and_a_half_stays_in_its_process() {
    let (reader, _writer) = shmpipe::pipe(false).unwrap();
    assert!(matches!(reader.split(), Err(Error::Invalid(_))));
    let (a, _b) = pipe_pair();
    let (incoming, outgoing) = a.split().unwrap();
    let mut cmd = std::process::Command::new("true");
    for half in [&incoming, &outgoing] {
        match half.pass_to_child(&mut cmd, "SHMPIPE_SPLIT_TEST") {
            // The reason reads as one sentence (it once carried a line's indentation).
            Err(Error::Invalid(why)) => {
                assert!(why.contains("whole end") && !why.contains("  "), "{why:?}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(incoming.split(), Err(Error::Invalid(_))));
}

/// A `fileno` taken before the split goes on watching for messages on the receiving
/// half, and does not report the sending half's wake-ups as messages.
#[test]
fn a_fileno_taken_before_the_split_follows_the_receiving_half() {
    let (a, b) = pipe_pair();
    let fd = a.fileno().unwrap();
    let (incoming, _outgoing) = a.split().unwrap();
    let readable = || common::readable_now(fd);
    assert!(!readable());
    b.send_bytes(b"one").unwrap();
    assert!(readable());
    assert_eq!(incoming.recv_bytes().unwrap(), b"one");
    assert!(!readable());
}
