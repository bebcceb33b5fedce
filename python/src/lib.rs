//! `shmpipe._shmpipe`: the native half of the Python package. It wraps a
//! [`shmpipe::Connection`] for Python; the Python half (`pysrc/shmpipe/__init__.py`)
//! gives it the exact API and exceptions of `multiprocessing.connection.Connection`.
//!
//! Every call that can block releases the GIL, and waits in the library are made
//! interruptible: a signal (Ctrl-C) ends the wait having consumed or sent nothing,
//! Python's handlers run, and the call starts again unless one raised (PEP 475).

mod buffers;
mod net;
mod queue;

use buffers::{bytes_of, readonly, writable_message, Buffer};

use pyo3::exceptions::{PyBrokenPipeError, PyEOFError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;
use shmpipe::{Connection, Error};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The Python exception for a library error, as `multiprocessing.connection` raises it.
pub(crate) fn to_py(e: Error) -> PyErr {
    match e {
        Error::Eof => PyEOFError::new_err(()),
        Error::BrokenPipe => PyBrokenPipeError::new_err((libc_epipe(), "Broken pipe")),
        Error::Closed => PyOSError::new_err("handle is closed"),
        Error::NotReadable => PyOSError::new_err("connection is write-only"),
        Error::NotWritable => PyOSError::new_err("connection is read-only"),
        Error::MessageTooLong { len, max } => PyOSError::new_err(format!(
            "bad message length: {len} bytes, more than maxlength {max} (the message stays in the pipe)"
        )),
        Error::Invalid(why) => PyValueError::new_err(why),
        Error::Authentication(why) => authentication_error(why),
        Error::Io(e) => e.into(),
        other => PyOSError::new_err(other.to_string()),
    }
}

/// `multiprocessing.AuthenticationError(why)`, the class CPython raises.
fn authentication_error(why: String) -> PyErr {
    Python::attach(|py| {
        let class = py
            .import("multiprocessing")
            .and_then(|m| m.getattr("AuthenticationError"));
        match class.and_then(|c| c.call1((why.clone(),))) {
            Ok(e) => PyErr::from_value(e),
            Err(_) => PyOSError::new_err(why),
        }
    })
}

/// How long a receive waits before it looks for a Python signal that did not interrupt
/// its wait: as often as the library's own backstop wakes a sleeper, so an idle receive
/// wakes no more than a Rust one. The kernel may run a process's signal handler on any
/// thread, and a signal may land between two of the wait's sleeps; either way only this
/// look sees it (the `Ctrl-C` of a program blocked in `recv`).
pub(crate) const SIGNAL_CHECK: Duration = Duration::from_millis(100);

/// Messages up to this long are sent and received without letting go of the GIL when
/// that need not wait: the copy costs less than releasing and taking back the GIL.
const FAST_PATH_MAX: usize = 64 << 10;

fn libc_epipe() -> i32 {
    32
}

/// Runs `f` without the GIL; when a signal interrupted its wait, runs Python's signal
/// handlers (with the GIL) and, unless one raised, runs `f` again.
fn blocking<T: Send>(py: Python<'_>, f: impl Fn() -> Result<T, Error> + Sync) -> PyResult<T> {
    loop {
        match py.detach(&f) {
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                py.check_signals()?;
            }
            other => return other.map_err(to_py),
        }
    }
}

/// One end of a pipe.
///
/// The connection sits behind a mutex that is only ever waited for without the GIL
/// (inside `blocking`; with the GIL held it is only tried), so that a thread waiting for
/// it (another thread's send may hold it while the ring is full) never holds the GIL
/// every other thread needs.
#[pyclass(module = "shmpipe._shmpipe", frozen)]
pub(crate) struct RawConnection {
    conn: Mutex<Option<Connection>>,
    /// Whether the end can receive and send: fixed when it is made, so asking takes no
    /// lock.
    directions: (bool, bool),
    /// The descriptor `fileno` returned, once it has (it stays the same for the
    /// connection's life): later calls take no lock. -1 before the first.
    fileno: AtomicI32,
    /// Cleared by `close`, before it waits for the lock: `fileno` of a closed end fails
    /// without waiting.
    open: AtomicBool,
    /// A duplicate of the region's memfd for this end alone, made when the end is first
    /// pickled: both ends of a pipe made in this process share one memfd descriptor, and
    /// `multiprocessing` refuses the same number twice in one child's `pass_fds`.
    memfd: Mutex<Option<OwnedFd>>,
    /// The size of each ring (fixed for the connection's life).
    capacity: Option<usize>,
    /// How many threads wait for the connection's lock (see [`RawConnection::lock`]).
    wanted: AtomicUsize,
    /// An eventfd a waiting receive watches (made by the first wait): a thread that
    /// wants the connection makes it readable, and the receive lets go of the lock.
    kick: OnceLock<OwnedFd>,
}

