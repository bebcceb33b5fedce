//! shmpipe beside the alternatives, two processes in every case (fork), in one run:
//!
//! * `stream/T/S`: one-way streaming of S-byte messages; time per message received.
//! * `pingpong/T/S`: S-byte message sent and echoed back; time per round trip.
//!
//! Transports: shmpipe (`send_bytes` + `recv_bytes`, `send_bytes` + `recv_bytes_into`,
//! typed `send` + `recv_archived` (a private copy), `recv_archived_in_place` and
//! `recv` (deserialized), all of a `Vec<u8>`), a Unix socketpair with length-prefixed messages
//! (Python's `Pipe` framing: one `writev` per message, a buffered reader), an anonymous
//! `pipe(2)` with the same framing, and the `ipc-channel` crate. The machine's floors:
//! `memcpy` of one message on one core, and a bare cache-line ping-pong between the two
//! processes. Every receiver reads one byte per cache line of each message, and so does
//! the `memcpy` row after its copy.
//!
//! * `typed/T/N`: one-way streaming of a `Vec<String>` of N 16-byte strings, where
//!   validation has work to do: what copying before validating (`archived`) costs next
//!   to validating in place (`in_place`) and to deserializing (`recv`).
//!
//! * `async_stream/T/S`, `async_pingpong/T/64` (with `--features tokio`): the same
//!   between two tokio current-thread runtimes, `AsyncConnection` beside a tokio
//!   `UnixStream` with `tokio-util`'s `LengthDelimitedCodec`.
//!
//! `cargo bench -p shmpipe-benches` runs it all (about 5 minutes on 2 cores); `benches/report.py` turns the
//! results into `benches/results/RESULTS.md` and `throughput.svg`.

#[path = "common/cacheline.rs"]
mod cacheline;
#[path = "common/ends.rs"]
mod ends;
#[path = "common/peer.rs"]
mod peer;
#[path = "../tests/common/shared_word.rs"]
mod shared_word;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ends::{socketpair, touch, End, Framed, Pair, ShmInto};
use peer::Peer;
use shared_word::SharedWord;
use std::hint::black_box;
use std::io::BufReader;
use std::time::{Duration, Instant};

const STREAM_SIZES: [usize; 6] = [8, 64, 1024, 64 << 10, 1 << 20, 16 << 20];
const PINGPONG_SIZES: [usize; 2] = [64, 4096];

struct ShmBytes(shmpipe::Connection);
struct ShmArchived(shmpipe::Connection, Vec<u8>);
struct ShmInPlace(shmpipe::Connection, Vec<u8>);
struct ShmTyped(shmpipe::Connection, Vec<u8>);

impl End for ShmBytes {
    fn send(&mut self, msg: &[u8]) {
        self.0.send_bytes(msg).unwrap();
    }
    fn recv(&mut self, _: &mut [u8]) -> usize {
        let m = self.0.recv_bytes().unwrap();
        touch(&m);
        m.len()
    }
}

/// Sends `msg` as a typed `Vec<u8>`, kept in `vec` (prepared once per size).
fn send_typed(conn: &shmpipe::Connection, vec: &mut Vec<u8>, msg: &[u8]) {
    if vec.len() != msg.len() {
        *vec = msg.to_vec();
    }
    conn.send(vec).unwrap();
}

impl End for ShmArchived {
    fn send(&mut self, msg: &[u8]) {
        send_typed(&self.0, &mut self.1, msg);
    }
    fn recv(&mut self, _: &mut [u8]) -> usize {
        let m = self.0.recv_archived::<Vec<u8>>().unwrap();
        touch(m.as_slice());
        m.len()
    }
}

impl End for ShmInPlace {
    fn send(&mut self, msg: &[u8]) {
        send_typed(&self.0, &mut self.1, msg);
    }
    fn recv(&mut self, _: &mut [u8]) -> usize {
        // SAFETY: the peer is this benchmark's own shmpipe sender.
        let m = unsafe { self.0.recv_archived_in_place::<Vec<u8>>() }.unwrap();
        touch(m.as_slice());
        m.len()
    }
}

