//! Receiving: waiting for the next record, and copying a message (whole or in
//! fragments) out of the ring into memory of our own.

use crate::buffers::{grow_for, Sink};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::shm::endpoint::{Breakable, Endpoint, Rx};
use crate::shm::ring::Record;
use crate::shm::wakeup::{Waiter, Woken};
use crate::shm::wire::{Kind, Reassembly};
use rkyv::util::AlignedVec;
use std::time::Instant;

/// How many times a blocking receive that finds the ring empty looks again with the
/// one-pass check before it enters the general wait: about a microsecond.
const QUICK_SPINS: usize = 64;

/// A reader that has caught up with a streaming writer looks again every this many
/// pauses (see `Endpoint::receive_whole`), about 400 ns here: a pause takes about 25 ns
/// on this machine's CPU (looking every 8 pauses added 210 ns to a round trip). 8, 16
/// and 32 were measured (DESIGN.md, "Per-message cost").
const CAUGHT_UP_GAP: usize = 16;

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

/// A message about to be received: its length is known, and nothing of it has been
/// consumed by the call at hand.
pub(crate) enum Next {
    /// It starts with this record, still in the ring.
    Fresh(Record),
    /// An earlier call consumed its first fragments, then its deadline passed: they are
    /// kept in the connection ([`Rx::partial`]) and this call goes on from there.
    Resumed,
}

/// How [`Endpoint::read_message`] ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// The message is in the buffer.
    Done,
    /// The writer abandoned the message part-way (a `CANCEL` record): nothing to
    /// deliver; the caller goes on to the next message.
    Cancelled,
}

/// The first fragments of a message whose receive ran out of time; the next receive
/// goes on from here, so that a timeout consumes nothing as far as the caller can tell.
pub(crate) struct Partial {
    pub data: AlignedVec,
    pub asm: Reassembly,
}

impl Endpoint {
    /// Waits, within `deadline`, for the next message; returns its length (checked by the
    /// caller before anything is consumed) and where it starts.
    pub(crate) fn next_message(&self, rx: &Rx, deadline: Deadline) -> Result<(usize, Next)> {
        if let Some(p) = &*rx.partial.borrow() {
            return Ok((p.asm.total, Next::Resumed));
        }
        let first = self.next_record(rx, deadline)?;
        Ok((message_len(&first)?, Next::Fresh(first)))
    }

    /// The common receive in one pass, before the general path: the next message is a
    /// whole record, there now, at most `max` bytes long, and nothing is half received.
    /// Receives it into `out` (replacing what it held) and returns `true`; returns
    /// `false`, having consumed nothing, in every other case.
    #[inline(always)]
    pub(crate) fn receive_whole_now<S: Sink>(
        &self,
        rx: &Rx,
        out: &mut S,
        max: usize,
    ) -> Result<bool> {
        if rx.partial.borrow().is_some() {
            return Ok(false);
        }
        let Some(rec) = rx.consumer.peek_whole(max) else {
            return Ok(false);
        };
        out.clear();
        out.reserve_exact(rec.len);
        rx.consumer.append(&rec, out);
        self.release(rx, &rec)?;
        self.after_receive()?;
        rx.waited.set(false);
        Ok(true)
    }

