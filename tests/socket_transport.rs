//! Every `Connection` method on a connection that speaks Python's wire protocol over a
//! socket, and the bytes it puts on the wire. The peer is another `Connection`, or a raw
//! socket standing in for one that misbehaves or is slow.

use shmpipe::{Client, Connection, Error, Listener};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::Duration;

/// Two connected ends over TCP loopback.
fn socket_pair() -> (Connection, Connection) {
    let l = Listener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = l.address().clone();
    let t = std::thread::spawn(move || Client::connect(addr).unwrap());
    let a = l.accept().unwrap();
    (a, t.join().unwrap())
}

/// Our end, and a raw socket at the other end.
fn raw_pair() -> (Connection, TcpStream) {
    let l = Listener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let shmpipe::Address::Tcp(addr) = l.address().clone() else {
        unreachable!()
    };
    let raw = TcpStream::connect(addr).unwrap();
    (l.accept().unwrap(), raw)
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

#[test]
fn bytes_on_the_wire_are_cpythons() {
    let (conn, mut raw) = raw_pair();
    conn.send_bytes(b"spam").unwrap();
    conn.send_bytes(b"").unwrap();
    let mut got = [0u8; 12];
    raw.read_exact(&mut got).unwrap();
    assert_eq!(got, [0, 0, 0, 4, b's', b'p', b'a', b'm', 0, 0, 0, 0]);
    raw.write_all(&frame(b"eggs")).unwrap();
    // The long header form for a short message is valid too.
    let mut long = vec![0xff; 4];
    long.extend_from_slice(&3u64.to_be_bytes());
    long.extend_from_slice(b"ham");
    raw.write_all(&long).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"eggs");
    assert_eq!(conn.recv_bytes().unwrap(), b"ham");
}

#[test]
fn the_byte_methods_behave_as_on_a_pipe() {
    let (a, b) = socket_pair();
    assert!(a.readable() && a.writable() && !a.is_shared_memory());
    a.send_bytes(b"too long").unwrap();
    assert!(matches!(
        b.recv_bytes_max(3),
        Err(Error::MessageTooLong { len: 8, max: 3 })
    ));
    // It stayed in the pipe.
    assert_eq!(b.recv_bytes_max(8).unwrap(), b"too long");
    let mut buf = [0u8; 4];
    a.send_bytes(b"eggs").unwrap();
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 4);
    assert_eq!(&buf, b"eggs");
    a.send_bytes(b"spam and eggs").unwrap();
    match b.recv_bytes_into(&mut buf) {
        Err(Error::BufferTooShort(whole)) => assert_eq!(whole, b"spam and eggs"),
        other => panic!("{other:?}"),
    }
    b.set_max_message_size(4).unwrap();
    assert_eq!(b.max_message_size(), Some(4));
    a.send_bytes(b"12345").unwrap();
    assert!(matches!(b.recv_bytes(), Err(Error::MessageTooLong { .. })));
    assert_eq!(b.recv_bytes_max(5).unwrap(), b"12345");
    b.set_max_message_size(1 << 30).unwrap();
    // Long messages both ways at once.
    let big = vec![9u8; 8 << 20];
    let t = std::thread::spawn({
        let big = big.clone();
        move || {
            a.send_bytes(&big).unwrap();
            a
        }
    });
    assert_eq!(b.recv_bytes().unwrap(), big);
    let a = t.join().unwrap();
    drop(a);
    assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
}

#[test]
fn poll_and_fileno_report_waiting_messages_and_eof() {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use std::os::fd::BorrowedFd;
    let (a, b) = socket_pair();
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    assert!(!b.poll(Some(Duration::from_millis(10))).unwrap());
    let fd = unsafe { BorrowedFd::borrow_raw(b.fileno().unwrap()) };
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let ready = |fd| {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        poll(&mut fds, Some(&zero)).unwrap() == 1
    };
    assert!(!ready(fd));
    a.send_bytes(b"x").unwrap();
    assert!(b.poll(None).unwrap());
    assert!(ready(fd));
    assert_eq!(b.recv_bytes().unwrap(), b"x");
    assert!(!ready(fd));
    drop(a);
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert!(ready(fd));
}

