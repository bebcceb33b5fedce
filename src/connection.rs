//! [`Connection`]: one end of a pipe, with the methods of Python's
//! `multiprocessing.connection.Connection`.

use crate::endpoint::{Breakable, Endpoint, Rx, Tx};
use crate::error::{Error, Result};
use crate::liveness;
use crate::ring::Record;
use crate::wakeup::{self, Waiter, Woken};
use crate::wire::{Kind, Reassembly};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Bytes reserved up front when reassembling a long message into a `Vec`: enough for
/// typical large messages in one allocation, without letting a corrupt length announced
/// by the other process allocate unbounded memory before the bytes arrive.
const REASSEMBLY_RESERVE_LIMIT: usize = 64 << 20;

/// One end of a pipe made by [`pipe`](crate::pipe) or [`Builder`](crate::Builder).
///
/// Messages are byte strings (or, with [`send`](Connection::send), rkyv archives) that
/// arrive whole, in order, exactly once. An end can be used from one thread at a time
/// (`Connection` is `Send` but not `Sync`); it is inherited by `fork` and can be handed
/// to an exec'd child with [`pass_to_child`](Connection::pass_to_child).
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
    pub(crate) inner: Option<Endpoint>,
    readable: bool,
    writable: bool,
}

impl Connection {
    pub(crate) fn new(ep: Endpoint) -> Connection {
        let (readable, writable) = (ep.rx.is_some(), ep.tx.is_some());
        Connection {
            inner: Some(ep),
            readable,
            writable,
        }
    }

    fn open(&self) -> Result<&Endpoint> {
        self.inner.as_ref().ok_or(Error::Closed)
    }

    pub(crate) fn rx(&self) -> Result<(&Endpoint, &Rx)> {
        let ep = self.open()?;
        let rx = ep.rx.as_ref().ok_or(Error::NotReadable)?;
        rx.ready_to_receive()?;
        Ok((ep, rx))
    }

    pub(crate) fn tx(&self) -> Result<(&Endpoint, &Tx)> {
        let ep = self.open()?;
        let tx = ep.tx.as_ref().ok_or(Error::NotWritable)?;
        tx.usable()?;
        Ok((ep, tx))
    }

    /// Sends `buf` as one message. Blocks while the ring is full.
    ///
    /// An empty message is a message. A message larger than the ring streams through it
    /// in fragments and arrives whole.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::NotWritable`] on the reading end of a one-way pipe,
    /// [`Error::BrokenPipe`] once every copy of the reading end is gone.
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
        let (ep, tx) = self.tx()?;
        ep.check_reader(tx)?;
        tx.guard(tx.producer.resync())?;
        let max = tx.producer.ring().max_record_payload();
        if buf.len() <= max {
            return ep.write_record(tx, Kind::Whole, 0, buf.len(), |p, g| p.fill(g, 0, buf));
        }
        let frag = tx.fragment_size();
        let mut at = 0;
        while at < buf.len() {
            let len = frag.min(buf.len() - at);
            let (kind, aux) = if at == 0 {
                (Kind::First, buf.len() as u64)
            } else if at + len == buf.len() {
                (Kind::Last, at as u64)
            } else {
                (Kind::Middle, at as u64)
            };
            let chunk = &buf[at..at + len];
            ep.write_record(tx, kind, aux, len, |p, g| p.fill(g, 0, chunk))?;
            at += len;
        }
        Ok(())
    }

    /// Receives the next message. Blocks while there is none.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::NotReadable`] on the writing end of a one-way pipe,
    /// [`Error::Eof`] once every copy of the other end is gone and every message it
    /// sent has been received.
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
        self.recv_bytes_max(usize::MAX)
    }

    /// Like [`recv_bytes`](Connection::recv_bytes), but refuses a message longer than
    /// `maxlength` bytes.
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
        let (ep, rx) = self.rx()?;
        let rec = ep.next_record(rx)?;
        let len = message_len(&rec)?;
        if len > maxlength {
            return Err(Error::MessageTooLong {
                len,
                max: maxlength,
            });
        }
        let mut out = Vec::new();
        ep.read_message_into_vec(rx, rec, &mut out)?;
        Ok(out)
    }

    /// Receives the next message into `buf` and returns its length. Allocates nothing
    /// when the message fits.
    ///
    /// # Errors
    /// As `recv_bytes`, and [`Error::BufferTooShort`] holding the whole message when it
    /// does not fit in `buf`; the message is consumed.
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
        let (ep, rx) = self.rx()?;
        let rec = ep.next_record(rx)?;
        let len = message_len(&rec)?;
        if len > buf.len() {
            let mut whole = Vec::new();
            ep.read_message_into_vec(rx, rec, &mut whole)?;
            return Err(Error::BufferTooShort(whole));
        }
        ep.read_message_into_slice(rx, rec, &mut buf[..len])?;
        Ok(len)
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
        let (ep, rx) = self.rx()?;
        rx.guard(rx.consumer.resync())?;
        let deadline = timeout.map(deadline_after);
        let woken = if rx.guard(rx.consumer.has_data())? {
            Woken::Ready(0)
        } else {
            ep.wait_for_data(rx, deadline)?
        };
        ep.settle_watch(rx, false)?;
        Ok(woken != Woken::TimedOut)
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
        let ep = self.open()?;
        ep.watch_fd()
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
        self.inner = None;
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
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Connection>();
};

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("closed", &self.closed())
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .finish()
    }
}

