//! A `u64` in `MAP_SHARED` anonymous memory: one page that a forked child shares with
//! its parent, for counters and flags the tests (and the ping-pong benchmark) need on
//! both sides of a fork.

use std::sync::atomic::AtomicU64;

/// An `AtomicU64` in a page of its own, shared with children forked after it is made.
pub struct SharedWord(*mut AtomicU64);

impl SharedWord {
    pub fn new() -> SharedWord {
        // SAFETY: a fresh anonymous shared mapping of one page; unmapped on drop.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        SharedWord(p as *mut AtomicU64)
    }

    pub fn get(&self) -> &AtomicU64 {
        // SAFETY: the page is mapped for the life of `self`, page aligned and
        // zero-initialised, a valid `AtomicU64`.
        unsafe { &*self.0 }
    }
}

impl Drop for SharedWord {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped; no reference from `get` outlives `self`.
        unsafe { libc::munmap(self.0 as *mut libc::c_void, 4096) };
    }
}
