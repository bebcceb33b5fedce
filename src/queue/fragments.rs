//! Messages longer than a record can be (half the ring): put in fragments of a quarter
//! ring each, as a pipe sends them, and what happens when a putter or a getter of one
//! dies part-way.
//!
//! The bytes of such a message in the ring are a stream: its length (8 bytes,
//! little-endian), then the message. The `First` record carries the put's number in its
//! `aux` (as a `Whole` record does), the others their offset in the stream; a `Cancel`
//! record takes back the put whose number is its `aux`.
//!
//! - **The putter** holds the producers' turn for the whole message, and keeps room for a
//!   `Cancel` free while it is under way. It marks the put in the control page
//!   (`open_put`) before its first fragment and clears the mark after its last. A putter
//!   whose deadline passes part-way takes the message back with a `Cancel`. One that died
//!   part-way (or whose put a panic unwound) leaves the mark set: the next producer to
//!   take the turn writes the `Cancel` for it before anything else.
//! - **The getter** holds the consumers' turn for the whole message, and releases each
//!   fragment as it copies it out (the putter needs the room: the message may be longer
//!   than the ring). Its deadline bounds the wait for a message to begin, as
//!   `multiprocessing.Queue`'s does; once begun, the message is read to its end, or
//!   until its put is taken back or its putter is gone (looked at every
//!   [`LOOK_AGAIN`]). A getter killed part-way takes the message with it: the next getter
//!   skips the fragments left. Such a message is delivered at most once; a message in
//!   one record is delivered to another getter when its getter dies (see `sides.rs`).
//! - **The counts** (`control::TurnWords`) move at the `First` record, on both sides, so
//!   that whichever side dies part-way, they agree with each other.

use crate::buffers::{grow_for, Parts, Sink, SliceSink};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::queue::lock::LOOK_AGAIN;
use crate::queue::members::{Member, NOBODY};
use crate::queue::sides::count;
use crate::queue::wake::{wait_for, wake};
use crate::queue::Queue;
use crate::shm::layout::DEFAULT_MAX_MESSAGE;
use crate::shm::ring::{Consumer, Producer, Record, CANCEL_ROOM};
use crate::shm::spin::Looks;
use crate::shm::wire::{Kind, Reassembly};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};

/// The longest message a queue takes (and a getter accepts): a pipe's default limit.
pub(crate) const MAX_MESSAGE: usize = DEFAULT_MAX_MESSAGE;

/// The length that starts a fragmented message's stream.
const PREFIX: usize = 8;

/// A fragmented message being got: whose put it is, and how far it has come.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Partial {
    /// The put's number (the `First` record's `aux`).
    pub seq: u64,
    /// The stream (the prefix and the message) as far as it has come, checked as the
    /// pipe checks a long message's fragments.
    stream: Reassembly,
}

impl Partial {
    /// Starts on the message whose `First` record is `rec`, copying what it carries into
    /// `out` (empty); `None` for a record that does not start a stream as a put writes it
    /// (a participant's garbage: the caller skips it).
    pub(crate) fn start<S: Sink>(
        consumer: &Consumer,
        rec: &Record,
        out: &mut S,
    ) -> Option<Partial> {
        if rec.len < PREFIX {
            return None;
        }
        let mut prefix = [0u8; PREFIX];
        consumer.append_part(rec, 0, PREFIX, &mut SliceSink::new(&mut prefix));
        // Checked on our copy: the announced length is at most what a queue takes, and
        // more than this record carries.
        let total = usize::try_from(u64::from_le_bytes(prefix)).ok()?;
        if total > MAX_MESSAGE || rec.len - PREFIX >= total {
            return None;
        }
        grow_for(out, total, rec.len - PREFIX);
        consumer.append_part(rec, PREFIX, rec.len - PREFIX, out);
        Some(Partial {
            seq: rec.aux,
            stream: Reassembly {
                total: PREFIX + total,
                received: rec.len,
            },
        })
    }

    /// Takes the `Middle` or `Last` record `rec` into `out`: `Some(true)` when it
    /// completes the message, `None` when it is not the fragment that comes next (the
    /// caller drops the message).
    pub(crate) fn next<S: Sink>(
        &mut self,
        consumer: &Consumer,
        rec: &Record,
        out: &mut S,
    ) -> Option<bool> {
        // On a copy: the record is taken only if it is the fragment that comes next.
        let mut stream = self.stream;
        let last = stream.next(&rec.checked()).ok()?;
        grow_for(out, stream.total - PREFIX, rec.len);
        consumer.append(rec, out);
        self.stream = stream;
        Some(last)
    }
}

