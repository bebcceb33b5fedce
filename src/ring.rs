//! The single-producer single-consumer ring protocol over one ring of the region.
//!
//! `head` and `tail` are byte counters that only grow; a position in the ring is the
//! counter modulo the (power of two) capacity. The producer owns `head`, the consumer
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
//! # Memory ordering
//!
//! * Publishing (`head` by the producer after writing a record, `tail` by the consumer
//!   after reading one) is a `compare_exchange` with `SeqCst`. Its release half makes
//!   the record's bytes (or the consumer's reads of them) visible before the index; its
//!   compare half notices a second process publishing on the same end at the same
//!   time; and being `SeqCst` it orders the publish before the following load of the
//!   other side's sleeping flag (the wake-up protocol, see [`crate::wakeup`]).
//! * Loading the other side's index is `SeqCst` too. It acquires the other side's
//!   writes (a load is acquire at least), and takes part in the same total order as the
//!   sleeping-flag store of a side about to sleep. On x86-64 and AArch64 a `SeqCst` load
//!   compiles to the same instruction as an `Acquire` load, so this costs nothing.

use crate::fork_epoch;
use crate::layout::RingControl;
use crate::wire::{self, Checked, Kind, RawHeader};
use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

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
    pub unsafe fn new(ctl: *const RingControl, data: *mut u8, capacity: usize) -> RingRef {
        debug_assert!(capacity.is_power_of_two() && capacity >= 4096);
        RingRef {
            ctl,
            data,
            capacity,
        }
    }

    fn ctl(&self) -> &RingControl {
        // SAFETY: `new`'s contract: the control block lives as long as `self`. Its fields
        // are atomics, so sharing it with another process is sound.
        unsafe { &*self.ctl }
    }

    fn mask(&self) -> usize {
        self.capacity - 1
    }

    /// The largest payload a single record may carry: half a ring, so that two records
    /// can always be in flight and a record never needs more than half the ring free.
    pub fn max_record_payload(&self) -> usize {
        self.capacity / 2 - wire::HEADER
    }

    /// The 16-byte header slot at ring position `pos` (a multiple of 16).
    fn header_at(&self, pos: usize) -> (&AtomicU32, &AtomicU32, &AtomicU64) {
        debug_assert!(pos.is_multiple_of(wire::ALIGN) && pos + wire::HEADER <= self.capacity);
        // SAFETY: `pos + 16 <= capacity` so the slot is inside the data area, and 16-byte
        // aligned because the data area is page aligned. Access goes through atomics, so
        // a peer writing the same bytes concurrently is a race on atomics, not UB.
        unsafe {
            let p = self.data.add(pos);
            (
                AtomicU32::from_ptr(p as *mut u32),
                AtomicU32::from_ptr(p.add(4) as *mut u32),
                AtomicU64::from_ptr(p.add(8) as *mut u64),
            )
        }
    }

    fn write_header(&self, pos: usize, kind: Kind, len: usize, aux: u64) {
        let (k, l, a) = self.header_at(pos);
        // Relaxed: the record becomes visible only through the SeqCst publish of `head`.
        k.store(kind.to_u32(), Relaxed);
        l.store(len as u32, Relaxed);
        a.store(aux, Relaxed);
    }

    fn read_header(&self, pos: usize) -> RawHeader {
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

/// Why the ring cannot be used any more: the peer broke the protocol.
pub(crate) type Broken = String;

/// Space reserved for one record, not yet visible to the consumer.
#[derive(Debug)]
pub(crate) struct Grant {
    /// Counter value where the record starts (after any padding).
    start: u64,
    /// Whether a padding record must precede it (written at `head`).
    padded: bool,
    /// Payload bytes available at `payload`.
    pub capacity: usize,
    /// Where the payload goes.
    pub payload: *mut u8,
}

/// Set in the published `tail` while a reader holds the record at `tail` in place
/// (`recv_archived`); tails are otherwise multiples of 16. See [`Consumer::claim`].
const CLAIMED: u64 = 1;

/// Loads the consumer's `tail` as the producer sees it: the claim bit is no business of
/// the producer's, the space is free only once the record is released.
fn load_tail(ctl: &RingControl) -> u64 {
    ctl.tail.load(SeqCst) & !CLAIMED
}

/// Whether `head` and `tail` read from the region can be a ring's state: aligned, in
/// order, at most `capacity` apart.
fn sane(head: u64, tail: u64, capacity: usize) -> bool {
    head.is_multiple_of(16)
        && tail.is_multiple_of(16)
        && tail <= head
        && head - tail <= capacity as u64
}

/// The writing side of a ring.
pub(crate) struct Producer {
    ring: RingRef,
    /// Our write counter: what we last published.
    head: Cell<u64>,
    /// The consumer's counter as last loaded; never ahead of the real one.
    cached_tail: Cell<u64>,
    /// How often `tail` had to be reloaded; lets the caller piggy-back a liveness check
    /// on the rare reloads instead of paying for one per message.
    reloads: Cell<u64>,
}

impl Producer {
    pub fn new(ring: RingRef) -> Producer {
        let ctl = ring.ctl();
        let (mut head, mut tail) = (ctl.head.load(SeqCst), load_tail(ctl));
        if !sane(head, tail, ring.capacity) {
            // A region received from a broken or hostile process. Start from an aligned
            // state; the first `resync` compares it with the region and reports the lie.
            (head, tail) = (0, 0);
        }
        Producer {
            ring,
            head: Cell::new(head),
            cached_tail: Cell::new(tail),
            reloads: Cell::new(0),
        }
    }

    pub fn ring(&self) -> &RingRef {
        &self.ring
    }

    pub fn reloads(&self) -> u64 {
        self.reloads.get()
    }

    pub fn sleeping_flag(&self) -> &AtomicU32 {
        &self.ring.ctl().writer_sleeping
    }

    /// Adopts the published `head` if another process (a fork or exec child holding a copy
    /// of this end) has written since we last did, so that handing an end over to another
    /// process works. The value is checked against `tail` before it is trusted.
    pub fn resync(&self) -> Result<(), Broken> {
        let shared = self.ring.ctl().head.load(Relaxed);
        if shared == self.head.get() {
            return Ok(());
        }
        let tail = load_tail(self.ring.ctl());
        if shared < tail || shared - tail > self.ring.capacity as u64 || !shared.is_multiple_of(16)
        {
            return Err(format!(
                "published head {shared} is impossible with tail {tail}"
            ));
        }
        self.head.set(shared);
        self.cached_tail.set(tail);
        Ok(())
    }

    fn free(&self) -> usize {
        self.ring.capacity - (self.head.get() - self.cached_tail.get()) as usize
    }

    /// Reloads the consumer's `tail` and checks it: it may only have moved forward, and
    /// never past what we published.
    fn reload_tail(&self) -> Result<(), Broken> {
        let tail = load_tail(self.ring.ctl());
        self.reloads.set(self.reloads.get() + 1);
        let head = self.head.get();
        if tail < self.cached_tail.get() || tail > head || !tail.is_multiple_of(16) {
            return Err(format!(
                "consumer published tail {tail}, impossible after {} with head {head}",
                self.cached_tail.get()
            ));
        }
        self.cached_tail.set(tail);
        Ok(())
    }

    /// Bytes the ring must have free to hold a record of `len` payload bytes at the
    /// current head, padding included.
    fn needed(&self, len: usize) -> (usize, bool) {
        let size = wire::record_size(len);
        let pos = self.head.get() as usize & self.ring.mask();
        let to_end = self.ring.capacity - pos;
        if size <= to_end {
            (size, false)
        } else {
            (to_end + size, true)
        }
    }

    /// Whether a record of `len` payload bytes would fit now (reloading `tail` if the
    /// cached value says no).
    pub fn has_room(&self, len: usize) -> Result<bool, Broken> {
        let (need, _) = self.needed(len);
        if need <= self.free() {
            return Ok(true);
        }
        self.reload_tail()?;
        Ok(need <= self.free())
    }

    /// Reserves room for a record of exactly `len` payload bytes (`len` at most
    /// [`RingRef::max_record_payload`]), or `None` if the ring is too full right now.
    pub fn reserve(&self, len: usize) -> Result<Option<Grant>, Broken> {
        debug_assert!(len <= self.ring.max_record_payload());
        if !self.has_room(len)? {
            return Ok(None);
        }
        let (_, padded) = self.needed(len);
        let head = self.head.get();
        let start = if padded {
            head + (self.ring.capacity - (head as usize & self.ring.mask())) as u64
        } else {
            head
        };
        let pos = start as usize & self.ring.mask();
        // SAFETY: `needed` made sure the record fits before the ring's end, so
        // `pos + HEADER + len <= capacity`.
        let payload = unsafe { self.ring.data.add(pos + wire::HEADER) };
        Ok(Some(Grant {
            start,
            padded,
            capacity: len,
            payload,
        }))
    }

    /// Reserves the largest record that fits in the ring's free space right now (up to
    /// [`RingRef::max_record_payload`]), for a payload whose size is not known in
    /// advance (an rkyv archive serialized in place). `None` if no payload fits.
    pub fn reserve_available(&self) -> Result<Option<Grant>, Broken> {
        if self.free() < self.ring.capacity / 2 {
            self.reload_tail()?;
        }
        let free = self.free();
        let head = self.head.get();
        let to_end = self.ring.capacity - (head as usize & self.ring.mask());
        // Free space that wraps is two runs: before the ring's end, and from offset 0
        // (after a padding record). Take the longer.
        let (start, padded, room) = if free <= to_end || to_end >= free - to_end {
            (head, false, free.min(to_end))
        } else {
            (head + to_end as u64, true, free - to_end)
        };
        let capacity = (room.saturating_sub(wire::HEADER) / wire::ALIGN * wire::ALIGN)
            .min(self.ring.max_record_payload());
        if capacity == 0 {
            return Ok(None);
        }
        let pos = start as usize & self.ring.mask();
        // SAFETY: `room` bytes from `pos` are free and before the ring's end, and
        // `HEADER + capacity <= room`.
        let payload = unsafe { self.ring.data.add(pos + wire::HEADER) };
        Ok(Some(Grant {
            start,
            padded,
            capacity,
            payload,
        }))
    }

    /// Runs `f` on a granted record's payload space.
    pub fn with_grant<R>(&self, grant: &Grant, f: impl FnOnce(&mut [u8]) -> R) -> R {
        // SAFETY: the grant covers `capacity` bytes of free ring space that the consumer
        // does not read until we publish it, and nothing else in this process refers to
        // them (the producer is `!Sync` and the grant is used once).
        f(unsafe { std::slice::from_raw_parts_mut(grant.payload, grant.capacity) })
    }

    /// Copies `bytes` into a granted record's payload, at offset `at`.
    pub fn fill(&self, grant: &Grant, at: usize, bytes: &[u8]) {
        self.with_grant(grant, |space| {
            space[at..at + bytes.len()].copy_from_slice(bytes)
        });
    }

    /// Writes the header of a granted record (and the padding before it, if any) and
    /// publishes it. `len` may be less than the granted capacity. Returns whether the
    /// consumer was asleep and must be woken.
    pub fn commit(&self, grant: Grant, kind: Kind, len: usize, aux: u64) -> Result<bool, Broken> {
        assert!(len <= grant.capacity);
        let head = self.head.get();
        if grant.padded {
            self.ring
                .write_header(head as usize & self.ring.mask(), Kind::Padding, 0, 0);
        }
        self.ring
            .write_header(grant.start as usize & self.ring.mask(), kind, len, aux);
        let new_head = grant.start + wire::record_size(len) as u64;
        self.publish(head, new_head)?;
        Ok(wake_needed(&self.ring.ctl().reader_sleeping))
    }

    fn publish(&self, old: u64, new: u64) -> Result<(), Broken> {
        // SeqCst: see the module documentation.
        match self
            .ring
            .ctl()
            .head
            .compare_exchange(old, new, SeqCst, SeqCst)
        {
            Ok(_) => {
                self.head.set(new);
                Ok(())
            }
            Err(seen) => Err(format!(
                "head moved from {old} to {seen} under us: another process is writing on \
                 this end at the same time"
            )),
        }
    }
}

/// A record found by the consumer, checked but not yet released.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record {
    pub kind: Kind,
    pub len: usize,
    pub aux: u64,
    size: usize,
    payload: *const u8,
}

