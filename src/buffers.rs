//! Memory of our own that received bytes go into, shared by both transports: the
//! [`Sink`] a payload is appended to (a `Vec<u8>`, an aligned `AlignedVec` for archives,
//! or a caller's slice), the buffer kept between typed messages ([`Scratch`]), and the
//! length checks every receive makes before it allocates.

use crate::error::{Error, Result};
use rkyv::ser::allocator::{Arena, ArenaHandle};
use rkyv::util::AlignedVec;
use std::cell::Cell;
use std::mem::MaybeUninit;

/// [`Error::MessageTooLong`] if a message of `len` bytes is longer than `max` (the
/// caller then leaves it in the pipe).
pub(crate) fn within(len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(Error::MessageTooLong { len, max });
    }
    Ok(())
}

/// Makes room in `out` for a fragment of `len` bytes of a `total`-byte message:
/// doubling what has arrived so far (so a long message costs few reallocations), but
/// never past the announced total, and never more than twice what actually came.
pub(crate) fn grow_for<S: Sink>(out: &mut S, total: usize, len: usize) {
    let have = out.len();
    if out.capacity() - have < len {
        let target = (have + len).max(2 * have).min(total.max(have + len));
        out.reserve_exact(target - have);
    }
}

/// The bytes of a message whose receive gave up part-way (its deadline passed, or a
/// signal came), kept for the next receive, so that a timeout consumes nothing as far as
/// the caller can tell. The next receive goes on in this buffer and hands the message to
/// its caller once it is whole: what came is copied once when the first receive gives up
/// and once at the end, however many receives it takes (copying back and forth on every
/// attempt would make a long message received in non-blocking steps cost quadratic
/// time). Both transports keep one; what each keeps beside it is where the next byte
/// comes from (the fragments still to come in a ring, the frame's length on a socket).
pub(crate) struct HalfReceived(rkyv::util::AlignedVec);

impl HalfReceived {
    /// Keeps what `out` holds (copied once), and empties `out`.
    pub(crate) fn keep<S: Sink>(out: &mut S) -> HalfReceived {
        let mut kept = rkyv::util::AlignedVec::with_capacity(out.len());
        kept.extend_from_slice(out.as_slice());
        out.clear();
        HalfReceived(kept)
    }

    /// The buffer to go on in.
    pub(crate) fn bytes(&mut self) -> &mut rkyv::util::AlignedVec {
        &mut self.0
    }

    /// Bytes received so far.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The message, whole now, into `out` (emptied first).
    pub(crate) fn deliver<S: Sink>(self, out: &mut S) {
        out.clear();
        out.reserve_exact(self.0.len());
        out.extend_from_slice(&self.0);
    }
}

/// A buffer for typed messages that do not fit the ring whole, kept from one message to
/// the next. A fresh multi-megabyte buffer per message costs more than the transfer: the
/// allocator maps new pages, the kernel zeroes each one on first touch, and unmaps them
/// again on free. Buffers above [`Scratch::RETAIN_LIMIT`] are not kept, so one huge
/// message does not pin its memory for the connection's lifetime.
///
/// It also keeps the arena rkyv serializes with (the scratch space for a value's
/// out-of-line parts): rkyv's own is a thread-local, reached and trimmed on every call.
#[derive(Default)]
pub(crate) struct Scratch {
    buf: Cell<Option<AlignedVec>>,
    arena: Cell<Option<Arena>>,
    /// See [`Scratch::archive_hint`].
    last_len: Cell<usize>,
}

/// A connection's two [`Scratch`]es: one per direction, so that a typed message being
/// received (an `Archived` guard may hold its buffer) and one being sent never share.
#[derive(Default)]
pub(crate) struct Scratches {
    pub receive: Scratch,
    pub send: Scratch,
}

impl Scratch {
    /// The largest buffer kept between messages.
    const RETAIN_LIMIT: usize = 64 << 20;

    /// The kept buffer, empty (or a new one).
    pub(crate) fn take(&self) -> AlignedVec {
        let mut v = self.buf.take().unwrap_or_default();
        v.clear();
        v
    }

    /// Keeps `v` for the next message, unless it is too large to keep.
    pub(crate) fn give_back(&self, v: AlignedVec) {
        if v.capacity() <= Self::RETAIN_LIMIT {
            self.buf.set(Some(v));
        }
    }

    /// The length of the last archive the general send path sent: the room a one-pass
    /// typed send asks for, so that a stream of archives of one size is serialized once
    /// each, straight into the ring.
    pub(crate) fn archive_hint(&self) -> usize {
        self.last_len.get()
    }

    /// Notes the length of an archive the general send path sent.
    pub(crate) fn note_archive(&self, len: usize) {
        self.last_len.set(len);
    }

