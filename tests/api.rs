//! The Connection API's behaviour and every error it documents, within one process.
//! (Cross-process behaviour is in `processes.rs` and `exec.rs`.)

mod common;

use shmpipe::{pipe, wait, Builder, Error};
use std::io;
use std::time::Duration;

#[test]
fn messages_arrive_whole_in_order_and_unmerged() {
    let (a, b) = pipe(true).unwrap();
    for m in [&b"one"[..], b"", b"three", &[0u8; 1000][..]] {
        a.send_bytes(m).unwrap();
    }
    assert_eq!(b.recv_bytes().unwrap(), b"one");
    assert_eq!(b.recv_bytes().unwrap(), b"");
    assert_eq!(b.recv_bytes().unwrap(), b"three");
    assert_eq!(b.recv_bytes().unwrap(), vec![0u8; 1000]);
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn duplex_carries_both_directions_independently() {
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(b"a->b").unwrap();
    b.send_bytes(b"b->a").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"b->a");
    assert_eq!(b.recv_bytes().unwrap(), b"a->b");
}

#[test]
fn one_way_pipe_is_reader_then_writer() {
    let (r, w) = pipe(false).unwrap();
    assert!(r.readable() && !r.writable());
    assert!(w.writable() && !w.readable());
    assert!(matches!(r.send_bytes(b"x"), Err(Error::NotWritable)));
    assert!(matches!(w.recv_bytes(), Err(Error::NotReadable)));
    assert!(matches!(w.recv_bytes_max(1), Err(Error::NotReadable)));
    assert!(matches!(
        w.recv_bytes_into(&mut [0; 4]),
        Err(Error::NotReadable)
    ));
    assert!(matches!(
        w.poll(Some(Duration::ZERO)),
        Err(Error::NotReadable)
    ));
    assert!(matches!(
        wait(&[&w], Some(Duration::ZERO)),
        Err(Error::NotReadable)
    ));
    w.send_bytes(b"ok").unwrap();
    assert_eq!(r.recv_bytes().unwrap(), b"ok");
}

#[test]
fn closed_comes_before_direction_and_arguments() {
    let (mut r, mut w) = pipe(false).unwrap();
    r.close();
    w.close();
    assert!(r.closed() && w.closed());
    // Direction flags stay as they were, like Python's.
    assert!(r.readable() && w.writable());
    assert!(matches!(r.send_bytes(b"x"), Err(Error::Closed)));
    assert!(matches!(w.recv_bytes(), Err(Error::Closed)));
    assert!(matches!(r.recv_bytes_into(&mut []), Err(Error::Closed)));
    assert!(matches!(r.poll(None), Err(Error::Closed)));
    assert!(matches!(r.fileno(), Err(Error::Closed)));
    assert!(matches!(wait(&[&r], None), Err(Error::Closed)));
    r.close(); // idempotent
}

#[test]
fn eof_after_every_message_sent_before_close() {
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(b"last words").unwrap();
    drop(a);
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(b.recv_bytes().unwrap(), b"last words");
    assert!(b.poll(Some(Duration::ZERO)).unwrap(), "EOF makes poll true");
    assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
    assert!(matches!(b.recv_bytes(), Err(Error::Eof)), "EOF is sticky");
}

#[test]
fn broken_pipe_when_the_reader_closes() {
    let (mut r, w) = pipe(false).unwrap();
    r.close();
    assert!(matches!(w.send_bytes(b"x"), Err(Error::BrokenPipe)));
    assert!(matches!(w.send_bytes(b"x"), Err(Error::BrokenPipe)));
}

#[test]
fn broken_pipe_reaches_a_writer_blocked_on_a_full_ring() {
    let (r, w) = Builder::new().duplex(false).capacity(4096).build().unwrap();
    let writer = std::thread::spawn(move || loop {
        if let Err(e) = w.send_bytes(&[1; 1000]) {
            return e;
        }
    });
    // Let the writer fill the ring and block, then close the reader.
    while !r.poll(Some(Duration::ZERO)).unwrap() {}
    drop(r);
    assert!(matches!(writer.join().unwrap(), Error::BrokenPipe));
}

