//! Entry points for fuzzing the code that reads the shared region (not part of the API).
//!
//! The region is written by another process, so every byte of it is input. These
//! functions turn arbitrary bytes into what a hostile or broken peer could do: write any
//! bytes anywhere in the region (as another process would, here through the memfd with
//! `pwrite`, so no unsafe code is needed), set indices, flags and counters to any value,
//! and interleave that with well-formed records of any kind, length and `aux`. Then the
//! reader drains its ring with every receive method. Whatever the input, each call must
//! return (with data or an error) without panicking, reading out of bounds or looping.
//!
//! Used by `fuzz/fuzz_targets/*.rs` (cargo-fuzz) and by a quick random-input test in
//! `cargo test`. See DESIGN.md, "Guarantees".

use crate::builder::Builder;
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::shm::layout::{self, Header, Layout, RingControl};
use crate::shm::region::Region;
use crate::shm::wire::Kind;
use crossbeam_utils::CachePadded;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

/// Reads fuzz input front to back; past the end everything is zero.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn u8(&mut self) -> u8 {
        self.bytes(1).first().copied().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | u16::from(self.u8()) << 8
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let got = self.bytes(8);
        b[..got.len()].copy_from_slice(got);
        u64::from_le_bytes(b)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The shared-memory end of a connection made by `pipe()`; `None` once closed.
fn shm(conn: &Connection) -> Option<&crate::shm::endpoint::Endpoint> {
    conn.inner.as_ref()?.shm()
}

fn region_of(conn: &Connection) -> &Region {
    &shm(conn).expect("an open pipe() end").shared.region
}

/// Writes like another process would: through the memfd, not through our mapping.
fn scribble(memfd: BorrowedFd<'_>, offset: usize, bytes: &[u8]) {
    // A short or failed write is just a smaller scribble.
    let _ = rustix::io::pwrite(memfd, bytes, offset as u64);
}

/// Offsets of every word of the header and control blocks the other side could corrupt.
fn control_word(layout: Layout, which: u8) -> usize {
    use std::mem::offset_of;
    let ring = layout.control_offset(usize::from(which / 9) % layout.rings);
    let detached = offset_of!(Header, detached);
    match which % 9 {
        0 => ring + offset_of!(RingControl, head),
        1 => ring + offset_of!(RingControl, tail),
        2 => ring + offset_of!(RingControl, reader_sleeping),
        3 => ring + offset_of!(RingControl, writer_sleeping),
        4 => offset_of!(Header, magic),
        5 => offset_of!(Header, capacity),
        6 => detached,
        7 => detached + std::mem::size_of::<CachePadded<u64>>(),
        _ => ring + offset_of!(RingControl, writer_fences),
    }
}

/// Publishes one well-formed record of any kind, length and `aux` from `conn` if the
/// ring has room (never blocks): the raw material for fragment sequences that are
/// plausible but wrong.
fn write_record(conn: &Connection, input: &mut Input<'_>) {
    let kind = match input.u8() % 6 {
        0 => Kind::Whole,
        1 => Kind::First,
        2 => Kind::Middle,
        3 => Kind::Last,
        4 => Kind::Cancel,
        _ => Kind::Padding,
    };
    let len = usize::from(input.u16());
    let aux = match input.u8() % 4 {
        0 => 0,
        1 => u64::from(input.u16()),
        2 => u64::from(input.u16()) * 16,
        _ => input.u64(),
    };
    let Some(tx) = shm(conn).and_then(|ep| ep.sending().ok()) else {
        return;
    };
    let len = len % (tx.producer.ring().max_record_payload() + 1);
    if let Ok(Some(grant)) = tx.producer.reserve(len, 0) {
        let fill = input.bytes(len.min(64)).to_vec();
        tx.producer.fill(&grant, 0, &fill);
        let _ = tx.producer.commit(grant, kind, len, aux);
    }
}

