//! The floor of any round trip between two processes: one cache line (a [`SharedWord`])
//! bounced between them and nothing else. Used by the `transfer` and `limits` benches.

use crate::shared_word::SharedWord;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The peer's side of `count` bounces: waits for each odd value, answers with the next.
pub fn answer(line: &SharedWord, count: u64) {
    for i in 0..count {
        while line.get().load(Ordering::Acquire) != 2 * i + 1 {
            std::hint::spin_loop();
        }
        line.get().store(2 * i + 2, Ordering::Release);
    }
}

/// The measuring side of `iters` bounces; `go(iters)` tells the peer to run
/// [`answer`] for as many. Returns the time they took.
pub fn bounce(line: &SharedWord, iters: u64, go: impl FnOnce(u64)) -> Duration {
    line.get().store(0, Ordering::Release);
    go(iters);
    let start = Instant::now();
    for i in 0..iters {
        line.get().store(2 * i + 1, Ordering::Release);
        while line.get().load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    start.elapsed()
}
