//! Every raw system call of the library (the ones rustix's safe wrappers do not cover,
//! each behind a safe function here), and foremost receiving from sockets the other
//! process can write to, without letting it hand us anything but bytes.
//!
//! A Unix socket carries more than bytes: descriptors (`SCM_RIGHTS`), and, when the
//! receiving socket asks for them, credentials, a pidfd (`SCM_PIDFD`) or a security
//! label. Each is a way for the peer to act in our process:
//!
//! * a descriptor that arrives is installed in our table (a leak unless we close it);
//! * one that is *discarded* (a `recv` without room for control data, or a buffer too
//!   small: `MSG_CTRUNC`) is closed by the kernel in the receiving thread, and closing
//!   can block: a TCP socket with unsent data and a long `SO_LINGER`, a file on a FUSE
//!   mount its owner serves slowly. The peer picks how long our call takes.
//!
//! So every socket of ours turns the options off ([`refuse_ancillary`]: `SO_PASSRIGHTS`
//! where the kernel has it, Linux 6.16+; `SO_PASSCRED`, `SO_PASSPIDFD`, `SO_PASSSEC`),
//! and every receive goes through [`recv`] or [`recv_keeping_fds`], which always give
//! the kernel room for the largest batch of descriptors one message can carry and hand
//! whatever arrives to [`dispose`]: a thread of its own that closes them, where a slow
//! close holds up nobody. The options close the door; the receive is the net under it,
//! for what was queued before an option was turned off (a connection accepted after the
//! client wrote, doorbells created by the other process) and for older kernels.

use rustix::io::Errno;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicPtr, Ordering::AcqRel, Ordering::Acquire};
use std::sync::mpsc;

/// `SO_PASSRIGHTS` (Linux 6.16), `SO_PASSPIDFD` (6.5) and the `SCM_PIDFD` control message:
/// the asm-generic values (x86-64, AArch64, RISC-V), not yet in libc 0.2.
const SO_PASSRIGHTS: libc::c_int = 83;
const SO_PASSPIDFD: libc::c_int = 76;
const SCM_PIDFD: libc::c_int = 0x04;

/// The most descriptors one message can carry (`SCM_MAX_FD`). A stream socket's receive
/// stops at a message that carries descriptors, so one receive gets at most this many.
const MAX_FDS: usize = 253;

/// Room for control data: every descriptor one message can carry, and credentials, a
/// pidfd and a security label before them (the kernel writes those first).
const CONTROL: usize = 4096;
// Every descriptor of one message, with a margin for the messages before them.
const _: () = assert!(CONTROL >= 16 + 4 * MAX_FDS + 1024);

#[repr(C, align(8))]
struct Control([MaybeUninit<u8>; CONTROL]);

/// Turns off every option that makes the kernel attach something to what this socket
/// receives (see the module documentation). Returns whether the socket now refuses
/// descriptors outright: `SO_PASSRIGHTS` took (Linux 6.16+), or it is not a Unix socket
/// and never carries any. Where it returns false, descriptors can still arrive: the
/// receive functions dispose of them, and the socket itself should be closed through
/// [`dispose`], since closing a socket whose queue holds descriptors closes those too.
///
/// The other options are best effort: one the kernel does not know stays as it was, and
/// the receive functions deal with what comes. A listening socket passes all of them on
/// to the sockets it accepts, even to a connection queued before `accept`.
pub(crate) fn refuse_ancillary(fd: BorrowedFd<'_>) -> bool {
    for option in [libc::SO_PASSCRED, SO_PASSPIDFD, libc::SO_PASSSEC] {
        set_option(fd, option, 0);
    }
    set_option(fd, SO_PASSRIGHTS, 0)
        || rustix::net::sockopt::socket_domain(fd)
            .is_ok_and(|d| d != rustix::net::AddressFamily::UNIX)
}

/// Lets this socket receive descriptors again (`SO_PASSRIGHTS` on): for a client's
/// socket while it waits for the descriptors of a shared-memory pipe, which it receives
/// with [`recv_keeping_fds`]. The socket is not clean any more: close it through
/// [`dispose`].
pub(crate) fn accept_rights(fd: BorrowedFd<'_>) {
    set_option(fd, SO_PASSRIGHTS, 1);
}

