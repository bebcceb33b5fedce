//! Peers that do not follow the protocol: a client that says nothing, garbage, too much
//! or too slowly fails its own connection within the handshake timeout and never the
//! listener; a listener that offers the wrong descriptors fails the client's connect
//! and leaves none of them open.

mod common;

use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use shmpipe::{Client, Error, Listener};
use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(200);

fn listener(name: &str) -> (Listener, String) {
    let addr = format!("\0shmpipe-hostile-{}-{name}", std::process::id());
    let l = Listener::builder()
        .handshake_timeout(SHORT)
        .bind(addr.as_str())
        .unwrap();
    (l, addr)
}

fn raw_connect(addr: &str) -> UnixStream {
    use std::os::linux::net::SocketAddrExt;
    let a = std::os::unix::net::SocketAddr::from_abstract_name(&addr.as_bytes()[1..]).unwrap();
    UnixStream::connect_addr(&a).unwrap()
}

/// After whatever went wrong, the listener still serves a well-behaved client.
fn still_serves(l: &Listener, addr: &str) {
    let addr = addr.to_string();
    let t = std::thread::spawn(move || Client::connect(addr.as_str())?.send_bytes(b"ok"));
    assert_eq!(l.accept().unwrap().recv_bytes().unwrap(), b"ok");
    t.join().unwrap().unwrap();
}

#[test]
fn a_silent_client_times_out_and_the_listener_carries_on() {
    let (l, addr) = listener("silent");
    let _silent = raw_connect(&addr);
    assert!(matches!(l.accept(), Err(Error::Timeout)));
    still_serves(&l, &addr);
}

#[test]
fn a_slow_client_times_out() {
    let (l, addr) = listener("slow");
    let mut slow = raw_connect(&addr);
    let dribble = std::thread::spawn(move || {
        // A byte at a time, each well inside the timeout, the whole far beyond it.
        for b in [0, 0, 0, 15].iter().chain(b"shmpipe/1 hello") {
            if slow.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(SHORT / 4);
        }
    });
    assert!(matches!(l.accept(), Err(Error::Timeout)));
    dribble.join().unwrap();
    still_serves(&l, &addr);
}

#[test]
fn garbage_oversized_truncated_and_negative_frames_fail_that_connection() {
    let (l, addr) = listener("garbage");
    // An HTTP request: its first four bytes read as a length of 1.2 GB.
    raw_connect(&addr)
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(matches!(l.accept(), Err(Error::Authentication(_))));
    // A handshake message longer than the 256 bytes allowed: refused from its header.
    let mut big = raw_connect(&addr);
    big.write_all(&1000u32.to_be_bytes()).unwrap();
    assert!(matches!(l.accept(), Err(Error::Authentication(_))));
    // A frame cut short by the client hanging up.
    let mut cut = raw_connect(&addr);
    cut.write_all(&[0, 0, 0, 15, b's', b'h']).unwrap();
    drop(cut);
    match l.accept() {
        Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof),
        other => panic!("{other:?}"),
    }
    // A negative length.
    raw_connect(&addr)
        .write_all(&(-5i32).to_be_bytes())
        .unwrap();
    assert!(matches!(l.accept(), Err(Error::Corrupt(_))));
    // The right frame with the wrong words.
    let mut wrong = raw_connect(&addr);
    wrong.write_all(&[0, 0, 0, 5]).unwrap();
    wrong.write_all(b"hello").unwrap();
    assert!(matches!(l.accept(), Err(Error::Invalid(_))));
    still_serves(&l, &addr);
}

#[test]
fn a_client_that_hangs_up_at_once_is_skipped() {
    let (l, addr) = listener("hangup");
    drop(raw_connect(&addr));
    still_serves(&l, &addr);
}

