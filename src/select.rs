//! [`wait`]: block on many connections at once, like `multiprocessing.connection.wait`.

use crate::connection::Connection;
use crate::deadline::{self, Deadline};
use crate::error::{Error, Result};
use crate::shm::endpoint::{Breakable, Endpoint, Rx};
use crate::shm::wakeup::{self, Waiter, Woken};
use rustix::event::{PollFd, PollFlags};
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

/// Waits until at least one of `conns` has a message waiting or has reached EOF, or
/// until `timeout` passes (`None`: no limit). Returns the indices, in `conns`, of every
/// connection that is ready; empty on timeout. Consumes nothing.
///
/// # Errors
/// [`Error::Closed`] or [`Error::NotReadable`] if one of `conns` is closed or is the
/// writing end of a one-way pipe; [`Error::Invalid`] if `conns` is empty and no
/// timeout is given (it would wait forever).
///
/// ```
/// use std::time::Duration;
/// let (a1, b1) = shmpipe::pipe(true)?;
/// let (a2, b2) = shmpipe::pipe(true)?;
/// a2.send_bytes(b"second")?;
/// assert_eq!(shmpipe::wait(&[&b1, &b2], None)?, vec![1]);
/// drop(a1);
/// assert_eq!(shmpipe::wait(&[&b1, &b2], Some(Duration::ZERO))?, vec![0, 1]);
/// # Ok::<(), shmpipe::Error>(())
/// ```
pub fn wait(conns: &[&Connection], timeout: Option<Duration>) -> Result<Vec<usize>> {
    if conns.is_empty() && timeout.is_none() {
        return Err(Error::Invalid(
            "wait on no connections without a timeout".into(),
        ));
    }
    let mut ends: Vec<(&Endpoint, &Rx)> = Vec::with_capacity(conns.len());
    for c in conns {
        let Some(ep) = c.transport()?.shm() else {
            return wait_on_descriptors(conns, timeout);
        };
        let rx = ep.receiving()?;
        rx.guard(rx.consumer.resync())?;
        ends.push((ep, rx));
    }
    let has_data = |i: usize| -> Result<bool> {
        let rx = ends[i].1;
        rx.guard(rx.consumer.has_data())
    };
    let mut any = false;
    for i in 0..ends.len() {
        any |= has_data(i)?;
    }
    if !any {
        let waiters: Vec<Waiter<'_>> = ends.iter().map(|(ep, rx)| ep.data_waiter(rx)).collect();
        let woken = wakeup::wait(&waiters, has_data, Deadline::after(timeout))?;
        if woken == Woken::TimedOut {
            settle(&ends)?;
            return Ok(Vec::new());
        }
    }
    // Report every connection that is ready now, not only the one that woke us.
    let mut ready = Vec::new();
    for (i, (ep, _)) in ends.iter().enumerate() {
        if has_data(i)? || ep.peer_gone()? {
            ready.push(i);
        }
    }
    settle(&ends)?;
    Ok(ready)
}

/// `wait` on a list with socket connections in it: `poll(2)` on every connection's
/// [`fileno`](Connection::fileno), which is readable exactly when its `poll` would say
/// true. (A shared-memory end then keeps its `fileno` exact from here on: a system call
/// each time a receive empties its ring.)
fn wait_on_descriptors(conns: &[&Connection], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let until = Deadline::after(timeout);
    loop {
        let mut ready = Vec::new();
        for (i, c) in conns.iter().enumerate() {
            if c.poll(Some(Duration::ZERO))? {
                ready.push(i);
            }
        }
        if !ready.is_empty() || until.passed() {
            return Ok(ready);
        }
        let fds = conns
            .iter()
            .map(|c| c.fileno())
            .collect::<Result<Vec<RawFd>>>()?;
        // SAFETY: each number is a descriptor its connection owns, open while the
        // connection is borrowed by this call.
        let borrowed: Vec<BorrowedFd<'_>> = fds
            .iter()
            .map(|&fd| unsafe { BorrowedFd::borrow_raw(fd) })
            .collect();
        // A socket connection still holding part of a sent message also wakes when it
        // can push it out (the next round's `poll` does): the answer we wait for may
        // depend on it.
        let mut pollfds: Vec<PollFd<'_>> = borrowed
            .iter()
            .zip(conns)
            .map(|(fd, c)| match c.has_unsent_output() {
                true => PollFd::new(fd, PollFlags::IN | PollFlags::OUT),
                false => PollFd::new(fd, PollFlags::IN),
            })
            .collect();
        deadline::poll(&mut pollfds, until)?;
    }
}

/// Restores the readiness of any watched `fileno` that the wait may have drained.
fn settle(ends: &[(&Endpoint, &Rx)]) -> Result<()> {
    for (ep, _) in ends {
        ep.settle_watch()?;
    }
    Ok(())
}