    /// Runs `f` (a serialization) with the kept arena.
    #[inline(always)]
    pub(crate) fn with_arena<R>(&self, f: impl FnOnce(ArenaHandle<'_>) -> R) -> R {
        let mut arena = self.arena.take().unwrap_or_default();
        // `acquire` frees the blocks a large value added last time, keeping the largest.
        let result = f(arena.acquire());
        self.arena.set(Some(arena));
        result
    }
}

/// A growable buffer of our own that a payload can be appended to without first
/// zeroing the space: `Vec<u8>`, or rkyv's 16-byte aligned `AlignedVec` for archives.
pub(crate) trait Sink {
    /// Empties the buffer, keeping its allocation.
    fn clear(&mut self);
    /// Bytes held.
    fn len(&self) -> usize;
    /// The bytes held.
    fn as_slice(&self) -> &[u8];
    /// Appends bytes of our own (room reserved by the caller).
    fn extend_from_slice(&mut self, bytes: &[u8]);
    /// Bytes the allocation can hold.
    fn capacity(&self) -> usize;
    /// Grows the allocation to hold at least `additional` more bytes, and no more than
    /// needed for that.
    fn reserve_exact(&mut self, additional: usize);
    /// The allocation's room after the bytes held.
    fn spare(&mut self) -> &mut [MaybeUninit<u8>];
    /// Declares the first `n` spare bytes part of the buffer.
    ///
    /// # Safety
    /// Those bytes must have been initialised.
    unsafe fn commit(&mut self, n: usize);
}

impl Sink for Vec<u8> {
    fn clear(&mut self) {
        Vec::clear(self)
    }
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn as_slice(&self) -> &[u8] {
        self
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes)
    }
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
    fn reserve_exact(&mut self, additional: usize) {
        Vec::reserve_exact(self, additional)
    }
    fn spare(&mut self) -> &mut [MaybeUninit<u8>] {
        self.spare_capacity_mut()
    }
    unsafe fn commit(&mut self, n: usize) {
        debug_assert!(n <= self.capacity() - self.len());
        // SAFETY: the caller initialised them; they are within the allocation.
        unsafe { self.set_len(self.len() + n) }
    }
}

impl Sink for rkyv::util::AlignedVec {
    fn clear(&mut self) {
        rkyv::util::AlignedVec::clear(self)
    }
    fn len(&self) -> usize {
        rkyv::util::AlignedVec::len(self)
    }
    fn as_slice(&self) -> &[u8] {
        self
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        rkyv::util::AlignedVec::extend_from_slice(self, bytes)
    }
    fn capacity(&self) -> usize {
        rkyv::util::AlignedVec::capacity(self)
    }
    fn reserve_exact(&mut self, additional: usize) {
        rkyv::util::AlignedVec::reserve_exact(self, additional)
    }
    fn spare(&mut self) -> &mut [MaybeUninit<u8>] {
        let (len, cap) = (self.len(), self.capacity());
        // SAFETY: the allocation holds `cap` bytes, the first `len` in use; the rest is
        // ours to write through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr().add(len).cast(), cap - len) }
    }
    unsafe fn commit(&mut self, n: usize) {
        debug_assert!(n <= self.capacity() - self.len());
        // SAFETY: the caller initialised them; they are within the allocation.
        unsafe { self.set_len(self.len() + n) }
    }
}

/// A caller's buffer as a [`Sink`] that cannot grow: `recv_bytes_into` receives straight
/// into it, after checking that the message fits.
pub(crate) struct SliceSink<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> SliceSink<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> SliceSink<'a> {
        SliceSink { buf, len: 0 }
    }
}

impl Sink for SliceSink<'_> {
    fn clear(&mut self) {
        self.len = 0;
    }
    fn len(&self) -> usize {
        self.len
    }
    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
    fn capacity(&self) -> usize {
        self.buf.len()
    }
    fn reserve_exact(&mut self, additional: usize) {
        assert!(
            additional <= self.buf.len() - self.len,
            "the caller checked the length"
        );
    }
    fn spare(&mut self) -> &mut [MaybeUninit<u8>] {
        let spare = &mut self.buf[self.len..];
        // SAFETY: `u8` and `MaybeUninit<u8>` have the same layout; the slice is only ever
        // written with initialised bytes (`Consumer::append` copies a payload in), so
        // the caller's buffer never holds uninitialised bytes.
        unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast(), spare.len()) }
    }
    unsafe fn commit(&mut self, n: usize) {
        assert!(n <= self.buf.len() - self.len);
        self.len += n;
    }
}

/// A caller's buffer as a [`Sink`] that spills into a `Vec` of ours once a message
/// turns out longer than it (a queue's `get_bytes_into`, which learns a fragmented
/// message's length only as it arrives, and hands a message too long for the buffer
/// back whole).
pub(crate) struct SpillSink<'a> {
    fits: SliceSink<'a>,
    spilled: Option<Vec<u8>>,
}

