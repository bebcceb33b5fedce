//! The record format inside a ring, and the checks that every record read from the
//! other process must pass. Pure functions: the fuzz target and the unit tests drive
//! them without any shared memory.
//!
//! A record is a 16-byte header followed by its payload, padded so that the next record
//! starts 16-byte aligned (rkyv archives are read where they lie and need that
//! alignment). A record never wraps around the end of the ring: when it would not fit
//! before the end, the producer writes a padding record that fills the rest of the ring
//! and puts the record at offset 0.
//!
//! A message that fits in one record is a `WHOLE` record. A larger message goes as a
//! `FIRST` record (carrying the total length), any number of `MIDDLE` records and a
//! `LAST` one; the receiver reassembles them. A half-sent message (the writer died)
//! never ends with `LAST`, so it is never delivered. A writer that gives up on a
//! fragmented message part-way (its timeout passed) ends it with a `CANCEL` record
//! instead, and the receiver drops what it reassembled.

use crate::violation::Violation;

/// Size of a record header; also the alignment of every record.
pub(crate) const HEADER: usize = 16;
/// Alignment of records and so of payloads.
pub(crate) const ALIGN: usize = 16;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A whole message. `aux`: zero in a pipe; in a `Queue`, the put's number, from
    /// which both sides derive their counts (`crate::queue::control::TurnWords`).
    Whole,
    /// First fragment of a long message. `aux` is the total message length.
    First,
    /// A fragment in the middle. `aux` is the offset of this fragment in the message.
    Middle,
    /// The last fragment. `aux` is the offset of this fragment in the message.
    Last,
    /// Filler up to the end of the ring; the reader skips to offset 0.
    Padding,
    /// The fragmented message in progress is abandoned. No payload; `aux` is its total.
    Cancel,
}

impl Kind {
    pub(crate) fn to_u32(self) -> u32 {
        match self {
            Kind::Whole => 0x5348_0001,
            Kind::First => 0x5348_0002,
            Kind::Middle => 0x5348_0003,
            Kind::Last => 0x5348_0004,
            Kind::Padding => 0x5348_0005,
            Kind::Cancel => 0x5348_0006,
        }
    }

    /// The kind's name, for what a violation reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Whole => "Whole",
            Kind::First => "First",
            Kind::Middle => "Middle",
            Kind::Last => "Last",
            Kind::Padding => "Padding",
            Kind::Cancel => "Cancel",
        }
    }

    /// Kinds carry a tag in their top half so that zeroed or random memory is unlikely
    /// to pass for a record.
    pub(crate) fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            0x5348_0001 => Kind::Whole,
            0x5348_0002 => Kind::First,
            0x5348_0003 => Kind::Middle,
            0x5348_0004 => Kind::Last,
            0x5348_0005 => Kind::Padding,
            0x5348_0006 => Kind::Cancel,
            _ => return None,
        })
    }
}

/// Bytes a record with `len` payload bytes occupies in the ring.
pub(crate) fn record_size(len: usize) -> usize {
    HEADER + len.next_multiple_of(ALIGN)
}

/// A record header as read from the ring (raw, not yet trusted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawHeader {
    pub kind: u32,
    pub len: u32,
    pub aux: u64,
}

/// A record header that passed [`check`]: it lies wholly inside the published bytes and
/// before the end of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Checked {
    pub kind: Kind,
    /// Payload bytes.
    pub len: usize,
    pub aux: u64,
    /// Bytes the record occupies, header and padding included. For a padding record,
    /// the distance to the end of the ring.
    pub size: usize,
}

/// Checks a header read at ring offset `pos`, with `avail` published bytes from `pos`
/// on and `to_end` bytes before the ring's end. Returns why it is impossible otherwise.
pub(crate) fn check(raw: RawHeader, avail: usize, to_end: usize) -> Result<Checked, Violation> {
    let kind = Kind::from_u32(raw.kind).ok_or(Violation::UnknownKind { kind: raw.kind })?;
    let overrun = |len| Violation::RecordOverrun {
        len,
        published: avail,
        to_end,
    };
    if kind == Kind::Padding {
        if to_end > avail {
            return Err(overrun(0));
        }
        return Ok(Checked {
            kind,
            len: 0,
            aux: 0,
            size: to_end,
        });
    }
    let len = raw.len as usize;
    let size = record_size(len);
    if size > avail || size > to_end {
        return Err(overrun(len));
    }
    Ok(Checked {
        kind,
        len,
        aux: raw.aux,
        size,
    })
}

/// Where a long message being reassembled has got to. Checks that fragments arrive in
/// order and add up to the announced total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reassembly {
    pub total: usize,
    pub received: usize,
}

