//! What one end of a pipe holds in one process: the shared region, its two doorbells
//! (which also tell it when the other end is gone), and the producer and/or consumer
//! state of the rings it uses. Dropping an `Endpoint` is what closes an end.

use crate::buffers::Scratch;
use crate::error::{Error, Result};
use crate::shm::doorbell::Doorbell;
use crate::shm::fence;
use crate::shm::layout::{rings_of_end, DEFAULT_MAX_MESSAGE};
use crate::shm::liveness;
use crate::shm::receive::Partial;
use crate::shm::region::Region;
use crate::shm::ring::{Broken, Consumer, Producer, RingRef};
use crate::shm::wakeup::{self, Waiter, Woken};
use crate::shm::wire;
use rustix::event::epoll;
use std::cell::{Cell, OnceCell, RefCell};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Instant;

/// What both ends of a pipe share within one process: unmapped and closed when the last
/// end in the process is dropped.
pub(crate) struct Shared {
    pub region: Region,
}

/// One end's halves of the two socketpairs (see [`crate::shm::doorbell`]).
pub(crate) struct Bells {
    /// Our half of the data pair: we sleep on it for messages; ringing it wakes the
    /// peer's reader.
    pub data: Doorbell,
    /// Our half of the space pair: we sleep on it for room; ringing it wakes the peer's
    /// writer.
    pub space: Doorbell,
}

/// The receiving half of an end.
pub(crate) struct Rx {
    pub consumer: Consumer,
    /// The longest message a receive that allocates will take (see
    /// [`Builder::max_message_size`](crate::Builder::max_message_size)).
    pub max_message: Cell<usize>,
    /// A message is lent out in place by `recv_archived_in_place`; until its guard drops, the
    /// next record is not ours to look at.
    pub lent: Cell<bool>,
    /// Where typed messages too long to travel whole are reassembled, kept between them.
    pub scratch: Scratch,
    /// A message half received when its receive's deadline passed (see
    /// [`Partial`]).
    pub partial: RefCell<Option<Partial>>,
    /// The last receive had to wait for its message (see `Endpoint::receive_whole`).
    pub waited: Cell<bool>,
    /// The reader caught up with a streaming writer and keeps its distance from it,
    /// until the writer pauses (see `Endpoint::receive_whole`).
    pub chasing: Cell<bool>,
    /// How many times this reader looked at `head` while keeping its distance.
    #[cfg(test)]
    pub distance_looks: Cell<u64>,
    broken: RefCell<Option<String>>,
}

impl Rx {
    /// Whether a receive may start: the ring is sound and no message is lent out
    /// (`recv_archived_in_place`).
    #[inline]
    pub fn ready_to_receive(&self) -> Result<()> {
        self.usable()?;
        if self.lent.get() {
            return Err(still_lent());
        }
        Ok(())
    }
}

#[cold]
#[inline(never)]
fn still_lent() -> Error {
    Error::Invalid(
        "a message from recv_archived_in_place is still borrowed; drop it before receiving \
         again"
            .into(),
    )
}

/// The sending half of an end.
pub(crate) struct Tx {
    pub producer: Producer,
    /// The reading end's `detached` counter when we last looked.
    pub seen_detached: Cell<u64>,
    /// The kernel said every copy of the reading end is gone.
    pub peer_gone: Cell<bool>,
    /// How far we had written (our `head`) when we last asked the kernel whether the
    /// reader is alive (see `Endpoint::ask_about_reader_now_and_then`).
    pub reader_asked_at: Cell<u64>,
    /// How often we asked the kernel about the reader (for tests of that rate).
    #[cfg(test)]
    pub kernel_asked: Cell<u64>,
    /// Where typed messages too long for the ring's free space are serialized.
    pub scratch: Scratch,
    broken: RefCell<Option<String>>,
}

/// Shared by `Rx` and `Tx`: a direction whose ring broke the protocol stays broken.
pub(crate) trait Breakable {
    fn broken(&self) -> &RefCell<Option<String>>;

    #[inline]
    fn usable(&self) -> Result<()> {
        if self.broken().borrow().is_none() {
            return Ok(());
        }
        Err(self.breakage())
    }

    /// The error a broken direction reports from now on (out of line: see `usable`).
    #[cold]
    #[inline(never)]
    fn breakage(&self) -> Error {
        Error::Corrupt(self.broken().borrow().clone().unwrap_or_default())
    }

    #[cold]
    #[inline(never)]
    fn break_with(&self, why: Broken) -> Error {
        *self.broken().borrow_mut() = Some(why.clone());
        Error::Corrupt(why)
    }

    fn guard<T>(&self, r: std::result::Result<T, Broken>) -> Result<T> {
        r.map_err(|why| self.break_with(why))
    }
}

impl Breakable for Rx {
    fn broken(&self) -> &RefCell<Option<String>> {
        &self.broken
    }
}

