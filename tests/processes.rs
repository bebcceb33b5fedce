//! The pipe between real processes made with fork: messages, EOF across every copy of
//! an end, SIGKILL on either side, signals, and messages far larger than the ring.

mod common;

use common::{fork, message, Exit, Rng};
use shmpipe::{pipe, Builder, Error};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[test]
fn child_sends_parent_receives() {
    let (parent_end, child_end) = pipe(true).unwrap();
    let child = fork(|| {
        child_end.send_bytes(b"Hello").unwrap();
        0
    });
    assert_eq!(parent_end.recv_bytes().unwrap(), b"Hello");
    child.join();
}

#[test]
fn talker_round_trip() {
    let (parent_end, child_end) = pipe(true).unwrap();
    let child = fork(|| {
        child_end.send_bytes(b"name=bob spam=42").unwrap();
        let reply = child_end.recv_bytes().unwrap();
        (reply != b"ssppaamm") as i32
    });
    drop(child_end);
    assert_eq!(parent_end.recv_bytes().unwrap(), b"name=bob spam=42");
    parent_end.send_bytes(b"ssppaamm").unwrap();
    child.join();
}

/// The seeds' EOF loop: each process closes the ends it does not use; the child reads
/// until EOF, which comes only once the parent has closed its end too.
#[test]
fn eof_loop_with_unused_ends_closed() {
    let (mut conn1, mut conn2) = pipe(true).unwrap();
    let child = fork(|| {
        conn1.close();
        let mut got = 0;
        loop {
            match conn2.recv_bytes() {
                Ok(m) if m == format!("Hello {got}").as_bytes() => got += 1,
                Ok(_) => return 2,
                Err(Error::Eof) => break,
                Err(_) => return 3,
            }
        }
        conn2.close();
        (got != 5) as i32
    });
    conn2.close();
    for i in 0..5 {
        conn1.send_bytes(format!("Hello {i}").as_bytes()).unwrap();
    }
    conn1.close();
    child.join();
}

#[test]
fn eof_when_the_writer_process_exits_without_closing() {
    let (r, w) = pipe(false).unwrap();
    let child = fork(|| {
        w.send_bytes(b"bye").unwrap();
        0 // _exit: no destructor runs, the kernel closes the descriptors
    });
    drop(w);
    assert_eq!(r.recv_bytes().unwrap(), b"bye");
    assert!(matches!(r.recv_bytes(), Err(Error::Eof)));
    child.join();
}

#[test]
fn eof_waits_for_every_copy_in_every_process() {
    let (r, w) = pipe(false).unwrap();
    let (ctl_r, ctl_w) = pipe(false).unwrap();
    // The child inherits a copy of `w` and holds it until told to exit.
    let child = fork(|| {
        ctl_r.recv_bytes().unwrap();
        0
    });
    drop(w);
    drop(ctl_r);
    assert!(
        !r.poll(Some(Duration::from_millis(50))).unwrap(),
        "the child's copy keeps it open"
    );
    ctl_w.send_bytes(b"go").unwrap();
    assert!(matches!(r.recv_bytes(), Err(Error::Eof)));
    child.join();
}

#[test]
fn sigkill_of_the_writer_mid_message_delivers_whole_messages_only() {
    let (r, w) = Builder::new()
        .duplex(false)
        .capacity(64 * 1024)
        .build()
        .unwrap();
    let child = fork(|| {
        w.send_bytes(b"before").unwrap();
        // Ten times the ring: the child blocks with the message half written.
        w.send_bytes(&vec![0xAB; 640 * 1024]).unwrap();
        w.send_bytes(b"never").unwrap();
        0
    });
    drop(w);
    assert_eq!(r.recv_bytes().unwrap(), b"before");
    // The first fragment of the big message is in the ring: the child is mid-message.
    assert!(r.poll(None).unwrap());
    child.signal(libc::SIGKILL);
    assert_eq!(child.wait(), Exit::Signal(libc::SIGKILL));
    assert!(matches!(r.recv_bytes(), Err(Error::Eof)));
}

#[test]
fn sigkill_of_the_reader_while_the_writer_is_blocked_gives_broken_pipe() {
    let (mut r, mut w) = Builder::new().duplex(false).capacity(4096).build().unwrap();
    // Each child closes the end it does not use, as with Python's Pipe: a forgotten copy
    // of the reading end in the writer would keep the pipe from breaking.
    let reader = fork(|| {
        w.close();
        // Hold the reading end and never read.
        // SAFETY: pause just sleeps until a signal (SIGKILL here) arrives.
        unsafe { libc::pause() };
        0
    });
    let writer = fork(|| {
        r.close();
        loop {
            match w.send_bytes(&[7; 1000]) {
                Ok(()) => continue,
                Err(Error::BrokenPipe) => return 0,
                Err(_) => return 1,
            }
        }
    });
    drop((r, w));
    // The writer sleeps only once the ring is full and it is blocked in send.
    writer.wait_until_sleeping();
    reader.signal(libc::SIGKILL);
    assert_eq!(reader.wait(), Exit::Signal(libc::SIGKILL));
    writer.join();
}

