//! What the transport contract ([`crate::transport`]) asks of a shared-memory end that
//! `receive` and `send` do not already give in one call: a receive into a caller's
//! buffer (with `BufferTooShort`), and `poll`.

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
    /// the size limit, when it stays).
    pub(crate) fn receive_into_slice(
        &self,
        buf: &mut [u8],
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
                within(len, rx.max_message.get())?;
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
}
