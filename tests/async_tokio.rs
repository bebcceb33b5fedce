//! `AsyncConnection` on tokio, between processes: either side may be async or blocking,
//! futures dropped at any point lose or tear no message, and a waiting task wakes on
//! the peer's death.
#![cfg(feature = "tokio")]

mod common;

use common::{fork, Child, Rng};
use shmpipe::{AsyncConnection, Builder, Connection, Error};
use std::sync::Arc;
use std::time::Duration;

const RING: usize = 4096;

/// These tests fork children that hold pipe ends until they exit, some only when
/// killed: run one at a time, so that no child inherits another test's ends (which would
/// keep that test's EOF from coming).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Message `i`: its length and bytes depend on `i` (sizes up to 300 KiB, most of them
/// fragmented through a 4 KiB ring); the first 8 bytes are `i`.
fn message(i: u64) -> Vec<u8> {
    let len = match i % 4 {
        0 => 16,
        1 => 1000,
        2 => 5000,
        _ => 300_000,
    } + i as usize;
    let mut m = Vec::new();
    common::stream::fill(i, len, &mut m);
    m[..8].copy_from_slice(&i.to_le_bytes());
    m
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A 4 KiB pipe whose other end is held only by a forked child running `f`.
fn with_peer(f: impl FnOnce(Connection) -> i32) -> (Connection, Child) {
    let mut ends = Some(Builder::new().capacity(RING).build().unwrap());
    let child = fork(|| {
        let (a, b) = ends.take().unwrap();
        drop(a);
        f(b)
    });
    let (a, b) = ends.take().unwrap();
    drop(b);
    (a, child)
}

#[test]
fn an_async_reader_gets_a_blocking_writer_s_messages_whole_then_eof() {
    let _serial = serial();
    let (a, writer) = with_peer(|b| {
        for i in 0..200 {
            b.send_bytes(&message(i)).unwrap();
        }
        0
    });
    current_thread().block_on(async {
        let a = AsyncConnection::new(a).unwrap();
        let mut buf = vec![0u8; 400_000];
        for i in 0..200u64 {
            let m = match i % 3 {
                0 => a.recv_bytes().await.unwrap(),
                1 => a.recv_bytes_max(400_000).await.unwrap(),
                _ => {
                    let n = a.recv_bytes_into(&mut buf).await.unwrap();
                    buf[..n].to_vec()
                }
            };
            assert_eq!(m, message(i), "message {i}");
        }
        assert!(matches!(a.recv_bytes().await, Err(Error::Eof)));
    });
    writer.join();
}

#[test]
fn a_blocking_reader_gets_an_async_writer_s_messages_whole() {
    let _serial = serial();
    let (a, reader) = with_peer(|b| {
        for i in 0..200 {
            if b.recv_bytes().unwrap() != message(i) {
                return 1;
            }
        }
        i32::from(!matches!(b.recv_bytes(), Err(Error::Eof)))
    });
    let rt = tokio::runtime::Runtime::new().unwrap(); // multi-threaded
    rt.block_on(async {
        let a = Arc::new(AsyncConnection::new(a).unwrap());
        let task = {
            let a = a.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    a.send_bytes(&message(i)).await.unwrap();
                }
            })
        };
        task.await.unwrap();
    });
    drop(rt);
    reader.join();
}

