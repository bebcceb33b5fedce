//! The single-producer single-consumer ring protocol over one ring of the region.
//!
//! `head` and `tail` are byte counters that only grow (modulo 2^64: all arithmetic on
//! them wraps, see [`distance`]); a position in the ring is the counter modulo the
//! (power of two) capacity. The producer owns `head`, the consumer
//! owns `tail`. Each side keeps its own index in process memory and treats the copy in
//! the region as a publication for the other side, never as the truth: the other
//! process may scribble anything there, and every value read from it is checked before
//! it is used.
//!
//! Each side also keeps a *cached* copy of the other side's index, as rtrb does: the
//! producer knows it has at least `capacity - (head - cached_tail)` bytes free without
//! touching the consumer's cache line, and reloads `tail` only when that is not enough.
//! Likewise the consumer reloads `head` only when it has used up what it last saw. On a
//! steady stream each side touches the other's line about once per ring's worth of
//! data instead of once per message.
//!
//! Most messages are one `WHOLE` record with room for it by the cached index, so each
//! side has a one-pass check for that case ([`Producer::reserve_cached`],
//! [`Consumer::peek_whole`]) that never reloads, never resyncs and never builds an
//! error: anything else makes it decline, and the general path ([`Producer::reserve`],
//! [`Consumer::peek`]) takes over and reports what is wrong. DESIGN.md, "Per-message
//! cost", says why.
//!
//! # Memory ordering
//!
//! * The producer publishes `head` after writing a record with a check (a relaxed load:
//!   is `head` still the value we published last?) and a release store, then the
//!   writer's half of the asymmetric fence ([`crate::shm::fence`]), which orders the
//!   publish before its load of the reader's sleeping flag (the wake-up protocol, see
//!   [`crate::shm::wakeup`]). The release makes the record's bytes visible before the
//!   index. No read-modify-write: a locked instruction per message would wait for the
//!   record's cache lines to reach the other core, which cost more than the rest of a
//!   small message (DESIGN.md, "Why the writer has no fence"). The check catches a
//!   second process that wrote on this end since we last did, but not one publishing at
//!   the very same moment (DESIGN.md, "Guarantees").
//! * The consumer publishes `tail` after reading a record with a `compare_exchange`
//!   with `SeqCst`: its release half makes our reads of the record happen before the
//!   producer may overwrite it; its compare half makes a second reader of the same end
//!   fail rather than release a record twice (or one held in place, see
//!   [`Consumer::claim`]); being `SeqCst` it orders the publish before the load of the
//!   writer's sleeping flag. It is cheap where the producer's was not: the consumer's
//!   store buffer holds only writes to its own memory.
//! * Loading the other side's index is `SeqCst` too. It acquires the other side's
//!   writes (a load is acquire at least), and takes part in the same total order as the
//!   sleeping-flag store of a side about to sleep. On x86-64 and AArch64 a `SeqCst` load
//!   compiles to the same instruction as an `Acquire` load, so this costs nothing.
//!
//! # Touching memory the other process writes
//!
//! The peer can write any byte of the ring at any moment, including the bytes we are
//! reading. So no Rust reference (`&[u8]`, `&mut [u8]`, `&T`) is ever formed over ring
//! data: a reference promises the compiler that the bytes do not change under it, which
//! the peer could break, and code holding one (rkyv validating an archive, `str`
//! trusting that it was checked as UTF-8) would then act on bytes it never checked.
//! Instead, ring data is reached only here, through raw pointers:
//!
//! * headers with atomic loads and stores ([`RingRef::read_header`]);
//! * payloads by copying them into memory of our own ([`Consumer::append`]) or from it
//!   ([`Producer::fill`], [`GrantWriter`]), with raw moves ([`copy`],
//!   `ptr::copy_nonoverlapping`) and a compiler fence after each copy out, so that
//!   every later use reads our copy, never the ring again (no double fetch). What the
//!   peer wrote during the copy can only make the copy's bytes wrong, and the copy is
//!   what every check afterwards validates.
//!
//! The one exception is [`Consumer::payload`], an in-place view for the `unsafe`
//! `recv_archived_in_place`, whose caller promises that the peer does not write the
//! record while it is viewed.

