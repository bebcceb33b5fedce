//! How long a call may wait ([`Deadline`]), the settings it is computed from (a
//! connection's read and write timeouts and its non-blocking mode: [`Limits`]), and the
//! one way every call waits for descriptors ([`poll`]): until its deadline, through
//! signals, unless the process asked for signals to end waits ([`set_interruptible`]).
//! Shared by both transports; the public setters are in `timeouts`.

use crate::error::{Error, Result};
use rustix::event::{PollFd, PollFlags, Timespec};
use std::cell::Cell;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Whether a signal that interrupts a wait ends the call (see [`set_interruptible`]).
static INTERRUPTIBLE: AtomicBool = AtomicBool::new(false);

/// Makes every wait in this process return `ErrorKind::Interrupted` when a signal
/// interrupts it, instead of resuming (the default, like Rust's standard library). The
/// call then has consumed or sent nothing, as after a timeout. For the Python bindings,
/// which must run Python's signal handlers (Ctrl-C) and retry, as PEP 475 says.
pub(crate) fn set_interruptible(on: bool) {
    INTERRUPTIBLE.store(on, Relaxed);
}

/// What a wait that a signal interrupted does: `Some(error)` to end the call, `None` to
/// wait on.
pub(crate) fn on_signal() -> Option<Error> {
    INTERRUPTIBLE
        .load(Relaxed)
        .then(|| Error::Io(std::io::ErrorKind::Interrupted.into()))
}

thread_local! {
    /// A descriptor whose readiness ends this thread's waits (see [`interruptible_by`]).
    static INTERRUPTER: Cell<Option<RawFd>> = const { Cell::new(None) };
}

/// Runs `f` with `fd` watched by every wait this thread makes in it: once `fd` is
/// readable, a wait ends with `ErrorKind::Interrupted`, as an interrupting signal ends it
/// under [`set_interruptible`]. For the Python bindings: a receive waits holding its
/// connection's lock, and another thread that needs the connection makes `fd` readable.
pub(crate) fn interruptible_by<T>(fd: BorrowedFd<'_>, f: impl FnOnce() -> T) -> T {
    struct Restore(Option<RawFd>);
    impl Drop for Restore {
        fn drop(&mut self) {
            INTERRUPTER.set(self.0);
        }
    }
    let _restore = Restore(INTERRUPTER.replace(Some(fd.as_raw_fd())));
    f()
}

/// How long a call may wait: until an instant, forever, or not at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Blocking mode without a timeout.
    Never,
    /// Blocking mode with a timeout: the whole call ends by then.
    At(Instant),
    /// Non-blocking mode: a call that would have to wait does not.
    Now,
}

impl Deadline {
    /// The deadline for a call starting now under `timeout` (blocking mode) or in
    /// non-blocking mode.
    pub(crate) fn for_call(nonblocking: bool, timeout: Option<Duration>) -> Deadline {
        match (nonblocking, timeout) {
            (true, _) => Deadline::Now,
            (false, None) => Deadline::Never,
            (false, Some(t)) => Deadline::At(deadline_after(t)),
        }
    }

    /// The deadline `timeout` from now (`None`: no limit), for `poll(timeout)`.
    pub(crate) fn after(timeout: Option<Duration>) -> Deadline {
        match timeout {
            None => Deadline::Never,
            Some(t) => Deadline::At(deadline_after(t)),
        }
    }

    /// Whether the time is up: always for `Now`, never for `Never`.
    pub(crate) fn passed(self) -> bool {
        match self {
            Deadline::Never => false,
            Deadline::Now => true,
            Deadline::At(at) => Instant::now() >= at,
        }
    }

    /// How long is left (`None`: no limit; zero once passed).
    pub(crate) fn remaining(self) -> Option<Duration> {
        match self {
            Deadline::Never => None,
            Deadline::Now => Some(Duration::ZERO),
            Deadline::At(at) => Some(at.saturating_duration_since(Instant::now())),
        }
    }

