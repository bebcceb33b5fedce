//! [`Connection`]: one end of a pipe, with the methods of Python's
//! `multiprocessing.connection.Connection`.

use crate::buffers::{Parts, Scratches, Sink, SliceSink};
use crate::deadline::{Deadline, Limits};
use crate::error::{Error, Result};
use crate::shm::endpoint::Endpoint;
use crate::socket::stream::{SocketEnd, CLOSE_LINGER};
use crate::transport::Transport;
use std::os::fd::RawFd;
use std::time::Duration;

/// One end of a pipe made by [`pipe`](crate::pipe) or [`Builder`](crate::Builder).
///
/// Messages are byte strings (or, with [`send`](Connection::send), rkyv archives) that
/// arrive whole, in order, exactly once. An end can be used from one thread at a time:
/// `Connection` is `Send` but not `Sync`. To receive in one thread and send in another,
/// [`split`](Connection::split) it into a receiving half and a sending half (a `Mutex`
/// around one end does not do: a receive blocked there holds the lock). An end is
/// inherited by `fork` and can be handed to an exec'd child with
/// [`pass_to_child`](Connection::pass_to_child).
///
/// ```compile_fail
/// // Not `Sync`: one end is one side of each ring.
/// fn shared<T: Sync>(_: &T) {}
/// let (a, _b) = shmpipe::pipe(true).unwrap();
/// shared(&a);
/// ```
///
/// ```
/// let (left, right) = shmpipe::pipe(true)?;
/// left.send_bytes(b"ping")?;
/// assert_eq!(right.recv_bytes()?, b"ping");
/// right.send_bytes(b"pong")?;
/// assert_eq!(left.recv_bytes()?, b"pong");
/// # Ok::<(), shmpipe::Error>(())
/// ```
pub struct Connection {
    pub(crate) inner: Option<Transport>,
    /// Timeouts and non-blocking mode, which every blocking call turns into a deadline.
    pub(crate) limits: Limits,
    /// The buffers typed messages are serialized into and received into, kept between
    /// messages whatever the transport.
    pub(crate) scratch: Scratches,
    readable: bool,
    writable: bool,
}

impl Connection {
    pub(crate) fn new(ep: Endpoint) -> Connection {
        let (readable, writable) = (ep.rx.is_some(), ep.tx.is_some());
        Connection {
            inner: Some(Transport::Shm(ep)),
            limits: Limits::default(),
            scratch: Scratches::default(),
            readable,
            writable,
        }
    }

    pub(crate) fn over_socket(end: SocketEnd) -> Connection {
        Connection {
            inner: Some(Transport::Socket(end)),
            limits: Limits::default(),
            scratch: Scratches::default(),
            readable: true,
            writable: true,
        }
    }

    /// Whether a socket connection still holds part of a sent message (see
    /// `crate::socket::stream`).
    pub(crate) fn has_unsent_output(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(Transport::has_unsent_output)
    }

    /// Pushes out what it can of a socket connection's unsent output without waiting;
    /// true when none is left.
    #[cfg(feature = "tokio")]
    pub(crate) fn push_unsent(&self) -> Result<bool> {
        self.transport()?.push_unsent(Deadline::Now)
    }

    pub(crate) fn transport(&self) -> Result<&Transport> {
        // A `match`, not `ok_or`, which would build and drop an `Error` on every call.
        match &self.inner {
            Some(t) => Ok(t),
            None => Err(Error::Closed),
        }
    }

    /// The shared-memory endpoint beneath an open pipe end, for unit tests of the
    /// mechanism.
    #[cfg(test)]
    pub(crate) fn shm_endpoint(&self) -> &Endpoint {
        let shm = self.transport().ok().and_then(Transport::shm);
        shm.expect("a pipe end is shared memory")
    }