impl Record {
    /// The header as checked by [`wire::check`].
    pub fn checked(&self) -> Checked {
        Checked {
            kind: self.kind,
            len: self.len,
            aux: self.aux,
            size: self.size,
        }
    }
}

/// The reading side of a ring.
pub(crate) struct Consumer {
    ring: RingRef,
    /// Our read counter, padding skipped so far included.
    tail: Cell<u64>,
    /// What we last published as `tail`.
    published: Cell<u64>,
    /// The producer's counter as last loaded (and checked).
    cached_head: Cell<u64>,
    /// The fork epoch in which we claimed the record at `tail`, while we hold it.
    claimed_in: Cell<Option<u64>>,
}

impl Consumer {
    pub fn new(ring: RingRef) -> Consumer {
        let ctl = ring.ctl();
        let (head, mut tail) = (ctl.head.load(SeqCst), ctl.tail.load(SeqCst));
        if !sane(head, tail, ring.capacity) {
            // Claimed by another process, or a lie: start aligned, and let the first
            // `resync` report what the region says.
            tail = 0;
        }
        Consumer {
            ring,
            tail: Cell::new(tail),
            published: Cell::new(tail),
            cached_head: Cell::new(tail),
            claimed_in: Cell::new(None),
        }
    }

    pub fn sleeping_flag(&self) -> &AtomicU32 {
        &self.ring.ctl().reader_sleeping
    }

