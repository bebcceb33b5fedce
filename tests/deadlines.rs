//! Read and write timeouts and non-blocking mode, between processes, with 4 KiB rings
//! and messages of megabytes (hundreds of fragments each): a call that gives up consumes
//! or delivers nothing, and the pipe goes on carrying whole messages.

mod common;

use common::{fork, Crossed, Exit};
use shmpipe::{Builder, Connection, Error};
use std::time::Duration;

const RING: usize = 4096;
const BIG: usize = 3 << 20;

/// Message `i`: its length and every byte depend on `i`, so a torn, mixed or misplaced
/// message cannot pass for it. The first 8 bytes are `i`.
fn message(i: u64, len: usize) -> Vec<u8> {
    let mut m = Vec::new();
    common::stream::fill(i, len.max(8), &mut m);
    m[..8].copy_from_slice(&i.to_le_bytes());
    m
}

fn index_of(m: &[u8]) -> u64 {
    u64::from_le_bytes(m[..8].try_into().unwrap())
}

fn pipe4k() -> (Connection, Connection) {
    Builder::new().capacity(RING).build().unwrap()
}

/// A 4 KiB pipe whose other end is held only by a forked child running `f`: returns
/// this process's end and the child.
fn with_writer(f: impl FnOnce(&Connection)) -> (Connection, common::Child) {
    let mut ends = Some(pipe4k());
    let child = fork(|| {
        let (a, b) = ends.take().unwrap();
        drop(a);
        f(&b);
        0
    });
    let (a, b) = ends.take().unwrap();
    drop(b);
    (a, child)
}

/// Receives one message with the method `round` picks, retrying while the call gives up
/// (`Timeout` or `WouldBlock`); returns it and how often the call gave up.
fn receive_retrying(c: &Connection, round: u64, buf: &mut [u8]) -> Result<(Vec<u8>, u32), Error> {
    let mut gave_up = 0;
    loop {
        let r = match round % 3 {
            0 => c.recv_bytes(),
            1 => c.recv_bytes_into(buf).map(|n| buf[..n].to_vec()),
            _ => c.recv::<Vec<u8>>(),
        };
        match r {
            Ok(m) => return Ok((m, gave_up)),
            Err(Error::Timeout | Error::WouldBlock) => gave_up += 1,
            Err(e) => return Err(e),
        }
    }
}

/// A sender streams long typed and byte messages (typed ones so that `recv::<T>` can
/// read them; a typed `Vec<u8>` is its bytes after an 8-byte header, which the check
/// below skips).
fn stream_to(end: &Connection, count: u64) {
    for i in 0..count {
        let len = if i.is_multiple_of(2) {
            BIG
        } else {
            100 + i as usize
        };
        end.send(&message(i, len)).unwrap();
    }
}

fn check_stream(reader: &Connection, count: u64) -> u32 {
    let mut gave_up = 0;
    let mut buf = vec![0u8; BIG + 64];
    for i in 0..count {
        let (m, g) = receive_retrying(reader, i, &mut buf).unwrap();
        gave_up += g;
        // recv::<Vec<u8>> gives the vector; the byte methods give its archive, whose
        // payload comes first.
        let want = message(
            i,
            if i.is_multiple_of(2) {
                BIG
            } else {
                100 + i as usize
            },
        );
        assert_eq!(&m[..want.len()], &want[..], "message {i} is not whole");
        assert_eq!(index_of(&m), i);
    }
    assert!(matches!(reader.recv_bytes(), Err(Error::Eof)));
    gave_up
}

#[test]
fn non_blocking_receives_resume_a_long_message_and_get_it_whole() {
    let (a, writer) = with_writer(|b| stream_to(b, 6));
    a.set_nonblocking(true).unwrap();
    let gave_up = check_stream(&a, 6);
    // A 3 MiB message through a 4 KiB ring cannot be received without waiting.
    assert!(gave_up > 0);
    writer.join();
}

#[test]
fn receives_that_time_out_resume_a_long_message_and_get_it_whole() {
    let (a, writer) = with_writer(|b| stream_to(b, 6));
    a.set_read_timeout(Some(Duration::from_nanos(1))).unwrap();
    check_stream(&a, 6);
    writer.join();
}

