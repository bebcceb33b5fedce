//! What one end of a pipe holds in one process: the shared region, its two doorbells
//! (which also tell it when the other end is gone), and the producer and/or consumer
//! state of the rings it uses. Dropping an `Endpoint` is what closes an end.

use crate::error::{Error, Result};
use crate::shm::doorbell::Doorbell;
use crate::shm::layout::rings_of_end;
use crate::shm::liveness;
use crate::shm::receive::Partial;
use crate::shm::region::{InRegion, Region};
use crate::shm::ring::{Broken, Consumer, Producer, RingRef};
use crate::shm::wakeup::{self, Waiter, Woken};
use crate::violation::Breakage;
use rustix::event::epoll;
use std::cell::{Cell, OnceCell, RefCell};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
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
    /// A message is lent out in place by `recv_archived_in_place`; until its guard drops, the
    /// next record is not ours to look at. Set through [`Rx::set_lent`].
    lent: Cell<bool>,
    /// A message half received when its receive's deadline passed (see
    /// [`Partial`]). Changed through [`Rx::keep_partial`] and [`Rx::take_partial`].
    partial: RefCell<Option<Partial>>,
    /// Whether the one-pass receive may run: the direction is not broken, and no message
    /// is lent out or half received. One test on the hot path instead of three
    /// (DESIGN.md, "Per-message cost"), kept by the setters of the three and by
    /// [`Breakable::break_with`]. (A watched `fileno` does not stop it: the one-pass
    /// receive settles it, as every receive does.)
    fast: Cell<bool>,
    /// The last receive had to wait for its message (see `Endpoint::receive_whole`).
    pub waited: Cell<bool>,
    /// The reader caught up with a streaming writer and keeps its distance from it,
    /// until the writer pauses (see `Endpoint::receive_whole`).
    pub chasing: Cell<bool>,
    /// How many times this reader looked at `head` while keeping its distance.
    #[cfg(test)]
    pub distance_looks: Cell<u64>,
    /// Why the direction broke, once it has (see [`Breakable`]); boxed, so that every
    /// connection does not carry room for a violation it will most likely never have.
    broken: Breakage,
}

impl Rx {
    fn new(consumer: Consumer) -> Rx {
        Rx {
            consumer,
            lent: Cell::new(false),
            partial: RefCell::new(None),
            fast: Cell::new(true),
            waited: Cell::new(true),
            chasing: Cell::new(false),
            #[cfg(test)]
            distance_looks: Cell::new(0),
            broken: Breakage::default(),
        }
    }

    /// Whether the one-pass receive may run (see [`Rx::fast`](Rx#structfield.fast)).
    #[inline(always)]
    pub(crate) fn fast(&self) -> bool {
        self.fast.get()
    }

    /// Works out [`fast`](Rx::fast) again after one of what it sums up changed.
    fn review_fast(&self) {
        self.fast
            .set(!self.broken.is_broken() && !self.lent.get() && self.partial.borrow().is_none());
    }

    /// Whether a message is lent out in place.
    pub(crate) fn lent(&self) -> bool {
        self.lent.get()
    }

    /// Records that a message is lent out in place, or no longer.
    pub(crate) fn set_lent(&self, lent: bool) {
        self.lent.set(lent);
        self.review_fast();
    }

    /// Whether a message is half received.
    pub(crate) fn has_partial(&self) -> bool {
        self.partial.borrow().is_some()
    }

    /// The message half received, if any: its total length.
    pub(crate) fn partial_total(&self) -> Option<usize> {
        self.partial.borrow().as_ref().map(|p| p.asm.total)
    }

    /// Keeps a message half received for the next receive.
    pub(crate) fn keep_partial(&self, partial: Partial) {
        *self.partial.borrow_mut() = Some(partial);
        self.review_fast();
    }

    /// Takes the message half received, to go on with it.
    pub(crate) fn take_partial(&self) -> Option<Partial> {
        let partial = self.partial.take();
        self.review_fast();
        partial
    }