impl Breakable for Tx {
    fn broken(&self) -> &RefCell<Option<String>> {
        &self.broken
    }
}

impl Tx {
    /// Payload bytes per fragment of a long message: records of a quarter ring, so that
    /// they tile the ring without padding and the reader copies one out while the writer
    /// fills the next.
    pub fn fragment_size(&self) -> usize {
        (self.producer.ring().max_record_payload() + wire::HEADER) / 2 - wire::HEADER
    }
}

pub(crate) struct Endpoint {
    pub shared: Arc<Shared>,
    /// 0 or 1: which end this is.
    pub end: usize,
    /// This end's doorbells; `None` only during drop. In an `Arc` so that
    /// `pass_to_child` can tell, in the child, whether the end still existed at `fork`.
    bells: Option<Arc<Bells>>,
    pub rx: Option<Rx>,
    pub tx: Option<Tx>,
    /// What `fileno` hands out, created on first use.
    watch: OnceCell<Watch>,
    /// Whether `fileno` was called: the receive path then keeps its readiness exact.
    pub watched: Cell<bool>,
    /// Driven by an `AsyncConnection`, which alone drains the doorbells (so that no task
    /// eats another's wake-up); liveness checks then only look.
    pub async_driven: Cell<bool>,
}

/// The descriptor `fileno` returns, and what keeps it readable exactly when a receive
/// would not wait.
struct Watch {
    /// An epoll set of our two doorbells and `pending`'s receiving half.
    epoll: OwnedFd,
    /// A socketpair of our own (no other process holds it): we ring it ourselves when the
    /// ring holds a record that the peer did not ring for.
    pending: (Doorbell, Doorbell),
    /// Whether `pending` is rung now.
    pending_set: Cell<bool>,
}

impl Endpoint {
    pub fn new(shared: Arc<Shared>, end: usize, data: Doorbell, space: Doorbell) -> Endpoint {
        let layout = shared.region.layout();
        let (rx_ring, tx_ring) = rings_of_end(layout.rings, end);
        let ring_ref = |k: usize| {
            // SAFETY: the control block and data area belong to the region, which the
            // `Arc<Shared>` held by this endpoint keeps mapped for as long as the producer
            // or consumer built on this `RingRef` exists; the capacity is the layout's.
            unsafe {
                RingRef::new(
                    shared.region.control(k),
                    shared.region.data(k),
                    layout.capacity,
                )
            }
        };
        let rx = rx_ring.map(|k| Rx {
            consumer: Consumer::new(ring_ref(k)),
            max_message: Cell::new(DEFAULT_MAX_MESSAGE),
            lent: Cell::new(false),
            scratch: Scratch::default(),
            partial: RefCell::new(None),
            waited: Cell::new(true),
            chasing: Cell::new(false),
            #[cfg(test)]
            distance_looks: Cell::new(0),
            broken: RefCell::new(None),
        });
        let tx = tx_ring.map(|k| {
            let producer = Producer::new(ring_ref(k));
            let written = producer.written();
            Tx {
                producer,
                seen_detached: Cell::new(shared.region.header().detached[1 - end].load(SeqCst)),
                peer_gone: Cell::new(false),
                reader_asked_at: Cell::new(written),
                #[cfg(test)]
                kernel_asked: Cell::new(0),
                scratch: Scratch::default(),
                broken: RefCell::new(None),
            }
        });
        Endpoint {
            shared,
            end,
            bells: Some(Arc::new(Bells { data, space })),
            rx,
            tx,
            watch: OnceCell::new(),
            watched: Cell::new(false),
            async_driven: Cell::new(false),
        }
    }

    /// This end's receiving half, ready for a receive.
    ///
    /// # Errors
    /// [`Error::NotReadable`] on the writing end of a one-way pipe; the direction's
    /// breakage; a message still lent out.
    #[inline]
    pub fn receiving(&self) -> Result<&Rx> {
        // Not `ok_or`, which would build and drop an `Error` on every call.
        let Some(rx) = &self.rx else {
            return Err(Error::NotReadable);
        };
        rx.ready_to_receive()?;
        Ok(rx)
    }

    /// This end's sending half, ready for a send.
    ///
    /// # Errors
    /// [`Error::NotWritable`] on the reading end of a one-way pipe; the direction's
    /// breakage.
    #[inline]
    pub fn sending(&self) -> Result<&Tx> {
        let Some(tx) = &self.tx else {
            return Err(Error::NotWritable);
        };
        tx.usable()?;
        Ok(tx)
    }

    pub fn bells(&self) -> &Arc<Bells> {
        self.bells.as_ref().expect("doorbells present until drop")
    }

