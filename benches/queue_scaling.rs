//! How `shmpipe::Queue` scales with producers and consumers on this machine: P producer
//! and C consumer processes (fork) share one queue; `SHMPIPE_SCALING_MESSAGES` messages
//! of 64 B in all (default 4 M), put with `put_bytes` and got with `get_bytes_into`, each
//! consumer taking an equal share. Time from a start word every process spins on until
//! the last consumer has its share; messages per second. `SHMPIPE_BENCH_ROUNDS` rounds
//! (default 3), every shape once per round, interleaved; the table gives medians.
//!
//! `cargo bench -p shmpipe-benches --bench queue_scaling`

#[path = "../tests/common/shared_word.rs"]
mod shared_word;
#[path = "common/stats.rs"]
mod stats;

use shared_word::SharedWord;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Instant;

fn fork(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child runs `f` and leaves with `_exit`; the bench is single-threaded.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        f();
        // SAFETY: leaves the child without the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn one(producers: usize, consumers: usize, total: usize) -> f64 {
    let total = total - total % (producers * consumers);
    let q = shmpipe::Queue::new().unwrap();
    let start = SharedWord::new();
    let mut pids = Vec::new();
    for _ in 0..producers {
        let (q, start) = (q.clone(), &start);
        pids.push(fork(move || {
            let msg = [7u8; 64];
            while start.get().load(SeqCst) == 0 {
                std::hint::spin_loop();
            }
            for _ in 0..total / producers {
                q.put_bytes(&msg).unwrap();
            }
        }));
    }
    for _ in 0..consumers {
        let (q, start) = (q.clone(), &start);
        pids.push(fork(move || {
            let mut buf = [0u8; 64];
            while start.get().load(SeqCst) == 0 {
                std::hint::spin_loop();
            }
            for _ in 0..total / consumers {
                q.get_bytes_into(&mut buf).unwrap();
            }
        }));
    }
    let t = Instant::now();
    start.get().store(1, SeqCst);
    for pid in pids {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
    total as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds = env("SHMPIPE_BENCH_ROUNDS", 3);
    let total = env("SHMPIPE_SCALING_MESSAGES", 4_000_000);
    let shapes = [(1, 1), (2, 1), (4, 1), (1, 2), (1, 4), (2, 2), (4, 4)];
    let mut rates = vec![Vec::new(); shapes.len()];
    for round in 1..=rounds {
        for (i, &(p, c)) in shapes.iter().enumerate() {
            let r = one(p, c, total);
            println!("round {round} {p}x{c} {:.2} M msg/s", r / 1e6);
            rates[i].push(r);
        }
    }
    println!("\n| producers x consumers | M msg/s (median of {rounds}) |\n|---|---:|");
    for (i, &(p, c)) in shapes.iter().enumerate() {
        println!("| {p}x{c} | {:.1} |", stats::median(&mut rates[i]) / 1e6);
    }
}
