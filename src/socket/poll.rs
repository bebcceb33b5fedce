//! Waiting for a descriptor to become readable or writable, until a deadline.

use crate::error::Result;
use rustix::event::{PollFd, PollFlags, Timespec};
use std::os::fd::BorrowedFd;
use std::time::Instant;

/// Waits until `fd` shows one of `events` (or an error or hang-up, which the caller's
/// next read or write reports), or until `deadline` (`None`: no limit). Returns the
/// events seen; empty if the deadline passed. Retries after signals.
pub(crate) fn wait(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    deadline: Option<Instant>,
) -> Result<PollFlags> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                Some(Timespec {
                    tv_sec: left.as_secs() as i64,
                    tv_nsec: left.subsec_nanos() as i64,
                })
            }
        };
        let mut fds = [PollFd::new(&fd, events)];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) => {
                if deadline.is_some_and(|at| Instant::now() >= at) {
                    return Ok(PollFlags::empty());
                }
            }
            Ok(_) => return Ok(fds[0].revents()),
            Err(rustix::io::Errno::INTR) => {
                if let Some(e) = crate::deadline::on_signal() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}
