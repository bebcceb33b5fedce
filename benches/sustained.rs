//! Streams as users run them (issue 23), rounds interleaved, two processes (fork):
//!
//! * `sustained`: 64-byte messages, `SHMPIPE_SUSTAINED_MESSAGES` of them (default 20 M):
//!   long enough for a ring whose reader is the slower side to fill and stay full;
//! * `first200k`: the first 200,000 messages of the same stream only;
//! * `slow_reader`: 5 M messages, the reader doing about 25 ns of work on each (a
//!   calibrated loop), so that the ring runs full;
//! * `slow_writer`: 1 M messages, the writer doing that work on each, so that the reader
//!   keeps up and finds the ring empty after every message (where a reader whose
//!   `fileno` was asked for re-arms it every time);
//! * `stream_1m`: 2,000 messages of 1 MiB.
//!
//! `SHMPIPE_BENCH_RING` sets the ring size of every contender that has one (a power of
//! two, default 4 MiB, shmpipe's default), for a sweep of capacities.
//!
//! Contenders: two bare rings (`benches/common/bare_ring.rs`, both publishing their
//! reader's index in batches, one with sides that look at each other's index eagerly,
//! one `patient`: which is faster depends on what moving a cache line between the cores
//! costs at the moment, and the faster of the two in each round is the yardstick),
//! shmpipe (`send_bytes` /
//! `recv_bytes_into`, default capacity), the same with a reader whose `fileno` was asked
//! for (`shmpipe_watched`: what `multiprocessing.connection.wait` or an event loop does),
//! shmpipe whose writer gathers 64 messages and
//! sends them with `send_bytes_many` (the reader as before), `shmpipe::Queue` with one
//! producer and one consumer (`queue`), and a Unix socket with 64 KiB buffered writes
//! and reads and a 4-byte length prefix (what a user might write instead). Every reader
//! checks an 8-byte sequence number in each message.
//!
//! Each of `SHMPIPE_BENCH_ROUNDS` rounds (default 5) runs every contender on every
//! workload once. The table gives per row the best and median ns per message over the
//! rounds, and the ratio of rates to the faster bare ring's, computed within each round
//! (median of rounds). The bare rings' readers sample how full they find the ring during
//! the sustained stream, which shows the mode each ran in.
//!
//! **Is the yardstick in its fast mode?** On this VM the cost of moving a cache line
//! between the two cores changes from minute to minute, in three steps (the two virtual
//! CPUs land on two hardware threads of one core, on two cores that share a cache, or
//! farther apart): a round trip of one line takes about 30, 70 or 300 ns, and every
//! ring's speed, the bare ones' included, follows it (the bare ring's 64 B stream ran
//! 10-12, 25-40 and 50-180 ns in the three). A ratio to a bare ring says what the ring
//! allows only when that ring is in its fast mode. So just before and just after the
//! bare rings run on a workload, the bench bounces one cache line between the two
//! processes (`benches/common/cacheline.rs`: the median of five batches of 4,000 round
//! trips), and counts the round as one with the yardstick in its fast mode when both
//! round trips took at most `SHMPIPE_BENCH_FAST_LINE_NS` (default 45 ns). The table
//! gives the ratio over those rounds too, and how many there were; the probes' figures
//! are printed per round.
//!
//! `cargo bench -p shmpipe-benches --bench sustained` (about a minute per round on 2 cores).

#[path = "common/bare_ring.rs"]
mod bare_ring;
#[path = "common/cacheline.rs"]
mod cacheline;
#[path = "common/peer.rs"]
mod peer;
#[path = "../tests/common/shared_word.rs"]
mod shared_word;
#[path = "common/stats.rs"]
mod stats;

use bare_ring::BareRing;
use peer::Peer;
use shared_word::SharedWord;
use stats::median;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Keeps this process on one CPU (the parent on 0, the peer on 1).
fn pin(cpu: usize) {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// About 25 ns of work that the compiler cannot remove: `rounds` dependent multiplies.
fn work(seed: u64, rounds: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..rounds {
        x = black_box(x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17));
    }
    x
}

/// How many rounds of [`work`] take about 25 ns here: timed on the fastest of seven
/// tries (noise only slows a try down; one slowed try would make the work lighter).
fn calibrate() -> u64 {
    let n = 1_000_000u64;
    let per_round = (0..7)
        .map(|_| {
            let start = Instant::now();
            black_box(work(1, n));
            start.elapsed().as_secs_f64() * 1e9 / n as f64
        })
        .fold(f64::INFINITY, f64::min);
    ((25.0 / per_round).round() as u64).max(1)
}