#[test]
fn message_too_long_leaves_the_message_in_place() {
    let (a, b) = Builder::new().capacity(4096).build().unwrap();
    a.send_bytes(&[5; 100]).unwrap();
    match b.recv_bytes_max(99) {
        Err(Error::MessageTooLong { len: 100, max: 99 }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(b.recv_bytes_max(100).unwrap(), vec![5; 100]);
    // Also for a fragmented message (longer than the ring).
    let big = common::message(1, 50_000);
    let sender = std::thread::spawn(move || {
        a.send_bytes(&big).unwrap();
        big
    });
    assert!(matches!(
        b.recv_bytes_max(49_999),
        Err(Error::MessageTooLong { len: 50_000, .. })
    ));
    assert_eq!(b.recv_bytes_max(50_000).unwrap(), sender.join().unwrap());
}

#[test]
fn buffer_too_short_hands_over_the_whole_message() {
    let (a, b) = Builder::new().capacity(4096).build().unwrap();
    a.send_bytes(b"abcdef").unwrap();
    a.send_bytes(b"next").unwrap();
    let mut small = [0u8; 3];
    match b.recv_bytes_into(&mut small) {
        Err(Error::BufferTooShort(m)) => assert_eq!(m, b"abcdef"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        b.recv_bytes().unwrap(),
        b"next",
        "the long message was consumed"
    );
    let big = common::message(2, 30_000);
    let sender = std::thread::spawn(move || {
        a.send_bytes(&big).unwrap();
        big
    });
    let mut buf = vec![0u8; 29_999];
    match b.recv_bytes_into(&mut buf) {
        Err(Error::BufferTooShort(m)) => assert_eq!(m, sender.join().unwrap()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn recv_bytes_into_reassembles_fragments_in_place() {
    let (a, b) = Builder::new().capacity(4096).build().unwrap();
    let big = common::message(3, 100_003);
    let expect = big.clone();
    let sender = std::thread::spawn(move || a.send_bytes(&big).unwrap());
    let mut buf = vec![0u8; 200_000];
    let n = b.recv_bytes_into(&mut buf).unwrap();
    assert_eq!(&buf[..n], &expect[..]);
    sender.join().unwrap();
}

#[test]
fn invalid_capacity_is_refused() {
    assert!(matches!(
        Builder::new().capacity(0).build(),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        Builder::new().capacity(usize::MAX).build(),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        Builder::new().capacity((1 << 30) + 1).build(),
        Err(Error::Invalid(_))
    ));
    let (a, b) = Builder::new().capacity(1).build().unwrap(); // rounds up to 4 KiB
    a.send_bytes(&[9; 2000]).unwrap(); // fits whole in half a 4 KiB ring
    assert_eq!(b.recv_bytes().unwrap(), vec![9; 2000]);
}

#[test]
fn poll_times_out_and_consumes_nothing() {
    let (a, b) = pipe(true).unwrap();
    assert!(!b.poll(Some(Duration::from_millis(20))).unwrap());
    a.send_bytes(b"x").unwrap();
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert!(b.poll(Some(Duration::MAX)).unwrap());
    assert_eq!(b.recv_bytes().unwrap(), b"x");
}

#[test]
fn poll_wakes_on_a_message_from_another_thread() {
    let (a, b) = pipe(true).unwrap();
    let t = std::thread::spawn(move || {
        assert!(b.poll(None).unwrap());
        b.recv_bytes().unwrap()
    });
    a.send_bytes(b"wake").unwrap();
    assert_eq!(t.join().unwrap(), b"wake");
}

#[test]
fn fileno_is_readable_exactly_when_poll_is_true() {
    let (a, b) = pipe(true).unwrap();
    let fd = b.fileno().unwrap();
    assert_eq!(b.fileno().unwrap(), fd, "same descriptor every time");
    for round in 0..50 {
        assert!(!common::readable_now(fd), "round {round}: empty");
        a.send_bytes(b"1").unwrap();
        assert!(common::readable_now(fd));
        a.send_bytes(b"2").unwrap();
        b.recv_bytes().unwrap();
        assert!(common::readable_now(fd), "one message still waiting");
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        if round % 2 == 0 {
            b.recv_bytes().unwrap();
        } else {
            // The one-pass receive keeps the descriptor exact too.
            assert_eq!(b.recv_bytes_into(&mut [0; 8]).unwrap(), 1);
        }
        assert!(!common::readable_now(fd));
        assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    }
    drop(a);
    assert!(common::readable_now(fd), "EOF is readable");
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn fileno_sees_messages_sent_before_it_was_asked_for() {
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(b"early").unwrap();
    let fd = b.fileno().unwrap();
    assert!(common::readable_now(fd));
    b.recv_bytes().unwrap();
    assert!(!common::readable_now(fd));
}

#[test]
fn fileno_works_with_a_blocking_poll_from_another_thread() {
    let (a, b) = pipe(true).unwrap();
    let fd = b.fileno().unwrap();
    let t = std::thread::spawn(move || {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; b outlives the poll (it is dropped after join).
        unsafe { libc::poll(&mut p, 1, -1) }
    });
    a.send_bytes(b"x").unwrap();
    assert_eq!(t.join().unwrap(), 1);
    assert_eq!(b.recv_bytes().unwrap(), b"x");
}

#[test]
fn wait_reports_every_ready_connection() {
    let pipes: Vec<_> = (0..5).map(|_| pipe(true).unwrap()).collect();
    let ends: Vec<_> = pipes.iter().map(|(_, b)| b).collect();
    assert!(wait(&ends, Some(Duration::from_millis(10)))
        .unwrap()
        .is_empty());
    pipes[1].0.send_bytes(b"x").unwrap();
    pipes[3].0.send_bytes(b"y").unwrap();
    assert_eq!(wait(&ends, None).unwrap(), vec![1, 3]);
    assert_eq!(pipes[1].1.recv_bytes().unwrap(), b"x");
    assert_eq!(wait(&ends, None).unwrap(), vec![3]);
    assert!(matches!(wait(&[], None), Err(Error::Invalid(_))));
    assert!(wait(&[], Some(Duration::ZERO)).unwrap().is_empty());
}

#[test]
fn wait_blocks_until_a_message_arrives_from_another_thread() {
    let (a1, b1) = pipe(true).unwrap();
    let (a2, b2) = pipe(true).unwrap();
    let t = std::thread::spawn(move || {
        a2.send_bytes(b"late").unwrap();
        (a1, a2)
    });
    assert_eq!(wait(&[&b1, &b2], None).unwrap(), vec![1]);
    drop(t.join().unwrap());
    assert_eq!(
        wait(&[&b1, &b2], None).unwrap(),
        vec![0, 1],
        "both now at EOF or data"
    );
}

#[test]
fn errors_convert_to_io_errors_of_the_matching_kind() {
    let cases: Vec<(Error, io::ErrorKind)> = vec![
        (Error::Eof, io::ErrorKind::UnexpectedEof),
        (Error::BrokenPipe, io::ErrorKind::BrokenPipe),
        (Error::Closed, io::ErrorKind::Unsupported),
        (Error::NotReadable, io::ErrorKind::Unsupported),
        (Error::NotWritable, io::ErrorKind::Unsupported),
        (Error::BufferTooShort(vec![1]), io::ErrorKind::InvalidInput),
        (
            Error::MessageTooLong { len: 2, max: 1 },
            io::ErrorKind::InvalidInput,
        ),
        (Error::Invalid("x".into()), io::ErrorKind::InvalidInput),
        (
            Error::Corrupt(shmpipe::Violation::HeldElsewhere),
            io::ErrorKind::InvalidData,
        ),
        (Error::Timeout, io::ErrorKind::TimedOut),
        (Error::WouldBlock, io::ErrorKind::WouldBlock),
    ];
    for (e, kind) in cases {
        let shown = e.to_string();
        assert!(!shown.is_empty());
        let io: io::Error = e.into();
        assert_eq!(io.kind(), kind, "{shown}");
    }
    let io: io::Error = Error::Io(io::Error::from_raw_os_error(libc::EMFILE)).into();
    assert_eq!(
        io.raw_os_error(),
        Some(libc::EMFILE),
        "Io gives back the original"
    );
}

#[test]
fn connection_moves_between_threads() {
    let (a, b) = pipe(true).unwrap();
    let t = std::thread::spawn(move || {
        b.send_bytes(&b.recv_bytes().unwrap()).unwrap();
        b
    });
    a.send_bytes(b"echo").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"echo");
    drop(t.join().unwrap());
    assert!(matches!(a.recv_bytes(), Err(Error::Eof)));
}

/// A receive that times out has waited (draining the doorbell, lowering the flag): a
/// watched `fileno` must still become readable when the next message comes.
#[test]
fn fileno_stays_exact_after_a_receive_times_out() {
    let (a, b) = shmpipe::pipe(true).unwrap();
    let fd = b.fileno().unwrap();
    b.set_read_timeout(Some(std::time::Duration::from_millis(1)))
        .unwrap();
    assert!(matches!(b.recv_bytes(), Err(Error::Timeout)));
    a.send_bytes(b"after").unwrap();
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on the connection's own descriptor; 60 s stands in for "never".
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 60_000) }, 1);
    assert_eq!(b.recv_bytes().unwrap(), b"after");
}

/// A message sent in pieces arrives as one, whole or fragmented (longer than the ring).
#[test]
fn a_vectored_send_arrives_as_one_message() {
    let (a, b) = shmpipe::Builder::new().capacity(4096).build().unwrap();
    let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    let t = std::thread::spawn(move || {
        a.send_bytes_vectored(&[b"x", &big[..50_000], b"", &big[50_000..]])
            .unwrap();
        a.send_bytes_vectored(&[b"small", b"!"]).unwrap();
        a.send_bytes_vectored(&[]).unwrap();
    });
    let got = b.recv_bytes().unwrap();
    assert_eq!(got.len(), 100_001);
    assert_eq!(got[0], b'x');
    assert!(got[1..].iter().enumerate().all(|(i, &v)| v == i as u8));
    assert_eq!(b.recv_bytes().unwrap(), b"small!");
    assert_eq!(b.recv_bytes().unwrap(), b"");
    t.join().unwrap();
}
