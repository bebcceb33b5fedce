//! Typed messages: rkyv archives, serialized straight into the ring, validated and
//! read in a private copy (or, for a trusted peer, in place).
//!
//! A typed message is an ordinary message whose bytes are an rkyv archive, as Python's
//! `send(obj)` is `send_bytes(pickle.dumps(obj))`: `recv_bytes` of a typed message gives
//! the archive, and `recv::<T>` of `send_bytes(archive)` works, so a bytes-only relay
//! forwards typed messages unchanged.

use crate::buffers::{Parts, Scratch, Sink, SliceSink};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::shm::lent::{InPlace, Lent};
use crate::shm::ring::GrantWriter;
use crate::transport::Transport;
use rkyv::api::high::{HighDeserializer, HighSerializer, HighValidator};
use rkyv::bytecheck::CheckBytes;
use rkyv::rancor::BoxedError;
use rkyv::ser::allocator::ArenaHandle;
use rkyv::ser::sharing::Share;
use rkyv::ser::{Serializer, Writer};
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
pub trait Message: rkyv::Archive<
        Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>
                      + rkyv::Deserialize<Self, HighDeserializer<BoxedError>>,
    > + for<'a, 'w> rkyv::Serialize<HighSerializer<&'w mut GrantWriter, ArenaHandle<'a>, BoxedError>>
    + for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, BoxedError>>
    + Sized
{
}

impl<T> Message for T where
    T: rkyv::Archive<
            Archived: for<'a> CheckBytes<HighValidator<'a, BoxedError>>
                          + rkyv::Deserialize<T, HighDeserializer<BoxedError>>,
        > + for<'a, 'w> rkyv::Serialize<
            HighSerializer<&'w mut GrantWriter, ArenaHandle<'a>, BoxedError>,
        > + for<'a> rkyv::Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, BoxedError>>
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

