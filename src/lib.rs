//! # shmpipe
//!
//! Python's `multiprocessing.Pipe()` for Rust, with every message carried through
//! shared memory instead of a kernel socket.
//!
//! [`pipe`] returns two connected [`Connection`] ends with the methods Python
//! programmers know: [`send_bytes`](Connection::send_bytes),
//! [`recv_bytes`](Connection::recv_bytes), [`recv_bytes_into`](Connection::recv_bytes_into),
//! [`poll`](Connection::poll), [`close`](Connection::close); typed messages travel as
//! rkyv archives with [`send`](Connection::send) and [`recv`](Connection::recv), and can
//! be read without deserializing with [`recv_archived`](Connection::recv_archived). `recv` blocks
//! while the pipe is empty and returns [`Error::Eof`] once every copy of the other end
//! is closed in every process. Ends are inherited by `fork` and can be passed to an
//! exec'd child.
//!
//! ```
//! let (parent_end, child_end) = shmpipe::pipe(true)?;
//! match unsafe { libc::fork() } {
//!     0 => {
//!         // child
//!         drop(parent_end);
//!         child_end.send_bytes(b"Hello").unwrap();
//!         unsafe { libc::_exit(0) };
//!     }
//!     pid => {
//!         drop(child_end);
//!         assert_eq!(parent_end.recv_bytes()?, b"Hello");
//!         assert!(matches!(parent_end.recv_bytes(), Err(shmpipe::Error::Eof)));
//!         unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
//!     }
//! }
//! # Ok::<(), shmpipe::Error>(())
//! ```
//!
//! Processes that did not start each other connect by [`Address`] with [`Listener`] and
//! [`Client`], as with Python's `multiprocessing.connection`: two shmpipe processes on a
//! Unix socket get shared memory ([`Connection::is_shared_memory`]); a Python program, or
//! a peer over TCP, gets CPython's wire protocol and HMAC authentication.
//!
//! [`Queue`] is `multiprocessing.Queue` on the same rings: any number of processes put
//! and get, and one killed at any point does not block the others.
//!
//! The other process is not trusted: whatever it writes into the shared memory (even
//! while a receive reads it) and whatever it does to its descriptors, a safe call
//! returns data or an error.
//!
//! How it works is in `DESIGN.md`. The code has three layers, and imports go downwards
//! only:
//!
//! * the public API: `connection` (the byte methods), `typed` (rkyv messages), `select`
//!   (`wait`), `handoff` (passing an end to an exec'd child), `timeouts` (deadlines and
//!   non-blocking mode), `async_connection` (tokio, feature `tokio`), `builder`, `error`;
//!   `net/` (addresses, `Listener`, `Client`, the handshake and the move to shared
//!   memory); and `queue/` (`Queue`, over the ring of `shm/`);
//! * `transport`: the seam, a connection's messages go through one of
//! * `shm/`, the shared-memory mechanism (the region and its layout, the ring protocol,
//!   the record format, doorbells, wake-ups, liveness, and the per-process `Endpoint`
//!   that moves messages through them), or `socket/`, a stream socket in CPython's
//!   framing; both use `buffers` and `deadline`.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(
    clippy::undocumented_unsafe_blocks,
    missing_debug_implementations,
    unreachable_pub
)]
#![cfg(target_os = "linux")]

#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;
#[doc(hidden)]
#[path = "interop.rs"]
pub mod __interop;
#[cfg(feature = "tokio")]
mod async_connection;
mod buffers;
mod builder;
mod connection;
mod deadline;
mod error;
mod handoff;
mod net;
mod queue;
mod select;
mod shm;
mod socket;
mod sys;
mod timeouts;
mod transport;
mod typed;
mod violation;

#[cfg(feature = "tokio")]
pub use async_connection::AsyncConnection;
pub use builder::{pipe, Builder};
pub use connection::Connection;
pub use error::{Error, Result};
pub use net::address::Address;
pub use net::client::{Client, ClientBuilder};
pub use net::listener::{Listener, ListenerBuilder, Peer};
pub use queue::Queue;
pub use select::wait;
pub use typed::{Archived, Message};
pub use violation::{RingIndex, Violation};
