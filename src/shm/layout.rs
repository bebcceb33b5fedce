//! Where everything sits in the shared region: the header, one control block per ring,
//! then the ring data areas. Pure arithmetic and `#[repr(C)]` types; nothing here
//! touches memory.
//!
//! ```text
//! offset 0                 Header (one page): magic, version, ring count, capacity,
//!                          one detach counter per end (each on its own cache line)
//! offset 4096              RingControl of ring 0 (640 bytes): head | tail |
//!                          reader_sleeping | writer_sleeping | writer_fences, each on
//!                          its own line
//! offset 4096 + 640        RingControl of ring 1 (duplex only)
//! offset 8192              data of ring 0: `capacity` bytes
//! offset 8192 + capacity   data of ring 1 (duplex only)
//! ```
//!
//! Ring `k` is read by end `k`: in a duplex pipe end 0 reads ring 0 and writes ring 1,
//! end 1 the other way round; a one-way pipe has only ring 0, read by end 0 (the
//! reader) and written by end 1 (the writer).

use crossbeam_utils::CachePadded;
// The control block's atomics are loom's in the model check of the ring code (see
// `crate::shm::sync`); the region header is plain memory always.
use crate::shm::sync::{AtomicU32, AtomicU64};
use std::sync::atomic::{AtomicU32 as PlainU32, AtomicU64 as PlainU64};

/// `b"SHMPIPE\0"` read as a little-endian `u64`.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMPIPE\0");
/// Bumped whenever the layout or the record format changes.
pub(crate) const VERSION: u32 = 2;

/// Smallest ring accepted by the builder: one page.
pub(crate) const MIN_CAPACITY: usize = 4096;
/// Largest ring: record lengths are `u32`, and a whole record is at most half a ring.
pub(crate) const MAX_CAPACITY: usize = 1 << 30;
/// Default bytes per direction: a 1 MiB message still fits whole (so it can be read
/// in place) with room for a second one in flight.
pub(crate) const DEFAULT_CAPACITY: usize = 4 << 20;

/// Default limit on the length of a message that a receive allocates memory for: large
/// enough for any message a program means to send in one piece, small enough that a
/// peer announcing a huge message cannot make us allocate without bound.
pub(crate) const DEFAULT_MAX_MESSAGE: usize = 1 << 30;

const PAGE: usize = 4096;
const HEADER_SIZE: usize = PAGE;
const CONTROL_SIZE: usize = std::mem::size_of::<RingControl>();
const CONTROLS_OFFSET: usize = HEADER_SIZE;
const DATA_OFFSET: usize = 2 * PAGE;

/// The region header. Written once by the creator before any other process can see
/// the region; afterwards only `detached` changes.
#[repr(C)]
pub(crate) struct Header {
    pub magic: PlainU64,
    pub version: PlainU32,
    pub rings: PlainU32,
    pub capacity: PlainU64,
    /// `detached[e]` counts the copies of end `e` that were closed gracefully (close or
    /// drop). The writer on the other side compares it on every send, so that a graceful
    /// close is noticed without a system call; it then asks the kernel for the truth.
    pub detached: [CachePadded<PlainU64>; 2],
}

/// The shared state of one single-producer single-consumer ring.
///
/// Each field has a cache line pair of its own (`CachePadded` is 128 bytes on x86-64):
/// `head` is written by the producer on every message and `tail` by the consumer, so
/// keeping them apart stops the two cores from stealing one line from each other; the
/// sleeping flags are written only when a side goes to sleep, so the per-message check
/// of them reads a line that stays shared in both caches.
#[repr(C)]
pub(crate) struct RingControl {
    /// Bytes ever published by the producer (monotonic; position is `head % capacity`).
    pub head: CachePadded<AtomicU64>,
    /// Bytes ever released by the consumer.
    pub tail: CachePadded<AtomicU64>,
    /// Non-zero while the consumer sleeps (or is about to) waiting for data.
    pub reader_sleeping: CachePadded<AtomicU32>,
    /// Non-zero while the producer sleeps (or is about to) waiting for space.
    pub writer_sleeping: CachePadded<AtomicU32>,
    /// Non-zero once the producer publishes every record with a full fence, which lets
    /// a reader that announces itself on every message skip its `membarrier` (see
    /// [`crate::shm::fence`]). Written by the producer only, and never cleared.
    pub writer_fences: CachePadded<AtomicU32>,
}

