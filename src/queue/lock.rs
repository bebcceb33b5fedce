//! The queue's two locks (producers', consumers'): a futex word holding its holder's
//! member token, which a waiter takes over when the holder is gone (killed, crashed)
//! however it went, and which a live holder stalls for as long as it holds it.
//!
//! Taking it is one `compare_exchange` when it is free. A waiter marks the word
//! [`CONTENDED`] and sleeps on it (a shared futex: the word is in another process's
//! mapping too), at most [`LOOK_AGAIN`] at a time; each time it wakes without the lock
//! it asks `crate::queue::members` whether the holder the word names is alive, and if not
//! takes the word over from that exact value (a `compare_exchange`, so of two waiters
//! that both saw the holder gone one wins). The releaser swaps the word to
//! [`NOBODY`] and wakes one sleeper if the word was marked.
//!
//! Whoever takes a lock over from a dead holder is told so ([`Taken::FromTheDead`]): what
//! the lock protects may be half done, and the caller repairs it (the ring's indices are
//! resynchronized from what was published).

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::queue::control::Control;
use crate::queue::members::{Member, CONTENDED, NOBODY};
use rustix::thread::futex;
use std::sync::atomic::{AtomicU32, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::time::Duration;

/// The longest a waiter sleeps before it looks at the holder's liveness again: how long
/// a dead holder can keep the others waiting.
pub(crate) const LOOK_AGAIN: Duration = Duration::from_millis(20);

/// How the lock was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// From a holder that released it.
    Clean,
    /// From a holder that is gone, part-way through whatever it was doing.
    FromTheDead,
}

/// Takes `word` for `me` by `deadline`. `Err(Timeout)` / `Err(WouldBlock)` when the
/// deadline passes first.
pub(crate) fn lock(
    word: &AtomicU32,
    me: &Member,
    control: &Control,
    deadline: Deadline,
) -> Result<Taken> {
    if word
        .compare_exchange(NOBODY, me.token, Acquire, Relaxed)
        .is_ok()
    {
        return Ok(Taken::Clean);
    }
    // Whether to ask the kernel about the holder: after a nap that nobody cut short,
    // and before giving up. A holder that releases wakes us, so a live one costs no
    // system call beyond the futex's.
    let mut suspect = false;
    loop {
        let held = word.load(Relaxed);
        if held == NOBODY {
            // Taken with the mark: others may be asleep, and our release must wake one.
            if word
                .compare_exchange(NOBODY, me.token | CONTENDED, Acquire, Relaxed)
                .is_ok()
            {
                return Ok(Taken::Clean);
            }
            continue;
        }
        if held & !CONTENDED == me.token {
            return Err(Error::Invalid(
                "this process holds the queue's turn already (a put or get re-entered)".into(),
            ));
        }
        let gives_up = match deadline {
            Deadline::Now => true,
            Deadline::At(_) => deadline.passed(),
            Deadline::Never => false,
        };
        if (suspect || gives_up) && !me.may_be_alive(control, held)? {
            if word
                .compare_exchange(held, me.token | CONTENDED, Acquire, Relaxed)
                .is_ok()
            {
                return Ok(Taken::FromTheDead);
            }
            continue;
        }
        if gives_up {
            return Err(match deadline {
                Deadline::Now => Error::WouldBlock,
                _ => Error::Timeout,
            });
        }
        if held & CONTENDED == 0
            && word
                .compare_exchange(held, held | CONTENDED, Relaxed, Relaxed)
                .is_err()
        {
            continue;
        }
        let nap = deadline
            .remaining()
            .map_or(LOOK_AGAIN, |left| left.min(LOOK_AGAIN));
        suspect = sleep_while(word, held | CONTENDED, nap)?;
    }
}

/// Releases `word`, which `me` holds, and wakes one sleeper if any may sleep.
pub(crate) fn unlock(word: &AtomicU32) {
    if word.swap(NOBODY, Release) & CONTENDED != 0 {
        let _ = futex::wake(word, futex::Flags::empty(), 1);
    }
}

/// Sleeps on `word` while it holds `value`, for at most `nap` (a shared futex: no
/// `FUTEX_PRIVATE_FLAG`, the word is in a mapping other processes share). Returns
/// whether the nap ran its whole length (nobody woke us, the word did not change). A
/// signal that interrupts the nap ends the call where the process asked for that
/// (`crate::deadline::on_signal`), as every other wait of the library does.
pub(crate) fn sleep_while(word: &AtomicU32, value: u32, nap: Duration) -> Result<bool> {
    let timeout = futex::Timespec {
        tv_sec: nap.as_secs() as i64,
        tv_nsec: nap.subsec_nanos() as i64,
    };
    match futex::wait(word, futex::Flags::empty(), value, Some(&timeout)) {
        Err(rustix::io::Errno::TIMEDOUT) => Ok(true),
        Err(rustix::io::Errno::INTR) => match crate::deadline::on_signal() {
            Some(e) => Err(e),
            None => Ok(false),
        },
        Ok(()) | Err(rustix::io::Errno::AGAIN) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
