//! Sending: writing records into the ring, waiting for room, and noticing that
//! nobody reads any more.

use crate::buffers::Parts;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::shm::endpoint::{Breakable, Endpoint, Tx};
use crate::shm::ring::{Grant, GrantWriter, Producer, CANCEL_ROOM};
use crate::shm::spin::{self, Looks, REFILL_FRACTION};
use crate::shm::wakeup::{Side, Waiter, Woken};
use crate::shm::wire::Kind;

/// How many payload bytes [`Endpoint::send_many_now`] stages before it publishes them.
const STAGE_MAX: usize = 16 << 10;

impl Endpoint {
    /// Wakes the peer's reader, which announced that it sleeps. A system call, out of
    /// line so that the one-pass send carries no frame for it.
    #[cold]
    #[inline(never)]
    pub(crate) fn ring_data(&self) -> Result<()> {
        self.bells().data.ring()
    }

    /// Sends one message that `fill` writes straight into the ring's free space,
    /// returning its length, or `None` having published nothing if it did not fit: the
    /// first try of a typed send's general path. `Ok(false)`: it did not fit, and
    /// nothing was sent.
    pub(crate) fn send_filled(
        &self,
        tx: &Tx,
        fill: impl FnOnce(&mut GrantWriter) -> Option<usize>,
    ) -> Result<bool> {
        self.check_reader(tx)?;
        tx.guard(tx.producer.resync())?;
        let Some(grant) = tx.guard(tx.producer.reserve_available())? else {
            return Ok(false);
        };
        self.ask_about_reader_now_and_then(tx)?;
        let Some(len) = fill(&mut tx.producer.writer(&grant)) else {
            return Ok(false);
        };
        if tx.guard(tx.producer.commit(grant, Kind::Whole, len, 0))? {
            self.ring_data()?;
        }
        Ok(true)
    }

