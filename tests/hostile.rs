//! A hostile or broken process writing over the shared region. Whatever it writes,
//! every call returns, with data or an error, without panicking, hanging or touching
//! memory outside the region.

mod common;

use common::{fork, layout, memfd_of, RawRegion, Rng};
use shmpipe::{pipe, Builder, Connection, Error, RingIndex, Violation};
use std::time::Duration;

/// Runs `scribble` on the region behind `conn` in another process.
fn scribble_from_another_process(conn: &Connection, scribble: impl FnOnce(&RawRegion)) {
    let fd = memfd_of(conn);
    fork(|| {
        scribble(&RawRegion::map(fd));
        0
    })
    .join();
}

#[test]
fn an_impossible_head_breaks_that_direction_only() {
    let (a, b) = pipe(true).unwrap();
    b.send_bytes(b"to a").unwrap();
    scribble_from_another_process(&a, |r| r.write_u64(layout::RING0_HEAD, 1 << 50));
    match a.recv_bytes() {
        Err(Error::Corrupt(Violation::ImpossibleIndex {
            index: RingIndex::Head,
            published,
            ..
        })) => assert_eq!(published, 1 << 50),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(a.recv_bytes(), Err(Error::Corrupt(_))),
        "stays broken"
    );
    assert!(matches!(
        a.poll(Some(Duration::ZERO)),
        Err(Error::Corrupt(_))
    ));
    // The other direction is untouched.
    a.send_bytes(b"to b").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"to b");
}

/// Regression (the one-pass receive keeps a flag of its own for "nothing unusual"): once
/// a direction broke, `recv_bytes_into` reports it, even when the ring looks sound again
/// and a whole message is waiting.
#[test]
fn a_broken_direction_stays_broken_for_the_one_pass_receive() {
    let (a, b) = pipe(true).unwrap();
    b.send_bytes(b"to a").unwrap();
    let head = 32; // one record: a 16-byte header and 4 bytes padded to 16
    scribble_from_another_process(&a, |r| r.write_u64(layout::RING0_HEAD, 1 << 50));
    let mut buf = [0u8; 64];
    assert!(matches!(
        a.recv_bytes_into(&mut buf),
        Err(Error::Corrupt(_))
    ));
    scribble_from_another_process(&a, |r| r.write_u64(layout::RING0_HEAD, head));
    assert!(
        matches!(a.recv_bytes_into(&mut buf), Err(Error::Corrupt(_))),
        "stays broken"
    );
}

/// Regression (as above): with a message half received, the next `recv_bytes_into` goes
/// on with it, and a whole record where its next fragment belongs is a protocol
/// violation, not a message to deliver.
#[test]
fn a_whole_record_inside_a_half_received_message_is_reported() {
    const WHOLE: u32 = 0x5348_0001;
    const FIRST: u32 = 0x5348_0002;
    let (a, _b) = pipe(true).unwrap();
    // A first fragment of 16 bytes announcing 1000, as the peer's writer would make it.
    scribble_from_another_process(&a, |r| {
        r.write_u32(layout::RING0_DATA, FIRST);
        r.write_u32(layout::RING0_DATA + 4, 16);
        r.write_u64(layout::RING0_DATA + 8, 1000);
        r.write_u64(layout::RING0_HEAD, 32);
    });
    a.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2000];
    assert!(matches!(
        a.recv_bytes_into(&mut buf),
        Err(Error::WouldBlock)
    ));
    // Then a whole message of 4 bytes instead of the next fragment.
    scribble_from_another_process(&a, |r| {
        r.write_u32(layout::RING0_DATA + 32, WHOLE);
        r.write_u32(layout::RING0_DATA + 36, 4);
        r.write_u64(layout::RING0_DATA + 40, 0);
        r.write_u64(layout::RING0_HEAD, 64);
    });
    assert!(matches!(
        a.recv_bytes_into(&mut buf),
        Err(Error::Corrupt(_))
    ));
}

