//! The machine's limit for a message ring: the least a single-producer single-consumer
//! byte ring between two processes can do per message, to measure shmpipe against.
//!
//! A byte ring in a `MAP_SHARED` mapping made before `fork`; each record is an 8-byte
//! length, then the payload, padded to 8 bytes (a length of `u64::MAX` means "go back to
//! the start"). Each side keeps a cached copy of the other's index and reloads it only
//! when that says full or empty, publishes each message with one release store, and
//! the reader copies the payload out. It spins and never sleeps, trusts its peer, and
//! knows nothing of EOF: everything shmpipe adds is left out.

use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::Release};

/// The ring's size: shmpipe's default (4 MiB), or `SHMPIPE_BENCH_RING` bytes (a power
/// of two), for both rings of the `limits` bench.
pub fn ring_size() -> usize {
    std::env::var("SHMPIPE_BENCH_RING")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4 << 20)
}

const WRAP: u64 = u64::MAX;

/// How far a patient reader stays behind its writer: 32 cache lines.
const DISTANCE: u64 = 2048;

/// One ring in shared memory: `head` and `tail` on lines of their own, then the data.
pub struct BareRing {
    base: *mut u8,
    /// Data bytes (a power of two).
    cap: usize,
    /// The producer's (or consumer's) own index, and its cached copy of the other one.
    mine: u64,
    cached: u64,
    /// The consumer publishes its index once it has read this many bytes since it last
    /// did, or when it finds the ring empty (0: after every message).
    batch: u64,
    /// What the consumer last published.
    published: u64,
    /// Both sides wait in chunks: see [`BareRing::patient`].
    patient: bool,
    /// The producer publishes its index once it has written this many bytes since it
    /// last did (and on [`flush`](BareRing::flush)); 0: after every message.
    burst: u64,
    /// What the producer last published.
    head_published: u64,
}