#[test]
fn a_client_with_a_bad_answer_to_the_challenge_is_refused() {
    let addr = format!("\0shmpipe-hostile-{}-answer", std::process::id());
    let l = Listener::builder()
        .authkey(b"key")
        .handshake_timeout(SHORT)
        .bind(addr.as_str())
        .unwrap();
    let mut c = raw_connect(&addr);
    let mut challenge = [0u8; 4 + 59];
    let t = std::thread::spawn(move || {
        c.read_exact(&mut challenge).unwrap();
        assert_eq!(&challenge[4..15], b"#CHALLENGE#");
        // Sixteen bytes that are not the MAC.
        c.write_all(&[0, 0, 0, 16]).unwrap();
        c.write_all(&[0; 16]).unwrap();
        let mut verdict = [0u8; 13];
        c.read_exact(&mut verdict).unwrap();
        verdict
    });
    assert!(matches!(l.accept(), Err(Error::Authentication(_))));
    assert_eq!(&t.join().unwrap()[4..], b"#FAILURE#");
}

/// A fake shmpipe listener: reads the client's hello and answers with an offer carrying
/// `fds` (and `payload` as the frame's words).
fn fake_listener(
    name: &str,
    payload: &'static [u8],
    fds: Vec<OwnedFd>,
) -> (String, std::thread::JoinHandle<()>) {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    fake_listener_raw(name, frame, fds)
}

/// The same, answering with `frame` as it is.
fn fake_listener_raw(
    name: &str,
    frame: Vec<u8>,
    fds: Vec<OwnedFd>,
) -> (String, std::thread::JoinHandle<()>) {
    let addr = format!("\0shmpipe-fake-{}-{name}", std::process::id());
    use std::os::linux::net::SocketAddrExt;
    let a = std::os::unix::net::SocketAddr::from_abstract_name(&addr.as_bytes()[1..]).unwrap();
    let l = UnixListener::bind_addr(&a).unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut hello = [0u8; 4 + 15];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(&hello[4..], b"shmpipe/1 hello");
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        if !borrowed.is_empty() {
            assert!(control.push(SendAncillaryMessage::ScmRights(&borrowed)));
        }
        rustix::net::sendmsg(
            &s,
            &[std::io::IoSlice::new(&frame)],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap();
        drop(fds);
        // Wait for the client to hang up.
        let _ = s.read(&mut [0; 64]);
    });
    (addr, t)
}

/// A pipe whose read end goes to the client: once every copy of it is closed, a write
/// to `w` fails with EPIPE. So the client kept nothing open iff writing fails.
fn tracer() -> (OwnedFd, OwnedFd) {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap()
}

