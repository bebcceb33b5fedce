//! Receiving: waiting for the next record, and copying a message (whole or in
//! fragments) out of the ring into memory of our own.

use crate::error::{Error, Result};
use crate::shm::endpoint::{Breakable, Endpoint, Rx};
use crate::shm::ring::{Record, Sink};
use crate::shm::wakeup::{self, Waiter, Woken};
use crate::shm::wire::{Kind, Reassembly};
use rkyv::util::AlignedVec;
use std::cell::Cell;
use std::time::Instant;

/// The length of the message that starts with `rec`.
pub(crate) fn message_len(rec: &Record) -> Result<usize> {
    match rec.kind {
        Kind::Whole => Ok(rec.len),
        Kind::First => usize::try_from(rec.aux)
            .map_err(|_| Error::corrupt("message length does not fit in memory")),
        k => Err(Error::corrupt(format!(
            "message starts with a {k:?} fragment"
        ))),
    }
}

/// Makes room in `out` for a fragment of `len` bytes of a `total`-byte message:
/// doubling what has arrived so far (so a long message costs few reallocations), but
/// never past the announced total, and never more than twice what actually came.
fn grow_for<S: Sink>(out: &mut S, total: usize, len: usize) {
    let have = out.len();
    if out.capacity() - have < len {
        let target = (have + len).max(2 * have).min(total.max(have + len));
        out.reserve_exact(target - have);
    }
}

impl Endpoint {
    /// The length of the message starting with `first`, if it is at most `max`;
    /// otherwise [`Error::MessageTooLong`], and the message stays in the pipe.
    pub(crate) fn check_message_len(&self, _rx: &Rx, first: &Record, max: usize) -> Result<usize> {
        let len = message_len(first)?;
        if len > max {
            return Err(Error::MessageTooLong { len, max });
        }
        Ok(len)
    }

    /// Waits for the next record; EOF once the peer is gone and the ring is empty.
    pub(crate) fn next_record(&self, rx: &Rx) -> Result<Record> {
        rx.guard(rx.consumer.resync())?;
        loop {
            if let Some(rec) = rx.guard(rx.consumer.peek())? {
                return Ok(rec);
            }
            match self.wait_for_data(rx, None)? {
                Woken::Ready(_) => continue,
                Woken::PeerGone(_) => {
                    // The peer's last publish happened before its descriptors were
                    // closed, so one more look sees everything it sent.
                    return match rx.guard(rx.consumer.peek())? {
                        Some(rec) => Ok(rec),
                        None => Err(Error::Eof),
                    };
                }
                Woken::TimedOut => unreachable!("no deadline"),
            }
        }
    }

    pub(crate) fn wait_for_data(&self, rx: &Rx, deadline: Option<Instant>) -> Result<Woken> {
        let bells = self.bells();
        let waiter = Waiter {
            flag: rx.consumer.sleeping_flag(),
            bell: &bells.data,
            other: &bells.space,
        };
        let mut err = None;
        let woken = wakeup::wait(
            std::slice::from_ref(&waiter),
            |_| match rx.consumer.has_data() {
                Ok(b) => Ok(b),
                Err(e) => {
                    err = Some(e);
                    Ok(true)
                }
            },
            deadline,
        )?;
        if let Some(e) = err {
            return Err(rx.break_with(e));
        }
        Ok(woken)
    }

    /// Releases `rec` and rings the producer's doorbell if it sleeps waiting for room.
    pub(crate) fn release(&self, rx: &Rx, rec: &Record) -> Result<()> {
        if rx.guard(rx.consumer.release(rec))? {
            self.bells().space.ring()?;
        }
        Ok(())
    }

    /// After a receive: with a watched `fileno`, make its readiness match the ring.
    pub(crate) fn after_receive(&self) -> Result<()> {
        self.settle_watch()
    }

