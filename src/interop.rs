//! Hooks for shmpipe's Python bindings (`python/`), not API: hidden from the
//! documentation and free to change with the bindings.

use crate::connection::Connection;
use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Which end a shared-memory connection is, and its three descriptors (memfd, data
/// doorbell, space doorbell), borrowed: for Python's pickling, which duplicates them.
///
/// # Errors
/// [`Error::Closed`]; [`Error::Invalid`] for a socket connection.
pub fn end_and_fds(conn: &Connection) -> Result<(usize, [RawFd; 3])> {
    let ep = conn.transport()?.shm().ok_or_else(|| {
        Error::Invalid("a socket connection has no shared-memory descriptors".into())
    })?;
    ep.whole()?;
    let bells = ep.bells();
    Ok((
        ep.end,
        [
            ep.shared.region.memfd().as_raw_fd(),
            bells.data.fd().as_raw_fd(),
            bells.space.fd().as_raw_fd(),
        ],
    ))
}

/// The socket of a socket connection (from a `Listener` or `Client` speaking CPython's
/// protocol), borrowed: for Python's pickling, which duplicates it as CPython pickles
/// its own connections.
///
/// # Errors
/// [`Error::Closed`]; [`Error::Invalid`] for a shared-memory connection, a half of a
/// split one, or one in the middle of a message (what was read of it, or is still to be
/// sent, would not go with the copy).
pub fn socket_fd(conn: &Connection) -> Result<RawFd> {
    match conn.transport()?.socket() {
        Some(s) if s.at_rest() => Ok(s.fd().as_raw_fd()),
        Some(_) => Err(Error::Invalid(
            "a socket connection in the middle of a message (or a half of one) cannot be \
             pickled"
                .into(),
        )),
        None => Err(Error::Invalid(
            "a shared-memory connection has no socket".into(),
        )),
    }
}

/// A connection speaking CPython's protocol over `fd`, a duplicate of what
/// [`socket_fd`] gave.
///
/// # Errors
/// [`Error::Invalid`] if `fd` is not a stream socket (it is closed).
pub fn from_socket(fd: OwnedFd) -> Result<Connection> {
    match rustix::net::sockopt::socket_type(&fd) {
        Ok(rustix::net::SocketType::STREAM) => {}
        _ => return Err(Error::Invalid("not a stream socket".into())),
    }
    Ok(Connection::over_socket(
        crate::socket::stream::SocketEnd::new(fd),
    ))
}

/// Makes `end` of a pipe from duplicates of its three descriptors (see
/// [`end_and_fds`]), checked as an end received from another process is.
///
/// # Errors
/// [`Error::Invalid`] for descriptors that are not a pipe's; they are closed.
pub fn from_fds(end: usize, memfd: OwnedFd, data: OwnedFd, space: OwnedFd) -> Result<Connection> {
    crate::handoff::take_end(end, memfd, data, space)
}

/// Waits (within the connection's read timeout) for the next message and returns its
/// length without consuming it, and whether all of it is in memory already (a message
/// in one record of the ring), so that a caller can allocate exactly that much and
/// receive into it with `recv_bytes_into` without waiting. A length the peer only
/// announced (a message in fragments, or on a socket) is not one to allocate by: receive
/// such a message with `recv_bytes`, whose buffer grows as the bytes arrive. The message
/// `recv_bytes_into` gets may still be another, longer one (the writer can cancel a long
/// message part-way): it then reports `BufferTooShort` with the whole of it.
///
/// # Errors
/// As `recv_bytes`.
pub fn next_len(conn: &Connection) -> Result<(usize, bool)> {
    conn.transport()?.next_len(conn.limits.read_deadline())
}

/// Receives the next message if it is whole in the ring now and at most `max` bytes
/// long, into the memory `alloc` gives for its length (exactly that many bytes), in one
/// pass: for the Python binding, which allocates the `bytes` object only once it knows
/// the length. `Ok(None)`, having consumed nothing, when that is not the case (nothing
/// there, a fragment, a longer message, a socket connection, anything out of the
/// ordinary): the caller then takes the general path. Never waits.
///
/// # Errors
/// As `recv_bytes` for what the one-pass path reports (a broken ring).
pub fn recv_whole_now<'b>(
    conn: &Connection,
    max: usize,
    alloc: &mut dyn FnMut(usize) -> Option<&'b mut [u8]>,
) -> Result<Option<usize>> {
    conn.transport()?.receive_whole_with(max, alloc)
}

/// The capacity of each ring of a shared-memory connection; `None` for a socket or a
/// closed connection.
pub fn ring_capacity(conn: &Connection) -> Option<usize> {
    Some(
        conn.transport()
            .ok()?
            .shm()?
            .shared
            .region
            .layout()
            .capacity,
    )
}

/// Makes waits in this process end with `ErrorKind::Interrupted` when a signal
/// interrupts them, having consumed or sent nothing (see the deadline module), so that
/// the Python bindings can run Python's signal handlers and retry.
pub fn set_interruptible(on: bool) {
    crate::deadline::set_interruptible(on)
}

/// The environment value and the three descriptors that hand `conn` to a child started
/// by someone else (Python's `subprocess.Popen(env=..., pass_fds=...)`): what
/// `pass_to_child` puts in the environment, for the child's `from_parent`.
///
/// # Errors
/// [`Error::Closed`]; [`Error::Invalid`] for a socket connection; [`Error::Io`].
pub fn handoff_value(conn: &Connection) -> Result<(String, [RawFd; 3])> {
    crate::handoff::env_value(conn)
}

/// Runs `f` with every wait it makes in this thread ending with `ErrorKind::Interrupted`
/// once `fd` is readable: a receive that waits holding its connection's lock can then be
/// asked to let go of it by another thread (which makes `fd` readable).
pub fn interruptible_by<T>(fd: std::os::fd::BorrowedFd<'_>, f: impl FnOnce() -> T) -> T {
    crate::deadline::interruptible_by(fd, f)
}
