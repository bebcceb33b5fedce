//! Blocking without burning a core, and without a system call per message.
//!
//! A side that finds nothing to do (no record to read, or no room to write) first spins
//! for a short while, re-checking the ring (see [`crate::shm::spin`]). If that does not help it *announces* that it
//! will sleep by raising its sleeping flag in the ring's control block, re-checks the
//! ring once more, and only then sleeps in `poll(2)` on its doorbells (see
//! [`crate::shm::doorbell`]), which also report the peer's death (see
//! [`crate::shm::liveness`]).
//!
//! The other side, after every publish, loads that flag; only if it is raised does it
//! take it down (`swap`) and ring the doorbell with one non-blocking `send(2)`. On a steady stream
//! nobody sleeps, so no system call is made at all.
//!
//! No wake-up can be lost: the sleeper does *raise flag; fence; load index*, the waker
//! does *publish index; fence; load flag*, so at least one of the two loads sees the
//! other side's store: either the sleeper sees the new record and does not sleep, or
//! the waker sees the flag and rings. A reader publishing `tail` fences with its
//! `compare_exchange`; a writer publishing `head` uses the asymmetric fence of
//! [`crate::shm::fence`], whose expensive half the reader pays here, before it sleeps.

use crate::deadline::{self, Deadline};
use crate::error::Result;
use crate::shm::doorbell::{Doorbell, Drained};
use crate::shm::fence;
use crate::shm::liveness::hung_up;
use crate::shm::ring::{Consumer, Producer};
use crate::shm::spin::{self, Looks};
use crate::shm::sync::AtomicU32;
use rustix::event::{PollFd, PollFlags};
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

/// The longest a sleeper sleeps before it re-checks the ring on its own.
///
/// With one process per side no wake-up is ever lost (see above, and the loom and shuttle
/// models), so this never matters. It is there for misuse: when two processes block on
/// the same end at once they share one sleeping flag, the waker lowers it for both and
/// rings once, and the process that did not drain the doorbell would sleep forever. With
/// the backstop it re-checks within this time instead. An idle sleeper pays one
/// `poll(2)` return per period: a few microseconds of CPU in a tenth of a second.
const BACKSTOP: Duration = Duration::from_millis(100);

/// The backstop when the kernel refused the reader's barrier (see
/// [`crate::shm::fence`]): a writer that published without a fence may then not see our
/// flag, so the wait re-checks the ring on its own this often.
const UNFENCED_BACKSTOP: Duration = Duration::from_millis(1);

/// One thing to wait for: our side of a ring (whose sleeping flag announces that we
/// sleep), the doorbell the other side rings for it, and our other doorbell. Both
/// doorbells report the peer's death, and both are drained when they show bytes: stray
/// bytes or passed descriptors on either could otherwise hide a hang-up (see
/// [`crate::shm::doorbell`]).
pub(crate) struct Waiter<'a> {
    pub side: Side<'a>,
    pub bell: &'a Doorbell,
    /// Our other doorbell, or `None` when another thread of this process waits on it: a
    /// half of a [`split`](crate::Connection::split) end, whose other half would lose the
    /// wake-ups we drained from it. Either doorbell reports the peer's death.
    pub other: Option<&'a Doorbell>,
}

/// Which side of a ring waits: the reader, for records, or the writer, for room.
#[derive(Clone, Copy)]
pub(crate) enum Side<'a> {
    Reader(&'a Consumer),
    Writer(&'a Producer),
}

impl<'a> Side<'a> {
    fn flag(self) -> &'a AtomicU32 {
        match self {
            Side::Reader(c) => c.sleeping_flag(),
            Side::Writer(p) => p.sleeping_flag(),
        }
    }
}

/// What ended a wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The condition of waiter `i` holds.
    Ready(usize),
    /// The peer of waiter `i` is gone (every copy of the other end closed).
    PeerGone(usize),
    /// The deadline passed.
    TimedOut,
}

