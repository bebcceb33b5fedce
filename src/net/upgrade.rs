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
use crate::socket::framing::{self, MAX_HEADER};
use crate::socket::poll;
use crate::socket::stream::SocketEnd;
use rustix::event::PollFlags;
use rustix::io::Errno;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

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
                if poll::wait(chan.fd(), PollFlags::OUT, deadline)?.is_empty() {
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
    if frame.starts_with(crate::net::auth::CHALLENGE) {
        crate::sys::dispose(fds);
        return Err(Error::Authentication(
            "the listener asks for an authkey and this client has none: give it the \
             listener's authkey"
                .into(),
        ));
    }
    if frame != OFFER {
        crate::sys::dispose(fds);
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

/// Checks the descriptors of an offer and makes them end 1 of the pipe. Every
/// descriptor is disposed of (see [`crate::sys::dispose`]) if anything is wrong.
fn adopt(fds: Vec<OwnedFd>) -> Result<Connection> {
    let [memfd, data, space] = match <[OwnedFd; 3]>::try_from(fds) {
        Ok(three) => three,
        Err(fds) => {
            crate::sys::dispose(fds);
            return Err(Error::Invalid(
                "the listener passed the wrong number of descriptors".into(),
            ));
        }
    };
    let conn = crate::handoff::take_end(1, memfd, data, space)?;
    // Judged by the one check `take_end` made of the region's header, not by a second
    // look: the listener can rewrite the header between two looks.
    if !(conn.readable() && conn.writable()) {
        return Err(Error::Invalid(
            "the listener offered a one-way region".into(),
        ));
    }
    Ok(conn)
}

/// Receives one small frame and every descriptor passed with any part of it. On any
/// error, what was passed is disposed of.
fn recv_with_fds(chan: &SocketEnd, deadline: Deadline) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    let mut fds = Vec::new();
    match recv_frame(chan, deadline, &mut fds) {
        Ok(frame) => Ok((frame, fds)),
        Err(e) => {
            crate::sys::dispose(fds);
            Err(e)
        }
    }
}

fn recv_frame(chan: &SocketEnd, deadline: Deadline, fds: &mut Vec<OwnedFd>) -> Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut truncated = false;
    let mut buf = [MaybeUninit::uninit(); 64];
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
                    return Ok(got[head..].to_vec());
                }
                total as usize
            }
        };
        match crate::sys::recv_keeping_fds(chan.fd(), &mut buf[..want - got.len()], fds) {
            Ok((0, _)) => return Err(Error::Eof),
            Ok((n, cut)) => {
                truncated |= cut;
                // SAFETY: recvmsg initialised the first `n` bytes.
                got.extend(buf[..n].iter().map(|b| unsafe { b.assume_init() }));
            }
            Err(Errno::AGAIN) => {
                if poll::wait(chan.fd(), PollFlags::IN, deadline)?.is_empty() {
                    return Err(Error::Timeout);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}
