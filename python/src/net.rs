//! `shmpipe.connection.Listener` and `Client`: the library's `Listener` and `Client`
//! for Python, with Python's address forms (a `str` path, `'\0'` + an abstract name, a
//! `(host, port)` tuple).

use crate::{to_py, RawConnection};
use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};
use shmpipe::{Address, Client, Error, Listener, Peer};
use std::net::ToSocketAddrs;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Mutex;

/// A Python address as the library's: a `str` is a Unix path (`'\0'` first: an
/// abstract name), a `(host, port)` tuple is TCP (the host resolved, first answer).
fn address_of(obj: &Bound<'_, PyAny>) -> PyResult<Address> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Address::from(&*s.to_cow()?));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let (host, port): (String, u16) = t.extract()?;
        let found = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| PyOSError::new_err(format!("cannot resolve {host}: {e}")))?
            .next()
            .ok_or_else(|| PyOSError::new_err(format!("{host} has no address")))?;
        return Ok(Address::from(found));
    }
    Err(PyTypeError::new_err(
        "an address is a str (a Unix socket path) or a (host, port) tuple",
    ))
}

/// The library's address as Python writes it.
fn address_to_py<'py>(py: Python<'py>, a: &Address) -> PyResult<Bound<'py, PyAny>> {
    Ok(match a {
        Address::Unix(path) => path.to_string_lossy().into_pyobject(py)?.into_any(),
        Address::Abstract(name) => format!("\0{}", String::from_utf8_lossy(name))
            .into_pyobject(py)?
            .into_any(),
        Address::Tcp(sa) => (sa.ip().to_string(), sa.port())
            .into_pyobject(py)?
            .into_any(),
    })
}

/// A listening socket for Python.
#[pyclass(module = "shmpipe._shmpipe", frozen)]
pub(crate) struct RawListener {
    /// Taken by `close`; held (without the GIL) by a blocked `accept`.
    listener: Mutex<Option<Listener>>,
    /// The listening socket's number, for a `close` from another thread to wake a
    /// blocked `accept` (a shutdown) without waiting for the lock it holds.
    fd: RawFd,
    address: Address,
    /// The process that made it: a child that inherited it through `fork` may hold a
    /// copy of the lock that a thread of the parent had taken (see `close`).
    owner: u32,
}

#[pymethods]
impl RawListener {
    /// Waits for a client and returns the connection (shared memory for a shmpipe
    /// client on a Unix address, CPython's protocol otherwise).
    fn accept(&self, py: Python<'_>) -> PyResult<RawConnection> {
        if std::process::id() != self.owner {
            // The lock may be a copy of one a thread of the parent held at `fork` (a
            // Python Listener's thread always waits in `accept`): it would never open.
            return Err(PyOSError::new_err(
                "a Listener accepts only in the process that made it (this one inherited it)",
            ));
        }
        let conn = py.detach(|| {
            let guard = self.listener.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_ref() {
                Some(l) => l.accept(),
                None => Err(Error::Closed),
            }
        });
        match conn {
            Ok(c) => Ok(RawConnection::new(c)),
            Err(Error::Closed) => Err(PyOSError::new_err("listener is closed")),
            Err(e) => Err(to_py(e)),
        }
    }

    /// Stops listening (and removes the socket file this process made).
    fn close(&self, py: Python<'_>) {
        if std::process::id() != self.owner {
            // A child that inherited the listener: shutting the socket down would stop
            // the parent's (the socket is one), and the lock may be held by a thread that
            // does not exist here. Our copy of the descriptor closes when this is dropped.
            return;
        }
        let guard = match self.listener.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        };
        if let Some(mut g) = guard {
            // Nobody is in `accept`: dropping the listener closes it.
            drop(g.take());
            return;
        }
        // An `accept` in another thread holds the listener, so its socket is open: shut
        // it down to wake that `accept`, which then lets go.
        // SAFETY: a shutdown of a socket that is open (see above) closes nothing.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        py.detach(|| {
            let mut g = self.listener.lock().unwrap_or_else(|p| p.into_inner());
            drop(g.take());
        });
    }

    /// The address it listens on.
    fn address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        address_to_py(py, &self.address)
    }

    /// Who connected last: `(pid, uid, gid)` on a Unix address, `(host, port)` over
    /// TCP, `None` before the first.
    fn last_accepted<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let peer = match self.listener.try_lock() {
            Ok(g) => g.as_ref().and_then(Listener::last_accepted),
            Err(_) => return Ok(None),
        };
        Ok(match peer {
            Some(Peer::Unix { pid, uid, gid }) => {
                Some((pid, uid, gid).into_pyobject(py)?.into_any())
            }
            Some(Peer::Tcp(sa)) => Some(address_to_py(py, &Address::from(sa))?),
            _ => None,
        })
    }
}

/// Listens on `address` (see `address_of`).
#[pyfunction]
#[pyo3(signature = (address, backlog=1, authkey=None, python_wire=false))]
pub(crate) fn listen(
    py: Python<'_>,
    address: &Bound<'_, PyAny>,
    backlog: u32,
    authkey: Option<Vec<u8>>,
    python_wire: bool,
) -> PyResult<RawListener> {
    let address = address_of(address)?;
    let mut b = Listener::builder()
        .backlog(backlog.max(1))
        .python_wire(python_wire);
    if let Some(k) = &authkey {
        b = b.authkey(k);
    }
    let listener = py.detach(|| b.bind(address)).map_err(to_py)?;
    Ok(RawListener {
        fd: listener.as_fd().as_raw_fd(),
        address: listener.address().clone(),
        owner: std::process::id(),
        listener: Mutex::new(Some(listener)),
    })
}

/// Connects to a listener at `address` (see `address_of`).
#[pyfunction]
#[pyo3(signature = (address, authkey=None, python_wire=false))]
pub(crate) fn connect(
    py: Python<'_>,
    address: &Bound<'_, PyAny>,
    authkey: Option<Vec<u8>>,
    python_wire: bool,
) -> PyResult<RawConnection> {
    let address = address_of(address)?;
    let mut b = Client::builder().python_wire(python_wire);
    if let Some(k) = &authkey {
        b = b.authkey(k);
    }
    py.detach(|| b.connect(address))
        .map(RawConnection::new)
        .map_err(to_py)
}
