//! Connecting processes that did not start each other: [`Listener`](crate::Listener) and
//! [`Client`](crate::Client), as in Python's `multiprocessing.connection`.
//!
//! * `address`: Unix paths, abstract names and TCP, with Python's rules;
//! * `socket_setup`: binding, listening and connecting sockets safely;
//! * `handshake`: what runs on a new socket before it is a connection;
//! * `auth`: CPython's HMAC challenge/response;
//! * `upgrade`: two shmpipe processes moving to shared memory (`SCM_RIGHTS`);
//! * `listener`, `client`: the public types.

pub(crate) mod address;
pub(crate) mod auth;
pub(crate) mod client;
pub(crate) mod handshake;
pub(crate) mod listener;
pub(crate) mod socket_setup;
pub(crate) mod upgrade;
