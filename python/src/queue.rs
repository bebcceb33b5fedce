//! `RawQueue`: [`shmpipe::Queue`] for Python (`pysrc/shmpipe/queues.py` gives it
//! `multiprocessing.Queue`'s API and exceptions).
//!
//! A put or get that can go at once does so with the GIL held; one that must wait lets
//! go of the GIL and waits in slices of [`SIGNAL_CHECK`], looking for a Python signal
//! (Ctrl-C) between two; except a put in fragments, which a slice's end would take
//! back: it waits to its deadline, and a signal ends the wait.

use crate::{to_py, SIGNAL_CHECK};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;
use shmpipe::{Error, Queue};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// A queue shared by processes.
#[pyclass(module = "shmpipe._shmpipe", frozen)]
pub(crate) struct RawQueue {
    q: Queue,
    /// The buffer a get copies a message into before it makes the `bytes` object.
    buf: std::sync::Mutex<Vec<u8>>,
}

/// The first byte of a message that is a `bytes` object's bytes, not a pickle (a pickle
/// starts with its protocol's `PROTO` opcode, 0x80, or with a printable opcode).
const TAG_BYTES: u8 = 0;

/// The longest buffer a queue keeps between gets: one huge message does not pin its
/// memory for the queue's life.
const KEEP_MAX: usize = 1 << 20;

/// What a blocking call waits for: `None`, for as long as it takes; otherwise until then.
fn deadline_of(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() => Err(PyValueError::new_err("timeout is NaN")),
        Some(t) => Ok(Some(
            Instant::now() + Duration::from_secs_f64(t.clamp(0.0, 1e9)),
        )),
    }
}

/// The Python exception for a library error of a queue: `ValueError` after `close`, as
/// `multiprocessing`'s queues raise it.
fn to_py_queue(e: Error) -> PyErr {
    match e {
        Error::Closed => PyValueError::new_err("queue is closed"),
        e => to_py(e),
    }
}

/// Runs `attempt` with a slice of the time left (at most [`SIGNAL_CHECK`]) without the
/// GIL, until it does not time out, `deadline` passes (`Ok(None)`), or a Python signal
/// handler raises.
fn in_slices<T: Send>(
    py: Python<'_>,
    deadline: Option<Instant>,
    attempt: impl Fn(Duration) -> Result<T, Error> + Sync,
) -> PyResult<Option<T>> {
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let slice = left.map_or(SIGNAL_CHECK, |l| l.min(SIGNAL_CHECK));
        match py.detach(|| attempt(slice)) {
            Ok(v) => return Ok(Some(v)),
            // (A slice of zero is a non-blocking try: `WouldBlock`.)
            Err(Error::Timeout | Error::WouldBlock)
                if deadline.is_some_and(|d| Instant::now() >= d) =>
            {
                return Ok(None)
            }
            Err(Error::Timeout | Error::WouldBlock) => py.check_signals()?,
            Err(e) => return Err(to_py_queue(e)),
        }
    }
}

#[pymethods]
impl RawQueue {
    /// `Queue.put` itself (the Python object binds it, saving a Python frame per call):
    /// puts a `bytes` object's bytes behind [`TAG_BYTES`], anything else pickled (see
    /// `pickled`); `queue.Full` when there is no room by then.
    #[pyo3(signature = (obj, block=true, timeout=None))]
    fn put_obj(
        &self,
        py: Python<'_>,
        obj: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        // A `bytes` object goes as its bytes behind a tag, unpickled: pickling and
        // unpickling it would cost more than the rest of the put and the get.
        let put = if let Ok(b) = obj.cast_exact::<PyBytes>() {
            self.put_pieces(py, &[&[TAG_BYTES], b.as_bytes()], block, timeout)?
        } else {
            let data = pickled(py, obj)?;
            self.put_pieces(py, &[data.cast::<PyBytes>()?.as_bytes()], block, timeout)?
        };
        if put {
            Ok(())
        } else {
            Err(PyErr::from_type(
                cached(py, &FULL, "queue", "Full")?.cast()?.clone(),
                (),
            ))
        }
    }

