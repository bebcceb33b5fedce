//! The shared-memory mechanism beneath the public API: everything that knows about the
//! region, the rings in it, and the descriptors that wake and watch the other process.
//!
//! * `layout`: where the header, ring control blocks and ring data sit;
//! * `region`: the sealed memfd and its mapping;
//! * `wire`: the record format and the checks every record from the other side passes;
//! * `ring`: the single-producer single-consumer ring protocol (its `producer` and
//!   `consumer` halves), the only place that touches ring memory;
//! * `spin`: every wait in user space (how long and how often each waiter looks);
//! * `wakeup`: announcing a sleep, and sleeping until the other side rings;
//! * `fence`: the asymmetric fence that spares the writer a full fence per message;
//! * `doorbell`: the sockets one side rings and the other sleeps on;
//! * `liveness`: how EOF and broken pipe are detected (the kernel counts the ends);
//! * `endpoint`: what one end holds in one process; `receive` and `send` move messages
//!   through it, and `ops` adds what the transport contract asks beyond them;
//! * `lent`: a message received in place, held in the ring until its guard drops;
//! * `fork_epoch`: telling this process from its forked copies, cheaply.

pub(crate) mod doorbell;
pub(crate) mod endpoint;
pub(crate) mod fence;
pub(crate) mod fork_epoch;
pub(crate) mod layout;
pub(crate) mod lent;
pub(crate) mod liveness;
pub(crate) mod ops;
pub(crate) mod receive;
pub(crate) mod region;
pub(crate) mod ring;
pub(crate) mod send;
pub(crate) mod spin;
pub(crate) mod sync;
pub(crate) mod wakeup;
pub(crate) mod wire;
