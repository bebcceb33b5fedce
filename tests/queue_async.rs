//! `Queue` on tokio, between processes: async gets and puts against blocking ones in
//! another process, futures dropped at any point lose no message, and an async put of
//! a message in fragments dropped part-way is taken back.
#![cfg(feature = "tokio")]

mod common;

use common::fork;
use shmpipe::Queue;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn msg(seq: u64, len: usize) -> Vec<u8> {
    let mut m = seq.to_le_bytes().to_vec();
    m.resize(len.max(8), seq as u8);
    m
}

/// Gets raced against a branch that is always ready at its second poll, so that most
/// get futures are dropped while they wait: every message still arrives once, in order.
#[test]
fn async_gets_dropped_while_waiting_lose_no_message() {
    const N: u64 = 2_000;
    let q = Queue::with_capacity(4096).unwrap();
    let producer = {
        let q = q.clone();
        fork(move || {
            for seq in 0..N {
                // Every size, fragments included.
                q.put_bytes(&msg(seq, (seq as usize * 37) % 9000)).unwrap();
            }
            0
        })
    };
    runtime().block_on(async {
        let mut next = 0;
        let mut dropped = 0u64;
        while next < N {
            tokio::select! {
                m = q.get_bytes_async() => {
                    let m = m.unwrap();
                    assert_eq!(m, msg(next, (next as usize * 37) % 9000), "message {next}");
                    next += 1;
                }
                _ = tokio::task::yield_now() => dropped += 1,
            }
        }
        assert!(dropped > 0, "no get was dropped: the test tested nothing");
    });
    producer.join();
    assert!(q.is_empty());
}

/// Async puts into a queue of one item, dropped while they wait for room, against a
/// blocking getter in another process: each message arrives once, in order, and only
/// the puts that returned put anything.
#[test]
fn async_puts_dropped_while_waiting_put_nothing() {
    const N: u64 = 500;
    let q = Queue::with_limits(4096, Some(1)).unwrap();
    let consumer = {
        let q = q.clone();
        fork(move || {
            for seq in 0..N {
                if q.get_bytes().unwrap() != msg(seq, 64) {
                    return 3;
                }
            }
            0
        })
    };
    runtime().block_on(async {
        let mut next = 0;
        while next < N {
            let m = msg(next, 64);
            tokio::select! {
                put = q.put_bytes_async(&m) => {
                    put.unwrap();
                    next += 1;
                }
                _ = tokio::task::yield_now() => {}
            }
        }
    });
    consumer.join();
}

/// An async put of a message four times the queue, with nobody getting, dropped when a
/// timer fires: the message is taken back, and the next message is the next one got.
#[test]
fn an_async_put_in_fragments_dropped_part_way_is_taken_back() {
    let q = Queue::with_capacity(4096).unwrap();
    runtime().block_on(async {
        tokio::select! {
            put = q.put_bytes_async(&[5; 16384]) => panic!("put with nobody getting: {put:?}"),
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
        }
    });
    q.put_bytes(b"after").unwrap();
    assert_eq!(q.get_bytes().unwrap(), b"after");
    assert!(q.is_empty());
}

/// Typed values both ways between a task and a blocking process.
#[test]
fn typed_async_puts_and_gets_cross_processes() {
    let to_child = Queue::new().unwrap();
    let to_parent = Queue::new().unwrap();
    let child = {
        let (inq, outq) = (to_child.clone(), to_parent.clone());
        fork(move || {
            for _ in 0..100 {
                let (n, s): (u64, String) = inq.get().unwrap();
                outq.put(&(n * 2, s.len() as u32)).unwrap();
            }
            0
        })
    };
    runtime().block_on(async {
        for n in 0..100u64 {
            to_child
                .put_async(&(n, "x".repeat(n as usize)))
                .await
                .unwrap();
            let (twice, len): (u64, u32) = to_parent.get_async().await.unwrap();
            assert_eq!((twice, len), (n * 2, n as u32));
        }
    });
    child.join();
}
