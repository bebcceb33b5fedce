//! A thread's turn on this process's side of the queue (its producer or its consumer),
//! taken by a deadline: a put or get that waits holds its side for as long as it waits,
//! and another thread's timed or non-blocking call must not wait behind it past its own
//! deadline (a `std::sync::Mutex` has no timed lock).

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};

/// A value that one thread at a time uses, each taking its turn by a deadline.
pub(crate) struct Local<T> {
    /// The value; locked only by the thread that holds the turn, so never waited for.
    value: Mutex<T>,
    /// Whether a thread holds the turn.
    busy: Mutex<bool>,
    freed: Condvar,
}

/// A thread's turn on a [`Local`], given back on drop.
pub(crate) struct LocalTurn<'a, T> {
    local: &'a Local<T>,
    value: MutexGuard<'a, T>,
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
            busy: Mutex::new(false),
            freed: Condvar::new(),
        }
    }

    /// Takes the turn by `deadline`: [`Error::WouldBlock`] (`Deadline::Now`) or
    /// [`Error::Timeout`] if another thread holds it until then.
    pub(crate) fn take(&self, deadline: Deadline) -> Result<LocalTurn<'_, T>> {
        let mut busy = lock_local(&self.busy);
        while *busy {
            busy = match deadline.remaining() {
                None => self.freed.wait(busy).unwrap_or_else(|p| p.into_inner()),
                Some(left) if left.is_zero() => {
                    return Err(match deadline {
                        Deadline::Now => Error::WouldBlock,
                        _ => Error::Timeout,
                    })
                }
                Some(left) => {
                    let (b, _) = self
                        .freed
                        .wait_timeout(busy, left)
                        .unwrap_or_else(|p| p.into_inner());
                    b
                }
            };
        }
        *busy = true;
        drop(busy);
        Ok(LocalTurn {
            local: self,
            value: lock_local(&self.value),
        })
    }
}

impl<T> Drop for LocalTurn<'_, T> {
    fn drop(&mut self) {
        *lock_local(&self.local.busy) = false;
        self.local.freed.notify_one();
    }
}

impl<T> Deref for LocalTurn<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for LocalTurn<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}
