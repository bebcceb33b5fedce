//! Deadlines for blocking calls and non-blocking mode, as `std::net::UnixStream` has
//! them. (Python's `Connection` has neither: there, only `poll(timeout)` limits a wait.)
//!
//! Every call that can wait honours them: `send_bytes`, `send`, `recv_bytes`,
//! `recv_bytes_max`, `recv_bytes_into`, `recv`, `recv_archived` and
//! `recv_archived_in_place`. (`poll` and `wait` keep their own timeout argument.) The
//! timeout is a deadline for the whole call, and a call that gives up delivers or
//! consumes nothing, as far as anyone can tell:
//!
//! * a receive that runs out of time part-way through a message longer than the ring
//!   keeps the fragments it took in the connection, and the next receive goes on from
//!   there, so it gets that message whole;
//! * a send that runs out of time after some fragments of a long message ends the
//!   message with a cancel record; the reader drops what it reassembled and never sees
//!   any of it. The pipe carries the next messages as usual.
//!
//! When the other end is gone, `Eof` and `BrokenPipe` win over `Timeout` and
//! `WouldBlock`.

use crate::connection::Connection;
use crate::error::{Error, Result};
use std::time::Duration;

fn check(timeout: Option<Duration>) -> Result<()> {
    if timeout == Some(Duration::ZERO) {
        return Err(Error::Invalid(
            "a zero timeout: use set_nonblocking(true) for calls that never wait".into(),
        ));
    }
    Ok(())
}

impl Connection {
    /// Limits how long a receive may wait in blocking mode: `None` (the default) waits as
    /// long as it takes; `Some(d)` makes a receive that has no whole message within `d`
    /// return [`Error::Timeout`], having consumed nothing.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::Invalid`] for `Some(Duration::ZERO)`, as
    /// `std::net::UnixStream` does.
    ///
    /// ```
    /// use shmpipe::Error;
    /// use std::time::Duration;
    /// let (a, b) = shmpipe::pipe(true)?;
    /// b.set_read_timeout(Some(Duration::from_millis(10)))?;
    /// assert_eq!(b.read_timeout(), Some(Duration::from_millis(10)));
    /// assert!(matches!(b.recv_bytes(), Err(Error::Timeout)));
    /// a.send_bytes(b"late")?;
    /// assert_eq!(b.recv_bytes()?, b"late");
    /// assert!(matches!(b.set_read_timeout(Some(Duration::ZERO)), Err(Error::Invalid(_))));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        check(timeout)?;
        self.transport()?;
        self.limits.read_timeout.set(timeout);
        Ok(())
    }

    /// Limits how long a send may wait for room in blocking mode: `None` (the default)
    /// waits as long as it takes; `Some(d)` makes a send that cannot finish within `d`
    /// return [`Error::Timeout`], having delivered nothing.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::Invalid`] for `Some(Duration::ZERO)`.
    ///
    /// ```
    /// use shmpipe::{Builder, Error};
    /// use std::time::Duration;
    /// let (a, b) = Builder::new().capacity(4096).build()?;
    /// a.set_write_timeout(Some(Duration::from_millis(10)))?;
    /// // Longer than the ring, and nobody reads: it times out and is taken back.
    /// assert!(matches!(a.send_bytes(&[1; 10_000]), Err(Error::Timeout)));
    /// a.send_bytes(b"next")?;
    /// assert_eq!(b.recv_bytes()?, b"next");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        check(timeout)?;
        self.transport()?;
        self.limits.write_timeout.set(timeout);
        Ok(())
    }

    /// The receive timeout; `None` if there is none (or the connection is closed).
    ///
    /// ```
    /// let (a, _b) = shmpipe::pipe(true)?;
    /// assert_eq!(a.read_timeout(), None);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn read_timeout(&self) -> Option<Duration> {
        self.inner.as_ref()?;
        self.limits.read_timeout.get()
    }

    /// The send timeout; `None` if there is none (or the connection is closed).
    ///
    /// ```
    /// let (a, _b) = shmpipe::pipe(true)?;
    /// assert_eq!(a.write_timeout(), None);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn write_timeout(&self) -> Option<Duration> {
        self.inner.as_ref()?;
        self.limits.write_timeout.get()
    }

    /// Switches this end, in this process, to non-blocking mode (or back). In
    /// non-blocking mode a call that would have to wait returns [`Error::WouldBlock`] at
    /// once, having consumed or sent nothing, and the timeouts do not apply.
    ///
    /// A non-blocking send sends a message only if all of it fits in the ring's free
    /// space now. A message longer than the free space can ever be (about the ring's
    /// capacity) therefore always gets `WouldBlock`: send such messages in blocking mode,
    /// with a [write timeout](Connection::set_write_timeout) if the wait must be bounded.
    /// A non-blocking receive of a message longer than the ring takes the fragments that
    /// have arrived (making room for the rest) and returns `WouldBlock` until the last one
    /// is in; then it returns the message whole.
    ///
    /// # Errors
    /// [`Error::Closed`].
    ///
    /// ```
    /// use shmpipe::Error;
    /// let (a, b) = shmpipe::pipe(true)?;
    /// b.set_nonblocking(true)?;
    /// assert!(b.is_nonblocking());
    /// assert!(matches!(b.recv_bytes(), Err(Error::WouldBlock)));
    /// a.send_bytes(b"now")?;
    /// assert_eq!(b.recv_bytes()?, b"now");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<()> {
        self.transport()?;
        self.limits.nonblocking.set(nonblocking);
        Ok(())
    }

    /// Whether this end is in non-blocking mode in this process.
    ///
    /// ```
    /// let (a, _b) = shmpipe::pipe(true)?;
    /// assert!(!a.is_nonblocking());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_nonblocking(&self) -> bool {
        self.inner.is_some() && self.limits.nonblocking.get()
    }
}
