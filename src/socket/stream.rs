//! One end of a socket connection: whole messages over a stream socket, in CPython's
//! framing, with deadlines.
//!
//! The socket is used only with `MSG_DONTWAIT` (and `MSG_NOSIGNAL`), never through its
//! file status flags: a forked copy of the connection, or a Python process the
//! descriptor was passed to, shares those flags and may change them. Waiting is
//! `poll(2)` until the call's deadline.
//!
//! A call that gives up keeps the connection in step, as the shared-memory transport
//! does:
//!
//! * a receive reads exactly one header, then exactly its payload, never beyond the
//!   message (so the descriptor polls readable exactly when more is there); if its
//!   deadline passes part-way, what it took is kept and the next receive goes on from
//!   there. A message longer than the caller's limit stays where it is, header read.
//! * a send whose deadline passes before the first byte went out sends nothing. One that
//!   passes after part of the message went out cannot take it back (a stream has no
//!   cancel): it keeps the rest in the connection, which pushes it out before anything
//!   else (every later send, and every wait for input, which also waits for room), and
//!   returns success: the message is committed, as one sent into the ring is.

use super::framing::{self, Header, MAX_HEADER};
use super::poll;
use crate::buffers::{grow_for, within, HalfReceived, Parts, Sink, SliceSink};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::sys::PeerSocket;
use crate::violation::{Breakage, Violation};
use rustix::event::PollFlags;
use rustix::io::Errno;
use rustix::net::SendFlags;
use std::cell::{Cell, RefCell};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// How much of a payload one `recv(2)` asks for at most: the buffer grows by no more
/// than this ahead of what has arrived (a peer announcing a huge message costs us
/// memory only as fast as it sends).
const READ_CHUNK: usize = 1 << 20;

/// How long closing a connection waits for the unsent rest of a message (see the module
/// documentation) when no write timeout is set.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// A message being received.
#[derive(Default)]
struct Incoming {
    /// The header bytes read so far.
    head: [u8; MAX_HEADER],
    have: usize,
    /// The length, once the header is complete.
    len: Option<usize>,
    /// The payload taken by earlier receives whose deadline passed.
    body: Option<HalfReceived>,
}

/// The unsent rest of a message whose send ran out of time.
#[derive(Default)]
struct Outgoing {
    tail: Vec<u8>,
    sent: usize,
}

impl Outgoing {
    fn pending(&self) -> &[u8] {
        &self.tail[self.sent..]
    }
}

/// One end of a socket connection.
pub(crate) struct SocketEnd {
    /// Clean (closed here) when it refuses passed descriptors or cannot carry any; see
    /// `crate::sys::PeerSocket`.
    /// Shared by the two halves of a split connection: closed when both are dropped.
    fd: Arc<PeerSocket>,
    /// Whether this end receives and sends (a half of a split connection does one).
    reads: bool,
    writes: bool,
    incoming: RefCell<Incoming>,
    outgoing: RefCell<Outgoing>,
    /// The peer broke the framing: the stream is out of step for good.
    broken: Breakage,
    /// The peer closed its end (we read EOF, or a send found the pipe broken).
    eof: Cell<bool>,
}

/// What a failed wait means for a call that has done nothing yet.
fn gave_up(deadline: Deadline) -> Error {
    match deadline {
        Deadline::Now => Error::WouldBlock,
        _ => Error::Timeout,
    }
}

impl SocketEnd {
    /// Wraps a connected stream socket, which from now on refuses passed descriptors
    /// (see `crate::sys`).
    pub(crate) fn new(fd: OwnedFd) -> SocketEnd {
        let clean = crate::sys::refuse_ancillary(fd.as_fd());
        SocketEnd::wrap(fd, clean)
    }

    /// Wraps a client's socket that is to receive the descriptors of a shared-memory
    /// pipe: it accepts passed descriptors, and is closed on the closer thread.
    pub(crate) fn for_descriptors(fd: OwnedFd) -> SocketEnd {
        crate::sys::accept_rights(fd.as_fd());
        SocketEnd::wrap(fd, false)
    }

    fn wrap(fd: OwnedFd, clean: bool) -> SocketEnd {
        SocketEnd {
            fd: Arc::new(PeerSocket::new(fd, clean)),
            reads: true,
            writes: true,
            incoming: RefCell::default(),
            outgoing: RefCell::default(),
            broken: Breakage::default(),
            eof: Cell::new(false),
        }
    }

