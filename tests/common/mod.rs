//! Helpers shared by the integration tests: forking a child that runs a closure and
//! leaves with `_exit`, waiting for it with a watchdog, and finding a pipe's region.
#![allow(dead_code)]

mod shared_word;

#[allow(unused_imports)] // not every test binary uses it
pub use shared_word::SharedWord;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// How long any child may take before the test calls it hung and fails.
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// A forked child process. Killed and reaped on drop if still running, so a failing
/// test leaves nothing behind.
pub struct Child {
    pub pid: libc::pid_t,
    reaped: bool,
}

/// Forks; the child runs `f` and exits with the code it returns (101 if it panics).
///
/// The test harness is multi-threaded, so the child does as little as possible: it runs
/// `f` (shmpipe calls, which take no locks another thread could hold) and leaves with
/// `_exit`, skipping destructors and the harness.
pub fn fork(f: impl FnOnce() -> i32) -> Child {
    // SAFETY: the child only runs `f` and `_exit`s; see above.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        // SAFETY: leaves the child without running the parent's destructors or harness.
        unsafe { libc::_exit(code) };
    }
    Child { pid, reaped: false }
}

/// How a child ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Child {
    /// Waits for the child to end (failing the test if it takes longer than `WATCHDOG`).
    pub fn wait(mut self) -> Exit {
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: plain waitpid on our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            assert!(r >= 0, "waitpid failed");
            if r == self.pid {
                self.reaped = true;
                return if libc::WIFEXITED(status) {
                    Exit::Code(libc::WEXITSTATUS(status))
                } else {
                    Exit::Signal(libc::WTERMSIG(status))
                };
            }
            // A watchdog, not synchronisation: the test's outcome never depends on it.
            assert!(start.elapsed() < WATCHDOG, "child {} hung", self.pid);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits and asserts that the child exited with code 0.
    pub fn join(self) {
        assert_eq!(self.wait(), Exit::Code(0));
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own unreaped child.
        assert_eq!(unsafe { libc::kill(self.pid, sig) }, 0);
    }

    /// Waits until the child is asleep in the kernel (state `S` in /proc), which for
    /// these children means blocked in shmpipe's poll. A handshake through /proc, used
    /// where the child cannot tell us itself because it is blocked.
    pub fn wait_until_sleeping(&self) {
        let start = Instant::now();
        while process_state(self.pid) != Some('S') {
            assert!(start.elapsed() < WATCHDOG, "child {} never slept", self.pid);
            std::thread::yield_now();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: our own child, not yet reaped.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// The state letter of a process from /proc/PID/stat.
pub fn process_state(pid: libc::pid_t) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces; the state follows it.
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The memfd of the region behind `conn`, found through the public hand-off API.
pub fn memfd_of(conn: &shmpipe::Connection) -> RawFd {
    passed(conn).1[0].0
}

/// The variable `pass_to_child` would set for `conn`, and the descriptors it names:
/// `(value, [(fd, dev, ino); 3])`, the memfd first, then the data and space doorbells.
pub fn passed(conn: &shmpipe::Connection) -> (String, Vec<(RawFd, u64, u64)>) {
    let mut cmd = std::process::Command::new("true");
    conn.pass_to_child(&mut cmd, "SHMPIPE_PROBE").unwrap();
    let value = cmd
        .get_envs()
        .find(|(k, _)| *k == "SHMPIPE_PROBE")
        .and_then(|(_, v)| v)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let fds = value
        .split(':')
        .skip(2)
        .map(|n| {
            let v: Vec<u64> = n.split('/').map(|x| x.parse().unwrap()).collect();
            (v[0] as RawFd, v[1], v[2])
        })
        .collect();
    (value, fds)
}

/// Whether `fd` is an open descriptor of this process.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on a number; changes nothing.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// The region's documented layout (DESIGN.md): offsets a hostile process would poke.
pub mod layout {
    pub const HEADER_CAPACITY: usize = 16;
    pub const RING0_HEAD: usize = 4096;
    pub const RING0_TAIL: usize = 4096 + 128;
    /// A ring's control block: five fields, each on a 128-byte line pair.
    const CONTROL: usize = 5 * 128;
    pub const RING1_HEAD: usize = 4096 + CONTROL;
    pub const RING1_TAIL: usize = 4096 + CONTROL + 128;
    pub const RING0_DATA: usize = 8192;
}

/// Maps the region behind `fd` read-write, as another process could.
pub struct RawRegion {
    ptr: *mut u8,
    len: usize,
}

impl RawRegion {
    pub fn map(fd: RawFd) -> RawRegion {
        // SAFETY: fstat and mmap on an open memfd; the mapping is released on drop.
        unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            assert_eq!(libc::fstat(fd, &mut st), 0);
            let len = st.st_size as usize;
            let ptr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            assert_ne!(ptr, libc::MAP_FAILED);
            RawRegion {
                ptr: ptr as *mut u8,
                len,
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn write_u64(&self, off: usize, v: u64) {
        assert!(off + 8 <= self.len);
        // SAFETY: in bounds; volatile because another process may be reading it.
        unsafe { (self.ptr.add(off) as *mut u64).write_volatile(v) }
    }

    pub fn read_u64(&self, off: usize) -> u64 {
        assert!(off + 8 <= self.len);
        // SAFETY: in bounds and 8-aligned for the offsets used.
        unsafe { (self.ptr.add(off) as *const u64).read_volatile() }
    }

    pub fn write_u32(&self, off: usize, v: u32) {
        assert!(off + 4 <= self.len);
        // SAFETY: in bounds; 4-aligned for the offsets used; volatile because another
        // process may be reading it.
        unsafe { (self.ptr.add(off) as *mut u32).write_volatile(v) }
    }

    pub fn read_u32(&self, off: usize) -> u32 {
        assert!(off + 4 <= self.len);
        // SAFETY: in bounds and 4-aligned for the offsets used.
        unsafe { (self.ptr.add(off) as *const u32).read_volatile() }
    }

    pub fn write_u8(&self, off: usize, v: u8) {
        assert!(off < self.len);
        // SAFETY: in bounds.
        unsafe { self.ptr.add(off).write_volatile(v) }
    }
}

impl Drop for RawRegion {
    fn drop(&mut self) {
        // SAFETY: unmapping what `map` mapped.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// A small deterministic PRNG (xorshift64*) for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Deterministic message `i` of length `len`: its bytes depend on both, so a lost,
/// repeated, reordered or torn message is detected.
pub fn message(i: u64, len: usize) -> Vec<u8> {
    let mut r = Rng(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..len).map(|_| r.next() as u8).collect()
}

/// Checksummed message streams: message `i` of a stream has a size and contents that
/// depend on `i`, so a lost, repeated, reordered, torn or corrupted message is noticed.
pub mod stream {
    /// Message sizes from 0 to 4x the ring, log-uniform so that small messages dominate
    /// (as in real traffic) while every size class, fragmented ones included, keeps coming.
    pub fn size_of(i: u64, seed: u64, capacity: usize) -> usize {
        let mut r = super::Rng((i ^ seed.rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let max = 4 * capacity as u64;
        match r.below(15) {
            0 => 0,
            bits => r.below((1u64 << bits).min(max) + 1) as usize,
        }
    }

    /// Fills `buf` with message `i`: every word depends on `i` and its position, so a lost,
    /// repeated, reordered, torn or corrupted message cannot pass for the expected one.
    pub fn fill(i: u64, len: usize, buf: &mut Vec<u8>) {
        buf.clear();
        let mut x = i.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ len as u64;
        while buf.len() + 8 <= len {
            buf.extend_from_slice(&x.to_le_bytes());
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15).rotate_left(7);
        }
        while buf.len() < len {
            buf.push(x as u8);
            x >>= 8;
        }
    }
}

/// Closes every descriptor above 2 (in a forked child that should hold nothing of the
/// pipes it inherited, only what it mapped).
pub fn close_all_descriptors_but_stdio() {
    // SAFETY: close_range(2) on numbers this child will not use again; nothing in the
    // child owns them any more (it leaves with `_exit`, running no destructors).
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    assert_eq!(r, 0, "close_range failed");
}

/// Descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Mappings of shmpipe regions in this process.
pub fn region_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:shmpipe"))
        .count()
}

/// Two one-way pipes between a parent and the child it forks: `down` (parent to child)
/// and `up` (child to parent). Each side takes its two ends and drops the other two, so
/// that EOF and broken pipe depend only on the other process.
pub struct Crossed {
    down: Option<(shmpipe::Connection, shmpipe::Connection)>,
    up: Option<(shmpipe::Connection, shmpipe::Connection)>,
}

impl Crossed {
    pub fn new(capacity: usize) -> Crossed {
        let build = || {
            shmpipe::Builder::new()
                .duplex(false)
                .capacity(capacity)
                .build()
                .unwrap()
        };
        Crossed {
            down: Some(build()),
            up: Some(build()),
        }
    }

    /// The parent's ends: (writer of `down`, reader of `up`).
    pub fn parent(&mut self) -> (shmpipe::Connection, shmpipe::Connection) {
        let ((_, down_w), (up_r, _)) = (self.down.take().unwrap(), self.up.take().unwrap());
        (down_w, up_r)
    }

    /// The child's ends: (reader of `down`, writer of `up`).
    pub fn child(&mut self) -> (shmpipe::Connection, shmpipe::Connection) {
        let ((down_r, _), (_, up_w)) = (self.down.take().unwrap(), self.up.take().unwrap());
        (down_r, up_w)
    }
}

/// Whether `fd` polls readable now (a zero-timeout `poll(2)`).
pub fn readable_now(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    assert!(n >= 0, "poll failed");
    p.revents & libc::POLLIN != 0
}
