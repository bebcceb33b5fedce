//! Telling this process from its forked copies, without a system call.
//!
//! A forked child starts with a copy of the parent's memory, including the state of a
//! message the parent was reading in place (see [`crate::ring::Consumer::claim`]). The
//! child must not give that message back on the parent's behalf. The epoch is a
//! per-process counter that a `pthread_atfork` child handler bumps, so a copy of a claim
//! made in another epoch is recognisably not ours. `getpid` would tell the same, but it
//! is a system call (glibc no longer caches it), paid twice per `recv_archived`.
//!
//! A child made by a raw `clone` system call, bypassing libc's `fork`, runs no atfork
//! handlers; such a child must not drop an inherited in-place message.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Once;

static EPOCH: AtomicU64 = AtomicU64::new(0);
static WATCH_FORKS: Once = Once::new();

extern "C" fn in_child_after_fork() {
    // Relaxed: the child has one thread at this point; nothing to order against.
    EPOCH.fetch_add(1, Relaxed);
}

/// This process's epoch: different in every process forked from it (after the first
/// call) from the one it had here.
pub(crate) fn current() -> u64 {
    WATCH_FORKS.call_once(|| {
        // SAFETY: registers a handler that only increments an atomic, which is
        // async-signal-safe, as handlers run in the child of a multi-threaded fork must be.
        let r = unsafe { libc::pthread_atfork(None, None, Some(in_child_after_fork)) };
        // ENOMEM is the only documented failure; without the handler a child could
        // release a message its parent still reads, so refuse to go on.
        assert_eq!(r, 0, "pthread_atfork failed");
    });
    EPOCH.load(Relaxed)
}