impl RawConnection {
    pub(crate) fn new(conn: Connection) -> RawConnection {
        RawConnection {
            directions: (conn.readable(), conn.writable()),
            capacity: shmpipe::__interop::ring_capacity(&conn),
            fileno: AtomicI32::new(-1),
            open: AtomicBool::new(true),
            conn: Mutex::new(Some(conn)),
            memfd: Mutex::new(None),
            wanted: AtomicUsize::new(0),
            kick: OnceLock::new(),
        }
    }

    /// The connection, locked. A receive waiting for a message holds the lock; a thread
    /// that finds it taken says so (`wanted`) and rings `kick`, which ends that wait, and
    /// the receive lets it have the connection before it waits again (see
    /// [`wait_readable`](RawConnection::wait_readable)).
    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        if let Some(g) = self.try_lock() {
            return g;
        }
        // SeqCst: the waiter reads `wanted` after draining `kick`; this count is visible
        // before the ring below (see `wait_readable`).
        self.wanted.fetch_add(1, SeqCst);
        if let Some(kick) = self.kick.get() {
            let _ = rustix::io::write(kick, &1u64.to_ne_bytes());
        }
        let g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        self.wanted.fetch_sub(1, SeqCst);
        g
    }

    /// The connection, locked, if no other thread holds it (a panic while it was held
    /// leaves it as consistent as any error: the lock's poisoning is ignored).
    fn try_lock(&self) -> Option<MutexGuard<'_, Option<Connection>>> {
        match self.conn.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// The eventfd of `kick`, made on first use.
    fn kick(&self) -> Result<&OwnedFd, Error> {
        if let Some(k) = self.kick.get() {
            return Ok(k);
        }
        let fd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )
        .map_err(std::io::Error::from)?;
        Ok(self.kick.get_or_init(|| fd))
    }

    /// Runs `f` on the open connection in non-blocking mode, with the GIL held: `None`
    /// if it would have to wait (for a message, for room, or for the mutex, which another
    /// thread holds: taking it here could deadlock against one that waits for the GIL).
    fn try_now<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, Error>,
    ) -> Option<Result<T, Error>> {
        let guard = self.try_lock()?;
        let Some(c) = guard.as_ref() else {
            return Some(Err(Error::Closed));
        };
        if c.set_nonblocking(true).is_err() {
            return None;
        }
        let r = f(c);
        let _ = c.set_nonblocking(false);
        match r {
            Err(Error::WouldBlock) => None,
            other => Some(other),
        }
    }

    /// `recv_bytes`, into a new `bytes` object, or a `bytearray` for a message of at
    /// least `FAST_PATH_MAX` bytes when `writable_if_long`.
    ///
    /// Memory is allocated for a message only once its bytes are there: exactly its
    /// length for a message that is whole in the ring, and for one that is still
    /// arriving (in fragments, or on a socket) a buffer that grows with the bytes, copied
    /// into the Python object at the end. A length the peer merely announced is never
    /// allocated, nor prefaulted.
    fn recv_into_new<'py>(
        &self,
        py: Python<'py>,
        maxlength: Option<usize>,
        writable_if_long: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        // A short message already whole in the ring: received without letting go of the
        // GIL (which costs more than copying a small message), in one pass, straight
        // into a `bytes` object allocated once its length is known.
        if let Some(done) = self.recv_whole_now(py, maxlength.unwrap_or(FAST_PATH_MAX)) {
            if let Some(obj) = done? {
                return Ok(obj);
            }
        }
        self.wait_readable(py, None)?;
        let (len, whole) = self.with(py, |c| {
            let (len, whole) = shmpipe::__interop::next_len(c)?;
            let max = maxlength.unwrap_or(c.max_message_size().unwrap_or(usize::MAX));
            if len > max {
                return Err(Error::MessageTooLong { len, max });
            }
            Ok((len, whole))
        })?;
        let writable = writable_if_long && len > FAST_PATH_MAX;
        if !whole {
            // Still arriving: into a buffer that grows as the bytes do.
            let max = maxlength.unwrap_or(usize::MAX);
            let bytes = self.with(py, move |c| {
                let max = max.min(c.max_message_size().unwrap_or(usize::MAX));
                c.recv_bytes_max(max)
            })?;
            return if writable_if_long && bytes.len() > FAST_PATH_MAX {
                // For unpickling: the buffer itself, writable, without a copy.
                writable_message(py, bytes)
            } else {
                Ok(PyBytes::new(py, &bytes).into_any())
            };
        }
        let mut other: Option<Vec<u8>> = None;
        let mut got = 0;
        let bytes = unfilled(py, len, writable, |buf| {
            let raw = Raw(buf, len);
            let r = self.with(py, move |c| {
                let raw = raw;
                // SAFETY: `buf`, the new object's storage, is ours alone until
                // `unfilled` returns; nothing else can see the object yet.
                let dst = unsafe { std::slice::from_raw_parts_mut(raw.0, raw.1) };
                match c.recv_bytes_into(dst) {
                    Ok(n) => Ok((n, None)),
                    // Another message than the one measured (the writer cancelled that
                    // one part-way): here it is.
                    Err(Error::BufferTooShort(whole)) => Ok((0, Some(whole))),
                    Err(e) => Err(e),
                }
            })?;
            (got, other) = r;
            Ok(())
        })?;
        match other {
            Some(whole) => Ok(PyBytes::new(py, &whole).into_any()),
            None if got != len => {
                // SAFETY: the first `got` bytes were written by the receive.
                let head = unsafe { std::slice::from_raw_parts(data_of(&bytes, writable), got) };
                Ok(PyBytes::new(py, head).into_any())
            }
            None => Ok(bytes),
        }
    }

    /// The receive of a short message that is whole in the ring now, with the GIL held
    /// and without waiting for anything, the connection's lock included: `None` if
    /// another thread holds the connection; `Some(Ok(None))` if there is no such message
    /// (nothing consumed); else the `bytes` object.
    fn recv_whole_now<'py>(
        &self,
        py: Python<'py>,
        max: usize,
    ) -> Option<PyResult<Option<Bound<'py, PyAny>>>> {
        let guard = self.try_lock()?;
        let c = guard.as_ref()?;
        let mut obj = None;
        let mut failed = None;
        let max = max
            .min(FAST_PATH_MAX)
            .min(c.max_message_size().unwrap_or(usize::MAX));
        let got = shmpipe::__interop::recv_whole_now(c, max, &mut |len| {
            match new_uninit(py, len, false) {
                Ok((o, data)) => {
                    obj = Some(o);
                    // SAFETY: the new object's storage, `len` bytes, ours alone until the
                    // object is returned.
                    Some(unsafe { std::slice::from_raw_parts_mut(data, len) })
                }
                Err(e) => {
                    failed = Some(e);
                    None
                }
            }
        });
        Some(match (got, obj, failed) {
            (Ok(Some(_)), Some(obj), _) => Ok(Some(obj)),
            (Err(e), ..) => Err(to_py(e)),
            (Ok(_), _, Some(e)) => Err(e),
            (Ok(_), ..) => Ok(None),
        })
    }

    /// Waits, with the GIL released, until a message (or EOF) is there or `deadline`
    /// passes (`None`: no limit); returns which. The wait holds the connection's lock,
    /// and sleeps as a Rust receive does (woken by the peer, or by the library's backstop
    /// a few times a second); another thread that needs the connection meanwhile (Python
    /// programs receive in one thread and send in another on one connection) ends it
    /// through `kick` (see [`lock`](RawConnection::lock)), gets the connection, and the
    /// wait goes on after it.
    fn wait_readable(&self, py: Python<'_>, deadline: Option<Instant>) -> PyResult<bool> {
        loop {
            if self.wanted.load(SeqCst) > 0 {
                // Let the thread that asked go first; should it hold the connection for
                // long (a send waiting for room), `with` below sleeps on the lock.
                py.detach(std::thread::yield_now);
            }
            let ready = self.with(py, |c| {
                let kick = self.kick()?;
                let mut count = [0u8; 8];
                let _ = rustix::io::read(kick, &mut count);
                // After the drain: a thread that rang before it counted itself first.
                if self.wanted.load(SeqCst) > 0 {
                    return Ok(None);
                }
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                let slice = left.map_or(SIGNAL_CHECK, |left| left.min(SIGNAL_CHECK));
                shmpipe::__interop::interruptible_by(kick.as_fd(), || c.poll(Some(slice))).map(Some)
            })?;
            match ready {
                Some(true) => return Ok(true),
                Some(false) if deadline.is_some_and(|d| Instant::now() >= d) => return Ok(false),
                // A signal whose handler ran on another thread, or between two of the
                // wait's sleeps, interrupted no system call of ours: look for it now.
                Some(false) => py.check_signals()?,
                None => {}
            }
        }
    }

    /// `recv_bytes_into` straight into the buffer's memory, lent through the buffer
    /// protocol.
    #[cfg(not(feature = "abi3-py39"))]
    fn recv_bytes_into_lent<'py>(
        &self,
        py: Python<'py>,
        buf: &Buffer<'py>,
    ) -> PyResult<(usize, Option<Bound<'py, PyBytes>>)> {
        let pinned = bytes_of(buf)?;
        let (ptr, len) = pinned.raw();
        let raw = Raw(ptr, len);
        self.wait_readable(py, None)?;
        let r = self.with(py, move |c| {
            let raw = raw;
            // SAFETY: the export pins `len` writable bytes at `ptr` for this call (checked
            // not read-only above); concurrent use of the same buffer by another Python
            // thread would be the caller's race, as with `os.readv`.
            let dst = unsafe { std::slice::from_raw_parts_mut(raw.0, raw.1) };
            match c.recv_bytes_into(dst) {
                Ok(n) => Ok((n, None)),
                Err(Error::BufferTooShort(whole)) => Ok((whole.len(), Some(whole))),
                Err(e) => Err(e),
            }
        })?;
        Ok((r.0, r.1.map(|w| PyBytes::new(py, &w))))
    }

    /// `recv_bytes_into` without the buffer protocol (the `abi3-py39` build): the
    /// message is received into memory of our own, then written into `buf` through a
    /// `memoryview`; one that does not fit is returned whole, consumed, as CPython does.
    #[cfg(feature = "abi3-py39")]
    fn recv_bytes_into_copy<'py>(
        &self,
        py: Python<'py>,
        buf: &Buffer<'py>,
    ) -> PyResult<(usize, Option<Bound<'py, PyBytes>>)> {
        let room = buf.len()?;
        self.wait_readable(py, None)?;
        let message = self.with(py, |c| c.recv_bytes())?;
        if message.len() > room {
            return Ok((message.len(), Some(PyBytes::new(py, &message))));
        }
        buffers::write_into(buf, &message)?;
        Ok((message.len(), None))
    }

    /// Runs `f` on the open connection, with the mutex held and the GIL released.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl Fn(&Connection) -> Result<T, Error> + Sync,
    ) -> PyResult<T> {
        blocking(py, || f(self.lock().as_ref().ok_or(Error::Closed)?))
    }
}

