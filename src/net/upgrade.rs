//! How two shmpipe processes that met on a Unix socket move to shared memory.
//!
//! After the authentication (if any), over the accepted socket:
//!
//! 1. the client says [`HELLO`];
//! 2. the listener makes a new duplex pipe, keeps end 0, and sends [`OFFER`] with end
//!    1's three descriptors attached (`SCM_RIGHTS`: the region's memfd and the end's
//!    two doorbell sockets), then closes its own copies of them;
//! 3. the client checks what it got as `from_parent` checks an inherited end (exactly
//!    three descriptors; a sealed memfd holding a duplex region whose size matches its
//!    header; two connected Unix stream sockets), closes anything else, takes end 1 and
//!    says [`READY`].
//!
//! Both then close the socket: from here on the pair is exactly a `pipe(true)` whose
//! ends live in two processes, EOF and broken pipe included.

use crate::builder::Builder;
use crate::connection::Connection;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::net::auth::recv_small;
use crate::shm::region::Region;
use crate::socket::framing::{self, MAX_HEADER};
use crate::socket::poll;
use crate::socket::stream::SocketEnd;
use rustix::event::PollFlags;
use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

/// The client asks for shared memory.
pub(crate) const HELLO: &[u8] = b"shmpipe/1 hello";
/// The listener's answer, carrying the descriptors.
const OFFER: &[u8] = b"shmpipe/1 offer";
/// The client took them.
const READY: &[u8] = b"shmpipe/1 ready";

/// The listener's side: answers a client's [`HELLO`] with a new pipe's far end.
pub(crate) fn offer(chan: &SocketEnd, pipe: &Builder, deadline: Deadline) -> Result<Connection> {
    let hello = recv_small(chan, deadline)?;
    if hello != HELLO {
        return Err(Error::Invalid(
            "the client is not a shmpipe client asking for shared memory (a Python client \
             needs python_wire(true) on the listener, or an authkey)"
                .into(),
        ));
    }
    let (near, far) = pipe.build_one_end()?;
    let mut head = [0; MAX_HEADER];
    let head_len = framing::encode(OFFER.len(), &mut head);
    let mut frame = head[..head_len].to_vec();
    frame.extend_from_slice(OFFER);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(3))];
    let mut sent = 0;
    while sent < frame.len() {
        let mut control = SendAncillaryBuffer::new(&mut space);
        let fds = far.fds();
        if sent == 0 {
            assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        }
        match rustix::net::sendmsg(
            chan.fd(),
            &[IoSlice::new(&frame[sent..])],
            &mut control,
            SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
        ) {
            Ok(n) => sent += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                if poll::wait(chan.fd(), PollFlags::OUT, deadline.instant())?.is_empty() {
                    return Err(Error::Timeout);
                }
            }
            Err(Errno::PIPE | Errno::CONNRESET) => return Err(Error::BrokenPipe),
            Err(e) => return Err(e.into()),
        }
    }
    // The client holds them now (or they are in flight to it): ours go.
    drop(far);
    let ready = recv_small(chan, deadline)?;
    if ready != READY {
        return Err(Error::Invalid(
            "the client did not take the shared memory".into(),
        ));
    }
    Ok(near)
}

/// The client's side: asks for shared memory and takes the end the listener offers.
pub(crate) fn take(chan: &SocketEnd, max_message: usize, deadline: Deadline) -> Result<Connection> {
    chan.send(HELLO, deadline)?;
    let (frame, fds) = recv_with_fds(chan, deadline)?;
    if frame != OFFER {
        return Err(Error::Invalid(
            "the listener did not offer shared memory (is it a shmpipe listener without \
             python_wire?)"
                .into(),
        ));
    }
    let conn = adopt(fds)?;
    conn.set_max_message_size(max_message)?;
    chan.send(READY, deadline)?;
    Ok(conn)
}

/// Checks the descriptors of an offer and makes them end 1 of the pipe. Closes them all
/// if anything is wrong.
fn adopt(fds: Vec<OwnedFd>) -> Result<Connection> {
    let Ok::<[OwnedFd; 3], _>([memfd, data, space]) = fds.try_into() else {
        return Err(Error::Invalid(
            "the listener passed the wrong number of descriptors".into(),
        ));
    };
    if Region::check(memfd.as_fd())?.rings != 2 {
        return Err(Error::Invalid(
            "the listener offered a one-way region".into(),
        ));
    }
    crate::handoff::take_end(1, memfd, data, space)
}

/// Receives one small frame and every descriptor passed with any part of it (at most a
/// handful: more are closed by the kernel, which then truncates the control data).
fn recv_with_fds(chan: &SocketEnd, deadline: Deadline) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut got = Vec::new();
    let mut fds = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 64];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(4))];
    loop {
        // The frame's length, once its header is in.
        let want = match framing::decode(&got)? {
            framing::Header::Incomplete(n) => n,
            framing::Header::Complete { len } => {
                let head = if got.len() >= 4 && got[..4] == [0xff; 4] {
                    12
                } else {
                    4
                };
                // Checked before any arithmetic: the length is the peer's to choose.
                if len > (buf.len() - head) as u64 {
                    return Err(Error::Invalid("the listener's answer is too long".into()));
                }
                let total = head as u64 + len;
                if got.len() as u64 == total {
                    if truncated {
                        return Err(Error::Invalid(
                            "the listener passed too many descriptors".into(),
                        ));
                    }
                    return Ok((got[head..].to_vec(), fds));
                }
                total as usize
            }
        };
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let r = rustix::net::recvmsg(
            chan.fd(),
            &mut [IoSliceMut::new(&mut buf[..want - got.len()])],
            &mut control,
            RecvFlags::DONTWAIT | RecvFlags::CMSG_CLOEXEC,
        );
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(passed) = msg {
                fds.extend(passed);
            }
        }
        match r {
            Ok(r) if r.bytes == 0 => return Err(Error::Eof),
            Ok(r) => {
                truncated |= r.flags.contains(rustix::net::ReturnFlags::CTRUNC);
                got.extend_from_slice(&buf[..r.bytes]);
            }
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                if poll::wait(chan.fd(), PollFlags::IN, deadline.instant())?.is_empty() {
                    return Err(Error::Timeout);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}