    /// Whether a receive may start: the ring is sound and no message is lent out
    /// (`recv_archived_in_place`).
    #[inline]
    pub(crate) fn ready_to_receive(&self) -> Result<()> {
        self.usable()?;
        if self.lent() {
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
    /// The reading end's `detached` counter (see [`crate::shm::liveness`]).
    pub reader_detached: InRegion<AtomicU64>,
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
    /// Why the direction broke, once it has (see [`Breakable`]); boxed, so that every
    /// connection does not carry room for a violation it will most likely never have.
    broken: Breakage,
}

/// Shared by `Rx` and `Tx`: a direction whose ring broke the protocol stays broken
/// (see [`Breakage`]).
pub(crate) trait Breakable {
    fn breakage(&self) -> &Breakage;

    #[inline]
    fn usable(&self) -> Result<()> {
        self.breakage().check()
    }

    /// Called when the direction breaks: a half that keeps a fast-path flag clears it.
    fn on_break(&self) {}

    #[cold]
    #[inline(never)]
    fn break_with(&self, why: Broken) -> Error {
        let e = self.breakage().record(why);
        self.on_break();
        e
    }

    fn guard<T>(&self, r: std::result::Result<T, Broken>) -> Result<T> {
        r.map_err(|why| self.break_with(why))
    }
}

impl Breakable for Rx {
    fn breakage(&self) -> &Breakage {
        &self.broken
    }

    fn on_break(&self) {
        self.review_fast();
    }
}

impl Breakable for Tx {
    fn breakage(&self) -> &Breakage {
        &self.broken
    }
}

impl Tx {
    /// The reading end's `detached` counter now (see [`crate::shm::liveness`]).
    #[inline(always)]
    pub(crate) fn reader_detached_now(&self) -> u64 {
        // Relaxed: a hint to go and ask the kernel, which is the authority.
        self.reader_detached.get().load(Relaxed)
    }

    /// Whether the one-pass sends may go ahead: the reader not known gone, no end
    /// detached since we last looked, and nobody else wrote on this end since we did.
    #[inline(always)]
    pub(crate) fn nothing_new(&self) -> bool {
        !self.peer_gone.get()
            && self.reader_detached_now() == self.seen_detached.get()
            && self.producer.in_sync()
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
    /// Driven by an `AsyncConnection`, which alone drains the doorbells (so that no task
    /// eats another's wake-up); liveness checks then only look.
    pub async_driven: Cell<bool>,
    /// When a reader that does not wait last asked the kernel about the peer.
    lookout: liveness::Lookout,
    /// This is one half of a [`split`](Endpoint::split) end: the other half, in another
    /// thread of this process, sleeps on our other doorbell, so we drain only our own
    /// (the data doorbell if we receive, the space doorbell if we send).
    split: bool,
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
    /// Whether the space doorbell may hold a stale wake-up: our sending side raised its
    /// flag since we last drained it (see [`Endpoint::settle_watch`]).
    space_stale: Cell<bool>,
}

impl Endpoint {
    pub(crate) fn new(
        shared: Arc<Shared>,
        end: usize,
        data: Doorbell,
        space: Doorbell,
    ) -> Endpoint {
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
        let rx = rx_ring.map(|k| Rx::new(Consumer::new(ring_ref(k))));
        let tx = tx_ring.map(|k| {
            let producer = Producer::new(ring_ref(k));
            let written = producer.written();
            let reader_detached = &shared.region.header().detached[1 - end];
            Tx {
                producer,
                seen_detached: Cell::new(reader_detached.load(SeqCst)),
                // SAFETY: a counter in the region's header; the endpoint that holds the
                // `Tx` holds the `Arc<Shared>` that keeps the region mapped.
                reader_detached: unsafe { InRegion::new(reader_detached) },
                peer_gone: Cell::new(false),
                reader_asked_at: Cell::new(written),
                #[cfg(test)]
                kernel_asked: Cell::new(0),
                broken: Breakage::default(),
            }
        });
        Endpoint {
            shared,
            end,
            bells: Some(Arc::new(Bells { data, space })),
            rx,
            tx,
            watch: OnceCell::new(),
            async_driven: Cell::new(false),
            lookout: liveness::Lookout::default(),
            split: false,
        }
    }

    /// Splits a duplex end into its receiving half and its sending half, two endpoints
    /// that share the region and the doorbells and can be used from two threads at once.
    /// The end closes (for the peer) when both halves are dropped.
    pub(crate) fn split(mut self) -> (Endpoint, Endpoint) {
        let half = |rx: Option<Rx>, tx: Option<Tx>| Endpoint {
            shared: self.shared.clone(),
            end: self.end,
            bells: self.bells.clone(),
            rx,
            tx,
            watch: OnceCell::new(),
            async_driven: Cell::new(false),
            lookout: liveness::Lookout::default(),
            split: true,
        };
        let receiving = half(self.rx.take(), None);
        let sending = half(None, self.tx.take());
        // A `fileno` handed out stays valid: it watches for messages, and from now on
        // the space doorbell only for a hang-up (its bytes are the sending half's).
        if let Some(w) = self.watch.take() {
            let _ = epoll::modify(
                &w.epoll,
                receiving.bells().space.fd(),
                epoll::EventData::new_u64(1),
                epoll::EventFlags::RDHUP,
            );
            let _ = receiving.watch.set(w);
        }
        // Dropping what is left bumps our `detached` counter, which only sends the peer
        // to ask the kernel, who says that the end is still open.
        (receiving, sending)
    }

    /// Refuses what only a whole end can do: be handed to another process (which would
    /// get both directions of it), or be driven by an `AsyncConnection` (which drains
    /// both doorbells).
    pub(crate) fn whole(&self) -> Result<()> {
        if self.split {
            return Err(Error::Invalid(
                "a half of a split connection cannot be passed to another process or made \
                 async; do that with the whole end, before splitting it"
                    .into(),
            ));
        }
        Ok(())
    }

    /// `other`, our doorbell that is not the one a wait sleeps on, unless the other half
    /// of a split end sleeps on it (see [`wakeup::Waiter::other`]).
    pub(crate) fn other_bell<'a>(&self, other: &'a Doorbell) -> Option<&'a Doorbell> {
        (!self.split).then_some(other)
    }

    /// This end's receiving half, ready for a receive.
    ///
    /// # Errors
    /// [`Error::NotReadable`] on the writing end of a one-way pipe; the direction's
    /// breakage; a message still lent out.
    #[inline]
    pub(crate) fn receiving(&self) -> Result<&Rx> {
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
    pub(crate) fn sending(&self) -> Result<&Tx> {
        let Some(tx) = &self.tx else {
            return Err(Error::NotWritable);
        };
        tx.usable()?;
        Ok(tx)
    }

    pub(crate) fn bells(&self) -> &Arc<Bells> {
        self.bells.as_ref().expect("doorbells present until drop")
    }

    /// Waits for `ready` (a look at the ring) on one side of this end, as `waiter`
    /// describes it. A protocol violation seen by `ready` ends the wait and is returned
    /// as the inner `Err`, for the caller to break its direction with.
    pub(crate) fn wait_one(
        &self,
        waiter: Waiter<'_>,
        mut ready: impl FnMut() -> std::result::Result<bool, Broken>,
        deadline: crate::deadline::Deadline,
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
    pub(crate) fn peer_gone(&self) -> Result<bool> {
        let bells = self.bells();
        if self.async_driven.get() {
            return liveness::hung_up_now([&bells.data, &bells.space]);
        }
        let ours = [
            !self.split || self.rx.is_some(),
            !self.split || self.tx.is_some(),
        ];
        let look = liveness::peer_gone([&bells.data, &bells.space], ours)?;
        if look.drained_data {
            self.settle_watch()?;
        }
        Ok(look.gone)
    }

    /// [`peer_gone`](Endpoint::peer_gone) for a look that does not wait and found the
    /// ring empty: asks the kernel only when due (see [`liveness::LOOK_GAP`]), and in
    /// between says what the peer's `detached` counter shows (nothing gone).
    pub(crate) fn peer_gone_lately(&self) -> Result<bool> {
        if self.lookout.gone() {
            return Ok(true);
        }
        let detached = self.shared.region.header().detached[1 - self.end].load(SeqCst);
        if !self.lookout.due(detached, Instant::now()) {
            return Ok(false);
        }
        let gone = self.peer_gone()?;
        self.lookout.answered(gone);
        Ok(gone)
    }

    /// The descriptor for `fileno`: an epoll set that is readable when a message waits
    /// (our data doorbell, or `pending`) or when the other end is gone (a hang-up on
    /// either doorbell). Stray bytes or descriptors on the space doorbell make it
    /// readable too, so that a receive drains them (they could hide a hang-up).
    pub(crate) fn watch_fd(&self) -> Result<RawFd> {
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
            // The space doorbell of a split end is its sending half's to drain: bytes on
            // it say nothing about messages.
            let interest = if i == 1 && self.split {
                epoll::EventFlags::RDHUP
            } else {
                interest
            };
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
            space_stale: Cell::new(true),
        });
        self.settle_watch()?;
        Ok(raw)
    }

    /// Keeps a watched `fileno` readable exactly while the ring holds a record (or the
    /// peer is gone, which the kernel shows by itself).
    ///
    /// Invariant between calls: ring non-empty ⇒ `pending` rung or the data doorbell
    /// readable; ring empty ⇒ both drained and the sleeping flag raised, so that the
    /// producer's next publish rings the data doorbell. Called after every receive and
    /// wait, and whenever our data doorbell was drained.
    ///
    /// On a stream whose reader keeps up, every receive empties the ring, and this runs
    /// for each message: the writer rings (its publish found our flag), and here one read
    /// drains that and [`Consumer::announce`](crate::shm::ring::Consumer::announce)
    /// raises the flag again, asking the writer to fence its publishes so that no
    /// `membarrier` is needed. The space doorbell is drained only when our sending side
    /// may have left a wake-up there, or by `poll`, which drains junk too.
    #[inline]
    pub(crate) fn settle_watch(&self) -> Result<()> {
        // Nothing to do unless a `fileno` was handed out: the common case, inline.
        if self.watch.get().is_none() {
            return Ok(());
        }
        self.settle_watch_now()
    }

    /// [`settle_watch`](Endpoint::settle_watch) that drains the space doorbell too:
    /// for `poll`, which a program may call in a loop around a `select` on `fileno`.
    pub(crate) fn settle_watch_fully(&self) -> Result<()> {
        if let Some(w) = self.watch.get() {
            w.space_stale.set(true);
            self.settle_watch_now()?;
        }
        Ok(())
    }

    /// Our sending side is about to raise its sleeping flag: a wake-up may come to the
    /// space doorbell after it stopped waiting, which a watched `fileno` must drain.
    pub(crate) fn note_wait_for_room(&self) {
        if let Some(w) = self.watch.get() {
            w.space_stale.set(true);
        }
    }

    #[cold]
    #[inline(never)]
    fn settle_watch_now(&self) -> Result<()> {
        let (Some(w), Some(rx)) = (self.watch.get(), &self.rx) else {
            return Ok(());
        };
        // An `AsyncConnection` drains the doorbells itself (see `async_driven`).
        if self.async_driven.get() {
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
        // Stale wake-ups for a writer that has since found room, or junk; unless the
        // sending half of a split end waits on that doorbell.
        if !self.split && w.space_stale.replace(false) {
            bells.space.drain()?;
        }
        if w.pending_set.get() {
            w.pending.1.drain()?;
            w.pending_set.set(false);
        }
        // Should the kernel refuse our barrier, a writer publishing without a fence in
        // another process may miss the flag, and the `fileno` become readable only with
        // its next message: DESIGN.md, "The wake-up protocol", names this limit.
        rx.consumer.announce(true);
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
