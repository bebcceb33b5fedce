//! The seam between the public API and the two ways a [`Connection`](crate::Connection)
//! can carry messages, chosen when the connection is made:
//!
//! * [`Transport::Shm`]: a pair of shared-memory rings (`crate::shm`), for `pipe()`, an
//!   end passed to a child, and a [`Client`](crate::Client) that reached a shmpipe
//!   [`Listener`](crate::Listener) on a Unix address;
//! * [`Transport::Socket`]: a stream socket in CPython's framing (`crate::socket`), for
//!   TCP and for Python peers.
//!
//! An enum rather than a trait object: every call makes one well-predicted branch, and
//! the shared-memory path keeps its inlined, generic fast paths (typed messages are
//! serialized straight into the ring).
//!
//! The contract is the set of methods below, each a delegation to the transport in a
//! one-line arm (as crossbeam-channel's `channel.rs` does for its flavours): what a
//! connection needs of the way its messages travel. Everything else a `Connection` does
//! (timeouts and mode, which become a [`Deadline`]; directions; the public errors) is
//! written once, above it, in `connection.rs`.

use crate::buffers::{Parts, Scratch, Sink};
use crate::deadline::Deadline;
use crate::error::Result;
use crate::shm::endpoint::Endpoint;
use crate::shm::ring::GrantWriter;
use crate::socket::stream::SocketEnd;
use std::os::fd::RawFd;
use std::time::Duration;

/// What a connection's messages travel through.
pub(crate) enum Transport {
    /// Shared-memory rings.
    Shm(Endpoint),
    /// A stream socket speaking CPython's `multiprocessing.connection` framing.
    Socket(SocketEnd),
}

impl Transport {
    /// Sends `buf` as one message now if that needs no waiting and nothing out of the
    /// ordinary (shared memory's one-pass send, inline); `false`, having done nothing,
    /// for everything else (a closed connection included), which
    /// [`send`](Transport::send) then takes. It takes the connection's `Option` so that
    /// the hot path makes one test of what it holds, not two.
    #[inline(always)]
    pub(crate) fn send_now(this: &Option<Transport>, buf: Parts<'_>) -> Result<bool> {
        match this {
            Some(Transport::Shm(ep)) => ep.send_whole_now(ep.sending()?, buf),
            _ => Ok(false),
        }
    }

    /// [`send_now`](Transport::send_now) for a message serialized in place by `fill`
    /// into room for at least `at_least` bytes (see `Endpoint::send_filled_now`).
    #[inline(always)]
    pub(crate) fn send_filled_now(
        this: &Option<Transport>,
        at_least: usize,
        fill: impl FnOnce(&mut GrantWriter, &Scratch) -> bool,
    ) -> Result<bool> {
        match this {
            Some(Transport::Shm(ep)) => ep.send_filled_now(ep.sending()?, at_least, fill),
            _ => Ok(false),
        }
    }

    /// Sends `buf` as one message, by `deadline`.
    pub(crate) fn send(&self, buf: Parts<'_>, deadline: Deadline) -> Result<()> {
        match self {
            Transport::Shm(ep) => ep.send_message(ep.sending()?, buf, deadline),
            Transport::Socket(s) => s.send_parts(buf, deadline),
        }
    }

    /// Sends the messages at the start of `msgs` that go now, published together;
    /// returns how many (0: the first needs [`send`](Transport::send)).
    pub(crate) fn send_many_now(&self, msgs: &[&[u8]]) -> Result<usize> {
        match self {
            Transport::Shm(ep) => ep.send_many_now(ep.sending()?, msgs),
            Transport::Socket(_) => Ok(0),
        }
    }

    /// Receives the next message into `out` now if it is there whole and nothing is out
    /// of the ordinary (shared memory's one-pass receive, inline); `false`, having
    /// consumed nothing, for everything else (as [`send_now`](Transport::send_now)).
    #[inline(always)]
    pub(crate) fn receive_now<S: Sink>(
        this: &Option<Transport>,
        out: &mut S,
        max: usize,
    ) -> Result<bool> {
        match this {
            Some(Transport::Shm(ep)) => match &ep.rx {
                Some(rx) => ep.receive_whole_now(rx, out, max),
                None => Ok(false),
            },
            _ => Ok(false),
        }
    }

