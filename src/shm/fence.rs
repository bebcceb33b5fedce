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
//! A process where registration is refused (no `membarrier` in the kernel, or a seccomp
//! policy) publishes with a `SeqCst` fence instead, and both sides' fences then make the
//! classic fence-based handshake. A peer that skips its fence without registering only
//! delays its own messages to us, as it could by withholding them: our sleeps are
//! bounded (see `wakeup::BACKSTOP`), and EOF comes from the kernel, not from this.

use std::sync::atomic::{compiler_fence, fence, Ordering::SeqCst};
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

/// The reader's half, between raising its sleeping flag and looking at `head` again:
/// a full fence here, and a full barrier on every CPU running a registered writer.
/// Returns `false` if the kernel refused the barrier; the caller must then not rely on
/// being woken (it re-checks the ring soon on its own).
pub(crate) fn before_recheck() -> bool {
    fence(SeqCst);
    if cfg!(miri) {
        return false;
    }
    rustix::thread::membarrier(rustix::thread::MembarrierCommand::GlobalExpedited).is_ok()
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
            assert!(before_recheck());
        }
        eprintln!("publishing without a fence: {fenceless}");
    }
}
