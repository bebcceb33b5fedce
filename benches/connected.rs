//! Connections made by address, two processes in every case, in one run:
//!
//! * `connected/T/S`: one-way streaming of S-byte messages; time per message received.
//!
//! Transports: `pipe` (`shmpipe::pipe`, the reference), `by_path` (a shmpipe `Listener`
//! and `Client` on a Unix socket path: shared memory, so it should match `pipe`),
//! `tcp` (shmpipe over TCP loopback, in Python's wire protocol) and `python_tcp`
//! (CPython's own `multiprocessing.connection` `Listener` and `Client` over TCP
//! loopback, run by `benches/python_connection.py`). Every receiver reads one byte per
//! cache line of each message.
//!
//! `cargo bench -p shmpipe-benches --bench connected` runs it (about a minute on 2 cores).

#[path = "common/peer.rs"]
mod peer;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use peer::Peer;
use shmpipe::{Client, Connection, Listener};
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SIZES: [usize; 2] = [64, 1 << 20];

fn touch(bytes: &[u8]) {
    black_box(bytes.iter().step_by(64).fold(0u8, |a, &b| a ^ b));
}

/// Both ends of a connection made through a listener, in this process (before the
/// fork that gives one of them to the peer).
fn connected(address: shmpipe::Address) -> (Connection, Connection) {
    let listener = Listener::bind(address).unwrap();
    let addr = listener.address().clone();
    let client = std::thread::spawn(move || Client::connect(addr).unwrap());
    let accepted = listener.accept().unwrap();
    (accepted, client.join().unwrap())
}

fn make(kind: &str) -> (Connection, Connection) {
    match kind {
        "pipe" => shmpipe::pipe(true).unwrap(),
        "by_path" => {
            let path =
                std::env::temp_dir().join(format!("shmpipe-bench-{}.sock", std::process::id()));
            let pair = connected(path.as_path().into());
            assert!(pair.0.is_shared_memory());
            pair
        }
        _ => connected((Ipv4Addr::LOCALHOST, 0).into()),
    }
}

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("connected");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let payload = vec![0x5Au8; size];
        for kind in ["pipe", "by_path", "tcp"] {
            let (receiver, sender) = make(kind);
            let mut peer = Peer::spawn(|count| {
                for _ in 0..count {
                    sender.send_bytes(&payload).unwrap();
                }
            });
            drop(sender);
            g.bench_function(BenchmarkId::new(kind, size), |b| {
                b.iter_custom(|iters| {
                    peer.go(iters);
                    let start = Instant::now();
                    for _ in 0..iters {
                        touch(&receiver.recv_bytes().unwrap());
                    }
                    start.elapsed()
                })
            });
        }
        let mut py = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/python_connection.py"))
            .arg(size.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut to_py = py.stdin.take().unwrap();
        let mut from_py = BufReader::new(py.stdout.take().unwrap());
        g.bench_function(BenchmarkId::new("python_tcp", size), |b| {
            b.iter_custom(|iters| {
                writeln!(to_py, "{iters}").unwrap();
                let mut line = String::new();
                from_py.read_line(&mut line).unwrap();
                Duration::from_nanos(line.trim().parse().unwrap())
            })
        });
        drop(to_py);
        py.wait().unwrap();
    }
    g.finish();
}

criterion_group!(benches, stream);
criterion_main!(benches);
