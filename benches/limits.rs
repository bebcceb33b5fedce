//! shmpipe against what the machine allows, rounds interleaved so that every row sees the
//! same noise:
//!
//! * `stream/64`, `stream/1048576`: one-way streaming, time per message received.
//! * `pingpong/64`: a 64-byte message sent and echoed back, time per round trip.
//! * `typed/tick`: a 32-byte struct, typed `send` + `recv` beside `send_bytes` +
//!   `recv_bytes_into` of the same archived bytes.
//! * `pingpong/64/shmpipe_polling`: the round trip with both sides busy-polling
//!   (`poll(Some(ZERO))`, then `recv_bytes_into`), against the blocking one.
//! * `pingpong/64/shmpipe_watched`: the blocking round trip once both ends' `fileno` was
//!   asked for (as `multiprocessing.connection.wait` or an event loop does), against the
//!   blocking one.
//! * `pingpong/64/iceoryx2_polling` (built with `--features iceoryx2`): iceoryx2's
//!   busy-polling round trip (`benches/common/iceoryx2.rs`), against shmpipe's.
//! * `empty/poll0`, `empty/nonblocking`: one look at an empty ring that does not wait
//!   (`poll(Some(ZERO))`, a non-blocking `recv_bytes_into`), the writer alive in
//!   another process.
//!
//! The limits: a bare shared-memory ring (`benches/common/bare_ring.rs`: one release
//! store per message, its reader's index published once per sixteenth of the ring or
//! when it runs dry, no sleeping, no EOF, no checks), one cache line bounced between the
//! two processes, and `memcpy` on one core. A Unix socketpair (Python's framing) for
//! scale. Two processes (fork) in every case; receivers read one byte per cache line,
//! and so does the `memcpy` row after its copy.
//!
//! Each of `SHMPIPE_BENCH_ROUNDS` rounds (default 5) runs every row once for
//! `SHMPIPE_BENCH_MS` milliseconds (default 800), each row with
//! its own criterion id (`limits/<row>/r<k>`). At the end the bench prints a table:
//! per row the median over rounds of each round's median, and the ratio to the row's
//! limit computed within each round, then its median over rounds. The table also goes
//! to `target/criterion/limits-summary.md`.
//!
//! `cargo bench -p shmpipe-benches --bench limits` (about 2 minutes on 2 cores).

#[path = "common/bare_ring.rs"]
mod bare_ring;
#[path = "common/cacheline.rs"]
mod cacheline;
#[path = "common/ends.rs"]
mod ends;
#[cfg(feature = "iceoryx2")]
#[path = "common/iceoryx2.rs"]
mod iceoryx2;
#[path = "common/peer.rs"]
mod peer;
#[path = "../tests/common/shared_word.rs"]
mod shared_word;
#[path = "common/stats.rs"]
mod stats;

use bare_ring::BareRing;
use criterion::{BenchmarkId, Criterion};
use ends::{socketpair, touch, End, ShmInto, ShmPolling};
use peer::Peer;
use shared_word::SharedWord;
use stats::median;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// A small struct of the kind a market-data or telemetry stream sends: 32 bytes archived.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Clone, Copy, Debug, PartialEq)]
struct Tick {
    seq: u64,
    price: f64,
    qty: u32,
    side: u8,
    symbol: [u8; 8],
}

const TICK: Tick = Tick {
    seq: 7,
    price: 101.25,
    qty: 300,
    side: 1,
    symbol: *b"SHMPIPE\0",
};