#[test]
fn an_impossible_tail_is_reported_to_the_writer() {
    let (a, b) = Builder::new().capacity(4096).build().unwrap();
    // Fill a's outgoing ring (ring 1) so the next send must look at the tail.
    a.send_bytes(&[1; 2000]).unwrap();
    a.send_bytes(&[2; 2000]).unwrap();
    scribble_from_another_process(&a, |r| r.write_u64(layout::RING1_TAIL, 1 << 40));
    // 64 bytes are left by the writer's last count; this needs more, so it reloads.
    match a.send_bytes(&[3; 100]) {
        Err(Error::Corrupt(Violation::ImpossibleIndex {
            index: RingIndex::Tail,
            published,
            ..
        })) => assert_eq!(published, 1 << 40),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(a.send_bytes(b"x"), Err(Error::Corrupt(_))),
        "stays broken"
    );
    b.send_bytes(b"still fine").unwrap();
    assert_eq!(a.recv_bytes().unwrap(), b"still fine");
}

#[test]
fn a_record_length_past_the_data_is_reported() {
    let (a, b) = pipe(true).unwrap();
    b.send_bytes(b"hello").unwrap();
    // The record header is [kind u32][len u32][aux u64] at the start of ring 0's data.
    scribble_from_another_process(&a, |r| {
        let word = r.read_u64(layout::RING0_DATA);
        r.write_u64(
            layout::RING0_DATA,
            (word & 0xffff_ffff) | (0xffff_fff0u64 << 32),
        );
    });
    assert!(matches!(a.recv_bytes(), Err(Error::Corrupt(_))));
}

/// A 4 KiB pipe whose reader `a` has the first fragment of a 5000-byte message waiting
/// at the start of its ring, sent by a thread that returns the writing end when done
/// (with `BrokenPipe` once the reader gives up, or with success).
fn first_fragment_waiting() -> (Connection, std::thread::JoinHandle<Connection>) {
    let (a, b) = Builder::new().capacity(4096).build().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = b.send_bytes(&[9; 5000]); // FIRST, MIDDLE..., LAST
        b
    });
    assert!(a.poll(None).unwrap());
    (a, sender)
}

#[test]
fn a_forged_fragment_sequence_is_reported() {
    let (a, sender) = first_fragment_waiting();
    // Turn the first fragment into a MIDDLE fragment.
    scribble_from_another_process(&a, |r| {
        let word = r.read_u64(layout::RING0_DATA);
        r.write_u64(layout::RING0_DATA, (word & !0xffff_ffff) | 0x5348_0003);
    });
    assert!(matches!(a.recv_bytes(), Err(Error::Corrupt(_))));
    // The sender may be blocked on the ring the reader gave up on: closing the reader
    // lets it finish with BrokenPipe or success, either is fine here.
    drop(a);
    drop(sender.join().unwrap());
}

