//! The writing side of a ring.

use super::{distance, load_tail, sane, take_flag, Broken, RingRef, PREFETCH_ROOM, WATCHING};

/// Free space a writer keeps while a fragmented message is in progress: room for the
/// `CANCEL` record that abandons it, so that a send whose deadline passes can always take
/// back what it started without waiting (a `CANCEL` is a bare 16-byte header, which fits
/// at any aligned position without padding).
pub(crate) const CANCEL_ROOM: usize = wire::HEADER;
use crate::shm::fence;
use crate::shm::sync::AtomicU32;
use crate::shm::wire::{self, Kind};
use crate::violation::{RingIndex, Violation};
use std::cell::Cell;
use std::sync::atomic::{Ordering::Relaxed, Ordering::Release, Ordering::SeqCst};

/// Space reserved for one record, not yet visible to the consumer.
#[derive(Debug)]
pub(crate) struct Grant {
    /// Counter value where the record starts (after any padding).
    start: u64,
    /// Whether a padding record must precede it (written at `head`).
    pub(super) padded: bool,
    /// Payload bytes available at `payload`.
    pub capacity: usize,
    /// Where the payload goes.
    pub payload: *mut u8,
}

/// The writing side of a ring.
pub(crate) struct Producer {
    ring: RingRef,
    /// Our write counter: what we last published.
    head: Cell<u64>,
    /// The consumer's counter as last loaded; never ahead of the real one.
    cached_tail: Cell<u64>,
    /// We publish without a CPU fence (see [`crate::shm::fence`]): this process is
    /// registered for `membarrier`, and the reader has not asked us to fence (see
    /// [`WATCHING`]). Once false, false for good.
    fenceless: Cell<bool>,
}