    /// This deadline, or `cap` from now if that comes first.
    pub(crate) fn capped(self, cap: Duration) -> Deadline {
        let by = deadline_after(cap);
        match self {
            Deadline::Never => Deadline::At(by),
            Deadline::Now => Deadline::Now,
            Deadline::At(at) => Deadline::At(at.min(by)),
        }
    }
}

/// Waits until one of `fds` shows an event it asks for (or an error or hang-up), or
/// `deadline` passes. Returns how many show events: 0 once the deadline passed. A signal
/// that interrupts the wait resumes it, or ends the call with `ErrorKind::Interrupted`
/// where [`set_interruptible`] asked for that.
pub(crate) fn poll(fds: &mut [PollFd<'_>], deadline: Deadline) -> Result<usize> {
    if let Some(fd) = INTERRUPTER.get() {
        return poll_interruptible(fds, deadline, fd);
    }
    poll_plain(fds, deadline)
}

fn poll_plain(fds: &mut [PollFd<'_>], deadline: Deadline) -> Result<usize> {
    loop {
        let timeout = deadline.remaining().map(|left| Timespec {
            tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: left.subsec_nanos().into(),
        });
        match rustix::event::poll(fds, timeout.as_ref()) {
            // A timeout can end a little early (timer slack): only a passed deadline
            // counts.
            Ok(0) if !deadline.passed() => {}
            Ok(n) => return Ok(n),
            Err(rustix::io::Errno::INTR) => {
                if let Some(e) = on_signal() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// [`poll`] with the descriptor [`interruptible_by`] set watched too.
#[cold]
fn poll_interruptible(
    fds: &mut [PollFd<'_>],
    deadline: Deadline,
    interrupter: RawFd,
) -> Result<usize> {
    // SAFETY: `interruptible_by`'s caller keeps the descriptor open while it runs, and
    // this runs inside it (the thread-local is set only there).
    let interrupter = unsafe { BorrowedFd::borrow_raw(interrupter) };
    let mut all: Vec<PollFd<'_>> = fds.to_vec();
    all.push(PollFd::from_borrowed_fd(interrupter, PollFlags::IN));
    let n = poll_plain(&mut all, deadline)?;
    if all.last().is_some_and(|k| !k.revents().is_empty()) {
        return Err(Error::Io(std::io::ErrorKind::Interrupted.into()));
    }
    if n == 0 {
        return Ok(0);
    }
    // Events on the caller's descriptors: a look that does not wait fills theirs in.
    poll_plain(fds, Deadline::Now)
}

/// The instant `timeout` from now; a timeout too large for `Instant` becomes a century.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// A connection's timeouts, mode and message size limit (this end, this process): what
/// a connection keeps above the transport, the same for both.
#[derive(Clone)]
pub(crate) struct Limits {
    /// Non-blocking mode.
    pub nonblocking: Cell<bool>,
    /// How long a receive may wait in blocking mode; `None`: as long as it takes.
    pub read_timeout: Cell<Option<Duration>>,
    /// How long a send may wait in blocking mode.
    pub write_timeout: Cell<Option<Duration>>,
    /// The longest message a receive that allocates will take (see
    /// [`Builder::max_message_size`](crate::Builder::max_message_size)).
    pub max_message: Cell<usize>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            nonblocking: Cell::new(false),
            read_timeout: Cell::new(None),
            write_timeout: Cell::new(None),
            max_message: Cell::new(crate::shm::layout::DEFAULT_MAX_MESSAGE),
        }
    }
}

impl Limits {
    /// The deadline of a receive starting now.
    pub(crate) fn read_deadline(&self) -> Deadline {
        Deadline::for_call(self.nonblocking.get(), self.read_timeout.get())
    }

    /// The deadline of a send starting now.
    pub(crate) fn write_deadline(&self) -> Deadline {
        Deadline::for_call(self.nonblocking.get(), self.write_timeout.get())
    }
}