/// Futures dropped at random points (tiny `tokio::time::timeout`s around every call, on
/// both sides): every message whose send was reported done arrives once, whole, in
/// order; none whose send was dropped shows up, not even in part.
#[test]
fn futures_dropped_at_random_points_lose_and_tear_nothing() {
    let _serial = serial();
    const SENDS: u64 = 300;
    let (a, writer) = with_peer(|b| {
        let rt = current_thread();
        let b = rt.block_on(async {
            let b = AsyncConnection::new(b).unwrap();
            let mut rng = Rng(0xA5);
            let mut done = 0u64;
            for i in 0..SENDS {
                let m = message(i);
                // Some long messages get all the time they need, so that receives are
                // dropped part-way through messages that do arrive.
                let limit = match i % 8 {
                    7 => Duration::from_secs(3600),
                    _ => Duration::from_micros(1 + rng.below(400)),
                };
                match tokio::time::timeout(limit, b.send_bytes(&m)).await {
                    Ok(Ok(())) => done += 1,
                    Ok(Err(e)) => panic!("{e}"),
                    Err(_) => {} // dropped part-way: taken back
                }
            }
            eprintln!("writer: {done} of {SENDS} sends completed, the rest dropped");
            let b = b.into_inner();
            b.send_bytes(&u64::MAX.to_le_bytes()).unwrap();
            b.send_bytes(&done.to_le_bytes()).unwrap();
            b
        });
        drop(b);
        0
    });
    let got = current_thread().block_on(async {
        let a = AsyncConnection::new(a).unwrap();
        let mut rng = Rng(0x5A);
        let mut got: Vec<u64> = Vec::new();
        let mut dropped = 0;
        loop {
            let limit = Duration::from_micros(1 + rng.below(300));
            let m = match tokio::time::timeout(limit, a.recv_bytes()).await {
                Ok(r) => r.unwrap(),
                Err(_) => {
                    dropped += 1; // dropped: the next call goes on
                    continue;
                }
            };
            let i = u64::from_le_bytes(m[..8].try_into().unwrap());
            if m.len() == 8 && i == u64::MAX {
                let count = a.recv_bytes().await.unwrap();
                let done = u64::from_le_bytes(count[..8].try_into().unwrap());
                assert_eq!(got.len() as u64, done, "messages received vs sends done");
                eprintln!("reader: {} received, {dropped} receives dropped", got.len());
                break got;
            }
            assert_eq!(m, message(i), "message {i} is torn");
            assert!(got.last().is_none_or(|&last| last < i), "out of order");
            got.push(i);
        }
    });
    assert!(!got.is_empty());
    writer.join();
}

/// One task sends on an end while another receives on it; the other end echoes.
#[test]
fn one_task_sends_while_another_receives_on_the_same_end() {
    let _serial = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (a, b) = Builder::new().capacity(RING).build().unwrap();
        let a = Arc::new(AsyncConnection::new(a).unwrap());
        let b = AsyncConnection::new(b).unwrap();
        let echo = tokio::spawn(async move {
            while let Ok(m) = b.recv_bytes().await {
                b.send_bytes(&m).await.unwrap();
            }
        });
        let sender = {
            let a = a.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    a.send_bytes(&message(i)).await.unwrap();
                }
            })
        };
        let receiver = {
            let a = a.clone();
            tokio::spawn(async move {
                for i in 0..500 {
                    assert_eq!(a.recv_bytes().await.unwrap(), message(i));
                }
            })
        };
        sender.await.unwrap();
        receiver.await.unwrap();
        drop(a);
        echo.await.unwrap();
    });
}

/// Two tasks receiving on one end take turns: each message goes whole to one of them.
#[test]
fn two_receiving_tasks_each_get_whole_messages_exactly_once() {
    let _serial = serial();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (a, b) = Builder::new().capacity(RING).build().unwrap();
        let a = Arc::new(AsyncConnection::new(a).unwrap());
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let a = a.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while let Ok(m) = a.recv_bytes().await {
                        let i = u64::from_le_bytes(m[..8].try_into().unwrap());
                        assert_eq!(m, message(i));
                        got.push(i);
                    }
                    got
                })
            })
            .collect();
        let b = AsyncConnection::new(b).unwrap();
        for i in 0..300 {
            b.send_bytes(&message(i)).await.unwrap();
        }
        drop(b);
        let mut all = Vec::new();
        for r in readers {
            all.extend(r.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..300).collect::<Vec<_>>());
    });
}

#[test]
fn a_waiting_task_wakes_when_the_peer_is_killed() {
    let _serial = serial();
    let (a, peer) = with_peer(|b| {
        b.send_bytes(b"ready").unwrap();
        loop {
            std::thread::park();
        }
    });
    current_thread().block_on(async {
        let a = AsyncConnection::new(a).unwrap();
        assert_eq!(a.recv_bytes().await.unwrap(), b"ready");
        // Fill the ring so that the send below waits for room.
        let sending = a.send_bytes(&[1; 100_000]);
        let receiving = a.recv_bytes();
        peer.signal(libc::SIGKILL);
        let (sent, got) = tokio::join!(sending, receiving);
        assert!(matches!(sent, Err(Error::BrokenPipe)), "{sent:?}");
        assert!(matches!(got, Err(Error::Eof)), "{got:?}");
    });
    drop(peer);
}

