//! The reading side of a ring.

use super::{
    distance, sane, take_flag, Broken, RingRef, ASLEEP, CLAIMED, PREFETCH_NEAR, PREFETCH_ROOM,
    WATCHING,
};
use crate::buffers::Sink;
use crate::shm::fence;
use crate::shm::fork_epoch;
use crate::shm::sync::AtomicU32;
use crate::shm::wire::{self, Checked, Kind};
use crate::violation::{RingIndex, Violation};
use std::cell::Cell;
use std::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};

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
    pub(crate) fn checked(&self) -> Checked {
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
    /// The ring this side reads.
    pub(crate) fn ring(&self) -> &RingRef {
        &self.ring
    }

    pub(crate) fn new(ring: RingRef) -> Consumer {
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

    pub(crate) fn sleeping_flag(&self) -> &AtomicU32 {
        &self.ring.ctl().reader_sleeping
    }

    /// The writer's word saying that it publishes every record with a full fence (see
    /// [`crate::shm::fence`]).
    pub(crate) fn writer_fences(&self) -> &AtomicU32 {
        &self.ring.ctl().writer_fences
    }

    /// Raises our sleeping flag, so that the writer rings the data doorbell after its
    /// next publish, and orders it before the caller's next look at the ring (the
    /// reader's half of the wake-up protocol, [`crate::shm::wakeup`]). `watching`: we
    /// announce ourselves after every receive that empties the ring, and ask the writer
    /// to fence its publishes so that we need no `membarrier` (see [`WATCHING`]).
    ///
    /// Returns `false` if the writer's next publish may still miss the flag (the kernel
    /// refused our barrier): the caller must then not count on being woken.
    pub(crate) fn announce(&self, watching: bool) -> bool {
        fence::before_recheck(self.raise_flag(watching))
    }

    /// The first step of [`announce`](Consumer::announce), for a caller that announces
    /// on several rings with one fence ([`crate::shm::wakeup`]): raises the flag, and
    /// returns what the ring's `writer_fences` word said before it went up (the argument
    /// [`fence::before_recheck`] then takes).
    pub(crate) fn raise_flag(&self, watching: bool) -> bool {
        let fences = fence::writer_fences(self.writer_fences());
        let flag = if watching { ASLEEP | WATCHING } else { ASLEEP };
        self.sleeping_flag().store(flag, SeqCst);
        fences
    }

    /// Adopts the published `tail` if another process holding a copy of this end has
    /// read since we last did (see [`Producer::resync`]).
    pub(crate) fn resync(&self) -> Result<(), Broken> {
        let shared = self.ring.ctl().tail.load(Relaxed);
        if shared == self.published.get() {
            return Ok(());
        }
        if shared & CLAIMED != 0 {
            return Err(Violation::HeldElsewhere);
        }
        let head = self.ring.ctl().head.load(SeqCst);
        if distance(shared, head) > self.ring.capacity as u64 || !shared.is_multiple_of(16) {
            return Err(Violation::ImpossibleIndex {
                index: RingIndex::Tail,
                published: shared,
                last: self.published.get(),
                other: head,
            });
        }
        self.tail.set(shared);
        self.published.set(shared);
        self.cached_head.set(head);
        Ok(())
    }

    #[inline]
    fn reload_head(&self) -> Result<(), Broken> {
        let head = self.ring.ctl().head.load(SeqCst);
        let tail = self.tail.get();
        // `head` may only have moved forward from the cached value, and at most a ring
        // ahead of `tail`.
        let ahead = distance(tail, head);
        if ahead > self.ring.capacity as u64 || ahead < distance(tail, self.cached_head.get()) {
            return Err(impossible_head(head, self.cached_head.get(), tail));
        }
        self.cached_head.set(head);
        Ok(())
    }

    /// The next record, if one is published, skipping padding. Consumes nothing but
    /// padding; call [`Consumer::release`] when done with the record.
    pub(crate) fn peek(&self) -> Result<Option<Record>, Broken> {
        loop {
            if self.tail.get() == self.cached_head.get() {
                self.reload_head()?;
                if self.tail.get() == self.cached_head.get() {
                    return Ok(None);
                }
            }
            let tail = self.tail.get();
            let avail = distance(tail, self.cached_head.get()) as usize;
            let pos = tail as usize & self.ring.mask();
            let to_end = self.ring.capacity - pos;
            if avail < wire::HEADER {
                return Err(Violation::ShortHeader { published: avail });
            }
            let rec = wire::check(self.ring.read_header(pos), avail, to_end)?;
            if rec.kind == Kind::Padding {
                // Each padding record moves us to the start of the ring and `avail` is
                // finite, so this loop ends even on a ring full of padding.
                self.tail.set(tail.wrapping_add(rec.size as u64));
                continue;
            }
            return Ok(Some(self.record(pos, rec)));
        }
    }

    /// The common case of [`peek`](Consumer::peek) in a few instructions: the next record
    /// is a whole message, published, sound and at most `max` bytes long, and nobody else
    /// read on this end since we last did. `None` for everything else (nothing
    /// published, padding, fragments, a resync to make, anything [`wire::check`] would
    /// refuse), which the general path then handles and reports; so this path never
    /// needs an error of its own.
    #[inline]
    pub(crate) fn peek_whole(&self, max: usize) -> Option<Record> {
        // Relaxed: our own published value, which only another reader of this end
        // changes (then `resync`, on the general path, sorts it out).
        if self.ring.ctl().tail.load(Relaxed) != self.published.get() {
            return None;
        }
        let tail = self.tail.get();
        if tail == self.cached_head.get() {
            self.reload_head().ok()?;
        }
        let avail = distance(tail, self.cached_head.get()) as usize;
        let pos = tail as usize & self.ring.mask();
        if avail < wire::HEADER {
            return None;
        }
        // Only a line already published (one the writer is still writing would be pulled
        // from under it), and only near the writer: further back, the lines were written
        // long ago and the hardware's own prefetching keeps up.
        if (PREFETCH_ROOM..PREFETCH_NEAR).contains(&avail) {
            self.ring.prefetch(pos, false);
        }
        let raw = self.ring.read_header(pos);
        let len = raw.len as usize;
        let size = wire::record_size(len);
        if raw.kind != Kind::Whole.to_u32()
            || len > max
            || size > avail
            || size > self.ring.capacity - pos
        {
            return None;
        }
        let checked = Checked {
            kind: Kind::Whole,
            len,
            aux: raw.aux,
            size,
        };
        Some(self.record(pos, checked))
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

    /// Our read counter: where the next record starts (padding skipped so far included).
    #[inline(always)]
    pub(crate) fn position(&self) -> u64 {
        self.tail.get()
    }

    /// Bytes published ahead of `tail` as far as the cached `head` knows.
    #[inline(always)]
    pub(crate) fn ahead(&self) -> u64 {
        distance(self.tail.get(), self.cached_head.get())
    }

    /// Bytes published ahead of `tail`, `head` loaded (and checked) afresh.
    pub(crate) fn look_ahead(&self) -> Result<u64, Broken> {
        self.reload_head()?;
        Ok(self.ahead())
    }

    /// Whether the records published from `tail` on are all of the rest of a message
    /// that the writer cancelled: its fragments (a `FIRST`, unless the message was
    /// `resumed` after a receive took its first fragments, then `MIDDLE`s) and the
    /// `CANCEL` that ends it. Reads headers only and consumes nothing; anything else (a
    /// whole message, a message still arriving, records out of order) is `false`, for a
    /// receive to take or report. Looks at most a ring's worth of records.
    pub(crate) fn cancelled_next(&self, resumed: bool) -> Result<bool, Broken> {
        self.reload_head()?;
        let mut at = self.tail.get();
        let mut first = !resumed;
        loop {
            let avail = distance(at, self.cached_head.get()) as usize;
            if avail < wire::HEADER {
                return Ok(false);
            }
            let pos = at as usize & self.ring.mask();
            let rec = wire::check(self.ring.read_header(pos), avail, self.ring.capacity - pos)?;
            match rec.kind {
                Kind::Padding => {}
                Kind::Cancel => return Ok(!first),
                Kind::First if first => first = false,
                Kind::Middle if !first => {}
                _ => return Ok(false),
            }
            at = at.wrapping_add(rec.size as u64);
        }
    }

    /// Whether a record is ready (padding is skipped on the way).
    pub(crate) fn has_data(&self) -> Result<bool, Broken> {
        Ok(self.peek()?.is_some())
    }

    /// Appends the whole payload of `rec` to `out`, which must have room for it.
    ///
    /// # Panics
    /// If `out` has less spare room than the record's length (a bug in the caller).
    #[inline(always)]
    pub(crate) fn append<S: Sink>(&self, rec: &Record, out: &mut S) {
        let spare = out.spare();
        assert!(spare.len() >= rec.len, "no room reserved for the record");
        // SAFETY: `check` made sure the payload lies inside the data area; `spare` is our
        // own memory with room for `rec.len` bytes, all of which the copy initialises
        // before `commit` declares them part of `out`.
        unsafe {
            copy_out(rec.payload, spare.as_mut_ptr().cast(), rec.len);
            out.commit(rec.len);
        }
    }

    /// Appends bytes `from..from + len` of the payload of `rec` to `out`, which must
    /// have room for them.
    ///
    /// # Panics
    /// If the range is not inside the payload or `out` has too little spare room (a bug
    /// in the caller).
    pub(crate) fn append_part<S: Sink>(&self, rec: &Record, from: usize, len: usize, out: &mut S) {
        assert!(
            from <= rec.len && len <= rec.len - from,
            "not inside the payload"
        );
        let spare = out.spare();
        assert!(spare.len() >= len, "no room reserved for the record");
        // SAFETY: as in `append`: `from..from + len` lies inside the checked payload, and
        // `spare` has room for the `len` bytes the copy initialises.
        unsafe {
            copy_out(rec.payload.add(from), spare.as_mut_ptr().cast(), len);
            out.commit(len);
        }
    }

    /// The payload of `rec`, in place in the ring.
    ///
    /// # Safety
    /// `rec` must come from this consumer's `peek` and must not be released while the
    /// returned slice is alive; and the peer must not write those bytes meanwhile. The
    /// ring protocol never does, but a hostile or broken peer can: this is only for
    /// `recv_archived_in_place`, whose caller promises it for the peer.
    pub(crate) unsafe fn payload(&self, rec: &Record) -> &[u8] {
        // SAFETY: `check` made sure the payload lies inside the data area and inside the
        // published bytes; the caller answers for the rest.
        unsafe { std::slice::from_raw_parts(rec.payload, rec.len) }
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
    pub(crate) fn claim(&self) -> Result<(), Broken> {
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
            Err(seen) => Err(moved(old, seen)),
        }
    }

    /// Gives the record's space back to the producer. Returns whether the producer was
    /// asleep waiting for space and must be woken.
    #[inline]
    pub(crate) fn release(&self, rec: &Record) -> Result<bool, Broken> {
        let new_tail = self.tail.get().wrapping_add(rec.size as u64);
        let old = self.published.get();
        if old & CLAIMED != 0 && self.claimed_in.get() != Some(fork_epoch::current()) {
            return Err(held_by_parent());
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
                crate::shm::sync::seq_cst_order();
                Ok(take_flag(&self.ring.ctl().writer_sleeping) != 0)
            }
            Err(seen) => Err(moved(old, seen)),
        }
    }
}

// The errors are built out of line (`cold`, never inlined), so that the one-pass paths
// that can report them set up no stack frame for them on every message.

#[cold]
#[inline(never)]
fn impossible_head(head: u64, cached: u64, tail: u64) -> Broken {
    Violation::ImpossibleIndex {
        index: RingIndex::Head,
        published: head,
        last: cached,
        other: tail,
    }
}

#[cold]
#[inline(never)]
fn held_by_parent() -> Broken {
    Violation::HeldByParent
}

/// What a claim or release reports when the published `tail` is not the one we left.
#[cold]
#[inline(never)]
fn moved(old: u64, seen: u64) -> Broken {
    Violation::ConcurrentReader {
        expected: old,
        found: seen,
    }
}

/// Copies `len` bytes out of ring memory into our own.
///
/// # Safety
/// `src..src + len` lies inside a live mapping; `dst..dst + len` is writable memory of
/// this process that does not overlap it.
#[inline(always)]
unsafe fn copy_out(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract. The source may be written by the peer during the
    // copy; we read it through raw pointers only, never forming a reference to it. (A
    // small copy reads a few bytes twice, where its moves overlap; each byte of the copy
    // still ends up with one value, and the copy is what every later check reads.)
    unsafe { super::copy::copy(src, dst, len) };
    // Nothing may be moved across this point, so the compiler cannot replace a later
    // read of our copy with a second read of the ring (which the peer may have changed
    // after we validated the copy).
    std::sync::atomic::compiler_fence(SeqCst);
}