/// Whether every copy of the tracer's read end is closed. Rejected descriptors are closed
/// on the closer thread (a close can block: see `sys.rs`), so this waits until the pipe
/// reports that its last reader is gone (`POLLERR` on the write end, reported whatever
/// the events asked for); the minute is a watchdog, not a threshold.
fn nothing_kept(w: &OwnedFd) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(w, PollFlags::empty())];
    let minute = Timespec {
        tv_sec: 60,
        tv_nsec: 0,
    };
    loop {
        match rustix::event::poll(&mut fds, Some(&minute)) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => return fds[0].revents().contains(PollFlags::ERR),
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn an_offer_with_the_wrong_descriptors_is_refused_and_they_are_closed() {
    let memfd = || {
        let fd = rustix::fs::memfd_create("not-a-region", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 1 << 20).unwrap();
        fd
    };
    // Too few, too many, the wrong kinds, an unsealed region: each refused.
    type Case = (&'static str, fn(OwnedFd, OwnedFd) -> Vec<OwnedFd>);
    let cases: [Case; 4] = [
        ("none", |r, _| vec![r]),
        ("five", |r, m| {
            vec![r, m, tracer().0, tracer().0, tracer().0]
        }),
        ("pipe-for-memfd", |r, m| vec![r, m.try_clone().unwrap(), m]),
        ("unsealed", |r, m| {
            let s = rustix::net::socketpair(
                rustix::net::AddressFamily::UNIX,
                rustix::net::SocketType::STREAM,
                rustix::net::SocketFlags::CLOEXEC,
                None,
            )
            .unwrap();
            vec![m, r, s.0]
        }),
    ];
    for (name, make) in cases {
        let (r, w) = tracer();
        let fds = make(r, memfd());
        let (addr, t) = fake_listener(name, b"shmpipe/1 offer", fds);
        let got = Client::connect(addr.as_str());
        assert!(matches!(got, Err(Error::Invalid(_))), "{name}: {got:?}");
        t.join().unwrap();
        assert!(
            nothing_kept(&w),
            "{name}: a passed descriptor is still open"
        );
    }
}

#[test]
fn a_listener_that_says_something_else_is_refused() {
    let (r, w) = tracer();
    let (addr, t) = fake_listener("words", b"shmpipe/1 nope!", vec![r]);
    assert!(matches!(
        Client::connect(addr.as_str()),
        Err(Error::Invalid(_))
    ));
    t.join().unwrap();
    assert!(nothing_kept(&w));
}

#[test]
fn a_silent_listener_times_out_the_client() {
    let addr = format!("\0shmpipe-fake-{}-silent", std::process::id());
    use std::os::linux::net::SocketAddrExt;
    let a = std::os::unix::net::SocketAddr::from_abstract_name(&addr.as_bytes()[1..]).unwrap();
    let _l = UnixListener::bind_addr(&a).unwrap();
    let got = Client::builder().timeout(SHORT).connect(addr.as_str());
    assert!(matches!(got, Err(Error::Timeout)), "{got:?}");
}

/// Regression: an answer whose long-form header announced a length near 2^64 overflowed
/// the client's arithmetic (a panic).
#[test]
fn an_answer_announcing_an_impossible_length_is_refused() {
    let mut near_max = vec![0xff; 4];
    near_max.extend_from_slice(&(u64::MAX - 5).to_be_bytes());
    for (i, frame) in [vec![0xff; 12], near_max].into_iter().enumerate() {
        let (addr, t) = fake_listener_raw(&format!("huge{i}"), frame, Vec::new());
        let got = Client::connect(addr.as_str());
        assert!(matches!(got, Err(Error::Invalid(_))), "{got:?}");
        t.join().unwrap();
    }
}

/// A TCP socket whose close blocks: an hour of `SO_LINGER` and unsent data its peer never
/// reads. Returns it and its peer; dropping the peer (which resets the connection) lets
/// a close that is waiting finish.
fn lingering_socket() -> (OwnedFd, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (peer, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    let chunk = [0u8; 1 << 16];
    while s.write(&chunk).is_ok() {}
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 3600,
    };
    // SAFETY: setsockopt with a `linger` struct and its size, on a socket we own.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
    (OwnedFd::from(s), peer)
}

/// Sends `bytes` with `fd` attached over `via`.
fn send_with_fd(
    via: BorrowedFd<'_>,
    bytes: &[u8],
    fd: BorrowedFd<'_>,
) -> rustix::io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    rustix::net::sendmsg(
        via,
        &[std::io::IoSlice::new(bytes)],
        &mut control,
        SendFlags::empty(),
    )
}

/// A client that attaches a socket whose close blocks to its first handshake frame, and
/// lets go of its own copy, cannot stall the listener: the listener's sockets refuse
/// passed descriptors (the kernel fails the client's `sendmsg`), and where they cannot,
/// what arrives is closed on another thread. The honest client that comes next is
/// served. (Before, the listener's `recv` had the kernel close the socket in the
/// listener's thread, which waited out the linger: an hour here.)
#[test]
fn a_client_passing_a_lingering_socket_cannot_stall_the_listener() {
    let (l, addr) = listener("linger");
    let (lingering, peer) = lingering_socket();
    let hostile = raw_connect(&addr);
    let sent = send_with_fd(
        hostile.as_fd(),
        b"\0\0\0\x0fshmpipe/1 hello",
        lingering.as_fd(),
    );
    assert!(
        matches!(sent, Ok(_) | Err(rustix::io::Errno::PERM)),
        "{sent:?}"
    );
    // Let go of our copy if the listener holds one now (its close must not block it);
    // if the kernel refused it, ours is the last, and closing it would block us.
    let kept = if sent.is_ok() {
        drop(lingering);
        None
    } else {
        Some(lingering)
    };
    // The listener, in a thread of its own: stalled, it would never return.
    let acceptor = std::thread::spawn(move || loop {
        // The hostile client's connection fails (it never finishes the handshake).
        if let Ok(c) = l.accept() {
            return c.recv_bytes();
        }
    });
    // The timeout is a watchdog: a stalled listener fails the test, not hangs it.
    let honest = Client::builder()
        .timeout(Duration::from_secs(60))
        .connect(addr.as_str())
        .and_then(|c| c.send_bytes(b"served"));
    assert!(honest.is_ok(), "{honest:?}");
    assert_eq!(acceptor.join().unwrap().unwrap(), b"served");
    // The peer first: its reset lets a lingering close finish at once.
    drop((hostile, peer));
    drop(kept);
}

/// A fake listener that hands the client doorbells in which it queued a socket whose
/// close blocks (having turned `SO_PASSRIGHTS` back on for that), and on which it turned
/// on `SO_PASSPIDFD`: the client's connect, its non-blocking receives and 300 messages
/// neither block on that close nor collect a pidfd per wake-up. Runs in a child, whose
/// descriptors nothing else touches, so that they can be counted.
#[test]
fn doorbells_handed_over_with_queued_descriptors_or_pidfds_cannot_stall_or_leak() {
    const SO_PASSRIGHTS: libc::c_int = 83;
    const SO_PASSPIDFD: libc::c_int = 76;
    let set = |fd: BorrowedFd<'_>, option, on: libc::c_int| {
        // SAFETY: setsockopt with an int and its size on a socket we hold.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::SOL_SOCKET,
                option,
                (&on as *const libc::c_int).cast(),
                4,
            )
        }
    };
    let (ours, theirs) = shmpipe::pipe(true).unwrap();
    let (end, [memfd, data, space]) = shmpipe::__interop::end_and_fds(&theirs).unwrap();
    let (_, [_, our_data, _]) = shmpipe::__interop::end_and_fds(&ours).unwrap();
    // SAFETY (each borrow): the descriptors are open while `ours`/`theirs` are.
    let b = |fd| unsafe { BorrowedFd::borrow_raw(fd) };
    let (lingering, peer) = lingering_socket();
    for fd in [data, space] {
        set(b(fd), SO_PASSRIGHTS, 1);
        set(b(fd), SO_PASSPIDFD, 1);
    }
    // Queued in the half the client will take, behind a wake-up byte.
    send_with_fd(b(our_data), b"x", lingering.as_fd()).unwrap();
    drop(lingering);
    let fds: Vec<OwnedFd> = [memfd, data, space]
        .into_iter()
        .map(|fd| b(fd).try_clone_to_owned().unwrap())
        .collect();
    assert_eq!(end, 1);
    // `theirs` stays open here, idle, as the listener's copy of the end it hands over
    // would until the client took it (closing a `Connection` end marks it detached).
    let (addr, fake) = fake_listener("pidfd", b"shmpipe/1 offer", fds);
    let child = common::fork(move || {
        let count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let conn = Client::builder()
            .timeout(Duration::from_secs(60))
            .connect(addr.as_str())
            .unwrap();
        conn.set_nonblocking(true).unwrap();
        let got = conn.recv_bytes();
        assert!(matches!(got, Err(Error::WouldBlock)), "{got:?}");
        conn.set_nonblocking(false).unwrap();
        conn.send_bytes(b"ready").unwrap();
        let before = count();
        for i in 0..300u32 {
            // Each one wakes us: we sleep on the data doorbell waiting for it.
            assert_eq!(conn.recv_bytes().unwrap(), i.to_le_bytes());
            conn.send_bytes(b"next").unwrap();
        }
        // At most as many: the closer thread may close the queued socket meanwhile
        // (a leak was one more descriptor per wake-up).
        let after = count();
        assert!(
            after <= before,
            "descriptors collected: {before} -> {after}"
        );
        0
    });
    // A watchdog: a client stuck in a close would never say it is ready.
    ours.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(ours.recv_bytes().unwrap(), b"ready");
    for i in 0..300u32 {
        ours.send_bytes(&i.to_le_bytes()).unwrap();
        assert_eq!(ours.recv_bytes().unwrap(), b"next");
    }
    child.join();
    fake.join().unwrap();
    drop((theirs, peer));
}
