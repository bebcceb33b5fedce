//! The ring and wake-up protocols (`model/tests/model/protocol.rs`) under shuttle: many random
//! schedules (PCT) of larger runs than loom can explore exhaustively, under sequential
//! consistency. A deadlock it reports is a real lost wake-up; an assertion, a lost,
//! repeated or reordered message or an early EOF.
//!
//! `cargo test -p shmpipe-model --test shuttle_ring` runs 16 messages through 3 slots, 2000 schedules
//! (part of `cargo test`). Larger:
//! `SHMPIPE_MODEL_MESSAGES=64 SHMPIPE_MODEL_SLOTS=4 SHMPIPE_SHUTTLE_ITERATIONS=200000 cargo test -p shmpipe-model --release --test shuttle_ring`

mod rt {
    pub use shuttle::sync::{atomic, Arc, Condvar, Mutex};
    pub use shuttle::thread;

    /// Shuttle does not track data races; the slots are plain cells here (loom checks
    /// the payload accesses).
    pub struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    // SAFETY: shuttle runs one thread at a time; the protocol under test is what keeps
    // the two sides off the same slot, and loom checks that part.
    unsafe impl<T: Send> Sync for UnsafeCell<T> {}

    impl<T> UnsafeCell<T> {
        pub fn new(v: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(v))
        }
        pub fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }
        pub fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    pub fn check(f: impl Fn() + Sync + Send + 'static) {
        let iterations = std::env::var("SHMPIPE_SHUTTLE_ITERATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        shuttle::check_pct(f, iterations, 3);
    }
}

#[path = "model/protocol.rs"]
mod protocol;

#[test]
fn ring_and_wakeup_protocol_hold_in_random_schedules() {
    if std::env::var_os("SHMPIPE_MODEL_MESSAGES").is_none() {
        std::env::set_var("SHMPIPE_MODEL_MESSAGES", "16");
        std::env::set_var("SHMPIPE_MODEL_SLOTS", "3");
    }
    protocol::model(true);
}

/// Shuttle finds the lost wake-up of the broken variant (no re-check after raising the
/// flag) in random schedules too.
#[test]
#[should_panic(expected = "deadlock")]
fn a_missing_recheck_is_caught() {
    if std::env::var_os("SHMPIPE_MODEL_MESSAGES").is_none() {
        std::env::set_var("SHMPIPE_MODEL_MESSAGES", "16");
        std::env::set_var("SHMPIPE_MODEL_SLOTS", "3");
    }
    protocol::model(false);
}