impl End for ShmTyped {
    fn send(&mut self, msg: &[u8]) {
        send_typed(&self.0, &mut self.1, msg);
    }
    fn recv(&mut self, _: &mut [u8]) -> usize {
        let m = self.0.recv::<Vec<u8>>().unwrap();
        touch(&m);
        m.len()
    }
}

struct Ipc(
    ipc_channel::ipc::IpcBytesSender,
    ipc_channel::ipc::IpcBytesReceiver,
);

impl End for Ipc {
    fn send(&mut self, msg: &[u8]) {
        self.0.send(msg).unwrap();
    }
    fn recv(&mut self, _: &mut [u8]) -> usize {
        let m = self.1.recv().unwrap();
        touch(&m);
        m.len()
    }
}

fn pipes() -> Pair {
    let (r1, w1) = std::io::pipe().unwrap();
    let (r2, w2) = std::io::pipe().unwrap();
    (
        Box::new(Framed {
            reader: BufReader::with_capacity(64 << 10, r1),
            writer: w2,
        }),
        Box::new(Framed {
            reader: BufReader::with_capacity(64 << 10, r2),
            writer: w1,
        }),
    )
}

fn ipc() -> Pair {
    let (s1, r1) = ipc_channel::ipc::bytes_channel().unwrap();
    let (s2, r2) = ipc_channel::ipc::bytes_channel().unwrap();
    (Box::new(Ipc(s2, r1)), Box::new(Ipc(s1, r2)))
}

fn shm(kind: &str) -> Pair {
    let (a, b) = shmpipe::pipe(true).unwrap();
    match kind {
        "shmpipe_bytes" | "shmpipe" => (Box::new(ShmBytes(a)), Box::new(ShmBytes(b))),
        "shmpipe_into" => (Box::new(ShmInto(a)), Box::new(ShmInto(b))),
        "shmpipe_in_place" => (
            Box::new(ShmInPlace(a, Vec::new())),
            Box::new(ShmInPlace(b, Vec::new())),
        ),
        "shmpipe_recv" => (
            Box::new(ShmTyped(a, Vec::new())),
            Box::new(ShmTyped(b, Vec::new())),
        ),
        _ => (
            Box::new(ShmArchived(a, Vec::new())),
            Box::new(ShmArchived(b, Vec::new())),
        ),
    }
}

fn make(kind: &str) -> Pair {
    match kind {
        "socketpair" => socketpair(),
        "pipe" => pipes(),
        "ipc_channel" => ipc(),
        _ => shm(kind),
    }
}

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    for size in STREAM_SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let payload = vec![0x5Au8; size];
        let mut scratch = vec![0u8; size];
        for kind in [
            "shmpipe_bytes",
            "shmpipe_into",
            "shmpipe_archived",
            "shmpipe_in_place",
            "shmpipe_recv",
            "socketpair",
            "pipe",
            "ipc_channel",
        ] {
            let (mut receiver, mut sender) = make(kind);
            let mut peer = Peer::spawn(|count| {
                for _ in 0..count {
                    sender.send(&payload);
                }
            });
            drop(sender);
            g.bench_function(BenchmarkId::new(kind, size), |b| {
                b.iter_custom(|iters| {
                    peer.go(iters);
                    let start = Instant::now();
                    for _ in 0..iters {
                        receiver.recv(&mut scratch);
                    }
                    start.elapsed()
                })
            });
            drop(receiver);
            drop(peer);
        }
        let mut dst = vec![0u8; size];
        g.bench_function(BenchmarkId::new("memcpy", size), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&payload));
                touch(&dst);
            })
        });
    }
    g.finish();
}

