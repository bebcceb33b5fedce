//! Every wait in user space: how long, and how often, a side looks at the ring before it
//! sleeps on a doorbell (see [`crate::shm::wakeup`]) or takes what there is. One home,
//! so that the trade-offs sit side by side:
//!
//! * a look at the other side's index pulls its cache line over from the other core,
//!   and the other side's next write of it then waits for the line to come back: looking
//!   too often slows the side being waited for;
//! * a sleep and its wake-up cost a few microseconds of system calls and scheduling on
//!   both sides: spinning about that long first keeps a conversation in user space;
//! * the clock is read only after a first round of looks, so that a wait that ends
//!   within it costs no `clock_gettime`.
//!
//! Why not crossbeam-utils' `Backoff`: it doubles its pauses up to a limit and then
//! yields the thread to the scheduler, and says when to give up by a count. A waiter
//! here wants a steady look rate chosen by what a look costs the other side, for a time
//! bounded by the clock and the caller's deadline, and then a sleep on a doorbell that
//! the other side rings.

use crate::deadline::Deadline;
use crate::error::Result;
use std::time::Duration;

/// How long to spin before going to sleep. Sleeping and being woken costs a few
/// microseconds of system calls and scheduling on both sides; spinning for about that
/// long first keeps a busy conversation entirely in user space.
pub(crate) const SPIN_FOR: Duration = Duration::from_micros(20);

/// How long an `AsyncConnection` receive looks at an empty ring before it sleeps in the
/// reactor. Shorter than the blocking receive's spin: the runtime's other tasks run
/// between rounds of looks, but the thread stays busy.
#[cfg(feature = "tokio")]
pub(crate) const ASYNC_SPIN_FOR: Duration = Duration::from_micros(10);

/// Looks of an `AsyncConnection` receive between two yields to the runtime: a yield lets
/// other tasks run, but the runtime then polls its reactor (a system call).
#[cfg(feature = "tokio")]
pub(crate) const ASYNC_LOOKS_PER_YIELD: usize = 32;

/// A writer that found the ring full waits, spinning, until `1 / REFILL_FRACTION` of
/// it is free, then writes a burst (hysteresis): taking each record's worth of room as
/// the reader frees it would move the reader's `tail` line between the cores once per
/// message. Used by the pipe's writer (`Endpoint::look_for_room` in `shm/send.rs`) and a
/// queue's producer (`crate::queue::sides`).
pub(crate) const REFILL_FRACTION: usize = 8;

/// How many times a blocking receive in a conversation that finds the ring empty looks
/// again with the one-pass check before it enters the general wait: about a
/// microsecond.
pub(crate) const QUICK_SPINS: usize = 64;

/// A reader that has caught up with a streaming writer looks again every this many
/// pauses (see `Endpoint::receive_whole` in `shm/receive.rs`): a few hundred nanoseconds, long enough for
/// the writer to get ahead, short enough that a round trip hardly notices.
pub(crate) const CAUGHT_UP_GAP: usize = 16;

/// How far a reader chasing a streaming writer stays behind it, in bytes published and
/// not yet read (see `Endpoint::receive_whole` in `shm/receive.rs`): 32 cache lines.
pub(crate) const DISTANCE: u64 = 2048;

/// Pauses between two looks of a reader keeping its distance, once something is there
/// to read: short, so that a reader behind a writer that paused
/// loses little.
pub(crate) const FIRST_LOOK: usize = 4;

/// How many times a reader keeping its distance looks for the writer to get that far
/// ahead before it takes what there is (or, with nothing there, goes to the general
/// wait): a microsecond or two at most.
pub(crate) const DISTANCE_LOOKS: usize = 4;

/// How often a spinning side looks at the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Looks {
    /// Between every two pauses: for a reader waiting for the next record, which it
    /// wants the moment it is published.
    Eager,
    /// Once per [`SPARSE_GAP`] pauses: for a writer waiting for the reader to free a
    /// chunk of the ring. Each look loads the reader's `tail`, pulling its cache line
    /// from the reader's core, and the reader's next publish of `tail` (a locked
    /// `compare_exchange`) then stalls until it has the line back: a writer looking
    /// eagerly slows its reader down on every message. The chunk takes many records to
    /// free, so looking less often delays the writer by at most one gap.
    Sparse,
}

/// Pauses between two looks of a [`Looks::Sparse`] spin: about a microsecond on x86-64
/// (a `pause` takes tens of cycles on recent cores, more on some), a small fraction of the
/// time the reader takes to free a chunk.
const SPARSE_GAP: usize = 32;

/// Spins on `ready` for a while, never past `deadline`, looking as often as `looks` says.
///
/// The clock is read only after a first round of checks: a blocking receive in a busy
/// conversation usually succeeds within that round, and reading the clock first would
/// put a `clock_gettime` on every message's critical path.
pub(crate) fn spin<F>(
    ready: &mut F,
    n: usize,
    deadline: Deadline,
    looks: Looks,
) -> Result<Option<usize>>
where
    F: FnMut(usize) -> Result<bool>,
{
    let (rounds, gap) = match looks {
        Looks::Eager => (64, 1),
        Looks::Sparse => (2, SPARSE_GAP),
    };
    // With a deadline (poll with a timeout) respect it from the start.
    let mut until = match deadline {
        Deadline::Never => None,
        d => Some(d.capped(SPIN_FOR)),
    };
    loop {
        if until.is_some_and(Deadline::passed) {
            return Ok(None);
        }
        for _ in 0..rounds {
            for i in 0..n {
                if ready(i)? {
                    return Ok(Some(i));
                }
            }
            pause(gap);
        }
        if until.is_none() {
            until = Some(deadline.capped(SPIN_FOR));
        }
    }
}

/// Pauses `n` times (`spin_loop`: the CPU's hint that this is a busy wait).
#[inline(always)]
pub(crate) fn pause(n: usize) {
    for _ in 0..n {
        std::hint::spin_loop();
    }
}
