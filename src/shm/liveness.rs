//! Knowing when every copy of the other end is gone, in every process.
//!
//! A count in shared memory cannot do this: `fork` copies an end without telling
//! anyone, and a process killed with SIGKILL decrements nothing. The kernel, though,
//! counts references to open files exactly, across fork and exec, and drops a dead
//! process's references itself. Each end's two doorbells (see [`crate::shm::doorbell`])
//! are halves of socketpairs whose other halves belong to the other end, and every copy
//! of an end (a `fork`, an exec'd child given the end) holds descriptors of its halves.
//! When the last descriptor of the peer's half is closed, by `close`, by `drop` or by the
//! death of the last process holding it, the kernel marks our half hung up (`POLLHUP`,
//! `POLLRDHUP`, and reads return end of stream).
//!
//! Sleepers poll their doorbells, so a death wakes them at once. A reader that finds
//! its ring empty asks the kernel before reporting EOF. A writer cannot afford a system
//! call per message, so it asks only when there is reason to: when it must wait for
//! room, when the peer's `detached` counter in the header shows that a copy of the
//! reading end was closed gracefully, and once per eighth of a ring's worth of data it
//! writes after reloading the reader's `tail` (`Endpoint::ask_about_reader_now_and_then`).
//!
//! A peer that is alive may still have sent bytes, or passed descriptors (its own halves,
//! to keep them open after it exits), into our queues (only where the kernel cannot
//! refuse them: see [`crate::sys`]). So a look at liveness drains a queue that shows
//! data, which hands any such descriptor to the closer thread, and looks again; the
//! hang-up it was hiding comes once that thread has closed it, and wakes a sleeper.

use crate::error::Result;
use crate::shm::doorbell::{Doorbell, Drained};
use rustix::event::{PollFd, PollFlags};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long a reader that looks without waiting (a non-blocking receive, `poll` with a
/// zero timeout) goes between two questions to the kernel while it finds the ring empty.
/// A busy-polling loop looks every few tens of nanoseconds; a system call per look costs
/// ten times the look, and would be most of a busy-polling round trip. In between, the
/// peer's `detached` counter (shared memory, bumped by every graceful close of a copy of
/// its end) stands in: a close is seen at the next look, a death by SIGKILL (which bumps
/// nothing) within this long of looking. Short enough that a program that looks once
/// after learning of a death (a `waitpid`, say) asks the kernel.
pub(crate) const LOOK_GAP: Duration = Duration::from_micros(20);

/// The rate limit of [`LOOK_GAP`]: when a reader that does not wait last asked the
/// kernel, and the peer's `detached` counter then.
#[derive(Debug, Default)]
pub(crate) struct Lookout {
    asked_at: Cell<Option<Instant>>,
    detached: Cell<u64>,
    /// The kernel said the peer is gone: it stays gone, and no look asks again.
    gone: Cell<bool>,
}

impl Lookout {
    /// Whether a look that found the ring empty at `now` must ask the kernel, given the
    /// peer's `detached` counter as it is now: it moved, or [`LOOK_GAP`] has passed.
    /// Records the ask if so.
    pub(crate) fn due(&self, detached: u64, now: Instant) -> bool {
        if self.gone.get() {
            return false;
        }
        let due = detached != self.detached.get()
            || self
                .asked_at
                .get()
                .is_none_or(|at| now.saturating_duration_since(at) >= LOOK_GAP);
        if due {
            self.asked_at.set(Some(now));
            self.detached.set(detached);
        }
        due
    }

    /// The answer the kernel gave to an ask [`due`](Lookout::due) called for; a peer
    /// gone is gone for good (every copy of its end is closed, and none can come back).
    pub(crate) fn answered(&self, gone: bool) {
        self.gone.set(self.gone.get() | gone);
    }

    /// Whether the kernel has said that the peer is gone.
    pub(crate) fn gone(&self) -> bool {
        self.gone.get()
    }
}

/// Whether a poll result says the other side hung up.
pub(crate) fn hung_up(revents: PollFlags) -> bool {
    revents.intersects(PollFlags::HUP | PollFlags::RDHUP | PollFlags::ERR | PollFlags::NVAL)
}

/// What [`peer_gone`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Look {
    /// Every copy of the other end is gone.
    pub gone: bool,
    /// The data doorbell had bytes, which were drained (a watched `fileno` must then be
    /// settled again).
    pub drained_data: bool,
}

