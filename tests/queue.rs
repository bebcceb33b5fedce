//! `Queue` between real processes: many producers and consumers, and participants that
//! die holding a turn or part-way through a put or a get (SIGKILL).

mod common;

use common::{fork, Exit, Rng};
use shmpipe::{Error, Queue};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};
use std::time::Duration;

/// A message: who put it, and its number in that producer's stream.
fn msg(producer: u64, seq: u64) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..8].copy_from_slice(&producer.to_le_bytes());
    m[8..].copy_from_slice(&seq.to_le_bytes());
    m
}

fn parse(m: &[u8]) -> (u64, u64) {
    assert_eq!(m.len(), 16, "a torn or foreign message");
    (
        u64::from_le_bytes(m[..8].try_into().unwrap()),
        u64::from_le_bytes(m[8..].try_into().unwrap()),
    )
}

/// Memory shared with forked children: `n` flags and a counter.
struct Shared {
    ptr: *mut u8,
    n: usize,
}

impl Shared {
    fn new(n: usize) -> Shared {
        // SAFETY: a fresh anonymous shared mapping; unmapped on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                n + 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Shared {
            ptr: ptr as *mut u8,
            n,
        }
    }

    fn flag(&self, i: usize) -> &AtomicU8 {
        assert!(i < self.n);
        // SAFETY: inside the zeroed mapping, which outlives `self`'s borrows.
        unsafe { &*(self.ptr.add(8 + i) as *const AtomicU8) }
    }

    fn counter(&self) -> &AtomicU64 {
        // SAFETY: the mapping's first 8 bytes, page aligned.
        unsafe { &*(self.ptr as *const AtomicU64) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.n + 8) };
    }
}

#[test]
fn every_message_of_many_producers_reaches_exactly_one_of_many_consumers_in_order() {
    const PRODUCERS: u64 = 3;
    const CONSUMERS: usize = 2;
    const N: u64 = 20_000;
    // Small, so that producers wait for room and consumers for data.
    let q = Queue::with_capacity(16 * 1024).unwrap();
    let mut reports = Vec::new();
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        let (here, there) = shmpipe::pipe(false).unwrap();
        let q = q.clone();
        consumers.push(fork(move || {
            let mut got = Vec::new();
            loop {
                let m = q.get_bytes().unwrap();
                if m.is_empty() {
                    break;
                }
                got.extend_from_slice(&m);
            }
            there.send_bytes(&got).unwrap();
            0
        }));
        reports.push(here);
    }
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            fork(move || {
                for seq in 0..N {
                    q.put_bytes(&msg(p, seq)).unwrap();
                }
                0
            })
        })
        .collect();
    for p in producers {
        p.join();
    }
    for _ in 0..CONSUMERS {
        q.put_bytes(b"").unwrap();
    }
    let mut seen = vec![vec![false; N as usize]; PRODUCERS as usize];
    for (report, consumer) in reports.iter().zip(consumers) {
        let got = report.recv_bytes().unwrap();
        consumer.join();
        let mut last = vec![None; PRODUCERS as usize];
        for m in got.chunks(16) {
            let (p, seq) = parse(m);
            assert!(
                last[p as usize] < Some(seq),
                "producer {p}'s messages out of order"
            );
            last[p as usize] = Some(seq);
            assert!(
                !seen[p as usize][seq as usize],
                "message {p}/{seq} delivered twice"
            );
            seen[p as usize][seq as usize] = true;
        }
    }
    for (p, s) in seen.iter().enumerate() {
        assert!(s.iter().all(|&x| x), "producer {p} lost messages");
    }
    assert!(q.is_empty());
}

#[test]
fn threads_of_one_process_share_a_queue_through_clones() {
    let q = Queue::with_capacity(8192).unwrap();
    let putters: Vec<_> = (0..4u64)
        .map(|p| {
            let q = q.clone();
            std::thread::spawn(move || {
                for seq in 0..5_000 {
                    q.put_bytes(&msg(p, seq)).unwrap();
                }
            })
        })
        .collect();
    let mut last = [None; 4];
    for _ in 0..20_000 {
        let (p, seq) = parse(&q.get_bytes().unwrap());
        assert!(last[p as usize] < Some(seq));
        last[p as usize] = Some(seq);
    }
    for t in putters {
        t.join().unwrap();
    }
    assert!(matches!(q.try_get_bytes(), Err(Error::WouldBlock)));
}