    /// Splits the connection into a receiving half and a sending half, which share the
    /// socket (closed when both are dropped) and can be used from two threads at once.
    /// A message that a timed-out send left part-sent is pushed out by the sending half.
    pub(crate) fn split(self) -> (SocketEnd, SocketEnd) {
        let half = |reads: bool| SocketEnd {
            fd: self.fd.clone(),
            reads,
            writes: !reads,
            incoming: RefCell::default(),
            outgoing: RefCell::default(),
            broken: self.broken.clone(),
            eof: Cell::new(self.eof.get()),
        };
        let (receiving, sending) = (half(true), half(false));
        receiving.incoming.swap(&self.incoming);
        sending.outgoing.swap(&self.outgoing);
        (receiving, sending)
    }

    fn reading(&self) -> Result<()> {
        if !self.reads {
            return Err(Error::NotReadable);
        }
        self.usable()
    }

    fn writing(&self) -> Result<()> {
        if !self.writes {
            return Err(Error::NotWritable);
        }
        self.usable()
    }

    /// The socket, for `fileno` and event loops.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }

    /// The socket.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether this end is whole (not a half of a split connection) and between
    /// messages both ways: nothing of a message read and kept, nothing left to send. A
    /// duplicate of its socket then carries the connection on in another process.
    pub(crate) fn at_rest(&self) -> bool {
        let inc = self.incoming.borrow();
        self.reads
            && self.writes
            && inc.have == 0
            && inc.body.is_none()
            && !self.has_unsent_output()
    }

    /// Whether part of a message waits to be pushed out (see the module documentation).
    pub(crate) fn has_unsent_output(&self) -> bool {
        !self.outgoing.borrow().pending().is_empty()
    }

    fn usable(&self) -> Result<()> {
        self.broken.check()
    }

    /// Passes `e` on, and if it is a protocol violation, breaks the connection for good
    /// (see [`Breakage`]).
    fn break_with(&self, e: Error) -> Error {
        match e {
            Error::Corrupt(why) => self.broken.record(why),
            e => e,
        }
    }