/// The writer gives up on a long message after some fragments, with the reader holding
/// part of it: the reader never delivers any of it, and the next message comes whole.
#[test]
fn a_send_that_times_out_is_taken_back_and_the_pipe_goes_on() {
    let (mut data, mut control) = (Some(pipe4k()), Crossed::new(RING));
    let writer = fork(|| {
        let (_, w) = data.take().unwrap();
        let (_, told) = control.child();
        w.set_write_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        // Nobody reads the rest: it times out after a few fragments.
        assert!(matches!(
            w.send_bytes(&message(1, BIG)),
            Err(Error::Timeout)
        ));
        told.send_bytes(b"timed out").unwrap();
        w.send_bytes(&message(2, 1000)).unwrap();
        w.set_write_timeout(None).unwrap();
        w.send_bytes(&message(3, BIG)).unwrap();
        0
    });
    let (r, _) = data.take().unwrap();
    let (_, told) = control.parent();
    // Take the fragments that are there, without waiting for the rest.
    assert!(r.poll(None).unwrap());
    r.set_nonblocking(true).unwrap();
    assert!(matches!(r.recv_bytes(), Err(Error::WouldBlock)));
    assert_eq!(told.recv_bytes().unwrap(), b"timed out");
    r.set_nonblocking(false).unwrap();
    assert_eq!(
        r.recv_bytes().unwrap(),
        message(2, 1000),
        "the cancelled message was skipped"
    );
    assert_eq!(r.recv_bytes().unwrap(), message(3, BIG));
    writer.join();
}

/// A writer whose sends keep timing out part-way: exactly the messages whose send
/// returned `Ok` arrive, whole and in order.
#[test]
fn only_messages_whose_send_returned_ok_arrive() {
    let (a, writer) = with_writer(|b| {
        let mut sent = 0u64;
        for i in 0..40u64 {
            let timeout = (!i.is_multiple_of(3)).then(|| Duration::from_micros(50 * (i % 7 + 1)));
            b.set_write_timeout(timeout).unwrap();
            let len = if i.is_multiple_of(4) {
                200
            } else {
                (1 << 20) + i as usize
            };
            match b.send_bytes(&message(i, len)) {
                Ok(()) => sent += 1,
                Err(Error::Timeout) => {}
                Err(e) => panic!("{e}"),
            }
        }
        eprintln!("writer: {sent} of 40 sends returned Ok");
        b.set_write_timeout(None).unwrap();
        b.send_bytes(&u64::MAX.to_le_bytes()).unwrap();
        b.send_bytes(&sent.to_le_bytes()).unwrap();
    });
    // A slow reader: it takes one message at a time, with its own tiny timeouts.
    a.set_read_timeout(Some(Duration::from_micros(30))).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2 << 20];
    loop {
        let (m, _) = receive_retrying(&a, got.len() as u64 % 2, &mut buf).unwrap();
        if m.len() == 8 && index_of(&m) == u64::MAX {
            break;
        }
        let i = index_of(&m);
        let len = if i.is_multiple_of(4) {
            200
        } else {
            (1 << 20) + i as usize
        };
        assert_eq!(m, message(i, len), "message {i} is not whole");
        assert!(got.last().is_none_or(|&last| last < i), "out of order");
        got.push(i);
    }
    let (count, _) = receive_retrying(&a, 0, &mut buf).unwrap();
    let sent = u64::from_le_bytes(count[..8].try_into().unwrap());
    assert_eq!(got.len() as u64, sent);
    writer.join();
}

#[test]
fn a_non_blocking_send_sends_a_whole_message_or_nothing() {
    let (a, b) = pipe4k();
    a.set_nonblocking(true).unwrap();
    a.send_bytes(&message(1, 3000)).unwrap(); // fragmented, fits in the empty ring
    assert!(matches!(
        a.send_bytes(&message(2, 3000)),
        Err(Error::WouldBlock)
    ));
    assert!(matches!(
        a.send_bytes(&message(3, 10_000)),
        Err(Error::WouldBlock)
    ));
    a.send_bytes(&message(4, 500)).unwrap(); // fits in what is left
    assert!(matches!(a.send(&vec![0u8; 2000]), Err(Error::WouldBlock)));
    assert_eq!(b.recv_bytes().unwrap(), message(1, 3000));
    assert_eq!(b.recv_bytes().unwrap(), message(4, 500));
    b.set_nonblocking(true).unwrap();
    assert!(matches!(b.recv_bytes(), Err(Error::WouldBlock)));
    assert!(matches!(b.recv::<u8>(), Err(Error::WouldBlock)));
    assert!(matches!(b.recv_archived::<u8>(), Err(Error::WouldBlock)));
    assert!(matches!(
        b.recv_bytes_into(&mut [0; 8]),
        Err(Error::WouldBlock)
    ));
    // A message longer than the ring can never go without waiting.
    assert!(matches!(a.send_bytes(&[0; 5000]), Err(Error::WouldBlock)));
    a.set_nonblocking(false).unwrap();
    a.send(&7u32).unwrap();
    assert_eq!(b.recv::<u32>().unwrap(), 7);
}

