//! A thread's turn on this process's side of the queue (its producer or its consumer),
//! taken by a deadline: a put or get that waits holds its side for as long as it waits,
//! and another thread's timed or non-blocking call must not wait behind it past its own
//! deadline (a `std::sync::Mutex` has no timed lock).
//!
//! A futex word, as in a `std::sync::Mutex` (Drepper's "Futexes are tricky", mutex 2):
//! [`FREE`], [`HELD`], or [`CONTENDED`] once a thread may sleep on it. Taking a free turn
//! is one `compare_exchange` and giving it back one `swap`, as on every put and get of a
//! single-threaded user; only a turn given back [`CONTENDED`] wakes a sleeper (a system
//! call). A sleeper naps with the time its deadline leaves, on a private futex (the word
//! is this process's own memory).

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use rustix::thread::futex;
use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

const FREE: u32 = 0;
const HELD: u32 = 1;
const CONTENDED: u32 = 2;

/// A value that one thread at a time uses, each taking its turn by a deadline.
pub(crate) struct Local<T> {
    state: AtomicU32,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a `LocalTurn`, and the turn is held by one
// thread at a time (`take` returns one only from a `compare_exchange` or `swap` that
// took the word from `FREE`), so sharing a `Local` shares `T` between threads only one
// at a time: `T: Send` suffices, as for `std::sync::Mutex`.
unsafe impl<T: Send> Sync for Local<T> {}

/// A thread's turn on a [`Local`], given back on drop.
pub(crate) struct LocalTurn<'a, T> {
    local: &'a Local<T>,
}

impl<T> Local<T> {
    pub(crate) fn new(value: T) -> Local<T> {
        Local {
            state: AtomicU32::new(FREE),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the turn by `deadline`: [`Error::WouldBlock`] (`Deadline::Now`) or
    /// [`Error::Timeout`] if another thread holds it until then.
    pub(crate) fn take(&self, deadline: Deadline) -> Result<LocalTurn<'_, T>> {
        // Acquire: what the last holder did to the value happens before our use of it.
        if self
            .state
            .compare_exchange(FREE, HELD, Acquire, Relaxed)
            .is_ok()
        {
            return Ok(LocalTurn { local: self });
        }
        // Marked contended from here on, so that the holder's release wakes a sleeper;
        // taken with the mark (others may sleep too), the turn wakes one when given back.
        while self.state.swap(CONTENDED, Acquire) != FREE {
            let left = deadline.remaining();
            let timeout = match left {
                Some(left) if left.is_zero() => {
                    return Err(match deadline {
                        Deadline::Now => Error::WouldBlock,
                        _ => Error::Timeout,
                    })
                }
                Some(left) => Some(futex::Timespec {
                    tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
                    tv_nsec: left.subsec_nanos() as i64,
                }),
                None => None,
            };
            match futex::wait(
                &self.state,
                futex::Flags::PRIVATE,
                CONTENDED,
                timeout.as_ref(),
            ) {
                Ok(())
                | Err(
                    rustix::io::Errno::AGAIN
                    | rustix::io::Errno::INTR
                    | rustix::io::Errno::TIMEDOUT,
                ) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(LocalTurn { local: self })
    }
}

impl<T> Drop for LocalTurn<'_, T> {
    fn drop(&mut self) {
        // Release: our use of the value happens before the next holder's.
        if self.local.state.swap(FREE, Release) == CONTENDED {
            let _ = futex::wake(&self.local.state, futex::Flags::PRIVATE, 1);
        }
    }
}

impl<T> Deref for LocalTurn<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this turn is the only one (see `Local`'s `Sync`), for as long as it
        // lives, which the borrow of `self` bounds.
        unsafe { &*self.local.value.get() }
    }
}

impl<T> DerefMut for LocalTurn<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through it.
        unsafe { &mut *self.local.value.get() }
    }
}
