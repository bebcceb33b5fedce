//! Typed messages: rkyv archives, serialized straight into the ring and readable where
//! they lie.
//!
//! A typed message is an ordinary message whose bytes are an rkyv archive, as Python's
//! `send(obj)` is `send_bytes(pickle.dumps(obj))`: `recv_bytes` of a typed message gives
//! the archive, and `recv::<T>` of `send_bytes(archive)` works, so a bytes-only relay
//! forwards typed messages unchanged.

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::shm::endpoint::{Breakable, Endpoint, Rx};
use crate::shm::receive::message_len;
use crate::shm::ring::Record;
use crate::shm::wire::Kind;
use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor::BoxedError;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::writer::Buffer;
use rkyv::util::AlignedVec;
use std::marker::PhantomData;

/// Every bound a type needs to travel as a typed message, in one place: it can be
/// serialized (into ring memory or into a vector), its archive validated, and
/// deserialized back. Implemented automatically for every such type: integers, floats,
/// `bool`, `char`, `String`, `Vec<T>`, `Option<T>`, tuples, arrays, maps, and your own
/// types with `#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]`.
///
/// Validation (bytecheck) proves that the bytes are a well-formed archive of `T`, not
/// that they were written as a `T`: reading a message as a type whose archive has a
/// compatible layout (any eight bytes are a valid `u64`) succeeds. Agree on types as
/// you would agree on a pickle's class.
///
/// ```
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
/// struct Talk {
///     name: String,
///     spam: i32,
/// }
///
/// fn relay<T: shmpipe::Message>(from: &shmpipe::Connection, to: &shmpipe::Connection) -> shmpipe::Result<()> {
///     let value: T = from.recv()?;
///     to.send(&value)
/// }
///
/// let (a, b) = shmpipe::pipe(true)?;
/// let (c, d) = shmpipe::pipe(true)?;
/// a.send(&Talk { name: "bob".into(), spam: 42 })?;
/// relay::<Talk>(&b, &c)?;
/// assert_eq!(d.recv::<Talk>()?, Talk { name: "bob".into(), spam: 42 });
/// # Ok::<(), shmpipe::Error>(())
/// ```
pub trait Message:
    rkyv::Archive<
        Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>
                      + rkyv::Deserialize<Self, HighDeserializer<BoxedError>>,
    > + for<'a, 'b> rkyv::Serialize<HighSerializer<Buffer<'b>, ArenaHandle<'a>, BoxedError>>
    + for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, BoxedError>>
    + Sized
{
}

impl<T> Message for T where
    T: rkyv::Archive<
            Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>
                          + rkyv::Deserialize<T, HighDeserializer<BoxedError>>,
        > + for<'a, 'b> rkyv::Serialize<HighSerializer<Buffer<'b>, ArenaHandle<'a>, BoxedError>>
        + for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, BoxedError>>
{
}

/// Validates `bytes` as an archive of `T`.
fn validate<T: Message>(bytes: &[u8]) -> Result<&rkyv::Archived<T>> {
    rkyv::access::<rkyv::Archived<T>, BoxedError>(bytes).map_err(|e| {
        Error::Invalid(format!(
            "message of {} bytes is not a valid archive of {}: {e}",
            bytes.len(),
            std::any::type_name::<T>()
        ))
    })
}

