//! CPython's challenge/response authentication (`deliver_challenge` and
//! `answer_challenge` in `Lib/multiprocessing/connection.py`), both forms:
//!
//! * 3.11 and older: the challenge is `#CHALLENGE#` and 20 random bytes; the answer is
//!   the raw HMAC-MD5 of those bytes under the shared key;
//! * 3.12 and newer: the challenge is `#CHALLENGE#{sha256}` and 40 random bytes; the
//!   answer is `{sha256}` and the HMAC-SHA256 of everything after `#CHALLENGE#`.
//!
//! The verdict is `#WELCOME#` or `#FAILURE#`. We challenge in the new form and accept
//! either answer, as 3.12 does (a 3.11 peer answers a new-form challenge with raw MD5),
//! and answer each challenge in its own form. Every handshake message is at most 256
//! bytes, as Python reads them.
//!
//! The random bytes of a shmpipe challenge begin with [`MARKER`] (the other 32 stay
//! random): Python ignores them, and a shmpipe peer learns from them that the other
//! side is shmpipe too, so that two shmpipe processes on a Unix address can go on to
//! shared memory while a Python peer keeps Python's wire protocol.

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::socket::stream::SocketEnd;
use hmac::{Hmac, KeyInit, Mac};

pub(crate) const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// The longest handshake message Python reads (`recv_bytes(256)`).
pub(crate) const MAX_MESSAGE: usize = 256;
/// What a shmpipe challenge's random bytes start with.
pub(crate) const MARKER: &[u8; 8] = b"shmpipe\x01";
/// Random bytes in a new-form challenge.
const NONCE: usize = 40;

fn auth(why: impl Into<String>) -> Error {
    Error::Authentication(why.into())
}

/// Receives one handshake message (at most [`MAX_MESSAGE`] bytes).
pub(crate) fn recv_small(chan: &SocketEnd, deadline: Deadline) -> Result<Vec<u8>> {
    let len = chan.next_len(deadline)?;
    if len > MAX_MESSAGE {
        return Err(auth(format!(
            "handshake message of {len} bytes (at most {MAX_MESSAGE} are allowed)"
        )));
    }
    let mut out = Vec::new();
    chan.read_body(&mut out, deadline)?;
    Ok(out)
}

/// The HMAC of `message` under `key` with the digest Python calls `name`.
fn mac(name: &str, key: &[u8], message: &[u8]) -> Result<Vec<u8>> {
    fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        m.update(message);
        m.finalize().into_bytes().to_vec()
    }
    Ok(match name {
        "md5" => run::<Hmac<md5::Md5>>(key, message),
        "sha256" => run::<Hmac<sha2::Sha256>>(key, message),
        "sha384" => run::<Hmac<sha2::Sha384>>(key, message),
        other => return Err(auth(format!("unsupported digest {other:?}"))),
    })
}

/// Python's `_get_digest_name_and_payload`: a 16- or 20-byte message is the legacy form
/// (no name: MD5); otherwise `{name}` and the payload.
fn digest_name_and_payload(message: &[u8]) -> Result<(&str, &[u8])> {
    if message.len() == 16 || message.len() == 20 {
        return Ok(("", message));
    }
    if let Some(rest) = message.strip_prefix(b"{") {
        if let Some(close) = rest.iter().take(21).position(|&b| b == b'}') {
            let name = std::str::from_utf8(&rest[..close]).unwrap_or("");
            if ["md5", "sha256", "sha384", "sha3_256", "sha3_384"].contains(&name) {
                return Ok((name, &rest[close + 1..]));
            }
        }
    }
    Err(auth(
        "unsupported message length, missing digest prefix, or unsupported digest",
    ))
}

