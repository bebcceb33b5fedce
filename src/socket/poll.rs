//! Waiting for a descriptor to become readable or writable, until a deadline.

use crate::deadline::{self, Deadline};
use crate::error::Result;
use rustix::event::{PollFd, PollFlags};
use std::os::fd::BorrowedFd;

/// Waits until `fd` shows one of `events` (or an error or hang-up, which the caller's
/// next read or write reports), or until `deadline`. Returns the events seen; empty if
/// the deadline passed (see [`deadline::poll`] for signals).
pub(crate) fn wait(fd: BorrowedFd<'_>, events: PollFlags, deadline: Deadline) -> Result<PollFlags> {
    let mut fds = [PollFd::new(&fd, events)];
    if deadline::poll(&mut fds, deadline)? == 0 {
        return Ok(PollFlags::empty());
    }
    Ok(fds[0].revents())
}