fn pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    for size in PINGPONG_SIZES {
        let payload = vec![0xA5u8; size];
        let mut scratch = vec![0u8; size];
        for kind in ["shmpipe", "socketpair", "pipe", "ipc_channel"] {
            let kind_to_make = if kind == "shmpipe" {
                "shmpipe_into"
            } else {
                kind
            };
            let (mut here, mut there) = make(kind_to_make);
            let mut echo_buf = vec![0u8; size];
            let mut peer = Peer::spawn(|count| {
                ends::echo(&mut *there, &mut echo_buf, count);
            });
            drop(there);
            g.bench_function(BenchmarkId::new(kind, size), |b| {
                b.iter_custom(|iters| {
                    peer.go(iters);
                    ends::round_trips(&mut *here, &payload, &mut scratch, iters)
                })
            });
            drop(here);
            drop(peer);
        }
    }
    // The floor: one cache line bounced between the two processes, nothing else.
    let line = SharedWord::new();
    let mut peer = Peer::spawn(|count| cacheline::answer(&line, count));
    g.bench_function(BenchmarkId::new("cacheline", 64), |b| {
        b.iter_custom(|iters| cacheline::bounce(&line, iters, |n| peer.go(n)))
    });
    drop(peer);
    g.finish();
}

fn typed(c: &mut Criterion) {
    let mut g = c.benchmark_group("typed");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    for n in [4usize, 64, 4096] {
        let value: Vec<String> = (0..n).map(|i| format!("string {i:>9}")).collect();
        let archive_len = rkyv::to_bytes::<rkyv::rancor::Error>(&value).unwrap().len();
        g.throughput(Throughput::Bytes(archive_len as u64));
        for kind in ["archived", "in_place", "recv"] {
            let (receiver, sender) = shmpipe::pipe(true).unwrap();
            let mut peer = Peer::spawn(|count| {
                for _ in 0..count {
                    sender.send(&value).unwrap();
                }
            });
            drop(sender);
            let read = |strings: usize, bytes: usize| black_box((strings, bytes));
            g.bench_function(BenchmarkId::new(kind, n), |b| {
                b.iter_custom(|iters| {
                    peer.go(iters);
                    let start = Instant::now();
                    for _ in 0..iters {
                        match kind {
                            "archived" => {
                                let m = receiver.recv_archived::<Vec<String>>().unwrap();
                                read(m.len(), m.last().map_or(0, |s| s.len()));
                            }
                            "in_place" => {
                                // SAFETY: the peer is this benchmark's shmpipe sender.
                                let m = unsafe { receiver.recv_archived_in_place::<Vec<String>>() }
                                    .unwrap();
                                read(m.len(), m.last().map_or(0, |s| s.len()));
                            }
                            _ => {
                                let m = receiver.recv::<Vec<String>>().unwrap();
                                read(m.len(), m.last().map_or(0, |s| s.len()));
                            }
                        }
                    }
                    start.elapsed()
                })
            });
            drop(receiver);
            drop(peer);
        }
    }
    g.finish();
}

