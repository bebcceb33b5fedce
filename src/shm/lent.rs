//! Receiving a message in place (`recv_archived_in_place`): the record stays in the ring,
//! claimed, while the caller looks at it, and is released when the [`Lent`] guard drops.

use crate::buffers::{within, Scratch};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::shm::endpoint::{Breakable, Endpoint, Rx};
use crate::shm::receive::{Next, Read};
use crate::shm::ring::Record;
use crate::shm::wire::Kind;
use crate::Violation;
use rkyv::util::AlignedVec;

/// A record held in place in the ring; released (and the writer woken if it waits for
/// room) when dropped.
pub(crate) struct Lent<'c> {
    ep: &'c Endpoint,
    rx: &'c Rx,
    rec: Record,
}

impl Lent<'_> {
    /// The record's payload, in place.
    ///
    /// # Safety
    /// The peer must not write the record's bytes while the slice is alive: the contract
    /// of `recv_archived_in_place`. This process does not (the record is claimed and the
    /// receiving half lent until the guard drops).
    pub(crate) unsafe fn bytes(&self) -> &[u8] {
        // SAFETY: the record stays unreleased while `self` lives; the caller answers for
        // the peer.
        unsafe { self.rx.consumer.payload(&self.rec) }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.rx.set_lent(false);
        // A failure here (the ring broke, or the doorbell could not be rung) is kept by
        // the connection and reported by its next call.
        if let Err(Error::Io(e)) = self.ep.release(self.rx, &self.rec) {
            self.rx
                .break_with(Violation::WakeUpFailed { error: e.kind() });
        }
        let _ = self.ep.after_receive();
    }
}

/// What [`Endpoint::receive_in_place`] got.
pub(crate) enum InPlace<'c> {
    /// A whole record, held in place and validated.
    Lent(Lent<'c>),
    /// A message that came in fragments, reassembled into a copy taken from the scratch
    /// the caller gave (give it back there), and validated.
    Copy(AlignedVec),
}

impl Endpoint {
    /// Receives the next message (at most `max` bytes long) by `deadline` for reading in
    /// place: a whole record is
    /// claimed and lent out as it lies in the ring, anything else is reassembled into a
    /// copy taken from `scratch`. `validate` checks the bytes either way; a message that
    /// fails it is consumed and its error returned.
    pub(crate) fn receive_in_place(
        &self,
        max: usize,
        deadline: Deadline,
        scratch: &Scratch,
        validate: impl Fn(&[u8]) -> Result<()>,
    ) -> Result<InPlace<'_>> {
        let rx = self.receiving()?;
        let got = self.receive_loop(rx, deadline, |len, next, budget| {
            within(len, max)?;
            let next = match next {
                Next::Fresh(first) if first.kind == Kind::Whole => {
                    return Ok(Some(Err(first)));
                }
                next => next,
            };
            let mut copy = scratch.take();
            match self.read_message(rx, next, &mut copy, budget) {
                Ok(Read::Done) => Ok(Some(Ok(copy))),
                Ok(Read::Cancelled) => {
                    scratch.give_back(copy);
                    Ok(None)
                }
                Err(e) => {
                    scratch.give_back(copy);
                    Err(e)
                }
            }
        })?;
        let first = match got {
            Ok(copy) => {
                if let Err(e) = validate(&copy) {
                    scratch.give_back(copy);
                    return Err(e);
                }
                return Ok(InPlace::Copy(copy));
            }
            Err(first) => first,
        };
        // Held in place for as long as the caller likes: claim it, so that not even a
        // second process misusing this end can release it under us.
        rx.guard(rx.consumer.claim())?;
        rx.set_lent(true);
        let lent = Lent {
            ep: self,
            rx,
            rec: first,
        };
        // SAFETY: `lent` keeps the record unreleased and claimed; the peer leaves it alone
        // (the contract of `recv_archived_in_place`, which alone comes here).
        if let Err(e) = validate(unsafe { lent.bytes() }) {
            // Dropping the guard releases the record: the message is consumed.
            drop(lent);
            return Err(e);
        }
        Ok(InPlace::Lent(lent))
    }
}
