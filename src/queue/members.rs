//! Who uses a queue, and whether they are still alive: the one place that answers "is
//! the process that holds this lock gone?".
//!
//! A process takes a member slot the first time it uses a queue: it opens the control
//! memfd anew (through `/proc/self/fd`, which gives it an open file description of its
//! own) and takes an OFD write lock on byte `k` of the file for the first free `k`. The
//! kernel drops that lock when the description's last descriptor closes, so when the
//! process dies, however it dies. Its token names the slot and the slot's generation,
//! which it bumps on taking the slot: a token whose generation is not the slot's names
//! an earlier holder, gone.
//!
//! A forked child shares its parent's open file descriptions. If it kept the parent's
//! member descriptor, the parent's slot would stay locked after the parent died, for as
//! long as the child lived. So every member descriptor is listed in [`FORKED`], and a
//! handler run in every forked child (`pthread_atfork`) closes them all; the child takes
//! a slot of its own when it first uses the queue.

use crate::error::{Error, Result};
use crate::queue::control::{Control, SLOTS};
use crate::shm::fork_epoch;
use crate::sys;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::AcqRel, Ordering::Relaxed};
use std::sync::atomic::{Ordering::Acquire, Ordering::Release, Ordering::SeqCst};

/// A lock word's value for "held by nobody"; a token is never 0.
pub(crate) const NOBODY: u32 = 0;

/// The bit a lock word carries when someone may sleep on it (`crate::queue::lock`).
pub(crate) const CONTENDED: u32 = 1 << 31;

/// This process's membership of one queue.
pub(crate) struct Member {
    /// Our own open file description of the control memfd, holding our slot's lock.
    /// Closed on drop only in the process that opened it (see `Drop`).
    ofd: ManuallyDrop<OwnedFd>,
    /// Slot + 1 in the low 8 bits, the slot's generation above (never [`CONTENDED`]).
    pub token: u32,
    /// The fork epoch of the process that took the slot (`crate::shm::fork_epoch`): a
    /// forked child must take its own.
    pub epoch: u64,
    /// Where `ofd` is listed in [`FORKED`].
    listed: usize,
}

impl Member {
    /// Takes a free slot of the queue whose control memfd is `memfd`.
    pub(crate) fn join(memfd: BorrowedFd<'_>, control: &Control) -> Result<Member> {
        let path = format!("/proc/self/fd/{}", memfd.as_raw_fd());
        let ofd: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?
            .into();
        for slot in 0..SLOTS {
            if sys::ofd_try_lock(ofd.as_fd(), slot as u64)? {
                let generation = control.generations[slot]
                    .fetch_add(1, SeqCst)
                    .wrapping_add(1);
                let token = (slot as u32 + 1) | ((generation & 0x7f_ffff) << 8);
                let listed = list_for_fork(ofd.as_raw_fd());
                return Ok(Member {
                    ofd: ManuallyDrop::new(ofd),
                    token,
                    epoch: fork_epoch::current(),
                    listed,
                });
            }
        }
        Err(Error::Invalid(format!(
            "{SLOTS} processes use this queue already"
        )))
    }

    /// Whether the process that `token` names (a lock word's holder) may still be alive:
    /// its slot is locked and still in the generation the token names. A token that
    /// names no slot (a participant wrote garbage) counts as gone.
    pub(crate) fn may_be_alive(&self, control: &Control, token: u32) -> Result<bool> {
        let token = token & !CONTENDED;
        let slot = (token & 0xff) as usize;
        if slot == 0 || slot > SLOTS {
            return Ok(false);
        }
        let slot = slot - 1;
        let generation = control.generations[slot].load(SeqCst) & 0x7f_ffff;
        if generation != token >> 8 {
            return Ok(false);
        }
        if token == self.token {
            return Ok(true);
        }
        Ok(sys::ofd_is_locked(self.ofd.as_fd(), slot as u64)?)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if self.epoch != fork_epoch::current() {
            // Inherited across `fork`: the child handler closed the descriptor in this
            // process already, and the number may name another file since. Leave it.
            return;
        }
        unlist(self.listed, self.ofd.as_raw_fd());
        // SAFETY: dropped once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.ofd) };
    }
}

/// The member descriptors of this process, closed in every forked child. A fixed table
/// of atomics: the child's handler may not allocate or take locks.
static FORKED: [AtomicI32; 256] = [const { AtomicI32::new(-1) }; 256];

/// Lists `fd` in [`FORKED`] (installing the fork handler once); returns its place, or
/// `usize::MAX` when the table is full (a child then keeps that descriptor until it
/// exits or uses the queue, which delays noticing this process's death meanwhile).
fn list_for_fork(fd: RawFd) -> usize {
    // Not a `Once`, for the reason `fork_epoch` gives: threads that race here may each
    // register the handler, which is harmless (a second run finds the table empty).
    static HANDLER: AtomicBool = AtomicBool::new(false);
    if !HANDLER.load(Acquire) {
        let _ = sys::in_every_forked_child(close_members_in_child);
        HANDLER.store(true, Release);
    }
    FORKED
        .iter()
        .position(|f| f.compare_exchange(-1, fd, AcqRel, Relaxed).is_ok())
        .unwrap_or(usize::MAX)
}

fn unlist(at: usize, fd: RawFd) {
    if let Some(f) = FORKED.get(at) {
        let _ = f.compare_exchange(fd, -1, AcqRel, Relaxed);
    }
}

/// Runs in a forked child: closes the parent's member descriptors (async-signal-safe:
/// atomics and `close`). The child's `Member` values still hold those numbers; they
/// belong to the parent's fork epoch, so the child never uses them, and forgets them
/// unclosed (`Queue` checks the epoch before it uses or drops a member).
extern "C" fn close_members_in_child() {
    for f in &FORKED {
        let fd = f.swap(-1, AcqRel);
        if fd >= 0 {
            sys::close_raw(fd);
        }
    }
}