impl Reassembly {
    /// Starts from a `FIRST` record, which must announce more than it carries. (The
    /// announced total is checked against the receiver's limit before this, by the
    /// caller.)
    pub(crate) fn start(rec: &Checked) -> Result<Reassembly, Violation> {
        debug_assert_eq!(rec.kind, Kind::First);
        let total =
            usize::try_from(rec.aux).map_err(|_| Violation::LengthTooLarge { len: rec.aux })?;
        if rec.len >= total || rec.len == 0 {
            return Err(Violation::BadFirstFragment {
                len: rec.len,
                total,
            });
        }
        Ok(Reassembly {
            total,
            received: rec.len,
        })
    }

    /// Accounts for the next fragment; returns true when it completes the message.
    /// (A `CANCEL` record is the caller's to handle before this.)
    pub(crate) fn next(&mut self, rec: &Checked) -> Result<bool, Violation> {
        let last = match rec.kind {
            Kind::Middle => false,
            Kind::Last => true,
            k => {
                return Err(Violation::MisplacedRecord {
                    kind: k.name(),
                    inside_message: true,
                })
            }
        };
        if rec.aux != self.received as u64 {
            return Err(Violation::FragmentOutOfSequence {
                offset: rec.aux,
                expected: self.received,
            });
        }
        let received = self.received + rec.len;
        if received > self.total
            || (last && received != self.total)
            || (!last && received == self.total)
        {
            return Err(Violation::FragmentsDoNotAddUp {
                received,
                total: self.total,
            });
        }
        self.received = received;
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: Kind, len: u32, aux: u64) -> RawHeader {
        RawHeader {
            kind: kind.to_u32(),
            len,
            aux,
        }
    }

    #[test]
    fn sizes_are_aligned() {
        assert_eq!(record_size(0), 16);
        assert_eq!(record_size(1), 32);
        assert_eq!(record_size(16), 32);
        assert_eq!(record_size(17), 48);
    }

    #[test]
    fn accepts_records_that_fit() {
        let c = check(raw(Kind::Whole, 5, 0), 32, 4096).unwrap();
        assert_eq!((c.kind, c.len, c.size), (Kind::Whole, 5, 32));
        let p = check(raw(Kind::Padding, 999, 7), 64, 48).unwrap();
        assert_eq!((p.kind, p.size), (Kind::Padding, 48));
    }

    #[test]
    fn rejects_impossible_records() {
        assert!(check(
            RawHeader {
                kind: 0,
                len: 0,
                aux: 0
            },
            64,
            64
        )
        .is_err());
        assert!(
            check(raw(Kind::Whole, 17, 0), 32, 4096).is_err(),
            "past published"
        );
        assert!(
            check(raw(Kind::Whole, 40, 0), 4096, 48).is_err(),
            "past ring end"
        );
        assert!(check(raw(Kind::Whole, u32::MAX, 0), usize::MAX, usize::MAX).is_ok());
        assert!(
            check(raw(Kind::Padding, 0, 0), 32, 48).is_err(),
            "padding past published"
        );
    }

    #[test]
    fn reassembly_follows_the_fragments() {
        let first = check(raw(Kind::First, 16, 40), 64, 64).unwrap();
        let mut r = Reassembly::start(&first).unwrap();
        assert!(!r
            .next(&check(raw(Kind::Middle, 16, 16), 64, 64).unwrap())
            .unwrap());
        assert!(r
            .next(&check(raw(Kind::Last, 8, 32), 64, 64).unwrap())
            .unwrap());
    }

    #[test]
    fn reassembly_rejects_out_of_order_and_overlong_fragments() {
        let first = check(raw(Kind::First, 16, 40), 64, 64).unwrap();
        let mut r = Reassembly::start(&first).unwrap();
        assert!(r
            .clone()
            .next(&check(raw(Kind::Middle, 16, 0), 64, 64).unwrap())
            .is_err());
        assert!(r
            .clone()
            .next(&check(raw(Kind::Last, 16, 16), 64, 64).unwrap())
            .is_err());
        assert!(r
            .clone()
            .next(&check(raw(Kind::Middle, 24, 16), 64, 64).unwrap())
            .is_err());
        assert!(r
            .clone()
            .next(&check(raw(Kind::Whole, 8, 0), 64, 64).unwrap())
            .is_err());
        assert!(r
            .next(&check(raw(Kind::Middle, 8, 16), 64, 64).unwrap())
            .is_ok());
        let whole_first = check(raw(Kind::First, 16, 16), 64, 64).unwrap();
        assert!(Reassembly::start(&whole_first).is_err());
    }
}