#[test]
fn eof_and_broken_pipe_win_over_timeouts_and_would_block() {
    let (a, b) = pipe4k();
    b.set_read_timeout(Some(Duration::from_secs(3600))).unwrap();
    a.set_write_timeout(Some(Duration::from_secs(3600)))
        .unwrap();
    a.send_bytes(&[1; 2000]).unwrap();
    a.send_bytes(&[2; 2000]).unwrap();
    let mut ends = Some((a, b));
    let writer = fork(|| {
        let (a, b) = ends.take().unwrap();
        drop(b);
        // Blocks for room until the reader goes away.
        match a.send_bytes(&[3; 2000]) {
            Err(Error::BrokenPipe) => 0,
            _ => 1,
        }
    });
    let (a, b) = ends.take().unwrap();
    drop(a);
    writer.wait_until_sleeping();
    // In a child of its own: a fork by another test of this (multi-threaded) harness
    // between making the pipe and dropping `d` would give that test's child a copy of
    // `d`, and `c` no EOF until it exits. A forked child has one thread.
    let checker = fork(|| {
        let (c, d) = pipe4k();
        drop(d);
        c.set_nonblocking(true).unwrap();
        let eof = matches!(c.recv_bytes(), Err(Error::Eof));
        let broken = matches!(c.send_bytes(b"x"), Err(Error::BrokenPipe));
        match (eof, broken) {
            (true, true) => 0,
            (false, _) => 1, // WouldBlock instead of EOF
            (true, false) => 2,
        }
    });
    assert_eq!(
        checker.wait(),
        Exit::Code(0),
        "EOF and BrokenPipe, not WouldBlock"
    );
    drop(b);
    writer.join();
}

#[test]
fn timeouts_are_set_per_end_and_checked() {
    let (a, b) = pipe4k();
    assert!(matches!(
        a.set_read_timeout(Some(Duration::ZERO)),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        a.set_write_timeout(Some(Duration::ZERO)),
        Err(Error::Invalid(_))
    ));
    a.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
    a.set_write_timeout(Some(Duration::from_millis(2))).unwrap();
    assert_eq!(a.read_timeout(), Some(Duration::from_millis(1)));
    assert_eq!(a.write_timeout(), Some(Duration::from_millis(2)));
    assert_eq!((b.read_timeout(), b.write_timeout()), (None, None));
    assert!(matches!(a.recv_bytes(), Err(Error::Timeout)));
    a.set_read_timeout(None).unwrap();
    assert_eq!(a.read_timeout(), None);
    let mut a = a;
    a.close();
    assert!(matches!(a.set_nonblocking(true), Err(Error::Closed)));
    assert!(matches!(a.set_read_timeout(None), Err(Error::Closed)));
    assert!(!a.is_nonblocking());
}

/// A message whose send timed out part-way was cancelled by its writer: nothing to
/// receive, so `poll` does not report it (before, it said true and the receive that
/// followed timed out), and the messages after it are reported and received as usual.
#[test]
fn poll_does_not_report_a_cancelled_message() {
    let (r, w) = Builder::new().capacity(RING).duplex(false).build().unwrap();
    fork(|| {
        w.set_write_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        // Nobody reads yet: it fills the ring, times out and is cancelled.
        match w.send_bytes(&[7; 3 * RING]) {
            Err(Error::Timeout) => 0,
            _ => 1,
        }
    })
    .join();
    assert!(!r.poll(Some(Duration::ZERO)).unwrap());
    assert!(!r.poll(Some(Duration::from_millis(1))).unwrap());
    r.set_nonblocking(true).unwrap();
    assert!(matches!(r.recv_bytes(), Err(Error::WouldBlock)));
    w.send_bytes(b"next").unwrap();
    assert!(r.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(r.recv_bytes().unwrap(), b"next");
}
