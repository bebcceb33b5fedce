//! The ring and wake-up protocols of `src/shm/ring/` and `src/shm/wakeup.rs`, as a model that
//! a checker runs over many interleavings: one producer, one consumer, a ring of `SLOTS`
//! records, `MESSAGES` messages, then the producer's end closes. Included by
//! `model/tests/loom_ring.rs` (exhaustive up to a preemption bound, weak memory) and
//! `model/tests/shuttle_ring.rs` (random schedules, larger runs), which supply `super::rt`.
//!
//! The model keeps the real code's structure (own index, cached copy of the other's,
//! publish by a release store (writer) or compare-exchange (reader), announce / re-check
//! / sleep, ring only a raised flag) with
//! records reduced to one slot each. The doorbells (socket halves) and the peer's death
//! (`POLLHUP` on them) are kernel objects whose state the kernel keeps
//! under a lock; they are modelled as such, with a `Mutex` and a `Condvar`.
//!
//! Every odd-numbered message is a long one whose writer gives up after its first
//! fragment (a timeout, or a dropped async send): it writes `FIRST` while keeping one
//! slot free, then `CANCEL` into that slot without waiting (`CANCEL_ROOM` in the real
//! producer). Even-numbered messages travel whole.
//!
//! Checked: whole messages arrive in order, exactly once; a cancelled message is never
//! delivered and a cancel never loses the next message; the cancel never waits for room;
//! EOF only after the last message; no lost wake-up (a sleeper never woken is a
//! deadlock, which both checkers report); and, under loom, no payload read before it is
//! whole or overwritten before it is read (the slots are loom `UnsafeCell`s, so either
//! would be a data race).

use super::rt::atomic::{fence, AtomicU32, AtomicU64, Ordering::*};
use super::rt::{check, thread, Arc, Condvar, Mutex, UnsafeCell};

pub fn config() -> (u64, u64) {
    let get = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    (
        get("SHMPIPE_MODEL_MESSAGES", 3),
        get("SHMPIPE_MODEL_SLOTS", 2),
    )
}

struct Ring {
    head: AtomicU64,
    tail: AtomicU64,
    reader_sleeping: AtomicU32,
    writer_sleeping: AtomicU32,
    slots: Vec<UnsafeCell<u64>>,
    /// The reader's `poll` set: its data doorbell, which hangs up when the writer goes.
    data_bell: Bell,
    /// The writer's: space doorbell (its peer never closes in this model).
    space_bell: Bell,
}

/// A doorbell: readable after `ring` (drained by the waiter), and hung up after `close`.
struct Bell {
    state: Mutex<(bool, bool)>, // (rung, peer closed)
    cv: Condvar,
}

impl Bell {
    fn new() -> Bell {
        Bell {
            state: Mutex::new((false, false)),
            cv: Condvar::new(),
        }
    }

    fn ring(&self) {
        self.state.lock().unwrap().0 = true;
        self.cv.notify_one();
    }

    fn close(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_one();
    }

    /// `poll` on both: returns (draining the doorbell) once it was rung or the peer is
    /// gone; returns whether the peer is gone.
    fn sleep(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        while !s.0 && !s.1 {
            s = self.cv.wait(s).unwrap();
        }
        s.0 = false;
        s.1
    }
}

/// After a publish: ring the other side only if its flag was raised (`wake_needed`).
fn wake_if_sleeping(flag: &AtomicU32, bell: &Bell) {
    // publish → flag load. The reader's `compare_exchange` is a full fence itself. The
    // writer's store is followed by `fence::after_publish`: a SeqCst fence, or (in a
    // process registered for `membarrier`) a compiler fence, the CPU's part being the
    // barrier that the sleeping reader's `membarrier(2)` runs on the writer's CPU. A
    // checker cannot run that system call; it checks the protocol with the fence it
    // stands for (src/shm/fence.rs argues the equivalence).
    fence(SeqCst);
    if flag.load(SeqCst) != 0 && flag.swap(0, SeqCst) != 0 {
        bell.ring();
    }
}

/// Record kinds, in the low bits of a slot's value (`message * 4 + kind`).
const WHOLE: u64 = 1;
const FIRST: u64 = 2;
const CANCEL: u64 = 3;

struct Producer<'r> {
    ring: &'r Ring,
    slots: u64,
    /// The producer's own index, as in ring.rs.
    head: u64,
    cached_tail: u64,
    recheck: bool,
}

