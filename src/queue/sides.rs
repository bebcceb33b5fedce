//! A put and a get: this process's side of the ring (a thread's turn on a mutex), the
//! process's turn (`lock.rs`), the ring's producer or consumer resynchronized with
//! whatever the last holder published, and the wake-up of the other side (`wake.rs`).

use crate::buffers::{Parts, Scratch, Sink};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::queue::control::Control;
use crate::queue::fragments::{Partial, MAX_MESSAGE};
use crate::queue::lock;
use crate::queue::members::Member;
use crate::queue::wake::{wait_for, wake};
use crate::queue::Queue;
use crate::shm::fork_epoch;
use crate::shm::ring::{Consumer, Grant, Producer};
use crate::shm::spin::{self, Looks, REFILL_FRACTION};
use crate::shm::wire::Kind;
use std::sync::atomic::{
    AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::Release, Ordering::SeqCst,
};
use std::sync::Arc;

/// One side of the queue in this process: the ring's producer or consumer, the member
/// it acts as, and the buffer typed messages are serialized into or received into.
pub(crate) struct Side<R> {
    pub ring: R,
    member: Option<Arc<Member>>,
    pub scratch: Scratch,
}

impl<R> Side<R> {
    pub(crate) fn new(ring: R) -> Side<R> {
        Side {
            ring,
            member: None,
            scratch: Scratch::default(),
        }
    }
}

/// A process-wide turn (one of the two locks), released on drop.
pub(crate) struct Turn<'a> {
    word: &'a AtomicU32,
}

impl<'a> Turn<'a> {
    /// Takes the turn `word` by `deadline`. Taken from a holder that died, the side's
    /// indices are resynchronized by the caller, as after any holder.
    pub(crate) fn take(
        word: &'a AtomicU32,
        me: &Member,
        ctl: &Control,
        deadline: Deadline,
    ) -> Result<Turn<'a>> {
        lock::lock(word, me, ctl, deadline)?;
        Ok(Turn { word })
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        lock::unlock(self.word);
    }
}

/// Counts messages moved by the side whose turn we hold, up to and including the one
/// numbered `seq` (see `control::TurnWords`).
pub(crate) fn count(moved: &AtomicU64, seq: u64) {
    moved.store(seq.wrapping_add(1), Release);
}

