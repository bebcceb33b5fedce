//! Sending: writing records into the ring, waiting for room, and noticing that
//! nobody reads any more.

use crate::error::{Error, Result};
use crate::shm::endpoint::{Breakable, Endpoint, Tx};
use crate::shm::ring::{Grant, Producer};
use crate::shm::wakeup::{self, Waiter, Woken};
use crate::shm::wire::Kind;

impl Endpoint {
    /// Wakes the peer's reader, which announced that it sleeps.
    pub(crate) fn ring_data(&self) -> Result<()> {
        self.bells().data.ring()
    }

    /// Sends `buf` as one message: one record, or fragments of a quarter ring each when
    /// it is longer than a record can be.
    pub(crate) fn send_message(&self, tx: &Tx, buf: &[u8]) -> Result<()> {
        self.check_reader(tx)?;
        tx.guard(tx.producer.resync())?;
        let max = tx.producer.ring().max_record_payload();
        if buf.len() <= max {
            return self.write_record(tx, Kind::Whole, 0, buf.len(), |p, g| p.fill(g, 0, buf));
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
            self.write_record(tx, kind, aux, len, |p, g| p.fill(g, 0, chunk))?;
            at += len;
        }
        Ok(())
    }

    /// Checks, as cheaply as the situation allows, that someone still holds the reading
    /// end (see [`crate::shm::liveness`]).
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
        if self.peer_gone()? {
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
        fill: impl FnOnce(&Producer, &Grant),
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
                    self.ring_data()?;
                }
                return Ok(());
            }
            self.wait_for_room(tx, len)?;
        }
    }

    fn wait_for_room(&self, tx: &Tx, len: usize) -> Result<()> {
        let bells = self.bells();
        let waiter = Waiter {
            flag: tx.producer.sleeping_flag(),
            bell: &bells.space,
            other: &bells.data,
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
        )?;
        // The wait may have drained our data doorbell: keep a watched `fileno` exact.
        self.settle_watch()?;
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