    /// `Queue.get` itself: the next message, a `bytes` object if it was one, else
    /// unpickled (`ForkingPickler.loads` is `pickle.loads`); `queue.Empty` when there
    /// is none by then.
    #[pyo3(signature = (block=true, timeout=None))]
    fn get_obj<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let got = self.receive(py, block, timeout, |m| match m {
            [TAG_BYTES, bytes @ ..] => Ok(PyBytes::new(py, bytes).into_any()),
            pickle => cached(py, &LOADS, "pickle", "loads")?.call1((PyBytes::new(py, pickle),)),
        })?;
        match got {
            Some(obj) => Ok(obj),
            None => Err(PyErr::from_type(
                cached(py, &EMPTY, "queue", "Empty")?.cast()?.clone(),
                (),
            )),
        }
    }

    fn qsize(&self) -> usize {
        self.q.len()
    }

    fn full(&self) -> bool {
        self.q.is_full()
    }

    fn task_done(&self) -> PyResult<()> {
        self.q
            .task_done()
            .map_err(|_| PyValueError::new_err("task_done() called too many times"))
    }

    /// Waits until every message put has been marked done.
    fn join(&self, py: Python<'_>) -> PyResult<()> {
        let q = &self.q;
        in_slices(py, None, |slice| q.join_timeout(slice))?;
        Ok(())
    }

    fn close(&self) {
        self.q.close();
    }

    fn closed(&self) -> bool {
        self.q.is_closed()
    }

    /// `(ring memfd, control memfd)`: for pickling, which duplicates them.
    fn fds(&self) -> (RawFd, RawFd) {
        let (ring, control) = self.q.__fds();
        (ring.as_raw_fd(), control.as_raw_fd())
    }
}

impl RawQueue {
    /// [`put`](RawQueue::put) of bytes at hand.
    /// Puts the message made of `pieces`: `False` if `block` is false and there is no
    /// room now, or `timeout` (seconds) passed without room.
    fn put_pieces(
        &self,
        py: Python<'_>,
        pieces: &[&[u8]],
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<bool> {
        let q = &self.q;
        match q.__put_pieces(pieces, Duration::ZERO) {
            Ok(()) => return Ok(true),
            Err(Error::WouldBlock) if !block => return Ok(false),
            Err(Error::WouldBlock) => {}
            Err(Error::MessageTooLong { len, max }) => {
                return Err(PyValueError::new_err(format!(
                    "a message of {len} bytes is longer than a queue takes ({max} bytes)"
                )))
            }
            Err(e) => return Err(to_py_queue(e)),
        }
        let deadline = deadline_of(timeout)?;
        if pieces.iter().map(|p| p.len()).sum::<usize>() <= q.__whole_max() {
            // A put in one record does nothing until it does all: waiting in slices
            // costs nothing.
            let put = in_slices(py, deadline, |slice| q.__put_pieces(pieces, slice))?;
            return Ok(put.is_some());
        }
        // In fragments, a put that gives up part-way takes its message back: it waits
        // once, to its deadline, and only a signal (whose handler then runs) ends it early.
        loop {
            let left = deadline.map_or(Duration::MAX, |d| {
                d.saturating_duration_since(Instant::now())
                    .max(Duration::from_nanos(1))
            });
            match py.detach(|| q.__put_pieces(pieces, left)) {
                Ok(()) => return Ok(true),
                Err(Error::Timeout) => return Ok(false),
                Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => {
                    py.check_signals()?
                }
                Err(e) => return Err(to_py_queue(e)),
            }
        }
    }

    /// Gets the next message into the buffer kept between gets and makes it a Python
    /// object with `make`; `None` if `block` is false and there is none now, or `timeout`
    /// passed without one. The buffer is taken out of its mutex for the get, so that a
    /// thread waiting without the GIL holds no lock of ours.
    fn receive<R>(
        &self,
        py: Python<'_>,
        block: bool,
        timeout: Option<f64>,
        make: impl FnOnce(&[u8]) -> PyResult<R>,
    ) -> PyResult<Option<R>> {
        let mut buf = std::mem::take(&mut *self.buf.lock().unwrap_or_else(|p| p.into_inner()));
        let got = match self.q.__get_into_vec(&mut buf, Duration::ZERO) {
            Ok(()) => Some(()),
            Err(Error::WouldBlock) if !block => None,
            Err(Error::WouldBlock) => {
                let deadline = deadline_of(timeout)?;
                let (q, buf) = (&self.q, std::sync::Mutex::new(&mut buf));
                in_slices(py, deadline, |slice| {
                    let mut buf = buf.lock().unwrap_or_else(|p| p.into_inner());
                    q.__get_into_vec(&mut buf, slice)
                })?
            }
            Err(e) => return Err(to_py_queue(e)),
        };
        let out = got.map(|()| make(&buf)).transpose();
        if buf.capacity() <= KEEP_MAX {
            *self.buf.lock().unwrap_or_else(|p| p.into_inner()) = buf;
        }
        out
    }
}

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PICKLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static FULL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static EMPTY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `module.name`, looked up once.
fn cached<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let found = cell.get_or_try_init(py, || py.import(module)?.getattr(name).map(Bound::unbind))?;
    Ok(found.bind(py).clone())
}

