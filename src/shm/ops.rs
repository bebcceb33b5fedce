//! What the transport contract ([`crate::transport`]) asks of a shared-memory end that
//! `receive` and `send` do not already give in one call: a receive into a caller's
//! buffer (with `BufferTooShort`), `poll`, the next message's length, and what an event
//! loop that drives the end needs.

use crate::buffers::{within, Sink, SliceSink};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::shm::endpoint::{Breakable, Endpoint};
use crate::shm::receive::Read;
use crate::shm::wakeup::Woken;
use crate::shm::wire::Kind;
use std::time::Duration;

impl Endpoint {
    /// Receives the next message into `out`, refusing one longer than `max`, by
    /// `deadline` (computed on first use: a message found at once never reads the clock).
    #[inline]
    pub(crate) fn receive_into<S: Sink>(
        &self,
        out: &mut S,
        max: usize,
        mut deadline: impl FnMut() -> Deadline,
    ) -> Result<()> {
        let rx = self.receiving()?;
        if self.receive_whole(rx, out, max, &mut deadline)? {
            return Ok(());
        }
        self.receive(rx, out, max, deadline())
    }

    /// Receives the next message into `buf`, returning its length; one that does not fit
    /// is consumed and handed over whole in [`Error::BufferTooShort`] (unless it is over
    /// `max`, the size limit, when it stays).
    pub(crate) fn receive_into_slice(
        &self,
        buf: &mut [u8],
        max: usize,
        mut deadline: impl FnMut() -> Deadline,
    ) -> Result<usize> {
        let rx = self.receiving()?;
        let room = buf.len();
        let mut sink = SliceSink::new(buf);
        if self.receive_whole(rx, &mut sink, room, &mut deadline)? {
            return Ok(sink.len());
        }
        self.receive_loop(rx, deadline(), |len, next, budget| {
            if len > buf.len() {
                within(len, max)?;
                let mut whole = Vec::new();
                if self.read_message(rx, next, &mut whole, budget)? == Read::Done {
                    return Err(Error::BufferTooShort(whole));
                }
                return Ok(None);
            }
            let mut sink = SliceSink::new(&mut buf[..len]);
            Ok((self.read_message(rx, next, &mut sink, budget)? == Read::Done).then_some(len))
        })
    }

    /// Whether a message (or EOF) is waiting, waiting up to `timeout` (`None`: as long as
    /// it takes) for one. Consumes nothing but messages the writer cancelled.
    pub(crate) fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        // The clock is read only by a poll that may wait (a zero timeout never does).
        let deadline = match timeout {
            Some(Duration::ZERO) => Deadline::Now,
            t => Deadline::after(t),
        };
        let rx = self.receiving()?;
        rx.guard(rx.consumer.resync())?;
        let ready = loop {
            if let Some(rec) = rx.guard(rx.consumer.peek())? {
                // The common case at once; anything else may start a message the writer
                // cancelled, which is nothing to receive.
                if rec.kind == Kind::Whole && !rx.has_partial() {
                    break true;
                }
                self.skip_cancelled(rx)?;
                if rx.guard(rx.consumer.has_data())? {
                    break true;
                }
            }
            if deadline == Deadline::Now {
                // A look that does not wait: memory only, but for a rate-limited
                // question to the kernel about the peer (see `shm::liveness`). No
                // sleeping flag, no fence that would interrupt the other process.
                break self.peer_gone_lately()?;
            }
            match self.wait_for_data(rx, deadline)? {
                Woken::Ready(_) => continue,
                Woken::PeerGone(_) => break true,
                Woken::TimedOut => break false,
            }
        };
        self.settle_watch_fully()?;
        Ok(ready)
    }

    /// Waits by `deadline` for the next message and returns its length without consuming
    /// it, and whether all of it is in the ring (a whole record).
    pub(crate) fn next_len(&self, deadline: Deadline) -> Result<(usize, bool)> {
        let rx = self.receiving()?;
        let budget = crate::shm::receive::Budget::begin(rx, deadline)?;
        let (len, next) = self.next_message(rx, &budget)?;
        let whole =
            matches!(next, crate::shm::receive::Next::Fresh(rec) if rec.kind == Kind::Whole);
        Ok((len, whole))
    }

    /// Whether a receive would find something to take (a record, or a message half
    /// taken earlier) or an error to report: memory only.
    #[cfg(feature = "tokio")]
    pub(crate) fn data_ready(&self) -> bool {
        let Some(rx) = self.rx.as_ref() else {
            return true; // the receive reports the error
        };
        rx.has_partial() || rx.consumer.has_data().unwrap_or(true)
    }

    /// Duplicates of the doorbells, for an event loop that will wait on them and from
    /// now on drain them alone (see `async_driven`).
    #[cfg(feature = "tokio")]
    pub(crate) fn event_sources(&self) -> Result<crate::transport::EventSources> {
        self.whole()?;
        let bells = self.bells();
        let sources = crate::transport::EventSources::Doorbells {
            data: bells.data.fd().try_clone_to_owned()?,
            space: bells.space.fd().try_clone_to_owned()?,
        };
        self.async_driven.set(true);
        Ok(sources)
    }

    /// For an event loop that waits on our doorbells itself (an `AsyncConnection`):
    /// raises the sleeping flag of the reading side (`data`) or of the sending side, and
    /// orders it before the caller's next look at the ring. Returns `false` if the
    /// writer may still miss the flag (see [`Consumer::announce`]). An end without that
    /// side does nothing.
    ///
    /// [`Consumer::announce`]: crate::shm::ring::Consumer::announce
    #[cfg(feature = "tokio")]
    pub(crate) fn announce(&self, data: bool) -> bool {
        match (data, &self.rx, &self.tx) {
            (true, Some(rx), _) => rx.consumer.announce(true),
            (false, _, Some(tx)) => {
                tx.producer.announce();
                true
            }
            _ => true,
        }
    }

    /// Takes down the flag that [`announce`](Endpoint::announce) raised.
    #[cfg(feature = "tokio")]
    pub(crate) fn lower(&self, data: bool) {
        let flag = match (data, &self.rx, &self.tx) {
            (true, Some(rx), _) => rx.consumer.sleeping_flag(),
            (false, _, Some(tx)) => tx.producer.sleeping_flag(),
            _ => return,
        };
        flag.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// Drains the data doorbell (`data`) or the space doorbell, for an event loop that saw
    /// it readable.
    #[cfg(feature = "tokio")]
    pub(crate) fn drain_doorbell(&self, data: bool) -> Result<crate::shm::doorbell::Drained> {
        let bells = self.bells();
        if data {
            bells.data.drain()
        } else {
            bells.space.drain()
        }
    }
}
