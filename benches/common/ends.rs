//! What the `transfer` and `limits` benches share: a transport's end as one trait, the
//! shmpipe `send_bytes`/`recv_bytes_into` end, and Python's framing over a socketpair.

use std::hint::black_box;
use std::io::{BufReader, IoSlice, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Reads one byte per cache line, so that every transport's receiver really reads the
/// message (an in-place view would otherwise cost nothing).
pub fn touch(bytes: &[u8]) {
    black_box(bytes.iter().step_by(64).fold(0u8, |a, &b| a ^ b));
}

/// One side of a transport.
pub trait End {
    fn send(&mut self, msg: &[u8]);
    /// Receives one message, reads it, and returns its length.
    fn recv(&mut self, scratch: &mut [u8]) -> usize;
}

impl<E: End + ?Sized> End for Box<E> {
    fn send(&mut self, msg: &[u8]) {
        (**self).send(msg)
    }
    fn recv(&mut self, scratch: &mut [u8]) -> usize {
        (**self).recv(scratch)
    }
}

/// Two connected ends.
pub type Pair = (Box<dyn End>, Box<dyn End>);

/// shmpipe with `send_bytes` and `recv_bytes_into`.
pub struct ShmInto(pub shmpipe::Connection);

impl End for ShmInto {
    fn send(&mut self, msg: &[u8]) {
        self.0.send_bytes(msg).unwrap();
    }
    fn recv(&mut self, scratch: &mut [u8]) -> usize {
        let n = self.0.recv_bytes_into(scratch).unwrap();
        touch(&scratch[..n]);
        n
    }
}

/// shmpipe as a busy-polling program uses it: `poll(Some(ZERO))` until a message is
/// there, then `recv_bytes_into`.
#[allow(dead_code)] // the `limits` bench only
pub struct ShmPolling(pub shmpipe::Connection);

impl End for ShmPolling {
    fn send(&mut self, msg: &[u8]) {
        self.0.send_bytes(msg).unwrap();
    }
    fn recv(&mut self, scratch: &mut [u8]) -> usize {
        while !self.0.poll(Some(Duration::ZERO)).unwrap() {
            std::hint::spin_loop();
        }
        let n = self.0.recv_bytes_into(scratch).unwrap();
        touch(&scratch[..n]);
        n
    }
}

/// Length-prefixed framing over a byte stream, as Python's `Connection` does it: one
/// `writev` per message, a buffered reader.
pub struct Framed<R: Read, W: Write> {
    pub reader: BufReader<R>,
    pub writer: W,
}

impl<R: Read, W: Write> End for Framed<R, W> {
    fn send(&mut self, msg: &[u8]) {
        let header = (msg.len() as u32).to_be_bytes();
        let mut bufs = [IoSlice::new(&header), IoSlice::new(msg)];
        let mut bufs = &mut bufs[..];
        while !bufs.is_empty() {
            let n = self.writer.write_vectored(bufs).unwrap();
            IoSlice::advance_slices(&mut bufs, n);
        }
    }
    fn recv(&mut self, scratch: &mut [u8]) -> usize {
        let mut header = [0u8; 4];
        self.reader.read_exact(&mut header).unwrap();
        let n = u32::from_be_bytes(header) as usize;
        self.reader.read_exact(&mut scratch[..n]).unwrap();
        touch(&scratch[..n]);
        n
    }
}

/// A Unix socketpair with Python's framing.
pub fn socketpair() -> Pair {
    let (a, b) = UnixStream::pair().unwrap();
    let end = |s: UnixStream| -> Box<dyn End> {
        Box::new(Framed {
            reader: BufReader::with_capacity(64 << 10, s.try_clone().unwrap()),
            writer: s,
        })
    };
    (end(a), end(b))
}

/// The peer's side of `count` round trips: each message received is sent back.
pub fn echo<E: End + ?Sized>(there: &mut E, buf: &mut [u8], count: u64) {
    for _ in 0..count {
        let n = there.recv(buf);
        there.send(&buf[..n]);
    }
}

/// The measuring side of `iters` round trips with a peer running [`echo`]: the time
/// they took.
pub fn round_trips<E: End + ?Sized>(
    here: &mut E,
    payload: &[u8],
    scratch: &mut [u8],
    iters: u64,
) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        here.send(payload);
        here.recv(scratch);
    }
    start.elapsed()
}
