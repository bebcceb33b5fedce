//! SIGKILL at random points, many rounds: the survivor receives every whole message
//! then `Eof`, its sends end in `BrokenPipe`, nothing hangs, nothing torn gets through,
//! and once the survivor closes its ends no descriptor or mapping of the pipe is left.
//!
//! One test in its own binary, because it counts the whole process's descriptors and
//! mappings. `cargo test` runs 200 rounds; more with
//! `SHMPIPE_CRASH_ROUNDS=10000 cargo test --release --test crashes -- --nocapture`.

mod common;

use common::stream::{fill, size_of};
use common::{fork, open_fds, region_mappings, Crossed, Exit, Rng, SharedWord};
use shmpipe::{Connection, Error};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Small rings, so that messages up to 4x the ring arrive in fragments and a kill often
/// lands in the middle of one.
const CAPACITY: usize = 4096;

/// Receives stream `seed`, checking each message, until `Eof`; `progress` counts the
/// messages received. Returns their number.
fn receive_until_eof(conn: &Connection, seed: u64, progress: &AtomicU64) -> u64 {
    let mut got = vec![0u8; 4 * CAPACITY];
    let mut want = Vec::new();
    for i in 0.. {
        match conn.recv_bytes_into(&mut got) {
            Ok(len) => {
                fill(i ^ seed, size_of(i, seed, CAPACITY), &mut want);
                assert!(got[..len] == want[..], "message {i} is torn or wrong");
                progress.store(i + 1, Ordering::SeqCst);
            }
            Err(Error::Eof) => return i,
            Err(e) => panic!("message {i}: {e}"),
        }
    }
    unreachable!()
}

/// Sends stream `seed` until `BrokenPipe`, counting successful sends in `sent`.
fn send_until_broken(conn: &Connection, seed: u64, sent: &AtomicU64) {
    let mut buf = Vec::new();
    for i in 0.. {
        fill(i ^ seed, size_of(i, seed, CAPACITY), &mut buf);
        match conn.send_bytes(&buf) {
            Ok(()) => sent.store(i + 1, Ordering::SeqCst),
            Err(Error::BrokenPipe) => return,
            Err(e) => panic!("send {i}: {e}"),
        }
    }
}

/// One round: parent and child stream to each other on two one-way pipes, each checking
/// what it gets; after a random number of messages and a random while, the parent
/// SIGKILLs the child wherever it is.
fn round(rng: &mut Rng) -> (u64, u64, bool) {
    let (down_seed, up_seed) = (rng.next(), rng.next());
    let mut pipes = Crossed::new(CAPACITY);
    // How many of the child's sends had returned when it was killed.
    let child_sent = SharedWord::new();
    let child = fork(|| {
        let (down, up) = pipes.child();
        let counter = child_sent.get();
        std::thread::scope(|s| {
            s.spawn(move || send_until_broken(&up, up_seed, counter));
            // Checks what the parent sends. A wrong message or an error ends the child
            // at once with code 3, which the parent sees instead of its SIGKILL.
            let mut got = vec![0u8; 4 * CAPACITY];
            let mut want = Vec::new();
            for i in 0.. {
                let ok = match down.recv_bytes_into(&mut got) {
                    Ok(len) => {
                        fill(i ^ down_seed, size_of(i, down_seed, CAPACITY), &mut want);
                        got[..len] == want[..]
                    }
                    Err(_) => false,
                };
                if !ok {
                    // SAFETY: leaving the forked child at once, as `fork` would.
                    unsafe { libc::_exit(3) };
                }
            }
        });
        0
    });
    let (down, up) = pipes.parent();
    let parent_sent = AtomicU64::new(0);
    let before_kill = rng.below(200);
    let spin = rng.below(20_000);
    let progress = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let received = std::thread::scope(|s| {
        let (parent_sent, progress, done, child) = (&parent_sent, &progress, &done, &child);
        s.spawn(move || send_until_broken(&down, down_seed, parent_sent));
        // The killer: once we have received `before_kill` messages, a random moment
        // later, while we keep receiving and the child keeps sending and receiving.
        s.spawn(move || {
            while progress.load(Ordering::SeqCst) < before_kill {
                if done.load(Ordering::SeqCst) {
                    return; // the child ended by itself: failed, reported below
                }
                std::thread::yield_now();
            }
            for _ in 0..spin {
                std::hint::spin_loop();
            }
            child.signal(libc::SIGKILL);
        });
        // Everything the child had sent arrives whole, then EOF; and our sender thread,
        // wherever it is, ends with BrokenPipe (checked by it returning).
        let n = receive_until_eof(&up, up_seed, progress);
        done.store(true, Ordering::SeqCst);
        n
    });
    assert_eq!(
        child.wait(),
        Exit::Signal(libc::SIGKILL),
        "the child saw a bad message"
    );
    // A send that returned was delivered; at most the one in progress also got through.
    let sent = child_sent.get().load(Ordering::SeqCst);
    assert!(
        received == sent || received == sent + 1,
        "child's sends returned {sent} times, we received {received} messages"
    );
    (
        received,
        parent_sent.load(Ordering::SeqCst),
        received == sent + 1,
    )
}

#[test]
fn sigkill_at_random_points_loses_nothing_and_leaks_nothing() {
    let rounds = std::env::var("SHMPIPE_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200u64);
    let (fds, maps) = (open_fds(), region_mappings());
    let mut rng = Rng(0xC2A5_4000);
    let (mut received, mut sent, mut in_flight) = (0, 0, 0);
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        // A watchdog, not synchronisation: a round that hangs kills the test binary
        // (SIGALRM) instead of holding up the run.
        // SAFETY: alarm(2) has no memory effects.
        unsafe { libc::alarm(60) };
        let (r, s, f) = round(&mut rng);
        received += r;
        sent += s;
        in_flight += u64::from(f);
        // Every end of both pipes is closed in this process now, and the child is dead.
        assert_eq!(open_fds(), fds, "descriptors left behind");
        assert_eq!(region_mappings(), maps, "a region is still mapped");
    }
    eprintln!(
        "crashes: {rounds} rounds in {:?}, {received} messages received from killed \
         children ({in_flight} rounds delivered the message whose send was cut short), \
         {sent} sent to them",
        start.elapsed()
    );
}