impl BareRing {
    /// A ring; both processes use the value they inherit through `fork`.
    pub fn new() -> BareRing {
        let cap = ring_size();
        // SAFETY: a fresh anonymous shared mapping, zeroed; never unmapped (a benchmark
        // makes a handful).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                256 + cap,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        BareRing {
            base: base as *mut u8,
            cap,
            mine: 0,
            cached: 0,
            batch: 0,
            published: 0,
            patient: false,
            burst: 0,
            head_published: 0,
        }
    }

    /// The same ring whose consumer publishes its index once per `cap / 16` bytes read
    /// (or when it runs dry) instead of after every message: a producer that waits for
    /// room then pulls the consumer's line once per batch, not once per message. The
    /// faster of the two when the ring runs full (a sustained stream, a slow reader).
    pub fn batched(mut self) -> BareRing {
        self.batch = self.cap as u64 / 16;
        self
    }

    /// The batched ring whose sides also keep apart: a producer that finds the ring
    /// full waits until a sixteenth of it is free, a consumer that finds it empty pauses
    /// for about a microsecond before it looks again, and one that finds less than
    /// [`DISTANCE`] bytes ahead lets the producer get that far ahead before it reads on
    /// (a few looks at most), as shmpipe's reader does. The two sides then work on
    /// different lines instead of chasing each other through the same ones; which of
    /// the two rings is faster depends on what a transfer of a line between the cores
    /// costs at the moment, so the benches run both.
    #[allow(dead_code)] // the `sustained` bench only
    pub fn patient(mut self) -> BareRing {
        self.patient = true;
        self.batched()
    }

    /// The patient ring whose producer also publishes in bursts, once per 4 KiB written
    /// (and when it waits for room, or flushes): the consumer then never reads a line
    /// the producer is still writing. No pipe can do this without being told where a
    /// burst ends (shmpipe's `send_bytes_many`); it bounds what batching can gain.
    #[allow(dead_code)] // the `sustained` bench only
    pub fn bursts(mut self) -> BareRing {
        self.burst = 4096;
        self.patient()
    }

    /// Publishes what the producer wrote and has not published yet.
    #[allow(dead_code)] // the `sustained` bench only
    pub fn flush(&mut self) {
        if self.head_published != self.mine {
            self.head_published = self.mine;
            self.index(0).store(self.mine, Release);
        }
    }

    /// Another handle on the same ring, with fresh indices: the sending side and the
    /// receiving side each take one (before `fork`).
    pub fn clone_handle(&self) -> BareRing {
        BareRing {
            base: self.base,
            cap: self.cap,
            mine: 0,
            cached: 0,
            batch: self.batch,
            published: 0,
            patient: self.patient,
            burst: self.burst,
            head_published: 0,
        }
    }

    fn index(&self, which: usize) -> &AtomicU64 {
        // SAFETY: offsets 0 and 128 of the page-aligned mapping.
        unsafe { AtomicU64::from_ptr(self.base.add(which * 128) as *mut u64) }
    }

    fn data(&self, pos: u64) -> *mut u8 {
        // SAFETY: callers pass positions inside the ring.
        unsafe { self.base.add(256 + (pos as usize & (self.cap - 1))) }
    }

    /// What fraction of the ring the reader last saw published and not yet read: near 0
    /// while the reader keeps up (the ring's fast mode), near 1 once the ring runs full.
    #[allow(dead_code)] // the `sustained` bench only
    pub fn backlog(&self) -> f64 {
        (self.cached - self.mine) as f64 / self.cap as f64
    }

    /// Sends one message (the producer's side).
    pub fn send(&mut self, msg: &[u8]) {
        let need = 8 + msg.len().next_multiple_of(8) as u64;
        let to_end = self.cap as u64 - (self.mine & (self.cap as u64 - 1));
        let pad = if need > to_end { to_end } else { 0 };
        if self.cap as u64 - (self.mine - self.cached) < pad + need {
            self.flush();
            let want = if self.patient {
                pad + need + self.cap as u64 / 16
            } else {
                pad + need
            };
            loop {
                self.cached = self.index(1).load(Acquire);
                if self.cap as u64 - (self.mine - self.cached) >= want {
                    break;
                }
                self.pause();
            }
        }
        // SAFETY: the space from `mine` on is free (checked above) and inside the ring.
        unsafe {
            if pad != 0 {
                (self.data(self.mine) as *mut u64).write(WRAP);
                self.mine += pad;
            }
            let p = self.data(self.mine);
            (p as *mut u64).write(msg.len() as u64);
            std::ptr::copy_nonoverlapping(msg.as_ptr(), p.add(8), msg.len());
        }
        self.mine += need;
        if self.mine - self.head_published >= self.burst {
            self.flush();
        }
    }

    /// A patient reader that finds less than [`DISTANCE`] bytes ahead of it lets the
    /// writer get that far ahead (a few looks at most) before it reads on, so that it
    /// does not read the lines the writer is writing.
    fn keep_distance(&mut self) {
        for _ in 0..4 {
            self.cached = self.index(0).load(Acquire);
            if self.cached - self.mine >= DISTANCE {
                return;
            }
            for _ in 0..16 {
                std::hint::spin_loop();
            }
        }
    }

    /// Waits between two looks at the other side's index.
    fn pause(&self) {
        for _ in 0..if self.patient { 32 } else { 1 } {
            std::hint::spin_loop();
        }
    }

    /// Receives one message into `out` and returns its length (the consumer's side).
    pub fn recv(&mut self, out: &mut [u8]) -> usize {
        loop {
            if self.patient && self.cached - self.mine < DISTANCE {
                self.keep_distance();
            }
            while self.mine == self.cached {
                if self.published != self.mine {
                    // Dry: give back everything read before waiting.
                    self.published = self.mine;
                    self.index(1).store(self.mine, Release);
                }
                self.cached = self.index(0).load(Acquire);
                if self.mine == self.cached {
                    self.pause();
                }
            }
            // SAFETY: the record at `mine` is published (`mine < cached`).
            let len = unsafe { (self.data(self.mine) as *const u64).read() };
            if len == WRAP {
                self.mine += self.cap as u64 - (self.mine & (self.cap as u64 - 1));
                continue;
            }
            let len = len as usize;
            assert!(len <= out.len());
            // SAFETY: as above; `out` is ours.
            unsafe {
                std::ptr::copy_nonoverlapping(self.data(self.mine + 8), out.as_mut_ptr(), len)
            };
            self.mine += 8 + len.next_multiple_of(8) as u64;
            if self.mine - self.published >= self.batch {
                self.published = self.mine;
                self.index(1).store(self.mine, Release);
            }
            return len;
        }
    }
}