    /// Adopts the published `tail` if another process holding a copy of this end has
    /// read since we last did (see [`Producer::resync`]).
    pub fn resync(&self) -> Result<(), Broken> {
        let shared = self.ring.ctl().tail.load(Relaxed);
        if shared == self.published.get() {
            return Ok(());
        }
        if shared & CLAIMED != 0 {
            return Err("another process holds a message of this end in place \
                        (recv_archived) while this one reads: the end is used by two \
                        processes at once"
                .into());
        }
        let head = self.ring.ctl().head.load(SeqCst);
        if shared > head || head - shared > self.ring.capacity as u64 || !shared.is_multiple_of(16)
        {
            return Err(format!(
                "published tail {shared} is impossible with head {head}"
            ));
        }
        self.tail.set(shared);
        self.published.set(shared);
        self.cached_head.set(head);
        Ok(())
    }

    fn reload_head(&self) -> Result<(), Broken> {
        let head = self.ring.ctl().head.load(SeqCst);
        let tail = self.tail.get();
        if head < self.cached_head.get() || head < tail || head - tail > self.ring.capacity as u64 {
            return Err(format!(
                "producer published head {head}, impossible after {} with tail {tail}",
                self.cached_head.get()
            ));
        }
        self.cached_head.set(head);
        Ok(())
    }