/// Keeps this process on one CPU: the parent on CPU 0, every peer on CPU 1, so that the
/// scheduler never puts both on one core or moves them mid-measurement.
fn pin(cpu: usize) {
    // SAFETY: a zeroed `cpu_set_t` is a valid empty set; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A forked peer, on CPU 1, running `serve(count)` for every count the parent asks for.
fn peer(mut serve: impl FnMut(u64)) -> Peer {
    let mut pinned = false;
    Peer::spawn(move |count| {
        if !pinned {
            pin(1);
            pinned = true;
        }
        serve(count)
    })
}

impl End for BareRing {
    fn send(&mut self, msg: &[u8]) {
        BareRing::send(self, msg);
    }
    fn recv(&mut self, scratch: &mut [u8]) -> usize {
        let n = BareRing::recv(self, scratch);
        touch(&scratch[..n]);
        n
    }
}

/// Two connected shmpipe ends: (here, there).
fn shmpipe_pair() -> (ShmInto, ShmInto) {
    let (a, b) = shmpipe::Builder::new()
        .capacity(bare_ring::ring_size())
        .build()
        .unwrap();
    (ShmInto(a), ShmInto(b))
}

/// Two bare rings, one per direction; each side uses the copy it inherits.
fn bare_pair() -> (Duplex, Duplex) {
    let (to_there, to_here) = (BareRing::new().batched(), BareRing::new().batched());
    let pair = |tx: &BareRing, rx: &BareRing| Duplex(tx.clone_handle(), rx.clone_handle());
    (pair(&to_there, &to_here), pair(&to_here, &to_there))
}

/// A bare ring each way.
struct Duplex(BareRing, BareRing);

impl End for Duplex {
    fn send(&mut self, msg: &[u8]) {
        self.0.send(msg);
    }
    fn recv(&mut self, scratch: &mut [u8]) -> usize {
        End::recv(&mut self.1, scratch)
    }
}

/// Per row, per round: the ns per iteration of each criterion sample.
#[derive(Default)]
struct Samples(BTreeMap<String, Vec<Vec<f64>>>);

impl Samples {
    fn record(&mut self, row: &str, round: usize, iters: u64, took: Duration) {
        let rounds = self.0.entry(row.to_string()).or_default();
        rounds.resize_with(rounds.len().max(round + 1), Vec::new);
        rounds[round].push(took.as_nanos() as f64 / iters as f64);
    }
}

struct Bench<'a> {
    c: &'a mut Criterion,
    samples: &'a RefCell<Samples>,
    round: usize,
    /// Criterion's measurement time per row and round.
    measure: Duration,
}

