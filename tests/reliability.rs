//! Under load and misuse: a soak in both directions at once, and two processes writing
//! on the same end.
//!
//! The soak's short version runs in `cargo test`; the long one (10^8 messages each way
//! by default) with
//! `cargo test --release --test reliability -- --ignored soak_long --nocapture`
//! (`SHMPIPE_SOAK_MESSAGES=N` to change the count).

mod common;

use common::stream::{fill, size_of};
use common::{fork, Crossed};
use shmpipe::{Builder, Connection, Error};
use std::time::Instant;

const CAPACITY: usize = 4096;

/// The tests here fork children that run for a while; run one at a time so that no
/// child inherits (and keeps open) the ends of another test's pipes, which would delay
/// that test's EOF or broken pipe until the child exits.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn send_stream(conn: Connection, seed: u64, n: u64) {
    let mut buf = Vec::new();
    for i in 0..n {
        fill(i ^ seed, size_of(i, seed, CAPACITY), &mut buf);
        conn.send_bytes(&buf).unwrap();
    }
}

/// Receives and checks `n` messages, then expects EOF.
fn check_stream(conn: Connection, seed: u64, n: u64) {
    let mut got = vec![0u8; 4 * CAPACITY];
    let mut want = Vec::new();
    for i in 0..n {
        let len = conn.recv_bytes_into(&mut got).unwrap();
        fill(i ^ seed, size_of(i, seed, CAPACITY), &mut want);
        assert!(
            got[..len] == want[..],
            "message {i} of stream {seed:#x} differs"
        );
    }
    assert!(
        matches!(conn.recv_bytes(), Err(Error::Eof)),
        "EOF after the last message"
    );
}

/// Streams `n` checksummed messages each way between two processes at once: each
/// process sends on one thread and receives on another.
fn soak(n: u64) {
    let _one_at_a_time = serial();
    let mut pipes = Crossed::new(CAPACITY);
    let child = fork(|| {
        let (down, up) = pipes.child();
        let sender = std::thread::spawn(move || send_stream(up, 0xC0FFEE, n));
        check_stream(down, 0xD00D, n);
        sender.join().unwrap();
        0
    });
    let (down, up) = pipes.parent();
    let start = Instant::now();
    let sender = std::thread::spawn(move || send_stream(down, 0xD00D, n));
    check_stream(up, 0xC0FFEE, n);
    sender.join().unwrap();
    child.join();
    eprintln!("soak: {n} messages each way in {:?}", start.elapsed());
}

#[test]
fn soak_short() {
    soak(100_000);
}