#[test]
fn broken_pipe_reaches_a_writer_after_the_reader_process_exits() {
    let capacity = 64 * 1024;
    let (r, w) = Builder::new()
        .duplex(false)
        .capacity(capacity)
        .build()
        .unwrap();
    let child = fork(|| {
        // Read one message, then exit without closing (no destructor runs).
        r.recv_bytes().unwrap();
        0
    });
    drop(r);
    w.send_bytes(b"one").unwrap();
    child.join();
    // Every copy of the reader is gone. A graceful close is seen at once; a process
    // that died without closing is seen when the writer next reloads the reader's
    // position, that is within one ring of data (DESIGN.md, "EOF and broken pipe").
    let mut accepted = 0;
    loop {
        match w.send_bytes(&[1; 100]) {
            Ok(()) => accepted += 100,
            Err(Error::BrokenPipe) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(accepted <= capacity, "still accepting after a whole ring");
    }
    assert!(matches!(w.send_bytes(b"x"), Err(Error::BrokenPipe)));
}

static HANDLED: AtomicUsize = AtomicUsize::new(0);
static mut NOTIFY_FD: i32 = -1;

extern "C" fn on_sigusr1(_: libc::c_int) {
    HANDLED.fetch_add(1, Ordering::SeqCst);
    // SAFETY: write(2) is async-signal-safe; NOTIFY_FD is set before the handler is
    // installed and never changed afterwards.
    unsafe { libc::write(NOTIFY_FD, b"!".as_ptr() as *const libc::c_void, 1) };
}

#[test]
fn signals_do_not_interrupt_a_blocking_recv() {
    let (parent_end, child_end) = pipe(true).unwrap();
    let mut notify = [0; 2];
    // SAFETY: a plain pipe(2) for the signal handler to report through.
    assert_eq!(unsafe { libc::pipe(notify.as_mut_ptr()) }, 0);
    let child = fork(|| {
        // SAFETY: installs a handler without SA_RESTART, so blocking system calls
        // return EINTR when it runs; the handler only does async-signal-safe work.
        unsafe {
            NOTIFY_FD = notify[1];
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigusr1 as extern "C" fn(libc::c_int) as usize;
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        }
        let m = child_end.recv_bytes().unwrap();
        child_end.send_bytes(&m).unwrap();
        (HANDLED.load(Ordering::SeqCst) != 3) as i32
    });
    for _ in 0..3 {
        child.wait_until_sleeping();
        child.signal(libc::SIGUSR1);
        let mut b = [0u8; 1];
        // SAFETY: reading one byte from our own pipe.
        assert_eq!(
            unsafe { libc::read(notify[0], b.as_mut_ptr() as *mut libc::c_void, 1) },
            1
        );
    }
    child.wait_until_sleeping();
    parent_end.send_bytes(b"after three signals").unwrap();
    assert_eq!(parent_end.recv_bytes().unwrap(), b"after three signals");
    child.join();
}

#[test]
fn a_message_of_16_mib_plus_one_passes_the_default_ring() {
    let (r, w) = pipe(false).unwrap();
    let len = (16 << 20) + 1;
    let child = fork(|| {
        w.send_bytes(&message(16, len)).unwrap();
        0
    });
    drop(w);
    assert_eq!(r.recv_bytes().unwrap(), message(16, len));
    child.join();
}

#[test]
fn a_message_of_several_hundred_mib_passes() {
    let (r, w) = pipe(false).unwrap();
    let len = 300 << 20;
    let pattern = |i: usize| (i % 251) as u8;
    let child = fork(|| {
        let m: Vec<u8> = (0..len).map(pattern).collect();
        w.send_bytes(&m).unwrap();
        0
    });
    drop(w);
    let got = r.recv_bytes().unwrap();
    assert_eq!(got.len(), len);
    assert!(got.iter().enumerate().all(|(i, &b)| b == pattern(i)));
    child.join();
}

#[test]
fn random_sizes_stream_across_processes_intact() {
    let (r, w) = Builder::new()
        .duplex(false)
        .capacity(64 * 1024)
        .build()
        .unwrap();
    const N: u64 = 3000;
    let child = fork(|| {
        let mut rng = Rng(7);
        for i in 0..N {
            let len = rng.below(4 * 64 * 1024) as usize;
            w.send_bytes(&message(i, len)).unwrap();
        }
        0
    });
    drop(w);
    let mut rng = Rng(7);
    let mut buf = vec![0u8; 4 * 64 * 1024];
    for i in 0..N {
        let len = rng.below(4 * 64 * 1024) as usize;
        let n = if i % 2 == 0 {
            r.recv_bytes_into(&mut buf).unwrap()
        } else {
            let m = r.recv_bytes().unwrap();
            buf[..m.len()].copy_from_slice(&m);
            m.len()
        };
        assert_eq!(&buf[..n], &message(i, len)[..], "message {i}");
    }
    assert!(matches!(r.recv_bytes(), Err(Error::Eof)));
    child.join();
}

#[test]
fn echo_child_returns_every_message_in_both_directions() {
    let (mut a, b) = Builder::new().capacity(16 * 1024).build().unwrap();
    let child = fork(|| {
        a.close(); // the child's copy of the parent's end would hide the parent's EOF
        loop {
            match b.recv_bytes() {
                Ok(m) => b.send_bytes(&m).unwrap(),
                Err(Error::Eof) => return 0,
                Err(_) => return 1,
            }
        }
    });
    drop(b);
    let mut rng = Rng(11);
    for i in 0..2000 {
        let m = message(i, rng.below(64 * 1024) as usize);
        a.send_bytes(&m).unwrap();
        assert_eq!(a.recv_bytes().unwrap(), m, "message {i}");
    }
    drop(a);
    child.join();
}