impl Producer {
    pub(crate) fn new(ring: RingRef) -> Producer {
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
            // A writer before us in another process may have been asked to fence.
            fenceless: Cell::new(fence::register() && !fence::writer_fences(&ctl.writer_fences)),
        }
    }

    pub(crate) fn ring(&self) -> &RingRef {
        &self.ring
    }

    /// How many bytes we have written into the ring since it was made, padding
    /// included: our `head`.
    pub(crate) fn written(&self) -> u64 {
        self.head.get()
    }

    pub(crate) fn sleeping_flag(&self) -> &AtomicU32 {
        &self.ring.ctl().writer_sleeping
    }

    /// Raises our sleeping flag before a wait for room, so that the reader rings the
    /// space doorbell after its next release, and orders it before the caller's next
    /// look at `tail` (the reader publishes `tail` with a locked instruction before it
    /// loads the flag: a `SeqCst` store here completes the handshake).
    pub(crate) fn announce(&self) {
        self.sleeping_flag().store(super::ASLEEP, SeqCst);
        crate::shm::sync::seq_cst_order();
    }

    /// Whether we publish with a full fence (for tests).
    #[cfg(test)]
    pub(crate) fn fences(&self) -> bool {
        !self.fenceless.get()
    }

    /// Whether the published `head` is still ours: no other process holding a copy of
    /// this end wrote since we last did (else [`resync`](Producer::resync) must run).
    #[inline]
    pub(crate) fn in_sync(&self) -> bool {
        // Relaxed: our own published value; only another writer on this end changes it.
        self.ring.ctl().head.load(Relaxed) == self.head.get()
    }

    /// Adopts the published `head` if another process (a fork or exec child holding a copy
    /// of this end) has written since we last did, so that handing an end over to another
    /// process works. The value is checked against `tail` before it is trusted.
    pub(crate) fn resync(&self) -> Result<(), Broken> {
        let shared = self.ring.ctl().head.load(Relaxed);
        if shared == self.head.get() {
            return Ok(());
        }
        let tail = load_tail(self.ring.ctl());
        if distance(tail, shared) > self.ring.capacity as u64 || !shared.is_multiple_of(16) {
            return Err(Violation::ImpossibleIndex {
                index: RingIndex::Head,
                published: shared,
                last: self.head.get(),
                other: tail,
            });
        }
        self.head.set(shared);
        self.cached_tail.set(tail);
        // The writer before us may have been asked to fence (see `fenceless`).
        if fence::writer_fences(&self.ring.ctl().writer_fences) {
            self.fenceless.set(false);
        }
        Ok(())
    }

    fn free(&self) -> usize {
        // At most `capacity`: every value of `head` and `cached_tail` was checked so.
        self.ring.capacity - distance(self.cached_tail.get(), self.head.get()) as usize
    }

    /// Reloads the consumer's `tail` and checks it: it may only have moved forward, and
    /// never past what we published.
    fn reload_tail(&self) -> Result<(), Broken> {
        let tail = load_tail(self.ring.ctl());
        let head = self.head.get();
        // `tail` may only have moved forward from the cached value, and not past `head`.
        let (cached, tail_moved) = (
            self.cached_tail.get(),
            distance(self.cached_tail.get(), tail),
        );
        if tail_moved > distance(cached, head) || !tail.is_multiple_of(16) {
            return Err(impossible_tail(tail, self.cached_tail.get(), head));
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

    /// Whether a record of `len` payload bytes would fit now with `keep` bytes to spare
    /// (reloading `tail` if the cached value says no). `keep` is [`CANCEL_ROOM`] while a
    /// fragmented message is in progress, so that it can always be cancelled at once.
    pub(crate) fn has_room(&self, len: usize, keep: usize) -> Result<bool, Broken> {
        let (need, _) = self.needed(len);
        if need + keep <= self.free() {
            return Ok(true);
        }
        self.reload_tail()?;
        Ok(need + keep <= self.free())
    }

    /// Whether a whole message of `total` bytes, cut into records of at most `frag`
    /// payload bytes (one record if `total <= frag`), fits in the free space now,
    /// padding and the cancel reserve included. For non-blocking sends, which must send
    /// all of a message or nothing.
    pub(crate) fn has_room_for_message(&self, total: usize, frag: usize) -> Result<bool, Broken> {
        let need = |this: &Producer| {
            // Bytes from `head`, counted only while they can fit: a message needing more
            // than the ring stops the count (and its overflow) early.
            let start = this.head.get() as usize;
            let mut used = 0usize;
            let mut left = total;
            loop {
                let len = left.min(frag);
                let size = wire::record_size(len);
                let to_end = this.ring.capacity - (start.wrapping_add(used) & this.ring.mask());
                if size > to_end {
                    used += to_end; // padding
                }
                used += size;
                left -= len;
                if left == 0 || used > this.ring.capacity {
                    break;
                }
            }
            let fragmented = total > frag;
            used + if fragmented { CANCEL_ROOM } else { 0 }
        };
        if need(self) <= self.free() {
            return Ok(true);
        }
        self.reload_tail()?;
        Ok(need(self) <= self.free())
    }

    /// Reserves room for a record of exactly `len` payload bytes (`len` at most
    /// [`RingRef::max_record_payload`]) leaving `keep` bytes free (see
    /// [`Producer::has_room`]), or `None` if the ring is too full right now.
    pub(crate) fn reserve(&self, len: usize, keep: usize) -> Result<Option<Grant>, Broken> {
        if !self.has_room(len, keep)? {
            return Ok(None);
        }
        // The cached `tail` now shows the room (`has_room` reloaded it if needed).
        Ok(self.reserve_cached(len, keep))
    }

    /// [`reserve`](Producer::reserve) in a few instructions: room for a record of `len`
    /// payload bytes (at most [`RingRef::max_record_payload`]), leaving `keep` bytes
    /// free, by the cached `tail` alone. `None` when the cached value says no; the
    /// caller then reloads `tail` (and looks at the reader's liveness on the way).
    #[inline(always)]
    pub(crate) fn reserve_cached(&self, len: usize, keep: usize) -> Option<Grant> {
        debug_assert!(len <= self.ring.max_record_payload());
        let (need, padded) = self.needed(len);
        let free = self.free();
        if need + keep > free {
            return None;
        }
        let head = self.head.get();
        let start = if padded {
            head.wrapping_add((self.ring.capacity - (head as usize & self.ring.mask())) as u64)
        } else {
            head
        };
        let pos = start as usize & self.ring.mask();
        // Only a line that is free space already: taking one the reader is still to read
        // would make it pull the line back.
        if free >= need + PREFETCH_ROOM {
            self.ring.prefetch(pos, true);
        }
        // SAFETY: `needed` made sure the record fits before the ring's end, so
        // `pos + HEADER + len <= capacity`.
        let payload = unsafe { self.ring.data.add(pos + wire::HEADER) };
        Some(Grant {
            start,
            padded,
            capacity: len,
            payload,
        })
    }

    /// Reserves the largest record that fits in the ring's free space right now (up to
    /// [`RingRef::max_record_payload`]), for a payload whose size is not known in
    /// advance (an rkyv archive serialized in place). `None` if no payload fits.
    pub(crate) fn reserve_available(&self) -> Result<Option<Grant>, Broken> {
        // Reload `tail` only when the cached copy leaves less than an eighth of the ring:
        // reloading whenever it showed less than half meant a load of the reader's line
        // for every message once a ring was half full, which the reader's next
        // `compare_exchange` on it then waited for. A message that does not fit in the
        // space granted goes the long way, which reloads.
        if self.free() < self.ring.capacity / 8 {
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
            (head.wrapping_add(to_end as u64), true, free - to_end)
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

    /// Copies `bytes` into a granted record's payload, at offset `at`.
    ///
    /// # Panics
    /// If the bytes do not fit in the grant (a bug in the caller).
    #[inline(always)]
    pub(crate) fn fill(&self, grant: &Grant, at: usize, bytes: &[u8]) {
        assert!(at <= grant.capacity && bytes.len() <= grant.capacity - at);
        // SAFETY: the grant covers `capacity` bytes of free ring space, inside the data
        // area; `bytes` is our own memory. A raw copy: the peer may scribble over free
        // space too, which garbles only what it will read.
        unsafe { super::copy::copy(bytes.as_ptr(), grant.payload.add(at), bytes.len()) };
    }

    /// An rkyv writer that serializes straight into a granted record's payload.
    pub(crate) fn writer(&self, grant: &Grant) -> GrantWriter {
        GrantWriter {
            payload: grant.payload,
            capacity: grant.capacity,
            len: 0,
        }
    }

    /// Writes the header of a granted record (and the padding before it, if any) and
    /// publishes it. `len` may be less than the granted capacity. Returns whether the
    /// consumer was asleep and must be woken.
    #[inline(always)]
    pub(crate) fn commit(
        &self,
        grant: Grant,
        kind: Kind,
        len: usize,
        aux: u64,
    ) -> Result<bool, Broken> {
        let published = self.head.get();
        self.stage(grant, kind, len, aux);
        self.publish_staged(published)
    }

    /// Writes the header of a granted record (and the padding before it) like
    /// [`commit`](Producer::commit), but does not publish it: the records staged since
    /// the last publish become visible together, with one
    /// [`publish_staged`](Producer::publish_staged). Room is counted from the staged
    /// records on.
    #[inline(always)]
    pub(crate) fn stage(&self, grant: Grant, kind: Kind, len: usize, aux: u64) {
        assert!(len <= grant.capacity);
        let head = self.head.get();
        if grant.padded {
            self.ring
                .write_header(head as usize & self.ring.mask(), Kind::Padding, 0, 0);
        }
        self.ring
            .write_header(grant.start as usize & self.ring.mask(), kind, len, aux);
        self.head
            .set(grant.start.wrapping_add(wire::record_size(len) as u64));
    }

    /// Publishes every record staged since `published` (what `written` said before the
    /// first of them). Returns whether the consumer was asleep and must be woken.
    #[inline(always)]
    pub(crate) fn publish_staged(&self, published: u64) -> Result<bool, Broken> {
        self.publish(published, self.head.get())?;
        match take_flag(&self.ring.ctl().reader_sleeping) {
            0 => Ok(false),
            flag => {
                if flag & WATCHING != 0 {
                    self.fence_from_now_on();
                }
                Ok(true)
            }
        }
    }

    /// The reader announces itself on every message it waits for: publish with a full
    /// fence from now on, and say so in the region, so that it can skip its `membarrier`
    /// (see [`crate::shm::fence`]); a writer that always fenced (its process could not
    /// register for `membarrier`) says so too. The store is `Release`: a reader that
    /// sees it also sees every record we published before, with or without a fence.
    #[cold]
    #[inline(never)]
    fn fence_from_now_on(&self) {
        self.fenceless.set(false);
        let word = &self.ring.ctl().writer_fences;
        // Relaxed: only a writer of this end sets the word, and never clears it.
        if word.load(Relaxed) == 0 {
            word.store(1, Release);
        }
    }

    /// Publishes `head` (our last value `old`) as `new`: a release store, then the
    /// writer's half of the asymmetric fence (see the module documentation).
    #[inline(always)]
    fn publish(&self, old: u64, new: u64) -> Result<(), Broken> {
        let head = &self.ring.ctl().head;
        // Relaxed: our own last store, unless another process writes on this end.
        let seen = head.load(Relaxed);
        if seen != old {
            return Err(head_moved(old, seen));
        }
        head.store(new, Release);
        fence::after_publish(self.fenceless.get());
        self.head.set(new);
        Ok(())
    }
}

// The errors are built out of line, so that the one-pass send keeps no stack frame for
// them (as in the consumer).

#[cold]
#[inline(never)]
fn impossible_tail(tail: u64, cached: u64, head: u64) -> Broken {
    Violation::ImpossibleIndex {
        index: RingIndex::Tail,
        published: tail,
        last: cached,
        other: head,
    }
}

#[cold]
#[inline(never)]
fn head_moved(old: u64, seen: u64) -> Broken {
    Violation::ConcurrentWriter {
        expected: old,
        found: seen,
    }
}

/// An rkyv writer over a granted record's payload: `send` serializes an archive
/// straight into the ring through it, writing through a raw pointer so that no
/// reference to ring memory (which the peer can write) is ever formed. Not for use
/// outside shmpipe; it appears only in the bounds of [`Message`](crate::Message).
#[derive(Debug)]
pub struct GrantWriter {
    payload: *mut u8,
    capacity: usize,
    len: usize,
}

/// The archive did not fit in the space granted.
#[derive(Debug)]
struct Overflow;

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("archive larger than the ring space granted")
    }
}

impl std::error::Error for Overflow {}

impl GrantWriter {
    /// Bytes written so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl rkyv::ser::Positional for GrantWriter {
    fn pos(&self) -> usize {
        self.len
    }
}

impl<E: rkyv::rancor::Source> rkyv::ser::Writer<E> for GrantWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        if bytes.len() > self.capacity - self.len {
            return Err(E::new(Overflow));
        }
        // SAFETY: `len + bytes.len() <= capacity`, and the grant's `capacity` bytes at
        // `payload` are free ring space inside the data area (see `Producer::reserve*`).
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.payload.add(self.len), bytes.len())
        };
        self.len += bytes.len();
        Ok(())
    }
}
