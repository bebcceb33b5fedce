//! The model check of the ring code itself: loom runs the real [`Producer`] and
//! [`Consumer`] (reserve, fill, commit and publish; peek, copy out, release; the
//! sleeping flags, `take_flag`, `announce`, the `WATCHING` request and the writer's
//! `writer_fences` answer) over every interleaving up to a preemption bound, with its
//! model of weak memory on the control block (`crate::shm::sync`).
//!
//! What loom cannot run is replaced by what it stands for: the doorbells (sockets,
//! whose state the kernel keeps under a lock) by a `Mutex` and a `Condvar`, and the
//! writer's compiler fence, whose CPU half is the sleeping reader's `membarrier`, by a
//! full fence (`crate::shm::sync::compiler_fence`). The sleep around them is the one
//! `shm::wakeup::wait` does: announce, re-check, sleep until rung, lower the flag.
//!
//! Checked: messages arrive whole and in order; neither side sleeps through a wake-up
//! (a sleeper never woken is a deadlock, which loom reports), whether the reader sleeps
//! only when it must or announces itself after every message as a watched `fileno`
//! does.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib shm::ring::model`
//! (`.ci/run` runs it); `SHMPIPE_LOOM_MESSAGES` sets how many messages (default 4, about a second; 6 takes
//! a few seconds).

use super::tests::{test_ring, TestRing};
use super::{Consumer, Producer};
use crate::shm::wire::Kind;
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use std::sync::atomic::Ordering::SeqCst;

/// Payload bytes per message: two fill the 4 KiB ring, so the writer waits for room,
/// and the third wraps around with padding.
const LEN: usize = 1500;

/// A doorbell: rung by one side, slept on by the other.
struct Bell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Bell {
    fn new() -> Bell {
        Bell {
            rung: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    fn ring(&self) {
        *self.rung.lock().unwrap() = true;
        self.cv.notify_one();
    }

    /// Returns once rung (draining the ring).
    fn sleep(&self) {
        let mut rung = self.rung.lock().unwrap();
        while !*rung {
            rung = self.cv.wait(rung).unwrap();
        }
        *rung = false;
    }
}

/// The ring and its doorbells, shared by the two threads.
struct Shared {
    ring: TestRing,
    data: Bell,
    space: Bell,
}

// SAFETY: the ring's memory lives as long as `Shared`, which both threads hold through
// an `Arc` until they are joined; each side of the ring is used by one thread only.
unsafe impl Send for Shared {}
// SAFETY: as above; the control block is atomics, the data is reached through the
// protocol's ordering.
unsafe impl Sync for Shared {}

/// A ring half moved to the thread that alone uses it.
struct Alone<T>(T);
// SAFETY: each half is made on the test thread and then used by one thread only.
unsafe impl<T> Send for Alone<T> {}

fn send_one(p: &Producer, bells: &Shared, msg: &[u8]) {
    loop {
        if let Some(grant) = p.reserve(msg.len(), 0).unwrap() {
            p.fill(&grant, 0, msg);
            if p.commit(grant, Kind::Whole, msg.len(), 0).unwrap() {
                bells.data.ring();
            }
            return;
        }
        // `wakeup::wait` for room: announce, re-check, sleep.
        p.announce();
        if !p.has_room(msg.len(), 0).unwrap() {
            bells.space.sleep();
        }
        p.sleeping_flag().store(0, SeqCst);
    }
}

fn recv_one(c: &Consumer, bells: &Shared, watching: bool) -> Vec<u8> {
    loop {
        if let Some(rec) = c.peek().unwrap() {
            let mut out = Vec::with_capacity(rec.len);
            c.append(&rec, &mut out);
            if c.release(&rec).unwrap() {
                bells.space.ring();
            }
            return out;
        }
        // `wakeup::wait` for a record: announce, re-check, sleep.
        c.announce(watching);
        // `SHMPIPE_LOOM_BROKEN`: sleep without the re-check, for the test that shows the
        // check can fail.
        if std::env::var_os("SHMPIPE_LOOM_BROKEN").is_some() || !c.has_data().unwrap() {
            bells.data.sleep();
        }
        c.sleeping_flag().store(0, SeqCst);
    }
}

fn check(watching: bool) {
    let messages: u8 = std::env::var("SHMPIPE_LOOM_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut builder = loom::model::Builder::new();
    // As in model/tests/loom_ring.rs: beyond 3, loom 0.7 reports executions C11 forbids.
    builder.preemption_bound = Some(builder.preemption_bound.unwrap_or(3).min(3));
    builder.check(move || {
        let shared = Arc::new(Shared {
            ring: test_ring(4096),
            data: Bell::new(),
            space: Bell::new(),
        });
        let p = Alone(Producer::new(shared.ring.ring));
        let c = Consumer::new(shared.ring.ring);
        let writer = {
            let shared = shared.clone();
            thread::spawn(move || {
                let p = p;
                for i in 0..messages {
                    send_one(&p.0, &shared, &[i; LEN]);
                }
            })
        };
        for i in 0..messages {
            assert_eq!(recv_one(&c, &shared, watching), [i; LEN]);
        }
        writer.join().unwrap();
    });
}

#[test]
fn the_ring_code_loses_no_message_and_no_wake_up() {
    check(false);
}

#[test]
fn a_watching_reader_and_a_writer_that_fences_lose_no_wake_up() {
    check(true);
}

/// The check can fail: a reader that sleeps without re-checking after it raised its flag
/// loses a wake-up, and loom finds the interleaving where both sides wait forever. (Loom
/// aborts the process after reporting a deadlock, so the broken run is a child process:
/// this test binary, with `SHMPIPE_LOOM_BROKEN` set.) Removing the writer's fence
/// instead is caught likewise (tried by hand: loom reports both threads blocked).
#[test]
fn a_missing_recheck_is_caught() {
    if std::env::var_os("SHMPIPE_LOOM_BROKEN").is_some() {
        check(false);
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "shm::ring::model::a_missing_recheck_is_caught",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SHMPIPE_LOOM_BROKEN", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the broken ring passed");
    assert!(
        stderr.contains("deadlock"),
        "loom did not report the lost wake-up:\n{stderr}"
    );
}