/// Sets a `SOL_SOCKET` option of type int; whether the kernel took it.
fn set_option(fd: BorrowedFd<'_>, option: libc::c_int, value: libc::c_int) -> bool {
    // SAFETY: setsockopt on a descriptor we borrow, with a pointer to an int and its
    // size; it reads the value and changes only that socket's option.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// A socket the other process can send to, closed where closing cannot hold us up:
/// here if it is `clean` (it refuses passed descriptors, and nothing was queued in it
/// before it did), on the closer thread otherwise, since closing a socket closes the
/// descriptors queued in it.
pub(crate) struct PeerSocket {
    fd: ManuallyDrop<OwnedFd>,
    clean: bool,
}

impl PeerSocket {
    pub(crate) fn new(fd: OwnedFd, clean: bool) -> PeerSocket {
        PeerSocket {
            fd: ManuallyDrop::new(fd),
            clean,
        }
    }
}

impl AsFd for PeerSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for PeerSocket {
    fn drop(&mut self) {
        // SAFETY: `fd` is taken once, here, and never used again.
        let fd = unsafe { ManuallyDrop::take(&mut self.fd) };
        if self.clean {
            drop(fd);
        } else {
            dispose([fd]);
        }
    }
}

/// Reads what is there into `buf`, up to its length, without waiting (`MSG_DONTWAIT`),
/// and disposes of every descriptor that came with it. `Ok(0)`: end of file (or an
/// empty `buf`). Retries after a signal.
pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> Result<usize, Errno> {
    let mut fds = Vec::new();
    let got = recv_keeping_fds(fd, buf, &mut fds);
    dispose(fds);
    got.map(|(n, _)| n)
}

/// [`recv`], but the descriptors that came are appended to `fds` (close-on-exec), for the
/// caller to check and keep. Returns the bytes read and whether the kernel had to drop
/// descriptors that did not fit (never, with [`MAX_FDS`] in one message).
pub(crate) fn recv_keeping_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [MaybeUninit<u8>],
    fds: &mut Vec<OwnedFd>,
) -> Result<(usize, bool), Errno> {
    let mut control = Control([MaybeUninit::uninit(); CONTROL]);
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: an all-zero msghdr is valid (no name, no iovecs, no control data).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = CONTROL;
        // SAFETY: `msg` points to one iovec over `buf` (writable, `buf.len()` bytes) and
        // to `CONTROL` writable bytes of control buffer, all alive for the call; recvmsg
        // writes only within them and takes no ownership of `fd`.
        let n = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            )
        };
        if n < 0 {
            match Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO) {
                Errno::INTR => continue,
                e => return Err(e),
            }
        }
        // SAFETY: the kernel filled `msg_controllen` bytes of `control` with well-formed
        // control messages; `take_fds` reads only within them.
        unsafe { take_fds(&msg, fds) };
        return Ok((n as usize, msg.msg_flags & libc::MSG_CTRUNC != 0));
    }
}