    /// Splits a duplex end into a receiving half and a sending half, each a `Connection`
    /// of one direction (like the ends of a one-way pipe), that can be used from two
    /// threads at once: one thread blocked in a receive does not hold up a send in the
    /// other. Timeouts and non-blocking mode are copied to both halves.
    ///
    /// The end stays open for the peer until both halves are closed (dropping only the
    /// sending half does not give the peer EOF). A half cannot be handed to another
    /// process ([`pass_to_child`](Connection::pass_to_child)) or made async
    /// ([`AsyncConnection`](crate::AsyncConnection)): do that with the whole end. (An
    /// `AsyncConnection` needs no split: it is `Sync`, and one task can send on it while
    /// another receives.)
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::Invalid`] for an end that goes one way already, or a
    /// half.
    ///
    /// ```
    /// let (here, there) = shmpipe::pipe(true)?;
    /// let (incoming, outgoing) = here.split()?;
    /// let receiver = std::thread::spawn(move || incoming.recv_bytes());
    /// outgoing.send_bytes(b"ping")?;
    /// assert_eq!(there.recv_bytes()?, b"ping");
    /// there.send_bytes(b"pong")?;
    /// assert_eq!(receiver.join().unwrap()?, b"pong");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn split(mut self) -> Result<(Connection, Connection)> {
        self.transport()?;
        if !(self.readable && self.writable) {
            return Err(Error::Invalid(
                "only a duplex end can be split; this one goes one way already".into(),
            ));
        }
        let Some(whole) = self.inner.take() else {
            return Err(Error::Closed);
        };
        let (receiving, sending) = whole.split();
        let half = |inner: Transport, readable: bool| Connection {
            inner: Some(inner),
            limits: self.limits.clone(),
            scratch: Scratches::default(),
            readable,
            writable: !readable,
        };
        Ok((half(receiving, true), half(sending, false)))
    }

    /// Whether messages travel through shared memory: true for [`pipe`](crate::pipe)
    /// ends, ends passed to a child, and a [`Client`](crate::Client) connection to a
    /// shmpipe [`Listener`](crate::Listener) on a Unix address; false for TCP and
    /// Python's wire protocol (and for a closed connection).
    ///
    /// ```
    /// let (a, _b) = shmpipe::pipe(true)?;
    /// assert!(a.is_shared_memory());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_shared_memory(&self) -> bool {
        self.inner.as_ref().and_then(Transport::shm).is_some()
    }

    /// Sends `buf` as one message. Blocks while the ring is full.
    ///
    /// An empty message is a message. A message larger than the ring streams through it
    /// in fragments and arrives whole.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::NotWritable`] on the reading end of a one-way pipe,
    /// [`Error::BrokenPipe`] once every copy of the reading end is gone;
    /// [`Error::Timeout`] past the [write timeout](Connection::set_write_timeout) and
    /// [`Error::WouldBlock`] in [non-blocking mode](Connection::set_nonblocking), having
    /// delivered nothing.
    ///
    /// ```
    /// let (reader, writer) = shmpipe::pipe(false)?;
    /// let sender = std::thread::spawn(move || -> shmpipe::Result<()> {
    ///     writer.send_bytes(b"")?;
    ///     writer.send_bytes(&vec![7u8; 10 << 20]) // larger than the default ring
    /// });
    /// assert_eq!(reader.recv_bytes()?, b"");
    /// assert_eq!(reader.recv_bytes()?, vec![7u8; 10 << 20]);
    /// sender.join().unwrap()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        self.send_parts(Parts::new(&[buf]))
    }

    /// Sends the concatenation of `parts` as one message, copying each part once,
    /// straight into the ring (or the socket): a header and a payload, say, without
    /// first gathering them into one buffer. The receiver sees one message.
    ///
    /// # Errors
    /// As [`send_bytes`](Connection::send_bytes).
    ///
    /// ```
    /// let (a, b) = shmpipe::pipe(true)?;
    /// a.send_bytes_vectored(&[b"head:", b"", b"body"])?;
    /// assert_eq!(b.recv_bytes()?, b"head:body");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn send_bytes_vectored(&self, parts: &[&[u8]]) -> Result<()> {
        self.send_parts(Parts::new(parts))
    }

    /// Sends each of `msgs` as a message of its own, in order, as calls of
    /// [`send_bytes`](Connection::send_bytes) one after the other would, but publishes
    /// every run of them that fits in the ring at once with a single store (and a
    /// single look at whether the reader sleeps), instead of one per message. It pays
    /// for streams of small messages where moving a cache line between the cores is
    /// dear, and costs nothing measurable where it is cheap.
    ///
    /// # Errors
    /// As `send_bytes`, for the first message that fails; the messages before it were
    /// sent, the ones after it were not.
    ///
    /// ```
    /// let (a, b) = shmpipe::pipe(true)?;
    /// a.send_bytes_many(&[b"one".as_slice(), b"", b"three"])?;
    /// assert_eq!(b.recv_bytes()?, b"one");
    /// assert_eq!(b.recv_bytes()?, b"");
    /// assert_eq!(b.recv_bytes()?, b"three");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn send_bytes_many(&self, msgs: &[&[u8]]) -> Result<()> {
        let mut rest = msgs;
        while let [first, ..] = rest {
            let sent = self.transport()?.send_many_now(rest)?;
            if sent > 0 {
                rest = &rest[sent..];
                continue;
            }
            // Waits for room, fragments a long message, or goes over the socket.
            self.send_bytes(first)?;
            rest = &rest[1..];
        }
        Ok(())
    }

    #[inline(always)]
    pub(crate) fn send_parts(&self, buf: Parts<'_>) -> Result<()> {
        // The common case, inline and in one pass (see `send_whole_now`); everything
        // else, including every error it does not report itself, out of line.
        if Transport::send_now(&self.inner, buf)? {
            return Ok(());
        }
        self.send_parts_slowly(buf)
    }

    #[inline(never)]
    fn send_parts_slowly(&self, buf: Parts<'_>) -> Result<()> {
        self.transport()?.send(buf, self.limits.write_deadline())
    }

    /// Receives the next message. Blocks while there is none.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::NotReadable`] on the writing end of a one-way pipe,
    /// [`Error::Eof`] once every copy of the other end is gone and every message it
    /// sent has been received; [`Error::MessageTooLong`] when the message is longer
    /// than the connection's [limit](Connection::set_max_message_size) (1 GiB unless
    /// set otherwise), which leaves it in the pipe for
    /// [`recv_bytes_max`](Connection::recv_bytes_max) with a larger limit;
    /// [`Error::Timeout`] past the [read timeout](Connection::set_read_timeout) and
    /// [`Error::WouldBlock`] in [non-blocking mode](Connection::set_nonblocking), having
    /// consumed nothing.
    ///
    /// ```
    /// let (reader, writer) = shmpipe::pipe(false)?;
    /// writer.send_bytes(b"spam")?;
    /// drop(writer);
    /// assert_eq!(reader.recv_bytes()?, b"spam");
    /// assert!(matches!(reader.recv_bytes(), Err(shmpipe::Error::Eof)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        self.recv_bytes_max(self.limit()?)
    }

    /// The connection's limit on received messages.
    #[inline]
    pub(crate) fn limit(&self) -> Result<usize> {
        self.transport()?;
        if !self.readable {
            return Err(Error::NotReadable);
        }
        Ok(self.limits.max_message.get())
    }

    /// Like [`recv_bytes`](Connection::recv_bytes), but refuses a message longer than
    /// `maxlength` bytes (in place of the connection's limit, for this call only).
    ///
    /// # Errors
    /// As `recv_bytes`, and [`Error::MessageTooLong`] when the next message is longer
    /// than `maxlength`; that message stays in the pipe for the next call.
    ///
    /// ```
    /// use shmpipe::Error;
    /// let (a, b) = shmpipe::pipe(true)?;
    /// a.send_bytes(b"too long")?;
    /// assert!(matches!(b.recv_bytes_max(3), Err(Error::MessageTooLong { len: 8, max: 3 })));
    /// assert_eq!(b.recv_bytes_max(8)?, b"too long");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn recv_bytes_max(&self, maxlength: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.receive_into(&mut out, maxlength)?;
        Ok(out)
    }

    /// The deadline of a receive, computed on first use (a receive that finds its
    /// message at once never reads the clock) and the same on every later call, so that
    /// a wait that starts on the one-pass path and ends on the general one has one
    /// deadline.
    fn lazy_read_deadline(&self) -> impl FnMut() -> Deadline + '_ {
        let mut deadline = None;
        move || *deadline.get_or_insert_with(|| self.limits.read_deadline())
    }

    /// Receives the next message into `out`, refusing one longer than `max`.
    #[inline]
    pub(crate) fn receive_into<S: Sink>(&self, out: &mut S, max: usize) -> Result<()> {
        self.transport()?
            .receive(out, max, self.lazy_read_deadline())
    }

    /// Receives the next message into `buf` and returns its length. Allocates nothing
    /// when the message fits.
    ///
    /// # Errors
    /// As `recv_bytes`, and [`Error::BufferTooShort`] holding the whole message when it
    /// does not fit in `buf`; the message is consumed. A message that does not fit and
    /// is also longer than the connection's limit gives [`Error::MessageTooLong`] and
    /// stays in the pipe.
    ///
    /// ```
    /// use shmpipe::Error;
    /// let (a, b) = shmpipe::pipe(true)?;
    /// let mut buf = [0u8; 4];
    /// a.send_bytes(b"eggs")?;
    /// assert_eq!(b.recv_bytes_into(&mut buf)?, 4);
    /// assert_eq!(&buf, b"eggs");
    /// a.send_bytes(b"spam and eggs")?;
    /// match b.recv_bytes_into(&mut buf) {
    ///     Err(Error::BufferTooShort(whole)) => assert_eq!(whole, b"spam and eggs"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        // The common case, inline and in one pass (see `receive_whole_now`); everything
        // else, including every error it does not report itself, out of line.
        let room = buf.len();
        let mut sink = SliceSink::new(buf);
        if Transport::receive_now(&self.inner, &mut sink, room)? {
            return Ok(sink.len());
        }
        self.recv_bytes_into_slowly(buf)
    }

    #[inline(never)]
    fn recv_bytes_into_slowly(&self, buf: &mut [u8]) -> Result<usize> {
        self.transport()?
            .receive_into_slice(buf, self.limit()?, self.lazy_read_deadline())
    }

    /// Whether a message (or EOF) is waiting: `Some(d)` waits up to `d`, `None` waits
    /// as long as it takes. Consumes nothing.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::NotReadable`] on the writing end of a one-way pipe.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = shmpipe::pipe(true)?;
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// a.send_bytes(b"x")?;
    /// assert!(b.poll(Some(Duration::from_secs(1)))?);
    /// assert!(b.poll(None)?); // still there
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.transport()?.poll(timeout)
    }

    /// A descriptor that polls readable (with `poll(2)`, `select(2)` or epoll) exactly
    /// when [`poll`](Connection::poll) would return true: a message is waiting or the
    /// other end is gone. It belongs to the connection; do not close it.
    ///
    /// Once `fileno` has been called, the connection keeps the descriptor's state up to
    /// date, which costs a system call each time a receive empties the ring.
    ///
    /// # Errors
    /// [`Error::Closed`].
    ///
    /// ```
    /// use rustix::event::{poll, PollFd, PollFlags, Timespec};
    /// use std::os::fd::BorrowedFd;
    ///
    /// let (a, b) = shmpipe::pipe(true)?;
    /// let fd = unsafe { BorrowedFd::borrow_raw(b.fileno()?) };
    /// let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    /// let ready = |fd| {
    ///     let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    ///     poll(&mut fds, Some(&zero)).unwrap() == 1
    /// };
    /// assert!(!ready(fd));
    /// a.send_bytes(b"x")?;
    /// assert!(ready(fd));
    /// b.recv_bytes()?;
    /// assert!(!ready(fd));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn fileno(&self) -> Result<RawFd> {
        self.transport()?.fileno()
    }

    /// Closes this end. Idempotent; dropping the connection closes it too. Once every
    /// copy of this end is closed in every process, the other end sees EOF (or
    /// [`Error::BrokenPipe`] when sending).
    ///
    /// ```
    /// let (mut a, b) = shmpipe::pipe(true)?;
    /// a.close();
    /// a.close();
    /// assert!(a.closed());
    /// assert!(matches!(a.send_bytes(b"x"), Err(shmpipe::Error::Closed)));
    /// assert!(matches!(b.recv_bytes(), Err(shmpipe::Error::Eof)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn close(&mut self) {
        if let Some(t) = &self.inner {
            // A message a timed-out send left part-sent gets this long to go out.
            let linger = self.limits.write_timeout.get().unwrap_or(CLOSE_LINGER);
            let _ = t.push_unsent(Deadline::after(Some(linger)));
        }
        self.inner = None;
    }

    /// Sets the longest message this end's receives will allocate memory for (1 GiB by
    /// default; see [`Builder::max_message_size`](crate::Builder::max_message_size)).
    /// A longer message gives [`Error::MessageTooLong`] and stays in the pipe.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::NotReadable`] on the writing end of a one-way pipe.
    ///
    /// ```
    /// use shmpipe::Error;
    /// let (a, b) = shmpipe::pipe(true)?;
    /// b.set_max_message_size(4)?;
    /// assert_eq!(b.max_message_size(), Some(4));
    /// a.send_bytes(b"too long")?;
    /// assert!(matches!(b.recv_bytes(), Err(Error::MessageTooLong { len: 8, max: 4 })));
    /// assert_eq!(b.recv_bytes_max(8)?, b"too long");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn set_max_message_size(&self, bytes: usize) -> Result<()> {
        self.transport()?;
        if !self.readable {
            return Err(Error::NotReadable);
        }
        self.limits.max_message.set(bytes);
        Ok(())
    }

    /// The longest message this end's receives will allocate memory for; `None` if
    /// the connection is closed or cannot receive.
    ///
    /// ```
    /// let (a, _b) = shmpipe::pipe(true)?;
    /// assert_eq!(a.max_message_size(), Some(1 << 30));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn max_message_size(&self) -> Option<usize> {
        self.limit().ok()
    }

    /// Whether [`close`](Connection::close) has been called.
    ///
    /// ```
    /// let (mut a, _b) = shmpipe::pipe(true)?;
    /// assert!(!a.closed());
    /// a.close();
    /// assert!(a.closed());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn closed(&self) -> bool {
        self.inner.is_none()
    }

    /// Whether this end can receive (false for the writing end of a one-way pipe).
    ///
    /// ```
    /// let (reader, writer) = shmpipe::pipe(false)?;
    /// assert!(reader.readable() && !writer.readable());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Whether this end can send (false for the reading end of a one-way pipe).
    ///
    /// ```
    /// let (reader, writer) = shmpipe::pipe(false)?;
    /// assert!(writer.writable() && !reader.writable());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn writable(&self) -> bool {
        self.writable
    }
}

// `Connection` must be `Send` (an end can move to another thread) and must not be `Sync`
// (one end is one ring side: two threads on it at once would break the SPSC protocol).
// `Send` is asserted here; not `Sync`, by the `compile_fail` example on the type.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Connection>();
};

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("closed", &self.closed())
            .field("shared_memory", &self.is_shared_memory())
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .finish()
    }
}