/// The storage of an object made by [`unfilled`].
fn data_of(obj: &Bound<'_, PyAny>, bytearray: bool) -> *mut u8 {
    // SAFETY: `obj` is a live `bytes` (or `bytearray`, as the caller says), whose storage
    // these return.
    unsafe {
        if bytearray {
            pyo3::ffi::PyByteArray_AsString(obj.as_ptr()).cast()
        } else {
            pyo3::ffi::PyBytes_AsString(obj.as_ptr()).cast()
        }
    }
}

/// A new `bytes` (or, with `bytearray`, `bytearray`) object of `len` bytes, not yet
/// written, and its storage: the caller fills every byte before anyone else sees it.
fn new_uninit(
    py: Python<'_>,
    len: usize,
    bytearray: bool,
) -> PyResult<(Bound<'_, PyAny>, *mut u8)> {
    let size = pyo3::ffi::Py_ssize_t::try_from(len)
        .map_err(|_| PyValueError::new_err("message too long for a bytes object"))?;
    // SAFETY: a null source asks CPython for an uninitialised object of `size` bytes,
    // which we own (a new reference).
    let obj = unsafe {
        let obj = if bytearray {
            pyo3::ffi::PyByteArray_FromStringAndSize(std::ptr::null(), size)
        } else {
            pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), size)
        };
        Bound::from_owned_ptr_or_err(py, obj)?
    };
    let data = data_of(&obj, bytearray);
    Ok((obj, data))
}

