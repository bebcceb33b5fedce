//! Knowing when every copy of the other end is gone, in every process.
//!
//! A count in shared memory cannot do this: `fork` copies an end without telling
//! anyone, and a process killed with SIGKILL decrements nothing. The kernel, though,
//! counts references to open files exactly, across fork and exec, and drops a dead
//! process's references itself. So each pipe owns a Unix `socketpair`: end 0 holds one
//! socket, end 1 the other, and every copy of an end (a `fork`, an exec'd child given
//! the end) holds a descriptor of that end's socket. When the last descriptor of one
//! socket is closed, by `close`, by `drop` or by the death of the last process holding
//! it, the kernel marks the other socket hung up (`POLLHUP`). No byte is ever sent on
//! these sockets; they exist only to be closed.
//!
//! Sleepers poll the socket next to their doorbell, so a death wakes them at once.
//! A reader that finds its ring empty asks the socket before reporting EOF. A writer
//! cannot afford a system call per message, so it asks the socket only when there is
//! reason to: when it must wait for room, when the peer's `detached` counter in the
//! header shows that a copy of the reading end was closed gracefully, and whenever it
//! reloads the reader's `tail` (about once per ring's worth of data).

use crate::error::Result;
use rustix::event::{PollFd, PollFlags};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use std::os::fd::{BorrowedFd, OwnedFd};

/// Creates the two liveness sockets: `(end 0's, end 1's)`.
pub(crate) fn socket_pair() -> Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Asks the kernel, without blocking, whether every copy of the peer's socket is closed.
pub(crate) fn peer_gone(liveness: BorrowedFd<'_>) -> Result<bool> {
    let mut fds = [PollFd::from_borrowed_fd(liveness, PollFlags::RDHUP)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        match rustix::event::poll(&mut fds, Some(&zero)) {
            Ok(_) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(fds[0]
        .revents()
        .intersects(PollFlags::HUP | PollFlags::RDHUP | PollFlags::ERR | PollFlags::NVAL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn hang_up_is_seen_only_after_the_last_copy_closes() {
        let (a, b) = socket_pair().unwrap();
        let b2 = b.try_clone().unwrap();
        assert!(!peer_gone(a.as_fd()).unwrap());
        drop(b);
        assert!(!peer_gone(a.as_fd()).unwrap(), "a copy of b is still open");
        drop(b2);
        assert!(peer_gone(a.as_fd()).unwrap());
    }
}