/// One side of a stream.
trait Tx {
    fn send(&mut self, msg: &[u8]);
    fn flush(&mut self) {}
}
trait Rx {
    /// Receives one message into `buf`, returns its length.
    fn recv(&mut self, buf: &mut [u8]) -> usize;
    /// For the bare ring: the fraction of the ring published and not yet read.
    fn backlog(&self) -> Option<f64> {
        None
    }
}

impl Tx for BareRing {
    fn send(&mut self, msg: &[u8]) {
        BareRing::send(self, msg)
    }
    fn flush(&mut self) {
        BareRing::flush(self)
    }
}
impl Rx for BareRing {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        BareRing::recv(self, buf)
    }
    fn backlog(&self) -> Option<f64> {
        Some(BareRing::backlog(self))
    }
}

impl Tx for shmpipe::Connection {
    fn send(&mut self, msg: &[u8]) {
        self.send_bytes(msg).unwrap();
    }
}
impl Rx for shmpipe::Connection {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.recv_bytes_into(buf).unwrap()
    }
}

/// shmpipe with `send_bytes_many`: the writer gathers `BATCH` messages (or 64 KiB), then
/// sends them.
struct Batched {
    conn: shmpipe::Connection,
    buf: Vec<u8>,
    lens: Vec<usize>,
}

const BATCH: usize = 64;

impl Tx for Batched {
    fn send(&mut self, msg: &[u8]) {
        self.buf.extend_from_slice(msg);
        self.lens.push(msg.len());
        // 64 messages, or fewer that make 64 KiB: gathering large messages into a buffer
        // out of the caches costs more than sending them one by one.
        if self.lens.len() == BATCH || self.buf.len() >= 64 << 10 {
            self.flush();
        }
    }
    fn flush(&mut self) {
        let mut at = 0;
        let msgs: Vec<&[u8]> = self
            .lens
            .iter()
            .map(|&n| {
                at += n;
                &self.buf[at - n..at]
            })
            .collect();
        self.conn.send_bytes_many(&msgs).unwrap();
        self.buf.clear();
        self.lens.clear();
    }
}

/// `shmpipe::Queue` with one producer and one consumer (`put_bytes` /
/// `get_bytes_into`).
struct QueueEnd(shmpipe::Queue);

impl Tx for QueueEnd {
    fn send(&mut self, msg: &[u8]) {
        self.0.put_bytes(msg).unwrap();
    }
}
impl Rx for QueueEnd {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        self.0.get_bytes_into(buf).unwrap()
    }
}

struct SocketTx(BufWriter<UnixStream>);
struct SocketRx(BufReader<UnixStream>);

impl Tx for SocketTx {
    fn send(&mut self, msg: &[u8]) {
        self.0.write_all(&(msg.len() as u32).to_le_bytes()).unwrap();
        self.0.write_all(msg).unwrap();
    }
    fn flush(&mut self) {
        self.0.flush().unwrap();
    }
}
impl Rx for SocketRx {
    fn recv(&mut self, buf: &mut [u8]) -> usize {
        let mut len = [0u8; 4];
        self.0.read_exact(&mut len).unwrap();
        let n = u32::from_le_bytes(len) as usize;
        self.0.read_exact(&mut buf[..n]).unwrap();
        n
    }
}

/// Streams `count` messages from a forked writer to this process's reader (`work_rounds`
/// of work per message), returns the reader's ns per message and, for the bare ring, the
/// mean backlog it saw (sampled every 4096 messages).
fn stream<T: Tx, R: Rx>(
    mut tx: T,
    mut rx: R,
    size: usize,
    count: u64,
    (work_rounds, writer_work): (u64, u64),
) -> (f64, Option<f64>) {
    let mut peer = Peer::spawn(move |n| {
        pin(1);
        let mut msg = vec![0x5Au8; size];
        let mut acc = 0;
        for i in 0..n {
            if writer_work > 0 {
                acc ^= work(i, writer_work);
            }
            msg[..8].copy_from_slice(&i.to_le_bytes());
            tx.send(&msg);
        }
        black_box(acc);
        tx.flush();
    });
    let mut buf = vec![0u8; size];
    peer.go(count);
    let start = Instant::now();
    let mut acc = 0;
    let (mut backlog, mut samples) = (0.0, 0u64);
    for i in 0..count {
        if i % 4096 == 4095 {
            if let Some(b) = rx.backlog() {
                backlog += b;
                samples += 1;
            }
        }
        let n = rx.recv(&mut buf);
        assert_eq!(n, size);
        assert_eq!(
            u64::from_le_bytes(buf[..8].try_into().unwrap()),
            i,
            "out of order"
        );
        if work_rounds > 0 {
            acc ^= work(i, work_rounds);
        }
    }
    let took = start.elapsed();
    black_box(acc);
    drop(peer);
    let backlog = (samples > 0).then(|| backlog / samples as f64);
    (took.as_secs_f64() * 1e9 / count as f64, backlog)
}