    /// Waits for `ready` (a look at the ring) on one side of this end, as `waiter`
    /// describes it. A protocol violation seen by `ready` ends the wait and is returned
    /// as the inner `Err`, for the caller to break its direction with.
    pub fn wait_one(
        &self,
        waiter: Waiter<'_>,
        mut ready: impl FnMut() -> std::result::Result<bool, Broken>,
        deadline: Option<Instant>,
    ) -> Result<std::result::Result<Woken, Broken>> {
        let mut broken = None;
        let woken = wakeup::wait(
            std::slice::from_ref(&waiter),
            |_| match ready() {
                Ok(b) => Ok(b),
                Err(e) => {
                    broken = Some(e);
                    Ok(true)
                }
            },
            deadline,
        )?;
        Ok(broken.map_or(Ok(woken), Err))
    }

    /// Asks the kernel whether every copy of the other end is gone (see
    /// [`crate::shm::liveness`]), keeping a watched `fileno` exact.
    pub fn peer_gone(&self) -> Result<bool> {
        let bells = self.bells();
        if self.async_driven.get() {
            return liveness::hung_up_now([&bells.data, &bells.space]);
        }
        let look = liveness::peer_gone([&bells.data, &bells.space])?;
        if look.drained_data {
            self.settle_watch()?;
        }
        Ok(look.gone)
    }

    /// The descriptor for `fileno`: an epoll set that is readable when a message waits
    /// (our data doorbell, or `pending`) or when the other end is gone (a hang-up on
    /// either doorbell). Stray bytes or descriptors on the space doorbell make it
    /// readable too, so that a receive drains them (they could hide a hang-up).
    pub fn watch_fd(&self) -> Result<RawFd> {
        if let Some(w) = self.watch.get() {
            return Ok(w.epoll.as_raw_fd());
        }
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let bells = self.bells();
        let interest = if self.rx.is_some() {
            epoll::EventFlags::IN | epoll::EventFlags::RDHUP
        } else {
            // A write-only end is readable only at EOF.
            epoll::EventFlags::RDHUP
        };
        for (i, bell) in [&bells.data, &bells.space].into_iter().enumerate() {
            epoll::add(
                &ep,
                bell.fd(),
                epoll::EventData::new_u64(i as u64),
                interest,
            )?;
        }
        let pending = Doorbell::pair()?;
        epoll::add(
            &ep,
            pending.1.fd(),
            epoll::EventData::new_u64(2),
            epoll::EventFlags::IN,
        )?;
        let raw = ep.as_raw_fd();
        let _ = self.watch.set(Watch {
            epoll: ep,
            pending,
            pending_set: Cell::new(false),
        });
        if self.rx.is_some() {
            self.watched.set(true);
            self.settle_watch()?;
        }
        Ok(raw)
    }

    /// Keeps a watched `fileno` readable exactly while the ring holds a record (or the
    /// peer is gone, which the kernel shows by itself).
    ///
    /// Invariant between calls: ring non-empty ⇒ `pending` rung or the data doorbell
    /// readable; ring empty ⇒ both drained and the sleeping flag raised, so that the
    /// producer's next publish rings the data doorbell. Called after every receive and
    /// wait, and whenever our data doorbell was drained.
    #[inline]
    pub fn settle_watch(&self) -> Result<()> {
        // Nothing to do unless a `fileno` was handed out: the common case, inline.
        if self.watch.get().is_none() {
            return Ok(());
        }
        self.settle_watch_now()
    }

    #[cold]
    #[inline(never)]
    fn settle_watch_now(&self) -> Result<()> {
        let (Some(w), Some(rx)) = (self.watch.get(), &self.rx) else {
            return Ok(());
        };
        // An `AsyncConnection` drains the doorbells itself (see `async_driven`).
        if !self.watched.get() || self.async_driven.get() {
            return Ok(());
        }
        let set_pending = || -> Result<()> {
            if !w.pending_set.get() {
                w.pending.0.ring()?;
                w.pending_set.set(true);
            }
            Ok(())
        };
        if rx.guard(rx.consumer.has_data())? {
            return set_pending();
        }
        let bells = self.bells();
        bells.data.drain()?;
        // Stale wake-ups for a writer that has since found room, or junk.
        bells.space.drain()?;
        if w.pending_set.get() {
            w.pending.1.drain()?;
            w.pending_set.set(false);
        }
        rx.consumer.sleeping_flag().store(1, SeqCst);
        // The reader's half of the asymmetric fence (see `crate::shm::fence`). Should the
        // kernel refuse it, a writer publishing without a fence in another process may
        // miss the flag, and the `fileno` become readable only with its next message:
        // DESIGN.md, "Per-message cost", names this limit.
        fence::before_recheck();
        // A record published before the flag went up rang nobody: ring for it ourselves.
        if rx.guard(rx.consumer.has_data())? {
            set_pending()?;
        }
        Ok(())
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Close our doorbells first: if they were the last copies, the kernel now tells
        // the other end. Then bump our `detached` counter, which tells the other side's
        // writer to go and ask the kernel (see `crate::shm::liveness`).
        drop(self.watch.take());
        drop(self.bells.take());
        self.shared.region.header().detached[self.end].fetch_add(1, SeqCst);
    }
}