/// A new `bytes` (or, with `bytearray`, `bytearray`) object of `len` bytes that `fill`
/// writes (through the pointer) before anyone else can see it. Unlike
/// `PyBytes::new_with`, it does not zero the memory first: for a large message that is a
/// whole extra pass over fresh pages. If `fill` fails, the object is dropped unseen.
fn unfilled<'py>(
    py: Python<'py>,
    len: usize,
    bytearray: bool,
    fill: impl FnOnce(*mut u8) -> PyResult<()>,
) -> PyResult<Bound<'py, PyAny>> {
    let (obj, data) = new_uninit(py, len, bytearray)?;
    prefault(data, len);
    fill(data)?;
    Ok(obj)
}

/// Asks the kernel to map every page of a large fresh buffer at once
/// (`MADV_POPULATE_WRITE`, Linux 5.14+), instead of taking a page fault per 4 KiB as the
/// receive first writes each page: the faults were most of the time a 64 MiB receive
/// took. Best effort: an older kernel refuses the advice and the faults happen as usual.
fn prefault(data: *mut u8, len: usize) {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    if len < (1 << 20) {
        return;
    }
    let page = 4096;
    let start = (data as usize).next_multiple_of(page);
    let end = (data as usize + len) / page * page;
    if end > start {
        // SAFETY: the range lies inside the buffer just allocated for us (rounded inward
        // to whole pages); populating changes no contents, only which pages are mapped.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_WRITE);
        }
    }
}