/// Takes ownership of every descriptor in `msg`'s control data (`SCM_RIGHTS`, `SCM_PIDFD`).
///
/// # Safety
/// `msg` was just filled by a successful `recvmsg`: its control buffer holds
/// `msg_controllen` bytes of control messages the kernel wrote, whose descriptors were
/// installed in our table for us alone.
unsafe fn take_fds(msg: &libc::msghdr, fds: &mut Vec<OwnedFd>) {
    // SAFETY: the macros walk the kernel-written headers within `msg_controllen`.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is a header inside the control buffer (CMSG_FIRSTHDR and
        // CMSG_NXTHDR return null past its end).
        let (level, kind, len) =
            unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
        if level == libc::SOL_SOCKET && (kind == libc::SCM_RIGHTS || kind == SCM_PIDFD) {
            // SAFETY: as above; CMSG_LEN(0) is the header's size with its padding.
            let (data, header) = unsafe { (libc::CMSG_DATA(cmsg), libc::CMSG_LEN(0) as usize) };
            #[allow(clippy::unnecessary_cast)] // `cmsg_len` is not `usize` on every target
            let count = (len as usize).saturating_sub(header) / std::mem::size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: the data holds `count` descriptors, not necessarily aligned.
                let raw = unsafe { data.cast::<RawFd>().add(i).read_unaligned() };
                if raw >= 0 {
                    // SAFETY: the kernel installed it for this receive: ours alone.
                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
        // SAFETY: as above.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
}

/// The thread that closes what we must not close ourselves, and the process it belongs
/// to (a forked child has no such thread until it makes its own).
struct Closer {
    pid: u32,
    queue: mpsc::Sender<OwnedFd>,
}

static CLOSER: AtomicPtr<Closer> = AtomicPtr::new(std::ptr::null_mut());

/// Closes descriptors the other process gave us, on a thread of their own, so that a
/// close that blocks (see the module documentation) never holds up a call. Where no
/// thread can be started, closes them here.
pub(crate) fn dispose(fds: impl IntoIterator<Item = OwnedFd>) {
    let mut fds = fds.into_iter().peekable();
    if fds.peek().is_none() {
        return;
    }
    match closer() {
        Some(c) => {
            for fd in fds {
                // A send fails only if the thread is gone, which it never is while the
                // process runs; the descriptor is then closed on the way out.
                let _ = c.queue.send(fd);
            }
        }
        None => fds.for_each(drop),
    }
}

/// This process's closer thread, started on first use.
fn closer() -> Option<&'static Closer> {
    let pid = std::process::id();
    loop {
        let now = CLOSER.load(Acquire);
        // SAFETY: a non-null pointer in `CLOSER` comes from `Box::into_raw` below and
        // is never freed (one per process that ever needed it).
        if let Some(c) = unsafe { now.as_ref() } {
            if c.pid == pid {
                return Some(c);
            }
        }
        // None yet, or the one of the process we were forked from, whose thread did not
        // come along.
        let (queue, closing) = mpsc::channel::<OwnedFd>();
        std::thread::Builder::new()
            .name("shmpipe-closer".into())
            .spawn(move || closing.into_iter().for_each(drop))
            .ok()?;
        let mine = Box::into_raw(Box::new(Closer { pid, queue }));
        match CLOSER.compare_exchange(now, mine, AcqRel, Acquire) {
            // SAFETY: just published, never freed.
            Ok(_) => return Some(unsafe { &*mine }),
            Err(_) => {
                // Another thread started one first: ours ends with its queue.
                // SAFETY: `mine` was never published.
                drop(unsafe { Box::from_raw(mine) });
            }
        }
    }
}

/// `fstat` of a raw number, which may not be open at all: `None` then.
pub(crate) fn fstat_raw(fd: RawFd) -> Option<libc::stat> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `stat` on success and fails with EBADF on a number that is
    // not open; it takes no ownership and changes nothing.
    let ok = unsafe { libc::fstat(fd, st.as_mut_ptr()) } == 0;
    // SAFETY: initialised by the successful fstat.
    ok.then(|| unsafe { st.assume_init() })
}

/// Whether the raw number `fd` is close-on-exec; `None` if it is not open.
pub(crate) fn is_cloexec(fd: RawFd) -> Option<bool> {
    // SAFETY: fcntl(F_GETFD) on a number; it changes nothing and takes no ownership.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    (flags >= 0).then_some(flags & libc::FD_CLOEXEC != 0)
}