#[test]
fn wait_mixes_shared_memory_and_socket_connections() {
    let (s1, s2) = socket_pair();
    let (p1, p2) = shmpipe::pipe(true).unwrap();
    assert_eq!(
        shmpipe::wait(&[&s2, &p2], Some(Duration::from_millis(10))).unwrap(),
        Vec::<usize>::new()
    );
    p1.send_bytes(b"shm").unwrap();
    assert_eq!(shmpipe::wait(&[&s2, &p2], None).unwrap(), vec![1]);
    s1.send_bytes(b"sock").unwrap();
    let t = std::thread::spawn(move || s1);
    assert_eq!(shmpipe::wait(&[&s2, &p2], None).unwrap(), vec![0, 1]);
    assert_eq!(p2.recv_bytes().unwrap(), b"shm");
    assert_eq!(s2.recv_bytes().unwrap(), b"sock");
    // Only the socket has something now; the pipe is idle.
    let s1 = t.join().unwrap();
    s1.send_bytes(b"again").unwrap();
    assert_eq!(shmpipe::wait(&[&p2, &s2], None).unwrap(), vec![1]);
    drop(p1);
    assert_eq!(shmpipe::wait(&[&p2, &s2], None).unwrap(), vec![0, 1]);
}

#[test]
fn typed_messages_travel_as_archives() {
    let (a, b) = socket_pair();
    let value = (7u32, vec!["one".to_string(), "two".to_string()]);
    a.send(&value).unwrap();
    assert_eq!(b.recv::<(u32, Vec<String>)>().unwrap(), value);
    a.send(&vec![1u64; 100_000]).unwrap();
    let archived = b.recv_archived::<Vec<u64>>().unwrap();
    assert_eq!(archived.len(), 100_000);
    drop(archived);
    a.send(&vec![5u16, 6]).unwrap();
    // No ring to read in place: a validated copy, as recv_archived gives.
    let in_place = unsafe { b.recv_archived_in_place::<Vec<u16>>() }.unwrap();
    assert_eq!(in_place.as_slice(), [5, 6]);
    drop(in_place);
    // Not an archive of that type: an error, and the connection goes on.
    a.send_bytes(b"junk").unwrap();
    assert!(matches!(b.recv::<Vec<String>>(), Err(Error::Invalid(_))));
    a.send(&1u8).unwrap();
    assert_eq!(b.recv::<u8>().unwrap(), 1);
}

#[test]
fn a_read_timeout_keeps_a_half_received_message_for_the_next_call() {
    let (conn, mut raw) = raw_pair();
    conn.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert!(matches!(conn.recv_bytes(), Err(Error::Timeout)));
    let whole = frame(&[3u8; 1000]);
    raw.write_all(&whole[..2]).unwrap(); // half a header
    assert!(matches!(conn.recv_bytes(), Err(Error::Timeout)));
    raw.write_all(&whole[2..500]).unwrap(); // the header and half the payload
    assert!(matches!(conn.recv_bytes(), Err(Error::Timeout)));
    raw.write_all(&whole[500..]).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), [3u8; 1000]);
    conn.set_nonblocking(true).unwrap();
    assert!(matches!(conn.recv_bytes(), Err(Error::WouldBlock)));
    raw.write_all(&frame(b"now")).unwrap();
    let got = loop {
        match conn.recv_bytes() {
            Err(Error::WouldBlock) => std::thread::yield_now(),
            other => break other.unwrap(),
        }
    };
    assert_eq!(got, b"now");
}