impl Bench<'_> {
    /// Times `iters` iterations of `run` (which returns the elapsed time) as row `row`.
    fn row(&mut self, row: &str, mut run: impl FnMut(u64) -> Duration) {
        let mut g = self.c.benchmark_group("limits");
        g.warm_up_time(self.measure / 3)
            .measurement_time(self.measure)
            .sample_size(10);
        let (samples, round) = (self.samples, self.round);
        g.bench_function(BenchmarkId::new(row, format!("r{}", round + 1)), |b| {
            b.iter_custom(|iters| {
                let took = run(iters);
                samples.borrow_mut().record(row, round, iters, took);
                took
            })
        });
        g.finish();
    }

    /// One-way streaming of `size`-byte messages over `kind`. Each kind's ends are
    /// concrete types, so that the per-message loop makes no dynamic call: behind a
    /// `Box<dyn End>` the bare ring's 64 B stream took 7.0 ns instead of 5.0 (measured
    /// outside criterion), which made its row a softer limit.
    fn stream(&mut self, kind: &str, size: usize) {
        match kind {
            "shmpipe" => self.stream_with(kind, size, shmpipe_pair()),
            "bare_ring" => self.stream_with(kind, size, bare_pair()),
            _ => self.stream_with(kind, size, socketpair()),
        }
    }

    fn stream_with<E: End>(&mut self, kind: &str, size: usize, (mut here, mut there): (E, E)) {
        let payload = vec![0x5Au8; size];
        let mut scratch = vec![0u8; size];
        let mut peer = peer(|count| {
            for _ in 0..count {
                there.send(&payload);
            }
        });
        drop(there);
        self.row(&format!("stream/{size}/{kind}"), |iters| {
            peer.go(iters);
            let start = Instant::now();
            for _ in 0..iters {
                here.recv(&mut scratch);
            }
            start.elapsed()
        });
    }

    /// Round trips of a 64-byte message over `kind` (concrete ends, as for `stream`).
    fn pingpong(&mut self, kind: &str) {
        match kind {
            "shmpipe" => self.pingpong_with(kind, shmpipe_pair()),
            "shmpipe_polling" => {
                let (a, b) = shmpipe_pair();
                self.pingpong_with(kind, (ShmPolling(a.0), ShmPolling(b.0)))
            }
            // Both ends' `fileno` asked for (by `wait`, a selector, an event loop), which
            // they then keep exact: every receive that empties the ring re-arms it.
            "shmpipe_watched" => {
                let (a, b) = shmpipe_pair();
                a.0.fileno().unwrap();
                b.0.fileno().unwrap();
                self.pingpong_with(kind, (a, b))
            }
            "bare_ring" => self.pingpong_with(kind, bare_pair()),
            #[cfg(feature = "iceoryx2")]
            "iceoryx2_polling" => {
                let round = self.round.to_string();
                self.pingpong_with(kind, iceoryx2::pair(&round))
            }
            _ => self.pingpong_with(kind, socketpair()),
        }
    }

    fn pingpong_with<E: End>(&mut self, kind: &str, (mut here, mut there): (E, E)) {
        let payload = vec![0xA5u8; 64];
        let mut scratch = vec![0u8; 64];
        let mut echo = vec![0u8; 64];
        let mut peer = peer(|count| {
            ends::echo(&mut there, &mut echo, count);
        });
        drop(there);
        // One round trip untimed: a contender that connects on first use (iceoryx2)
        // does so here.
        peer.go(1);
        ends::round_trips(&mut here, &payload, &mut scratch, 1);
        self.row(&format!("pingpong/64/{kind}"), |iters| {
            peer.go(iters);
            ends::round_trips(&mut here, &payload, &mut scratch, iters)
        });
    }

    /// One look at an empty ring that does not wait, the writer alive (idle) in another
    /// process: what each turn of a busy-polling loop costs.
    fn empty(&mut self, nonblocking: bool) {
        let (here, there) = shmpipe::pipe(true).unwrap();
        // The peer inherits a copy of `there` and keeps it open: the writer is alive.
        let mut peer = peer(|_| {});
        here.set_nonblocking(nonblocking).unwrap();
        let mut scratch = [0u8; 64];
        let row = if nonblocking { "nonblocking" } else { "poll0" };
        self.row(&format!("empty/{row}"), |iters| {
            peer.go(0);
            let start = Instant::now();
            for _ in 0..iters {
                if nonblocking {
                    black_box(here.recv_bytes_into(&mut scratch).is_err());
                } else {
                    black_box(here.poll(Some(Duration::ZERO)).unwrap());
                }
            }
            start.elapsed()
        });
        drop(there);
    }

    /// The floor of any round trip: one cache line bounced between the processes.
    fn cacheline(&mut self) {
        let line = SharedWord::new();
        let mut peer = peer(|count| cacheline::answer(&line, count));
        self.row("pingpong/64/cacheline", |iters| {
            cacheline::bounce(&line, iters, |n| peer.go(n))
        });
    }

    /// The floor of a copying receive: one `memcpy` of the message on one core, then the
    /// read of one byte per cache line that every receiver here does (without it the
    /// floor would skip work the transports' rows pay: 15 µs of 47 µs at 1 MiB).
    fn memcpy(&mut self, size: usize) {
        let src = vec![0x5Au8; size];
        let mut dst = vec![0u8; size];
        self.row(&format!("stream/{size}/memcpy"), |iters| {
            let start = Instant::now();
            for _ in 0..iters {
                dst.copy_from_slice(black_box(&src));
                touch(&dst);
            }
            start.elapsed()
        });
    }

    /// A small struct: typed `send`/`recv`, or its archive as bytes.
    fn typed(&mut self, typed: bool) {
        let (here, there) = shmpipe::pipe(true).unwrap();
        let archive = rkyv::to_bytes::<rkyv::rancor::Error>(&TICK).unwrap();
        let mut peer = peer(|count| {
            for i in 0..count {
                if typed {
                    let tick = Tick { seq: i, ..TICK };
                    there.send(&tick).unwrap();
                } else {
                    there.send_bytes(&archive).unwrap();
                }
            }
        });
        drop(there);
        let mut scratch = [0u8; 64];
        let row = if typed { "send_recv" } else { "send_bytes" };
        self.row(&format!("typed/tick/{row}"), |iters| {
            peer.go(iters);
            let start = Instant::now();
            for _ in 0..iters {
                if typed {
                    black_box(here.recv::<Tick>().unwrap());
                } else {
                    let n = here.recv_bytes_into(&mut scratch).unwrap();
                    black_box(&scratch[..n]);
                }
            }
            start.elapsed()
        });
    }
}

