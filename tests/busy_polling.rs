//! Looks that do not wait, as a busy-polling loop makes them (`poll(Some(ZERO))`,
//! non-blocking receives): they ask the kernel about the peer only now and then
//! (`shm::liveness::LOOK_GAP`), and still see every message, EOF after a graceful close
//! or a SIGKILL, and broken pipe. Between processes.

mod common;

use common::{fork, WATCHDOG};
use shmpipe::{pipe, Error};
use std::time::{Duration, Instant};

/// The tests here run one at a time: a child forked by one would hold copies of the
/// ends another test is waiting to see closed.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Looks until `ready` says so; the clock only as a watchdog.
fn busy_until(mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < WATCHDOG, "never ready");
        std::hint::spin_loop();
    }
}

#[test]
fn a_busy_polling_reader_sees_messages_then_eof_after_sigkill() {
    let _serial = serial();
    for nonblocking in [false, true] {
        let (r, w) = pipe(false).unwrap();
        let child = fork(|| {
            w.send_bytes(b"last words").unwrap();
            loop {
                std::thread::park();
            }
        });
        drop(w);
        r.set_nonblocking(nonblocking).unwrap();
        let mut got = None;
        busy_until(|| {
            if nonblocking {
                match r.recv_bytes() {
                    Ok(m) => got = Some(m),
                    Err(Error::WouldBlock) => {}
                    Err(e) => panic!("{e}"),
                }
                got.is_some()
            } else {
                r.poll(Some(Duration::ZERO)).unwrap()
            }
        });
        if !nonblocking {
            got = Some(r.recv_bytes().unwrap());
        }
        assert_eq!(got.unwrap(), b"last words");
        // Looks while the writer lives say nothing is there.
        for _ in 0..1000 {
            assert!(!r.poll(Some(Duration::ZERO)).unwrap());
        }
        child.signal(libc::SIGKILL);
        assert_eq!(child.wait(), common::Exit::Signal(libc::SIGKILL));
        let mut eof = false;
        busy_until(|| {
            if nonblocking {
                match r.recv_bytes() {
                    Err(Error::Eof) => eof = true,
                    Err(Error::WouldBlock) => {}
                    other => panic!("{other:?}"),
                }
                eof
            } else {
                r.poll(Some(Duration::ZERO)).unwrap()
            }
        });
        // EOF stays EOF, at once, for every later look.
        assert!(r.poll(Some(Duration::ZERO)).unwrap());
        assert!(matches!(r.recv_bytes(), Err(Error::Eof)));
        r.set_nonblocking(true).unwrap();
        assert!(matches!(r.recv_bytes(), Err(Error::Eof)));
    }
}

/// A graceful close is seen at the very next look: it bumps the closing end's counter in
/// shared memory, which every look reads.
#[test]
fn a_busy_polling_reader_sees_a_graceful_close_at_the_next_look() {
    let _serial = serial();
    let (r, w) = pipe(false).unwrap();
    for _ in 0..1000 {
        assert!(!r.poll(Some(Duration::ZERO)).unwrap());
    }
    // The child closes its copy; the parent's copy, moved into the closure, is dropped
    // with it here as `fork` returns. Every copy is closed, each bumping the counter.
    fork(move || {
        drop(w);
        0
    })
    .join();
    // Within the gap of the looks above, but the counter moved: this look asks.
    assert!(r.poll(Some(Duration::ZERO)).unwrap());
    assert!(matches!(r.recv_bytes(), Err(Error::Eof)));
}

/// Two processes bouncing a message, each busy-polling with `poll(Some(ZERO))` before it
/// receives: every message arrives, in order.
#[test]
fn a_busy_polling_ping_pong_delivers_in_order() {
    let _serial = serial();
    let (a, b) = pipe(true).unwrap();
    let child = fork(|| {
        for i in 0..20_000u32 {
            while !b.poll(Some(Duration::ZERO)).unwrap() {}
            assert_eq!(b.recv_bytes().unwrap(), i.to_le_bytes());
            b.send_bytes(&i.to_le_bytes()).unwrap();
        }
        0
    });
    for i in 0..20_000u32 {
        a.send_bytes(&i.to_le_bytes()).unwrap();
        busy_until(|| a.poll(Some(Duration::ZERO)).unwrap());
        assert_eq!(a.recv_bytes().unwrap(), i.to_le_bytes());
    }
    child.join();
}