impl Queue {
    /// The member a side keeps, checked against the fork epoch (an atomic load): the
    /// shared one is fetched only the first time, and again in a forked child. Borrowed
    /// from the side, not cloned: an `Arc` clone and drop per call are two locked
    /// instructions on the path of every put and get.
    fn side_member<'s, R>(&self, side: &'s mut Side<R>) -> Result<(&'s R, &'s Member)> {
        let current = side
            .member
            .as_ref()
            .is_some_and(|m| m.epoch == fork_epoch::current());
        if !current {
            // An inherited one is the parent's: dropping it leaves its descriptor
            // alone (see `Member`'s `Drop`).
            side.member = None;
        }
        let member = match side.member.take() {
            Some(m) => side.member.insert(m),
            None => side.member.insert(self.member()?),
        };
        Ok((&side.ring, member))
    }

    /// Puts `msg` from this process's producer side, which the caller holds: one record
    /// when it fits in one, else in fragments (`crate::queue::fragments`).
    pub(crate) fn put_from(
        &self,
        side: &mut Side<Producer>,
        msg: Parts<'_>,
        deadline: Deadline,
        abandoned: Option<&AtomicBool>,
    ) -> Result<()> {
        self.open()?;
        if msg.len() > MAX_MESSAGE {
            return Err(Error::MessageTooLong {
                len: msg.len(),
                max: MAX_MESSAGE,
            });
        }
        let (producer, me) = self.side_member(side)?;
        let whole = msg.len() <= producer.ring().max_record_payload();
        if !whole && deadline == Deadline::Now && !self.has_room_for_fragments(producer, msg)? {
            // All of it or nothing: a non-blocking put never starts what it cannot finish.
            return Err(Error::WouldBlock);
        }
        let ctl = self.control();
        let turn = Turn::take(&ctl.producers.lock, me, ctl, deadline)?;
        producer.resync().map_err(Error::Corrupt)?;
        self.cancel_abandoned_put(producer, deadline)?;
        let seq = ctl.producers.moved.load(Relaxed);
        if whole {
            let grant = self.reserve(producer, msg.len(), 0, true, deadline, abandoned)?;
            if let [one] = msg.pieces() {
                producer.fill(&grant, 0, one);
            } else {
                msg.copy_range(0, msg.len(), |at, bytes| producer.fill(&grant, at, bytes));
            }
            producer
                .commit(grant, Kind::Whole, msg.len(), seq)
                .map_err(Error::Corrupt)?;
            count(&ctl.producers.moved, seq);
        } else {
            self.put_fragments(producer, msg, seq, deadline, abandoned)?;
        }
        // After the publish: a producer that dies before this leaves one task fewer to
        // wait for, never one that can never be done.
        ctl.unfinished.fetch_add(1, SeqCst);
        drop(turn);
        wake(&ctl.data_seq, &ctl.data_waiters);
        Ok(())
    }

    /// Room for a record of `len` payload bytes leaving `keep` free (and, if `item`, room
    /// under the item limit for one more message), waiting for it by `deadline`, or
    /// [`Error::WouldBlock`] once `abandoned` is set (looked at between naps: an async
    /// put whose future was dropped).
    // Inlined: returned through memory, the grant's fields went through the stack at
    // odd offsets, and the loads that read them back stalled on the stores.
    #[inline(always)]
    pub(crate) fn reserve(
        &self,
        producer: &Producer,
        len: usize,
        keep: usize,
        item: bool,
        deadline: Deadline,
        abandoned: Option<&AtomicBool>,
    ) -> Result<Grant> {
        let ctl = self.control();
        let gone = || abandoned.is_some_and(|a| a.load(Relaxed));
        loop {
            if gone() {
                return Err(Error::WouldBlock);
            }
            if !item || self.has_item_room() {
                // The cached `tail` first, in registers (the general call returns its
                // grant through memory), then `tail` reloaded.
                if let Some(g) = producer.reserve_cached(len, keep) {
                    return Ok(g);
                }
                if let Some(g) = producer.reserve(len, keep).map_err(Error::Corrupt)? {
                    return Ok(g);
                }
            }
            let room = |want: usize| {
                // A `close` in this process ends the wait (it bumps the word).
                self.open()?;
                let bytes = producer.has_room(len, want).map_err(Error::Corrupt)?;
                Ok(bytes && (!item || self.has_item_room()) || gone())
            };
            if deadline != Deadline::Now {
                // The ring is full: as the pipe's writer, spin (sparsely) until an eighth
                // of it is free, then write a burst (see `spin::REFILL_FRACTION`).
                let chunk = keep.max(producer.ring().capacity() / REFILL_FRACTION);
                spin::spin(&mut |_| room(chunk), 1, deadline, Looks::Sparse)?;
            }
            let room = || room(keep);
            wait_for(
                &ctl.space_seq,
                &ctl.space_waiters,
                room,
                deadline,
                Looks::Sparse,
            )?;
        }
    }

    /// Gets the next message on this process's consumer side, which the caller holds,
    /// into `out` (emptied first). `deadline` bounds the wait for a message to begin: a
    /// message in fragments, once begun, is read to its end, or until its put is taken
    /// back or its putter is gone (`crate::queue::fragments`).
    pub(crate) fn get_into<S: Sink>(
        &self,
        side: &mut Side<Consumer>,
        deadline: Deadline,
        out: &mut S,
    ) -> Result<()> {
        self.open()?;
        let (consumer, me) = self.side_member(side)?;
        let ctl = self.control();
        let turn = Turn::take(&ctl.consumers.lock, me, ctl, deadline)?;
        consumer.resync().map_err(Error::Corrupt)?;
        out.clear();
        let mut partial: Option<Partial> = None;
        let whole_max = consumer.ring().max_record_payload();
        loop {
            // The usual record first, checked inline (`peek` returns it through memory),
            // then the general look, which reports what is wrong.
            let next = match consumer.peek_whole(whole_max) {
                Some(rec) => Some(rec),
                None => consumer.peek().map_err(Error::Corrupt)?,
            };
            let Some(rec) = next else {
                match partial {
                    None => {
                        let data = || {
                            // A `close` in this process ends the wait (it bumps the word).
                            self.open()?;
                            consumer.has_data().map_err(Error::Corrupt)
                        };
                        wait_for(
                            &ctl.data_seq,
                            &ctl.data_waiters,
                            data,
                            deadline,
                            Looks::Eager,
                        )?;
                    }
                    Some(p) => {
                        if !self.wait_for_fragment(consumer, me, p.seq)? {
                            partial = None;
                            out.clear();
                        }
                    }
                }
                continue;
            };
            let done = match rec.kind {
                Kind::Whole => {
                    out.clear();
                    out.reserve_exact(rec.len);
                    consumer.append(&rec, out);
                    // Before the release: a consumer that dies between the two leaves
                    // the record to the next, which counts it the same.
                    count(&ctl.consumers.moved, rec.aux);
                    true
                }
                Kind::First => {
                    out.clear();
                    partial = Partial::start(consumer, &rec, out);
                    if partial.is_some() {
                        count(&ctl.consumers.moved, rec.aux);
                    }
                    false
                }
                Kind::Middle | Kind::Last => {
                    match partial.as_mut().map(|p| p.next(consumer, &rec, out)) {
                        Some(Some(last)) => last,
                        // The rest of a message whose getter died, out of sequence, or garbage.
                        _ => {
                            partial = None;
                            out.clear();
                            false
                        }
                    }
                }
                Kind::Cancel => {
                    if partial.is_some_and(|p| p.seq == rec.aux) {
                        partial = None;
                        out.clear();
                    }
                    false
                }
                // `peek` skips padding.
                Kind::Padding => false,
            };
            consumer.release(&rec).map_err(Error::Corrupt)?;
            if done {
                break;
            }
            // A record that did not end the get (a fragment, a `Cancel`, one skipped):
            // a putter may be waiting for its room, in the middle of a message.
            wake(&ctl.space_seq, &ctl.space_waiters);
        }
        drop(turn);
        wake(&ctl.space_seq, &ctl.space_waiters);
        Ok(())
    }
}
