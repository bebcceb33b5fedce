//! CPython's message framing (`Lib/multiprocessing/connection.py`, `Connection._send_bytes`
//! and `_recv_bytes`): a big-endian signed 32-bit length, then the payload. A message of
//! 2 GiB or more has the length -1 and then the real length as a big-endian unsigned
//! 64-bit number. An empty message is a header of zero and nothing else.

use crate::error::{Error, Result};
use crate::violation::Violation;

/// The longest header: `ff ff ff ff` and an 8-byte length.
pub(crate) const MAX_HEADER: usize = 12;

/// The longest length that fits the short form (`0x7fff_ffff`).
const SHORT_MAX: usize = i32::MAX as usize;

/// Writes the header for a `len`-byte message into `out`; returns its length (4 or 12).
///
/// ```text
/// 5 bytes   -> 00 00 00 05
/// 3 GiB     -> ff ff ff ff 00 00 00 00 c0 00 00 00
/// ```
pub(crate) fn encode(len: usize, out: &mut [u8; MAX_HEADER]) -> usize {
    if len <= SHORT_MAX {
        out[..4].copy_from_slice(&(len as u32).to_be_bytes());
        4
    } else {
        out[..4].copy_from_slice(&(-1i32).to_be_bytes());
        out[4..].copy_from_slice(&(len as u64).to_be_bytes());
        MAX_HEADER
    }
}

/// What the first `have.len()` bytes of a header say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// The header is this long; read up to it.
    Incomplete(usize),
    /// The whole header: the message is `len` bytes long.
    Complete { len: u64 },
}

/// Reads a header, however much of it has arrived.
///
/// # Errors
/// [`Error::Corrupt`] for a negative length other than -1 (CPython would take it for an
/// empty message; we refuse to guess).
pub(crate) fn decode(have: &[u8]) -> Result<Header> {
    if have.len() < 4 {
        return Ok(Header::Incomplete(4));
    }
    let short = i32::from_be_bytes(have[..4].try_into().expect("4 bytes"));
    match short {
        0.. => Ok(Header::Complete { len: short as u64 }),
        -1 if have.len() < MAX_HEADER => Ok(Header::Incomplete(MAX_HEADER)),
        -1 => Ok(Header::Complete {
            len: u64::from_be_bytes(have[4..MAX_HEADER].try_into().expect("8 bytes")),
        }),
        _ => Err(Error::Corrupt(Violation::NegativeLength { len: short })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_cpythons() {
        let mut out = [0; MAX_HEADER];
        assert_eq!(encode(0, &mut out), 4);
        assert_eq!(out[..4], [0, 0, 0, 0]);
        assert_eq!(encode(0x7fff_ffff, &mut out), 4);
        assert_eq!(out[..4], [0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(encode(3 << 30, &mut out), 12);
        assert_eq!(out, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0xc0, 0, 0, 0]);
        assert_eq!(decode(&out).unwrap(), Header::Complete { len: 3 << 30 });
        assert_eq!(decode(&out[..5]).unwrap(), Header::Incomplete(12));
        assert_eq!(decode(&out[..2]).unwrap(), Header::Incomplete(4));
        assert_eq!(
            decode(&[0, 0, 1, 0]).unwrap(),
            Header::Complete { len: 256 }
        );
        assert!(matches!(
            decode(&[0xff, 0xff, 0xff, 0xfe]),
            Err(Error::Corrupt(_))
        ));
        // The long form for a short length is CPython's too (it accepts it).
        let mut long = [0xff; 12];
        long[4..].copy_from_slice(&5u64.to_be_bytes());
        assert_eq!(decode(&long).unwrap(), Header::Complete { len: 5 });
    }
}