mod consumer;
mod copy;
#[cfg(all(test, loom))]
mod model;
mod producer;

pub(crate) use consumer::{Consumer, Record};
pub(crate) use producer::GrantWriter;
pub(crate) use producer::{Grant, Producer, CANCEL_ROOM};

use crate::shm::layout::RingControl;
use crate::shm::sync::AtomicU32;
use crate::shm::wire::{self, Kind, RawHeader};
use std::sync::atomic::{AtomicU32 as PlainU32, AtomicU64 as PlainU64};
use std::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};

/// One ring as seen from one process: where its control block and data are.
#[derive(Clone, Copy)]
pub(crate) struct RingRef {
    ctl: *const RingControl,
    data: *mut u8,
    capacity: usize,
}

// SAFETY: a `RingRef` is two addresses in a shared mapping and a length. The mapping
// is process-wide (any thread may touch it) and is kept alive by the `Arc<Shared>` of the
// endpoint owning the producer or consumer, wherever that endpoint moves. Moving the
// addresses to another thread changes nothing about who may access what: the SPSC
// protocol and the atomics govern that, not the thread. (`Producer` and `Consumer` stay
// `!Sync` through their `Cell`s, so one end is still used by one thread at a time.)
unsafe impl Send for RingRef {}

impl RingRef {
    /// # Safety
    /// `ctl` must point to a `RingControl` and `data` to `capacity` bytes, both inside a
    /// shared mapping that outlives every use of this `RingRef` (and of the `Producer`
    /// or `Consumer` built on it). `capacity` must be a power of two, at least 4096.
    pub(crate) unsafe fn new(ctl: *const RingControl, data: *mut u8, capacity: usize) -> RingRef {
        debug_assert!(capacity.is_power_of_two() && capacity >= 4096);
        RingRef {
            ctl,
            data,
            capacity,
        }
    }

    pub(super) fn ctl(&self) -> &RingControl {
        // SAFETY: `new`'s contract: the control block lives as long as `self`. Its fields
        // are atomics, so sharing it with another process is sound.
        unsafe { &*self.ctl }
    }

    pub(super) fn mask(&self) -> usize {
        self.capacity - 1
    }

    /// The ring's size in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The largest payload a single record may carry: half a ring, so that two records
    /// can always be in flight and a record never needs more than half the ring free.
    pub(crate) fn max_record_payload(&self) -> usize {
        self.capacity / 2 - wire::HEADER
    }

    /// The payload of each fragment of a message longer than a record can be: records of
    /// a quarter ring, so that they tile the ring without padding and the reader copies
    /// one out while the writer fills the next.
    pub(crate) fn fragment_payload(&self) -> usize {
        (self.max_record_payload() + wire::HEADER) / 2 - wire::HEADER
    }

    /// The 16-byte header slot at ring position `pos` (a multiple of 16).
    fn header_at(&self, pos: usize) -> (&PlainU32, &PlainU32, &PlainU64) {
        debug_assert!(pos.is_multiple_of(wire::ALIGN) && pos + wire::HEADER <= self.capacity);
        // SAFETY: `pos + 16 <= capacity` so the slot is inside the data area, and 16-byte
        // aligned because the data area is page aligned. Access goes through atomics, so
        // a peer writing the same bytes concurrently is a race on atomics, not UB.
        unsafe {
            let p = self.data.add(pos);
            (
                PlainU32::from_ptr(p as *mut u32),
                PlainU32::from_ptr(p.add(4) as *mut u32),
                PlainU64::from_ptr(p.add(8) as *mut u64),
            )
        }
    }