    /// Receives the next message into `out`, refusing one longer than `max`, by the
    /// deadline `deadline` computes (called when the receive first has to wait).
    #[inline]
    pub(crate) fn receive<S: Sink>(
        &self,
        out: &mut S,
        max: usize,
        mut deadline: impl FnMut() -> Deadline,
    ) -> Result<()> {
        match self {
            Transport::Shm(ep) => ep.receive_into(out, max, deadline),
            Transport::Socket(s) => s.receive_into(out, max, deadline()),
        }
    }

    /// Receives the next message into `buf` (see `Connection::recv_bytes_into`).
    pub(crate) fn receive_into_slice(
        &self,
        buf: &mut [u8],
        mut deadline: impl FnMut() -> Deadline,
    ) -> Result<usize> {
        match self {
            Transport::Shm(ep) => ep.receive_into_slice(buf, deadline),
            Transport::Socket(s) => s.receive_into_slice(buf, deadline()),
        }
    }

    /// Whether a message (or EOF) is waiting, waiting up to `timeout` for one.
    pub(crate) fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        match self {
            Transport::Shm(ep) => ep.poll(timeout),
            Transport::Socket(s) => s.poll(Deadline::after(timeout)),
        }
    }

    /// The descriptor that polls readable exactly when [`poll`](Transport::poll) would
    /// say true.
    pub(crate) fn fileno(&self) -> Result<RawFd> {
        match self {
            Transport::Shm(ep) => ep.watch_fd(),
            Transport::Socket(s) => Ok(s.raw_fd()),
        }
    }

    /// The longest message a receive that allocates takes.
    #[inline]
    pub(crate) fn max_message(&self) -> Result<usize> {
        match self {
            Transport::Shm(ep) => Ok(ep.receiving()?.max_message.get()),
            Transport::Socket(s) => Ok(s.max_message.get()),
        }
    }

    /// Sets [`max_message`](Transport::max_message) (of an end that receives).
    pub(crate) fn set_max_message(&self, bytes: usize) {
        match self {
            Transport::Shm(ep) => ep.rx.iter().for_each(|rx| rx.max_message.set(bytes)),
            Transport::Socket(s) => s.max_message.set(bytes),
        }
    }

    /// The buffers typed messages are serialized into and received into.
    pub(crate) fn scratch(&self, sending: bool) -> Result<&Scratch> {
        match (self, sending) {
            (Transport::Shm(ep), true) => Ok(&ep.sending()?.scratch),
            (Transport::Shm(ep), false) => Ok(&ep.receiving()?.scratch),
            (Transport::Socket(s), true) => Ok(&s.send_scratch),
            (Transport::Socket(s), false) => Ok(&s.scratch),
        }
    }

    /// Splits a duplex end into its receiving half and its sending half.
    pub(crate) fn split(self) -> (Transport, Transport) {
        match self {
            Transport::Shm(ep) => map_pair(ep.split(), Transport::Shm),
            Transport::Socket(s) => map_pair(s.split(), Transport::Socket),
        }
    }

    /// Whether part of a sent message waits to be pushed out (a socket whose send timed
    /// out part-way).
    pub(crate) fn has_unsent_output(&self) -> bool {
        match self {
            Transport::Shm(_) => false,
            Transport::Socket(s) => s.has_unsent_output(),
        }
    }

    /// Pushes out what it can of such output by `deadline`; true when none is left.
    pub(crate) fn push_unsent(&self, deadline: Deadline) -> Result<bool> {
        match self {
            Transport::Shm(_) => Ok(true),
            Transport::Socket(s) => s.push_out(deadline),
        }
    }
}

fn map_pair<T>((a, b): (T, T), f: impl Fn(T) -> Transport) -> (Transport, Transport) {
    (f(a), f(b))
}