#[test]
#[ignore = "long: run with --ignored (see the file's documentation)"]
fn soak_long() {
    let n = std::env::var("SHMPIPE_SOAK_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok());
    soak(n.unwrap_or(100_000_000));
}

/// Two processes writing on the same end at once: whatever happens, every call returns
/// a documented result (data, `Corrupt` for detected concurrent use, `BrokenPipe` once the
/// reader gives up), nothing crashes or hangs, and the other direction is unaffected.
///
/// A writer that finds `head` moved by the other gets `Corrupt` and stops, so the reader
/// may get fewer messages than were sent; and the parent keeps its copy of `b` (it needs
/// it afterwards), so the reader cannot wait for EOF. It stops instead once both writers
/// have finished (`done`) and nothing is left to read.
///
/// The writer publishes with a check and a plain store, not a compare-and-swap (which
/// cost more than the rest of a 64 B message: DESIGN.md, "Why the writer has no
/// fence"), so two publishes at the very same moment can both pass the check, and one
/// message is lost without an error, as Python's `Pipe` can lose or mix data under the
/// same misuse. What the test holds to: nothing is received that was not sent.
#[test]
fn two_processes_on_one_end_break_only_that_direction() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    let _one_at_a_time = serial();
    const PER_WRITER: u32 = 50_000;
    let (a, b) = Builder::new().capacity(CAPACITY).build().unwrap();
    let (mut a, b) = (Some(a), b);
    // The child reports how many of its sends succeeded on a pipe of its own.
    let (report_r, report_w) = Builder::new().duplex(false).build().unwrap();
    let (report_r, mut report_w) = (report_r, Some(report_w));
    // Each writer's result: how many sends returned `Ok`, and how it stopped (0: sent
    // everything, 1: told `Corrupt`, 2: `BrokenPipe`).
    let writes = |who: u8| -> (u64, u8) {
        for i in 0..PER_WRITER {
            match b.send_bytes(&[who; 24]) {
                Ok(()) => {}
                Err(Error::Corrupt(_)) => return (i.into(), 1),
                Err(Error::BrokenPipe) => return (i.into(), 2),
                Err(e) => panic!("writer {who}, message {i}: {e}"),
            }
        }
        (PER_WRITER.into(), 0)
    };
    let child = fork(|| {
        drop(a.take()); // only the parent reads
        let (sent, how) = writes(2);
        let report = report_w.take().unwrap();
        report.send(&(sent, how)).unwrap();
        0
    });
    drop(report_w.take());
    let a = a.take().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut received = 0u64;
            let mut detected = false;
            loop {
                // Read `done` before looking at the ring: once it is set every write is
                // over, so an empty ring stays empty.
                let finished = done.load(Ordering::SeqCst);
                match a.poll(Some(Duration::from_millis(50))) {
                    Ok(true) => match a.recv_bytes() {
                        Ok(m) => {
                            // Both writers fill the same slots, so a message may hold
                            // either's bytes, even a mix; nothing else.
                            assert_eq!(m.len(), 24, "message {received} has the wrong length");
                            assert!(m.iter().all(|&x| x == 1 || x == 2), "{m:?}");
                            received += 1;
                        }
                        Err(Error::Corrupt(_)) => {
                            detected = true;
                            break;
                        }
                        Err(e) => panic!("reader: {e}"),
                    },
                    Ok(false) if finished => break,
                    Ok(false) => {}
                    Err(Error::Corrupt(_)) => {
                        detected = true;
                        break;
                    }
                    Err(e) => panic!("reader poll: {e}"),
                }
            }
            // The reading direction may be broken; the other one is not.
            a.send_bytes(b"the other direction").unwrap();
            (received, detected) // dropping `a` lets a writer blocked on the full ring finish
        })
    };
    let mine = writes(1);
    let theirs: (u64, u8) = report_r.recv().unwrap();
    child.join();
    done.store(true, Ordering::SeqCst);
    let (received, detected) = reader.join().unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"the other direction");
    eprintln!(
        "misuse: writers (sent, stop) {mine:?} and {theirs:?}, reader got {received} \
         messages, reader detected: {detected}"
    );
    // A failed send published nothing, and no message was delivered twice. (With the
    // reader detecting the collision it stopped early, so this holds all the more.)
    assert!(
        received <= mine.0 + theirs.0,
        "received {received}, sent {}",
        mine.0 + theirs.0
    );
}

