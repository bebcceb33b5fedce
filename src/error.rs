//! The one error type every call returns, mirroring the exceptions of Python's
//! `multiprocessing.connection`.

use crate::violation::Violation;
use std::fmt;
use std::io;

/// What can go wrong on a [`Connection`](crate::Connection).
///
/// The variants line up with what Python raises: [`Error::Eof`] is `EOFError`,
/// [`Error::BrokenPipe`] is `BrokenPipeError`, [`Error::BufferTooShort`] is
/// `multiprocessing.BufferTooShort`, [`Error::Closed`] is the `OSError("handle is
/// closed")` of a closed connection.
///
/// ```
/// use shmpipe::{pipe, Error};
///
/// let (a, b) = pipe(true)?;
/// drop(a);
/// assert!(matches!(b.recv_bytes(), Err(Error::Eof)));
/// # Ok::<(), shmpipe::Error>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Every copy of the other end is gone (closed, dropped, or its process died) and
    /// every message it sent whole has been received.
    Eof,
    /// This connection was closed with [`Connection::close`](crate::Connection::close).
    Closed,
    /// `recv*` or `poll` on the writing end of a one-way pipe.
    NotReadable,
    /// `send*` on the reading end of a one-way pipe.
    NotWritable,
    /// Every copy of the reading end is gone: nobody will ever read what is sent.
    BrokenPipe,
    /// [`recv_bytes_into`](crate::Connection::recv_bytes_into) was handed a buffer too
    /// small for the message. The message has been consumed; here it is, whole.
    BufferTooShort(Vec<u8>),
    /// The next message is longer than the `maxlength` given to
    /// [`recv_bytes_max`](crate::Connection::recv_bytes_max). It stays in the pipe.
    MessageTooLong {
        /// Length of the waiting message in bytes.
        len: usize,
        /// The limit that was asked for.
        max: usize,
    },
    /// An argument was out of range, or a message did not validate as the type asked for.
    /// The text says which.
    Invalid(String),
    /// The other process broke the protocol: it wrote an impossible index or record into
    /// the shared region, or sent a bad length prefix over a socket, or two processes
    /// used the same end at the same time. The direction concerned stays broken; the
    /// [`Violation`] says what was seen.
    Corrupt(Violation),
    /// A blocking call gave up after the connection's
    /// [read](crate::Connection::set_read_timeout) or
    /// [write](crate::Connection::set_write_timeout) timeout, having consumed or sent
    /// nothing: the next call starts where this one would have.
    Timeout,
    /// The connection is in [non-blocking mode](crate::Connection::set_nonblocking) and
    /// the call would have had to wait. Nothing was consumed or sent.
    WouldBlock,
    /// The handshake of [`Listener::accept`](crate::Listener::accept) or
    /// [`Client::connect`](crate::Client::connect) failed: the other side does not know
    /// the authkey, or did not follow the protocol (Python's `AuthenticationError`). The
    /// text says which.
    Authentication(String),
    /// A system call failed.
    Io(io::Error),
}

/// `Result` with [`Error`] as its error type.
///
/// ```
/// fn hello() -> shmpipe::Result<Vec<u8>> {
///     let (a, b) = shmpipe::pipe(true)?;
///     a.send_bytes(b"hello")?;
///     b.recv_bytes()
/// }
/// assert_eq!(hello().unwrap(), b"hello");
/// ```
pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Eof => f.write_str("end of file: the other end is closed"),
            Error::Closed => f.write_str("connection is closed"),
            Error::NotReadable => f.write_str("connection is write-only"),
            Error::NotWritable => f.write_str("connection is read-only"),
            Error::BrokenPipe => f.write_str("broken pipe: the reading end is closed"),
            Error::BufferTooShort(m) => {
                write!(f, "buffer too short for a message of {} bytes", m.len())
            }
            Error::MessageTooLong { len, max } => {
                write!(f, "message of {len} bytes is longer than the maximum {max}")
            }
            Error::Invalid(why) => write!(f, "invalid: {why}"),
            Error::Corrupt(why) => write!(f, "protocol violated: {why}"),
            Error::Timeout => f.write_str("timed out"),
            Error::WouldBlock => f.write_str("the operation would block"),
            Error::Authentication(why) => write!(f, "authentication failed: {why}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Io(e.into())
    }
}

impl From<Error> for io::Error {
    /// Maps each variant to the [`io::ErrorKind`] a caller of `std::io` would expect;
    /// [`Error::Io`] gives back the original error.
    fn from(e: Error) -> Self {
        match e {
            Error::Io(inner) => inner,
            other => io::Error::new(other.io_kind(), other),
        }
    }
}

impl Error {
    fn io_kind(&self) -> io::ErrorKind {
        match self {
            Error::Io(e) => e.kind(),
            Error::Eof => io::ErrorKind::UnexpectedEof,
            Error::BrokenPipe => io::ErrorKind::BrokenPipe,
            Error::Closed | Error::NotReadable | Error::NotWritable => io::ErrorKind::Unsupported,
            Error::BufferTooShort(_) | Error::MessageTooLong { .. } | Error::Invalid(_) => {
                io::ErrorKind::InvalidInput
            }
            Error::Corrupt(_) => io::ErrorKind::InvalidData,
            Error::Authentication(_) => io::ErrorKind::PermissionDenied,
            Error::Timeout => io::ErrorKind::TimedOut,
            Error::WouldBlock => io::ErrorKind::WouldBlock,
        }
    }

    /// Whether the call gave up waiting and did nothing: its deadline passed, it would
    /// have blocked, or a signal interrupted it (see `deadline::set_interruptible`).
    pub(crate) fn gave_up(&self) -> bool {
        match self {
            Error::Timeout | Error::WouldBlock => true,
            Error::Io(e) => e.kind() == io::ErrorKind::Interrupted,
            _ => false,
        }
    }
}