    /// [`receive_whole_now`](Endpoint::receive_whole_now), and if the ring is empty, the
    /// same again once a record has come within `deadline` (so that a blocking receive
    /// in a conversation takes the one-pass path too). The wait ends as the general
    /// path's would, with EOF, a timeout or `WouldBlock`. Returns `false`, having
    /// consumed nothing, when the general path must take the message.
    #[inline]
    pub(crate) fn receive_whole<S: Sink>(
        &self,
        rx: &Rx,
        out: &mut S,
        max: usize,
        deadline: &mut impl FnMut() -> Deadline,
    ) -> Result<bool> {
        if self.receive_whole_now(rx, out, max)? {
            return Ok(true);
        }
        if rx.partial.borrow().is_some() || rx.guard(rx.consumer.has_data())? {
            return Ok(false);
        }
        // In a conversation the reply is usually a few hundred nanoseconds away: a
        // blocking receive looks for it with the one-pass check itself before the
        // general wait (which spins too, then sleeps). Measured: the 64 B round trip
        // takes 0.79 of the time it took with the general wait alone (DESIGN.md,
        // "Per-message cost"). A non-blocking receive does not wait at all.
        //
        // A reader that found its last message at once and now finds the ring empty has
        // caught up with a writer that is streaming. Looking again at once would have
        // the two sides pass `head` and the record's lines back and forth for every
        // message; looking every `CAUGHT_UP_GAP` pauses lets a few records gather, which
        // each side then handles on lines of its own (measured in DESIGN.md). A reader
        // that waited for its last message too (a conversation) looks after every pause.
        let caught_up = !rx.waited.replace(true);
        let gap = if caught_up { CAUGHT_UP_GAP } else { 1 };
        let deadline = deadline();
        if deadline != Deadline::Now {
            for _ in 0..QUICK_SPINS / gap {
                for _ in 0..gap {
                    std::hint::spin_loop();
                }
                if self.receive_whole_now(rx, out, max)? {
                    rx.waited.set(true);
                    return Ok(true);
                }
            }
        }
        self.next_record(rx, deadline)?;
        let received = self.receive_whole_now(rx, out, max)?;
        rx.waited.set(true);
        Ok(received)
    }

    /// Waits, within `deadline`, for the next record; EOF once the peer is gone and the
    /// ring is empty. EOF wins over the deadline.
    pub(crate) fn next_record(&self, rx: &Rx, deadline: Deadline) -> Result<Record> {
        rx.guard(rx.consumer.resync())?;
        loop {
            if let Some(rec) = rx.guard(rx.consumer.peek())? {
                return Ok(rec);
            }
            let gone = match deadline {
                Deadline::Now => {
                    if !self.peer_gone()? {
                        return Err(Error::WouldBlock);
                    }
                    true
                }
                _ => match self.wait_for_data(rx, deadline.instant())? {
                    Woken::Ready(_) => false,
                    Woken::PeerGone(_) => true,
                    Woken::TimedOut => return Err(Error::Timeout),
                },
            };
            if gone {
                // The peer's last publish happened before its descriptors were closed,
                // so one more look sees everything it sent.
                return match rx.guard(rx.consumer.peek())? {
                    Some(rec) => Ok(rec),
                    None => Err(Error::Eof),
                };
            }
        }
    }

    pub(crate) fn wait_for_data(&self, rx: &Rx, deadline: Option<Instant>) -> Result<Woken> {
        let bells = self.bells();
        let flag = rx.consumer.sleeping_flag();
        let ready = || rx.consumer.has_data();
        let waiter = Waiter {
            flag,
            bell: &bells.data,
            other: &bells.space,
            for_records: true,
        };
        let woken = self.wait_one(waiter, ready, deadline)?;
        // The wait drained the data doorbell and lowered the flag: a watched `fileno`
        // must be made exact again whatever the caller does next (it may return
        // `Timeout` or `MessageTooLong` without receiving anything).
        self.settle_watch()?;
        woken.map_err(|e| rx.break_with(e))
    }

    /// Releases `rec` and rings the producer's doorbell if it sleeps waiting for room.
    #[inline]
    pub(crate) fn release(&self, rx: &Rx, rec: &Record) -> Result<()> {
        match rx.consumer.release(rec) {
            Ok(false) => Ok(()),
            Ok(true) => self.wake_writer(),
            Err(why) => Err(rx.break_with(why)),
        }
    }

    /// Rings the doorbell of a writer that sleeps waiting for room: a system call, out
    /// of line so that the common release carries no frame for it.
    #[cold]
    #[inline(never)]
    fn wake_writer(&self) -> Result<()> {
        self.bells().space.ring()
    }

    /// After a receive: with a watched `fileno`, make its readiness match the ring.
    #[inline]
    pub(crate) fn after_receive(&self) -> Result<()> {
        self.settle_watch()
    }

