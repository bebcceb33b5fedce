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
    /// Whether a thread holds the turn, and how many wait for it.
    state: Mutex<State>,
    freed: Condvar,
}

#[derive(Default)]
struct State {
    busy: bool,
    /// Threads waiting on `freed`: a turn given back wakes one only if there is one (a
    /// `Condvar::notify_one` is a system call even when nobody waits).
    waiting: usize,
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
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
        }
    }

    /// Takes the turn by `deadline`: [`Error::WouldBlock`] (`Deadline::Now`) or
    /// [`Error::Timeout`] if another thread holds it until then.
    pub(crate) fn take(&self, deadline: Deadline) -> Result<LocalTurn<'_, T>> {
        let mut state = lock_local(&self.state);
        while state.busy {
            let left = deadline.remaining();
            if left.is_some_and(|left| left.is_zero()) {
                return Err(match deadline {
                    Deadline::Now => Error::WouldBlock,
                    _ => Error::Timeout,
                });
            }
            state.waiting += 1;
            state = match left {
                None => self.freed.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(left) => {
                    let waited = self.freed.wait_timeout(state, left);
                    waited.unwrap_or_else(|p| p.into_inner()).0
                }
            };
            state.waiting -= 1;
        }
        state.busy = true;
        drop(state);
        Ok(LocalTurn {
            local: self,
            value: lock_local(&self.value),
        })
    }
}

impl<T> Drop for LocalTurn<'_, T> {
    fn drop(&mut self) {
        let mut state = lock_local(&self.local.state);
        state.busy = false;
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.local.freed.notify_one();
        }
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