/// The pickle of `obj` as a `bytes` object: plain scalars, and tuples, lists and dicts
/// of a few plain scalars (a record, the usual message), with `pickle.dumps`, the rest
/// through
/// `_pickle` itself. No reducer of multiprocessing's touches those types, so
/// `pickle.dumps` makes the same bytes `ForkingPickler` would, without the reused
/// pickler's calls (which cost more than pickling a small tuple).
fn pickled<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let scalar = |o: &Bound<'py, PyAny>| {
        o.is_exact_instance_of::<PyBytes>()
            || o.is_exact_instance_of::<pyo3::types::PyString>()
            || o.is_exact_instance_of::<pyo3::types::PyInt>()
            || o.is_exact_instance_of::<pyo3::types::PyFloat>()
            || o.is_exact_instance_of::<pyo3::types::PyBool>()
            || o.is_none()
    };
    // A shallow look at a few items: deeper or longer containers take the general path.
    let record = |o: &Bound<'py, PyAny>| {
        if let Ok(t) = o.cast_exact::<pyo3::types::PyTuple>() {
            t.len() <= 16 && t.iter().all(|item| scalar(&item))
        } else if let Ok(l) = o.cast_exact::<pyo3::types::PyList>() {
            l.len() <= 16 && l.iter().all(|item| scalar(&item))
        } else if let Ok(d) = o.cast_exact::<pyo3::types::PyDict>() {
            d.len() <= 16 && d.iter().all(|(k, v)| scalar(&k) && scalar(&v))
        } else {
            false
        }
    };
    if scalar(obj) || record(obj) {
        cached(py, &DUMPS, "pickle", "dumps")?.call1((obj, 5))
    } else {
        cached(py, &PICKLE, "shmpipe.queues", "_pickle")?.call1((obj,))
    }
}

/// A new queue of `capacity` bytes holding at most `maxsize` messages (`None`: no
/// limit beyond the bytes).
#[pyfunction]
#[pyo3(signature = (capacity, maxsize=None))]
pub(crate) fn queue(capacity: usize, maxsize: Option<usize>) -> PyResult<RawQueue> {
    Queue::with_limits(capacity, maxsize)
        .map(|q| RawQueue {
            q,
            buf: Default::default(),
        })
        .map_err(to_py)
}

/// Takes ownership of a queue's two descriptors (duplicates made for us by pickling) and
/// makes them a queue of this process, after checking them.
#[pyfunction]
pub(crate) fn queue_from_fds(ring: RawFd, control: RawFd) -> PyResult<RawQueue> {
    if ring < 0 || control < 0 {
        return Err(PyValueError::new_err("negative descriptor"));
    }
    // SAFETY: the unpickler hands these descriptors over (`DupFd.detach()` gave them to it
    // to own), each once.
    let own = |fd| unsafe { OwnedFd::from_raw_fd(fd) };
    Queue::__from_fds(own(ring), own(control))
        .map(|q| RawQueue {
            q,
            buf: Default::default(),
        })
        .map_err(to_py)
}