impl Producer<'_> {
    fn free(&self) -> u64 {
        self.slots - (self.head - self.cached_tail)
    }

    /// Waits until `need` slots are free: cached tail first, reload when it says no,
    /// announce, re-check and sleep when really full.
    fn reserve(&mut self, need: u64) {
        let ring = self.ring;
        while self.free() < need {
            self.cached_tail = ring.tail.load(SeqCst);
            if self.free() >= need {
                break;
            }
            ring.writer_sleeping.store(1, SeqCst);
            fence(SeqCst); // raise flag → re-check
            self.cached_tail = ring.tail.load(SeqCst);
            if self.recheck && self.free() >= need {
                ring.writer_sleeping.store(0, SeqCst);
                break;
            }
            ring.space_bell.sleep();
            ring.writer_sleeping.store(0, SeqCst);
        }
    }

    /// Writes the record into a reserved slot, then publishes it.
    fn publish(&mut self, value: u64) {
        let ring = self.ring;
        assert!(self.free() >= 1, "writing into a slot that is not free");
        ring.slots[(self.head % self.slots) as usize].with_mut(|p| unsafe { *p = value });
        // As `Producer::publish`: check that `head` is still ours, then a release store.
        assert_eq!(ring.head.load(Relaxed), self.head, "single producer");
        ring.head.store(self.head + 1, Release);
        self.head += 1;
        wake_if_sleeping(&ring.reader_sleeping, &ring.data_bell);
    }
}

fn producer(ring: &Ring, messages: u64, slots: u64, recheck: bool) {
    let mut p = Producer {
        ring,
        slots,
        head: 0,
        cached_tail: 0,
        recheck,
    };
    for m in 0..messages {
        if m % 2 == 0 {
            p.reserve(1);
            p.publish(m * 4 + WHOLE);
        } else {
            // A long message: its first fragment keeps one slot free for the cancel...
            p.reserve(2);
            p.publish(m * 4 + FIRST);
            // ...and the writer gives up: the cancel goes into that slot at once.
            p.publish(m * 4 + CANCEL);
        }
    }
    // The last descriptor of the writer's socket closes: the kernel reports POLLHUP.
    ring.data_bell.close();
}

fn consumer(ring: &Ring, messages: u64, slots: u64) {
    let mut tail = 0u64;
    let mut cached_head = 0u64;
    let mut next = 0u64; // the next whole message expected
    let mut partial = None; // a long message whose first fragment was taken
    let mut delivered = 0u64;
    loop {
        if tail == cached_head {
            cached_head = ring.head.load(SeqCst);
        }
        if tail < cached_head {
            let v = ring.slots[(tail % slots) as usize].with(|p| unsafe { *p });
            let (m, kind) = (v / 4, v % 4);
            match kind {
                WHOLE => {
                    assert_eq!(partial, None, "a whole message inside a long one");
                    assert_eq!(m, next, "messages arrive in order, exactly once");
                    next += 2;
                    delivered += 1;
                }
                FIRST => {
                    assert_eq!(partial, None);
                    partial = Some(m);
                }
                CANCEL => {
                    assert_eq!(partial, Some(m), "a cancel for the message in progress");
                    partial = None; // dropped, never delivered
                }
                _ => panic!("a slot read before it was written: {v}"),
            }
            ring.tail
                .compare_exchange(tail, tail + 1, SeqCst, SeqCst)
                .expect("single consumer");
            tail += 1;
            wake_if_sleeping(&ring.writer_sleeping, &ring.space_bell);
            continue;
        }
        ring.reader_sleeping.store(1, SeqCst);
        fence(SeqCst); // raise flag → re-check
        cached_head = ring.head.load(SeqCst);
        if tail < cached_head {
            ring.reader_sleeping.store(0, SeqCst);
            continue;
        }
        let peer_gone = ring.data_bell.sleep();
        ring.reader_sleeping.store(0, SeqCst);
        if peer_gone {
            // PeerGone: one more look, then EOF.
            cached_head = ring.head.load(SeqCst);
            if tail < cached_head {
                continue;
            }
            break;
        }
    }
    assert_eq!(partial, None, "EOF inside a message");
    assert_eq!(
        delivered,
        messages.div_ceil(2),
        "EOF only after the last message"
    );
}

/// Runs the model (with or without the re-check after raising a flag) under the
/// checker `super::rt::check`.
pub fn model(recheck: bool) {
    let (messages, slots) = config();
    check(move || {
        let ring = Arc::new(Ring {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            reader_sleeping: AtomicU32::new(0),
            writer_sleeping: AtomicU32::new(0),
            slots: (0..slots).map(|_| UnsafeCell::new(0)).collect(),
            data_bell: Bell::new(),
            space_bell: Bell::new(),
        });
        let r = ring.clone();
        let reader = thread::spawn(move || consumer(&r, messages, slots));
        producer(&ring, messages, slots, recheck);
        reader.join().unwrap();
    });
}
