//! What happens on a freshly connected socket before it becomes a
//! [`Connection`](crate::Connection), on either side.
//!
//! 1. With an authkey, CPython's mutual challenge/response ([`crate::net::auth`]): the
//!    listener challenges first, then the client. Each shmpipe side that wants shared
//!    memory marks its challenge, so each learns whether the other is shmpipe.
//! 2. On a Unix address, unless `python_wire(true)` was asked for, two shmpipe sides move
//!    to shared memory ([`crate::net::upgrade`]). Without an authkey nothing tells a
//!    Python peer from a shmpipe one, so a shmpipe side assumes shmpipe there (a Python
//!    peer needs `python_wire(true)`); with an authkey the marks decide, and a Python
//!    peer gets Python's wire protocol without being asked.
//! 3. Otherwise the socket itself carries the messages, in CPython's framing.
//!
//! Everything here runs under one deadline: a peer that says nothing, says too much or
//! says garbage fails this one connection within it.

use crate::builder::Builder;
use crate::connection::Connection;
use crate::deadline::Deadline;
use crate::error::Result;
use crate::net::{auth, upgrade};
use crate::shm::layout::DEFAULT_MAX_MESSAGE;
use crate::socket::stream::SocketEnd;
use std::os::fd::OwnedFd;

/// What both sides of a handshake are told by their builders.
#[derive(Clone, Debug)]
pub(crate) struct Terms {
    pub authkey: Option<Vec<u8>>,
    /// Speak Python's wire protocol even on a Unix address.
    pub python_wire: bool,
    /// The address is a Unix one (shared memory is possible).
    pub unix: bool,
    /// Ring size for a shared-memory connection (the listener decides).
    pub capacity: usize,
}

impl Terms {
    fn wants_shared_memory(&self) -> bool {
        self.unix && !self.python_wire
    }
}

/// The listener's side, on an accepted socket.
pub(crate) fn as_listener(fd: OwnedFd, terms: &Terms, deadline: Deadline) -> Result<Connection> {
    let chan = SocketEnd::new(fd);
    let mut peer_is_shmpipe = true;
    if let Some(key) = &terms.authkey {
        auth::deliver(&chan, key, terms.wants_shared_memory(), deadline)?;
        peer_is_shmpipe = auth::answer(&chan, key, deadline)?;
    }
    if terms.wants_shared_memory() && peer_is_shmpipe {
        let pipe = Builder::new().capacity(terms.capacity);
        return upgrade::offer(&chan, &pipe, deadline);
    }
    Ok(Connection::over_socket(chan))
}

/// The client's side, on a connected socket.
pub(crate) fn as_client(fd: OwnedFd, terms: &Terms, deadline: Deadline) -> Result<Connection> {
    // Only a client that may be handed a pipe's descriptors accepts passed descriptors,
    // and only until it has them (see `crate::sys`).
    let chan = if terms.wants_shared_memory() {
        SocketEnd::for_descriptors(fd)
    } else {
        SocketEnd::new(fd)
    };
    let mut peer_is_shmpipe = true;
    if let Some(key) = &terms.authkey {
        peer_is_shmpipe = auth::answer(&chan, key, deadline)?;
        auth::deliver(&chan, key, terms.wants_shared_memory(), deadline)?;
    }
    if terms.wants_shared_memory() && peer_is_shmpipe {
        return upgrade::take(&chan, DEFAULT_MAX_MESSAGE, deadline);
    }
    // Staying on the socket (a Python listener): no descriptors from here on.
    crate::sys::refuse_ancillary(chan.fd());
    Ok(Connection::over_socket(chan))
}