/// Publishes from `conn`'s writing side, as a hostile writer would, a message that is
/// never delivered: a first fragment announcing `announced` bytes, `middles` empty
/// middle fragments, then a cancel record. Waits (spinning) for room, and wakes a
/// sleeping reader. `false` if the end cannot write (closed, broken, reader gone).
pub fn write_cancelled_message(conn: &Connection, announced: u64, middles: usize) -> bool {
    let Some(ep) = shm(conn) else {
        return false;
    };
    let Ok(tx) = ep.sending() else {
        return false;
    };
    let records = std::iter::once((Kind::First, 16, announced))
        .chain(std::iter::repeat_n((Kind::Middle, 0, 16), middles))
        .chain(std::iter::once((Kind::Cancel, 0, 0)));
    for (kind, len, aux) in records {
        let grant = loop {
            match tx.producer.reserve(len, 0) {
                Ok(Some(grant)) => break grant,
                Ok(None) => {
                    if ep.peer_gone().unwrap_or(true) {
                        return false;
                    }
                    std::hint::spin_loop();
                }
                Err(_) => return false,
            }
        };
        tx.producer.fill(&grant, 0, &[0x5a; 16][..len]);
        match tx.producer.commit(grant, kind, len, aux) {
            Ok(true) => {
                let _ = ep.ring_data();
            }
            Ok(false) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Plays `data` as [`region_ops`] does, but the peer floods the reader with messages it
/// cancels (first fragments announcing any length, empty middle fragments, cancels)
/// between whole ones, from another thread, while the reader receives with a deadline
/// or in non-blocking mode: every receive must return within its budget, whatever the
/// flood, and the whole messages among the cancelled ones must arrive in order.
pub fn cancel_flood(data: &[u8]) {
    let mut input = Input(data);
    let (a, b) = Builder::new()
        .capacity(layout::MIN_CAPACITY)
        .build()
        .expect("pipe");
    let rounds = usize::from(input.u8() % 8) + 1;
    let plan: Vec<(u64, usize, bool)> = (0..rounds * 8)
        // Announcing more than the first fragment holds, and no more than the reader's
        // limit (a longer message stays in the pipe: `MessageTooLong`).
        .map(|_| {
            let announced = 17 + input.u64() % ((1 << 30) - 17);
            (announced, usize::from(input.u8() % 8), input.u8() % 4 == 0)
        })
        .collect();
    let wholes = plan.iter().filter(|p| p.2).count();
    let writer = std::thread::spawn(move || {
        for (i, (announced, middles, whole)) in plan.into_iter().enumerate() {
            if whole {
                if b.send_bytes(&(i as u64).to_le_bytes()).is_err() {
                    return;
                }
            } else if !write_cancelled_message(&b, announced, middles) {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let mut last = None;
    while got.len() < wholes {
        let how = input.u8();
        match how % 3 {
            0 => a.set_nonblocking(true).expect("open"),
            _ => {
                a.set_nonblocking(false).expect("open");
                a.set_read_timeout(Some(Duration::from_micros(1 + u64::from(how) * 50)))
                    .expect("open");
            }
        }
        match a.recv_bytes() {
            Ok(m) => {
                let i = u64::from_le_bytes(m.as_slice().try_into().expect("8 bytes"));
                assert!(last.is_none_or(|l| l < i), "out of order");
                last = Some(i);
                got.push(i);
            }
            Err(Error::WouldBlock | Error::Timeout) => {}
            Err(e) => panic!("{e}"),
        }
    }
    // The writer may still be flooding, into a full ring: our going away stops it.
    drop(a);
    writer.join().expect("writer");
}

/// Receives on `conn` with the method `how` picks. `Ok(true)` if a message came.
fn receive(conn: &Connection, how: u8, size: usize) -> Result<bool> {
    match how % 5 {
        0 => conn.recv_bytes().map(|_| true),
        1 => {
            let mut buf = vec![0u8; size];
            match conn.recv_bytes_into(&mut buf) {
                // As in Python, the message comes back in the error.
                Err(Error::BufferTooShort(_)) => Ok(true),
                other => other.map(|_| true),
            }
        }
        2 => conn.recv_bytes_max(size).map(|_| true),
        3 => conn.recv::<Vec<String>>().map(|_| true),
        _ => conn.recv_archived::<Vec<String>>().map(|m| {
            let _ = m.len();
            true
        }),
    }
}

/// Whether the next record `conn` would read is a whole message, so that receiving it
/// cannot wait for further fragments (the peer is alive while the actions play out).
fn next_is_whole(conn: &Connection) -> bool {
    let Some(rx) = shm(conn).and_then(|ep| ep.receiving().ok()) else {
        return false;
    };
    rx.consumer.resync().is_ok()
        && matches!(rx.consumer.peek(), Ok(Some(r)) if r.kind == Kind::Whole)
}

/// Adds a small multiple of 16 (or an odd amount) to a word of the region, as a peer
/// whose counters went wrong by a little would: values a random scribble almost never
/// produces, since they must agree with the other counters to pass the first checks.
fn nudge(memfd: BorrowedFd<'_>, at: usize, by: i8) {
    let mut word = [0u8; 8];
    if rustix::io::pread(memfd, &mut word, at as u64) != Ok(8) {
        return;
    }
    let delta = if by % 4 == 0 {
        i64::from(by) / 4
    } else {
        i64::from(by) * 16
    };
    let value = u64::from_le_bytes(word).wrapping_add_signed(delta);
    scribble(memfd, at, &value.to_le_bytes());
}

/// Like [`region_ops`], and meanwhile another thread keeps writing over the region
/// (through the memfd, as another process would) while the actions, receives
/// included, run: the reads race with the writes, as they can with a hostile peer. The
/// first bytes of `data` choose the racing writes (up to 16 of them, each an offset,
/// a length of up to 16 bytes and the bytes); the racer stops before the final drain,
/// since a peer that keeps writing can keep a reader busy for as long as it likes.
pub fn region_ops_racing(data: &[u8]) {
    let mut input = Input(data);
    let count = usize::from(input.u8() % 17);
    let writes: Vec<(usize, Vec<u8>)> = (0..count)
        .map(|_| {
            let offset = usize::from(input.u16());
            let len = usize::from(input.u8() % 17);
            (offset, input.bytes(len).to_vec())
        })
        .collect();
    play(input, Some(writes));
}

/// Plays `data` as a sequence of actions on a fresh duplex pipe with 4 KiB rings: a
/// hostile peer's writes anywhere in the region, well-formed records of any kind, and
/// receives on both ends (only of whole messages, which cannot block), a message held in
/// place across the other actions included. Then it closes the writing end and drains
/// the reading one with every receive method.
///
/// Panics only if the library misbehaves: a receive loop that does not end.
pub fn region_ops(data: &[u8]) {
    play(Input(data), None);
}

/// The body of [`region_ops`], with the racing writes of [`region_ops_racing`] if any.
/// (Long: one arm per operation the fuzzer can choose, read best side by side.)
fn play(mut input: Input<'_>, racing: Option<Vec<(usize, Vec<u8>)>>) {
    let (a, b) = Builder::new()
        .capacity(layout::MIN_CAPACITY)
        .build()
        .expect("pipe");
    let layout = region_of(&a).layout();
    let memfd = region_of(&a).memfd().try_clone_to_owned().expect("dup");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = racing.filter(|w| !w.is_empty()).map(|writes| {
        let (memfd, stop) = (memfd.try_clone().expect("dup"), stop.clone());
        std::thread::spawn(move || {
            let size = layout.size();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (offset, bytes) in &writes {
                    scribble(memfd.as_fd(), offset % size, bytes);
                }
            }
        })
    });
    let mut held = None;
    let mut ops = 0;
    while !input.is_empty() && ops < 256 {
        ops += 1;
        match input.u8() % 12 {
            0 | 1 => {
                let offset = usize::from(input.u16()) % layout.size();
                let len = usize::from(input.u8());
                let bytes = input.bytes(len).to_vec();
                scribble(memfd.as_fd(), offset, &bytes);
            }
            2 => {
                let at = control_word(layout, input.u8());
                scribble(memfd.as_fd(), at, &input.u64().to_le_bytes());
            }
            3 => {
                let at = control_word(layout, input.u8());
                nudge(memfd.as_fd(), at, input.u8() as i8);
            }
            4 | 5 => write_record(&b, &mut input),
            6 => write_record(&a, &mut input),
            // With a racer, the record checked here can change before the receive reads
            // it (into a first fragment, say) and the receive would wait for the rest
            // from a live peer: racing receives come below, once the writer is gone.
            7 | 8 if racer.is_some() => {}
            7 => {
                let (how, size) = (input.u8(), usize::from(input.u16()));
                if next_is_whole(&a) {
                    let _ = receive(&a, how, size);
                }
            }
            8 => {
                let (how, size) = (input.u8(), usize::from(input.u16()));
                if next_is_whole(&b) {
                    let _ = receive(&b, how, size);
                }
            }
            9 => {
                if held.is_some() {
                    held = None;
                } else if racer.is_none() && next_is_whole(&a) {
                    held = a.recv_archived::<Vec<String>>().ok();
                }
            }
            10 => {
                let _ = a.poll(Some(Duration::ZERO));
            }
            _ => {
                let _ = b.poll(Some(Duration::ZERO));
            }
        }
    }
    drop(held);
    // With the writer gone a receive never waits: it gets a message, EOF or an error.
    drop(b);
    if let Some(racer) = racer {
        // Receives racing with the writes, each ending in a message or an error.
        for _ in 0..64 {
            let (how, size) = (input.u8(), usize::from(input.u16()));
            if let Err(Error::Eof | Error::Corrupt(_)) = receive(&a, how, size) {
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        racer.join().expect("racer");
    }
    // Every message takes at least one 16-byte record of a 4 KiB ring, and a receive
    // that consumes nothing (`MessageTooLong`, past a limit given or the connection's)
    // is followed by one without a limit, which does, so a sound reader ends in far
    // fewer rounds than this.
    let mut consume = false;
    for _ in 0..1024 {
        let (how, size) = (input.u8(), usize::from(input.u16()));
        let r = if consume {
            a.recv_bytes_max(usize::MAX).map(|_| true)
        } else {
            receive(&a, how, size)
        };
        consume = false;
        match r {
            Ok(_) | Err(Error::Invalid(_)) => {}
            Err(Error::MessageTooLong { .. }) => consume = true,
            Err(_) => return,
        }
    }
    panic!("the reader went on receiving from a closed 4 KiB ring");
}

/// Attaches to a memfd whose size and first page come from `data`, as a process handed
/// a region by a hostile parent would. Must return an error or a usable region.
pub fn attach(data: &[u8]) {
    let mut input = Input(data);
    let sizes = [
        0,
        4096,
        Layout::new(1, 4096).map_or(0, |l| l.size()),
        Layout::new(2, 4096).map_or(0, |l| l.size()),
        Layout::new(1, 8192).map_or(0, |l| l.size()),
    ];
    let size = match input.u8() % 6 {
        5 => usize::from(input.u16()),
        i => sizes[usize::from(i)],
    };
    let seal = input.u8() % 2 == 0;
    let fd = rustix::fs::memfd_create(
        "shmpipe-fuzz",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .expect("memfd");
    rustix::fs::ftruncate(&fd, size as u64).expect("ftruncate");
    let header = input.bytes(4096).to_vec();
    scribble(fd.as_fd(), 0, &header);
    if seal {
        rustix::fs::fcntl_add_seals(
            &fd,
            rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW,
        )
        .expect("seal");
    }
    if let Ok(region) = Region::attach(fd) {
        let layout = region.layout();
        assert_eq!(layout.size(), size, "attached a region of the wrong size");
        for ring in 0..layout.rings {
            let _ = region.control(ring);
            let _ = region.data(ring);
        }
    }
}
