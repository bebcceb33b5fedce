//! A hostile peer that writes into the ring *while* we read it, not only between calls.
//!
//! The scribbler is a separate process that maps the region (as the process at the
//! other end can) and keeps rewriting the payload of the record the reader is about to
//! read or is reading: the record at the published `tail`. The reader runs in a child of
//! its own, so that a crash shows as a failed exit rather than taking the test binary
//! down. Whatever the scribbler does, every receive must return (a value, `Invalid`,
//! `Corrupt`, `Eof`), and what safe code hands out must be consistent: valid UTF-8,
//! inside the message.
//!
//! Before messages were copied out of the ring, `recv::<T>` validated and deserialized
//! in shared memory and died of SIGSEGV here within a few dozen messages, and the guard
//! of `recv_archived` handed out strings that were not UTF-8 or pointed at the region
//! header.

mod common;

use common::{fork, layout, memfd_of, Exit, RawRegion, Rng};
use shmpipe::{Builder, Connection, Error};

const CAPACITY: usize = 1 << 20;
const MESSAGES: u32 = 300;
const WHOLE: u32 = 0x5348_0001;

/// Rewrites, forever, random words inside the payload of the record at ring 0's
/// published tail (the next record its reader takes), with values that make good
/// relative pointers and lengths: small, negative, huge.
fn scribble_forever(fd: i32) -> ! {
    let r = RawRegion::map(fd);
    // Keep the mapping only: holding copies of the ends' descriptors would keep the
    // pipe open after the reader exits.
    common::close_all_descriptors_but_stdio();
    let mut rng = Rng(0x5EED);
    loop {
        let tail = r.read_u64(layout::RING0_TAIL) & !15;
        let pos = tail as usize % CAPACITY;
        let at = layout::RING0_DATA + pos;
        if pos + 16 > CAPACITY || r.read_u32(at) != WHOLE {
            continue;
        }
        let len = r.read_u32(at + 4) as usize;
        if len < 8 || pos + 16 + len > CAPACITY {
            continue;
        }
        let word = at + 16 + (rng.below(len as u64 / 4) as usize) * 4;
        let value = match rng.below(4) {
            0 => i32::MIN as u32,
            1 => (-(rng.below(1 << 20) as i32)) as u32,
            2 => rng.below(1 << 16) as u32,
            _ => rng.next() as u32,
        };
        r.write_u32(word, value);
    }
}

/// A message with many relative pointers: 4,000 strings, most longer than the 8 bytes
/// rkyv keeps inline.
fn strings() -> Vec<String> {
    (0..4000)
        .map(|i| format!("string number {i:>12}"))
        .collect()
}

/// Streams `strings()` into a 1 MiB pipe whose reader, in a child, runs `read` on every
/// message while another child scribbles; `read` returns false to stop early (the
/// direction broke). Asserts that the reader exited cleanly.
fn race(read: fn(&Connection) -> Result<(), Error>) {
    let (a, b) = Builder::new().capacity(CAPACITY).build().unwrap();
    let scribbler = fork(|| scribble_forever(memfd_of(&a)));
    let reader = fork(|| {
        let mut seen = [0u32; 2];
        for _ in 0..MESSAGES {
            match read(&a) {
                Ok(()) => seen[0] += 1,
                Err(Error::Invalid(_)) => seen[1] += 1,
                // A rewrite can land on the next record's header when the records move:
                // the direction breaks, cleanly. Also the end of the stream.
                Err(Error::Corrupt(_)) | Err(Error::Eof) => break,
                Err(e) => {
                    eprintln!("reader: unexpected {e}");
                    return 2;
                }
            }
        }
        eprintln!("reader: {} valid, {} invalid", seen[0], seen[1]);
        0
    });
    drop(a);
    let value = strings();
    loop {
        match b.send(&value) {
            Ok(()) => {}
            Err(Error::BrokenPipe) => break,
            Err(e) => panic!("sender: {e}"),
        }
    }
    assert_eq!(reader.wait(), Exit::Code(0), "the reader crashed or failed");
    drop(scribbler); // killed
}

#[test]
fn recv_survives_a_peer_rewriting_the_message_while_it_is_read() {
    race(|a| {
        let v = a.recv::<Vec<String>>()?;
        // Deserialized values are ours: reading them must be fine whatever they hold.
        let total: usize = v.iter().map(|s| s.len()).sum();
        std::hint::black_box(total);
        Ok(())
    });
}

#[test]
fn recv_archived_views_stay_consistent_while_the_peer_rewrites_the_ring() {
    race(|a| {
        let m = a.recv_archived::<Vec<String>>()?;
        let bytes = m.as_bytes().as_ptr_range();
        // Hold the message a while, giving the scribbler the processor between passes.
        for _ in 0..8 {
            std::thread::yield_now();
            for s in m.iter() {
                let s: &str = s.as_str();
                // Valid UTF-8 still, and inside the message we validated.
                assert!(std::str::from_utf8(s.as_bytes()).is_ok(), "not UTF-8");
                let range = s.as_bytes().as_ptr_range();
                assert!(
                    range.start >= bytes.start && range.end <= bytes.end,
                    "a string points outside its message"
                );
            }
        }
        Ok(())
    });
}