/// Clears close-on-exec on the raw number `fd`, so that it stays open across `exec`.
/// Async-signal-safe (two `fcntl` calls, no allocation): for a `pre_exec` hook.
pub(crate) fn keep_across_exec(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl(F_GETFD/F_SETFD) on a number changes only its close-on-exec flag.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The credentials of the process at the other end of a Unix socket (`SO_PEERCRED`).
/// Not rustix's `socket_peercred`: its pid is non-zero by type, and the kernel reports 0
/// for a peer in a PID namespace we cannot see into.
pub(crate) fn peer_credentials(fd: BorrowedFd<'_>) -> std::io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a plain C struct of
    // that size, and takes no ownership of `fd`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred)
}

/// Registers `handler` to run in the child of every `fork` of this process
/// (`pthread_atfork`). It must be async-signal-safe: the child of a multi-threaded
/// process may call nothing else before `exec`.
pub(crate) fn in_every_forked_child(handler: extern "C" fn()) -> std::io::Result<()> {
    // SAFETY: registers a handler; the caller answers for its async-signal safety.
    match unsafe { libc::pthread_atfork(None, None, Some(handler)) } {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// `fcntl(F_OFD_SETLK)`: takes a write lock on byte `at` of `fd`'s file for the open
/// file description `fd` refers to, without waiting. `Ok(false)`: another holds it. The
/// kernel drops the lock when the last descriptor of that description closes, which a
/// process's death does (the queue's liveness, `crate::queue::members`).
pub(crate) fn ofd_try_lock(fd: BorrowedFd<'_>, at: u64) -> std::io::Result<bool> {
    let mut lock = ofd_lock(libc::F_WRLCK, at);
    // SAFETY: `lock` is a valid `flock` that the call reads; the descriptor is open.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &mut lock) };
    match r {
        0 => Ok(true),
        _ => match std::io::Error::last_os_error() {
            e if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => Ok(false),
            e => Err(e),
        },
    }
}

/// `fcntl(F_OFD_GETLK)`: whether some other open file description holds a lock on byte
/// `at` of `fd`'s file.
pub(crate) fn ofd_is_locked(fd: BorrowedFd<'_>, at: u64) -> std::io::Result<bool> {
    let mut lock = ofd_lock(libc::F_WRLCK, at);
    // SAFETY: `lock` is a valid `flock` that the call reads and overwrites.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(lock.l_type != libc::F_UNLCK as libc::c_short)
}

fn ofd_lock(kind: libc::c_int, at: u64) -> libc::flock {
    // SAFETY: `flock` is plain data; all zeroes is a valid value (and `l_pid` must be 0
    // for the OFD commands).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = at as libc::off_t;
    lock.l_len = 1;
    lock
}

/// Closes `fd` in a forked child (async-signal-safe: a bare `close`).
pub(crate) fn close_raw(fd: RawFd) {
    // SAFETY: closes a descriptor number the caller owns in this process.
    unsafe { libc::close(fd) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{AddressFamily, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use rustix::net::{SocketFlags, SocketType};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap()
    }

    fn send_with(
        via: BorrowedFd<'_>,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
    ) -> rustix::io::Result<usize> {
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
        rustix::net::sendmsg(
            via,
            &[std::io::IoSlice::new(bytes)],
            &mut control,
            SendFlags::empty(),
        )
    }

    /// The most descriptors one message can carry all arrive (none is dropped, and so
    /// closed, by the kernel in our thread), and `recv` closes them: the pipe whose read
    /// end went along has no reader left.
    #[test]
    fn every_passed_descriptor_is_taken_and_closed() {
        let (a, b) = pair();
        let (r, w) = rustix::pipe::pipe().unwrap();
        let many: Vec<BorrowedFd<'_>> = (0..MAX_FDS).map(|_| r.as_fd()).collect();
        send_with(a.as_fd(), b"x", &many).unwrap();
        drop(r);
        let mut fds = Vec::new();
        let mut buf = [MaybeUninit::uninit(); 8];
        let (n, truncated) = recv_keeping_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!((n, truncated, fds.len()), (1, false, MAX_FDS));
        drop(fds);
        assert_eq!(rustix::io::write(&w, b"x"), Err(Errno::PIPE));

        let (r, w) = rustix::pipe::pipe().unwrap();
        send_with(a.as_fd(), b"y", &[r.as_fd()]).unwrap();
        drop(r);
        assert_eq!(recv(b.as_fd(), &mut buf), Ok(1));
        // Closed on the closer thread: wait for it, as a reader of `w` would.
        let mut fds = [rustix::event::PollFd::new(
            &w,
            rustix::event::PollFlags::OUT,
        )];
        loop {
            rustix::event::poll(&mut fds, None).unwrap();
            if fds[0].revents().contains(rustix::event::PollFlags::ERR) {
                break;
            }
        }
        assert_eq!(rustix::io::write(&w, b"x"), Err(Errno::PIPE));
    }

    /// A pidfd that the other side arranged for (`SO_PASSPIDFD` on our socket) is closed,
    /// not leaked, and the option is turned off by `refuse_ancillary`.
    #[test]
    fn pidfds_are_refused_or_closed() {
        let (a, b) = pair();
        let on: libc::c_int = 1;
        // SAFETY: setsockopt with an int, as in `refuse_ancillary`.
        let set = unsafe {
            libc::setsockopt(
                b.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_PASSPIDFD,
                (&on as *const libc::c_int).cast(),
                4,
            )
        };
        if set != 0 {
            return; // a kernel before 6.5: no pidfds to leak
        }
        let mut fds = Vec::new();
        let mut buf = [MaybeUninit::uninit(); 8];
        rustix::io::write(&a, b"x").unwrap();
        recv_keeping_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(fds.len(), 1, "the pidfd is handed to us, to close");
        refuse_ancillary(b.as_fd());
        fds.clear();
        rustix::io::write(&a, b"x").unwrap();
        recv_keeping_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert!(fds.is_empty());
    }
}