/// A one-way pipe (reader, writer) with the ring size of the run.
fn shm_pair() -> (shmpipe::Connection, shmpipe::Connection) {
    shmpipe::Builder::new()
        .duplex(false)
        .capacity(bare_ring::ring_size())
        .build()
        .unwrap()
}

fn run(kind: &str, size: usize, count: u64, work_rounds: (u64, u64)) -> (f64, Option<f64>) {
    match kind {
        "bare_ring" | "bare_ring_patient" | "bare_ring_bursts" => {
            let ring = match kind {
                "bare_ring_patient" => BareRing::new().patient(),
                "bare_ring_bursts" => BareRing::new().bursts(),
                _ => BareRing::new().batched(),
            };
            let (tx, rx) = (ring.clone_handle(), ring.clone_handle());
            stream(tx, rx, size, count, work_rounds)
        }
        "shmpipe_batch64" => {
            let (rx, conn) = shm_pair();
            let tx = Batched {
                conn,
                buf: Vec::new(),
                lens: Vec::new(),
            };
            stream(tx, rx, size, count, work_rounds)
        }
        "shmpipe" => {
            let (rx, tx) = shm_pair();
            stream(tx, rx, size, count, work_rounds)
        }
        "queue" => {
            let q = shmpipe::Queue::with_capacity(bare_ring::ring_size()).unwrap();
            stream(QueueEnd(q.clone()), QueueEnd(q), size, count, work_rounds)
        }
        "shmpipe_watched" => {
            // A reader whose `fileno` was asked for (by a selector, `wait`, an event
            // loop), which keeps the descriptor exact from then on.
            let (rx, tx) = shm_pair();
            rx.fileno().unwrap();
            stream(tx, rx, size, count, work_rounds)
        }
        _ => {
            let (a, b) = UnixStream::pair().unwrap();
            let tx = SocketTx(BufWriter::with_capacity(64 << 10, a));
            let rx = SocketRx(BufReader::with_capacity(64 << 10, b));
            stream(tx, rx, size, count, work_rounds)
        }
    }
}

/// One cache line bounced between this process and a forked peer on the other core:
/// ns per round trip (see "Is the yardstick in its fast mode?" above).
fn line_round_trip() -> f64 {
    let line = SharedWord::new();
    let mut peer = Peer::spawn(|count| {
        pin(1);
        cacheline::answer(&line, count)
    });
    // A first batch untimed (the peer moving to its CPU, the page's first faults), then
    // the median of five.
    let n = 4_000;
    let mut batches: Vec<f64> = (0..6)
        .map(|_| cacheline::bounce(&line, n, |n| peer.go(n)).as_secs_f64() * 1e9 / n as f64)
        .skip(1)
        .collect();
    drop(peer);
    median(&mut batches)
}

