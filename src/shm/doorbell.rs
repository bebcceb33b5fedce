//! Doorbells: how one process wakes the other, and (see [`crate::shm::liveness`]) how it
//! learns that the other is gone.
//!
//! A doorbell is one half of a Unix stream `socketpair`. Each end of a pipe holds its
//! half of two pairs: the *data* pair (a reader sleeps on its half until the writer at
//! the other end sends a byte on the other half) and the *space* pair (likewise for a
//! writer waiting for room). Both directions of a duplex pipe share the two pairs: a
//! socket is bidirectional, and the byte a side sends lands in the other side's queue.
//!
//! Why sockets, when an eventfd would do as a bell:
//!
//! * **The peer cannot make us block.** Every read and write here passes
//!   `MSG_DONTWAIT`, which holds whatever `O_NONBLOCK` says. That flag belongs to the
//!   open file description, which a process sharing the description can clear; an
//!   eventfd shared by both processes gave the peer that power over our reads and
//!   writes. Our half of a socketpair is a description the peer never holds (it holds
//!   the other half), and the per-call flag makes even that irrelevant.
//! * **The kernel counts the ends.** When every copy of the peer's half is closed, by
//!   `close`, `drop`, `exit` or SIGKILL, our half reports a hang-up. That is EOF and
//!   broken pipe, with no extra descriptor (see [`crate::shm::liveness`]).
//! * **Nothing the peer sends can keep itself alive.** A process can pass descriptors
//!   over a Unix socket (`SCM_RIGHTS`), and a descriptor in flight keeps its file open:
//!   a peer that sent its own half into our queue and exited would never hang up. Our
//!   halves refuse passed descriptors and credentials (`SO_PASSRIGHTS` off, Linux
//!   6.16+: the peer's `sendmsg` fails with `EPERM`; see [`crate::sys`]). Where the
//!   kernel does not know the option, or the other process created our half and queued
//!   descriptors before we turned it off, [`Doorbell::drain`] receives them and hands
//!   them to the closer thread, so the hang-up comes as soon as we look and a close that
//!   blocks (a TCP socket with a long `SO_LINGER`) holds up nobody.

use crate::error::Result;
use crate::sys::PeerSocket;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SendFlags, SocketFlags, SocketType};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// How many reads one [`Doorbell::drain`] makes at most: a peer that keeps sending cannot
/// keep us draining forever; what is left makes the next sleep return early, no more.
const DRAIN_ROUNDS: usize = 16;

/// One half of a socketpair; see the module documentation.
pub(crate) struct Doorbell {
    /// Clean (closed here) when it refuses passed descriptors and whatever was queued
    /// before it did has been drained; see [`crate::sys::PeerSocket`].
    sock: PeerSocket,
}

/// How many reads [`Doorbell::adopt`] makes at most to drain what the other process
/// queued before our half refused descriptors. What was queued then is bounded by the
/// sender's socket buffer (a few hundred messages at the default limits); a half still
/// not empty after this many large reads is closed on the closer thread.
const ADOPT_DRAIN_ROUNDS: usize = 64;

/// What [`Doorbell::drain`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Drained {
    /// The queue is empty now.
    Empty,
    /// Bytes are left after `DRAIN_ROUNDS` reads (a peer that keeps sending).
    More,
    /// The other side has shut down: every copy of its half is closed.
    HungUp,
}

impl Doorbell {
    /// A connected pair of doorbells: one for each end of a pipe.
    pub(crate) fn pair() -> Result<(Doorbell, Doorbell)> {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        // Nothing can have been queued yet: each half is clean if it refuses.
        let half = |sock: OwnedFd| {
            let clean = crate::sys::refuse_ancillary(sock.as_fd());
            Doorbell {
                sock: PeerSocket::new(sock, clean),
            }
        };
        Ok((half(a), half(b)))
    }

    /// Takes up a half made by another process (checked by the caller with
    /// [`Doorbell::check`]): turns off every option that lets the other side attach
    /// descriptors or credentials to what it receives (it may have turned them on
    /// before handing the half over), then drains what it queued before, handing any
    /// descriptors to the closer thread. Draining only swallows wake-ups, which are
    /// hints: every wait looks at the ring before it sleeps.
    pub(crate) fn adopt(sock: OwnedFd) -> Doorbell {
        let refused = crate::sys::refuse_ancillary(sock.as_fd());
        let mut bytes = vec![MaybeUninit::uninit(); 64 << 10];
        let mut drained = false;
        for _ in 0..ADOPT_DRAIN_ROUNDS {
            match crate::sys::recv(sock.as_fd(), &mut bytes) {
                Ok(n) if n > 0 => continue,
                // Empty, hung up already (the next wait reports that), or failing.
                Ok(_) | Err(_) => {
                    drained = true;
                    break;
                }
            }
        }
        Doorbell {
            sock: PeerSocket::new(sock, refused && drained),
        }
    }

