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
//! be read in place with [`recv_archived`](Connection::recv_archived). `recv` blocks
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
//! How it works is in `DESIGN.md`; in short, the modules are:
//!
//! * `layout`: where the header, ring control blocks and ring data sit in the region;
//! * `region`: the sealed memfd and its mapping;
//! * `wire`: the record format and the checks every record from the other side passes;
//! * `ring`: the single-producer single-consumer ring protocol;
//! * `wakeup`: spinning, then sleeping on an eventfd the other side rings only when told;
//! * `liveness`: how EOF and broken pipe are detected (the kernel counts the ends);
//! * `endpoint`, `connection`, `select`, `handoff`, `builder`: the public API on top;
//! * `typed`: rkyv messages, serialized into the ring and read in place;
//! * `fork_epoch`: telling this process from its forked copies, cheaply.
#![deny(missing_docs)]
#![cfg(target_os = "linux")]

#[doc(hidden)]
#[path = "fuzzing.rs"]
pub mod __fuzz;
mod builder;
mod connection;
mod error;
mod handoff;
mod select;
mod shm;
mod typed;

pub use builder::{pipe, Builder};
pub use connection::Connection;
pub use error::{Error, Result};
pub use select::wait;
pub use typed::{Archived, Message};
