//! [`wait`]: block on many connections at once, like `multiprocessing.connection.wait`.

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::shm::endpoint::{Breakable, Endpoint, Rx};
use crate::shm::wakeup::{self, deadline_after, Waiter, Woken};
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
        let ep = c.inner.as_ref().ok_or(Error::Closed)?;
        let rx = ep.rx.as_ref().ok_or(Error::NotReadable)?;
        rx.ready_to_receive()?;
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
        let waiters: Vec<Waiter<'_>> = ends
            .iter()
            .map(|(ep, rx)| Waiter {
                flag: rx.consumer.sleeping_flag(),
                bell: &ep.bells().data,
                other: &ep.bells().space,
            })
            .collect();
        let woken = wakeup::wait(&waiters, has_data, timeout.map(deadline_after))?;
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

/// Restores the readiness of any watched `fileno` that the wait may have drained.
fn settle(ends: &[(&Endpoint, &Rx)]) -> Result<()> {
    for (ep, _) in ends {
        ep.settle_watch()?;
    }
    Ok(())
}