/// A pointer that may cross into the closure run without the GIL.
#[derive(Clone, Copy)]
struct Raw(*mut u8, usize);
// SAFETY: it points into a buffer that stays exported (pinned) for the whole call; the
// call is the only code of ours using it.
unsafe impl Send for Raw {}
unsafe impl Sync for Raw {}

#[pymethods]
impl RawConnection {
    /// Sends a `bytes` object as one message: the common case, without the buffer
    /// protocol's export (which costs more than copying a small message).
    fn send_bytes_of(&self, py: Python<'_>, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        let bytes = data.as_bytes();
        if bytes.len() <= FAST_PATH_MAX {
            if let Some(done) = self.try_now(|c| c.send_bytes(bytes)) {
                return done.map_err(to_py);
            }
        }
        let raw = Raw(bytes.as_ptr() as *mut u8, bytes.len());
        self.with(py, move |c| {
            let raw = raw;
            // SAFETY: `data` (borrowed for this call) keeps the immutable bytes alive
            // and where they are.
            c.send_bytes(unsafe { std::slice::from_raw_parts(raw.0 as *const u8, raw.1) })
        })
    }

    /// `Connection.send_bytes` itself on a writable end (the Python object binds it,
    /// saving a Python frame per call): a whole `bytes` object here, anything else (a
    /// slice of it, another buffer) by the Python code that checks and slices it as
    /// `multiprocessing` does, then sends it with `send_bytes`.
    #[pyo3(signature = (buf, offset=None, size=None))]
    fn send_bytes_api(
        slf: &Bound<'_, Self>,
        buf: &Bound<'_, PyAny>,
        offset: Option<&Bound<'_, PyAny>>,
        size: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let whole = size.is_none() && offset.is_none_or(|o| o.extract::<isize>().ok() == Some(0));
        if whole {
            if let Ok(bytes) = buf.cast_exact::<PyBytes>() {
                return slf.get().send_bytes_of(py, bytes);
            }
        }
        static GENERAL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let general = GENERAL.get_or_try_init(py, || {
            py.import("shmpipe")?
                .getattr("_send_bytes_general")
                .map(Bound::unbind)
        })?;
        let offset = match offset {
            Some(o) => o.clone(),
            None => 0i64.into_pyobject(py)?.into_any(),
        };
        general.call1(py, (slf, buf, offset, size))?;
        Ok(())
    }

