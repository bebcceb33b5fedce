//! What the other process can get wrong while a connection is in use: the one list of
//! the protocol violations that [`Error::Corrupt`](crate::Error::Corrupt) reports.
//!
//! Every value the other process controls is checked before it is used, in the file
//! that reads it (DESIGN.md, "Trust", has the table): the indices it publishes in
//! `shm/ring/`, record headers and fragment sequences in `shm/wire.rs`, the length
//! prefixes of a socket connection in `socket/framing.rs` and `socket/stream.rs`. A
//! failed check breaks the direction concerned for good, and each reports one of the
//! variants here. (What a process hands over when an end is adopted, a region and its
//! doorbells, is checked once, at adoption, and a bad one is
//! [`Error::Invalid`](crate::Error::Invalid).)

use crate::error::{Error, Result};
use std::cell::OnceCell;
use std::fmt;

/// Which index of a ring the other side published.
///
/// ```
/// use shmpipe::RingIndex;
/// assert_eq!(RingIndex::Head.to_string(), "head");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingIndex {
    /// The writer's count of bytes published.
    Head,
    /// The reader's count of bytes consumed.
    Tail,
}

impl fmt::Display for RingIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RingIndex::Head => "head",
            RingIndex::Tail => "tail",
        })
    }
}

/// How the other process (or a second process using the same end) broke the protocol:
/// what [`Error::Corrupt`](crate::Error::Corrupt) carries. The direction concerned
/// stays broken, and every later call on it reports the same violation.
///
/// ```
/// use shmpipe::{Error, Violation};
///
/// fn describe(e: &Error) -> &'static str {
///     match e {
///         Error::Corrupt(Violation::ConcurrentWriter { .. } | Violation::ConcurrentReader { .. }) => {
///             "two processes used one end at once"
///         }
///         Error::Corrupt(_) => "the other process broke the protocol",
///         _ => "something else",
///     }
/// }
/// let e = Error::Corrupt(Violation::ConcurrentWriter { expected: 64, found: 128 });
/// assert_eq!(describe(&e), "two processes used one end at once");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// The other side published an index that cannot follow from what we knew: more
    /// than a ring ahead of the other index, behind its last value, or not a multiple
    /// of 16.
    ImpossibleIndex {
        /// Which index.
        index: RingIndex,
        /// The value published.
        published: u64,
        /// Its last value we knew of.
        last: u64,
        /// The other index, as we knew it.
        other: u64,
    },
    /// `head` moved under us: another process is writing on this end at the same time.
    ConcurrentWriter {
        /// The value we published last.
        expected: u64,
        /// The value found.
        found: u64,
    },
    /// `tail` moved under us: another process is reading on this end at the same time.
    ConcurrentReader {
        /// The value we published last.
        expected: u64,
        /// The value found.
        found: u64,
    },
    /// The room kept free for abandoning a long message part-way was taken: another
    /// process wrote on this end.
    CancelRoomTaken,
    /// Another process holds a message of this end in place
    /// (`recv_archived_in_place`) while this one reads.
    HeldElsewhere,
    /// The message at the head of the ring is held in place by the process this one
    /// was forked from; only that process can give it back.
    HeldByParent,
    /// Fewer bytes are published than a record header takes.
    ShortHeader {
        /// Bytes published and not yet read.
        published: usize,
    },
    /// A record header of a kind that does not exist.
    UnknownKind {
        /// The kind word found.
        kind: u32,
    },
    /// A record runs past the bytes published or past the end of the ring.
    RecordOverrun {
        /// The record's payload length (0 for padding).
        len: usize,
        /// Bytes published and not yet read.
        published: usize,
        /// Bytes from the record to the end of the ring.
        to_end: usize,
    },
    /// A message announced a length that this process cannot hold in memory.
    LengthTooLarge {
        /// The length announced.
        len: u64,
    },
    /// A socket peer sent a negative length prefix (other than CPython's `-1`, which
    /// announces a long one).
    NegativeLength {
        /// The prefix.
        len: i32,
    },
    /// The first fragment of a message is empty, or not shorter than the message.
    BadFirstFragment {
        /// The fragment's length.
        len: usize,
        /// The length of the whole message.
        total: usize,
    },
    /// A record of a kind that cannot come where it came: a middle or last fragment
    /// with no message begun, or anything but a fragment inside one.
    MisplacedRecord {
        /// The record's kind.
        kind: &'static str,
        /// Whether a fragmented message was in progress.
        inside_message: bool,
    },
    /// A fragment does not start where the last one ended.
    FragmentOutOfSequence {
        /// The offset the fragment claims.
        offset: u64,
        /// The offset expected.
        expected: usize,
    },
    /// The fragments add up to more than the message, or end short of it.
    FragmentsDoNotAddUp {
        /// The bytes the fragments came to.
        received: usize,
        /// The length of the message.
        total: usize,
    },
    /// The writer asleep waiting for room could not be woken (a system call failed),
    /// so this end cannot go on reading safely.
    WakeUpFailed {
        /// What the system call reported.
        error: std::io::ErrorKind,
    },
}