/// What a receiver pays to read a message of `size` bytes that the peer cannot change
/// under it, two ways, in one process (the design decision in DESIGN.md, "Trust"):
///
/// * `copy`: the writer copies the message into shared memory (the ring) and the reader
///   copies it out into a buffer of its own, kept between messages;
/// * `sealed_memfd`: the writer puts the message in a fresh memfd and seals it against
///   writes (`F_SEAL_WRITE`); the reader maps it read-only and reads it in place (one
///   byte per page, so every page is faulted in), then unmaps it. Passing the memfd over
///   a socket (two more system calls) is left out, to the memfd's advantage.
fn handover(c: &mut Criterion) {
    use rustix::fs::{MemfdFlags, SealFlags};
    let mut g = c.benchmark_group("handover");
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(10);
    for size in [4096usize, 64 << 10, 1 << 20, 16 << 20] {
        g.throughput(Throughput::Bytes(size as u64));
        let message = vec![0x3Cu8; size];
        let mut ring = vec![0u8; size];
        let mut mine = vec![0u8; size];
        g.bench_function(BenchmarkId::new("copy", size), |b| {
            b.iter(|| {
                ring.copy_from_slice(black_box(&message));
                mine.copy_from_slice(black_box(&ring));
                touch(black_box(&mine));
            })
        });
        g.bench_function(BenchmarkId::new("sealed_memfd", size), |b| {
            b.iter(|| {
                let fd = rustix::fs::memfd_create(
                    "msg",
                    MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
                )
                .unwrap();
                rustix::fs::ftruncate(&fd, size as u64).unwrap();
                let mut at = 0;
                while at < size {
                    at += rustix::io::pwrite(&fd, &message[at..], at as u64).unwrap();
                }
                rustix::fs::fcntl_add_seals(
                    &fd,
                    SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW,
                )
                .unwrap();
                let file = std::fs::File::from(fd);
                // SAFETY: a private memfd sealed against writes and resizing: nobody can
                // change or shrink it under the mapping.
                let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
                black_box(map.iter().step_by(4096).fold(0u8, |a, &b| a ^ b));
            })
        });
    }
    g.finish();
}

/// Async rows (feature `tokio`): each side a current-thread tokio runtime in its own
/// process. `shmpipe_async` is `AsyncConnection` (`send_bytes` / `recv_bytes_into`),
/// `tokio_unix` a tokio `UnixStream` with `tokio-util`'s `LengthDelimitedCodec` (one
/// flushed frame per message), and `shmpipe_sync` the blocking shmpipe of `stream`, for
/// the ratio.
#[cfg(feature = "tokio")]
mod async_rows {
    use super::{make, touch, Peer};
    use criterion::{BenchmarkId, Criterion, Throughput};
    use futures_util::{SinkExt, StreamExt};
    use std::time::{Duration, Instant};
    use tokio_util::codec::{Framed, LengthDelimitedCodec};

    #[allow(clippy::large_enum_variant)] // two per benchmark
    enum AsyncEnd {
        Shm(shmpipe::AsyncConnection),
        Unix(Framed<tokio::net::UnixStream, LengthDelimitedCodec>),
    }

    impl AsyncEnd {
        async fn send(&mut self, msg: &[u8]) {
            match self {
                AsyncEnd::Shm(c) => c.send_bytes(msg).await.unwrap(),
                AsyncEnd::Unix(f) => f.send(bytes::Bytes::copy_from_slice(msg)).await.unwrap(),
            }
        }

        async fn recv(&mut self, scratch: &mut [u8]) -> usize {
            match self {
                AsyncEnd::Shm(c) => {
                    let n = c.recv_bytes_into(scratch).await.unwrap();
                    touch(&scratch[..n]);
                    n
                }
                AsyncEnd::Unix(f) => {
                    let m = f.next().await.unwrap().unwrap();
                    touch(&m);
                    m.len()
                }
            }
        }
    }

    /// One end before it meets a runtime (pairs are made before the fork).
    #[allow(clippy::large_enum_variant)]
    enum Raw {
        Shm(shmpipe::Connection),
        Unix(std::os::unix::net::UnixStream),
    }

    impl Raw {
        /// Inside a runtime.
        fn into_async(self) -> AsyncEnd {
            match self {
                Raw::Shm(c) => AsyncEnd::Shm(shmpipe::AsyncConnection::new(c).unwrap()),
                Raw::Unix(s) => {
                    s.set_nonblocking(true).unwrap();
                    let s = tokio::net::UnixStream::from_std(s).unwrap();
                    let codec = LengthDelimitedCodec::builder()
                        .max_frame_length(64 << 20)
                        .new_codec();
                    AsyncEnd::Unix(Framed::new(s, codec))
                }
            }
        }
    }