    /// Sends the bytes of a contiguous buffer as one message.
    fn send_bytes(&self, py: Python<'_>, data: Buffer<'_>) -> PyResult<()> {
        let pinned = bytes_of(&data)?;
        let (ptr, len) = pinned.raw();
        if len <= FAST_PATH_MAX {
            // SAFETY: as below; here with the GIL held, so no Python code runs meanwhile.
            let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
            if let Some(done) = self.try_now(|c| c.send_bytes(bytes)) {
                return done.map_err(to_py);
            }
        }
        let raw = Raw(ptr, len);
        self.with(py, move |c| {
            let raw = raw;
            // SAFETY: the export pins `len` readable bytes at `ptr` for this call; that
            // another Python thread could write them meanwhile is the same race as with
            // `os.write`, and we only copy them.
            let bytes = unsafe { std::slice::from_raw_parts(raw.0 as *const u8, raw.1) };
            c.send_bytes(bytes)
        })
    }

    /// Sends the concatenation of several contiguous buffers as one message, each
    /// copied once, straight into the ring.
    fn send_bytes_vectored(&self, py: Python<'_>, parts: Vec<Buffer<'_>>) -> PyResult<()> {
        let pinned = parts.iter().map(bytes_of).collect::<PyResult<Vec<_>>>()?;
        let raws: Vec<Raw> = pinned.iter().map(|p| Raw(p.raw().0, p.raw().1)).collect();
        let raws = &raws;
        self.with(py, move |c| {
            // SAFETY: each export (in `parts`, alive for this call) pins its bytes; we
            // only copy them (see `send_bytes`).
            let slices: Vec<&[u8]> = raws
                .iter()
                .map(|r| unsafe { std::slice::from_raw_parts(r.0 as *const u8, r.1) })
                .collect();
            c.send_bytes_vectored(&slices)
        })
    }

