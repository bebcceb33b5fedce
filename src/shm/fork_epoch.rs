//! Telling this process from its forked copies, without a system call.
//!
//! A forked child starts with a copy of the parent's memory, including the state of a
//! message the parent was reading in place (see `Consumer::claim` in `shm/ring`). The
//! child must not give that message back on the parent's behalf. The epoch is a
//! per-process counter that a `pthread_atfork` child handler bumps, so a copy of a claim
//! made in another epoch is recognisably not ours. `getpid` would tell the same, but it
//! is a system call (glibc no longer caches it), paid twice per `recv_archived`.
//!
//! A child made by a raw `clone` system call, bypassing libc's `fork`, runs no atfork
//! handlers; such a child must not drop an inherited in-place message.

use std::sync::atomic::{
    AtomicBool, AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};

static EPOCH: AtomicU64 = AtomicU64::new(0);
/// Whether a handler is registered. Not a `Once`: a `fork` while another thread runs a
/// `Once` leaves it "running" forever in the child, and the child's first call would
/// wait for it forever. Threads that race here may each register a handler; every
/// handler bumps the epoch, and an epoch that moves by more than one per fork is as good.
static WATCHING_FORKS: AtomicBool = AtomicBool::new(false);

extern "C" fn in_child_after_fork() {
    // Relaxed: the child has one thread at this point; nothing to order against.
    EPOCH.fetch_add(1, Relaxed);
}

/// This process's epoch: different in every process forked from it (after the first
/// call) from the one it had here.
pub(crate) fn current() -> u64 {
    // Acquire/Release: whoever sees the flag set also sees the registration done before
    // it, so no epoch is handed out before a handler exists.
    if !WATCHING_FORKS.load(Acquire) {
        // The handler only increments an atomic, which is async-signal-safe. ENOMEM is
        // the only documented failure; without the handler a child could release a
        // message its parent still reads, so refuse to go on.
        crate::sys::in_every_forked_child(in_child_after_fork).expect("pthread_atfork failed");
        WATCHING_FORKS.store(true, Release);
    }
    EPOCH.load(Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_has_another_epoch() {
        let here = current();
        // SAFETY: the child only calls `current` (an atomic load) and `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = if current() != here { 0 } else { 1 };
            // SAFETY: leaves the child without running the harness.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(current(), here, "the parent keeps its epoch");
    }
}
