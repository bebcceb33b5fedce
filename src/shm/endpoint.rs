//! What one end of a pipe holds in one process: the shared region and doorbells, its
//! liveness socket, and the producer and/or consumer state of the rings it uses.
//! Dropping an `Endpoint` is what closes an end.

use crate::error::{Error, Result};
use crate::shm::layout::{rings_of_end, DEFAULT_MAX_MESSAGE};
use crate::shm::receive::Scratch;
use crate::shm::region::Region;
use crate::shm::ring::{Broken, Consumer, Producer, RingRef};
use crate::shm::wakeup::Doorbell;
use crate::shm::wire;
use rustix::event::epoll;
use std::cell::{Cell, OnceCell, RefCell};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

/// The doorbells of one ring: `data` wakes its consumer, `space` its producer.
pub(crate) struct RingBells {
    pub data: Doorbell,
    pub space: Doorbell,
}

/// What both ends of a pipe share within one process: unmapped and closed when the last
/// end in the process is dropped.
pub(crate) struct Shared {
    pub region: Region,
    pub bells: Vec<RingBells>,
}

/// The receiving half of an end.
pub(crate) struct Rx {
    pub ring: usize,
    pub consumer: Consumer,
    /// The longest message a receive that allocates will take (see
    /// [`Builder::max_message_size`](crate::Builder::max_message_size)).
    pub max_message: Cell<usize>,
    /// A message is lent out in place by `recv_archived`; until its guard drops, the
    /// next record is not ours to look at.
    pub lent: Cell<bool>,
    /// Where typed messages too long to travel whole are reassembled, kept between them.
    pub scratch: Scratch,
    broken: RefCell<Option<String>>,
}

impl Rx {
    /// Whether a receive may start: the ring is sound and no message is lent out
    /// (`recv_archived_in_place`).
    pub fn ready_to_receive(&self) -> Result<()> {
        self.usable()?;
        if self.lent.get() {
            return Err(Error::Invalid(
                "a message from recv_archived_in_place is still borrowed; drop it before \
                 receiving again"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The sending half of an end.
pub(crate) struct Tx {
    pub ring: usize,
    pub producer: Producer,
    /// The reading end's `detached` counter when we last looked.
    pub seen_detached: Cell<u64>,
    /// The kernel said every copy of the reading end is gone.
    pub peer_gone: Cell<bool>,
    /// Where typed messages too long for the ring's free space are serialized.
    pub scratch: Scratch,
    broken: RefCell<Option<String>>,
}

/// Shared by `Rx` and `Tx`: a direction whose ring broke the protocol stays broken.
pub(crate) trait Breakable {
    fn broken(&self) -> &RefCell<Option<String>>;

    fn usable(&self) -> Result<()> {
        match &*self.broken().borrow() {
            Some(why) => Err(Error::Corrupt(why.clone())),
            None => Ok(()),
        }
    }

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
    /// This end's liveness socket (see [`crate::liveness`]). `None` only during drop.
    liveness: Option<OwnedFd>,
    pub rx: Option<Rx>,
    pub tx: Option<Tx>,
    /// The epoll descriptor handed out by `fileno`, created on first use.
    watch: OnceCell<OwnedFd>,
    /// Whether `fileno` was called: the receive path then keeps its readiness exact.
    pub watched: Cell<bool>,
}

impl Endpoint {
    pub fn new(shared: Arc<Shared>, end: usize, liveness: OwnedFd) -> Endpoint {
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
            ring: k,
            consumer: Consumer::new(ring_ref(k)),
            max_message: Cell::new(DEFAULT_MAX_MESSAGE),
            lent: Cell::new(false),
            scratch: Scratch::default(),
            broken: RefCell::new(None),
        });
        let tx = tx_ring.map(|k| Tx {
            ring: k,
            producer: Producer::new(ring_ref(k)),
            seen_detached: Cell::new(shared.region.header().detached[1 - end].load(SeqCst)),
            peer_gone: Cell::new(false),
            scratch: Scratch::default(),
            broken: RefCell::new(None),
        });
        Endpoint {
            shared,
            end,
            liveness: Some(liveness),
            rx,
            tx,
            watch: OnceCell::new(),
            watched: Cell::new(false),
        }
    }

    pub fn liveness(&self) -> BorrowedFd<'_> {
        self.liveness
            .as_ref()
            .expect("liveness socket present until drop")
            .as_fd()
    }

    /// The descriptor for `fileno`: an epoll set holding the data doorbell of the ring we
    /// read and our liveness socket, so it is readable on a message or on EOF.
    pub fn watch_fd(&self) -> Result<RawFd> {
        if let Some(fd) = self.watch.get() {
            return Ok(fd.as_raw_fd());
        }
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        epoll::add(
            &ep,
            self.liveness(),
            epoll::EventData::new_u64(0),
            epoll::EventFlags::RDHUP,
        )?;
        if let Some(rx) = &self.rx {
            epoll::add(
                &ep,
                self.shared.bells[rx.ring].data.fd(),
                epoll::EventData::new_u64(1),
                epoll::EventFlags::IN,
            )?;
            self.watched.set(true);
            self.settle_watch(rx, true)?;
        }
        let raw = ep.as_raw_fd();
        let _ = self.watch.set(ep);
        Ok(raw)
    }

    /// Keeps a watched doorbell readable exactly while the ring holds a record.
    ///
    /// Invariant between calls: ring non-empty ⇒ doorbell readable; ring empty ⇒
    /// doorbell drained and the sleeping flag raised, so the producer's next publish
    /// rings it. The producer keeps the first half by ringing on the empty → non-empty
    /// transition; this function restores the second half each time a receive empties
    /// the ring. `fresh` is for the first call, when the doorbell's state is unknown.
    pub fn settle_watch(&self, rx: &Rx, fresh: bool) -> Result<()> {
        if !self.watched.get() {
            return Ok(());
        }
        let bell = &self.shared.bells[rx.ring].data;
        if rx.guard(rx.consumer.has_data())? {
            if fresh {
                bell.ring()?;
            }
            return Ok(());
        }
        bell.drain()?;
        rx.consumer.sleeping_flag().store(1, SeqCst);
        // A record published before the flag went up rang nobody: ring for it ourselves.
        if rx.guard(rx.consumer.has_data())? {
            bell.ring()?;
        }
        Ok(())
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Close our liveness socket first: if it was the last copy, the kernel now says
        // so to the other end. Then bump our `detached` counter, which tells the other
        // side's writer to go and ask the kernel (see `crate::liveness`).
        drop(self.liveness.take());
        self.shared.region.header().detached[self.end].fetch_add(1, SeqCst);
    }
}