    /// Receives the next message as `bytes`, copying it once, straight into the
    /// `bytes` object. `maxlength`: refuse a longer message (OSError; it stays).
    ///
    /// This is `Connection.recv_bytes` itself on a readable end (the Python object binds
    /// it, saving a Python frame per call), so it checks what `multiprocessing` checks,
    /// in the same order.
    #[pyo3(signature = (maxlength=None))]
    fn recv_bytes<'py>(
        &self,
        py: Python<'py>,
        maxlength: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let maxlength = match maxlength {
            Some(n) if n < 0 => {
                return Err(if !self.open.load(Relaxed) {
                    to_py(Error::Closed)
                } else if !self.directions.0 {
                    to_py(Error::NotReadable)
                } else {
                    PyValueError::new_err("negative maxlength")
                });
            }
            n => n.map(|n| n as usize),
        };
        self.recv_into_new(py, maxlength, false)?
            .cast_into::<PyBytes>()
            .map_err(PyErr::from)
    }

    /// Receives the next message for unpickling: as `bytes` when it is short, as a
    /// `bytearray` (received straight into it) when it is long, so that out-of-band
    /// buffers unpickled as views of it (NumPy arrays) are writable, as they are when
    /// `multiprocessing` unpickles them from an in-band copy.
    fn recv_message<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.recv_into_new(py, None, true)
    }

    /// The next message if it is all there now, else `None`, never waiting (for the
    /// connection's lock either): for asyncio, which waits on `fileno` in between. Part
    /// of a long message taken now is kept for the next call. `for_unpickling`: a long
    /// message comes as a writable buffer object, as from `recv_message`.
    #[pyo3(signature = (maxlength=None, for_unpickling=false))]
    fn recv_bytes_nowait<'py>(
        &self,
        py: Python<'py>,
        maxlength: Option<usize>,
        for_unpickling: bool,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let got = self.try_now(|c| {
            let max = maxlength.unwrap_or(c.max_message_size().unwrap_or(usize::MAX));
            c.recv_bytes_max(max)
        });
        match got {
            None => Ok(None),
            Some(Err(e)) => Err(to_py(e)),
            Some(Ok(bytes)) if for_unpickling && bytes.len() > FAST_PATH_MAX => {
                Ok(Some(writable_message(py, bytes)?))
            }
            Some(Ok(bytes)) => Ok(Some(PyBytes::new(py, &bytes).into_any())),
        }
    }

    /// The size of each ring of the pipe, in bytes.
    fn ring_capacity(&self) -> Option<usize> {
        self.capacity
    }

    /// Sends `data` as one message if it fits in the pipe now, never waiting; `False`,
    /// having sent nothing, if it does not (for asyncio).
    fn send_bytes_nowait(&self, data: Buffer<'_>) -> PyResult<bool> {
        let pinned = bytes_of(&data)?;
        let (ptr, len) = pinned.raw();
        // SAFETY: the export pins `len` readable bytes at `ptr` for this call, which holds
        // the GIL throughout.
        let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        match self.try_now(|c| c.send_bytes(bytes)) {
            None => Ok(false),
            Some(r) => r.map(|()| true).map_err(to_py),
        }
    }

    /// Receives the next message into a writable contiguous buffer. Returns
    /// `(length, None)`, or `(length, message)` when it did not fit (the message was
    /// consumed; the Python side raises `BufferTooShort` with it).
    fn recv_bytes_into<'py>(
        &self,
        py: Python<'py>,
        buf: Buffer<'py>,
    ) -> PyResult<(usize, Option<Bound<'py, PyBytes>>)> {
        if readonly(&buf)? {
            return Err(PyValueError::new_err("the buffer is read-only"));
        }
        #[cfg(feature = "abi3-py39")]
        return self.recv_bytes_into_copy(py, &buf);
        #[cfg(not(feature = "abi3-py39"))]
        self.recv_bytes_into_lent(py, &buf)
    }

    /// Whether a message (or EOF) is waiting, waiting up to `timeout` seconds (`None`:
    /// as long as it takes).
    #[pyo3(signature = (timeout=None))]
    fn poll(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if timeout.is_some_and(|t| t <= 0.0) {
            // A look that does not wait (a busy-polling loop): with the GIL held, which
            // costs less than letting go of it; memory only in the library but for a
            // rate-limited question to the kernel. A connection another thread holds
            // takes the general path.
            let look = || {
                let guard = self.try_lock()?;
                Some(match guard.as_ref() {
                    Some(c) => c.poll(Some(Duration::ZERO)),
                    None => Err(Error::Closed),
                })
            };
            if let Some(r) = look() {
                return r.map_err(to_py);
            }
        }
        let deadline = match timeout {
            None => None,
            Some(t) if t.is_nan() => return Err(PyValueError::new_err("timeout is NaN")),
            Some(t) => Some(
                Instant::now()
                    .checked_add(Duration::try_from_secs_f64(t.max(0.0)).unwrap_or(Duration::MAX))
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 32)),
            ),
        };
        // A retry after a signal waits for what is left of the timeout, not all of it.
        self.wait_readable(py, deadline)
    }

    /// A descriptor that polls readable exactly when `poll()` would be true.
    fn fileno(&self, py: Python<'_>) -> PyResult<RawFd> {
        if !self.open.load(Relaxed) {
            return Err(to_py(Error::Closed));
        }
        let known = self.fileno.load(Relaxed);
        if known >= 0 {
            return Ok(known);
        }
        let fd = self.with(py, |c| c.fileno())?;
        self.fileno.store(fd, Relaxed);
        Ok(fd)
    }

    /// Closes this end (in this process).
    fn close(&self, py: Python<'_>) {
        self.open.store(false, Relaxed);
        py.detach(|| {
            drop(self.lock().take());
            drop(self.memfd.lock().unwrap_or_else(|p| p.into_inner()).take());
        });
    }

    /// Whether this end can receive and send.
    fn directions(&self) -> (bool, bool) {
        self.directions
    }

    /// `(end, (memfd, data, space))`: for pickling, which duplicates the descriptors.
    fn parts(&self, py: Python<'_>) -> PyResult<(usize, (RawFd, RawFd, RawFd))> {
        self.with(py, |c| {
            let (end, [m, d, s]) = shmpipe::__interop::end_and_fds(c)?;
            let mut own = self.memfd.lock().unwrap_or_else(|p| p.into_inner());
            if own.is_none() {
                // SAFETY: `m` is the region's memfd, open while the connection (locked
                // by `with`) is.
                let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(m) };
                *own = Some(borrowed.try_clone_to_owned()?);
            }
            let m = own.as_ref().map(|fd| fd.as_raw_fd()).expect("just set");
            Ok((end, (m, d, s)))
        })
    }

    /// The socket of a connection speaking CPython's protocol: for pickling, which
    /// duplicates it.
    fn socket_fd(&self, py: Python<'_>) -> PyResult<RawFd> {
        self.with(py, shmpipe::__interop::socket_fd)
    }

    /// `(value, (fds...))` to hand this end to a child process started with
    /// `subprocess` (environment value and `pass_fds`), for `from_parent` there.
    fn handoff(&self, py: Python<'_>) -> PyResult<(String, (RawFd, RawFd, RawFd))> {
        self.with(py, |c| {
            let (value, [m, d, s]) = shmpipe::__interop::handoff_value(c)?;
            Ok((value, (m, d, s)))
        })
    }
}