    /// The next record, if one is published, skipping padding. Consumes nothing but
    /// padding; call [`Consumer::release`] when done with the record.
    pub fn peek(&self) -> Result<Option<Record>, Broken> {
        loop {
            if self.tail.get() == self.cached_head.get() {
                self.reload_head()?;
                if self.tail.get() == self.cached_head.get() {
                    return Ok(None);
                }
            }
            let tail = self.tail.get();
            let avail = (self.cached_head.get() - tail) as usize;
            let pos = tail as usize & self.ring.mask();
            let to_end = self.ring.capacity - pos;
            if avail < wire::HEADER {
                return Err(format!(
                    "{avail} published bytes cannot hold a record header"
                ));
            }
            let rec = wire::check(self.ring.read_header(pos), avail, to_end)?;
            if rec.kind == Kind::Padding {
                // Each padding record moves us to the start of the ring and `avail` is
                // finite, so this loop ends even on a ring full of padding.
                self.tail.set(tail + rec.size as u64);
                continue;
            }
            return Ok(Some(self.record(pos, rec)));
        }
    }

    fn record(&self, pos: usize, rec: Checked) -> Record {
        // SAFETY: `check` made sure `pos + size <= capacity`, so the payload lies inside
        // the data area.
        let payload = unsafe { self.ring.data.add(pos + wire::HEADER) as *const u8 };
        Record {
            kind: rec.kind,
            len: rec.len,
            aux: rec.aux,
            size: rec.size,
            payload,
        }
    }