/// Two processes receiving on the same end at once, with every receive method, while
/// the writer streams messages of up to 4x a 4 KiB ring (so records are overwritten as
/// soon as they are released, and long messages come in fragments): each message goes
/// to at most one reader, whole (a reader that loses the race to release or to claim a
/// record gets `Corrupt`, never a copy the writer may already be overwriting), each
/// reader sees its share in order, nothing hangs, and the other direction still works.
#[test]
fn two_processes_reading_one_end_never_get_a_torn_or_repeated_message() {
    let _one_at_a_time = serial();
    const MESSAGES: u32 = 20_000;
    const STOP: u32 = u32::MAX;
    let (a, b) = Builder::new().capacity(CAPACITY).build().unwrap();
    let (mut a, mut b) = (Some(a), Some(b));
    let (report_r, report_w) = Builder::new().duplex(false).build().unwrap();
    let (mut report_r, mut report_w) = (Some(report_r), Some(report_w));
    // Message `i`: its number, then bytes that depend on it, 0 to 16 KiB in all.
    let message = |i: u32| {
        let mut m = i.to_le_bytes().to_vec();
        m.extend_from_slice(&common::message(
            u64::from(i),
            size_of(i.into(), 0xAB, CAPACITY),
        ));
        m
    };
    let unarchive = |raw: &[u8]| {
        let mut aligned = rkyv::util::AlignedVec::<16>::new();
        aligned.extend_from_slice(raw);
        rkyv::from_bytes::<Vec<u8>, rkyv::rancor::Error>(&aligned).expect("a whole archive")
    };
    // Receives until a stop mark or an error, rotating through the receive methods:
    // (numbers in the order received, whether the reader was told `Corrupt`).
    let read = |conn: &Connection| -> (Vec<u32>, bool) {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 5 * CAPACITY];
        for round in 0u32.. {
            let m = match round % 4 {
                0 => conn.recv_bytes().map(|raw| unarchive(&raw)),
                1 => conn.recv_bytes_into(&mut buf).map(|n| unarchive(&buf[..n])),
                2 => conn
                    .recv_archived::<Vec<u8>>()
                    .map(|m| m.as_slice().to_vec()),
                // SAFETY: the writer is shmpipe; the other reader never writes the ring.
                _ => unsafe { conn.recv_archived_in_place::<Vec<u8>>() }
                    .map(|m| m.as_slice().to_vec()),
            };
            match m {
                Ok(m) => {
                    let i = u32::from_le_bytes(m[..4].try_into().unwrap());
                    if i == STOP {
                        return (got, false);
                    }
                    assert_eq!(m, message(i), "message {i} is torn");
                    got.push(i);
                }
                Err(Error::Corrupt(_)) => return (got, true),
                Err(e) => panic!("reader: {e}"),
            }
        }
        unreachable!()
    };
    let child = fork(|| {
        drop((b.take(), report_r.take()));
        let a = a.take().unwrap();
        let outcome = read(&a);
        // The other direction works whatever happened to this one.
        a.send_bytes(b"the other direction").unwrap();
        report_w.take().unwrap().send(&outcome).unwrap();
        0
    });
    drop(report_w.take());
    let (a, b, report_r) = (a.take().unwrap(), b.take().unwrap(), report_r.unwrap());
    // Sends every message as a typed `Vec<u8>` (so that `recv_archived` can read it),
    // then two stop marks, or stops at `BrokenPipe` once both readers have given up.
    let writer = std::thread::spawn(move || {
        for i in (0..MESSAGES).chain([STOP, STOP]) {
            let m = if i == STOP {
                STOP.to_le_bytes().to_vec()
            } else {
                message(i)
            };
            match b.send(&m) {
                Ok(()) => {}
                Err(Error::BrokenPipe) => break,
                Err(e) => panic!("writer: {e}"),
            }
        }
        b.recv_bytes().unwrap()
    });
    let mine = read(&a);
    let theirs: (Vec<u32>, bool) = report_r.recv().unwrap();
    child.join();
    drop(a); // with the child's copy gone too, a writer still sending gets BrokenPipe
    assert_eq!(writer.join().unwrap(), b"the other direction");
    for got in [&mine.0, &theirs.0] {
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order");
    }
    let mut all: Vec<u32> = mine.0.iter().chain(&theirs.0).copied().collect();
    all.sort_unstable();
    let n = all.len();
    all.dedup();
    assert_eq!(all.len(), n, "a message was received twice");
    if !mine.1 && !theirs.1 {
        assert_eq!(n, MESSAGES as usize, "a message vanished");
    }
    eprintln!(
        "two readers: got {} and {} messages, told Corrupt: {} and {}",
        mine.0.len(),
        theirs.0.len(),
        mine.1,
        theirs.1
    );
}