/// Asks the kernel, without blocking, whether every copy of the peer's end is gone, given
/// our two doorbells `[data, space]`, draining those that are `ours` (a half of a split
/// end leaves the other half's doorbell to it).
pub(crate) fn peer_gone(bells: [&Doorbell; 2], ours: [bool; 2]) -> Result<Look> {
    let mut look = Look::default();
    let interest = |i: usize| {
        if ours[i] {
            PollFlags::IN | PollFlags::RDHUP
        } else {
            PollFlags::RDHUP
        }
    };
    // Two rounds: the second sees the hang-up that closing passed descriptors revealed.
    for _ in 0..2 {
        let mut fds = [0, 1].map(|i| PollFd::from_borrowed_fd(bells[i].fd(), interest(i)));
        poll_now(&mut fds)?;
        if fds.iter().any(|f| hung_up(f.revents())) {
            look.gone = true;
            return Ok(look);
        }
        let mut drained = false;
        for (i, f) in fds.iter().enumerate() {
            if f.revents().contains(PollFlags::IN) {
                drained = true;
                look.drained_data |= i == 0;
                if bells[i].drain()? == Drained::HungUp {
                    look.gone = true;
                    return Ok(look);
                }
            }
        }
        if !drained {
            break;
        }
    }
    Ok(look)
}

/// Whether either doorbell reports a hang-up now, without draining anything: for the
/// async wrapper, which drains its doorbells itself (and must, so that no wake-up one of
/// its tasks waits for is taken by another).
pub(crate) fn hung_up_now(bells: [&Doorbell; 2]) -> Result<bool> {
    let mut fds = bells.map(|b| PollFd::from_borrowed_fd(b.fd(), PollFlags::RDHUP));
    poll_now(&mut fds)?;
    Ok(fds.iter().any(|f| hung_up(f.revents())))
}

fn poll_now(fds: &mut [PollFd<'_>]) -> Result<()> {
    crate::deadline::poll(fds, crate::deadline::Deadline::Now).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookout_asks_first_then_after_the_gap_or_when_the_counter_moves() {
        let l = Lookout::default();
        let t0 = Instant::now();
        assert!(l.due(0, t0), "the first look asks");
        assert!(!l.due(0, t0 + LOOK_GAP / 2));
        assert!(l.due(1, t0 + LOOK_GAP / 2), "a graceful close: at once");
        assert!(!l.due(1, t0 + LOOK_GAP));
        assert!(
            l.due(1, t0 + LOOK_GAP / 2 + LOOK_GAP),
            "the gap since the last ask"
        );
    }

    #[test]
    fn hang_up_is_seen_only_after_the_last_copy_closes() {
        let (data0, data1) = Doorbell::pair().unwrap();
        let (space0, space1) = Doorbell::pair().unwrap();
        // A second copy of the peer's end, as `fork` would make.
        let copy = [&data1, &space1].map(|b| b.fd().try_clone_to_owned().unwrap());
        assert!(!peer_gone([&data0, &space0], [true; 2]).unwrap().gone);
        drop((data1, space1));
        assert!(
            !peer_gone([&data0, &space0], [true; 2]).unwrap().gone,
            "a copy is still open"
        );
        drop(copy);
        assert!(peer_gone([&data0, &space0], [true; 2]).unwrap().gone);
    }

    #[test]
    fn bytes_from_a_live_peer_are_drained_not_taken_for_a_hang_up() {
        let (data0, data1) = Doorbell::pair().unwrap();
        let (space0, _space1) = Doorbell::pair().unwrap();
        data1.ring().unwrap();
        let look = peer_gone([&data0, &space0], [true; 2]).unwrap();
        assert_eq!(
            look,
            Look {
                gone: false,
                drained_data: true
            }
        );
        assert_eq!(data0.drain().unwrap(), Drained::Empty);
    }
}
