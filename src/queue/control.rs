//! The queue's control page: a memfd of one page, sealed, mapped `MAP_SHARED`, holding
//! the two locks, the wake-up words and the members' generations. Every field is an
//! atomic, so a reference to it is sound whatever any process writes there; what a
//! value means is checked where it is used (a lock word naming no member, a count that
//! makes no sense, are a participant's misbehaviour, never undefined behaviour).
//!
//! The same memfd carries the members' liveness locks (`crate::queue::members`): byte
//! `k` of the file is locked by the process that holds member slot `k`.

use crate::error::{Error, Result};
use crossbeam_utils::CachePadded;
use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{MemfdFlags, SealFlags};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// How many processes can use one queue at once (each holds a member slot).
pub(crate) const SLOTS: usize = 128;

/// The control page's contents.
#[repr(C)]
pub(crate) struct Control {
    /// The producers' turn: held by the process whose producer writes into the ring
    /// (see `crate::queue::lock`), and how many messages producers have put.
    pub producers: CachePadded<TurnWords>,
    /// While a put of a message in fragments is under way: its number plus one (0: none).
    /// A producer that takes the turn and finds it set takes that message back with a
    /// `Cancel` record (its putter died, or a panic unwound its put); a consumer waiting
    /// for the rest of that message stops waiting once its putter is gone.
    pub open_put: AtomicU64,
    /// The consumers' turn, and how many messages consumers have got.
    pub consumers: CachePadded<TurnWords>,
    /// Bumped after a put when a consumer waits for data; the futex it sleeps on.
    pub data_seq: CachePadded<AtomicU32>,
    /// How many consumers sleep (or are about to) on `data_seq`.
    pub data_waiters: AtomicU32,
    /// Bumped after a get when a producer waits for room.
    pub space_seq: CachePadded<AtomicU32>,
    /// How many producers sleep (or are about to) on `space_seq`.
    pub space_waiters: AtomicU32,
    /// The most messages the queue holds (0: no limit beyond its bytes); set when the
    /// queue is made.
    pub max_items: AtomicU64,
    /// Messages put and not yet marked done (`JoinableQueue`'s count).
    pub unfinished: CachePadded<AtomicU64>,
    /// Bumped when `unfinished` reaches 0 with someone waiting in `join`.
    pub done_seq: AtomicU32,
    /// How many `join`s sleep (or are about to) on `done_seq`.
    pub done_waiters: AtomicU32,
    /// Per member slot: bumped each time a process takes the slot, so that a lock word
    /// naming a slot's earlier holder is recognised as naming a process that is gone.
    pub generations: [AtomicU32; SLOTS],
}

/// One side's lock word, and how many messages that side has moved, written only by the
/// lock's holder (a plain store, on a line that stays with that side: the other side
/// reads it for `Queue::len` and the item limit).
///
/// Every record carries its put's number (the record's `aux`), and both counts derive
/// from it, so a process that dies between a publish and its count leaves nothing wrong
/// for long: a producer counts after its record is published (dying between, the next
/// producer numbers its record the same, and the queue holds one more message than the
/// counts say until both are got), a consumer counts *before* releasing a record (dying
/// between, the next consumer gets that record again and counts the same). The counts
/// never make the queue look fuller than it is, which with an item limit would stall
/// the producers for good.
#[repr(C)]
pub(crate) struct TurnWords {
    pub lock: AtomicU32,
    pub moved: AtomicU64,
}

const PAGE: usize = 4096;
const _: () = assert!(std::mem::size_of::<Control>() <= PAGE);

/// A mapped control page.
pub(crate) struct ControlPage {
    map: MmapRaw,
    memfd: File,
}

impl ControlPage {
    /// Creates, sizes, seals and maps a zeroed control page.
    pub(crate) fn create() -> Result<ControlPage> {
        let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        let fd = match rustix::fs::memfd_create("shmpipe-queue", flags | MemfdFlags::NOEXEC_SEAL) {
            Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create("shmpipe-queue", flags)?,
            other => other?,
        };
        rustix::fs::ftruncate(&fd, PAGE as u64)?;
        rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        ControlPage::map(fd)
    }

    /// Maps a control page received from another process, after checking that it is
    /// one: a memfd of one page, sealed against resizing.
    pub(crate) fn attach(fd: OwnedFd) -> Result<ControlPage> {
        let size = rustix::fs::fstat(&fd)?.st_size;
        let seals = rustix::fs::fcntl_get_seals(&fd)?;
        if size != PAGE as i64 || !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
            return Err(Error::Invalid(format!(
                "not a queue's control page: {size} bytes, seals {seals:?}"
            )));
        }
        ControlPage::map(fd)
    }

    fn map(fd: OwnedFd) -> Result<ControlPage> {
        let memfd = File::from(fd);
        let map = MmapOptions::new().len(PAGE).map_raw(&memfd)?;
        Ok(ControlPage { map, memfd })
    }

    pub(crate) fn memfd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    pub(crate) fn get(&self) -> &Control {
        // SAFETY: offset 0 of a page-long, page-aligned shared mapping that lives as long
        // as `self`; `Control` is all atomics (valid for every bit pattern, and shareable
        // with another process) and fits in the page.
        unsafe { &*(self.map.as_ptr() as *const Control) }
    }
}