    /// Sends `buf` as one message, within `deadline`: one record, or fragments of a
    /// quarter ring each when it is longer than a record can be. Whole or nothing: a
    /// non-blocking send sends only a message that fits in the free space now, and a
    /// send whose deadline passes after its first fragment takes the message back with
    /// a `CANCEL` record (for which room is kept free while a message is in progress).
    pub(crate) fn send_message(&self, tx: &Tx, buf: Parts<'_>, deadline: Deadline) -> Result<()> {
        self.check_reader(tx)?;
        tx.guard(tx.producer.resync())?;
        let max = tx.producer.ring().max_record_payload();
        let frag = if buf.len() <= max {
            max
        } else {
            tx.producer.ring().fragment_payload()
        };
        if deadline == Deadline::Now
            && !tx.guard(tx.producer.has_room_for_message(buf.len(), frag))?
        {
            // A reader that is gone makes it BrokenPipe, not WouldBlock.
            self.ask_kernel_about_reader(tx)?;
            return Err(Error::WouldBlock);
        }
        if buf.len() <= max {
            let fill = |p: &Producer, g: &Grant| {
                buf.copy_range(0, buf.len(), |off, bytes| p.fill(g, off, bytes))
            };
            return self.write_record(tx, Kind::Whole, 0, buf.len(), 0, fill, deadline);
        }
        let mut at = 0;
        while at < buf.len() {
            match self.write_fragment(tx, buf, at, frag, deadline) {
                Ok(len) => at += len,
                Err(e) if at > 0 && e.gave_up() => {
                    self.cancel(tx, buf.len())?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The common send in one pass, before [`send_message`](Endpoint::send_message): a
    /// message that fits in one record, room for it by the cached `tail`, nothing new
    /// about the reader, and nobody else wrote on this end since we last did. Returns
    /// `false`, having done nothing, in every other case, and the general path takes
    /// the message (and reports whatever is wrong).
    #[inline(always)]
    pub(crate) fn send_whole_now(&self, tx: &Tx, buf: Parts<'_>) -> Result<bool> {
        let p = &tx.producer;
        if !tx.nothing_new() || buf.len() > p.ring().max_record_payload() {
            return Ok(false);
        }
        let Some(grant) = p.reserve_cached(buf.len(), 0) else {
            return Ok(false);
        };
        if let [one] = buf.pieces() {
            // The usual message, in one piece: its copy inline (through `copy_range` the
            // copy became a call of its own).
            p.fill(&grant, 0, one);
        } else {
            buf.copy_range(0, buf.len(), |off, bytes| p.fill(&grant, off, bytes));
        }
        match p.commit(grant, Kind::Whole, buf.len(), 0) {
            Ok(false) => Ok(true),
            Ok(true) => self.ring_data().map(|()| true),
            Err(why) => Err(tx.break_with(why)),
        }
    }

    /// The one-pass send of [`send_whole_now`](Endpoint::send_whole_now) for a message
    /// written in place by `fill` (a typed message, serialized into the ring), given room
    /// by the cached `tail` for `guess` payload bytes. `fill` returns whether the
    /// message fit; `false`, having published nothing, when it did not or when anything
    /// is out of the ordinary.
    #[inline(always)]
    pub(crate) fn send_filled_now(
        &self,
        tx: &Tx,
        guess: usize,
        fill: impl FnOnce(&mut GrantWriter) -> bool,
    ) -> Result<bool> {
        let p = &tx.producer;
        if !tx.nothing_new() || guess > p.ring().max_record_payload() {
            return Ok(false);
        }
        let Some(grant) = p.reserve_cached(guess, 0) else {
            return Ok(false);
        };
        let mut writer = p.writer(&grant);
        if !fill(&mut writer) {
            return Ok(false);
        }
        match p.commit(grant, Kind::Whole, writer.len(), 0) {
            Ok(false) => Ok(true),
            Ok(true) => self.ring_data().map(|()| true),
            Err(why) => Err(tx.break_with(why)),
        }
    }

    /// The one-pass send of [`send_whole_now`](Endpoint::send_whole_now) for a run of
    /// messages: from the start of `msgs`, every message that fits whole in the ring now
    /// (by the cached index) is written, and all of them are published with one store
    /// of `head` (and one look at the reader's sleeping flag). Returns how many went;
    /// 0 when the first does not fit or anything is out of the ordinary, for the
    /// general path.
    pub(crate) fn send_many_now(&self, tx: &Tx, msgs: &[&[u8]]) -> Result<usize> {
        let p = &tx.producer;
        if !tx.nothing_new() {
            return Ok(0);
        }
        let published = p.written();
        let mut sent = 0;
        let mut staged = 0;
        for msg in msgs {
            // A run stops after STAGE_MAX bytes, so that the reader can copy out the
            // first messages while the writer copies in the next.
            if msg.len() > p.ring().max_record_payload() || staged >= STAGE_MAX {
                break;
            }
            staged += msg.len();
            let Some(grant) = p.reserve_cached(msg.len(), 0) else {
                break;
            };
            p.fill(&grant, 0, msg);
            p.stage(grant, Kind::Whole, msg.len(), 0);
            sent += 1;
        }
        if sent > 0 {
            match p.publish_staged(published) {
                Ok(false) => {}
                Ok(true) => self.ring_data()?,
                Err(why) => return Err(tx.break_with(why)),
            }
        }
        Ok(sent)
    }

    /// Sends what fits now of `buf`, never waiting, for a sender that waits elsewhere
    /// (the async one). A message that fits in one record goes whole or not at all; a
    /// longer one goes fragment by fragment from `*at` on, `*at` recording the progress
    /// between calls. Returns `Ok(true)` once the message is complete and
    /// [`Error::WouldBlock`] when the ring is too full to go on. A caller that gives up
    /// part-way must [`cancel`](Endpoint::cancel) the message.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn send_some(&self, tx: &Tx, buf: &[u8], at: &mut usize) -> Result<bool> {
        let pieces = [buf];
        let buf = Parts::new(&pieces);
        self.check_reader(tx)?;
        let max = tx.producer.ring().max_record_payload();
        if *at == 0 {
            tx.guard(tx.producer.resync())?;
        }
        if buf.len() <= max {
            let fill = |p: &Producer, g: &Grant| {
                buf.copy_range(0, buf.len(), |off, bytes| p.fill(g, off, bytes))
            };
            self.write_record(tx, Kind::Whole, 0, buf.len(), 0, fill, Deadline::Now)?;
            return Ok(true);
        }
        let frag = tx.producer.ring().fragment_payload();
        while *at < buf.len() {
            *at += self.write_fragment(tx, buf, *at, frag, Deadline::Now)?;
        }
        Ok(true)
    }

    /// Writes the fragment of `buf` that starts at `at` (at most `frag` bytes, keeping
    /// the cancel room), within `deadline`; returns its length.
    fn write_fragment(
        &self,
        tx: &Tx,
        buf: Parts<'_>,
        at: usize,
        frag: usize,
        deadline: Deadline,
    ) -> Result<usize> {
        let len = frag.min(buf.len() - at);
        let (kind, aux) = if at == 0 {
            (Kind::First, buf.len() as u64)
        } else if at + len == buf.len() {
            (Kind::Last, at as u64)
        } else {
            (Kind::Middle, at as u64)
        };
        let fill =
            |p: &Producer, g: &Grant| buf.copy_range(at, len, |off, bytes| p.fill(g, off, bytes));
        self.write_record(tx, kind, aux, len, CANCEL_ROOM, fill, deadline)?;
        Ok(len)
    }

    /// Abandons the fragmented message of `total` bytes in progress: the reader drops
    /// what it reassembled. Never waits: the room was kept free.
    pub(crate) fn cancel(&self, tx: &Tx, total: usize) -> Result<()> {
        let Some(grant) = tx.guard(tx.producer.reserve(0, 0))? else {
            return Err(tx.break_with(crate::Violation::CancelRoomTaken));
        };
        if tx.guard(tx.producer.commit(grant, Kind::Cancel, 0, total as u64))? {
            self.ring_data()?;
        }
        Ok(())
    }

    /// Checks, as cheaply as the situation allows, that someone still holds the reading
    /// end (see [`crate::shm::liveness`]).
    pub(crate) fn check_reader(&self, tx: &Tx) -> Result<()> {
        if tx.peer_gone.get() {
            return Err(Error::BrokenPipe);
        }
        let detached = tx.reader_detached_now();
        if detached != tx.seen_detached.get() {
            tx.seen_detached.set(detached);
            self.ask_kernel_about_reader(tx)?;
        }
        Ok(())
    }

    pub(crate) fn ask_kernel_about_reader(&self, tx: &Tx) -> Result<()> {
        #[cfg(test)]
        tx.kernel_asked.set(tx.kernel_asked.get() + 1);
        if self.peer_gone()? {
            tx.peer_gone.set(true);
            return Err(Error::BrokenPipe);
        }
        Ok(())
    }

    /// Writes one record of `len` payload bytes, leaving `keep` bytes free, `fill`
    /// copying the payload in, waiting for room until `deadline`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_record(
        &self,
        tx: &Tx,
        kind: Kind,
        aux: u64,
        len: usize,
        keep: usize,
        fill: impl FnOnce(&Producer, &Grant),
        deadline: Deadline,
    ) -> Result<()> {
        loop {
            if let Some(grant) = tx.producer.reserve_cached(len, keep) {
                fill(&tx.producer, &grant);
                if tx.guard(tx.producer.commit(grant, kind, len, aux))? {
                    self.ring_data()?;
                }
                return Ok(());
            }
            self.look_for_room(tx, len, keep, deadline)?;
        }
    }

    /// The ring is full as far as our cached copy of the reader's `tail` knows: looks at
    /// the real one, and waits (until `deadline`) until a record of `len` bytes fits,
    /// leaving `keep` bytes free.
    ///
    /// A writer that is ahead of its reader finds the ring full again and again. Taking
    /// each record's worth of room as soon as the reader frees it would put the two
    /// sides in lock step: every record written into the cache line the reader has just
    /// left, `tail` reloaded (its line pulled from the reader's core) for every record,
    /// and the reader's liveness asked of the kernel (a system call) every few records.
    /// So a writer that may wait first spins, briefly, until an eighth of the ring is
    /// free (hysteresis; measured in DESIGN.md, "Per-message cost"), then writes a
    /// burst of records on the cached `tail`. The spin never waits for more than the
    /// record needs once it has gone on for [`spin::SPIN_FOR`]:
    /// the general wait that follows takes whatever room there is.
    fn look_for_room(&self, tx: &Tx, len: usize, keep: usize, deadline: Deadline) -> Result<()> {
        if deadline != Deadline::Now {
            let chunk = keep.max(tx.producer.ring().capacity() / REFILL_FRACTION);
            let mut refilled = |_| tx.guard(tx.producer.has_room(len, chunk));
            spin::spin(&mut refilled, 1, deadline, Looks::Sparse)?;
        }
        if !tx.guard(tx.producer.has_room(len, keep))? {
            if deadline == Deadline::Now {
                self.ask_kernel_about_reader(tx)?;
                return Err(Error::WouldBlock);
            }
            self.wait_for_room(tx, len, keep, deadline)?;
        }
        self.ask_about_reader_now_and_then(tx)
    }

    /// Asks the kernel whether the reader is alive if we have written an eighth of a
    /// ring since we last asked; for a writer that had to look at the reader's `tail`.
    /// So a writer whose reader died learns it within a ring of data, whether the ring
    /// fills up (then the wait reports it) or not, and the system call costs nothing
    /// per message.
    pub(crate) fn ask_about_reader_now_and_then(&self, tx: &Tx) -> Result<()> {
        let written = tx.producer.written();
        let every = (tx.producer.ring().capacity() / REFILL_FRACTION) as u64;
        if written.wrapping_sub(tx.reader_asked_at.get()) >= every {
            tx.reader_asked_at.set(written);
            self.ask_kernel_about_reader(tx)?;
        }
        Ok(())
    }

    fn wait_for_room(&self, tx: &Tx, len: usize, keep: usize, deadline: Deadline) -> Result<()> {
        let bells = self.bells();
        let ready = || tx.producer.has_room(len, keep);
        let waiter = Waiter {
            side: Side::Writer(&tx.producer),
            bell: &bells.space,
            other: self.other_bell(&bells.data),
        };
        self.note_wait_for_room();
        let woken = self.wait_one(waiter, ready, deadline)?;
        // The wait may have drained our data doorbell: keep a watched `fileno` exact.
        self.settle_watch()?;
        match woken.map_err(|e| tx.break_with(e))? {
            Woken::Ready(_) => Ok(()),
            Woken::PeerGone(_) => {
                tx.peer_gone.set(true);
                Err(Error::BrokenPipe)
            }
            Woken::TimedOut => Err(Error::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Builder;

    /// Regression: a writer that is ahead of its reader finds the ring full before almost
    /// every message. It used to ask the kernel whether the reader lives (a `poll(2)`)
    /// each time it looked at the reader's `tail`: a system call every few messages
    /// (seen in a profile of the 64 B stream, a fifth of the writer's time). Now it asks
    /// once per eighth of a ring written.
    #[test]
    fn a_writer_ahead_of_its_reader_asks_the_kernel_once_per_eighth_of_a_ring() {
        const CAPACITY: usize = 4096;
        let (a, b) = Builder::new().capacity(CAPACITY).build().unwrap();
        a.set_nonblocking(true).unwrap();
        let msg = [7u8; 64];
        while a.send_bytes(&msg).is_ok() {}
        a.set_nonblocking(false).unwrap();
        let tx = a.shm_endpoint().sending().unwrap();
        let before = tx.kernel_asked.get();
        // Lock step on a full ring: every send finds room for just its own record.
        const MESSAGES: u64 = 500;
        let mut buf = [0u8; 64];
        for _ in 0..MESSAGES {
            assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 64);
            a.send_bytes(&msg).unwrap();
        }
        let asked = tx.kernel_asked.get() - before;
        let record = crate::shm::wire::record_size(64) as u64;
        let most = MESSAGES * record / (CAPACITY / super::REFILL_FRACTION) as u64 + 1;
        assert!(
            asked <= most,
            "asked the kernel {asked} times for {MESSAGES} messages"
        );
    }
}