pub(crate) fn decode<T: Message>(bytes: &[u8]) -> Result<T> {
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
        // The common case, in one pass: serialized straight into room the cached index
        // shows, for an archive of the type's size or of the last one's.
        let scratch = &self.scratch.send;
        let guess = size_of::<rkyv::Archived<T>>().max(scratch.archive_hint());
        let fill = |w: &mut GrantWriter| archive_into(value, w, scratch).is_ok();
        if Transport::send_filled_now(&self.inner, guess, fill)? {
            return Ok(());
        }
        self.send_slowly(value)
    }

    /// A typed send's general path: serialized into the ring's free space if it fits
    /// now, else into the send scratch and sent as bytes (in fragments if need be).
    #[inline(never)]
    fn send_slowly<T: Message>(&self, value: &T) -> Result<()> {
        let scratch = &self.scratch.send;
        let fill = |w: &mut GrantWriter| {
            let len = archive_into(value, w, scratch).ok()?.len();
            scratch.note_archive(len);
            Some(len)
        };
        let transport = self.transport()?;
        if transport.send_filled(fill)? {
            return Ok(());
        }
        let bytes = serialize(value, scratch)?;
        scratch.note_archive(bytes.len());
        let sent = transport.send(Parts::new(&[&bytes]), self.limits.write_deadline());
        scratch.give_back(bytes);
        sent
    }

    /// Receives the next message as a `T`: copied out of shared memory, validated, then
    /// deserialized into an owned value.
    ///
    /// # Errors
    /// As [`recv_bytes`](Connection::recv_bytes) (including
    /// [`Error::MessageTooLong`] past the [message size limit](crate::Builder::max_message_size));
    /// [`Error::Invalid`], with rkyv's reason, when the message is not a valid archive of
    /// `T`. That message is consumed and the connection goes on working.
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
        // A small message waiting whole is copied onto the stack in one pass and decoded
        // there; everything else goes through the kept buffer.
        let mut small = Small([0; Small::LEN]);
        let mut sink = SliceSink::new(&mut small.0);
        let max = Small::LEN.min(self.limit()?);
        if Transport::receive_now(&self.inner, &mut sink, max)? {
            let len = sink.len();
            return decode::<T>(&small.0[..len]);
        }
        let scratch = &self.scratch.receive;
        let copy = self.receive_copy(scratch)?;
        let value = decode::<T>(&copy);
        scratch.give_back(copy);
        value
    }

    /// The next message, in the kept buffer (aligned for rkyv).
    fn receive_copy(&self, scratch: &Scratch) -> Result<AlignedVec> {
        let mut copy = scratch.take();
        match self.receive_into(&mut copy, self.limit()?) {
            Ok(()) => Ok(copy),
            Err(e) => {
                scratch.give_back(copy);
                Err(e)
            }
        }
    }

    /// Receives the next message and validates it as an archive of `T`. The returned
    /// guard dereferences to `rkyv::Archived<T>`, read without deserializing.
    ///
    /// The archive is read from a private, 16-byte aligned copy: the peer can write ring
    /// memory at any moment, so what was validated must be memory it cannot reach.
    /// Copying costs about as much as validating; the buffer is kept from one message to the next, so a steady stream allocates nothing.
    /// For a peer you trust, [`recv_archived_in_place`](Connection::recv_archived_in_place)
    /// skips the copy.
    ///
    /// # Errors
    /// As [`recv`](Connection::recv).
    ///
    /// ```
    /// let (a, b) = shmpipe::pipe(true)?;
    /// a.send(&vec![1u64, 2, 3])?;
    /// a.send(&vec![4u64])?;
    /// let first = b.recv_archived::<Vec<u64>>()?;
    /// let second = b.recv_archived::<Vec<u64>>()?; // the first is still readable
    /// assert_eq!(first.iter().map(|x| x.to_native()).sum::<u64>(), 6);
    /// assert_eq!(second[0], 4);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn recv_archived<T: Message>(&self) -> Result<Archived<'_, T>> {
        let scratch = &self.scratch.receive;
        let copy = self.receive_copy(scratch)?;
        if let Err(e) = validate::<T>(&copy) {
            scratch.give_back(copy);
            return Err(e);
        }
        Ok(Archived {
            scratch,
            held: None,
            bytes: Bytes::Copy(copy),
            _t: PhantomData,
        })
    }

    /// Like [`recv_archived`](Connection::recv_archived), but validates and reads a
    /// message that travelled whole where it lies in shared memory, without copying it.
    /// The message's ring space is given back when the guard drops, and until then this
    /// connection receives nothing else (receive calls return [`Error::Invalid`]). A
    /// message too long to travel whole is reassembled into a copy as usual.
    ///
    /// # Safety
    /// The process at the other end must not write the message's bytes while the guard
    /// lives. shmpipe never does; a hostile or broken peer could, and the view would then
    /// change under the caller after validation: a string that is no longer UTF-8, or a
    /// relative pointer aimed outside the message, which is undefined behaviour. Use it
    /// only when you trust the peer's code as you trust your own.
    ///
    /// ```
    /// let (a, b) = shmpipe::pipe(true)?;
    /// a.send(&vec![1u64, 2, 3])?;
    /// // SAFETY: the peer is this process, running shmpipe.
    /// let msg = unsafe { b.recv_archived_in_place::<Vec<u64>>()? };
    /// assert_eq!(msg.iter().map(|x| x.to_native()).sum::<u64>(), 6);
    /// assert!(b.poll(Some(std::time::Duration::ZERO)).is_err()); // still borrowed
    /// drop(msg);
    /// assert!(!b.poll(Some(std::time::Duration::ZERO))?);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub unsafe fn recv_archived_in_place<T: Message>(&self) -> Result<Archived<'_, T>> {
        let deadline = self.limits.read_deadline();
        // No ring to read in place: an archive in a copy of our own.
        let Some(ep) = self.transport()?.shm() else {
            return self.recv_archived();
        };
        let scratch = &self.scratch.receive;
        let max = self.limit()?;
        let validate = |b: &[u8]| validate::<T>(b).map(drop);
        Ok(
            match ep.receive_in_place(max, deadline, scratch, validate)? {
                InPlace::Copy(copy) => Archived {
                    scratch,
                    bytes: Bytes::Copy(copy),
                    held: None,
                    _t: PhantomData,
                },
                InPlace::Lent(lent) => {
                    // SAFETY: `lent`, kept in the guard, holds the record in place until
                    // the guard drops; the peer leaves it alone (our caller promised that).
                    let bytes = unsafe { lent.bytes() };
                    Archived {
                        scratch,
                        bytes: Bytes::Ring(bytes.as_ptr(), bytes.len()),
                        held: Some(lent),
                        _t: PhantomData,
                    }
                }
            },
        )
    }
}

