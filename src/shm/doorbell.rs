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
//!   halves refuse passed descriptors (`SO_PASSRIGHTS` off, Linux 6.16+: the peer's
//!   `sendmsg` fails with `EPERM`). Where the kernel does not know the option, or a
//!   parent that created our half could turn it back on, [`Doorbell::drain`] reads with
//!   room for passed descriptors and closes every one it receives, so the hang-up comes
//!   as soon as we look. (Closing a passed descriptor can itself wait, for a TCP socket
//!   with a long `SO_LINGER`, say: one more reason to refuse them where we can.)

use crate::error::Result;
use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags, SocketFlags,
    SocketType,
};
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// How many reads one [`Doorbell::drain`] makes at most: a peer that keeps sending cannot
/// keep us draining forever; what is left makes the next sleep return early, no more.
const DRAIN_ROUNDS: usize = 16;

/// One half of a socketpair; see the module documentation.
pub(crate) struct Doorbell {
    sock: OwnedFd,
}

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
    pub fn pair() -> Result<(Doorbell, Doorbell)> {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        let (a, b) = (Doorbell { sock: a }, Doorbell { sock: b });
        a.refuse_passed_descriptors();
        b.refuse_passed_descriptors();
        Ok((a, b))
    }

    /// Turns `SO_PASSRIGHTS` off on our half, so that nobody can pass descriptors into
    /// our queue. Best effort: kernels before 6.16 do not know the option, and then
    /// [`Doorbell::drain`] closes what comes.
    pub fn refuse_passed_descriptors(&self) {
        /// `SO_PASSRIGHTS` (Linux 6.16); not in libc 0.2 yet.
        const SO_PASSRIGHTS: libc::c_int = 83;
        let off: libc::c_int = 0;
        // SAFETY: setsockopt on a socket we hold, with a pointer to an int and its size;
        // it reads the value and changes only this socket's option.
        unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PASSRIGHTS,
                (&off as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    /// Checks that `fd`, received from another process, can be a doorbell: a connected
    /// Unix stream socket. The error says what it is instead.
    pub fn check(fd: BorrowedFd<'_>) -> std::result::Result<(), String> {
        use rustix::net::{sockopt, AddressFamily, SocketType};
        let kind = sockopt::socket_type(fd).map_err(|_| "is not a socket".to_string())?;
        let domain = sockopt::socket_domain(fd).map_err(|e| format!("has no domain: {e}"))?;
        if kind != SocketType::STREAM || domain != AddressFamily::UNIX {
            return Err("is not a Unix stream socket".into());
        }
        rustix::net::getpeername(fd).map_err(|_| "is not a connected socket".to_string())?;
        Ok(())
    }

    /// Wraps a socket received from another process (checked by the caller).
    pub fn from_fd(sock: OwnedFd) -> Doorbell {
        Doorbell { sock }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    /// Wakes the other side. Never blocks and never raises SIGPIPE.
    ///
    /// A full queue (`EAGAIN`) means the other side has unread bytes, so it is woken
    /// already. A peer that is gone (`EPIPE`, `ECONNRESET`) needs no waking: the caller's
    /// next liveness check reports it.
    pub fn ring(&self) -> Result<()> {
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
    pub fn drain(&self) -> Result<Drained> {
        let mut bytes = [0u8; 256];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(16))];
        for _ in 0..DRAIN_ROUNDS {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let got = rustix::net::recvmsg(
                &self.sock,
                &mut [IoSliceMut::new(&mut bytes)],
                &mut control,
                RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
            );
            // Close whatever came along. Descriptors that did not fit the buffer were
            // closed by the kernel (it sets MSG_CTRUNC and drops them).
            for msg in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = msg {
                    fds.for_each(drop);
                }
            }
            match got {
                Ok(r) if r.bytes == 0 => return Ok(Drained::HungUp),
                Ok(_) | Err(Errno::INTR) => continue,
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
        let (x, y) = (Doorbell::from_fd(x), Doorbell::from_fd(y));
        let (r, w) = rustix::pipe::pipe().unwrap();
        send_fd(x.fd(), r.as_fd()).unwrap();
        drop(r); // the copy in flight is now the pipe's only read end
        assert_eq!(y.drain().unwrap(), Drained::Empty);
        // The drain closed it: writing finds no reader.
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
