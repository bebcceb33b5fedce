//! Python objects with bytes in them, in the two builds of the extension:
//!
//! * the stable ABI from 3.11 (`abi3`) and a build for one Python version: the buffer
//!   protocol, which lends a contiguous buffer's memory for the length of a call (a
//!   `bytearray` cannot be resized while it is lent), and [`Received`], which lends a
//!   long received message's memory to the unpickler without a copy;
//! * the stable ABI from 3.9 (`abi3-py39`), where the buffer protocol is not part of the
//!   ABI: a buffer other than `bytes` is copied through a `memoryview`, a receive into a
//!   buffer writes through one, and a long message for unpickling arrives in a
//!   `bytearray`. Only the wheel for 3.9 and 3.10 is built so.

use pyo3::prelude::*;
#[cfg(feature = "abi3-py39")]
use pyo3::types::PyBytes;

/// What the methods taking "a bytes-like object" take.
#[cfg(not(feature = "abi3-py39"))]
pub(crate) type Buffer<'py> = pyo3::buffer::PyBuffer<u8>;
/// What the methods taking "a bytes-like object" take.
#[cfg(feature = "abi3-py39")]
pub(crate) type Buffer<'py> = Bound<'py, PyAny>;

/// The bytes of a buffer, where they stay put for as long as this lives: the buffer's
/// own memory (lent through the buffer protocol), or a copy.
pub(crate) struct Pinned<'a> {
    ptr: *mut u8,
    len: usize,
    #[cfg(feature = "abi3-py39")]
    _copy: Bound<'a, PyBytes>,
    #[cfg(not(feature = "abi3-py39"))]
    _lent: std::marker::PhantomData<&'a ()>,
}

impl Pinned<'_> {
    /// The address and length of the bytes.
    pub(crate) fn raw(&self) -> (*mut u8, usize) {
        (self.ptr, self.len)
    }
}

/// The bytes of a contiguous buffer (see [`Pinned`]).
#[cfg(not(feature = "abi3-py39"))]
pub(crate) fn bytes_of<'a>(buf: &'a Buffer<'_>) -> PyResult<Pinned<'a>> {
    if !buf.is_c_contiguous() {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "the buffer is not contiguous",
        ));
    }
    Ok(Pinned {
        ptr: buf.buf_ptr().cast(),
        len: buf.len_bytes(),
        _lent: std::marker::PhantomData,
    })
}

/// The bytes of a buffer (see [`Pinned`]): a `bytes` object as it is, anything else
/// copied (`memoryview(buf).tobytes()`).
#[cfg(feature = "abi3-py39")]
pub(crate) fn bytes_of<'py>(buf: &Buffer<'py>) -> PyResult<Pinned<'py>> {
    let copy = match buf.cast_exact::<PyBytes>() {
        Ok(b) => b.clone(),
        Err(_) => memoryview(buf)?
            .call_method0("tobytes")?
            .cast_into::<PyBytes>()?,
    };
    let bytes = copy.as_bytes();
    Ok(Pinned {
        ptr: bytes.as_ptr() as *mut u8,
        len: bytes.len(),
        _copy: copy,
    })
}

/// Whether a buffer refuses writes.
#[cfg(not(feature = "abi3-py39"))]
pub(crate) fn readonly(buf: &Buffer<'_>) -> PyResult<bool> {
    Ok(buf.readonly())
}

/// Whether a buffer refuses writes.
#[cfg(feature = "abi3-py39")]
pub(crate) fn readonly(buf: &Buffer<'_>) -> PyResult<bool> {
    memoryview(buf)?.getattr("readonly")?.extract()
}

#[cfg(feature = "abi3-py39")]
fn memoryview<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    obj.py()
        .import("builtins")?
        .getattr("memoryview")?
        .call1((obj,))
}