impl RingControl {
    /// A control block of a ring in ordinary memory, all zero: for the ring's unit tests
    /// and its model check (under loom, atomics are not plain memory to zero).
    #[cfg(test)]
    pub(crate) fn new() -> RingControl {
        let zero64 = || CachePadded::new(AtomicU64::new(0));
        let zero32 = || CachePadded::new(AtomicU32::new(0));
        RingControl {
            head: zero64(),
            tail: zero64(),
            reader_sleeping: zero32(),
            writer_sleeping: zero32(),
            writer_fences: zero32(),
        }
    }
}

/// The geometry of one region: how many rings, how large, and where each part sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    /// 1 for a one-way pipe, 2 for a duplex one.
    pub rings: usize,
    /// Data bytes per ring; a power of two in `MIN_CAPACITY..=MAX_CAPACITY`.
    pub capacity: usize,
}

impl Layout {
    /// Checks `rings` and `capacity` as read from an untrusted header or given by a user.
    pub(crate) fn new(rings: usize, capacity: usize) -> Option<Layout> {
        let ok = (rings == 1 || rings == 2)
            && capacity.is_power_of_two()
            && (MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity);
        ok.then_some(Layout { rings, capacity })
    }

    /// Total bytes of the region (a whole number of pages).
    pub(crate) fn size(&self) -> usize {
        DATA_OFFSET + self.rings * self.capacity
    }

    /// Offset of ring `k`'s control block.
    pub(crate) fn control_offset(&self, k: usize) -> usize {
        debug_assert!(k < self.rings);
        CONTROLS_OFFSET + k * CONTROL_SIZE
    }

    /// Offset of ring `k`'s data area (page aligned, so records aligned within the ring
    /// are aligned in memory too).
    pub(crate) fn data_offset(&self, k: usize) -> usize {
        debug_assert!(k < self.rings);
        DATA_OFFSET + k * self.capacity
    }
}

/// Which ring an end reads and which it writes: `(rx, tx)`.
pub(crate) fn rings_of_end(rings: usize, end: usize) -> (Option<usize>, Option<usize>) {
    match (rings, end) {
        (2, e) => (Some(e), Some(1 - e)),
        (_, 0) => (Some(0), None),
        _ => (None, Some(0)),
    }
}

// The header and the control blocks must fit the space reserved for them.
const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_SIZE);
const _: () = assert!(CONTROLS_OFFSET + 2 * CONTROL_SIZE <= DATA_OFFSET);
const _: () = assert!(DATA_OFFSET.is_multiple_of(PAGE));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_geometry() {
        assert!(Layout::new(0, 4096).is_none());
        assert!(Layout::new(3, 4096).is_none());
        assert!(Layout::new(1, 4095).is_none());
        assert!(Layout::new(1, 6000).is_none());
        assert!(Layout::new(1, 2048).is_none());
        assert!(Layout::new(1, MAX_CAPACITY * 2).is_none());
        assert_eq!(Layout::new(2, 4096).unwrap().size(), 8192 + 8192);
    }

    #[test]
    fn parts_do_not_overlap() {
        let l = Layout::new(2, 1 << 16).unwrap();
        assert!(l.control_offset(1) + CONTROL_SIZE <= l.data_offset(0));
        assert_eq!(l.data_offset(1), l.data_offset(0) + l.capacity);
        assert_eq!(l.data_offset(0) % 4096, 0);
    }

    #[test]
    fn ends_read_and_write_the_right_rings() {
        assert_eq!(rings_of_end(2, 0), (Some(0), Some(1)));
        assert_eq!(rings_of_end(2, 1), (Some(1), Some(0)));
        assert_eq!(rings_of_end(1, 0), (Some(0), None));
        assert_eq!(rings_of_end(1, 1), (None, Some(0)));
    }
}