    /// Reads the message starting with `first` into `out` (which it replaces).
    ///
    /// Memory grows with the bytes that actually arrive, never from the total a first
    /// fragment announces (the peer could announce anything); the caller has checked
    /// that total against its limit.
    pub(crate) fn read_message_into_vec<S: Sink>(
        &self,
        rx: &Rx,
        first: Record,
        out: &mut S,
    ) -> Result<()> {
        out.clear();
        match first.kind {
            Kind::Whole => {
                out.reserve_exact(first.len);
                rx.consumer.append(&first, out);
                self.release(rx, &first)?;
            }
            _ => {
                let mut asm = rx.guard(Reassembly::start(&first.checked()))?;
                grow_for(out, asm.total, first.len);
                rx.consumer.append(&first, out);
                self.release(rx, &first)?;
                loop {
                    let rec = self.next_fragment(rx)?;
                    let last = rx.guard(asm.next(&rec.checked()))?;
                    grow_for(out, asm.total, rec.len);
                    rx.consumer.append(&rec, out);
                    self.release(rx, &rec)?;
                    if last {
                        break;
                    }
                }
            }
        }
        self.after_receive()
    }

    /// Reads the message starting with `first` into `out`, exactly its length.
    pub(crate) fn read_message_into_slice(
        &self,
        rx: &Rx,
        first: Record,
        out: &mut [u8],
    ) -> Result<()> {
        // Check a first fragment against the total it announces before copying it: `out`
        // is that total long, and the fragment's own length comes from the other side.
        let asm = match first.kind {
            Kind::First => Some(rx.guard(Reassembly::start(&first.checked()))?),
            _ => None,
        };
        rx.consumer.read(&first, 0, &mut out[..first.len]);
        self.release(rx, &first)?;
        if let Some(mut asm) = asm {
            loop {
                let rec = self.next_fragment(rx)?;
                let at = asm.received;
                // `next` checks that the fragment ends within the announced total.
                let last = rx.guard(asm.next(&rec.checked()))?;
                rx.consumer.read(&rec, 0, &mut out[at..at + rec.len]);
                self.release(rx, &rec)?;
                if last {
                    break;
                }
            }
        }
        self.after_receive()
    }

    /// The next fragment of a message: if the writer died before sending it, the
    /// half-sent message is dropped and the reader sees EOF.
    fn next_fragment(&self, rx: &Rx) -> Result<Record> {
        self.next_record(rx)
    }
}

/// A buffer for typed messages that do not fit the ring whole, kept from one message to
/// the next. A fresh multi-megabyte buffer per message costs more than the transfer: the
/// allocator maps new pages, the kernel zeroes each one on first touch, and unmaps them
/// again on free (measured: 95 ms per 16 MiB `recv_archived` against 7 ms for
/// `recv_bytes_into`). Buffers above [`Scratch::RETAIN_LIMIT`] are not kept, so one huge
/// message does not pin its memory for the connection's lifetime.
#[derive(Default)]
pub(crate) struct Scratch(Cell<Option<AlignedVec>>);

impl Scratch {
    /// The largest buffer kept between messages.
    const RETAIN_LIMIT: usize = 64 << 20;

    /// The kept buffer, empty (or a new one).
    pub fn take(&self) -> AlignedVec {
        let mut v = self.0.take().unwrap_or_default();
        v.clear();
        v
    }

    /// Keeps `v` for the next message, unless it is too large to keep.
    pub fn give_back(&self, v: AlignedVec) {
        if v.capacity() <= Self::RETAIN_LIMIT {
            self.0.set(Some(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_keeps_buffers_up_to_the_limit_and_hands_them_out_empty() {
        let s = Scratch::default();
        let mut v = s.take();
        v.extend_from_slice(&[1; 1000]);
        let kept = v.as_ptr();
        s.give_back(v);
        let v = s.take();
        assert_eq!((v.len(), v.as_ptr()), (0, kept), "same buffer, emptied");
        s.give_back(v);

        let mut huge = AlignedVec::new();
        huge.reserve(Scratch::RETAIN_LIMIT + 1);
        s.give_back(huge);
        let v = s.take();
        assert!(
            v.capacity() <= Scratch::RETAIN_LIMIT,
            "a huge buffer is let go"
        );
    }
}
