//! The socket transport: a [`Connection`](crate::Connection) whose messages travel over a
//! stream socket (Unix or TCP) in the framing of CPython's `multiprocessing.connection`,
//! so that the other end can be a Python program or a process on another machine.
//!
//! * `framing`: the length header CPython puts before every message;
//! * `stream`: one end of such a connection: sending and receiving whole messages with
//!   deadlines, without trusting what the peer sends;
//! * `poll`: waiting on a descriptor until a deadline.

pub(crate) mod framing;
pub(crate) mod poll;
pub(crate) mod stream;