    /// Whether a record is ready (padding is skipped on the way).
    pub fn has_data(&self) -> Result<bool, Broken> {
        Ok(self.peek()?.is_some())
    }

    /// The payload of `rec`, in place in the ring.
    ///
    /// # Safety
    /// `rec` must come from this consumer's `peek` and must not be released while the
    /// returned slice is alive. Until then the producer does not write those bytes (the
    /// ring protocol); a hostile producer could, which is the one trust the zero-copy
    /// path places in the peer (see DESIGN.md, "Trust").
    pub unsafe fn payload(&self, rec: &Record) -> &[u8] {
        // SAFETY: `check` made sure the payload lies inside the data area and inside the
        // published bytes; the caller keeps the record unreleased while the slice lives.
        unsafe { std::slice::from_raw_parts(rec.payload, rec.len) }
    }

    /// Runs `f` on the payload of `rec` (from this consumer's `peek`, not yet released).
    pub fn with_payload<R>(&self, rec: &Record, f: impl FnOnce(&[u8]) -> R) -> R {
        // SAFETY: the record stays unreleased for the duration of `f`: releasing takes
        // place only through `release`, which callers do after this returns.
        f(unsafe { self.payload(rec) })
    }

    /// Marks the record at `tail` (just returned by `peek`) as held in place by this
    /// process, before its bytes are handed out for longer than a copy takes.
    ///
    /// Only a process that misuses an end, reading it from two processes at once, needs
    /// this: without it, the other process could release the same record (its
    /// `compare_exchange` from the same `tail` would succeed) and the producer would
    /// overwrite bytes we are still reading in place. The claim makes the published
    /// `tail` odd, a value no other reader expects, so their release fails instead (and
    /// ours, by `compare_exchange` from the odd value, takes the bit down). A claim made
    /// by a parent and inherited through `fork` is not the child's to release.
    pub fn claim(&self) -> Result<(), Broken> {
        let old = self.published.get();
        debug_assert_eq!(old & CLAIMED, 0, "one record held at a time");
        // SeqCst like every other publish of `tail`; the claim itself needs only the
        // atomicity of the compare-and-swap.
        match self
            .ring
            .ctl()
            .tail
            .compare_exchange(old, old | CLAIMED, SeqCst, SeqCst)
        {
            Ok(_) => {
                self.published.set(old | CLAIMED);
                self.claimed_in.set(Some(fork_epoch::current()));
                Ok(())
            }
            Err(seen) => Err(format!(
                "tail moved from {old} to {seen} under us: another process is reading on \
                 this end at the same time"
            )),
        }
    }

    /// Gives the record's space back to the producer. Returns whether the producer was
    /// asleep waiting for space and must be woken.
    pub fn release(&self, rec: &Record) -> Result<bool, Broken> {
        let new_tail = self.tail.get() + rec.size as u64;
        let old = self.published.get();
        if old & CLAIMED != 0 && self.claimed_in.get() != Some(fork_epoch::current()) {
            return Err("this message is held in place by the process this one was \
                        forked from; only that process can give it back"
                .into());
        }
        // SeqCst: see the module documentation.
        match self
            .ring
            .ctl()
            .tail
            .compare_exchange(old, new_tail, SeqCst, SeqCst)
        {
            Ok(_) => {
                self.tail.set(new_tail);
                self.published.set(new_tail);
                self.claimed_in.set(None);
                Ok(wake_needed(&self.ring.ctl().writer_sleeping))
            }
            Err(seen) => Err(format!(
                "tail moved from {old} to {seen} under us: another process is reading on \
                 this end at the same time"
            )),
        }
    }
}