impl fmt::Display for Violation {
    // Long: one arm per variant.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Violation::*;
        match self {
            ImpossibleIndex {
                index,
                published,
                last,
                other,
            } => {
                let other_name = match index {
                    RingIndex::Head => RingIndex::Tail,
                    RingIndex::Tail => RingIndex::Head,
                };
                write!(
                    f,
                    "published {index} {published} is impossible after {last} with \
                     {other_name} {other}"
                )
            }
            ConcurrentWriter { expected, found } => write!(
                f,
                "head moved from {expected} to {found} under us: another process is writing \
                 on this end at the same time"
            ),
            ConcurrentReader { expected, found } => write!(
                f,
                "tail moved from {expected} to {found} under us: another process is reading \
                 on this end at the same time"
            ),
            CancelRoomTaken => f.write_str(
                "no room for a cancel record, though it was kept free: another process wrote \
                 on this end",
            ),
            HeldElsewhere => f.write_str(
                "another process holds a message of this end in place \
                 (recv_archived_in_place) while this one reads: the end is used by two \
                 processes at once",
            ),
            HeldByParent => f.write_str(
                "this message is held in place by the process this one was forked from; only \
                 that process can give it back",
            ),
            ShortHeader { published } => {
                write!(f, "{published} published bytes cannot hold a record header")
            }
            UnknownKind { kind } => write!(f, "unknown record kind {kind:#x}"),
            RecordOverrun {
                len,
                published,
                to_end,
            } => write!(
                f,
                "record of {len} bytes does not fit ({published} bytes published, {to_end} to \
                 the ring's end)"
            ),
            LengthTooLarge { len } => {
                write!(f, "a message of {len} bytes does not fit in memory")
            }
            NegativeLength { len } => {
                write!(f, "the peer sent a negative message length ({len})")
            }
            BadFirstFragment { len, total } => {
                write!(f, "first fragment of {len} bytes for a message of {total}")
            }
            MisplacedRecord {
                kind,
                inside_message: true,
            } => write!(f, "{kind} record inside a fragmented message"),
            MisplacedRecord { kind, .. } => write!(f, "message starts with a {kind} fragment"),
            FragmentOutOfSequence { offset, expected } => {
                write!(
                    f,
                    "fragment at offset {offset} where {expected} was expected"
                )
            }
            FragmentsDoNotAddUp { received, total } => {
                write!(
                    f,
                    "fragments add up to {received} bytes of a {total}-byte message"
                )
            }
            WakeUpFailed { error } => write!(f, "could not wake the sender: {error}"),
        }
    }
}

/// Breakage that sticks: once a direction of a shared-memory end, or a socket
/// connection, has seen a [`Violation`], every later call on it reports that one (the
/// first: later ones follow from it). Boxed, so that every connection does not carry
/// room for a violation it will most likely never have.
#[derive(Clone, Debug, Default)]
pub(crate) struct Breakage(OnceCell<Box<Violation>>);

impl Breakage {
    /// `Ok` until something broke; then the error it reports from now on.
    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        if self.0.get().is_none() {
            return Ok(());
        }
        Err(self.error())
    }

    /// Whether something broke.
    #[inline]
    pub(crate) fn is_broken(&self) -> bool {
        self.0.get().is_some()
    }

    #[cold]
    #[inline(never)]
    fn error(&self) -> Error {
        match self.0.get() {
            Some(why) => Error::Corrupt(Violation::clone(why)),
            None => unreachable!("only something broken reports its breakage"),
        }
    }

    /// Records `why` (unless something broke before) and returns the error to report.
    #[cold]
    #[inline(never)]
    pub(crate) fn record(&self, why: Violation) -> Error {
        let _ = self.0.set(Box::new(why.clone()));
        Error::Corrupt(why)
    }
}