/// `AsyncConnection` and its futures can go to other threads.
#[test]
fn futures_are_send() {
    let _serial = serial();
    fn send<T: Send>(_: &T) {}
    let rt = current_thread();
    rt.block_on(async {
        let (a, b) = shmpipe::pipe(true).unwrap();
        let (a, b) = (
            AsyncConnection::new(a).unwrap(),
            AsyncConnection::new(b).unwrap(),
        );
        let mut buf = [0u8; 4];
        send(&a.send_bytes(b"x"));
        send(&a.send(&1u8));
        send(&b.recv_bytes());
        send(&b.recv_bytes_max(1));
        send(&b.recv_bytes_into(&mut buf));
        send(&b.recv::<u8>());
        send(&b.readable());
        let (mut closed, _other) = shmpipe::pipe(true).unwrap();
        closed.close();
        assert!(matches!(AsyncConnection::new(closed), Err(Error::Closed)));
    });
}

/// `readable` sleeps like a receive and wakes on the message. (It once looked with a
/// blocking `poll`, which drained the doorbell and lowered the flag, then slept with
/// the flag down: the message never rang.)
#[test]
fn readable_wakes_when_a_message_comes() {
    let _serial = serial();
    let (a, b) = shmpipe::pipe(true).unwrap();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let sender = std::thread::spawn(move || {
        // Send once the receiving thread is asleep in the reactor.
        while common::process_state(tid) != Some('S') {
            std::thread::yield_now();
        }
        a.send_bytes(b"now").unwrap();
        a
    });
    current_thread().block_on(async {
        let b = AsyncConnection::new(b).unwrap();
        tokio::time::timeout(Duration::from_secs(60), b.readable())
            .await
            .expect("readable never woke")
            .unwrap();
        assert_eq!(b.recv_bytes().await.unwrap(), b"now");
    });
    drop(sender.join().unwrap());
}

/// An end whose `fileno` was asked for before it went async: its receives must not
/// drain the doorbells (that is the wrapper's job), or a send sleeping for room on the
/// same end could miss its wake-up.
#[test]
fn an_end_watched_before_going_async_still_wakes_its_sender() {
    let _serial = serial();
    let (a, b) = Builder::new().capacity(RING).build().unwrap();
    a.fileno().unwrap();
    current_thread().block_on(async {
        let (a, b) = (
            AsyncConnection::new(a).unwrap(),
            AsyncConnection::new(b).unwrap(),
        );
        let work = async {
            let a_sends = async {
                for i in 0..50 {
                    a.send_bytes(&message(i * 4 + 2)).await.unwrap();
                }
            };
            let b_sends = async {
                for i in 0..200 {
                    b.send_bytes(&message(i * 4)).await.unwrap();
                }
            };
            let a_receives = async {
                for i in 0..200 {
                    assert_eq!(a.recv_bytes().await.unwrap(), message(i * 4));
                }
            };
            let b_receives = async {
                for i in 0..50 {
                    assert_eq!(b.recv_bytes().await.unwrap(), message(i * 4 + 2));
                }
            };
            tokio::join!(a_sends, b_sends, a_receives, b_receives);
        };
        tokio::time::timeout(Duration::from_secs(60), work)
            .await
            .expect("a task slept through its wake-up");
    });
}

/// A typed value larger than the ring: serialized once into the connection's kept
/// buffer and sent in fragments while the other end reads.
#[test]
fn a_typed_value_longer_than_the_ring_goes_whole() {
    let _serial = serial();
    current_thread().block_on(async {
        let (a, b) = Builder::new().capacity(RING).build().unwrap();
        let (a, b) = (
            AsyncConnection::new(a).unwrap(),
            AsyncConnection::new(b).unwrap(),
        );
        let value: Vec<u64> = (0..100_000).map(|i| i * 7).collect();
        for _ in 0..3 {
            let (sent, got) = tokio::join!(a.send(&value), b.recv::<Vec<u64>>());
            sent.unwrap();
            assert_eq!(got.unwrap(), value);
        }
    });
}