    /// Asks the CPU to start moving the line [`PREFETCH_AHEAD`] bytes past ring
    /// position `pos` into this core's cache (for writing, when `write`), so that its
    /// transfer from the other core overlaps the work on the records before it.
    #[inline(always)]
    pub(super) fn prefetch(&self, pos: usize, write: bool) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0, _MM_HINT_T0};
            let at = self
                .data
                .wrapping_add((pos + PREFETCH_AHEAD) & self.mask())
                .cast_const()
                .cast::<i8>();
            // SAFETY: a prefetch is a hint that never faults and changes no memory; the
            // address is inside the data area anyway.
            unsafe {
                if write {
                    _mm_prefetch::<_MM_HINT_ET0>(at);
                } else {
                    _mm_prefetch::<_MM_HINT_T0>(at);
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (pos, write);
    }

    pub(super) fn write_header(&self, pos: usize, kind: Kind, len: usize, aux: u64) {
        let (k, l, a) = self.header_at(pos);
        // Relaxed: the record becomes visible only through the release store of `head`.
        k.store(kind.to_u32(), Relaxed);
        l.store(len as u32, Relaxed);
        a.store(aux, Relaxed);
    }

    pub(super) fn read_header(&self, pos: usize) -> RawHeader {
        let (k, l, a) = self.header_at(pos);
        // Relaxed: ordered after the SeqCst (acquiring) load of `head` that showed us the
        // record.
        RawHeader {
            kind: k.load(Relaxed),
            len: l.load(Relaxed),
            aux: a.load(Relaxed),
        }
    }
}

/// How far ahead of the record it works on each side prefetches (see
/// [`RingRef::prefetch`]): a dozen small records, about as many as go by while a line
/// crosses between the cores.
const PREFETCH_AHEAD: usize = 1024;

/// Bytes of its own space a side needs ahead of a record for the line it prefetches to
/// be surely its own (free space for the writer, published records for the reader):
/// touching a line the other side is working on would pull it from under that side.
pub(super) const PREFETCH_ROOM: usize = PREFETCH_AHEAD + 64;

/// A reader this far or further behind its writer leaves prefetching to the hardware.
pub(super) const PREFETCH_NEAR: usize = 64 << 10;

/// Why the ring cannot be used any more: the peer broke the protocol.
pub(crate) type Broken = crate::Violation;

/// Set in the published `tail` while a reader holds the record at `tail` in place
/// (`recv_archived_in_place`); tails are otherwise multiples of 16. See [`Consumer::claim`].
pub(super) const CLAIMED: u64 = 1;

/// Loads the consumer's `tail` as the producer sees it: the claim bit is no business of
/// the producer's, the space is free only once the record is released.
pub(super) fn load_tail(ctl: &RingControl) -> u64 {
    ctl.tail.load(SeqCst) & !CLAIMED
}

/// Whether `head` and `tail` read from the region can be a ring's state: aligned, and
/// `head` at most `capacity` ahead of `tail`.
pub(super) fn sane(head: u64, tail: u64, capacity: usize) -> bool {
    head.is_multiple_of(16) && tail.is_multiple_of(16) && distance(tail, head) <= capacity as u64
}

/// How far counter `to` is ahead of counter `from`.
///
/// The counters are the peer's to publish, so every computation on them wraps: a peer
/// that publishes values near `u64::MAX` (where honest counters never get) must get an
/// error from the checks, never an overflow panic (with overflow checks on) or a wrong
/// answer. Counters are compared only through this distance, which is exact for two
/// honest counters at most a ring apart however they wrap, and an impossible distance
/// (more than a ring) for a lie.
#[inline(always)]
pub(super) fn distance(from: u64, to: u64) -> u64 {
    to.wrapping_sub(from)
}

/// A sleeping flag's bit that says the side sleeps or is about to: the other side takes
/// the flag down after its next publish and rings the doorbell (see
/// [`crate::shm::wakeup`]).
pub(crate) const ASLEEP: u32 = 1;

/// A reader's flag bit, raised with [`ASLEEP`] by a reader that announces itself after
/// every receive that empties the ring (a watched `fileno`, an async receive): it asks
/// the writer to publish with a full fence from now on, so that these announcements need
/// no `membarrier` (see [`crate::shm::fence`] and [`Consumer::announce`]).
pub(crate) const WATCHING: u32 = 2;

