//! Receiving: waiting for the next record, and copying a message (whole or in
//! fragments) out of the ring into memory of our own.

use crate::buffers::{grow_for, HalfReceived, Sink};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::shm::endpoint::{Breakable, Endpoint, Rx};
use crate::shm::ring::Record;
use crate::shm::spin::{pause, CAUGHT_UP_GAP, DISTANCE, DISTANCE_LOOKS, FIRST_LOOK, QUICK_SPINS};
use crate::shm::wakeup::{Side, Waiter, Woken};
use crate::shm::wire::{Kind, Reassembly};
use crate::violation::Violation;
use std::time::Instant;

/// The length of the message that starts with `rec`.
pub(crate) fn message_len(rec: &Record) -> Result<usize> {
    match rec.kind {
        Kind::Whole => Ok(rec.len),
        Kind::First => usize::try_from(rec.aux)
            .map_err(|_| Error::Corrupt(Violation::LengthTooLarge { len: rec.aux })),
        k => Err(Error::Corrupt(Violation::MisplacedRecord {
            kind: k.name(),
            inside_message: false,
        })),
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

/// The first fragments of a message whose receive ran out of time, and where the rest
/// must go on; the next receive goes on from here.
pub(crate) struct Partial {
    pub data: HalfReceived,
    pub asm: Reassembly,
}

/// How far one receive call may go, however many records it consumes on the way
/// (cancelled messages, empty fragments): a writer that keeps publishing such records
/// must not keep a call past its deadline, nor a non-blocking call at all.
///
/// * `Now`: the call takes only what was published when it began; a record beyond that
///   is for the next call ([`Error::WouldBlock`], nothing lost: a half-read message is
///   kept, a skipped one was cancelled).
/// * `At`: once the call has consumed a record, each further record first checks the
///   clock (a system-call-free read of the vDSO clock; records after the first are
///   fragments or cancelled messages, not the common case).
/// * `Never`: no limit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    deadline: Deadline,
    /// The reader's position when the call began.
    start: u64,
    /// For `Now`: the writer's position when the call began.
    until: u64,
}

impl Budget {
    /// The budget of a call starting now.
    pub(crate) fn begin(rx: &Rx, deadline: Deadline) -> Result<Budget> {
        let start = rx.consumer.position();
        let until = match deadline {
            Deadline::Now => start.wrapping_add(rx.guard(rx.consumer.look_ahead())?),
            _ => start,
        };
        Ok(Budget {
            deadline,
            start,
            until,
        })
    }

    /// Whether the call may take the record at the reader's position `at`.
    fn allows(&self, at: u64) -> bool {
        match self.deadline {
            Deadline::Never => true,
            // Before `until`: within the bytes published when the call began.
            Deadline::Now => {
                let left = self.until.wrapping_sub(at);
                left != 0 && left <= self.until.wrapping_sub(self.start)
            }
            Deadline::At(when) => at == self.start || Instant::now() < when,
        }
    }

    /// What a call that may not take the next record returns.
    fn spent(&self) -> Error {
        match self.deadline {
            Deadline::Now => Error::WouldBlock,
            _ => Error::Timeout,
        }
    }
}

impl Endpoint {
    /// Waits, within `budget`, for the next message; returns its length (checked by the
    /// caller before anything is consumed) and where it starts.
    pub(crate) fn next_message(&self, rx: &Rx, budget: &Budget) -> Result<(usize, Next)> {
        if let Some(total) = rx.partial_total() {
            return Ok((total, Next::Resumed));
        }
        let first = self.next_record(rx, budget)?;
        Ok((message_len(&first)?, Next::Fresh(first)))
    }

    /// The common receive in one pass, before the general path, for a receiver that has
    /// checked nothing yet: the next message is a whole record, there now, at most `max`
    /// bytes long, nothing about the receiving half is out of the ordinary (see
    /// [`Rx::fast`]), and the reader is not keeping its distance from a streaming writer
    /// (see [`Endpoint::receive_whole`]). Receives it into `out` (replacing what it
    /// held) and returns `true`; returns `false`, having consumed nothing, in every
    /// other case, and the general path takes the message (and reports whatever is
    /// wrong).
    #[inline(always)]
    pub(crate) fn receive_whole_now<S: Sink>(
        &self,
        rx: &Rx,
        out: &mut S,
        max: usize,
    ) -> Result<bool> {
        if !rx.fast() || self.keeps_distance(rx) {
            return Ok(false);
        }
        self.receive_whole_at_once(rx, out, max)
    }

    /// Whether a reader chasing a streaming writer (see [`Endpoint::receive_whole`]) is
    /// fewer than [`DISTANCE`] bytes behind it by the cached `head`, and should let it
    /// get further ahead before reading on.
    #[inline(always)]
    fn keeps_distance(&self, rx: &Rx) -> bool {
        rx.chasing.get() && rx.consumer.ahead() < DISTANCE
    }

    /// Lets a streaming writer get [`DISTANCE`] bytes ahead: looks at `head` at most
    /// [`DISTANCE_LOOKS`] times, each after [`CAUGHT_UP_GAP`] pauses while the ring is
    /// empty and after [`FIRST_LOOK`] pauses once something is there. Returns whether
    /// the writer got that far; `false` as soon as it did not move between two looks
    /// with something published (it paused: there is no point in waiting for more),
    /// and when the looks run out.
    #[cold]
    #[inline(never)]
    fn let_writer_get_ahead(&self, rx: &Rx) -> Result<bool> {
        let mut ahead = rx.guard(rx.consumer.look_ahead())?;
        for _ in 0..DISTANCE_LOOKS {
            if ahead >= DISTANCE {
                return Ok(true);
            }
            pause(if ahead > 0 { FIRST_LOOK } else { CAUGHT_UP_GAP });
            let now = rx.guard(rx.consumer.look_ahead())?;
            #[cfg(test)]
            rx.distance_looks.set(rx.distance_looks.get() + 1);
            if now == ahead && now > 0 {
                return Ok(false);
            }
            ahead = now;
        }
        Ok(ahead >= DISTANCE)
    }

    /// Takes the next message into `out` if it is a whole record, there now, at most
    /// `max` bytes long (for a receive that may start, nothing half received), and
    /// settles a watched `fileno`; returns whether it did. Keeps no distance.
    #[inline(always)]
    fn receive_whole_at_once<S: Sink>(&self, rx: &Rx, out: &mut S, max: usize) -> Result<bool> {
        let Some(rec) = rx.consumer.peek_whole(max) else {
            return Ok(false);
        };
        out.clear();
        out.reserve_exact(rec.len);
        rx.consumer.append(&rec, out);
        self.release(rx, &rec)?;
        rx.waited.set(false);
        self.after_receive()?;
        Ok(true)
    }

    /// The one-pass receive of [`receive_whole_now`](Endpoint::receive_whole_now) into
    /// memory that `alloc` provides once the length is known (exactly that many bytes),
    /// for the Python binding, which allocates the `bytes` object only then. `Ok(None)`,
    /// having consumed nothing, where the one-pass path does not apply or `alloc` gives
    /// nothing. Never waits.
    pub(crate) fn take_whole_with<'b>(
        &self,
        rx: &Rx,
        max: usize,
        alloc: &mut dyn FnMut(usize) -> Option<&'b mut [u8]>,
    ) -> Result<Option<usize>> {
        if !rx.fast() {
            return Ok(None);
        }
        let Some(rec) = rx.consumer.peek_whole(max) else {
            return Ok(None);
        };
        let Some(buf) = alloc(rec.len) else {
            return Ok(None);
        };
        let mut out = crate::buffers::SliceSink::new(buf);
        out.reserve_exact(rec.len);
        rx.consumer.append(&rec, &mut out);
        self.release(rx, &rec)?;
        rx.waited.set(false);
        self.after_receive()?;
        Ok(Some(rec.len))
    }

    /// [`receive_whole_now`](Endpoint::receive_whole_now), and if that found nothing to
    /// take, the same again once a record has come (or the writer has got far enough
    /// ahead) within `deadline`, so that a blocking receive in a conversation or a
    /// stream takes the one-pass path too. The wait ends as the general
    /// path's would, with EOF, a timeout or `WouldBlock`. Returns `false`, having
    /// consumed nothing, when the general path must take the message.
    ///
    /// How long it looks before the general wait depends on what the reader is doing:
    ///
    /// * **In a conversation** (the last receive waited for its message too) the reply
    ///   is usually a few hundred nanoseconds away: the receive looks for it after every
    ///   pause for about a microsecond. Measured: the 64 B round trip takes 0.79 of the
    ///   time it took with the general wait alone (DESIGN.md, "Per-message cost").
    /// * **Chasing a streaming writer** (the last message was there at once, and now the
    ///   ring is empty or nearly so) the reader lets the writer get [`DISTANCE`] bytes
    ///   ahead before it reads on, and keeps that distance while the writer streams. A
    ///   reader that reads right behind the writer slows it down: the lines at the
    ///   writer's position are then read by one core while the other writes them (a
    ///   record shares its lines with its neighbours, and the reader's hardware
    ///   prefetcher reads ahead of it), and each of the writer's stores to such a line
    ///   waits for the line to come back from the reader's core: a stream whose reader
    ///   caught up every few dozen messages ran several times slower.
    ///   The reader stops chasing as soon as the writer pauses or the looks run out
    ///   ([`DISTANCE_LOOKS`]), and takes what there is. A record the one-pass path does
    ///   not take (a fragment, a message too long for `max`) goes to the general path
    ///   after those looks, as it did at once before.
    /// * A non-blocking receive does not wait at all, and takes whatever is there.
    #[inline]
    pub(crate) fn receive_whole<S: Sink>(
        &self,
        rx: &Rx,
        out: &mut S,
        max: usize,
        deadline: &mut impl FnMut() -> Deadline,
    ) -> Result<bool> {
        if rx.has_partial() {
            return Ok(false);
        }
        if !self.keeps_distance(rx) && self.receive_whole_at_once(rx, out, max)? {
            return Ok(true);
        }
        let streaming = !rx.waited.replace(true) || rx.chasing.get();
        let deadline = deadline();
        if deadline != Deadline::Now {
            if streaming {
                let far = self.let_writer_get_ahead(rx)?;
                rx.chasing.set(far);
                if self.receive_whole_at_once(rx, out, max)? {
                    // Still chasing, the reader goes on as one whose messages are there
                    // at once. Having stopped, it counts this message as waited for:
                    // should the ring be empty at its next receive, that one looks as in
                    // a conversation.
                    rx.waited.set(!far);
                    return Ok(true);
                }
            } else if !rx.guard(rx.consumer.has_data())? {
                for _ in 0..QUICK_SPINS {
                    pause(1);
                    if self.receive_whole_at_once(rx, out, max)? {
                        rx.waited.set(true);
                        return Ok(true);
                    }
                }
            }
        }
        if self.receive_whole_at_once(rx, out, max)? {
            return Ok(true);
        }
        if rx.guard(rx.consumer.has_data())? {
            // There, but not for the one-pass path: the general path takes it.
            return Ok(false);
        }
        // The writer has paused for longer than the looks above.
        rx.chasing.set(false);
        self.next_record(rx, &Budget::begin(rx, deadline)?)?;
        let received = self.receive_whole_at_once(rx, out, max)?;
        rx.waited.set(true);
        Ok(received)
    }

    /// Waits, within `budget`, for the next record; EOF once the peer is gone and the
    /// ring is empty. EOF wins over the deadline; a record that is there wins over it
    /// too, unless the call has consumed records already (see [`Budget`]).
    pub(crate) fn next_record(&self, rx: &Rx, budget: &Budget) -> Result<Record> {
        rx.guard(rx.consumer.resync())?;
        loop {
            if let Some(rec) = rx.guard(rx.consumer.peek())? {
                if !budget.allows(rx.consumer.position()) {
                    return Err(budget.spent());
                }
                return Ok(rec);
            }
            let gone = match budget.deadline {
                // A look that does not wait: memory only, but for a rate-limited
                // question to the kernel about the peer (see `shm::liveness`).
                Deadline::Now => {
                    if !self.peer_gone_lately()? {
                        return Err(Error::WouldBlock);
                    }
                    true
                }
                deadline => match self.wait_for_data(rx, deadline)? {
                    Woken::Ready(_) => false,
                    Woken::PeerGone(_) => true,
                    Woken::TimedOut => return Err(Error::Timeout),
                },
            };
            if gone {
                // The peer's last publish happened before its descriptors were closed,
                // so one more look sees everything it sent. (A non-blocking call takes
                // it too: the writer is gone, nothing more can come.)
                return match rx.guard(rx.consumer.peek())? {
                    Some(rec) => Ok(rec),
                    None => Err(Error::Eof),
                };
            }
        }
    }

    /// Consumes, delivering nothing, the messages at the front of the ring that the
    /// writer cancelled and whose every record is published (see
    /// [`Consumer::cancelled_next`](crate::shm::ring::Consumer::cancelled_next)), so that
    /// `poll` does not report as ready what every receive would skip. Only what was
    /// published when it began: a writer streaming cancelled messages cannot keep it.
    pub(crate) fn skip_cancelled(&self, rx: &Rx) -> Result<()> {
        let budget = Budget::begin(rx, Deadline::Now)?;
        while budget.allows(rx.consumer.position())
            && rx.guard(rx.consumer.cancelled_next(rx.has_partial()))?
        {
            // What an earlier receive took of it goes too.
            rx.take_partial();
            while let Some(rec) = rx.guard(rx.consumer.peek())? {
                self.release(rx, &rec)?;
                if rec.kind == Kind::Cancel {
                    break;
                }
            }
        }
        Ok(())
    }

    /// What a reader of this end waits on: its sleeping flag, the data doorbell, and the
    /// writer's word that says whether announcing needs the reader's half of the
    /// asymmetric fence (`writer_fences`). The one description of it,
    /// for `wait_for_data` and `shmpipe::wait`.
    pub(crate) fn data_waiter<'a>(&'a self, rx: &'a Rx) -> Waiter<'a> {
        let bells = self.bells();
        Waiter {
            side: Side::Reader(&rx.consumer),
            bell: &bells.data,
            other: self.other_bell(&bells.space),
        }
    }

    pub(crate) fn wait_for_data(&self, rx: &Rx, deadline: Deadline) -> Result<Woken> {
        let ready = || rx.consumer.has_data();
        let woken = self.wait_one(self.data_waiter(rx), ready, deadline)?;
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
        budget: &Budget,
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
            Next::Resumed => return self.resume_message(rx, out, budget),
        };
        grow_for(out, asm.total, first.len);
        rx.consumer.append(&first, out);
        self.release(rx, &first)?;
        match self.read_fragments(rx, &mut asm, out, budget) {
            Ok(Read::Done) => {
                self.after_receive()?;
                Ok(Read::Done)
            }
            Ok(Read::Cancelled) => {
                out.clear();
                Ok(Read::Cancelled)
            }
            Err(e) if e.gave_up() => {
                // Keep what was taken for the next call.
                let data = HalfReceived::keep(out);
                rx.keep_partial(Partial { data, asm });
                Err(e)
            }
            // A writer that died mid-message never sent the rest: EOF.
            Err(e) => Err(e),
        }
    }

    /// [`read_message`](Endpoint::read_message) of a message half received by an
    /// earlier call. It goes on in the kept buffer ([`HalfReceived`]); `out` gets the
    /// message once it is whole.
    fn resume_message<S: Sink>(&self, rx: &Rx, out: &mut S, budget: &Budget) -> Result<Read> {
        let mut p = rx.take_partial().expect("a partial message to resume");
        match self.read_fragments(rx, &mut p.asm, p.data.bytes(), budget) {
            Ok(Read::Done) => {
                p.data.deliver(out);
                self.after_receive()?;
                Ok(Read::Done)
            }
            Ok(Read::Cancelled) => Ok(Read::Cancelled),
            Err(e) if e.gave_up() => {
                rx.keep_partial(p);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// Reads the fragments after the first into `out` until the last (or a `CANCEL`),
    /// within `budget`.
    fn read_fragments<S: Sink>(
        &self,
        rx: &Rx,
        asm: &mut Reassembly,
        out: &mut S,
        budget: &Budget,
    ) -> Result<Read> {
        loop {
            let rec = self.next_record(rx, budget)?;
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

    /// The receive loop, the one place that goes from message to message: waits for the
    /// next message within `deadline` and hands it to `take` (with its length, checked
    /// there before anything is consumed), which returns `Some` when the call is done
    /// and `None` when the writer had cancelled the message; the loop then goes on to
    /// the next, within the call's [`Budget`].
    pub(crate) fn receive_loop<T>(
        &self,
        rx: &Rx,
        deadline: Deadline,
        mut take: impl FnMut(usize, Next, &Budget) -> Result<Option<T>>,
    ) -> Result<T> {
        let budget = Budget::begin(rx, deadline)?;
        loop {
            let (len, next) = self.next_message(rx, &budget)?;
            if let Some(done) = take(len, next, &budget)? {
                return Ok(done);
            }
        }
    }

    /// Receives the next whole message into `out`, refusing one longer than `max`
    /// (it stays in the pipe), skipping messages the writer cancelled.
    pub(crate) fn receive<S: Sink>(
        &self,
        rx: &Rx,
        out: &mut S,
        max: usize,
        deadline: Deadline,
    ) -> Result<()> {
        self.receive_loop(rx, deadline, |len, next, budget| {
            crate::buffers::within(len, max)?;
            Ok((self.read_message(rx, next, out, budget)? == Read::Done).then_some(()))
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::shm::endpoint::Rx;
    use crate::{Connection, Error};

    fn rx(c: &Connection) -> &Rx {
        c.shm_endpoint().receiving().unwrap()
    }

    /// Sending and receiving in turn (one thread, or a peer that waits for our answer)
    /// never makes the reader keep its distance: each message is there at once, and the
    /// ring is never found empty right after one.
    #[test]
    fn a_reader_in_step_with_its_writer_never_keeps_its_distance() {
        let (a, b) = crate::pipe(true).unwrap();
        let mut buf = [0u8; 64];
        for i in 0..1000u32 {
            a.send_bytes(&i.to_le_bytes()).unwrap();
            let n = b.recv_bytes_into(&mut buf).unwrap();
            assert_eq!(&buf[..n], i.to_le_bytes());
        }
        assert!(!rx(&b).chasing.get());
        assert_eq!(rx(&b).distance_looks.get(), 0);
    }

    /// A reader chasing a writer that has paused looks once, sees that `head` did not
    /// move, stops chasing and takes everything there is at once.
    #[test]
    fn a_reader_chasing_a_writer_that_paused_looks_once_and_stops_chasing() {
        let (a, b) = crate::pipe(true).unwrap();
        for i in 0..5u8 {
            a.send_bytes(&[i; 64]).unwrap();
        }
        rx(&b).chasing.set(true);
        for i in 0..5u8 {
            assert_eq!(b.recv_bytes().unwrap(), [i; 64]);
        }
        assert!(!rx(&b).chasing.get());
        assert_eq!(rx(&b).distance_looks.get(), 1);
    }

    /// A receive in non-blocking mode keeps no distance: a message that is there is
    /// received at once, never `WouldBlock`.
    #[test]
    fn a_receive_that_may_not_wait_keeps_no_distance() {
        let (a, b) = crate::pipe(true).unwrap();
        a.send_bytes(b"one").unwrap();
        a.send_bytes(b"two").unwrap();
        rx(&b).chasing.set(true);
        b.set_nonblocking(true).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"one");
        let mut buf = [0u8; 8];
        assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"two");
        assert!(matches!(b.recv_bytes(), Err(Error::WouldBlock)));
        assert_eq!(rx(&b).distance_looks.get(), 0);
    }

    /// A receive with a timeout may keep its distance for a few looks, but a message
    /// that is there is received, never `Timeout`, however short the timeout.
    #[test]
    fn a_timed_receive_chasing_a_writer_still_gets_the_message_that_is_there() {
        let (a, b) = crate::pipe(true).unwrap();
        a.send_bytes(b"there").unwrap();
        rx(&b).chasing.set(true);
        b.set_read_timeout(Some(std::time::Duration::from_nanos(1)))
            .unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"there");
        assert!(matches!(b.recv_bytes(), Err(Error::Timeout)));
    }

    /// The trigger: a message there at once, then an empty ring. The reader chases (its
    /// looks find nothing), gives up after its looks, stops chasing and waits in the
    /// general path, here until its timeout.
    #[test]
    fn a_reader_that_finds_the_ring_empty_after_a_message_there_at_once_chases() {
        let (a, b) = crate::pipe(true).unwrap();
        a.send_bytes(b"one").unwrap();
        a.send_bytes(b"two").unwrap();
        b.set_read_timeout(Some(std::time::Duration::from_millis(1)))
            .unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"one");
        assert_eq!(b.recv_bytes().unwrap(), b"two");
        assert_eq!(rx(&b).distance_looks.get(), 0);
        assert!(matches!(b.recv_bytes(), Err(Error::Timeout)));
        assert_eq!(rx(&b).distance_looks.get(), super::DISTANCE_LOOKS as u64);
        assert!(!rx(&b).chasing.get());
    }

    /// A reader far enough behind keeps chasing and reads on without pausing.
    #[test]
    fn a_reader_far_enough_behind_reads_on_without_pausing() {
        let (a, b) = crate::pipe(true).unwrap();
        let far = super::DISTANCE as usize / 64 + 8;
        for i in 0..far {
            a.send_bytes(&[i as u8; 64]).unwrap();
        }
        rx(&b).chasing.set(true);
        assert_eq!(b.recv_bytes().unwrap(), [0u8; 64]);
        assert!(rx(&b).chasing.get());
        assert_eq!(rx(&b).distance_looks.get(), 0);
    }
}