fn decode<T: Message>(bytes: &[u8]) -> Result<T> {
    rkyv::deserialize::<T, BoxedError>(validate::<T>(bytes)?).map_err(|e| {
        Error::Invalid(format!(
            "cannot deserialize {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

impl Connection {
    /// Sends `value` as an rkyv archive. When the archive fits in the ring's free space
    /// it is serialized straight into the ring, with no intermediate buffer; a larger
    /// one is serialized into memory and sent in fragments.
    ///
    /// # Errors
    /// As [`send_bytes`](Connection::send_bytes); [`Error::Invalid`] if rkyv cannot
    /// serialize the value.
    ///
    /// ```
    /// let (a, b) = shmpipe::pipe(true)?;
    /// a.send(&vec!["spam".to_string(), "eggs".to_string()])?;
    /// a.send(&(42u32, Some(1.5f64)))?;
    /// assert_eq!(b.recv::<Vec<String>>()?, ["spam", "eggs"]);
    /// assert_eq!(b.recv::<(u32, Option<f64>)>()?, (42, Some(1.5)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn send<T: Message>(&self, value: &T) -> Result<()> {
        let (ep, tx) = self.tx()?;
        ep.check_reader(tx)?;
        tx.guard(tx.producer.resync())?;
        let reloads = tx.producer.reloads();
        if let Some(grant) = tx.guard(tx.producer.reserve_available())? {
            if tx.producer.reloads() != reloads {
                ep.ask_kernel_about_reader(tx)?;
            }
            let written = tx.producer.with_grant(&grant, |space| {
                rkyv::api::high::to_bytes_in::<_, BoxedError>(value, Buffer::from(space))
                    .map(|buf| buf.len())
            });
            if let Ok(len) = written {
                if tx.guard(tx.producer.commit(grant, Kind::Whole, len, 0))? {
                    ep.shared.bells[tx.ring].data.ring()?;
                }
                return Ok(());
            }
            // Did not fit in the free space: nothing was published; go the long way.
        }
        let bytes = rkyv::api::high::to_bytes_in::<_, BoxedError>(value, tx.scratch.take())
            .map_err(|e| {
                Error::Invalid(format!(
                    "cannot serialize {}: {e}",
                    std::any::type_name::<T>()
                ))
            })?;
        let sent = self.send_bytes(&bytes);
        tx.scratch.give_back(bytes);
        sent
    }

    /// Receives the next message as a `T`: validated, then deserialized into an owned
    /// value.
    ///
    /// # Errors
    /// As [`recv_bytes`](Connection::recv_bytes); [`Error::Invalid`], with rkyv's
    /// reason, when the message is not a valid archive of `T`. That message is consumed
    /// and the connection goes on working.
    ///
    /// ```
    /// let (a, b) = shmpipe::pipe(true)?;
    /// a.send(&String::from("123456"))?;
    /// a.send_bytes(b"not an archive")?;
    /// a.send(&7u8)?;
    /// assert_eq!(b.recv::<String>()?, "123456");
    /// assert!(matches!(b.recv::<Vec<u64>>(), Err(shmpipe::Error::Invalid(_))));
    /// assert_eq!(b.recv::<u8>()?, 7);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn recv<T: Message>(&self) -> Result<T> {
        let (ep, rx) = self.rx()?;
        let first = ep.next_record(rx)?;
        if first.kind == Kind::Whole {
            let value = rx.consumer.with_payload(&first, decode::<T>);
            ep.release(rx, &first)?;
            ep.after_receive(rx)?;
            return value;
        }
        let mut copy = rx.scratch.take();
        let value = ep
            .read_message_into_vec(rx, first, &mut copy)
            .and_then(|()| decode::<T>(&copy));
        rx.scratch.give_back(copy);
        value
    }

    /// Receives the next message and validates it as an archive of `T` where it lies in
    /// shared memory, without copying it. The returned guard dereferences to
    /// `rkyv::Archived<T>`; the message's ring space is given back when it drops, and
    /// until then this connection receives nothing else (receive calls return
    /// [`Error::Invalid`]). A message too long to travel whole was reassembled: the guard
    /// then holds an aligned copy instead, which makes no difference to the caller.
    ///
    /// # Errors
    /// As [`recv`](Connection::recv).
    ///
    /// ```
    /// let (a, b) = shmpipe::pipe(true)?;
    /// a.send(&vec![1u64, 2, 3])?;
    /// let msg = b.recv_archived::<Vec<u64>>()?;
    /// assert_eq!(msg.iter().map(|x| x.to_native()).sum::<u64>(), 6);
    /// assert!(b.poll(Some(std::time::Duration::ZERO)).is_err()); // still borrowed
    /// drop(msg);
    /// assert!(!b.poll(Some(std::time::Duration::ZERO))?);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn recv_archived<T: Message>(&self) -> Result<Archived<'_, T>> {
        let (ep, rx) = self.rx()?;
        let first = ep.next_record(rx)?;
        if first.kind != Kind::Whole {
            message_len(&first)?;
            let mut copy = rx.scratch.take();
            if let Err(e) = ep
                .read_message_into_vec(rx, first, &mut copy)
                .and_then(|()| validate::<T>(&copy))
            {
                rx.scratch.give_back(copy);
                return Err(e);
            }
            return Ok(Archived {
                ep,
                rx,
                held: None,
                bytes: Bytes::Copy(copy),
                _t: PhantomData,
            });
        }
        // Held in place for as long as the caller likes: claim it, so that not even a
        // second process misusing this end can release it under us.
        rx.guard(rx.consumer.claim())?;
        // SAFETY: the record stays unreleased until the guard built below drops (it
        // releases it in `Drop`): `rx.lent` stops this connection from releasing or
        // re-reading it meanwhile, and the claim stops any other process holding a copy
        // of this end. So the slice is never used after release.
        let bytes: &[u8] = unsafe { rx.consumer.payload(&first) };
        if let Err(e) = validate::<T>(bytes) {
            ep.release(rx, &first)?;
            ep.after_receive(rx)?;
            return Err(e);
        }
        rx.lent.set(true);
        Ok(Archived {
            ep,
            rx,
            held: Some(first),
            bytes: Bytes::Ring(bytes),
            _t: PhantomData,
        })
    }
}

enum Bytes<'c> {
    /// In place in the ring.
    Ring(&'c [u8]),
    /// A reassembled, 16-byte aligned copy of a fragmented message.
    Copy(AlignedVec),
}

/// A message received with [`recv_archived`](Connection::recv_archived), validated as an
/// archive of `T`: dereferences to `rkyv::Archived<T>`, read in place in shared memory.
/// Dropping it gives the message's space back to the sender.
///
/// ```
/// #[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
/// struct Reading {
///     sensor: String,
///     values: Vec<f32>,
/// }
///
/// let (a, b) = shmpipe::pipe(true)?;
/// a.send(&Reading { sensor: "t1".into(), values: vec![20.5, 21.0] })?;
/// let r = b.recv_archived::<Reading>()?;
/// assert_eq!(r.sensor, "t1");
/// assert_eq!(r.values.len(), 2);
/// assert_eq!(r.as_bytes().len(), rkyv::to_bytes::<rkyv::rancor::Error>(
///     &Reading { sensor: "t1".into(), values: vec![20.5, 21.0] }).unwrap().len());
/// # Ok::<(), shmpipe::Error>(())
/// ```
pub struct Archived<'c, T: Message> {
    ep: &'c Endpoint,
    rx: &'c Rx,
    /// The record to release on drop, when the message is read in place.
    held: Option<Record>,
    bytes: Bytes<'c>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Message> Archived<'_, T> {
    /// The archive's bytes (what [`recv_bytes`](Connection::recv_bytes) would have
    /// returned), for forwarding or storing the message as it is.
    ///
    /// ```
    /// let (a, b) = shmpipe::pipe(true)?;
    /// a.send(&42u64)?;
    /// let m = b.recv_archived::<u64>()?;
    /// assert_eq!(m.as_bytes(), 42u64.to_le_bytes());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Ring(b) => b,
            Bytes::Copy(v) => v,
        }
    }
}

impl<T: Message> std::ops::Deref for Archived<'_, T> {
    type Target = rkyv::Archived<T>;

    fn deref(&self) -> &rkyv::Archived<T> {
        // SAFETY: these exact bytes passed `rkyv::access` (full validation) when the
        // guard was made, and have not changed since: a copy is ours, and ring bytes are
        // not written by the producer until we release them on drop.
        unsafe { rkyv::access_unchecked::<rkyv::Archived<T>>(self.as_bytes()) }
    }
}

impl<T: Message> Drop for Archived<'_, T> {
    fn drop(&mut self) {
        if let Bytes::Copy(copy) = &mut self.bytes {
            self.rx.scratch.give_back(std::mem::take(copy));
        }
        if let Some(rec) = self.held.take() {
            self.rx.lent.set(false);
            // A failure here (the ring broke, or the doorbell could not be rung) is kept
            // by the connection and reported by its next call.
            if let Err(Error::Io(e)) = self.ep.release(self.rx, &rec) {
                self.rx
                    .break_with(format!("could not wake the sender: {e}"));
            }
            let _ = self.ep.after_receive(self.rx);
        }
    }
}

impl<T: Message> std::fmt::Debug for Archived<'_, T>
where
    rkyv::Archived<T>: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}
