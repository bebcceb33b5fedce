//! The ring and wake-up protocols (`model/tests/model/protocol.rs`) under loom: every
//! interleaving up to a preemption bound, with loom's model of weak memory and data-race
//! detection on the payload slots.
//!
//! Loom treats `SeqCst` loads and stores as `AcqRel`, but models `fence(SeqCst)`. So at
//! the places where the real code orders a store before a load of another location
//! (raise flag → re-check index; publish index → check flag) the model puts a `SeqCst`
//! fence between them. The real reader uses `SeqCst` operations there; the real writer
//! publishes `head` with a release store followed by `fence::after_publish`, which is
//! that fence, or, in a process registered for `membarrier(2)`, a compiler fence whose
//! CPU half the sleeping reader's `membarrier` supplies (src/shm/fence.rs gives the
//! argument; a checker cannot run the system call).
//!
//! The bound is 3 preemptions. At 4, loom 0.7.2 reports a lost wake-up in an execution
//! that C11 forbids: the writer's `store(flag, 1); fence; load(tail)` reads the old tail
//! while the reader's `cas(tail); fence; load(flag)` reads a flag value older than that
//! store — whichever fence is first in the SC order, one of the two loads must see the
//! other's write. (Its README lists its `SeqCst` support as incomplete.) Larger runs are
//! checked under sequential consistency by `model/tests/shuttle_ring.rs`.
//!
//! `cargo test -p shmpipe-model --test loom_ring` runs 3 messages through 2 slots (part of `cargo test`);
//! `SHMPIPE_MODEL_MESSAGES=8 SHMPIPE_MODEL_SLOTS=3 cargo test -p shmpipe-model --release --test loom_ring`
//! is the larger configuration.

mod rt {
    pub use loom::cell::UnsafeCell;
    pub use loom::sync::{atomic, Arc, Condvar, Mutex};
    pub use loom::thread;

    pub fn check(f: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(builder.preemption_bound.unwrap_or(3).min(3));
        builder.check(f);
    }
}

#[path = "model/protocol.rs"]
mod protocol;

#[test]
fn ring_and_wakeup_protocol_hold_in_every_interleaving() {
    protocol::model(true);
}

/// The model can fail: without the re-check after raising the flag, a wake-up is lost
/// and loom finds the interleaving where both sides sleep forever. (Loom aborts the
/// process after reporting a deadlock, so this runs the broken model in a child process:
/// this same test binary, with `SHMPIPE_MODEL_BROKEN` set.)
#[test]
fn a_missing_recheck_is_caught() {
    if std::env::var_os("SHMPIPE_MODEL_BROKEN").is_some() {
        protocol::model(false);
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_missing_recheck_is_caught",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SHMPIPE_MODEL_BROKEN", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the broken model passed");
    assert!(
        stderr.contains("deadlock"),
        "loom did not report the lost wake-up:\n{stderr}"
    );
}
