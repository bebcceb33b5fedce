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

use crate::shm::endpoint::Endpoint;
use crate::socket::stream::SocketEnd;

/// What a connection's messages travel through.
pub(crate) enum Transport {
    /// Shared-memory rings.
    Shm(Endpoint),
    /// A stream socket speaking CPython's `multiprocessing.connection` framing.
    Socket(SocketEnd),
}
