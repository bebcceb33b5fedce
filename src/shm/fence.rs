//! The asymmetric fence of the wake-up protocol: the writer publishing a record pays
//! nothing per message; the reader about to sleep pays one `membarrier(2)`.
//!
//! The wake-up protocol (see [`crate::shm::wakeup`]) is a store then a load on each
//! side: the writer *publishes `head`, then loads the reader's sleeping flag*; the
//! reader about to sleep *raises the flag, then loads `head`*. Neither side's load may
//! be satisfied before its own store is visible to the other, or both could miss each
//! other: the writer sees no flag and rings nobody, the reader sees no record and
//! sleeps, and the message waits. A CPU keeps that order only behind a full fence or a
//! locked instruction (`mfence`, `lock cmpxchg` on x86-64). Those wait until the CPU's
//! store buffer has drained, and the writer's store buffer holds the record it just
//! wrote, into cache lines that a reader keeping up is reading: every fence waits for a
//! round trip to the other core: one `compare_exchange` per message made a bare ring's
//! stream of small messages several times slower (DESIGN.md, "Why the writer has no
//! fence").
//!
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` runs a full barrier on every CPU that
//! is running a thread of a process registered for it, before it returns; a thread that
//! is not running went through the scheduler, which is a full barrier too. So the
//! writer, in a registered process, follows its `head` store with a compiler fence
//! only ([`after_publish`]), and the reader calls [`before_recheck`] between raising
//! its flag and looking at `head` again. No wake-up is lost:
//!
//! * let B be the barrier membarrier ran on the writer's CPU, after the reader's flag
//!   store (the reader's own full fence and the system call order the store first);
//! * if the writer's `head` store came before B, B made it visible before membarrier
//!   returned, so the reader's re-check sees the record and the reader does not sleep;
//! * otherwise the writer's flag load comes after B too (program order, kept by the
//!   compiler fence), and B made the reader's flag visible: the writer rings.
//!
//! The other direction needs nothing new: the reader publishes `tail` with a
//! `compare_exchange` (a full barrier) before it loads the writer's flag.
//!
//! The barrier interrupts every CPU running a registered process, which is fine once per
//! sleep and not once per message. A reader that announces itself after every receive
//! that empties the ring (a watched `fileno`, an async receive) raises
//! [`WATCHING`](crate::shm::ring::WATCHING) with its flag, and a writer that takes
//! such a flag down publishes with a full fence from then on and sets the ring's
//! `writer_fences` word (a `Release` store, after that publish). A reader that
//! finds the word set ([`writer_fences`], an `Acquire` load, before raising its flag)
//! takes a plain `fence(SeqCst)`:
//!
//! * a record published before the word was set happens-before the reader's load of
//!   the word, so the re-check sees it;
//! * a record published after it is followed by the writer's full fence, and the two
//!   fences make the classic handshake.
//!
//! The word is never cleared, and a writer that takes an end over from another process
//! reads it (at attach and when it resyncs), so a set word always means fenced
//! publishes by an honest writer.
//!
//! A process where registration is refused (no `membarrier` in the kernel, or a seccomp
//! policy) publishes with a `SeqCst` fence instead, and both sides' fences then make the
//! classic fence-based handshake. A peer that skips its fence without registering only
//! delays its own messages to us, as it could by withholding them: our sleeps are
//! bounded (see `wakeup::BACKSTOP`), and EOF comes from the kernel, not from this.

use crate::shm::sync::{compiler_fence, fence, AtomicU32};
use std::sync::atomic::{Ordering::Acquire, Ordering::SeqCst};
use std::sync::OnceLock;

/// Registers this process for expedited global memory barriers, once per process image
/// (the registration survives `fork` and is cleared by `exec`, as is this static).
/// Returns whether this process may publish without a fence: the value to pass to
/// [`after_publish`].
pub(crate) fn register() -> bool {
    // Miri runs no system calls: the ring's unit tests take the fenced path there.
    if cfg!(miri) {
        return false;
    }
    // Under loom the writer's compiler fence is a full fence (`crate::shm::sync`), so
    // the fence-less path runs, as the fenced protocol it stands for.
    if cfg!(loom) {
        return true;
    }
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        use rustix::thread::{membarrier, membarrier_query, MembarrierCommand, MembarrierQuery};
        let needs = MembarrierQuery::GLOBAL_EXPEDITED | MembarrierQuery::REGISTER_GLOBAL_EXPEDITED;
        membarrier_query().contains(needs)
            && membarrier(MembarrierCommand::RegisterGlobalExpedited).is_ok()
    })
}

/// Orders the writer's `head` store before its load of the reader's sleeping flag: a
/// compiler fence when this process is registered (`fenceless`, from [`register`]), the
/// reader's [`before_recheck`] doing the CPU's part; a full fence otherwise.
#[inline]
pub(crate) fn after_publish(fenceless: bool) {
    if fenceless {
        compiler_fence(SeqCst);
    } else {
        fence(SeqCst);
    }
}

/// Whether the writer of a ring says it publishes with a full fence (its
/// `writer_fences` word). `Acquire`: a reader that sees the word also sees every record
/// published before it was set, fenced or not.
pub(crate) fn writer_fences(word: &AtomicU32) -> bool {
    word.load(Acquire) != 0
}

/// The reader's half, between raising its sleeping flag and looking at `head` again.
/// `writer_fences`: what [`writer_fences`] said before the flag went up; then a full
/// fence here suffices. Otherwise, a full fence here and a full barrier on every CPU
/// running a registered writer (`membarrier`).
/// Returns `false` if the kernel refused the barrier; the caller must then not rely on
/// being woken (it re-checks the ring soon on its own).
pub(crate) fn before_recheck(writer_fences: bool) -> bool {
    fence(SeqCst);
    if writer_fences {
        return true;
    }
    // Miri and loom run no system calls.
    if cfg!(miri) || cfg!(loom) {
        return false;
    }
    #[cfg(test)]
    BARRIERS.with(|n| n.set(n.get() + 1));
    rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited).is_ok()
}

#[cfg(test)]
thread_local! {
    /// How many `membarrier` calls this thread made (for tests of how often).
    pub(crate) static BARRIERS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where this process may publish without a fence, its readers' barrier works too
    /// (the barrier is what makes the fence-less publish safe); registering is
    /// idempotent.
    #[test]
    fn a_registered_process_gets_its_barriers() {
        let fenceless = register();
        assert_eq!(register(), fenceless);
        if fenceless {
            assert!(before_recheck(false));
        }
        eprintln!("publishing without a fence: {fenceless}");
    }

    /// Regression: a reader whose `fileno` was handed out announces itself after every
    /// receive that empties the ring, and each announcement took a `membarrier`, which
    /// interrupts every CPU running the writer's process: with the system calls of the
    /// doorbells, about a dozen microseconds per message of a stream that the reader
    /// keeps up with. Now the first announcement asks the writer to fence its publishes,
    /// and the ones after it take a plain fence. The descriptor stays exact throughout.
    #[test]
    fn a_watched_reader_takes_one_barrier_not_one_per_message() {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        use std::os::fd::BorrowedFd;
        let (b, a) = crate::pipe(false).unwrap();
        // Its first announcement, with nothing published yet, takes the barrier.
        let fd = b.fileno().unwrap();
        // SAFETY: `b` keeps its `fileno` open until it is dropped, after the last use.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let readable = || {
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            poll(&mut fds, Some(&Timespec::default())).unwrap() == 1
        };
        let before = BARRIERS.with(|n| n.get());
        let mut buf = [0u8; 64];
        for i in 0..200u8 {
            assert!(
                !readable(),
                "readable with nothing waiting, before message {i}"
            );
            a.send_bytes(&[i; 64]).unwrap();
            assert!(readable(), "not readable with message {i} waiting");
            assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 64);
            assert_eq!(buf, [i; 64]);
        }
        let barriers = BARRIERS.with(|n| n.get()) - before;
        if register() {
            assert_eq!(barriers, 0, "barriers for 200 messages");
        }
    }
}