/// Sends until the socket is full, the raw peer reading nothing; then the peer reads
/// everything: every message the sends accepted arrives whole and in order, including
/// the one whose tail was still in the connection.
fn fill_then_drain(conn: Connection, mut raw: TcpStream, gave_up: fn(&Error) -> bool) {
    let mut accepted = 0u32;
    let msg = |i: u32| vec![i as u8; 100_000];
    loop {
        match conn.send_bytes(&msg(accepted)) {
            Ok(()) => accepted += 1,
            Err(e) if gave_up(&e) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(accepted < 10_000, "the socket never filled");
    }
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            let mut head = [0u8; 4];
            if raw.read_exact(&mut head).is_err() {
                return got;
            }
            let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
            raw.read_exact(&mut body).unwrap();
            got.push(body);
        }
    });
    // Closing pushes out the rest of a message whose tail was kept.
    drop(conn);
    let got = reader.join().unwrap();
    assert_eq!(got.len() as u32, accepted);
    for (i, m) in got.iter().enumerate() {
        assert_eq!(*m, msg(i as u32));
    }
}

#[test]
fn a_nonblocking_send_never_tears_a_message() {
    let (conn, raw) = raw_pair();
    conn.set_nonblocking(true).unwrap();
    fill_then_drain(conn, raw, |e| matches!(e, Error::WouldBlock));
}

#[test]
fn a_write_timeout_never_tears_a_message() {
    let (conn, raw) = raw_pair();
    conn.set_write_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    fill_then_drain(conn, raw, |e| matches!(e, Error::Timeout));
}

#[test]
fn broken_pipe_when_the_reader_is_gone() {
    let (a, b) = socket_pair();
    drop(b);
    let broke = (0..1000).find_map(|_| a.send_bytes(&[0; 65536]).err());
    assert!(matches!(broke, Some(Error::BrokenPipe)), "{broke:?}");
}

#[test]
fn a_negative_length_breaks_the_connection_for_good() {
    let (conn, mut raw) = raw_pair();
    raw.write_all(&(-2i32).to_be_bytes()).unwrap();
    assert!(matches!(conn.recv_bytes(), Err(Error::Corrupt(_))));
    raw.write_all(&frame(b"late")).unwrap();
    assert!(matches!(conn.recv_bytes(), Err(Error::Corrupt(_))));
}

#[test]
fn a_peer_that_hangs_up_mid_message_is_an_error_then_eof() {
    let (conn, mut raw) = raw_pair();
    raw.write_all(&frame(b"whole")).unwrap();
    raw.write_all(&[0, 0, 0, 10, 1, 2]).unwrap();
    drop(raw);
    assert_eq!(conn.recv_bytes().unwrap(), b"whole");
    match conn.recv_bytes() {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        other => panic!("{other:?}"),
    }
    assert!(matches!(conn.recv_bytes(), Err(Error::Eof)));
}

#[test]
fn a_socket_connection_cannot_be_passed_to_an_execd_child() {
    let (a, _b) = socket_pair();
    let mut cmd = std::process::Command::new("true");
    assert!(matches!(
        a.pass_to_child(&mut cmd, "KEY"),
        Err(Error::Invalid(_))
    ));
}

#[cfg(feature = "tokio")]
#[test]
fn async_connections_work_over_sockets() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (a, b) = socket_pair();
    rt.block_on(async move {
        let a = shmpipe::AsyncConnection::new(a).unwrap();
        let b = std::sync::Arc::new(shmpipe::AsyncConnection::new(b).unwrap());
        // A receive that waits for a message sent later.
        let reader = tokio::spawn({
            let b = b.clone();
            async move { b.recv_bytes().await }
        });
        tokio::task::yield_now().await;
        a.send_bytes(b"hello").await.unwrap();
        assert_eq!(reader.await.unwrap().unwrap(), b"hello");
        // Larger than the socket buffers: sender and receiver must take turns.
        let big = vec![4u8; 32 << 20];
        let (sent, got) = tokio::join!(a.send_bytes(&big), b.recv_bytes());
        sent.unwrap();
        assert_eq!(got.unwrap(), big);
        a.send(&(1u8, 2u16)).await.unwrap();
        assert_eq!(b.recv::<(u8, u16)>().await.unwrap(), (1, 2));
        a.send_bytes(b"x").await.unwrap();
        b.readable().await.unwrap();
        assert_eq!(b.recv_bytes().await.unwrap(), b"x");
        drop(a);
        assert!(matches!(b.recv_bytes().await, Err(Error::Eof)));
    });
}