/// The two ends of a new pipe (`duplex`: both send and receive; otherwise
/// `(reader, writer)`).
#[pyfunction]
#[pyo3(signature = (duplex=true, capacity=None))]
fn pipe(duplex: bool, capacity: Option<usize>) -> PyResult<(RawConnection, RawConnection)> {
    let mut b = shmpipe::Builder::new().duplex(duplex);
    if let Some(c) = capacity {
        b = b.capacity(c);
    }
    let (a, z) = b.build().map_err(to_py)?;
    Ok((RawConnection::new(a), RawConnection::new(z)))
}

/// Takes ownership of three descriptors (duplicates made for us by pickling) and makes
/// them end `end` of a pipe, after checking them.
#[pyfunction]
fn from_fds(end: usize, memfd: RawFd, data: RawFd, space: RawFd) -> PyResult<RawConnection> {
    if [memfd, data, space].iter().any(|&fd| fd < 0) {
        return Err(PyValueError::new_err("negative descriptor"));
    }
    // SAFETY: the caller (the unpickler) hands over these descriptors: `DupFd.detach()`
    // gave them to it to own, and it passes each once.
    let own = |fd| unsafe { OwnedFd::from_raw_fd(fd) };
    shmpipe::__interop::from_fds(end, own(memfd), own(data), own(space))
        .map(RawConnection::new)
        .map_err(to_py)
}

/// Takes ownership of a socket descriptor (a duplicate made for us by pickling) and makes
/// it a connection speaking CPython's protocol.
#[pyfunction]
fn from_socket(fd: RawFd) -> PyResult<RawConnection> {
    if fd < 0 {
        return Err(PyValueError::new_err("negative descriptor"));
    }
    // SAFETY: as in `from_fds`: the unpickler hands the descriptor over, once.
    let own = unsafe { OwnedFd::from_raw_fd(fd) };
    shmpipe::__interop::from_socket(own)
        .map(RawConnection::new)
        .map_err(to_py)
}

/// Takes up the end a parent process passed under the environment variable `key`.
#[pyfunction]
fn from_parent(key: &str) -> PyResult<RawConnection> {
    Connection::from_parent(key)
        .map(RawConnection::new)
        .map_err(to_py)
}

/// 64 zero bytes, doing nothing else: what a native call returning a short message
/// costs at the least (the Python bench states it beside `recv_bytes`).
#[pyfunction]
fn _bytes64(py: Python<'_>) -> Bound<'_, PyBytes> {
    PyBytes::new(py, &[0; 64])
}

#[pymodule]
fn _shmpipe(m: &Bound<'_, PyModule>) -> PyResult<()> {
    shmpipe::__interop::set_interruptible(true);
    m.add_class::<RawConnection>()?;
    #[cfg(not(feature = "abi3-py39"))]
    m.add_class::<buffers::Received>()?;
    m.add_function(wrap_pyfunction!(pipe, m)?)?;
    m.add_function(wrap_pyfunction!(from_fds, m)?)?;
    m.add_function(wrap_pyfunction!(from_socket, m)?)?;
    m.add_function(wrap_pyfunction!(from_parent, m)?)?;
    m.add_function(wrap_pyfunction!(_bytes64, m)?)?;
    m.add_class::<queue::RawQueue>()?;
    m.add_function(wrap_pyfunction!(queue::queue, m)?)?;
    m.add_function(wrap_pyfunction!(queue::queue_from_fds, m)?)?;
    m.add_class::<net::RawListener>()?;
    m.add_function(wrap_pyfunction!(net::listen, m)?)?;
    m.add_function(wrap_pyfunction!(net::connect, m)?)?;
    Ok(())
}
