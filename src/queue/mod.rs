//! [`Queue`]: `multiprocessing.Queue` on shared memory, any number of processes putting
//! and getting.
//!
//! The design: the pipe's SPSC ring (`crate::shm::ring`), with the producers taking turns
//! under one lock and the consumers under another (`lock.rs`), each lock robust to its
//! holder's death (`members.rs` says who is alive), and the blocked sides sleeping on
//! futex words in a control page (`control.rs`) that the other side bumps only when
//! someone sleeps. A producer or consumer that takes a lock resynchronizes its ring side
//! with what the last holder published, so whatever a dead holder left unpublished is
//! as if it had never been written. Inside a process, threads take turns on a mutex per
//! side first. A message longer than a record goes in fragments (`fragments.rs`).

#[cfg(feature = "tokio")]
mod asynchronous;
mod control;
mod fragments;
mod local;
mod lock;
mod members;
mod sides;
mod wake;

use crate::buffers::{Parts, SpillSink};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::shm::fork_epoch;
use crate::shm::layout::{Layout, DEFAULT_CAPACITY, MAX_CAPACITY, MIN_CAPACITY};
use crate::shm::region::Region;
use crate::shm::ring::{Consumer, Producer, RingRef};
use crate::shm::spin::Looks;
use crate::typed::{decode, serialize, Message};
use control::{Control, ControlPage};
use local::Local;
use members::Member;
use sides::{Side, Turn};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A queue that any number of processes put messages into and get them from, each
/// message to exactly one getter, whole, in the order the puts published them. Made
/// with [`Queue::new`]; a clone is another handle on the same queue, and a forked child
/// inherits it.
///
/// Messages may be of any size up to 1 GiB: one longer than half the queue's capacity
/// goes in fragments while a getter takes them, and arrives whole or not at all.
///
/// A process killed at any point, even while it holds the producers' or consumers'
/// turn, does not block the others for longer than a few tens of milliseconds: the
/// message it was putting is lost, and every other message arrives. The one it was
/// getting is still there for another getter if it fits in one record (half the
/// capacity); a longer one is lost with its getter (delivered at most once).
///
/// ```
/// let q = shmpipe::Queue::new()?;
/// q.put_bytes(b"job 1")?;
/// q.put_bytes(b"job 2")?;
/// assert_eq!(q.len(), 2);
/// assert_eq!(q.get_bytes()?, b"job 1");
/// assert_eq!(q.get_bytes()?, b"job 2");
/// assert!(matches!(q.try_get_bytes(), Err(shmpipe::Error::WouldBlock)));
/// # Ok::<(), shmpipe::Error>(())
/// ```
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    ring: Region,
    control: ControlPage,
    producer: Local<Side<Producer>>,
    consumer: Local<Side<Consumer>>,
    /// This process's membership (see `members.rs`); a forked child replaces its
    /// parent's.
    member: Mutex<Option<Arc<Member>>>,
    /// The fork epoch (`crate::shm::fork_epoch`) plus one of the process that closed
    /// the queue, 0 while open: a child forked after a `close` has its queue open, as
    /// `multiprocessing.Queue` does after a fork.
    closed: AtomicU64,
    /// The longest message that goes in one record.
    whole_max: usize,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("capacity", &self.inner.ring.layout().capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl Queue {
    /// A queue with the default capacity: 4 MiB of messages.
    ///
    /// # Errors
    /// [`Error::Io`] if the kernel refuses shared memory.
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn new() -> Result<Queue> {
        Queue::with_capacity(DEFAULT_CAPACITY)
    }

    /// A queue holding up to `bytes` of messages (rounded up to a power of two, at least
    /// 4 KiB, at most 1 GiB); a message takes its length plus 16 bytes, rounded up to 16.
    ///
    /// # Errors
    /// [`Error::Invalid`] for 0 or more than 1 GiB; [`Error::Io`] if the kernel refuses
    /// shared memory.
    ///
    /// ```
    /// let q = shmpipe::Queue::with_capacity(64 * 1024)?;
    /// q.put_bytes(&[7; 1000])?;
    /// assert_eq!(q.get_bytes()?.len(), 1000);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn with_capacity(bytes: usize) -> Result<Queue> {
        Queue::with_limits(bytes, None)
    }

    /// A queue holding up to `bytes` of messages (as [`with_capacity`](Queue::with_capacity))
    /// and at most `max_items` messages (Python's `Queue(maxsize)`); a put waits for room
    /// in both.
    ///
    /// # Errors
    /// As `with_capacity`; [`Error::Invalid`] for `Some(0)`.
    ///
    /// ```
    /// let q = shmpipe::Queue::with_limits(1 << 20, Some(2))?;
    /// q.put_bytes(b"1")?;
    /// q.put_bytes(b"2")?;
    /// assert!(q.is_full());
    /// assert!(matches!(q.try_put_bytes(b"3"), Err(shmpipe::Error::WouldBlock)));
    /// q.get_bytes()?;
    /// q.try_put_bytes(b"3")?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn with_limits(bytes: usize, max_items: Option<usize>) -> Result<Queue> {
        if max_items == Some(0) {
            return Err(Error::Invalid("a queue that holds no message".into()));
        }
        if bytes == 0 || bytes > MAX_CAPACITY {
            return Err(Error::Invalid(format!(
                "capacity {bytes} is not between 1 and {MAX_CAPACITY} bytes"
            )));
        }
        let capacity = bytes.max(MIN_CAPACITY).next_power_of_two();
        let ring = Region::create(Layout::new(1, capacity).expect("checked above"))?;
        let control = ControlPage::create()?;
        let limit = max_items.map_or(0, |n| n as u64);
        control.get().max_items.store(limit, Relaxed);
        Queue::from_parts(ring, control)
    }

    /// A queue of this process over a region and a control page, made here or received.
    fn from_parts(ring: Region, control: ControlPage) -> Result<Queue> {
        let layout = ring.layout();
        if layout.rings != 1 {
            return Err(Error::Invalid(format!(
                "not a queue's region: {} rings",
                layout.rings
            )));
        }
        let capacity = layout.capacity;
        let side = || {
            // SAFETY: ring 0's control block and data area belong to `ring`, which `Inner`
            // keeps mapped for as long as the producer and consumer made here exist.
            unsafe { RingRef::new(ring.control(0), ring.data(0), capacity) }
        };
        let producer = Producer::new(side());
        let consumer = Consumer::new(side());
        Ok(Queue {
            inner: Arc::new(Inner {
                whole_max: producer.ring().max_record_payload(),
                producer: Local::new(Side::new(producer)),
                consumer: Local::new(Side::new(consumer)),
                ring,
                control,
                member: Mutex::new(None),
                closed: AtomicU64::new(0),
            }),
        })
    }

    /// Puts `msg` at the end of the queue, waiting for room as long as it takes.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`close`](Queue::close) in this process;
    /// [`Error::MessageTooLong`] for a message longer than 1 GiB.
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// q.put_bytes(b"hello")?;
    /// assert_eq!(q.get_bytes()?, b"hello");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn put_bytes(&self, msg: &[u8]) -> Result<()> {
        self.put_bytes_by(msg, Deadline::Never)
    }

    /// [`put_bytes`](Queue::put_bytes), giving up with [`Error::Timeout`] once `timeout`
    /// has passed without room (nothing is put then: a message in fragments that was
    /// part-way is taken back, and no getter sees it).
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = shmpipe::Queue::with_capacity(4096)?;
    /// q.put_bytes(&[0; 1500])?;
    /// q.put_bytes(&[0; 1500])?;
    /// let full = q.put_bytes_timeout(&[0; 1500], Duration::from_millis(10));
    /// assert!(matches!(full, Err(shmpipe::Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn put_bytes_timeout(&self, msg: &[u8], timeout: Duration) -> Result<()> {
        self.put_bytes_by(msg, Deadline::after(Some(timeout)))
    }

    /// [`put_bytes`](Queue::put_bytes) if there is room now, else [`Error::WouldBlock`]
    /// (nothing is put then).
    ///
    /// ```
    /// let q = shmpipe::Queue::with_capacity(4096)?;
    /// q.try_put_bytes(&[0; 1500])?;
    /// q.try_put_bytes(&[0; 1500])?;
    /// assert!(matches!(q.try_put_bytes(&[0; 1500]), Err(shmpipe::Error::WouldBlock)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn try_put_bytes(&self, msg: &[u8]) -> Result<()> {
        self.put_bytes_by(msg, Deadline::Now)
    }

    /// Takes the message at the front of the queue, waiting for one as long as it takes.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`close`](Queue::close) in this process;
    /// [`Error::Corrupt`] if a participant broke the ring's protocol.
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// let producer = q.clone();
    /// let t = std::thread::spawn(move || producer.put_bytes(b"from a thread"));
    /// assert_eq!(q.get_bytes()?, b"from a thread");
    /// t.join().unwrap()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn get_bytes(&self) -> Result<Vec<u8>> {
        self.get_bytes_by(Deadline::Never)
    }

    /// [`get_bytes`](Queue::get_bytes) into `buf`, returning the message's length.
    /// Allocates nothing once the queue's handle has received a message this long.
    ///
    /// # Errors
    /// As `get_bytes`, and [`Error::BufferTooShort`] holding the whole message when it
    /// does not fit in `buf` (it is consumed).
    ///
    /// ```
    /// use shmpipe::Error;
    /// let q = shmpipe::Queue::new()?;
    /// let mut buf = [0u8; 4];
    /// q.put_bytes(b"eggs")?;
    /// assert_eq!(q.get_bytes_into(&mut buf)?, 4);
    /// q.put_bytes(b"spam and eggs")?;
    /// assert!(matches!(q.get_bytes_into(&mut buf), Err(Error::BufferTooShort(m)) if m == b"spam and eggs"));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn get_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        let mut side = self.inner.consumer.take(Deadline::Never)?;
        let mut out = SpillSink::new(buf);
        self.get_into(&mut side, Deadline::Never, &mut out)?;
        out.finish().map_err(Error::BufferTooShort)
    }

    /// [`get_bytes`](Queue::get_bytes), giving up with [`Error::Timeout`] once `timeout`
    /// has passed without a message. The timeout bounds the wait for a message to
    /// begin, as `multiprocessing.Queue`'s does: a message in fragments (longer than
    /// half the capacity), once begun, is read to its end unless its putter takes it
    /// back or dies.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = shmpipe::Queue::new()?;
    /// assert!(matches!(q.get_bytes_timeout(Duration::from_millis(1)), Err(shmpipe::Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn get_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>> {
        self.get_bytes_by(Deadline::after(Some(timeout)))
    }

    /// [`get_bytes`](Queue::get_bytes) if a message is there now (and no other getter
    /// holds the consumers' turn), else [`Error::WouldBlock`].
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// assert!(matches!(q.try_get_bytes(), Err(shmpipe::Error::WouldBlock)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn try_get_bytes(&self) -> Result<Vec<u8>> {
        self.get_bytes_by(Deadline::Now)
    }

    /// Puts `value` as an rkyv archive (see [`Connection::send`](crate::Connection::send)),
    /// waiting for room as long as it takes.
    ///
    /// # Errors
    /// As [`put_bytes`](Queue::put_bytes); [`Error::Invalid`] if rkyv cannot serialize
    /// the value.
    ///
    /// ```
    /// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
    /// struct Job {
    ///     id: u64,
    ///     name: String,
    /// }
    ///
    /// let q = shmpipe::Queue::new()?;
    /// q.put(&Job { id: 1, name: "resize".into() })?;
    /// assert_eq!(q.get::<Job>()?, Job { id: 1, name: "resize".into() });
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn put<T: Message>(&self, value: &T) -> Result<()> {
        self.put_by(value, Deadline::Never)
    }

    /// [`put`](Queue::put), giving up with [`Error::Timeout`] once `timeout` has passed
    /// without room.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = shmpipe::Queue::new()?;
    /// q.put_timeout(&42u32, Duration::from_secs(1))?;
    /// assert_eq!(q.get::<u32>()?, 42);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn put_timeout<T: Message>(&self, value: &T, timeout: Duration) -> Result<()> {
        self.put_by(value, Deadline::after(Some(timeout)))
    }

    /// [`put`](Queue::put) if there is room now, else [`Error::WouldBlock`].
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// q.try_put(&String::from("now"))?;
    /// assert_eq!(q.get::<String>()?, "now");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn try_put<T: Message>(&self, value: &T) -> Result<()> {
        self.put_by(value, Deadline::Now)
    }

    /// Takes the message at the front of the queue as a `T` (validated, then
    /// deserialized; see [`Connection::recv`](crate::Connection::recv)), waiting for one
    /// as long as it takes.
    ///
    /// # Errors
    /// As [`get_bytes`](Queue::get_bytes); [`Error::Invalid`] when the message is not a
    /// valid archive of `T` (it is consumed, and the queue goes on).
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// q.put(&vec![1u64, 2, 3])?;
    /// q.put_bytes(b"not an archive")?;
    /// assert_eq!(q.get::<Vec<u64>>()?, [1, 2, 3]);
    /// assert!(matches!(q.get::<Vec<u64>>(), Err(shmpipe::Error::Invalid(_))));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn get<T: Message>(&self) -> Result<T> {
        self.get_by(Deadline::Never)
    }

    /// [`get`](Queue::get), giving up with [`Error::Timeout`] once `timeout` has passed
    /// without a message.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = shmpipe::Queue::new()?;
    /// assert!(matches!(q.get_timeout::<u8>(Duration::from_millis(1)), Err(shmpipe::Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn get_timeout<T: Message>(&self, timeout: Duration) -> Result<T> {
        self.get_by(Deadline::after(Some(timeout)))
    }

    /// [`get`](Queue::get) if a message is there now, else [`Error::WouldBlock`].
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// assert!(matches!(q.try_get::<u8>(), Err(shmpipe::Error::WouldBlock)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn try_get<T: Message>(&self) -> Result<T> {
        self.get_by(Deadline::Now)
    }

    /// How many messages are in the queue: approximate while others put and get, and
    /// off by one for each process that died between its put or get and the count.
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// q.put_bytes(b"x")?;
    /// assert_eq!(q.len(), 1);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        let ctl = self.control();
        // Gets first: a get counted after our look at the puts would make the
        // difference negative.
        let got = ctl.consumers.moved.load(Acquire);
        let put = ctl.producers.moved.load(Acquire);
        // Counts another process wrote garbage into: as good as we can tell.
        let n = usize::try_from(put.saturating_sub(got)).unwrap_or(usize::MAX);
        n.min(self.inner.ring.layout().capacity / 16)
    }

    /// Whether the queue holds its item limit (see [`with_limits`](Queue::with_limits);
    /// never for a queue without one). As approximate as [`len`](Queue::len).
    ///
    /// ```
    /// let q = shmpipe::Queue::with_limits(4096, Some(1))?;
    /// assert!(!q.is_full());
    /// q.put_bytes(b"x")?;
    /// assert!(q.is_full());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_full(&self) -> bool {
        !self.has_item_room()
    }

    /// Says that a message got earlier is dealt with (Python's
    /// `JoinableQueue.task_done`): [`join`](Queue::join) returns once every message put
    /// has been.
    ///
    /// # Errors
    /// [`Error::Invalid`] if called more times than messages were put.
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// q.put_bytes(b"job")?;
    /// q.get_bytes()?;
    /// q.task_done()?;
    /// q.join()?; // returns at once: every task is done
    /// assert!(q.task_done().is_err());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn task_done(&self) -> Result<()> {
        let ctl = self.control();
        let before = ctl
            .unfinished
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
        match before {
            Ok(1) => {
                wake::wake(&ctl.done_seq, &ctl.done_waiters);
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(_) => Err(Error::Invalid(
                "task_done called more times than put".into(),
            )),
        }
    }

    /// Waits until every message put has been marked done with
    /// [`task_done`](Queue::task_done) (Python's `JoinableQueue.join`).
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// let worker = q.clone();
    /// q.put_bytes(b"job")?;
    /// let t = std::thread::spawn(move || {
    ///     worker.get_bytes().unwrap();
    ///     worker.task_done().unwrap();
    /// });
    /// q.join()?;
    /// t.join().unwrap();
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn join(&self) -> Result<()> {
        self.join_by(Deadline::Never)
    }

    /// [`join`](Queue::join), giving up with [`Error::Timeout`] once `timeout` has passed.
    ///
    /// ```
    /// use std::time::Duration;
    /// let q = shmpipe::Queue::new()?;
    /// q.put_bytes(b"job")?;
    /// assert!(matches!(q.join_timeout(Duration::from_millis(1)), Err(shmpipe::Error::Timeout)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_by(Deadline::after(Some(timeout)))
    }

    fn join_by(&self, deadline: Deadline) -> Result<()> {
        let ctl = self.control();
        let done = || Ok(ctl.unfinished.load(SeqCst) == 0);
        wake::wait_for(
            &ctl.done_seq,
            &ctl.done_waiters,
            done,
            deadline,
            Looks::Sparse,
        )
    }

    /// Whether the queue holds no message (as approximate as [`len`](Queue::len)).
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Says that this process (every handle on the queue in it) will put and get no
    /// more: later calls here return [`Error::Closed`], and so do puts and gets of its
    /// other threads that were waiting for room or a message. Other processes, and
    /// children forked from this one later, go on.
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// q.close();
    /// assert!(matches!(q.put_bytes(b"x"), Err(shmpipe::Error::Closed)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn close(&self) {
        self.inner.closed.store(fork_epoch::current() + 1, Relaxed);
        // Wakes every waiter, here and elsewhere: ours find the queue closed, the other
        // processes' look again and sleep on.
        let ctl = self.control();
        wake::wake(&ctl.data_seq, &ctl.data_waiters);
        wake::wake(&ctl.space_seq, &ctl.space_waiters);
    }

    /// For tests of a participant that dies holding a turn: takes the producers' turn
    /// (`producers`) or the consumers', and never gives it back.
    #[doc(hidden)]
    pub fn __take_turn_for_good(&self, producers: bool) -> Result<()> {
        let me = self.member()?;
        let ctl = self.control();
        let word = if producers {
            &ctl.producers.lock
        } else {
            &ctl.consumers.lock
        };
        std::mem::forget(Turn::take(word, &me, ctl, Deadline::Never)?);
        Ok(())
    }

    /// Whether [`close`](Queue::close) was called in this process.
    ///
    /// ```
    /// let q = shmpipe::Queue::new()?;
    /// assert!(!q.is_closed());
    /// q.close();
    /// assert!(q.is_closed());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        self.open().is_err()
    }

    fn put_bytes_by(&self, msg: &[u8], deadline: Deadline) -> Result<()> {
        let mut side = self.inner.producer.take(deadline)?;
        self.put_from(&mut side, Parts::new(&[msg]), deadline, None)
    }

    fn get_bytes_by(&self, deadline: Deadline) -> Result<Vec<u8>> {
        let mut side = self.inner.consumer.take(deadline)?;
        let mut out = Vec::new();
        self.get_into(&mut side, deadline, &mut out)?;
        Ok(out)
    }

    fn put_by<T: Message>(&self, value: &T, deadline: Deadline) -> Result<()> {
        let mut side = self.inner.producer.take(deadline)?;
        let bytes = serialize(value, &side.scratch)?;
        let put = self.put_from(&mut side, Parts::new(&[&bytes]), deadline, None);
        side.scratch.give_back(bytes);
        put
    }

    fn get_by<T: Message>(&self, deadline: Deadline) -> Result<T> {
        let mut side = self.inner.consumer.take(deadline)?;
        let mut copy = side.scratch.take();
        let got = self.get_into(&mut side, deadline, &mut copy);
        let value = got.and_then(|()| decode::<T>(copy.as_slice()));
        side.scratch.give_back(copy);
        value
    }

    /// Whether the item limit leaves room for one more message.
    pub(crate) fn has_item_room(&self) -> bool {
        let limit = self.control().max_items.load(Relaxed);
        limit == 0 || (self.len() as u64) < limit
    }

    /// A reference that does not keep the queue alive, for `pass_to_child`.
    pub(crate) fn weak(&self) -> std::sync::Weak<impl Sized + Send + Sync> {
        Arc::downgrade(&self.inner)
    }

    /// [`get_bytes_timeout`](Queue::get_bytes_timeout) into `out` (emptied first), whose
    /// allocation is reused; a zero `timeout` is [`try_get_bytes`](Queue::try_get_bytes).
    /// For the Python bindings, which keep one buffer per queue.
    #[doc(hidden)]
    pub fn __get_into_vec(&self, out: &mut Vec<u8>, timeout: Duration) -> Result<()> {
        let deadline = hidden_deadline(timeout);
        let mut side = self.inner.consumer.take(deadline)?;
        self.get_into(&mut side, deadline, out)
    }

    /// [`put_bytes_timeout`](Queue::put_bytes_timeout) of the message made of `pieces`
    /// one after the other; a zero `timeout` is [`try_put_bytes`](Queue::try_put_bytes).
    /// For the Python bindings, which put a tag before a `bytes` object's bytes.
    #[doc(hidden)]
    pub fn __put_pieces(&self, pieces: &[&[u8]], timeout: Duration) -> Result<()> {
        let deadline = hidden_deadline(timeout);
        let mut side = self.inner.producer.take(deadline)?;
        self.put_from(&mut side, Parts::new(pieces), deadline, None)
    }

    /// The longest message that goes in one record (half the capacity, less a header):
    /// a put of one no longer than this is all-or-nothing however its wait ends, so the
    /// Python bindings may wait for it in slices.
    #[doc(hidden)]
    pub fn __whole_max(&self) -> usize {
        self.inner.whole_max
    }

    /// The queue's two memfds (ring, control page), for passing it to another process
    /// (the Python bindings' pickling).
    #[doc(hidden)]
    pub fn __fds(&self) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        (self.inner.ring.memfd(), self.inner.control.memfd())
    }

    /// The queue whose memfds another process passed, after checking both.
    #[doc(hidden)]
    pub fn __from_fds(ring: OwnedFd, control: OwnedFd) -> Result<Queue> {
        Queue::from_parts(Region::attach(ring)?, ControlPage::attach(control)?)
    }

    pub(crate) fn control(&self) -> &Control {
        self.inner.control.get()
    }

    pub(crate) fn open(&self) -> Result<()> {
        match self.inner.closed.load(Relaxed) == fork_epoch::current() + 1 {
            true => Err(Error::Closed),
            false => Ok(()),
        }
    }

    /// This process's member of the queue, joining (again, in a forked child) if need be.
    pub(crate) fn member(&self) -> Result<Arc<Member>> {
        let mut slot = self.inner.member.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = fork_epoch::current();
        if let Some(m) = slot.as_ref() {
            if m.epoch == epoch {
                return Ok(m.clone());
            }
        }
        // Our parent's, if any, goes (dropping it leaves its descriptor alone: see
        // `Member`'s `Drop`).
        let m = Arc::new(Member::join(self.inner.control.memfd(), self.control())?);
        *slot = Some(m.clone());
        Ok(m)
    }
}

/// The deadline of a hidden call's `timeout`: zero is "now" (a non-blocking call),
/// `Duration::MAX` is "never".
fn hidden_deadline(timeout: Duration) -> Deadline {
    match timeout {
        Duration::ZERO => Deadline::Now,
        Duration::MAX => Deadline::Never,
        t => Deadline::after(Some(t)),
    }
}
