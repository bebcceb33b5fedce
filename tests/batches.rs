//! `send_bytes_many`: each message arrives on its own, in order, whatever the mix of
//! sizes (empty, small, larger than the ring, more than the ring holds at once), between
//! processes, and the receiver sees no difference from `send_bytes` one by one.

mod common;

use common::fork;
use shmpipe::{Builder, Error};

/// The tests here run one at a time: a child forked by one would hold copies of the
/// ends another test is waiting to see closed.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn message(i: usize) -> Vec<u8> {
    let len = match i % 7 {
        0 => 0,
        1 => 10_000, // larger than the 4 KiB ring: fragments
        _ => (i * 13) % 300,
    };
    let mut m: Vec<u8> = (0..len).map(|k| (k + i) as u8).collect();
    if len >= 8 {
        m[..8].copy_from_slice(&(i as u64).to_le_bytes());
    }
    m
}

#[test]
fn a_batch_arrives_as_its_messages_in_order() {
    let _serial = serial();
    let (r, w) = Builder::new().capacity(4096).duplex(false).build().unwrap();
    let total = 3_000;
    let child = fork(|| {
        let msgs: Vec<Vec<u8>> = (0..total).map(message).collect();
        // Batches of every size from 1 to 97, many larger than the ring holds.
        let mut at = 0;
        let mut size = 1;
        while at < total {
            let end = (at + size).min(total);
            let batch: Vec<&[u8]> = msgs[at..end].iter().map(|m| m.as_slice()).collect();
            w.send_bytes_many(&batch).unwrap();
            at = end;
            size = size % 97 + 1;
        }
        w.send_bytes_many(&[]).unwrap();
        0
    });
    drop(w);
    for i in 0..total {
        assert_eq!(r.recv_bytes().unwrap(), message(i), "message {i}");
    }
    assert!(matches!(r.recv_bytes(), Err(Error::Eof)));
    child.join();
}

#[test]
fn a_batch_to_a_closed_reader_reports_broken_pipe() {
    let _serial = serial();
    let (r, w) = shmpipe::pipe(false).unwrap();
    drop(r);
    assert!(matches!(
        w.send_bytes_many(&[b"x".as_slice(), b"y"]),
        Err(Error::BrokenPipe)
    ));
}