/// After a publish: if the other side announced that it sleeps, take its flag down and
/// report that its doorbell must be rung. The load comes first so that the common case,
/// nobody asleep, writes nothing to the shared line.
fn wake_needed(flag: &AtomicU32) -> bool {
    flag.load(SeqCst) != 0 && flag.swap(0, SeqCst) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Layout, RingControl};

    /// A ring in ordinary memory, for single-process tests of the protocol.
    struct TestRing {
        _ctl: Box<RingControl>,
        _data: Vec<u128>,
        ring: RingRef,
    }

    fn test_ring(capacity: usize) -> TestRing {
        let ctl: Box<RingControl> = Box::new(unsafe { std::mem::zeroed() });
        let mut data = vec![0u128; capacity / 16];
        let ring = unsafe { RingRef::new(&*ctl, data.as_mut_ptr() as *mut u8, capacity) };
        TestRing {
            _ctl: ctl,
            _data: data,
            ring,
        }
    }

    fn send(p: &Producer, bytes: &[u8]) -> bool {
        let g = match p.reserve(bytes.len()).unwrap() {
            Some(g) => g,
            None => return false,
        };
        p.fill(&g, 0, bytes);
        p.commit(g, Kind::Whole, bytes.len(), 0).unwrap();
        true
    }

    fn recv(c: &Consumer) -> Option<Vec<u8>> {
        let r = c.peek().unwrap()?;
        let v = c.with_payload(&r, |p| p.to_vec());
        c.release(&r).unwrap();
        Some(v)
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
        assert!(c.peek().unwrap_err().contains("impossible"));
    }

    #[test]
    fn impossible_tail_is_reported_not_followed() {
        let t = test_ring(4096);
        let p = Producer::new(t.ring);
        let big = vec![0u8; p.ring().max_record_payload()];
        assert!(send(&p, &big) && send(&p, &big));
        t.ring.ctl().tail.store(1 << 40, SeqCst);
        assert!(p.reserve(16).unwrap_err().contains("impossible"));
    }

    #[test]
    fn garbage_record_is_reported() {
        let t = test_ring(4096);
        let (p, c) = (Producer::new(t.ring), Consumer::new(t.ring));
        assert!(send(&p, b"hello"));
        t.ring.write_header(0, Kind::Whole, 100_000, 0);
        assert!(c.peek().unwrap_err().contains("does not fit"));
    }

    #[test]
    fn concurrent_writer_is_detected() {
        let t = test_ring(4096);
        let (p1, p2) = (Producer::new(t.ring), Producer::new(t.ring));
        assert!(send(&p1, b"one"));
        let g = p2.reserve(3).unwrap().unwrap();
        assert!(p2
            .commit(g, Kind::Whole, 3, 0)
            .unwrap_err()
            .contains("another process"));
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
        assert!(!p.has_room(1000).unwrap());
        mine.release(&rec).unwrap();
        assert!(p.has_room(1000).unwrap());
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
        t._ctl.head.store(4096 + 7, SeqCst);
        t._ctl.tail.store(3, SeqCst);
        let (p, c) = (Producer::new(t.ring), Consumer::new(t.ring));
        assert!(p.resync().is_err());
        assert!(c.resync().is_err());
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
        // Free: 1560 bytes before the end, 2536 after wrapping: it pads and wraps.
        let g = p.reserve_available().unwrap().unwrap();
        assert_eq!(g.capacity, p.ring().max_record_payload().min(2536 - 16));
        p.fill(&g, 0, b"wrapped");
        p.commit(g, Kind::Whole, 7, 0).unwrap();
        assert_eq!(recv(&c).unwrap(), b"wrapped");
    }

    #[test]
    fn sleeping_reader_is_reported_once() {
        let t = test_ring(4096);
        let p = Producer::new(t.ring);
        t.ring.ctl().reader_sleeping.store(1, SeqCst);
        let g = p.reserve(1).unwrap().unwrap();
        assert!(p.commit(g, Kind::Whole, 1, 0).unwrap());
        let g = p.reserve(1).unwrap().unwrap();
        assert!(!p.commit(g, Kind::Whole, 1, 0).unwrap());
    }
}