/// The instant `timeout` from now; a timeout too large for `Instant` becomes a century.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Where a received message is assembled: a `Vec<u8>`, or an rkyv `AlignedVec` for
/// typed messages that must be validated at 16-byte alignment.
pub(crate) trait Sink {
    fn clear(&mut self);
    fn reserve(&mut self, additional: usize);
    fn extend_from_slice(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn clear(&mut self) {
        Vec::clear(self)
    }
    fn reserve(&mut self, additional: usize) {
        Vec::reserve_exact(self, additional)
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes)
    }
}

impl Sink for rkyv::util::AlignedVec {
    fn clear(&mut self) {
        rkyv::util::AlignedVec::clear(self)
    }
    fn reserve(&mut self, additional: usize) {
        rkyv::util::AlignedVec::reserve(self, additional)
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        rkyv::util::AlignedVec::extend_from_slice(self, bytes)
    }
}

/// The length of the message that starts with `rec`.
pub(crate) fn message_len(rec: &Record) -> Result<usize> {
    match rec.kind {
        Kind::Whole => Ok(rec.len),
        Kind::First => usize::try_from(rec.aux)
            .map_err(|_| Error::corrupt("message length does not fit in memory")),
        k => Err(Error::corrupt(format!(
            "message starts with a {k:?} fragment"
        ))),
    }
}

impl Endpoint {
    /// Waits for the next record; EOF once the peer is gone and the ring is empty.
    pub(crate) fn next_record(&self, rx: &Rx) -> Result<Record> {
        rx.guard(rx.consumer.resync())?;
        loop {
            if let Some(rec) = rx.guard(rx.consumer.peek())? {
                return Ok(rec);
            }
            match self.wait_for_data(rx, None)? {
                Woken::Ready(_) => continue,
                Woken::PeerGone(_) => {
                    // The peer's last publish happened before its descriptors were
                    // closed, so one more look sees everything it sent.
                    return match rx.guard(rx.consumer.peek())? {
                        Some(rec) => Ok(rec),
                        None => Err(Error::Eof),
                    };
                }
                Woken::TimedOut => unreachable!("no deadline"),
            }
        }
    }

    pub(crate) fn wait_for_data(&self, rx: &Rx, deadline: Option<Instant>) -> Result<Woken> {
        let watched = self.watched.get();
        let waiter = Waiter {
            flag: rx.consumer.sleeping_flag(),
            doorbell: &self.shared.bells[rx.ring].data,
            liveness: self.liveness(),
        };
        let mut err = None;
        let woken = wakeup::wait(
            std::slice::from_ref(&waiter),
            |_| match rx.consumer.has_data() {
                Ok(b) => Ok(b),
                Err(e) => {
                    err = Some(e);
                    Ok(true)
                }
            },
            deadline,
            watched,
        )?;
        if let Some(e) = err {
            return Err(rx.break_with(e));
        }
        Ok(woken)
    }

    /// Releases `rec` and rings the producer's doorbell if it sleeps waiting for room.
    pub(crate) fn release(&self, rx: &Rx, rec: &Record) -> Result<()> {
        if rx.guard(rx.consumer.release(rec))? {
            self.shared.bells[rx.ring].space.ring()?;
        }
        Ok(())
    }

    /// After a receive: with a watched `fileno`, make its readiness match the ring.
    pub(crate) fn after_receive(&self, rx: &Rx) -> Result<()> {
        self.settle_watch(rx, false)
    }

