//! A forked peer process for the benchmarks (`transfer`, `connected`): it runs a closure
//! for every count the parent writes to its control pipe, and exits when that closes.

use std::io::{Read, Write};

/// A forked peer process, told what to do through a control pipe; it exits when the
/// control pipe closes.
pub struct Peer {
    pid: libc::pid_t,
    control: Option<std::io::PipeWriter>,
}

impl Peer {
    /// Forks a peer that runs `serve(count)` for every count written to the control pipe.
    pub fn spawn(mut serve: impl FnMut(u64)) -> Peer {
        let (mut r, w) = std::io::pipe().unwrap();
        // SAFETY: the child only runs `serve` and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            drop(w);
            let mut n = [0u8; 8];
            while r.read_exact(&mut n).is_ok() {
                serve(u64::from_ne_bytes(n));
            }
            // SAFETY: leaves the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
        Peer {
            pid,
            control: Some(w),
        }
    }

    pub fn go(&mut self, count: u64) {
        self.control
            .as_mut()
            .unwrap()
            .write_all(&count.to_ne_bytes())
            .unwrap();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        drop(self.control.take());
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
    }
}
