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

use crate::buffers::{Parts, Sink};
use crate::deadline::Deadline;
use crate::error::Result;
use crate::shm::endpoint::Endpoint;
use crate::shm::ring::GrantWriter;
use crate::socket::stream::SocketEnd;
use std::os::fd::RawFd;
use std::time::Duration;
#[cfg(feature = "tokio")]
use {crate::shm::doorbell::Drained, std::os::fd::OwnedFd};

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
    /// into room for `guess` bytes (see `Endpoint::send_filled_now`).
    #[inline(always)]
    pub(crate) fn send_filled_now(
        this: &Option<Transport>,
        guess: usize,
        fill: impl FnOnce(&mut GrantWriter) -> bool,
    ) -> Result<bool> {
        match this {
            Some(Transport::Shm(ep)) => ep.send_filled_now(ep.sending()?, guess, fill),
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

    /// Sends one message that `fill` writes straight into shared memory (returning its
    /// length, or `None` if it did not fit, having published nothing) if there is room
    /// for it now: a typed send's first try. `Ok(false)`: nothing was sent (no room, or
    /// no shared memory), and the caller sends the message's bytes.
    pub(crate) fn send_filled(
        &self,
        fill: impl FnOnce(&mut GrantWriter) -> Option<usize>,
    ) -> Result<bool> {
        match self {
            Transport::Shm(ep) => ep.send_filled(ep.sending()?, fill),
            Transport::Socket(_) => Ok(false),
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

    /// Receives the next message into `buf` (see `Connection::recv_bytes_into`); `max`
    /// bounds what a message too long for `buf` may allocate.
    pub(crate) fn receive_into_slice(
        &self,
        buf: &mut [u8],
        max: usize,
        mut deadline: impl FnMut() -> Deadline,
    ) -> Result<usize> {
        match self {
            Transport::Shm(ep) => ep.receive_into_slice(buf, max, deadline),
            Transport::Socket(s) => s.receive_into_slice(buf, max, deadline()),
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

/// What an event loop (an `AsyncConnection`) needs to drive a connection without
/// blocking: the descriptors to wait on, and the shared-memory handshake around them
/// (a socket needs none of it: its readiness is the kernel's).
#[cfg(feature = "tokio")]
impl Transport {
    /// Duplicates of the descriptors whose readiness wakes the loop: the data and space
    /// doorbells, or the socket. From now on (until
    /// [`stop_event_driving`](Transport::stop_event_driving)) only the loop
    /// drains the doorbells.
    pub(crate) fn event_sources(&self) -> Result<EventSources> {
        match self {
            Transport::Shm(ep) => ep.event_sources(),
            Transport::Socket(s) => Ok(EventSources::Socket(s.fd().try_clone_to_owned()?)),
        }
    }

    /// Gives the doorbells back to the blocking calls (see
    /// [`event_sources`](Transport::event_sources)).
    pub(crate) fn stop_event_driving(&self) {
        if let Transport::Shm(ep) = self {
            ep.async_driven.set(false);
        }
    }

    /// Whether a receive would find something to take or an error to report, by memory
    /// alone (a socket: always worth a try).
    pub(crate) fn data_ready(&self) -> bool {
        match self {
            Transport::Shm(ep) => ep.data_ready(),
            Transport::Socket(_) => true,
        }
    }

    /// Before sleeping on the doorbells: raise the sleeping flag of the receiving side
    /// (`data`) or the sending side, ordered before the caller's next look.
    pub(crate) fn announce(&self, data: bool) {
        if let Transport::Shm(ep) = self {
            ep.announce(data);
        }
    }

    /// Takes down what [`announce`](Transport::announce) raised.
    pub(crate) fn lower(&self, data: bool) {
        if let Transport::Shm(ep) = self {
            ep.lower(data);
        }
    }

    /// Drains the data doorbell (`data`) or the space doorbell after the loop saw it
    /// readable, closing anything passed with its bytes.
    pub(crate) fn drain_doorbell(&self, data: bool) -> Result<Drained> {
        match self {
            Transport::Shm(ep) => ep.drain_doorbell(data),
            Transport::Socket(_) => Ok(Drained::Empty),
        }
    }

    /// Sends what fits now of `buf` from `*at` on, without waiting; true once the message
    /// is committed. A socket sends all of it, or nothing.
    pub(crate) fn send_some(&self, buf: &[u8], at: &mut usize) -> Result<bool> {
        match self {
            Transport::Shm(ep) => ep.send_some(ep.sending()?, buf, at),
            Transport::Socket(s) => s.send(buf, Deadline::Now).map(|()| true),
        }
    }

    /// Takes back a message of `total` bytes that [`send_some`](Transport::send_some)
    /// left half sent (its future was dropped). Never waits.
    pub(crate) fn abandon_send(&self, total: usize) {
        if let Transport::Shm(ep) = self {
            if let Ok(tx) = ep.sending() {
                // An error (the reader is gone, the ring broke) leaves nothing to take back.
                let _ = ep.cancel(tx, total);
            }
        }
    }

    /// Whether a message or EOF waits, by memory and a look at the descriptors, without
    /// draining or waiting.
    pub(crate) fn readable_now(&self) -> Result<bool> {
        match self {
            Transport::Shm(ep) => {
                ep.receiving()?;
                Ok(ep.data_ready() || ep.peer_gone()?)
            }
            Transport::Socket(s) => s.poll(Deadline::Now),
        }
    }
}

/// The descriptors an event loop waits on for a connection (see
/// [`Transport::event_sources`]).
#[cfg(feature = "tokio")]
pub(crate) enum EventSources {
    /// A shared-memory end's data and space doorbells.
    Doorbells { data: OwnedFd, space: OwnedFd },
    /// A socket connection's socket.
    Socket(OwnedFd),
}

/// What the Python bindings need beyond the API (see `crate::interop`).
impl Transport {
    /// Waits by `deadline` for the next message; its length, not consuming it, and
    /// whether all of it is in memory already.
    pub(crate) fn next_len(&self, deadline: Deadline) -> Result<(usize, bool)> {
        match self {
            Transport::Shm(ep) => ep.next_len(deadline),
            Transport::Socket(s) => Ok((s.next_len(deadline)?, false)),
        }
    }

    /// The one-pass receive into memory that `alloc` gives for the message's length;
    /// `Ok(None)`, consuming nothing, where it does not apply (see
    /// `interop::recv_whole_now`).
    pub(crate) fn receive_whole_with<'b>(
        &self,
        max: usize,
        alloc: &mut dyn FnMut(usize) -> Option<&'b mut [u8]>,
    ) -> Result<Option<usize>> {
        match self {
            Transport::Shm(ep) => ep.take_whole_with(ep.receiving()?, max, alloc),
            Transport::Socket(_) => Ok(None),
        }
    }

    /// The shared-memory end, for what only it has (its descriptors, its ring).
    pub(crate) fn shm(&self) -> Option<&Endpoint> {
        match self {
            Transport::Shm(ep) => Some(ep),
            Transport::Socket(_) => None,
        }
    }

    /// The socket end, for what only it has.
    pub(crate) fn socket(&self) -> Option<&SocketEnd> {
        match self {
            Transport::Socket(s) => Some(s),
            Transport::Shm(_) => None,
        }
    }
}

fn map_pair<T>((a, b): (T, T), f: impl Fn(T) -> Transport) -> (Transport, Transport) {
    (f(a), f(b))
}