impl<'a> SpillSink<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> SpillSink<'a> {
        SpillSink {
            fits: SliceSink::new(buf),
            spilled: None,
        }
    }

    /// The message's length in the caller's buffer, or the whole message when it did
    /// not fit.
    pub(crate) fn finish(self) -> std::result::Result<usize, Vec<u8>> {
        match self.spilled {
            None => Ok(self.fits.len),
            Some(whole) => Err(whole),
        }
    }
}

impl Sink for SpillSink<'_> {
    fn clear(&mut self) {
        self.fits.clear();
        self.spilled = None;
    }
    fn len(&self) -> usize {
        self.spilled.as_ref().map_or(self.fits.len, Vec::len)
    }
    fn as_slice(&self) -> &[u8] {
        match &self.spilled {
            Some(v) => v,
            None => self.fits.as_slice(),
        }
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        match &mut self.spilled {
            Some(v) => v.extend_from_slice(bytes),
            None => self.fits.extend_from_slice(bytes),
        }
    }
    fn capacity(&self) -> usize {
        self.spilled
            .as_ref()
            .map_or(self.fits.buf.len(), Vec::capacity)
    }
    fn reserve_exact(&mut self, additional: usize) {
        if self.spilled.is_none() && additional > self.fits.buf.len() - self.fits.len {
            let mut v = Vec::with_capacity(self.fits.len + additional);
            v.extend_from_slice(self.fits.as_slice());
            self.spilled = Some(v);
        }
        match &mut self.spilled {
            Some(v) => v.reserve_exact(additional),
            None => self.fits.reserve_exact(additional),
        }
    }
    fn spare(&mut self) -> &mut [MaybeUninit<u8>] {
        match &mut self.spilled {
            Some(v) => v.spare(),
            None => self.fits.spare(),
        }
    }
    unsafe fn commit(&mut self, n: usize) {
        // SAFETY: the caller's promise, passed on to the buffer `spare` came from.
        unsafe {
            match &mut self.spilled {
                Some(v) => v.commit(n),
                None => self.fits.commit(n),
            }
        }
    }
}

/// A message given as pieces ([`Connection::send_bytes_vectored`]
/// (crate::Connection::send_bytes_vectored)): sent as one message, each piece copied once,
/// straight to where the message goes.
#[derive(Clone, Copy)]
pub(crate) struct Parts<'a> {
    parts: &'a [&'a [u8]],
    len: usize,
}

impl<'a> Parts<'a> {
    /// The pieces of one message.
    pub(crate) fn new(parts: &'a [&'a [u8]]) -> Parts<'a> {
        Parts {
            parts,
            len: parts.iter().map(|p| p.len()).sum(),
        }
    }

    /// The message's length.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The pieces.
    pub(crate) fn pieces(&self) -> &'a [&'a [u8]] {
        self.parts
    }

    /// Hands `put` the bytes `at..at + len` of the message, a piece at a time, each with
    /// its offset from `at`.
    #[inline(always)]
    pub(crate) fn copy_range(&self, at: usize, len: usize, mut put: impl FnMut(usize, &[u8])) {
        if let [one] = self.parts {
            // The usual message, in one piece.
            put(0, &one[at..at + len]);
            return;
        }
        let (mut start, mut done) = (0, 0);
        for piece in self.parts {
            let end = start + piece.len();
            if end > at && done < len {
                let from = at.max(start) - start;
                let take = (piece.len() - from).min(len - done);
                put(done, &piece[from..from + take]);
                done += take;
            }
            start = end;
        }
        debug_assert_eq!(done, len, "the range lies within the message");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_hand_out_any_range_in_pieces() {
        let pieces: [&[u8]; 4] = [b"ab", b"", b"cde", b"f"];
        let parts = Parts::new(&pieces);
        assert_eq!(parts.len(), 6);
        for at in 0..=6 {
            for len in 0..=6 - at {
                let mut got = vec![0u8; len];
                parts.copy_range(at, len, |off, bytes| {
                    got[off..off + bytes.len()].copy_from_slice(bytes)
                });
                assert_eq!(got, &b"abcdef"[at..at + len], "{at} {len}");
            }
        }
    }

    #[test]
    fn scratch_keeps_buffers_up_to_the_limit_and_hands_them_out_empty() {
        let s = Scratch::default();
        let mut v = s.take();
        v.extend_from_slice(&[1; 1000]);
        let kept = v.as_ptr();
        s.give_back(v);
        let v = s.take();
        assert_eq!((v.len(), v.as_ptr()), (0, kept), "same buffer, emptied");
        s.give_back(v);

        let mut huge = AlignedVec::new();
        huge.reserve(Scratch::RETAIN_LIMIT + 1);
        s.give_back(huge);
        let v = s.take();
        assert!(
            v.capacity() <= Scratch::RETAIN_LIMIT,
            "a huge buffer is let go"
        );
    }
}
