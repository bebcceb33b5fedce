//! A put and a get: this process's side of the ring (a thread's turn on a mutex), the
//! process's turn (`lock.rs`), the ring's producer or consumer resynchronized with
//! whatever the last holder published, and the wake-up of the other side (`wake.rs`).

use crate::buffers::Scratch;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::queue::control::Control;
use crate::queue::lock;
use crate::queue::members::Member;
use crate::queue::wake::{wait_for, wake};
use crate::queue::Queue;
use crate::shm::fork_epoch;
use crate::shm::ring::{Consumer, Producer, Record};
use crate::shm::wire::Kind;
use std::sync::atomic::{
    AtomicU32, AtomicU64, Ordering::Relaxed, Ordering::Release, Ordering::SeqCst,
};
use std::sync::{Arc, Mutex, MutexGuard};

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

/// A thread's turn on this process's side of the queue. A thread that panicked holding
/// it left nothing half done that the next holder does not resynchronize.
pub(crate) fn lock_local<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts messages moved by the side whose turn we hold, up to and including the one
/// numbered `seq` (see `control::TurnWords`).
fn count(moved: &AtomicU64, seq: u64) {
    moved.store(seq.wrapping_add(1), Release);
}

impl Queue {
    /// The member a side keeps, checked against the fork epoch (an atomic load): the
    /// shared one is fetched only the first time, and again in a forked child.
    fn side_member<R>(&self, side: &mut Side<R>) -> Result<Arc<Member>> {
        match &side.member {
            Some(m) if m.epoch == fork_epoch::current() => Ok(m.clone()),
            _ => {
                // An inherited one is the parent's: dropping it leaves its descriptor
                // alone (see `Member`'s `Drop`).
                side.member = None;
                let m = self.member()?;
                side.member = Some(m.clone());
                Ok(m)
            }
        }
    }

    /// Puts `msg` from this process's producer side, which the caller holds.
    pub(crate) fn put_from(
        &self,
        side: &mut Side<Producer>,
        msg: &[u8],
        deadline: Deadline,
    ) -> Result<()> {
        self.open()?;
        let me = self.side_member(side)?;
        let producer = &side.ring;
        let max = producer.ring().max_record_payload();
        if msg.len() > max {
            return Err(Error::MessageTooLong {
                len: msg.len(),
                max,
            });
        }
        let ctl = self.control();
        let turn = Turn::take(&ctl.producers.lock, &me, ctl, deadline)?;
        producer.resync().map_err(Error::Corrupt)?;
        let grant = loop {
            if self.has_item_room() {
                if let Some(g) = producer.reserve(msg.len(), 0).map_err(Error::Corrupt)? {
                    break g;
                }
            }
            let room = || {
                let bytes = producer.has_room(msg.len(), 0).map_err(Error::Corrupt)?;
                Ok(bytes && self.has_item_room())
            };
            wait_for(&ctl.space_seq, &ctl.space_waiters, room, deadline)?;
        };
        producer.fill(&grant, 0, msg);
        let seq = ctl.producers.moved.load(Relaxed);
        producer
            .commit(grant, Kind::Whole, msg.len(), seq)
            .map_err(Error::Corrupt)?;
        count(&ctl.producers.moved, seq);
        // After the publish: a producer that dies before this leaves one task fewer to
        // wait for, never one that can never be done.
        ctl.unfinished.fetch_add(1, SeqCst);
        drop(turn);
        wake(&ctl.data_seq, &ctl.data_waiters);
        Ok(())
    }

    /// Gets the next message on this process's consumer side, which the caller holds:
    /// `take` copies the record out (with [`Consumer::append`]) before it is released.
    pub(crate) fn get_with<T>(
        &self,
        side: &mut Side<Consumer>,
        deadline: Deadline,
        take: impl FnOnce(&Consumer, &Record) -> T,
    ) -> Result<T> {
        self.open()?;
        let me = self.side_member(side)?;
        let consumer = &side.ring;
        let ctl = self.control();
        let turn = Turn::take(&ctl.consumers.lock, &me, ctl, deadline)?;
        consumer.resync().map_err(Error::Corrupt)?;
        let got = loop {
            match consumer.peek().map_err(Error::Corrupt)? {
                Some(rec) if rec.kind == Kind::Whole => {
                    let got = take(consumer, &rec);
                    count(&ctl.consumers.moved, rec.aux);
                    consumer.release(&rec).map_err(Error::Corrupt)?;
                    break got;
                }
                // Puts write whole records only: anything else is a participant's
                // garbage, skipped.
                Some(rec) => {
                    consumer.release(&rec).map_err(Error::Corrupt)?;
                }
                None => {
                    let data = || consumer.has_data().map_err(Error::Corrupt);
                    wait_for(&ctl.data_seq, &ctl.data_waiters, data, deadline)?;
                }
            }
        };
        drop(turn);
        wake(&ctl.space_seq, &ctl.space_waiters);
        Ok(got)
    }
}