    /// Checks that `fd`, received from another process, can be a doorbell: a connected
    /// Unix stream socket. The error says what it is instead.
    pub(crate) fn check(fd: BorrowedFd<'_>) -> std::result::Result<(), String> {
        use rustix::net::{sockopt, AddressFamily, SocketType};
        let kind = sockopt::socket_type(fd).map_err(|_| "is not a socket".to_string())?;
        let domain = sockopt::socket_domain(fd).map_err(|e| format!("has no domain: {e}"))?;
        if kind != SocketType::STREAM || domain != AddressFamily::UNIX {
            return Err("is not a Unix stream socket".into());
        }
        rustix::net::getpeername(fd).map_err(|_| "is not a connected socket".to_string())?;
        Ok(())
    }

    /// Wraps a socket as it is, without refusing or draining anything: for tests of
    /// what a half without the options does.
    #[cfg(test)]
    fn as_is(sock: OwnedFd) -> Doorbell {
        Doorbell {
            sock: PeerSocket::new(sock, false),
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Wakes the other side. Never blocks and never raises SIGPIPE.
    ///
    /// A full queue (`EAGAIN`) means the other side has unread bytes, so it is woken
    /// already. A peer that is gone (`EPIPE`, `ECONNRESET`) needs no waking: the caller's
    /// next liveness check reports it.
    pub(crate) fn ring(&self) -> Result<()> {
        loop {
            match rustix::net::send(&self.sock, &[1], SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
                Ok(_) | Err(Errno::AGAIN | Errno::PIPE | Errno::CONNRESET) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Empties the queue, closing any descriptor the other side passed along with its
    /// bytes (see the module documentation). Never blocks.
    pub(crate) fn drain(&self) -> Result<Drained> {
        let mut bytes = [MaybeUninit::uninit(); 256];
        for _ in 0..DRAIN_ROUNDS {
            let mut fds = Vec::new();
            let got = crate::sys::recv_keeping_fds(self.sock.as_fd(), &mut bytes, &mut fds);
            // Whatever came along with the bytes is closed on the closer thread.
            let passed = !fds.is_empty();
            crate::sys::dispose(fds);
            match got {
                Ok((0, _)) => return Ok(Drained::HungUp),
                // A stream socket's read returns all that is queued, up to the buffer,
                // unless passed descriptors end it early: a short read without any took
                // the queue to its end, and another read would only say so.
                Ok((n, _)) if n < bytes.len() && !passed => return Ok(Drained::Empty),
                Ok(_) => continue,
                Err(Errno::AGAIN) => return Ok(Drained::Empty),
                Err(Errno::CONNRESET) => return Ok(Drained::HungUp),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Drained::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_is_drained_and_a_hang_up_is_seen() {
        let (a, b) = Doorbell::pair().unwrap();
        assert_eq!(b.drain().unwrap(), Drained::Empty);
        a.ring().unwrap();
        a.ring().unwrap();
        assert_eq!(b.drain().unwrap(), Drained::Empty);
        drop(a);
        assert_eq!(b.drain().unwrap(), Drained::HungUp);
        b.ring().unwrap(); // ringing a closed peer is not an error
    }

    /// Where the kernel refuses passed descriptors, the peer's `sendmsg` fails; where it
    /// cannot (a socket without the option), a drain closes what was passed, so that the
    /// file goes away with the last copy its sender held.
    #[test]
    fn passed_descriptors_are_refused_or_closed_by_a_drain() {
        let send_fd = |via: BorrowedFd<'_>, fd: BorrowedFd<'_>| {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
            let fds = [fd];
            assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
            rustix::net::sendmsg(
                via,
                &[std::io::IoSlice::new(&[1])],
                &mut control,
                SendFlags::DONTWAIT,
            )
        };
        let (a, b) = Doorbell::pair().unwrap();
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let refused = send_fd(a.fd(), r.as_fd());
        // Either refused (Linux 6.16+) or delivered; both are fine here.
        assert!(matches!(refused, Ok(_) | Err(Errno::PERM)), "{refused:?}");
        // A socket without the option: the descriptor arrives, and a drain closes it.
        let (x, y) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        let (x, y) = (Doorbell::as_is(x), Doorbell::as_is(y));
        let (r, w) = rustix::pipe::pipe().unwrap();
        send_fd(x.fd(), r.as_fd()).unwrap();
        drop(r); // the copy in flight is now the pipe's only read end
        assert_eq!(y.drain().unwrap(), Drained::Empty);
        // The drain handed it to the closer thread: once that has closed it, writing
        // finds no reader (a pipe's write end polls POLLERR then).
        let mut fds = [rustix::event::PollFd::new(
            &w,
            rustix::event::PollFlags::OUT,
        )];
        while !fds[0].revents().contains(rustix::event::PollFlags::ERR) {
            rustix::event::poll(&mut fds, None).unwrap();
        }
        assert_eq!(rustix::io::write(&w, b"x"), Err(Errno::PIPE));
        drop(b);
    }

    #[test]
    fn ringing_a_full_queue_does_not_block() {
        let (a, _b) = Doorbell::pair().unwrap();
        for _ in 0..100_000 {
            a.ring().unwrap();
        }
    }
}