impl Queue {
    /// Whether all of `msg`, in fragments, fits in the ring now (and the item limit
    /// leaves room for it), for a non-blocking put.
    pub(crate) fn has_room_for_fragments(
        &self,
        producer: &Producer,
        msg: Parts<'_>,
    ) -> Result<bool> {
        let frag = producer.ring().fragment_payload();
        let bytes = producer
            .has_room_for_message(PREFIX + msg.len(), frag)
            .map_err(Error::Corrupt)?;
        Ok(bytes && self.has_item_room())
    }

    /// Puts `msg` as put number `seq` in fragments; the caller holds the producers' turn.
    /// Whole or not at all: a deadline that passes part-way takes it back.
    pub(crate) fn put_fragments(
        &self,
        producer: &Producer,
        msg: Parts<'_>,
        seq: u64,
        deadline: Deadline,
        abandoned: Option<&AtomicBool>,
    ) -> Result<()> {
        let ctl = self.control();
        let prefix = (msg.len() as u64).to_le_bytes();
        let mut pieces = vec![&prefix[..]];
        pieces.extend_from_slice(msg.pieces());
        let stream = Parts::new(&pieces);
        let frag = producer.ring().fragment_payload();
        ctl.open_put.store(seq + 1, Release);
        let mut at = 0;
        while at < stream.len() {
            let len = frag.min(stream.len() - at);
            let (kind, aux) = match at {
                0 => (Kind::First, seq),
                _ if at + len == stream.len() => (Kind::Last, at as u64),
                _ => (Kind::Middle, at as u64),
            };
            let grant = match self.reserve(producer, len, CANCEL_ROOM, at == 0, deadline, abandoned)
            {
                Ok(g) => g,
                Err(e) => {
                    if at > 0 {
                        self.cancel_put(producer, seq, Deadline::Never)?;
                    }
                    ctl.open_put.store(0, Release);
                    return Err(e);
                }
            };
            stream.copy_range(at, len, |off, bytes| producer.fill(&grant, off, bytes));
            producer
                .commit(grant, kind, len, aux)
                .map_err(Error::Corrupt)?;
            if at == 0 {
                count(&ctl.producers.moved, seq);
            }
            wake(&ctl.data_seq, &ctl.data_waiters);
            at += len;
        }
        ctl.open_put.store(0, Release);
        Ok(())
    }

    /// Takes back the fragmented put that the last holder of the producers' turn left
    /// under way, if any; the caller holds the turn now.
    pub(crate) fn cancel_abandoned_put(
        &self,
        producer: &Producer,
        deadline: Deadline,
    ) -> Result<()> {
        let ctl = self.control();
        let open = ctl.open_put.load(Acquire);
        if open != 0 {
            self.cancel_put(producer, open.wrapping_sub(1), deadline)?;
            ctl.open_put.store(0, Release);
        }
        Ok(())
    }

    /// Writes the `Cancel` record of put number `seq`. The room was kept free while the
    /// put was under way; only a participant that broke that makes this wait.
    fn cancel_put(&self, producer: &Producer, seq: u64, deadline: Deadline) -> Result<()> {
        let ctl = self.control();
        let grant = self.reserve(producer, 0, 0, false, deadline, None)?;
        producer
            .commit(grant, Kind::Cancel, 0, seq)
            .map_err(Error::Corrupt)?;
        wake(&ctl.data_seq, &ctl.data_waiters);
        Ok(())
    }

    /// Waits for the next fragment of put number `seq`: `true` once there is a record
    /// to read, `false` when its putter is gone and none will come.
    pub(crate) fn wait_for_fragment(
        &self,
        consumer: &Consumer,
        me: &Member,
        seq: u64,
    ) -> Result<bool> {
        let ctl = self.control();
        let data = || consumer.has_data().map_err(Error::Corrupt);
        loop {
            let nap = Deadline::after(Some(LOOK_AGAIN));
            match wait_for(&ctl.data_seq, &ctl.data_waiters, data, nap, Looks::Eager) {
                Ok(()) => return Ok(true),
                // Neither the time nor a signal ends the wait for the rest of a message
                // begun: only its putter can.
                Err(Error::Timeout) => {}
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if self.putter_gone(consumer, me, seq)? {
                return Ok(false);
            }
        }
    }

    /// Whether the putter of put number `seq` is gone with its message unfinished.
    fn putter_gone(&self, consumer: &Consumer, me: &Member, seq: u64) -> Result<bool> {
        let ctl = self.control();
        // The turn first: a putter that finished published its last record before it
        // released the turn, so a release seen here makes that record visible below.
        let held = ctl.producers.lock.load(Acquire);
        if ctl.open_put.load(Acquire) != seq.wrapping_add(1)
            || consumer.has_data().map_err(Error::Corrupt)?
        {
            // Finished or taken back: its records are there to read.
            return Ok(false);
        }
        if held == NOBODY {
            // Released with the put under way: a panic unwound it.
            return Ok(true);
        }
        Ok(!me.may_be_alive(ctl, held)?)
    }
}
