//! How a blocked put or get waits, and how the other side wakes it: a spin first, then
//! naps on a futex word in the control page that the other side bumps (and wakes) only
//! when someone counts themselves as waiting.
//!
//! No wake-up is lost: the waiter counts itself, fences, then looks at the ring; the
//! waker publishes, fences, then looks at the count. One of the two sees the other's
//! store. A waiter still naps at most [`LOOK_AGAIN`] at a time: a waker in another
//! process may die between its publish and its wake.

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::queue::lock::{sleep_while, LOOK_AGAIN};
use crate::shm::spin::{self, Looks};
use rustix::thread::futex;
use std::sync::atomic::{fence, AtomicU32, Ordering::SeqCst};

/// Waits until `ready` holds, sleeping on `seq` (bumped by [`wake`]) in naps of at most
/// [`LOOK_AGAIN`] (a waker in another process may die between its publish and its
/// wake), by `deadline`. The spin before the sleep looks as often as `looks` says: a
/// getter eagerly, a putter sparsely (each look pulls the getter's `tail` line over).
pub(crate) fn wait_for(
    seq: &AtomicU32,
    waiters: &AtomicU32,
    mut ready: impl FnMut() -> Result<bool>,
    deadline: Deadline,
    looks: Looks,
) -> Result<()> {
    // First a spin, as the pipe's sides do (`crate::shm::spin`): the other side is
    // usually a moment away, and a sleeper makes every put or get after it pay a wake.
    if spin::spin(&mut |_| ready(), 1, deadline, looks)?.is_some() {
        return Ok(());
    }
    waiters.fetch_add(1, SeqCst);
    // No lost wake-up: our count is ordered before our look at the ring, the waker's
    // publish before its look at the count (see `wake`).
    fence(SeqCst);
    let result = loop {
        let seen = seq.load(SeqCst);
        match ready() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
        let nap = match deadline {
            Deadline::Now => break Err(Error::WouldBlock),
            Deadline::Never => LOOK_AGAIN,
            Deadline::At(_) => match deadline.remaining() {
                Some(left) if !left.is_zero() => left.min(LOOK_AGAIN),
                _ => break Err(Error::Timeout),
            },
        };
        if let Err(e) = sleep_while(seq, seen, nap) {
            break Err(e);
        }
    };
    waiters.fetch_sub(1, SeqCst);
    result
}

/// After a publish (a put's `head`, a get's `tail`): wakes whoever waits on `seq`.
pub(crate) fn wake(seq: &AtomicU32, waiters: &AtomicU32) {
    fence(SeqCst);
    if waiters.load(SeqCst) != 0 {
        seq.fetch_add(1, SeqCst);
        let _ = futex::wake(seq, futex::Flags::empty(), u32::MAX);
    }
}