/// Waits until `ready(i)` holds for some waiter, the peer of some waiter is gone, or the
/// deadline passes. Signals never end the wait early, and no sleep lasts longer than
/// [`BACKSTOP`] without a re-check. The sleeping flags are down again on return (a
/// watched `fileno` raises its own again, see `Endpoint::settle_watch`).
pub(crate) fn wait<'a, F>(waiters: &[Waiter<'a>], mut ready: F, deadline: Deadline) -> Result<Woken>
where
    F: FnMut(usize) -> Result<bool>,
{
    if let Some(i) = spin::spin(&mut ready, waiters.len(), deadline, Looks::Eager)? {
        return Ok(Woken::Ready(i));
    }
    // Per waiter: the doorbell rung for it, then the other one. POLLHUP is always
    // reported; RDHUP too so that a half-closed socket counts.
    // (Without another doorbell, our own twice: the indices stay `2 * i + k`.)
    let pair = |w: &Waiter<'a>| {
        [w.bell, w.other.unwrap_or(w.bell)]
            .map(|b| PollFd::from_borrowed_fd(b.fd(), PollFlags::IN | PollFlags::RDHUP))
    };
    // One connection (every blocking call but `shmpipe::wait`) needs no allocation.
    let mut one;
    let mut many: Vec<PollFd<'a>>;
    let fds: &mut [PollFd<'a>] = if let [w] = waiters {
        one = pair(w);
        &mut one
    } else {
        many = waiters.iter().flat_map(pair).collect();
        &mut many
    };
    // The flags come down however the wait ends, an error included.
    let result = sleep_until(waiters, &mut ready, fds, deadline);
    lower_flags(waiters);
    result
}

/// The sleeping part of [`wait`]: announce, re-check, sleep on the doorbells (drained
/// when they show bytes), look again, until something is ready, a peer is gone or the
/// deadline passes.
fn sleep_until<F>(
    waiters: &[Waiter<'_>],
    ready: &mut F,
    fds: &mut [PollFd<'_>],
    deadline: Deadline,
) -> Result<Woken>
where
    F: FnMut(usize) -> Result<bool>,
{
    loop {
        let backstop = announce(waiters);
        // Re-check after announcing (see the module documentation).
        if let Some(i) = first_ready(ready, waiters.len())? {
            return Ok(Woken::Ready(i));
        }
        for f in fds.iter_mut() {
            f.clear_revents();
        }
        deadline::poll(fds, deadline.capped(backstop))?;
        let gone = drain_shown(waiters, fds)?;
        if let Some(i) = first_ready(ready, waiters.len())? {
            return Ok(Woken::Ready(i));
        }
        if let Some(i) = gone {
            return Ok(Woken::PeerGone(i));
        }
        if deadline.passed() {
            return Ok(Woken::TimedOut);
        }
    }
}

/// Announces on every waiter's ring, as [`Consumer::announce`] and
/// [`Producer::announce`] do for one, with one fence for all: a reader may need the
/// asymmetric fence's barrier ([`crate::shm::fence`]), and one serves every ring.
/// Returns how long a sleep may last before it looks again on its own: [`BACKSTOP`], or
/// [`UNFENCED_BACKSTOP`] where a refused barrier leaves a writer's publish unordered
/// with our flag (we do not count on being woken then).
fn announce(waiters: &[Waiter<'_>]) -> Duration {
    let (mut for_records, mut fenced) = (false, true);
    for w in waiters {
        match w.side {
            Side::Reader(c) => {
                for_records = true;
                fenced &= c.raise_flag(false);
            }
            Side::Writer(p) => p.announce(),
        }
    }
    if for_records && !fence::before_recheck(fenced) {
        UNFENCED_BACKSTOP
    } else {
        BACKSTOP
    }
}

/// After a sleep: drains every doorbell that `poll` showed readable (closing any
/// descriptor passed to us, which may reveal a hang-up that the descriptor in flight was
/// hiding), and returns the first waiter whose peer is gone.
fn drain_shown(waiters: &[Waiter<'_>], fds: &[PollFd<'_>]) -> Result<Option<usize>> {
    let mut gone = None;
    for (i, w) in waiters.iter().enumerate() {
        for (k, bell) in [w.bell, w.other.unwrap_or(w.bell)].into_iter().enumerate() {
            let revents = fds[2 * i + k].revents();
            let drained_to_the_end = !hung_up(revents)
                && revents.contains(PollFlags::IN)
                && bell.drain()? == Drained::HungUp;
            if hung_up(revents) || drained_to_the_end {
                gone = gone.or(Some(i));
            }
        }
    }
    Ok(gone)
}

/// Takes our sleeping flags down again.
fn lower_flags(waiters: &[Waiter<'_>]) {
    for w in waiters {
        w.side.flag().store(0, SeqCst);
    }
}

fn first_ready<F: FnMut(usize) -> Result<bool>>(ready: &mut F, n: usize) -> Result<Option<usize>> {
    for i in 0..n {
        if ready(i)? {
            return Ok(Some(i));
        }
    }
    Ok(None)
}
