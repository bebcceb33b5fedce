//! A thread's turn on this process's side of the queue (its producer or its consumer),
//! taken by a deadline: a put or get that waits holds its side for as long as it waits,
//! and another thread's timed or non-blocking call must not wait behind it past its own
//! deadline (a `std::sync::Mutex` has no timed lock).
//!
//! The turn is the side's mutex itself, taken with `try_lock`: one locked instruction
//! when nobody holds it, as on every put and get of a single-threaded user. A thread
//! that finds it held counts itself as waiting and sleeps on a condition variable, which
//! a thread giving the turn back signals only when someone is counted (a signal is a
//! system call even when nobody waits). No wake-up is lost: the waiter counts itself
//! before it tries again, and the giver fences between its unlock and its look at the
//! count, so either the try sees the mutex free or the giver sees the count.

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{fence, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, MutexGuard, TryLockError};

/// A value that one thread at a time uses, each taking its turn by a deadline.
pub(crate) struct Local<T> {
    value: Mutex<T>,
    /// Threads waiting for the turn.
    waiting: AtomicUsize,
    /// Held by a waiter from its count to its sleep, and by a giver to signal.
    gate: Mutex<()>,
    freed: Condvar,
}

/// A thread's turn on a [`Local`], given back on drop.
pub(crate) struct LocalTurn<'a, T> {
    local: &'a Local<T>,
    /// `None` only inside `drop`.
    value: Option<MutexGuard<'a, T>>,
}

/// Locks `m`; a thread that panicked holding it left nothing half done that the next
/// holder does not resynchronize (the ring sides resync with what was published).
pub(crate) fn lock_local<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T> Local<T> {
    pub(crate) fn new(value: T) -> Local<T> {
        Local {
            value: Mutex::new(value),
            waiting: AtomicUsize::new(0),
            gate: Mutex::new(()),
            freed: Condvar::new(),
        }
    }

    /// Takes the turn by `deadline`: [`Error::WouldBlock`] (`Deadline::Now`) or
    /// [`Error::Timeout`] if another thread holds it until then.
    pub(crate) fn take(&self, deadline: Deadline) -> Result<LocalTurn<'_, T>> {
        if let Some(value) = self.try_value() {
            return Ok(LocalTurn {
                local: self,
                value: Some(value),
            });
        }
        let mut gate = lock_local(&self.gate);
        self.waiting.fetch_add(1, SeqCst);
        let taken = loop {
            if let Some(value) = self.try_value() {
                break Ok(value);
            }
            gate = match deadline.remaining() {
                Some(left) if left.is_zero() => {
                    break Err(match deadline {
                        Deadline::Now => Error::WouldBlock,
                        _ => Error::Timeout,
                    })
                }
                None => self.freed.wait(gate).unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    let waited = self.freed.wait_timeout(gate, left);
                    waited.unwrap_or_else(|p| p.into_inner()).0
                }
            };
        };
        self.waiting.fetch_sub(1, SeqCst);
        drop(gate);
        taken.map(|value| LocalTurn {
            local: self,
            value: Some(value),
        })
    }

    fn try_value(&self) -> Option<MutexGuard<'_, T>> {
        match self.value.try_lock() {
            Ok(value) => Some(value),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

impl<T> Drop for LocalTurn<'_, T> {
    fn drop(&mut self) {
        drop(self.value.take());
        // Our unlock before our look at the count (see the module's comment).
        fence(SeqCst);
        if self.local.waiting.load(SeqCst) > 0 {
            let _gate = lock_local(&self.local.gate);
            self.local.freed.notify_one();
        }
    }
}

impl<T> Deref for LocalTurn<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_deref().expect("held until drop")
    }
}

impl<T> DerefMut for LocalTurn<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_deref_mut().expect("held until drop")
    }
}
