//! A hostile peer acting on the descriptors it holds, then exiting: our receives, sends,
//! `poll` and `fileno` must still end in `Eof` / `BrokenPipe` / readiness, never hang.
//!
//! The peer is a forked child that keeps only its own end and then, before it exits,
//! does one of the things that used to hang the other process:
//! * clears `O_NONBLOCK` on every descriptor it holds (a property of the open file
//!   description, which the old shared eventfds shared with us), saturates every eventfd
//!   counter, fills every socket it can write to, and raises every sleeping flag in the
//!   region, so that our next read or write of a shared doorbell would block;
//! * passes its own sockets over its sockets (`SCM_RIGHTS`): a descriptor in flight keeps
//!   its file open, so the kernel never reported the hang-up and EOF never came.
//!
//! The victim runs in a child too, so that a hang fails the test (through the watchdog)
//! instead of stopping the test binary.

mod common;

use common::{fork, Exit, RawRegion};
use shmpipe::{Builder, Connection, Error};
use std::os::fd::RawFd;

/// The descriptors of end `b` (found through its hand-off variable, which names every
/// descriptor an end holds), with what /proc says they are. Only these: the test
/// binary's other tests have pipes open too, which the peer must leave alone.
fn descriptors(b: &Connection) -> Vec<(RawFd, String)> {
    common::passed(b)
        .1
        .into_iter()
        .map(|(fd, ..)| {
            let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            (fd, link.to_string_lossy().into_owned())
        })
        .collect()
}

/// Makes every shared descriptor as hostile as it can be, then returns (the child exits).
fn poison_descriptors(b: &Connection) {
    for (fd, what) in descriptors(b) {
        // SAFETY: plain system calls on descriptors this child holds; it exits soon after.
        unsafe {
            if what == "anon_inode:[eventfd]" {
                // Saturate the counter while the write still cannot block.
                let v: u64 = 0xffff_ffff_ffff_fffe;
                libc::write(fd, (&v as *const u64).cast(), 8);
            } else if what.starts_with("socket:") {
                let junk = [0u8; 4096];
                while libc::send(
                    fd,
                    junk.as_ptr().cast(),
                    junk.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                ) > 0
                {}
            } else if what.starts_with("/memfd:shmpipe") {
                // Raise both sleeping flags of both rings.
                let r = RawRegion::map(fd);
                for ring in [4096, 4096 + 512] {
                    r.write_u32(ring + 256, 1);
                    r.write_u32(ring + 384, 1);
                }
            }
            let flags = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
}

/// Sends every socket this process holds over every one of them, so that each stays
/// open, in flight, after the process exits.
fn pass_sockets_to_the_peer(b: &Connection) {
    let sockets: Vec<RawFd> = descriptors(b)
        .into_iter()
        .filter(|(_, what)| what.starts_with("socket:"))
        .map(|(fd, _)| fd)
        .collect();
    assert!(!sockets.is_empty());
    for &via in &sockets {
        // SAFETY: an SCM_RIGHTS sendmsg built by hand on a socket this child holds.
        unsafe {
            let mut byte = [1u8];
            let mut iov = libc::iovec {
                iov_base: byte.as_mut_ptr().cast(),
                iov_len: 1,
            };
            let payload = std::mem::size_of_val(&sockets[..]) as u32;
            let mut control = vec![0u8; libc::CMSG_SPACE(payload) as usize];
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control.len();
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as usize;
            std::ptr::copy_nonoverlapping(
                sockets.as_ptr(),
                libc::CMSG_DATA(cmsg).cast::<RawFd>(),
                sockets.len(),
            );
            libc::sendmsg(via, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
        }
    }
}

/// Every blocking call of the victim's end must end: EOF for receives, readiness for
/// `poll` and `fileno`, `BrokenPipe` for sends (which fill the 4 KiB ring and then wait).
fn victim(a: &Connection) -> i32 {
    let fd = a.fileno().unwrap();
    if !matches!(a.recv_bytes(), Err(Error::Eof)) {
        return 2;
    }
    if !a.poll(None).unwrap() {
        return 3;
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on our own descriptor, no timeout: a hang is the failure.
    if unsafe { libc::poll(&mut pfd, 1, -1) } != 1 {
        return 4;
    }
    for _ in 0..100 {
        match a.send_bytes(&[7; 3000]) {
            Ok(()) => continue,
            Err(Error::BrokenPipe) => return 0,
            Err(e) => {
                eprintln!("victim: {e}");
                return 5;
            }
        }
    }
    6
}

/// Runs `hostile` in a peer holding end `b` only, which then exits, and `victim` on end
/// `a` in another child; asserts the victim got through.
fn against(hostile: fn(&Connection)) {
    let (a, b) = Builder::new().capacity(4096).build().unwrap();
    let mut ends = Some((a, b));
    let peer = fork(|| {
        let (a, b) = ends.take().unwrap();
        drop(a);
        hostile(&b);
        drop(b); // closes nothing that is in flight
        0
    });
    let (a, b) = ends.take().unwrap();
    drop(b);
    let victim = fork(|| victim(&a));
    drop(a);
    peer.join();
    assert_eq!(victim.wait(), Exit::Code(0));
}

#[test]
fn a_peer_that_poisons_the_shared_descriptors_cannot_stall_us() {
    against(poison_descriptors);
}

#[test]
fn a_peer_that_passes_its_sockets_to_us_still_gives_eof() {
    against(pass_sockets_to_the_peer);
}

/// Both at once, while we are asleep in a receive: the wake-up comes from the drain.
#[test]
fn a_sleeping_receiver_wakes_when_a_poisoning_peer_exits() {
    let (a, b) = Builder::new().capacity(4096).build().unwrap();
    let mut ends = Some((a, b));
    let victim = fork(|| {
        let (a, b) = ends.take().unwrap();
        drop(b);
        match a.recv_bytes() {
            Err(Error::Eof) => 0,
            _ => 1,
        }
    });
    let (a, b) = ends.take().unwrap();
    drop(a);
    victim.wait_until_sleeping();
    let peer = fork(|| {
        poison_descriptors(&b);
        pass_sockets_to_the_peer(&b);
        0
    });
    drop(b);
    peer.join();
    assert_eq!(victim.wait(), Exit::Code(0));
}