/// After a publish: if the other side announced that it sleeps, take its flag down and
/// return what it held (non-zero: its doorbell must be rung). The load comes first so
/// that the common case, nobody asleep, writes nothing to the shared line.
#[inline(always)]
pub(super) fn take_flag(flag: &AtomicU32) -> u32 {
    if flag.load(SeqCst) == 0 {
        return 0;
    }
    flag.swap(0, SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::fence;
    use crate::shm::layout::{Layout, RingControl};
    use crate::violation::{RingIndex, Violation};

    /// A ring in ordinary memory, for single-process tests of the protocol.
    ///
    /// The control block is held as a raw pointer, not a `Box`: moving a `Box` asserts
    /// that it is the only way to the memory, which would invalidate the pointer the
    /// `RingRef` holds (Miri's Stacked Borrows reports it). A `Vec` makes no such claim
    /// about its buffer.
    pub(super) struct TestRing {
        ctl: *mut RingControl,
        _data: Vec<u128>,
        pub(super) ring: RingRef,
    }

    impl Drop for TestRing {
        fn drop(&mut self) {
            // SAFETY: `ctl` came from `Box::into_raw` in `test_ring` and is freed once,
            // here; the `RingRef` using it is dropped with us.
            drop(unsafe { Box::from_raw(self.ctl) });
        }
    }

    pub(super) fn test_ring(capacity: usize) -> TestRing {
        // SAFETY: a control block of atomics and padding, for which all zeros is valid.
        let ctl: *mut RingControl = Box::into_raw(Box::new(RingControl::new()));
        let mut data = vec![0u128; capacity / 16];
        // SAFETY: both live in the returned `TestRing` beside the `RingRef`, which frees
        // them only when dropped; `capacity` is a power of two of at least 4096.
        let ring = unsafe { RingRef::new(ctl, data.as_mut_ptr() as *mut u8, capacity) };
        TestRing {
            ctl,
            _data: data,
            ring,
        }
    }

    fn send(p: &Producer, bytes: &[u8]) -> bool {
        let g = match p.reserve(bytes.len(), 0).unwrap() {
            Some(g) => g,
            None => return false,
        };
        p.fill(&g, 0, bytes);
        p.commit(g, Kind::Whole, bytes.len(), 0).unwrap();
        true
    }

    fn recv(c: &Consumer) -> Option<Vec<u8>> {
        let r = c.peek().unwrap()?;
        let mut v = Vec::with_capacity(r.len);
        c.append(&r, &mut v);
        c.release(&r).unwrap();
        Some(v)
    }

    /// A reader that announces itself on every message (`WATCHING`) gets a writer that
    /// fences every publish and says so; so does every writer that takes the end over
    /// from it, whether it attaches afterwards or held a copy from before (a fork) and
    /// resyncs. A reader that only sleeps asks for nothing.
    #[test]
    fn a_watching_reader_makes_every_writer_of_the_end_fence() {
        let t = test_ring(4096);
        let (p, c) = (Producer::new(t.ring), Consumer::new(t.ring));
        let copy = Producer::new(t.ring);
        let said = || fence::writer_fences(&t.ring.ctl().writer_fences);
        c.announce(false);
        assert!(send(&p, b"one"));
        assert!(!said());
        assert_eq!(recv(&c).unwrap(), b"one");
        c.announce(true);
        assert!(send(&p, b"two"));
        assert!(said() && p.fences());
        assert_eq!(recv(&c).unwrap(), b"two");
        assert!(Producer::new(t.ring).fences());
        copy.resync().unwrap();
        assert!(copy.fences());
        assert!(send(&copy, b"three"));
        assert_eq!(recv(&c).unwrap(), b"three");
    }

    #[test]
    fn messages_come_out_in_order_across_many_wraps() {
        let t = test_ring(Layout::new(1, 4096).unwrap().capacity);
        let (p, c) = (Producer::new(t.ring), Consumer::new(t.ring));
        let mut next_in = 0u32;
        for round in 0..2000u32 {
            let len = (round as usize * 37) % 1500;
            let msg: Vec<u8> = (0..len).map(|i| (i as u32 + round) as u8).collect();
            while !send(&p, &msg) {
                let got = recv(&c).unwrap();
                assert_eq!(got.len(), (next_in as usize * 37) % 1500);
                next_in += 1;
            }
        }
        while let Some(got) = recv(&c) {
            let len = (next_in as usize * 37) % 1500;
            let want: Vec<u8> = (0..len).map(|i| (i as u32 + next_in) as u8).collect();
            assert_eq!(got, want);
            next_in += 1;
        }
        assert_eq!(next_in, 2000);
    }

    #[test]
    fn empty_messages_are_messages() {
        let t = test_ring(4096);
        let (p, c) = (Producer::new(t.ring), Consumer::new(t.ring));
        assert!(send(&p, b""));
        assert_eq!(recv(&c), Some(vec![]));
        assert_eq!(recv(&c), None);
    }

    #[test]
    fn full_ring_refuses_then_accepts_after_release() {
        let t = test_ring(4096);
        let (p, c) = (Producer::new(t.ring), Consumer::new(t.ring));
        let big = vec![7u8; p.ring().max_record_payload()];
        assert!(send(&p, &big));
        assert!(send(&p, &big));
        assert!(!send(&p, b"x"));
        assert_eq!(recv(&c).unwrap(), big);
        assert!(send(&p, b"x"));
    }

    #[test]
    fn impossible_head_is_reported_not_followed() {
        let t = test_ring(4096);
        let c = Consumer::new(t.ring);
        t.ring.ctl().head.store(4096 * 3, SeqCst);
        assert_eq!(
            c.peek().unwrap_err(),
            Violation::ImpossibleIndex {
                index: RingIndex::Head,
                published: 4096 * 3,
                last: 0,
                other: 0
            }
        );
    }

    #[test]
    fn impossible_tail_is_reported_not_followed() {
        let t = test_ring(4096);
        let p = Producer::new(t.ring);
        let big = vec![0u8; p.ring().max_record_payload()];
        assert!(send(&p, &big) && send(&p, &big));
        t.ring.ctl().tail.store(1 << 40, SeqCst);
        assert!(matches!(
            p.reserve(16, 0).unwrap_err(),
            Violation::ImpossibleIndex {
                index: RingIndex::Tail,
                published: 1099511627776,
                last: 0,
                ..
            }
        ));
    }

    #[test]
    fn garbage_record_is_reported() {
        let t = test_ring(4096);
        let (p, c) = (Producer::new(t.ring), Consumer::new(t.ring));
        assert!(send(&p, b"hello"));
        t.ring.write_header(0, Kind::Whole, 100_000, 0);
        assert!(matches!(
            c.peek().unwrap_err(),
            Violation::RecordOverrun { len: 100_000, .. }
        ));
    }

    #[test]
    fn concurrent_writer_is_detected() {
        let t = test_ring(4096);
        let (p1, p2) = (Producer::new(t.ring), Producer::new(t.ring));
        assert!(send(&p1, b"one"));
        let g = p2.reserve(3, 0).unwrap().unwrap();
        assert!(matches!(
            p2.commit(g, Kind::Whole, 3, 0).unwrap_err(),
            Violation::ConcurrentWriter { expected: 0, .. }
        ));
    }

    #[test]
    fn handover_to_another_copy_resyncs() {
        let t = test_ring(4096);
        let (p1, p2) = (Producer::new(t.ring), Producer::new(t.ring));
        let c = Consumer::new(t.ring);
        assert!(send(&p1, b"one"));
        p2.resync().unwrap();
        assert!(send(&p2, b"two"));
        assert_eq!(recv(&c).unwrap(), b"one");
        assert_eq!(recv(&c).unwrap(), b"two");
    }

    #[test]
    fn a_claimed_record_cannot_be_released_by_another_reader() {
        let t = test_ring(4096);
        let p = Producer::new(t.ring);
        let (mine, other) = (Consumer::new(t.ring), Consumer::new(t.ring));
        assert!(send(&p, &[1; 2000])); // 2016 bytes at 0
        assert!(send(&p, &[2; 1500])); // 1516 bytes at 2016: 564 left before the end
        let rec = mine.peek().unwrap().unwrap();
        mine.claim().unwrap();
        // The other reader sees the record too, but can neither release it nor resync
        // past the claim.
        let theirs = other.peek().unwrap().unwrap();
        assert!(other.release(&theirs).is_err());
        assert!(other.resync().is_err());
        // The producer does not count the claimed record's space as free: 1000 bytes
        // need the space at the start of the ring that the record occupies.
        assert!(!p.has_room(1000, 0).unwrap());
        mine.release(&rec).unwrap();
        assert!(p.has_room(1000, 0).unwrap());
        assert_eq!(recv(&mine).unwrap(), [2; 1500]);
    }

    #[test]
    fn a_claim_cannot_be_taken_by_a_reader_that_fell_behind() {
        let t = test_ring(4096);
        let p = Producer::new(t.ring);
        let (ahead, behind) = (Consumer::new(t.ring), Consumer::new(t.ring));
        assert!(send(&p, b"one"));
        assert!(send(&p, b"two"));
        let _ = behind.peek().unwrap().unwrap();
        assert_eq!(recv(&ahead).unwrap(), b"one");
        assert!(
            behind.claim().is_err(),
            "the record it saw was released already"
        );
    }

    #[test]
    fn lying_indices_at_attach_start_aligned_and_are_reported() {
        let t = test_ring(4096);
        t.ring.ctl().head.store(4096 + 7, SeqCst);
        t.ring.ctl().tail.store(3, SeqCst);
        let (p, c) = (Producer::new(t.ring), Consumer::new(t.ring));
        assert!(p.resync().is_err());
        assert!(c.resync().is_err());
    }

    #[test]
    fn the_one_pass_paths_take_only_the_common_case() {
        let t = test_ring(4096);
        let (p, c) = (Producer::new(t.ring), Consumer::new(t.ring));
        // A whole record, short enough: taken.
        assert!(send(&p, b"hello"));
        assert!(c.peek_whole(4).is_none(), "longer than the room given");
        let rec = c.peek_whole(5).unwrap();
        assert_eq!((rec.kind, rec.len), (Kind::Whole, 5));
        c.release(&rec).unwrap();
        assert!(c.peek_whole(100).is_none(), "nothing published");
        // A fragment: left to the general path.
        let g = p.reserve(8, CANCEL_ROOM).unwrap().unwrap();
        p.commit(g, Kind::First, 8, 100).unwrap();
        assert!(c.peek_whole(usize::MAX).is_none());
        assert_eq!(c.peek().unwrap().unwrap().kind, Kind::First);
        // Garbage: declined here, reported by the general path.
        t.ring.write_header(32, Kind::Whole, 100_000, 0);
        assert!(c.peek_whole(usize::MAX).is_none());
        assert!(c.peek().is_err());
    }

    #[test]
    fn the_one_pass_paths_decline_padding_and_a_stale_cache() {
        let t = test_ring(4096);
        let (p, c) = (Producer::new(t.ring), Consumer::new(t.ring));
        let big = vec![1u8; 2000];
        assert!(send(&p, &big)); // 2016 bytes at 0
        assert!(send(&p, &big)); // 2016 bytes at 2016; 64 left before the end
        assert!(
            p.reserve_cached(100, 0).is_none(),
            "full by the cached tail"
        );
        assert_eq!(recv(&c).unwrap(), big);
        // Room now, but only a reload of `tail` shows it.
        assert!(p.reserve_cached(100, 0).is_none());
        assert!(send(&p, &[2; 100])); // padding at 4032, then the record at 0
        assert!(p.reserve_cached(10, 0).is_some());
        assert_eq!(recv(&c).unwrap(), big);
        // The padding is for the general path, which skips it; then the fast one works.
        assert!(c.peek_whole(usize::MAX).is_none());
        assert_eq!(c.peek().unwrap().unwrap().len, 100);
        assert_eq!(c.peek_whole(usize::MAX).unwrap().len, 100);
    }

    #[test]
    fn the_one_pass_paths_notice_another_copy_of_the_end() {
        let t = test_ring(4096);
        let (p1, p2) = (Producer::new(t.ring), Producer::new(t.ring));
        let (c1, c2) = (Consumer::new(t.ring), Consumer::new(t.ring));
        assert!(send(&p1, b"one"));
        assert!(!p2.in_sync(), "p1 wrote since p2 last did");
        assert!(p1.in_sync());
        assert_eq!(recv(&c1).unwrap(), b"one");
        assert!(send(&p1, b"two"));
        assert!(c2.peek_whole(100).is_none(), "c1 read since c2 last did");
        c2.resync().unwrap();
        assert_eq!(c2.peek_whole(100).unwrap().len, 3);
    }

    #[test]
    fn reserve_available_takes_the_longer_free_run() {
        let t = test_ring(4096);
        let (p, c) = (Producer::new(t.ring), Consumer::new(t.ring));
        let g = p.reserve_available().unwrap().unwrap();
        assert_eq!(g.capacity, p.ring().max_record_payload());
        p.commit(g, Kind::Whole, 1000, 0).unwrap(); // 1016 bytes at 0
        assert!(send(&p, &[0; 1500])); // 1520 bytes at 1016; head at 2536
        assert_eq!(recv(&c).unwrap().len(), 1000);
        assert_eq!(recv(&c).unwrap().len(), 1500);
        // An eighth of the ring or more free by the cached `tail` (1560 bytes): that
        // is what it grants (less the header, in 16-byte steps), without looking at the
        // reader's line.
        let g = p.reserve_available().unwrap().unwrap();
        assert_eq!((g.capacity, g.padded), (1536, false));
        assert!(send(&p, &[0; 1040])); // 1056 bytes at 2536; head at 3592
        assert_eq!(recv(&c).unwrap().len(), 1040);
        // Less than an eighth by the cached `tail` (504 bytes): it reloads. Free: 504
        // bytes before the end, 3592 after wrapping: it pads and wraps.
        let g = p.reserve_available().unwrap().unwrap();
        assert!(g.padded);
        assert_eq!(g.capacity, p.ring().max_record_payload().min(3592 - 16));
        p.fill(&g, 0, b"wrapped");
        p.commit(g, Kind::Whole, 7, 0).unwrap();
        assert_eq!(recv(&c).unwrap(), b"wrapped");
    }

    /// Counters published near `u64::MAX` (a peer's lie, or a ring that really ran that
    /// far) wrap: no overflow panic where overflow checks are on (this test's profile),
    /// and messages cross the wrap intact.
    #[test]
    fn counters_near_the_end_of_u64_wrap_without_overflow() {
        let t = test_ring(4096);
        let start = !15u64 - 2048;
        t.ring.ctl().head.store(start, SeqCst);
        t.ring.ctl().tail.store(start, SeqCst);
        let (p, c) = (Producer::new(t.ring), Consumer::new(t.ring));
        p.resync().unwrap();
        c.resync().unwrap();
        for i in 0..200u32 {
            let msg = vec![i as u8; (i as usize * 13) % 700];
            assert!(send(&p, &msg));
            assert!(p.has_room_for_message(10_000, 1000).is_ok());
            assert_eq!(recv(&c).unwrap(), msg);
        }
        assert!(p.written() < start, "the counter wrapped");
        // A lie near the end is an error, not a panic.
        t.ring.ctl().head.store(!15u64, SeqCst);
        assert!(c.peek().is_err());
        t.ring.ctl().tail.store(7, SeqCst);
        assert!(p.reserve(16, 0).is_err() || p.resync().is_err());
    }

    #[test]
    fn sleeping_reader_is_reported_once() {
        let t = test_ring(4096);
        let p = Producer::new(t.ring);
        t.ring.ctl().reader_sleeping.store(1, SeqCst);
        let g = p.reserve(1, 0).unwrap().unwrap();
        assert!(p.commit(g, Kind::Whole, 1, 0).unwrap());
        let g = p.reserve(1, 0).unwrap().unwrap();
        assert!(!p.commit(g, Kind::Whole, 1, 0).unwrap());
    }
}