/// A buffer on the stack for a small message, aligned as rkyv's `AlignedVec` is.
#[repr(C, align(16))]
struct Small([u8; Small::LEN]);

impl Small {
    /// The largest message received on the stack: a few small structs.
    const LEN: usize = 256;
}

/// Serializes `value` as an rkyv archive into the kept buffer of `scratch`, for the
/// send paths that cannot serialize straight into the ring.
pub(crate) fn serialize<T: Message>(value: &T, scratch: &Scratch) -> Result<AlignedVec> {
    archive_into(value, scratch.take(), scratch).map_err(|e| {
        Error::Invalid(format!(
            "cannot serialize {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

/// Serializes `value` into `writer`: rkyv's high-level `to_bytes_in` (shared pointers
/// written once) with the arena `scratch` keeps instead of rkyv's thread-local one, and
/// written out here so that it inlines into the send: called through rkyv's function,
/// a small value's serialization cost several times the copy into the ring.
#[inline(always)]
fn archive_into<T, W>(value: &T, writer: W, scratch: &Scratch) -> std::result::Result<W, BoxedError>
where
    W: Writer<BoxedError>,
    T: for<'a> rkyv::Serialize<HighSerializer<W, ArenaHandle<'a>, BoxedError>>,
{
    scratch.with_arena(|arena| {
        let mut serializer = Serializer::new(writer, arena, Share::new());
        rkyv::api::serialize_using::<_, BoxedError>(value, &mut serializer)?;
        Ok(serializer.into_writer())
    })
}

enum Bytes {
    /// In place in the ring (`recv_archived_in_place` only): address and length.
    Ring(*const u8, usize),
    /// A private, 16-byte aligned copy.
    Copy(AlignedVec),
}

/// A message received with [`recv_archived`](Connection::recv_archived), validated as an
/// archive of `T`: dereferences to `rkyv::Archived<T>`. Dropping it keeps its buffer for
/// the next message (or, from
/// [`recv_archived_in_place`](Connection::recv_archived_in_place), gives the message's
/// ring space back to the sender).
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
    /// Where a copy goes back to when the guard drops.
    scratch: &'c Scratch,
    /// The record to release on drop, when the message is read in place.
    held: Option<Lent<'c>>,
    bytes: Bytes,
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
            // SAFETY: only `recv_archived_in_place` makes a `Ring`, whose caller promised
            // that the peer leaves the record alone while the guard lives; the guard keeps
            // it unreleased (and claimed) until it drops.
            Bytes::Ring(ptr, len) => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            Bytes::Copy(v) => v,
        }
    }
}

impl<T: Message> std::ops::Deref for Archived<'_, T> {
    type Target = rkyv::Archived<T>;

    fn deref(&self) -> &rkyv::Archived<T> {
        // SAFETY: these exact bytes passed `rkyv::access` (full validation) when the
        // guard was made, and have not changed since: a copy is ours alone, and a record
        // held in place is left alone by the peer (the contract of
        // `recv_archived_in_place`) and by this process until the guard drops.
        unsafe { rkyv::access_unchecked::<rkyv::Archived<T>>(self.as_bytes()) }
    }
}

impl<T: Message> Drop for Archived<'_, T> {
    fn drop(&mut self) {
        if let Bytes::Copy(copy) = &mut self.bytes {
            self.scratch.give_back(std::mem::take(copy));
        }
        // Releases a record held in place.
        drop(self.held.take());
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