/// What a pipe costs to have: microseconds to make (and drop) one, beside a socketpair,
/// and the descriptors one duplex pipe holds in the process that made both ends.
fn cost_of_a_pipe() {
    let open_fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let n = 2_000;
    let start = Instant::now();
    for _ in 0..n {
        black_box(shmpipe::pipe(true).unwrap());
    }
    let pipe_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let start = Instant::now();
    for _ in 0..n {
        black_box(UnixStream::pair().unwrap());
    }
    let pair_us = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    let before = open_fds();
    let (a, b) = shmpipe::pipe(true).unwrap();
    let fds = open_fds() - before;
    drop((a, b));
    println!(
        "cost of a pipe: pipe(true) made and dropped in {pipe_us:.1} µs (a socketpair: \
         {pair_us:.1} µs); both ends of a duplex pipe hold {fds} descriptors"
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    pin(0);
    cost_of_a_pipe();
    let rounds = env("SHMPIPE_BENCH_ROUNDS", 5) as usize;
    let sustained = env("SHMPIPE_SUSTAINED_MESSAGES", 20_000_000);
    let work_rounds = calibrate();
    // (name, message size, messages, (work per message of the reader, of the writer))
    let workloads = [
        ("sustained", 64, sustained, (0, 0)),
        ("first200k", 64, 200_000, (0, 0)),
        ("slow_reader", 64, 5_000_000, (work_rounds, 0)),
        ("slow_writer", 64, 1_000_000, (0, work_rounds)),
        ("stream_1m", 1 << 20, 2_000, (0, 0)),
    ];
    let kinds = [
        "bare_ring",
        "bare_ring_patient",
        "bare_ring_bursts",
        "shmpipe",
        "shmpipe_batch64",
        "shmpipe_watched",
        "queue",
        "socket_buffered",
    ];
    // `SHMPIPE_BENCH_ONLY=sustained,slow_reader,shmpipe` keeps the named workloads and
    // contenders (all of either when it names none; the bare ring always runs: every
    // ratio is taken against it).
    let only = std::env::var("SHMPIPE_BENCH_ONLY").unwrap_or_default();
    let named = |name: &str| only.split(',').any(|o| o == name);
    let workloads: Vec<_> = if workloads.iter().any(|w| named(w.0)) {
        workloads.into_iter().filter(|w| named(w.0)).collect()
    } else {
        workloads.to_vec()
    };
    let kinds: Vec<_> = if kinds.iter().any(|k| named(k)) {
        kinds
            .into_iter()
            .filter(|k| k.starts_with("bare_ring") || named(k))
            .collect()
    } else {
        kinds.to_vec()
    };
    // (workload, kind) -> ns per message, one per round.
    let mut ns: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    let mut fill = Vec::new();
    let fast_line = env("SHMPIPE_BENCH_FAST_LINE_NS", 45) as f64;
    // (workload) -> per round: was the yardstick in its fast mode?
    let mut fast: BTreeMap<&str, Vec<bool>> = BTreeMap::new();
    let mut probes = Vec::new();
    for round in 0..rounds {
        for &(name, size, count, w) in &workloads {
            let before = line_round_trip();
            for &kind in &kinds {
                // The bare ring does not fragment: a message must fit in it.
                if kind == "bare_ring" && size + 16 > bare_ring::ring_size() {
                    ns.entry((name, kind)).or_default().push(f64::NAN);
                    continue;
                }
                let (t, backlog) = run(kind, size, count, w);
                eprintln!("round {} {name:12} {kind:16} {t:7.2} ns", round + 1);
                ns.entry((name, kind)).or_default().push(t);
                if let (Some(b), "sustained") = (backlog, name) {
                    fill.push(format!("{kind} {:.1}%", b * 100.0));
                }
                if kind == "bare_ring_patient" {
                    // The yardstick has run: probe again, right after it.
                    let after = line_round_trip();
                    fast.entry(name)
                        .or_default()
                        .push(before.max(after) <= fast_line);
                    probes.push(format!("r{} {name} {before:.0}/{after:.0}", round + 1));
                }
            }
        }
    }
    println!(
        "\nwork per message in slow_reader and slow_writer: {work_rounds} rounds (about 25 ns)"
    );
    println!(
        "| workload | contender | best ns | median ns | rate ÷ the faster bare ring (median of rounds) \
         | the same, rounds with the yardstick in its fast mode | such rounds |"
    );
    println!("|---|---|---:|---:|---:|---:|---|");
    for &(name, ..) in &workloads {
        for &kind in &kinds {
            let mine = &ns[&(name, kind)];
            // The yardstick of each round: the faster bare ring of that round.
            let bare = &ns[&(name, "bare_ring")];
            let patient = &ns[&(name, "bare_ring_patient")];
            let mut ratios: Vec<f64> = bare
                .iter()
                .zip(patient)
                .zip(mine)
                .map(|((b, p), m)| b.min(*p) / m)
                .collect();
            let best = mine.iter().cloned().fold(f64::INFINITY, f64::min);
            if best.is_nan() || best.is_infinite() {
                println!("| {name} | {kind} | - | - | - |");
                continue;
            }
            let in_fast = &fast[name];
            let mut fast_ratios: Vec<f64> = ratios
                .iter()
                .zip(in_fast)
                .filter(|(_, &f)| f)
                .map(|(r, _)| *r)
                .collect();
            let show = |r: f64| {
                if r.is_nan() {
                    "-".to_string()
                } else {
                    format!("{r:.2}")
                }
            };
            let ratio = show(median(&mut ratios));
            let fast_ratio = if fast_ratios.is_empty() {
                "-".to_string()
            } else {
                show(median(&mut fast_ratios))
            };
            println!(
                "| {name} | {kind} | {best:.1} | {:.1} | {ratio} | {fast_ratio} | {} of {} |",
                median(&mut mine.clone()),
                fast_ratios.len(),
                in_fast.len(),
            );
        }
    }
    println!(
        "\nbare rings, sustained: how much of the ring their readers found published and \
         unread on average, per round (near 0: the ring runs nearly empty; near 1: full): {}",
        fill.join(", ")
    );
    println!(
        "\ncache-line round trip before/after the bare rings, ns (fast mode: both at most \
         {fast_line:.0}): {}",
        probes.join(", ")
    );
}