    /// Receives the message `next` (from [`Endpoint::next_message`], its length checked
    /// by the caller to fit `out`) into `out`, which it replaces.
    ///
    /// Memory grows with the bytes that actually arrive, never from the total a first
    /// fragment announces (the peer could announce anything). If `deadline` passes while
    /// the message is half read, what was read is kept in the connection for the next
    /// call, and this one returns [`Error::Timeout`] or [`Error::WouldBlock`].
    pub(crate) fn read_message<S: Sink>(
        &self,
        rx: &Rx,
        next: Next,
        out: &mut S,
        deadline: Deadline,
    ) -> Result<Read> {
        out.clear();
        let (first, mut asm) = match next {
            Next::Fresh(first) if first.kind == Kind::Whole => {
                out.reserve_exact(first.len);
                rx.consumer.append(&first, out);
                self.release(rx, &first)?;
                self.after_receive()?;
                return Ok(Read::Done);
            }
            Next::Fresh(first) => {
                // Checked against the total it announces before it is copied.
                let asm = rx.guard(Reassembly::start(&first.checked()))?;
                (first, asm)
            }
            Next::Resumed => {
                // Go on in the kept buffer: no copy back and forth per attempt (a long
                // message received in many non-blocking steps would cost quadratic
                // copying); the caller's buffer gets the message once it is whole.
                let mut p = rx.partial.take().expect("a partial message to resume");
                let end = self.read_fragments(rx, &mut p.asm, &mut p.data, deadline);
                return match end {
                    Ok(Read::Done) => {
                        out.reserve_exact(p.data.len());
                        out.extend_from_slice(&p.data);
                        self.after_receive()?;
                        Ok(Read::Done)
                    }
                    Ok(Read::Cancelled) => Ok(Read::Cancelled),
                    Err(e) if e.gave_up() => {
                        *rx.partial.borrow_mut() = Some(p);
                        Err(e)
                    }
                    Err(e) => Err(e),
                };
            }
        };
        grow_for(out, asm.total, first.len);
        rx.consumer.append(&first, out);
        self.release(rx, &first)?;
        match self.read_fragments(rx, &mut asm, out, deadline) {
            Ok(Read::Done) => {
                self.after_receive()?;
                Ok(Read::Done)
            }
            Ok(Read::Cancelled) => {
                out.clear();
                Ok(Read::Cancelled)
            }
            Err(e) if e.gave_up() => {
                // Keep what was taken for the next call (copied once).
                let mut data = AlignedVec::with_capacity(out.len());
                data.extend_from_slice(out.as_slice());
                *rx.partial.borrow_mut() = Some(Partial { data, asm });
                out.clear();
                Err(e)
            }
            // A writer that died mid-message never sent the rest: EOF.
            Err(e) => Err(e),
        }
    }

    /// Reads the fragments after the first into `out` until the last (or a `CANCEL`),
    /// within `deadline`.
    fn read_fragments<S: Sink>(
        &self,
        rx: &Rx,
        asm: &mut Reassembly,
        out: &mut S,
        deadline: Deadline,
    ) -> Result<Read> {
        loop {
            let rec = self.next_record(rx, deadline)?;
            if rec.kind == Kind::Cancel {
                self.release(rx, &rec)?;
                return Ok(Read::Cancelled);
            }
            let last = rx.guard(asm.next(&rec.checked()))?;
            grow_for(out, asm.total, rec.len);
            rx.consumer.append(&rec, out);
            self.release(rx, &rec)?;
            if last {
                return Ok(Read::Done);
            }
        }
    }

    /// Receives the next whole message into `out`: waits for it within `deadline`,
    /// lets `check` refuse it by its length (leaving it in the pipe), and skips messages
    /// the writer cancelled.
    pub(crate) fn receive<S: Sink>(
        &self,
        rx: &Rx,
        out: &mut S,
        deadline: Deadline,
        mut check: impl FnMut(usize, &Next) -> Result<()>,
    ) -> Result<()> {
        loop {
            let (len, next) = self.next_message(rx, deadline)?;
            check(len, &next)?;
            if self.read_message(rx, next, out, deadline)? == Read::Done {
                return Ok(());
            }
        }
    }
}