/// A non-blocking send that left the end of its message in the connection: waiting for
/// the answer (with `wait` or `poll`) pushes it out, or the two sides would wait for
/// each other forever.
#[test]
fn a_kept_tail_goes_out_while_waiting_for_the_answer() {
    let (a, b) = socket_pair();
    let echo = std::thread::spawn(move || {
        for _ in 0..2 {
            let m = b.recv_bytes().unwrap();
            b.send_bytes(&m[..8]).unwrap();
        }
    });
    a.set_nonblocking(true).unwrap();
    let big = vec![1u8; 16 << 20]; // far more than the socket buffers hold
    a.send_bytes(&big).unwrap();
    assert_eq!(shmpipe::wait(&[&a], None).unwrap(), vec![0]);
    assert_eq!(a.recv_bytes().unwrap(), [1u8; 8]);
    a.send_bytes(&big).unwrap();
    assert!(a.poll(None).unwrap());
    assert_eq!(a.recv_bytes().unwrap(), [1u8; 8]);
    echo.join().unwrap();
}

/// Regression: with part of a sent message still kept, a wait for input pushed it out
/// and reported the peer's hang-up as `BrokenPipe`; `poll` must say true, and the
/// receives give what the peer sent, then EOF.
#[test]
fn a_kept_tail_does_not_turn_eof_into_broken_pipe() {
    let (conn, mut raw) = raw_pair();
    conn.set_nonblocking(true).unwrap();
    conn.send_bytes(&vec![1u8; 16 << 20]).unwrap(); // far more than the socket holds
    raw.write_all(&frame(b"last words")).unwrap();
    drop(raw);
    assert!(conn.poll(None).unwrap());
    conn.set_nonblocking(false).unwrap();
    assert_eq!(conn.recv_bytes().unwrap(), b"last words");
    assert!(matches!(conn.recv_bytes(), Err(Error::Eof)));
    assert!(conn.poll(Some(Duration::ZERO)).unwrap());
}

/// A message that arrives in many pieces, taken by many non-blocking receives (each
/// giving up part-way), arrives whole.
#[test]
fn a_message_taken_in_many_attempts_arrives_whole() {
    let (conn, mut raw) = raw_pair();
    conn.set_nonblocking(true).unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    let whole = frame(&payload);
    let mut attempts = 0;
    let mut got = None;
    for piece in whole.chunks(7_001) {
        raw.write_all(piece).unwrap();
        // Wait until the piece is readable, then take what is there.
        assert!(conn.poll(None).unwrap());
        match conn.recv_bytes() {
            Err(Error::WouldBlock) => attempts += 1,
            Ok(m) => got = Some(m),
            Err(e) => panic!("{e}"),
        }
    }
    let got = got.unwrap_or_else(|| loop {
        match conn.recv_bytes() {
            Err(Error::WouldBlock) => std::thread::yield_now(),
            other => break other.unwrap(),
        }
    });
    assert_eq!(got, payload);
    assert!(attempts > 20, "{attempts}");
}

#[test]
fn a_vectored_send_is_one_message_on_the_wire() {
    let (conn, mut raw) = raw_pair();
    conn.send_bytes_vectored(&[b"ab", b"", b"cde"]).unwrap();
    let mut got = [0u8; 9];
    raw.read_exact(&mut got).unwrap();
    assert_eq!(got, [0, 0, 0, 5, b'a', b'b', b'c', b'd', b'e']);
}