/// Writes `bytes` at the start of `buf` (a writable buffer of at least that many bytes),
/// through a `memoryview`.
#[cfg(feature = "abi3-py39")]
pub(crate) fn write_into(buf: &Buffer<'_>, bytes: &[u8]) -> PyResult<()> {
    let py = buf.py();
    let view = memoryview(buf)?.call_method1("cast", ("B",))?;
    let slice = pyo3::types::PySlice::new(py, 0, bytes.len() as isize, 1);
    view.set_item(slice, PyBytes::new(py, bytes))
}

/// A long message for unpickling, handed to Python without a copy (see [`Received`]).
#[cfg(not(feature = "abi3-py39"))]
pub(crate) fn writable_message(py: Python<'_>, bytes: Vec<u8>) -> PyResult<Bound<'_, PyAny>> {
    Ok(Bound::new(py, Received::new(bytes))?.into_any())
}

/// A long message for unpickling, copied into a `bytearray` (writable, as the buffers
/// pickle's out-of-band data become must be).
#[cfg(feature = "abi3-py39")]
pub(crate) fn writable_message(py: Python<'_>, bytes: Vec<u8>) -> PyResult<Bound<'_, PyAny>> {
    Ok(pyo3::types::PyByteArray::new(py, &bytes).into_any())
}

/// A long message that was still arriving when its receive began, in the buffer that
/// grew with its bytes (see `recv_into_new`), handed to Python as it is: a writable
/// object with the buffer protocol, for `recv`'s unpickling (out-of-band buffers, NumPy
/// arrays, become views of it, as they are of the `bytearray` a whole message is
/// received into).
#[cfg(not(feature = "abi3-py39"))]
#[pyclass(module = "shmpipe._shmpipe", frozen)]
pub(crate) struct Received {
    ptr: *mut u8,
    len: usize,
    cap: usize,
}

#[cfg(not(feature = "abi3-py39"))]
// SAFETY: `Received` owns its buffer (a leaked `Vec`, given back in `Drop`); the pointer
// is never shared except through the buffer protocol, whose writers are Python code, and
// concurrent writes there are that code's race, as with a `bytearray`.
unsafe impl Send for Received {}
#[cfg(not(feature = "abi3-py39"))]
// SAFETY: as above; `&Received` gives no access to the bytes but through exports.
unsafe impl Sync for Received {}

#[cfg(not(feature = "abi3-py39"))]
impl Received {
    fn new(bytes: Vec<u8>) -> Received {
        let mut bytes = std::mem::ManuallyDrop::new(bytes);
        Received {
            ptr: bytes.as_mut_ptr(),
            len: bytes.len(),
            cap: bytes.capacity(),
        }
    }
}

#[cfg(not(feature = "abi3-py39"))]
impl Drop for Received {
    fn drop(&mut self) {
        // SAFETY: the parts of the `Vec` that `new` leaked, given back once. Python keeps
        // this object alive while any export of its buffer exists.
        drop(unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) });
    }
}

#[cfg(not(feature = "abi3-py39"))]
#[pymethods]
impl Received {
    /// The buffer protocol: the message's bytes, writable, one dimension of bytes.
    ///
    /// # Safety
    /// Called by CPython with a `Py_buffer` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut pyo3::ffi::Py_buffer,
        flags: std::ffi::c_int,
    ) -> PyResult<()> {
        let this = slf.get();
        let len = pyo3::ffi::Py_ssize_t::try_from(this.len).map_err(|_| {
            pyo3::exceptions::PyValueError::new_err("message too long for a buffer")
        })?;
        // SAFETY: `view` is CPython's to fill; the buffer (`len` bytes at `ptr`) lives as
        // long as `slf`, which the view holds a reference to.
        let r = unsafe {
            pyo3::ffi::PyBuffer_FillInfo(view, slf.as_ptr(), this.ptr.cast(), len, 0, flags)
        };
        if r != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// Nothing to release: the buffer lives as long as the object.
    ///
    /// # Safety
    /// Called by CPython.
    unsafe fn __releasebuffer__(&self, _view: *mut pyo3::ffi::Py_buffer) {}

    fn __len__(&self) -> usize {
        self.len
    }
}