/// Rows whose ratio to a limit the summary reports: (row, limit).
const AGAINST: [(&str, &str); 11] = [
    ("stream/64/shmpipe", "stream/64/bare_ring"),
    ("stream/64/socketpair", "stream/64/bare_ring"),
    ("pingpong/64/shmpipe", "pingpong/64/bare_ring"),
    ("pingpong/64/shmpipe_polling", "pingpong/64/shmpipe"),
    ("pingpong/64/shmpipe_watched", "pingpong/64/shmpipe"),
    (
        "pingpong/64/iceoryx2_polling",
        "pingpong/64/shmpipe_polling",
    ),
    ("pingpong/64/bare_ring", "pingpong/64/cacheline"),
    ("pingpong/64/socketpair", "pingpong/64/bare_ring"),
    ("stream/1048576/shmpipe", "stream/1048576/memcpy"),
    ("stream/1048576/bare_ring", "stream/1048576/memcpy"),
    ("typed/tick/send_recv", "typed/tick/send_bytes"),
];

fn summary(samples: &Samples) -> String {
    let per_round = |row: &str| -> Vec<f64> {
        samples.0[row]
            .iter()
            .map(|s| median(&mut s.clone()))
            .collect()
    };
    let mut out = String::from(
        "| row | median ns (over rounds) | best round | vs | ratio (median of rounds) | rounds |\n\
         |---|---:|---:|---|---:|---|\n",
    );
    for row in samples.0.keys() {
        let mut mine = per_round(row);
        let rounds: Vec<String> = mine.iter().map(|v| format!("{v:.0}")).collect();
        let best = mine.iter().cloned().fold(f64::INFINITY, f64::min);
        let (vs, ratio) = match AGAINST.iter().find(|(r, _)| r == row) {
            Some((_, limit)) if samples.0.contains_key(*limit) => {
                let theirs = per_round(limit);
                let mut ratios: Vec<f64> = mine.iter().zip(&theirs).map(|(a, b)| a / b).collect();
                (limit.to_string(), format!("{:.2}", median(&mut ratios)))
            }
            _ => ("".into(), "".into()),
        };
        out += &format!(
            "| {row} | {:.1} | {best:.1} | {vs} | {ratio} | {} |\n",
            median(&mut mine),
            rounds.join(" ")
        );
    }
    out
}

fn main() {
    pin(0);
    let mut c = Criterion::default().configure_from_args();
    let rounds: usize = std::env::var("SHMPIPE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let measure = Duration::from_millis(
        std::env::var("SHMPIPE_BENCH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(800),
    );
    let samples = RefCell::new(Samples::default());
    for round in 0..rounds {
        let mut b = Bench {
            c: &mut c,
            samples: &samples,
            round,
            measure,
        };
        for kind in ["bare_ring", "shmpipe", "socketpair"] {
            b.stream(kind, 64);
        }
        b.cacheline();
        for kind in [
            "bare_ring",
            "shmpipe",
            "shmpipe_polling",
            "shmpipe_watched",
            #[cfg(feature = "iceoryx2")]
            "iceoryx2_polling",
            "socketpair",
        ] {
            b.pingpong(kind);
        }
        b.empty(false);
        b.empty(true);
        b.memcpy(1 << 20);
        for kind in ["bare_ring", "shmpipe", "socketpair"] {
            b.stream(kind, 1 << 20);
        }
        b.typed(false);
        b.typed(true);
    }
    let samples = samples.into_inner();
    if samples.0.is_empty() {
        return; // filtered out, or `--list`
    }
    let table = summary(&samples);
    println!("\n{table}");
    let dir = std::path::Path::new("target/criterion");
    if dir.is_dir() {
        let _ = std::fs::write(dir.join("limits-summary.md"), &table);
    }
    c.final_summary();
}