    fn raw_pair(kind: &str) -> (Raw, Raw) {
        match kind {
            "shmpipe_async" => {
                let (a, b) = shmpipe::pipe(true).unwrap();
                (Raw::Shm(a), Raw::Shm(b))
            }
            _ => {
                let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
                (Raw::Unix(a), Raw::Unix(b))
            }
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A forked peer that turns its raw end async (in a runtime of its own) on first use
    /// and runs `serve` on it for each count the bench asks for.
    fn async_peer(raw: Raw, serve: impl AsyncFnMut(&mut AsyncEnd, u64) + 'static) -> Peer {
        let mut raw = Some(raw);
        let mut state: Option<(tokio::runtime::Runtime, AsyncEnd)> = None;
        let mut serve = serve;
        Peer::spawn(move |count| {
            let (rt, end) = state.get_or_insert_with(|| {
                let rt = runtime();
                let end = {
                    let _in = rt.enter();
                    raw.take().unwrap().into_async()
                };
                (rt, end)
            });
            rt.block_on(serve(end, count));
        })
    }

    pub fn stream(c: &mut Criterion) {
        let mut g = c.benchmark_group("async_stream");
        g.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(10);
        for size in [64usize, 1 << 20] {
            g.throughput(Throughput::Bytes(size as u64));
            let payload = vec![0x5Au8; size];
            let mut scratch = vec![0u8; size];
            for kind in ["shmpipe_async", "tokio_unix"] {
                let (here, there) = raw_pair(kind);
                let p = payload.clone();
                let mut peer = async_peer(there, async move |end, count| {
                    for _ in 0..count {
                        end.send(&p).await;
                    }
                });
                let rt = runtime();
                let mut here = {
                    let _in = rt.enter();
                    here.into_async()
                };
                g.bench_function(BenchmarkId::new(kind, size), |b| {
                    b.iter_custom(|iters| {
                        peer.go(iters);
                        rt.block_on(async {
                            let start = Instant::now();
                            for _ in 0..iters {
                                here.recv(&mut scratch).await;
                            }
                            start.elapsed()
                        })
                    })
                });
                drop(here);
                drop(peer);
            }
            // The blocking shmpipe in the same group, for the ratio.
            let (mut receiver, mut sender) = make("shmpipe_into");
            let mut peer = Peer::spawn(|count| {
                for _ in 0..count {
                    sender.send(&payload);
                }
            });
            drop(sender);
            g.bench_function(BenchmarkId::new("shmpipe_sync", size), |b| {
                b.iter_custom(|iters| {
                    peer.go(iters);
                    let start = Instant::now();
                    for _ in 0..iters {
                        receiver.recv(&mut scratch);
                    }
                    start.elapsed()
                })
            });
            drop(receiver);
            drop(peer);
        }
        g.finish();
    }

    pub fn pingpong(c: &mut Criterion) {
        let mut g = c.benchmark_group("async_pingpong");
        g.warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sample_size(10);
        let size = 64;
        let payload = vec![0xA5u8; size];
        let mut scratch = vec![0u8; size];
        for kind in ["shmpipe_async", "tokio_unix"] {
            let (here, there) = raw_pair(kind);
            let mut peer = async_peer(there, async move |end, count| {
                let mut buf = vec![0u8; 64];
                for _ in 0..count {
                    let n = end.recv(&mut buf).await;
                    end.send(&buf[..n]).await;
                }
            });
            let rt = runtime();
            let mut here = {
                let _in = rt.enter();
                here.into_async()
            };
            g.bench_function(BenchmarkId::new(kind, size), |b| {
                b.iter_custom(|iters| {
                    peer.go(iters);
                    rt.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            here.send(&payload).await;
                            here.recv(&mut scratch).await;
                        }
                        start.elapsed()
                    })
                })
            });
            drop(here);
            drop(peer);
        }
        g.finish();
    }
}

#[cfg(feature = "tokio")]
criterion_group!(
    benches,
    stream,
    pingpong,
    typed,
    handover,
    async_rows::stream,
    async_rows::pingpong
);
#[cfg(not(feature = "tokio"))]
criterion_group!(benches, stream, pingpong, typed, handover);
criterion_main!(benches);