/// A child that takes a turn and dies holding it, by exiting or by SIGKILL: the parent
/// gets the turn within a few naps and goes on.
fn dies_holding(producers: bool, killed: bool) {
    let q = Queue::new().unwrap();
    q.put_bytes(b"before").unwrap();
    let (mut ready_r, mut ready_w) = std::io::pipe().unwrap();
    let child = {
        let q = q.clone();
        fork(move || {
            q.__take_turn_for_good(producers).unwrap();
            ready_w.write_all(b"!").unwrap();
            if killed {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
            0
        })
    };
    let mut b = [0u8];
    ready_r.read_exact(&mut b).unwrap();
    if killed {
        child.signal(libc::SIGKILL);
        assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    } else {
        child.join();
    }
    let long = Duration::from_secs(30);
    if producers {
        q.put_bytes_timeout(b"after", long).unwrap();
        assert_eq!(q.get_bytes_timeout(long).unwrap(), b"before");
        assert_eq!(q.get_bytes_timeout(long).unwrap(), b"after");
    } else {
        assert_eq!(q.get_bytes_timeout(long).unwrap(), b"before");
    }
}

#[test]
fn a_producer_that_exits_holding_the_turn_does_not_block_the_others() {
    dies_holding(true, false);
}

#[test]
fn a_producer_killed_holding_the_turn_does_not_block_the_others() {
    dies_holding(true, true);
}

#[test]
fn a_consumer_killed_holding_the_turn_does_not_block_the_others() {
    dies_holding(false, true);
}

/// The parent process of a forked child dies holding a turn while the child, which
/// never used the queue, lives on: the child must not keep the parent looking alive.
#[test]
fn a_forked_child_that_never_used_the_queue_does_not_keep_a_dead_holder_alive() {
    let q = Queue::new().unwrap();
    q.put_bytes(b"waiting").unwrap();
    let (mut ready_r, mut ready_w) = std::io::pipe().unwrap();
    let holder = {
        let q = q.clone();
        fork(move || {
            q.__take_turn_for_good(false).unwrap();
            // A child of the holder that keeps running, never touching the queue.
            let bystander = fork(|| loop {
                std::thread::sleep(Duration::from_secs(1));
            });
            ready_w.write_all(&bystander.pid.to_le_bytes()).unwrap();
            std::mem::forget(bystander);
            0
        })
    };
    let mut pid = [0u8; 4];
    ready_r.read_exact(&mut pid).unwrap();
    holder.join();
    let got = q.get_bytes_timeout(Duration::from_secs(30));
    // SAFETY: the bystander is our grandchild; init reaps it.
    unsafe { libc::kill(libc::pid_t::from_le_bytes(pid), libc::SIGKILL) };
    assert_eq!(got.unwrap(), b"waiting");
}

/// SIGKILL rounds: a consumer child is killed at a random point of a stream of gets;
/// every message is then got by the parent or was got by the child (which marks each
/// one it got), none twice, in order, and at most the one the child was finishing when
/// it died is unaccounted for.
#[test]
fn a_consumer_killed_at_any_point_loses_at_most_the_message_it_was_getting() {
    const N: usize = 3_000;
    let rounds = std::env::var("SHMPIPE_QUEUE_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut rng = Rng(0x5eed);
    for round in 0..rounds {
        let q = Queue::with_capacity(1 << 20).unwrap();
        for seq in 0..N as u64 {
            q.put_bytes(&msg(0, seq)).unwrap();
        }
        let marks = Shared::new(N);
        let child = {
            let q = q.clone();
            let marks = &marks;
            fork(move || loop {
                let (_, seq) = parse(&q.get_bytes().unwrap());
                marks.flag(seq as usize).store(1, SeqCst);
                marks.counter().fetch_add(1, SeqCst);
            })
        };
        let kill_after = rng.below(N as u64 - 1);
        while marks.counter().load(SeqCst) < kill_after {
            std::hint::spin_loop();
        }
        child.signal(libc::SIGKILL);
        assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
        let mut last = None;
        let mut mine = vec![false; N];
        while let Ok(m) = q.get_bytes_timeout(Duration::from_millis(200)) {
            let (_, seq) = parse(&m);
            assert!(last < Some(seq), "round {round}: out of order");
            last = Some(seq);
            mine[seq as usize] = true;
        }
        let mut missing = 0;
        for (seq, got) in mine.iter().enumerate() {
            let theirs = marks.flag(seq).load(SeqCst) == 1;
            assert!(
                !(theirs && *got),
                "round {round}: message {seq} delivered twice"
            );
            if !theirs && !*got {
                missing += 1;
            }
        }
        assert!(missing <= 1, "round {round}: {missing} messages lost");
        // Whatever the child was doing when it died, the counts agree with the ring.
        assert_eq!(q.len(), 0, "round {round}");
    }
}

/// SIGKILL rounds for a producer: every message whose put returned arrives, in order,
/// none twice; at most the one being put when it died is lost or arrives unmarked.
#[test]
fn a_producer_killed_at_any_point_loses_at_most_the_message_it_was_putting() {
    const N: usize = 3_000;
    let mut rng = Rng(0xfeed);
    for round in 0..20 {
        let q = Queue::with_capacity(1 << 20).unwrap();
        let marks = Shared::new(N);
        let child = {
            let q = q.clone();
            let marks = &marks;
            fork(move || {
                for seq in 0..N as u64 {
                    q.put_bytes(&msg(0, seq)).unwrap();
                    marks.flag(seq as usize).store(1, SeqCst);
                    marks.counter().fetch_add(1, SeqCst);
                }
                loop {
                    std::hint::spin_loop();
                }
            })
        };
        let kill_after = rng.below(N as u64);
        while marks.counter().load(SeqCst) < kill_after {
            std::hint::spin_loop();
        }
        child.signal(libc::SIGKILL);
        assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
        let put = marks.counter().load(SeqCst) as usize;
        let mut next = 0;
        while let Ok(m) = q.try_get_bytes() {
            let (_, seq) = parse(&m);
            assert_eq!(seq, next, "round {round}: lost, repeated or out of order");
            next += 1;
        }
        // Everything whose put returned, and at most the one it was putting.
        assert!(
            next as usize == put || next as usize == put + 1,
            "round {round}: {put} put, {next} got"
        );
        assert_eq!(q.len(), 0, "round {round}");
        // And the queue goes on working.
        q.put_bytes(b"more").unwrap();
        assert_eq!(q.get_bytes().unwrap(), b"more");
    }
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct Job {
    id: u64,
    name: String,
    args: Vec<u32>,
}

#[test]
fn typed_messages_cross_processes_and_garbage_gets_an_error_not_a_value() {
    let q = Queue::with_capacity(64 * 1024).unwrap();
    let child = {
        let q = q.clone();
        fork(move || {
            for id in 0..1_000u64 {
                let job = Job {
                    id,
                    name: format!("job {id}"),
                    args: (0..(id % 7) as u32).collect(),
                };
                q.put(&job).unwrap();
            }
            q.put_bytes(&[0xff; 40]).unwrap();
            0
        })
    };
    for id in 0..1_000u64 {
        let job: Job = q.get().unwrap();
        assert_eq!(job.id, id);
        assert_eq!(job.name, format!("job {id}"));
        assert_eq!(job.args, (0..(id % 7) as u32).collect::<Vec<_>>());
    }
    assert!(matches!(q.get::<Job>(), Err(Error::Invalid(_))));
    child.join();
    assert!(q.is_empty());
}

/// A message of `len` (at least 16) bytes from producer `p`, numbered `seq`: who and
/// which, then bytes that depend on both, so a torn or mixed-up message is noticed.
fn big(p: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut body = Vec::new();
    common::stream::fill(p << 32 | seq, len - 16, &mut body);
    let mut m = msg(p, seq).to_vec();
    m.extend_from_slice(&body);
    m
}

/// Checks that `m` is whole; returns who put it and its number.
fn check_big(m: &[u8], capacity: usize) -> (u64, u64) {
    assert!(m.len() >= 16, "a torn message of {} bytes", m.len());
    let (p, seq) = parse(&m[..16]);
    assert_eq!(
        m.len(),
        big_len(p, seq, capacity),
        "message {p}/{seq}: torn"
    );
    assert!(m == big(p, seq, m.len()), "message {p}/{seq}: corrupt");
    (p, seq)
}

/// Sizes up to four times the ring: most fit in a record, many do not.
fn big_len(p: u64, seq: u64, capacity: usize) -> usize {
    16 + common::stream::size_of(p << 32 | seq, 7, capacity)
}

const SMALL: usize = 4096;

/// Messages of every size, most of them several fragments long in a 4 KiB queue, from
/// two producer processes to two consumer processes: each arrives whole, exactly once,
/// each producer's in order.
#[test]
fn messages_of_every_size_reach_exactly_one_of_many_consumers_whole() {
    const PRODUCERS: u64 = 2;
    const N: u64 = 400;
    let q = Queue::with_capacity(SMALL).unwrap();
    let marks = Shared::new((PRODUCERS * N) as usize);
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let q = q.clone();
            fork(move || {
                for seq in 0..N {
                    q.put_bytes(&big(p, seq, big_len(p, seq, SMALL))).unwrap();
                }
                0
            })
        })
        .collect();
    let take = |m: &[u8], last: &mut [Option<u64>]| {
        let (p, seq) = check_big(m, SMALL);
        assert!(last[p as usize] < Some(seq), "producer {p}: out of order");
        last[p as usize] = Some(seq);
        let flag = marks.flag((p * N + seq) as usize);
        assert_eq!(flag.swap(1, SeqCst), 0, "message {p}/{seq} twice");
        marks.counter().fetch_add(1, SeqCst);
    };
    let consumer = {
        let q = q.clone();
        fork(move || {
            let mut last = vec![None; PRODUCERS as usize];
            loop {
                let m = q.get_bytes().unwrap();
                if m == b"end" {
                    return 0;
                }
                take(&m, &mut last);
            }
        })
    };
    let mut last = vec![None; PRODUCERS as usize];
    while marks.counter().load(SeqCst) < PRODUCERS * N {
        if let Ok(m) = q.get_bytes_timeout(Duration::from_millis(50)) {
            take(&m, &mut last);
        }
    }
    for p in producers {
        p.join();
    }
    q.put_bytes(b"end").unwrap();
    consumer.join();
    assert!(q.is_empty());
}

/// SIGKILL rounds for a producer of messages up to four rings long, killed at a random
/// point, often part-way through a message: the consumer (another process) gets every
/// message whose put returned, whole and in order, and at most the one being put; a
/// message the dead producer left half put is taken back by the next put.
#[test]
fn a_producer_killed_part_way_through_a_long_message_loses_only_that_message() {
    let mut rng = Rng(0xb16);
    for round in 0..10 {
        let q = Queue::with_capacity(SMALL).unwrap();
        let put = Shared::new(1);
        let got = Shared::new(1);
        let producer = {
            let q = q.clone();
            let put = &put;
            fork(move || {
                for seq in 0.. {
                    q.put_bytes(&big(0, seq, big_len(0, seq, SMALL))).unwrap();
                    put.counter().store(seq + 1, SeqCst);
                }
                0
            })
        };
        let consumer = {
            let q = q.clone();
            let got = &got;
            fork(move || {
                let mut next = 0;
                loop {
                    let m = q.get_bytes().unwrap();
                    if m == b"end" {
                        return 0;
                    }
                    if check_big(&m, SMALL) != (0, next) {
                        return 4;
                    }
                    next += 1;
                    got.counter().store(next, SeqCst);
                }
            })
        };
        let kill_after = 1 + rng.below(60);
        while put.counter().load(SeqCst) < kill_after {
            std::hint::spin_loop();
        }
        producer.signal(libc::SIGKILL);
        assert_eq!(producer.wait(), Exit::Signal(libc::SIGKILL));
        q.put_bytes(b"end").unwrap();
        consumer.join();
        let (put, got) = (put.counter().load(SeqCst), got.counter().load(SeqCst));
        assert!(
            got == put || got == put + 1,
            "round {round}: {put} put, {got} got"
        );
        assert!(q.is_empty(), "round {round}");
    }
}

/// SIGKILL rounds for a consumer of messages up to four rings long, killed at a random
/// point: every message is got by it or by the parent, whole, none twice, the parent's
/// in order; at most the one it was getting is lost (a message in fragments is
/// delivered at most once).
#[test]
fn a_consumer_killed_part_way_through_a_long_message_loses_at_most_that_message() {
    const N: u64 = 300;
    let mut rng = Rng(0xc0de);
    for round in 0..10 {
        let q = Queue::with_capacity(SMALL).unwrap();
        let marks = Shared::new(N as usize);
        let producer = {
            let q = q.clone();
            fork(move || {
                for seq in 0..N {
                    q.put_bytes(&big(0, seq, big_len(0, seq, SMALL))).unwrap();
                }
                q.put_bytes(b"end").unwrap();
                0
            })
        };
        let consumer = {
            let q = q.clone();
            let marks = &marks;
            fork(move || loop {
                let m = q.get_bytes().unwrap();
                if m == b"end" {
                    // Done before the kill: the end is the parent's to see.
                    q.put_bytes(&m).unwrap();
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                let (_, seq) = check_big(&m, SMALL);
                marks.flag(seq as usize).store(1, SeqCst);
                marks.counter().fetch_add(1, SeqCst);
            })
        };
        let kill_after = rng.below(N - 1);
        while marks.counter().load(SeqCst) < kill_after {
            std::hint::spin_loop();
        }
        consumer.signal(libc::SIGKILL);
        assert_eq!(consumer.wait(), Exit::Signal(libc::SIGKILL));
        let mut mine = vec![false; N as usize];
        let mut last = None;
        loop {
            let m = q.get_bytes().unwrap();
            if m == b"end" {
                break;
            }
            let (_, seq) = check_big(&m, SMALL);
            assert!(last < Some(seq), "round {round}: out of order");
            last = Some(seq);
            mine[seq as usize] = true;
        }
        producer.join();
        let mut missing = 0;
        for (seq, got) in mine.iter().enumerate() {
            let theirs = marks.flag(seq).load(SeqCst) == 1;
            assert!(!(theirs && *got), "round {round}: {seq} delivered twice");
            missing += usize::from(!theirs && !*got);
        }
        assert!(missing <= 1, "round {round}: {missing} messages lost");
        assert_eq!(q.len(), 0, "round {round}");
    }
}

/// A message longer than the ring is put whole or not at all: a non-blocking put that
/// cannot finish it now does not start it, and a put whose deadline passes part-way
/// takes it back, so that no getter ever sees part of it.
#[test]
fn a_long_message_goes_whole_or_not_at_all() {
    let q = Queue::with_capacity(SMALL).unwrap();
    let long = big(1, 1, 4 * SMALL);
    assert!(matches!(q.try_put_bytes(&long), Err(Error::WouldBlock)));
    assert!(matches!(q.try_get_bytes(), Err(Error::WouldBlock)));
    assert!(matches!(
        q.put_bytes_timeout(&long, Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    // What it wrote before it gave up is skipped, and the queue goes on.
    assert!(matches!(q.try_get_bytes(), Err(Error::WouldBlock)));
    assert_eq!(q.len(), 0);
    q.put_bytes(b"next").unwrap();
    assert_eq!(q.get_bytes().unwrap(), b"next");
    // With a getter in another process, it goes, and lands whole in a caller's buffer or,
    // too long for it, is handed back whole.
    let child = {
        let q = q.clone();
        let long = long.clone();
        fork(move || {
            q.put_bytes(&long).unwrap();
            q.put_bytes(&long).unwrap();
            0
        })
    };
    let mut buf = vec![0u8; 5 * SMALL];
    let n = q.get_bytes_into(&mut buf).unwrap();
    assert!(buf[..n] == long[..]);
    let mut short = [0u8; 64];
    assert!(matches!(q.get_bytes_into(&mut short), Err(Error::BufferTooShort(m)) if m == long));
    child.join();
    assert!(q.is_empty());
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct Batch {
    values: Vec<u64>,
}

#[test]
fn a_typed_message_longer_than_the_ring_crosses_whole() {
    let q = Queue::with_capacity(SMALL).unwrap();
    let child = {
        let q = q.clone();
        fork(move || {
            q.put(&Batch {
                values: (0..10_000).collect(),
            })
            .unwrap();
            0
        })
    };
    let b: Batch = q.get().unwrap();
    assert_eq!(b.values, (0..10_000).collect::<Vec<u64>>());
    child.join();
}

#[test]
fn after_close_this_process_neither_puts_nor_gets_but_others_go_on() {
    let q = Queue::new().unwrap();
    q.put_bytes(b"one").unwrap();
    q.close();
    assert!(matches!(q.put_bytes(b"x"), Err(Error::Closed)));
    assert!(matches!(q.get_bytes(), Err(Error::Closed)));
    // A child forked after the close has the queue open, as multiprocessing's has.
    let child = {
        let q = q.clone();
        fork(move || {
            let got = q.get_bytes().unwrap();
            q.put_bytes(b"two").unwrap();
            (got != b"one") as i32
        })
    };
    child.join();
    assert!(matches!(q.get_bytes(), Err(Error::Closed)));
    assert_eq!(q.len(), 1);
}

#[test]
fn a_nonblocking_get_takes_the_turn_over_from_a_dead_holder_at_once() {
    let q = Queue::new().unwrap();
    q.put_bytes(b"there").unwrap();
    let holder = {
        let q = q.clone();
        fork(move || {
            q.__take_turn_for_good(false).unwrap();
            0
        })
    };
    holder.join();
    // A live holder would give `WouldBlock`; a dead one's turn is taken over.
    assert_eq!(q.try_get_bytes().unwrap(), b"there");
    assert!(matches!(q.try_get_bytes(), Err(Error::WouldBlock)));
}

#[test]
fn a_nonblocking_get_behind_a_live_holder_would_block() {
    let q = Queue::new().unwrap();
    q.put_bytes(b"there").unwrap();
    let (mut ready_r, mut ready_w) = std::io::pipe().unwrap();
    let holder = {
        let q = q.clone();
        fork(move || {
            q.__take_turn_for_good(false).unwrap();
            ready_w.write_all(b"!").unwrap();
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    let mut b = [0u8];
    ready_r.read_exact(&mut b).unwrap();
    assert!(matches!(q.try_get_bytes(), Err(Error::WouldBlock)));
    assert!(matches!(
        q.get_bytes_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    drop(holder); // killed and reaped
    assert_eq!(
        q.get_bytes_timeout(Duration::from_secs(30)).unwrap(),
        b"there"
    );
}

#[test]
fn a_producer_blocked_by_the_item_limit_is_woken_by_a_get_in_another_process() {
    let q = Queue::with_limits(1 << 20, Some(3)).unwrap();
    let producer = {
        let q = q.clone();
        fork(move || {
            for seq in 0..1_000 {
                q.put_bytes(&msg(0, seq)).unwrap();
            }
            0
        })
    };
    for seq in 0..1_000 {
        assert!(q.len() <= 3, "the limit let more in");
        assert_eq!(parse(&q.get_bytes().unwrap()), (0, seq));
    }
    producer.join();
    assert!(q.is_empty());
}

#[test]
fn join_returns_once_every_task_got_elsewhere_is_done() {
    let q = Queue::new().unwrap();
    for seq in 0..100 {
        q.put_bytes(&msg(0, seq)).unwrap();
    }
    let worker = {
        let q = q.clone();
        fork(move || {
            for _ in 0..100 {
                q.get_bytes().unwrap();
                q.task_done().unwrap();
            }
            0
        })
    };
    q.join().unwrap();
    assert!(q.is_empty());
    worker.join();
    assert!(matches!(q.task_done(), Err(Error::Invalid(_))));
}

#[test]
fn a_queue_rebuilt_from_its_descriptors_is_the_same_queue_and_foreign_ones_are_refused() {
    let q = Queue::new().unwrap();
    let (ring, control) = q.__fds();
    let again = Queue::__from_fds(
        ring.try_clone_to_owned().unwrap(),
        control.try_clone_to_owned().unwrap(),
    )
    .unwrap();
    again.put_bytes(b"through the copy").unwrap();
    assert_eq!(q.get_bytes().unwrap(), b"through the copy");
    // A pipe's region (two rings) is no queue's ring.
    let (a, _b) = shmpipe::pipe(true).unwrap();
    // SAFETY: the pipe's memfd, open for as long as `a`; duplicated to be owned once.
    let region = unsafe { std::os::fd::BorrowedFd::borrow_raw(common::memfd_of(&a)) };
    let control_copy = control.try_clone_to_owned().unwrap();
    assert!(matches!(
        Queue::__from_fds(region.try_clone_to_owned().unwrap(), control_copy),
        Err(Error::Invalid(_))
    ));
    // Nor is a file of another size a control page.
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let ring_copy = ring.try_clone_to_owned().unwrap();
    assert!(Queue::__from_fds(ring_copy, file.into()).is_err());
}

/// Waits until thread `tid` of this process sleeps in the kernel (state `S` in /proc):
/// for these threads, blocked in a queue's wait.
fn wait_until_thread_sleeps(tid: libc::pid_t) {
    let start = std::time::Instant::now();
    // /proc/TID/stat is a thread's own, as /proc/PID/stat is a process's.
    while common::process_state(tid) != Some('S') {
        assert!(
            start.elapsed() < common::WATCHDOG,
            "thread {tid} never slept"
        );
        std::thread::yield_now();
    }
}

/// `close` ends the waits of this process's other threads: a get waiting for a message
/// and a put waiting for room return `Closed`.
#[test]
fn close_wakes_this_process_s_blocked_gets_and_puts() {
    for put in [false, true] {
        let q = Queue::with_limits(4096, Some(1)).unwrap();
        if put {
            q.put_bytes(b"fills it").unwrap();
        }
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let blocked = {
            let q = q.clone();
            std::thread::spawn(move || {
                // SAFETY: gettid has no preconditions.
                tid_tx.send(unsafe { libc::gettid() }).unwrap();
                match put {
                    true => q.put_bytes(b"no room").map(|()| Vec::new()),
                    false => q.get_bytes(),
                }
            })
        };
        wait_until_thread_sleeps(tid_rx.recv().unwrap());
        q.close();
        assert!(matches!(blocked.join().unwrap(), Err(Error::Closed)));
    }
}

/// A thread blocked in a get holds its process's consumer side while it waits; another
/// thread's timed get gives up at its deadline, and a non-blocking one at once, instead
/// of waiting behind it (a plain mutex would hold both until the first got a message).
#[test]
fn a_timed_get_behind_a_thread_blocked_in_a_get_ends_at_its_deadline() {
    let q = Queue::new().unwrap();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let blocked = {
        let q = q.clone();
        std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            q.get_bytes()
        })
    };
    // A handshake through /proc: the thread sleeps (in the kernel) only once it waits
    // for a message, holding the side.
    wait_until_thread_sleeps(tid_rx.recv().unwrap());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    {
        let q = q.clone();
        std::thread::spawn(move || {
            let timed = q.get_bytes_timeout(Duration::from_millis(10));
            let now = q.try_get_bytes();
            done_tx.send((timed, now)).unwrap();
        });
    }
    // A watchdog, not synchronisation: the old code never answers while the first
    // getter waits.
    let (timed, now) = done_rx
        .recv_timeout(common::WATCHDOG)
        .expect("the timed get waited behind the blocked one");
    assert!(matches!(timed, Err(Error::Timeout)), "{timed:?}");
    assert!(matches!(now, Err(Error::WouldBlock)), "{now:?}");
    q.put_bytes(b"for the first").unwrap();
    assert_eq!(blocked.join().unwrap().unwrap(), b"for the first");
}