    /// Waits until the socket is readable (or `want_write`: writable), pushing out the
    /// rest of an unfinished send meanwhile, so that two ends each waiting for the
    /// other's message never wait on a message one of them still holds. Returns false if
    /// the deadline passed.
    fn wait(&self, want_write: bool, deadline: Deadline) -> Result<bool> {
        let mut first = true;
        loop {
            // Checked on every round, not only when `poll` times out: a socket can show
            // room that a send then finds gone (TCP under memory pressure), and the
            // flushing below would go round for ever.
            if !first && deadline.passed() {
                return Ok(false);
            }
            first = false;
            let flushing = !want_write && !self.outgoing.borrow().pending().is_empty();
            let events = match (want_write || flushing, want_write) {
                (_, true) => PollFlags::OUT,
                (true, false) => PollFlags::IN | PollFlags::OUT,
                (false, false) => PollFlags::IN,
            };
            let seen = poll::wait(self.fd(), events, deadline)?;
            if seen.is_empty() {
                return Ok(false);
            }
            let ready_in = seen.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR);
            if flushing && seen.intersects(PollFlags::OUT | PollFlags::ERR | PollFlags::HUP) {
                // Never blocks: writes what fits now. A failure here (the peer is gone:
                // EPIPE) is not this wait's to report: a receive goes on to read what
                // the peer sent before it went, then EOF; the next send reports it.
                let _ = self.push_out(Deadline::Now);
            }
            if want_write || ready_in {
                return Ok(true);
            }
        }
    }

    /// Writes what it can of the unsent rest within `deadline`; true when none is left.
    pub(crate) fn push_out(&self, deadline: Deadline) -> Result<bool> {
        loop {
            let mut out = self.outgoing.borrow_mut();
            if out.pending().is_empty() {
                out.tail.clear();
                out.sent = 0;
                return Ok(true);
            }
            match self.send_some(&[IoSlice::new(out.pending())]) {
                Ok(n) => out.sent += n,
                Err(Errno::AGAIN) => {
                    drop(out);
                    if !self.wait(true, deadline)? {
                        return Ok(false);
                    }
                }
                Err(e) => {
                    // It can never be delivered now.
                    out.tail.clear();
                    out.sent = 0;
                    return Err(self.send_error(e));
                }
            }
        }
    }

    fn send_some(&self, parts: &[IoSlice<'_>]) -> std::result::Result<usize, Errno> {
        loop {
            match rustix::net::sendmsg(
                &self.fd,
                parts,
                &mut Default::default(),
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            ) {
                Err(Errno::INTR) => continue,
                other => return other,
            }
        }
    }

    fn send_error(&self, e: Errno) -> Error {
        if e == Errno::PIPE || e == Errno::CONNRESET {
            self.eof.set(true);
            Error::BrokenPipe
        } else {
            Error::Io(e.into())
        }
    }

    /// Sends `buf` as one message (see the module documentation for a deadline that
    /// passes part-way).
    // Kept out of line: each makes system calls anyway, and inlined they would bloat
    // the shared-memory fast paths that share a `match` with them.
    #[inline(never)]
    pub(crate) fn send(&self, buf: &[u8], deadline: Deadline) -> Result<()> {
        self.send_parts(Parts::new(&[buf]), deadline)
    }

    /// Sends the concatenation of `buf`'s pieces as one message.
    #[inline(never)]
    pub(crate) fn send_parts(&self, buf: Parts<'_>, deadline: Deadline) -> Result<()> {
        self.writing()?;
        if !self.push_out(deadline)? {
            return Err(gave_up(deadline));
        }
        let mut head = [0; MAX_HEADER];
        let head_len = framing::encode(buf.len(), &mut head);
        let total = head_len + buf.len();
        let mut sent = 0;
        let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(1 + buf.pieces().len());
        while sent < total {
            // What is left: the rest of the header, then of each piece.
            iov.clear();
            let mut skip = sent;
            for piece in std::iter::once(&head[..head_len]).chain(buf.pieces().iter().copied()) {
                if skip >= piece.len() {
                    skip -= piece.len();
                } else {
                    iov.push(IoSlice::new(&piece[skip..]));
                    skip = 0;
                }
            }
            match self.send_some(&iov) {
                Ok(n) => sent += n,
                Err(Errno::AGAIN) => {
                    let waited = self.wait(true, deadline);
                    if !matches!(waited, Ok(true)) {
                        if sent == 0 {
                            return Err(waited.err().unwrap_or_else(|| gave_up(deadline)));
                        }
                        let mut out = self.outgoing.borrow_mut();
                        out.tail.clear();
                        out.sent = 0;
                        for part in &iov {
                            out.tail.extend_from_slice(part);
                        }
                        return Ok(());
                    }
                }
                Err(e) => return Err(self.send_error(e)),
            }
        }
        Ok(())
    }

    /// Reads into `buf` what is there, up to its length, without waiting. `Ok(None)`: nothing
    /// yet. `Ok(Some(0))`: end of file.
    fn read_some(&self, buf: &mut [std::mem::MaybeUninit<u8>]) -> Result<Option<usize>> {
        // Never a plain `recv`: a descriptor the peer attached would be closed by the
        // kernel in this thread, which can block (see `crate::sys`).
        match crate::sys::recv(self.fd.as_fd(), buf) {
            Ok(n) => Ok(Some(n)),
            Err(Errno::AGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The length of the next message, reading its header (within `deadline`) if that
    /// has not been done. Consumes none of the payload.
    ///
    /// # Errors
    /// [`Error::Eof`] when the peer closed the connection between messages; an I/O error
    /// when it closed it inside a header; [`Error::Corrupt`] for a length that is not
    /// one; [`Error::Timeout`] or [`Error::WouldBlock`].
    #[inline(never)]
    pub(crate) fn next_len(&self, deadline: Deadline) -> Result<usize> {
        self.reading()?;
        loop {
            let mut inc = self.incoming.borrow_mut();
            if let Some(len) = inc.len {
                return Ok(len);
            }
            let need = match framing::decode(&inc.head[..inc.have]) {
                Ok(Header::Incomplete(need)) => need,
                Ok(Header::Complete { len }) => {
                    let len = usize::try_from(len).map_err(|_| {
                        self.break_with(Error::Corrupt(Violation::LengthTooLarge { len }))
                    })?;
                    inc.len = Some(len);
                    return Ok(len);
                }
                Err(e) => return Err(self.break_with(e)),
            };
            let have = inc.have;
            let spare = &mut inc.head[have..need];
            // SAFETY: a `[u8]` viewed as `[MaybeUninit<u8>]`, only ever written with bytes.
            let spare: &mut [std::mem::MaybeUninit<u8>] =
                unsafe { &mut *(spare as *mut [u8] as *mut _) };
            let got = match crate::sys::recv(self.fd.as_fd(), spare) {
                Ok(n) => Some(n),
                Err(Errno::AGAIN) => None,
                Err(Errno::CONNRESET) if have == 0 => Some(0),
                Err(e) => return Err(e.into()),
            };
            match got {
                Some(0) if have == 0 => {
                    self.eof.set(true);
                    return Err(Error::Eof);
                }
                Some(0) => {
                    *inc = Incoming::default();
                    self.eof.set(true);
                    return Err(truncated());
                }
                Some(n) => inc.have += n,
                None => {
                    drop(inc);
                    if !self.wait(false, deadline)? {
                        return Err(gave_up(deadline));
                    }
                }
            }
        }
    }

    /// Receives the next message into `out`, refusing one longer than `max` (it stays,
    /// header read, for a later call with a larger limit).
    pub(crate) fn receive_into<S: Sink>(
        &self,
        out: &mut S,
        max: usize,
        deadline: Deadline,
    ) -> Result<()> {
        within(self.next_len(deadline)?, max)?;
        self.read_body(out, deadline)
    }

    /// Receives the next message into `buf`, returning its length; one that does not fit
    /// is consumed and handed over whole in [`Error::BufferTooShort`] (unless it is over
    /// `max`, the size limit, when it stays).
    pub(crate) fn receive_into_slice(
        &self,
        buf: &mut [u8],
        max: usize,
        deadline: Deadline,
    ) -> Result<usize> {
        let len = self.next_len(deadline)?;
        if len > buf.len() {
            within(len, max)?;
            let mut whole = Vec::new();
            self.read_body(&mut whole, deadline)?;
            return Err(Error::BufferTooShort(whole));
        }
        self.read_body(&mut SliceSink::new(&mut buf[..len]), deadline)?;
        Ok(len)
    }

    /// Reads the payload of the message whose header [`next_len`](Self::next_len) read
    /// into `out` (emptied first), within `deadline`. Grows `out` only as bytes arrive.
    #[inline(never)]
    pub(crate) fn read_body<S: Sink>(&self, out: &mut S, deadline: Deadline) -> Result<()> {
        let mut inc = self.incoming.borrow_mut();
        let len = inc.len.expect("next_len read the header");
        out.clear();
        let Some(mut body) = inc.body.take() else {
            // The usual case: straight into the caller's buffer. If the call gives up
            // part-way, what came is kept for the next.
            drop(inc);
            if let Some(e) = self.read_into(out, len, deadline)? {
                self.incoming.borrow_mut().body = Some(HalfReceived::keep(out));
                return Err(e);
            }
            return Ok(());
        };
        // Resuming: go on in the kept buffer, and hand the whole to the caller at the end.
        drop(inc);
        if let Some(e) = self.read_into(body.bytes(), len, deadline)? {
            self.incoming.borrow_mut().body = Some(body);
            return Err(e);
        }
        body.deliver(out);
        Ok(())
    }

    /// Reads into `out` until it holds `len` bytes: `Ok(None)` then, and the message is
    /// done with. `Ok(Some(e))`: the call gives up with `e` (its deadline passed, or a
    /// signal), `out` holding what came. `Err`: the connection failed inside the message.
    fn read_into<S: Sink>(
        &self,
        out: &mut S,
        len: usize,
        deadline: Deadline,
    ) -> Result<Option<Error>> {
        let failed = |e: Error| {
            // Nothing more of the message will come, and what follows could not be
            // told from its rest.
            *self.incoming.borrow_mut() = Incoming::default();
            self.eof.set(true);
            Err(e)
        };
        while out.len() < len {
            let want = (len - out.len()).min(READ_CHUNK);
            grow_for(out, len, want);
            let spare = &mut out.spare()[..want];
            match self.read_some(spare) {
                Ok(Some(0)) => return failed(truncated()),
                // SAFETY: `recv` initialised the first `n` spare bytes.
                Ok(Some(n)) => unsafe { out.commit(n) },
                Ok(None) => match self.wait(false, deadline) {
                    Ok(true) => {}
                    Ok(false) => return Ok(Some(gave_up(deadline))),
                    Err(e) if e.gave_up() => return Ok(Some(e)),
                    Err(e) => return failed(e),
                },
                Err(e) => return failed(e),
            }
        }
        *self.incoming.borrow_mut() = Incoming::default();
        Ok(None)
    }

    /// Whether a receive would find a message (or EOF) without waiting, after waiting up
    /// to `deadline` (`None`: no limit) for one. Like Python's `poll`, true as soon as
    /// the socket is readable, even if only part of a message is there.
    #[inline(never)]
    pub(crate) fn poll(&self, deadline: Deadline) -> Result<bool> {
        self.reading()?;
        {
            let inc = self.incoming.borrow();
            let have = inc.body.as_ref().map_or(0, HalfReceived::len);
            if inc.len == Some(have) || self.eof.get() {
                return Ok(true);
            }
        }
        self.wait(false, deadline)
    }
}

fn truncated() -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "got end of file during message",
    ))
}