/// Constant-time comparison, as `hmac.compare_digest`.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Challenges the peer to prove it holds `key` (Python's `deliver_challenge`).
///
/// `marked`: start the random bytes with [`MARKER`] (a shmpipe peer then knows us).
pub(crate) fn deliver(
    chan: &SocketEnd,
    key: &[u8],
    marked: bool,
    deadline: Deadline,
) -> Result<()> {
    let mut nonce = [0u8; NONCE];
    fill_random(&mut nonce)?;
    if marked {
        nonce[..MARKER.len()].copy_from_slice(MARKER);
    }
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(&nonce);
    let mut challenge = CHALLENGE.to_vec();
    challenge.extend_from_slice(&message);
    chan.send(&challenge, deadline)?;
    let response = recv_small(chan, deadline)?;
    let ok = match digest_name_and_payload(&response) {
        Ok((name, given)) => {
            let name = if name.is_empty() { "md5" } else { name };
            mac(name, key, &message).is_ok_and(|expected| same(&expected, given))
        }
        Err(_) => false,
    };
    if !ok {
        let _ = chan.send(FAILURE, deadline);
        if response == crate::net::upgrade::HELLO {
            return Err(auth(
                "the client has no authkey (it asked for shared memory instead of answering \
                 the challenge): give it this listener's authkey",
            ));
        }
        return Err(auth("digest received was wrong"));
    }
    chan.send(WELCOME, deadline)
}

/// Answers the peer's challenge with `key`; returns whether the challenge came from
/// shmpipe (its random bytes start with [`MARKER`]).
pub(crate) fn answer(chan: &SocketEnd, key: &[u8], deadline: Deadline) -> Result<bool> {
    let challenge = recv_small(chan, deadline).map_err(|e| match e {
        // A listener without an authkey waits for us to speak, then gives up.
        Error::Eof | Error::Timeout => auth(
            "the peer sent no challenge and hung up: it has no authkey (give both sides \
             the same authkey, or neither)",
        ),
        e => e,
    })?;
    let message = challenge
        .strip_prefix(CHALLENGE)
        .ok_or_else(|| auth("protocol error: expected a challenge"))?;
    if message.len() < 20 {
        return Err(auth(format!(
            "challenge too short: {} bytes",
            message.len()
        )));
    }
    let (name, payload) = digest_name_and_payload(message)?;
    let response = if name.is_empty() {
        mac("md5", key, message)?
    } else {
        let mut r = format!("{{{name}}}").into_bytes();
        r.extend_from_slice(&mac(name, key, message)?);
        r
    };
    chan.send(&response, deadline)?;
    let verdict = recv_small(chan, deadline)?;
    if verdict != WELCOME {
        return Err(auth("digest sent was rejected"));
    }
    Ok(payload.starts_with(MARKER))
}

fn fill_random(buf: &mut [u8]) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match rustix::rand::getrandom(&mut buf[got..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_match_cpython() {
        // Computed with CPython's own code (`hmac.new(b'secret', b'{sha256}' + bytes(range(40)),
        // 'sha256').digest()`, as `multiprocessing.connection` does): key b'secret', random
        // bytes 00..27, the modern form.
        let mut message = b"{sha256}".to_vec();
        message.extend(0u8..40);
        let expected = [
            0xfc, 0x57, 0xfb, 0xe6, 0x50, 0xd6, 0x12, 0x4b, 0x98, 0x21, 0x5e, 0x7b, 0x5d, 0x19,
            0x7d, 0x58, 0x07, 0xad, 0x69, 0x98, 0x2d, 0x27, 0x5a, 0x97, 0x35, 0xea, 0x2d, 0x56,
            0xf1, 0xfa, 0x69, 0x89,
        ];
        assert_eq!(mac("sha256", b"secret", &message).unwrap(), expected);
        assert_eq!(
            digest_name_and_payload(b"{sha256}abcdefghijklmnopqrstuvwxyz").unwrap(),
            ("sha256", &b"abcdefghijklmnopqrstuvwxyz"[..])
        );
        assert_eq!(digest_name_and_payload(&[7; 16]).unwrap().0, "");
        assert!(digest_name_and_payload(b"{whirlpool}xxxxxxxxxxxxxxxxxxxx").is_err());
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }
}