    /// Reads the message starting with `first` into `out` (which it replaces).
    pub(crate) fn read_message_into_vec<S: Sink>(
        &self,
        rx: &Rx,
        first: Record,
        out: &mut S,
    ) -> Result<()> {
        out.clear();
        match first.kind {
            Kind::Whole => {
                rx.consumer
                    .with_payload(&first, |p| out.extend_from_slice(p));
                self.release(rx, &first)?;
            }
            _ => {
                let total = message_len(&first)?;
                let mut asm = rx.guard(Reassembly::start(&first.checked()))?;
                out.reserve(total.min(REASSEMBLY_RESERVE_LIMIT));
                rx.consumer
                    .with_payload(&first, |p| out.extend_from_slice(p));
                self.release(rx, &first)?;
                loop {
                    let rec = self.next_fragment(rx)?;
                    let last = rx.guard(asm.next(&rec.checked()))?;
                    rx.consumer.with_payload(&rec, |p| out.extend_from_slice(p));
                    self.release(rx, &rec)?;
                    if last {
                        break;
                    }
                }
            }
        }
        self.after_receive(rx)
    }

    /// Reads the message starting with `first` into `out`, exactly its length.
    fn read_message_into_slice(&self, rx: &Rx, first: Record, out: &mut [u8]) -> Result<()> {
        // Check a first fragment against the total it announces before copying it: `out`
        // is that total long, and the fragment's own length comes from the other side.
        let asm = match first.kind {
            Kind::First => Some(rx.guard(Reassembly::start(&first.checked()))?),
            _ => None,
        };
        rx.consumer
            .with_payload(&first, |p| out[..p.len()].copy_from_slice(p));
        self.release(rx, &first)?;
        if let Some(mut asm) = asm {
            loop {
                let rec = self.next_fragment(rx)?;
                let at = asm.received;
                let last = rx.guard(asm.next(&rec.checked()))?;
                rx.consumer
                    .with_payload(&rec, |p| out[at..at + p.len()].copy_from_slice(p));
                self.release(rx, &rec)?;
                if last {
                    break;
                }
            }
        }
        self.after_receive(rx)
    }

    /// The next fragment of a message: if the writer died before sending it, the
    /// half-sent message is dropped and the reader sees EOF.
    fn next_fragment(&self, rx: &Rx) -> Result<Record> {
        self.next_record(rx)
    }

    /// Checks, as cheaply as the situation allows, that someone still holds the reading
    /// end (see [`crate::liveness`]).
    pub(crate) fn check_reader(&self, tx: &Tx) -> Result<()> {
        if tx.peer_gone.get() {
            return Err(Error::BrokenPipe);
        }
        let detached = self.shared.region.header().detached[1 - self.end]
            .load(std::sync::atomic::Ordering::Relaxed);
        if detached != tx.seen_detached.get() {
            tx.seen_detached.set(detached);
            self.ask_kernel_about_reader(tx)?;
        }
        Ok(())
    }

    pub(crate) fn ask_kernel_about_reader(&self, tx: &Tx) -> Result<()> {
        if liveness::peer_gone(self.liveness())? {
            tx.peer_gone.set(true);
            return Err(Error::BrokenPipe);
        }
        Ok(())
    }

    /// Writes one record of `len` payload bytes, `fill` copying the payload in, waiting
    /// for room as long as needed.
    pub(crate) fn write_record(
        &self,
        tx: &Tx,
        kind: Kind,
        aux: u64,
        len: usize,
        fill: impl FnOnce(&crate::ring::Producer, &crate::ring::Grant),
    ) -> Result<()> {
        loop {
            let reloads = tx.producer.reloads();
            if let Some(grant) = tx.guard(tx.producer.reserve(len))? {
                if tx.producer.reloads() != reloads {
                    // We had to look at the reader's tail: a rare event (about once per
                    // ring of data), and the moment to ask whether the reader is alive.
                    self.ask_kernel_about_reader(tx)?;
                }
                fill(&tx.producer, &grant);
                if tx.guard(tx.producer.commit(grant, kind, len, aux))? {
                    self.shared.bells[tx.ring].data.ring()?;
                }
                return Ok(());
            }
            self.wait_for_room(tx, len)?;
        }
    }

    fn wait_for_room(&self, tx: &Tx, len: usize) -> Result<()> {
        let waiter = Waiter {
            flag: tx.producer.sleeping_flag(),
            doorbell: &self.shared.bells[tx.ring].space,
            liveness: self.liveness(),
        };
        let mut err = None;
        let woken = wakeup::wait(
            std::slice::from_ref(&waiter),
            |_| match tx.producer.has_room(len) {
                Ok(b) => Ok(b),
                Err(e) => {
                    err = Some(e);
                    Ok(true)
                }
            },
            None,
            false,
        )?;
        if let Some(e) = err {
            return Err(tx.break_with(e));
        }
        match woken {
            Woken::Ready(_) => Ok(()),
            Woken::PeerGone(_) => {
                tx.peer_gone.set(true);
                Err(Error::BrokenPipe)
            }
            Woken::TimedOut => unreachable!("no deadline"),
        }
    }
}