/// Random bytes written over the header, the control block and the data of the ring
/// being read, by another process, after which the reader drains the ring. The writer
/// has closed its end, so a blocking receive can only end in data, EOF or an error.
#[test]
fn random_scribbles_never_panic_or_hang() {
    let mut outcomes = [0usize; 3];
    for seed in 1..=300u64 {
        // Room for every message sent below, so the sender never waits for a reader.
        let (a, b) = Builder::new().capacity(16 * 1024).build().unwrap();
        let mut rng = Rng(seed);
        for i in 0..rng.below(6) {
            b.send_bytes(&common::message(i, rng.below(1500) as usize))
                .unwrap();
        }
        drop(b);
        let writes = 1 + rng.below(16);
        let spots: Vec<(usize, u8)> = (0..writes)
            .map(|_| {
                // Mostly the indices and the first records, sometimes anywhere.
                let off = match rng.below(4) {
                    0 => layout::RING0_HEAD + rng.below(16) as usize,
                    1 => layout::RING0_TAIL + rng.below(16) as usize,
                    2 => layout::RING0_DATA + rng.below(256) as usize,
                    _ => rng.below(8192 + 16 * 1024) as usize,
                };
                (off, rng.next() as u8)
            })
            .collect();
        scribble_from_another_process(&a, |r| {
            for &(off, v) in &spots {
                r.write_u8(off, v);
            }
        });
        let mut buf = [0u8; 4096];
        for round in 0.. {
            assert!(round < 10_000, "seed {seed}: the reader never stopped");
            let r = if round % 2 == 0 {
                a.recv_bytes().map(|m| m.len())
            } else {
                a.recv_bytes_into(&mut buf)
            };
            match r {
                Ok(_) => continue,
                Err(Error::Eof) => outcomes[0] += 1,
                Err(Error::Corrupt(_)) => outcomes[1] += 1,
                Err(Error::BufferTooShort(_)) => {
                    outcomes[2] += 1;
                    continue;
                }
                Err(e) => panic!("seed {seed}: unexpected {e}"),
            }
            break;
        }
    }
    // Both kinds of ending happen: the test exercises the checks, not only clean EOFs.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

#[test]
fn attach_refuses_a_region_whose_header_lies() {
    let (a, _b) = pipe(true).unwrap();
    let (_, fds) = common::passed(&a);
    let region = RawRegion::map(fds[0].0);
    let capacity = region.read_u64(layout::HEADER_CAPACITY);
    for (i, (off, bad)) in [(layout::HEADER_CAPACITY, 12345u64), (0, 0), (8, 99)]
        .iter()
        .enumerate()
    {
        let old = region.read_u64(*off);
        region.write_u64(*off, *bad);
        // Duplicates of the end's descriptors, not close-on-exec, as an exec'd child
        // would hold them; `from_parent` refuses them and must not close them.
        // SAFETY: dup(2) of open descriptors.
        let dups: Vec<i32> = fds
            .iter()
            .map(|&(fd, ..)| unsafe { libc::dup(fd) })
            .collect();
        let named: Vec<String> = fds
            .iter()
            .zip(&dups)
            .map(|(&(_, dev, ino), dup)| format!("{dup}/{dev}/{ino}"))
            .collect();
        let key = format!("SHMPIPE_LYING_{i}");
        std::env::set_var(&key, format!("shmpipe2:0:{}", named.join(":")));
        assert!(matches!(
            Connection::from_parent(&key),
            Err(Error::Invalid(_))
        ));
        for fd in dups {
            assert!(common::is_open(fd), "from_parent closed what it refused");
            // SAFETY: our own dup.
            unsafe { libc::close(fd) };
        }
        region.write_u64(*off, old);
    }
    assert_eq!(region.read_u64(layout::HEADER_CAPACITY), capacity);
    // The process's own connection was never affected: it never re-reads the header.
    a.send_bytes(b"fine").unwrap();
}

/// Found by the fuzzer: a first fragment announcing a message shorter than itself made
/// `recv_bytes_into` copy the fragment into a buffer of the announced size (a panic on
/// an out-of-range slice) before checking it.
#[test]
fn a_first_fragment_longer_than_its_message_is_reported() {
    let (a, sender) = first_fragment_waiting();
    // The FIRST record's `aux` is the message's total length: claim 1 byte.
    scribble_from_another_process(&a, |r| r.write_u64(layout::RING0_DATA + 8, 1));
    let mut buf = [0u8; 64];
    match a.recv_bytes_into(&mut buf) {
        Err(Error::Corrupt(Violation::BadFirstFragment { total: 1, .. })) => {}
        other => panic!("{other:?}"),
    }
    drop(a);
    drop(sender.join().unwrap());
}

/// A first fragment announcing 2^40 bytes: every receive that would allocate refuses it
/// at once with `MessageTooLong` (against the 1 GiB default), before allocating or
/// consuming anything. The old code had no limit: it reserved memory from the announced
/// total and went on growing for as long as fragments came.
#[test]
fn an_announced_length_past_the_limit_is_refused_before_any_allocation() {
    let (a, sender) = first_fragment_waiting();
    scribble_from_another_process(&a, |r| r.write_u64(layout::RING0_DATA + 8, 1 << 40));
    let too_long = |r: Result<(), Error>| match r {
        Err(Error::MessageTooLong { len, max }) => {
            assert_eq!((len, max), (1 << 40, 1 << 30));
        }
        other => panic!("{other:?}"),
    };
    too_long(a.recv_bytes().map(drop));
    too_long(a.recv::<Vec<u8>>().map(drop));
    too_long(a.recv_archived::<Vec<u8>>().map(drop));
    too_long(a.recv_bytes_into(&mut [0u8; 64]).map(drop));
    // Nothing was consumed: it is still there, for a caller that asks for more.
    a.set_max_message_size(usize::MAX).unwrap();
    match a.recv_bytes_max(10) {
        Err(Error::MessageTooLong { len, .. }) => assert_eq!(len, 1 << 40),
        other => panic!("{other:?}"),
    }
    drop(a);
    drop(sender.join().unwrap());
}

/// How a receive may wait in [`a_flood_of_cancelled_messages_does_not_outlast_a_deadline`].
#[derive(Clone, Copy, Debug)]
enum Mode {
    Timeout,
    NonBlocking,
}

/// A writer that keeps publishing messages it then cancels (a first fragment, empty
/// middle fragments or none, a cancel) does not keep a receive past its deadline, nor a
/// non-blocking receive at all: each skipped record counts against the call. The flood
/// goes on until the receive has returned (or, on a reader that looked at the deadline
/// only with the ring empty, until its bound, and then the receive got the message sent
/// after it instead of an error).
#[test]
fn a_flood_of_cancelled_messages_does_not_outlast_a_deadline() {
    use std::sync::atomic::Ordering::SeqCst;
    for (mode, middles) in [
        (Mode::Timeout, 0),
        (Mode::NonBlocking, 0),
        (Mode::Timeout, 3),
        (Mode::NonBlocking, 3),
    ] {
        let (r, w) = pipe(false).unwrap();
        let (flooding, stop) = (common::SharedWord::new(), common::SharedWord::new());
        let child = fork(|| {
            for n in 0..20_000_000u64 {
                if stop.get().load(SeqCst) != 0 {
                    break;
                }
                if !shmpipe::__fuzz::write_cancelled_message(&w, 1 << 20, middles) {
                    return 1;
                }
                if n == 1000 {
                    flooding.get().store(1, SeqCst);
                }
            }
            w.send_bytes(b"after the flood").unwrap();
            0
        });
        drop(w);
        while flooding.get().load(SeqCst) == 0 {
            std::thread::yield_now();
        }
        match mode {
            Mode::Timeout => r.set_read_timeout(Some(Duration::from_millis(50))).unwrap(),
            Mode::NonBlocking => r.set_nonblocking(true).unwrap(),
        }
        let got = r.recv_bytes();
        let mut buf = [0u8; 64];
        let got_into = r.recv_bytes_into(&mut buf);
        stop.get().store(1, SeqCst);
        let spent = |e: Option<&Error>| match mode {
            Mode::Timeout => matches!(e, Some(Error::Timeout)),
            Mode::NonBlocking => matches!(e, Some(Error::WouldBlock)),
        };
        assert!(spent(got.as_ref().err()), "{mode:?} {middles}: {got:?}");
        assert!(
            spent(got_into.as_ref().err()),
            "{mode:?} {middles}: {got_into:?}"
        );
        // Nothing real was lost: the message after the flood arrives.
        r.set_nonblocking(false).unwrap();
        r.set_read_timeout(None).unwrap();
        assert_eq!(r.recv_bytes().unwrap(), b"after the flood");
        child.join();
    }
}
