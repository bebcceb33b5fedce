//! Making a pipe: [`pipe`] and [`Builder`].

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::shm::doorbell::Doorbell;
use crate::shm::endpoint::{Endpoint, Shared};
use crate::shm::layout::{
    Layout, DEFAULT_CAPACITY, DEFAULT_MAX_MESSAGE, MAX_CAPACITY, MIN_CAPACITY,
};
use crate::shm::region::Region;
use std::os::fd::BorrowedFd;
use std::sync::Arc;

/// Returns the two ends of a new pipe, like Python's `multiprocessing.Pipe(duplex)`.
///
/// With `duplex` true both ends send and receive. With `duplex` false the pipe is
/// one-way and the pair is `(reader, writer)`: the first end only receives, the second
/// only sends. Each direction is a ring of 4 MiB; use [`Builder`] for another size.
///
/// # Errors
/// [`Error::Io`] if the kernel refuses a memfd or a socket (for instance
/// when the process is out of file descriptors).
///
/// ```
/// let (reader, writer) = shmpipe::pipe(false)?;
/// writer.send_bytes(b"123456")?;
/// assert_eq!(reader.recv_bytes()?, b"123456");
/// # Ok::<(), shmpipe::Error>(())
/// ```
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    Builder::new().duplex(duplex).build()
}

/// Configures a pipe before making it.
///
/// ```
/// let (a, b) = shmpipe::Builder::new().duplex(true).capacity(64 * 1024).build()?;
/// // Longer than the ring: it streams through in fragments while `b` reads.
/// let sender = std::thread::spawn(move || a.send_bytes(&[1; 100_000]));
/// assert_eq!(b.recv_bytes()?, [1; 100_000]);
/// sender.join().unwrap()?;
/// # Ok::<(), shmpipe::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Builder {
    duplex: bool,
    capacity: usize,
    max_message: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// A duplex pipe with 4 MiB rings, like `pipe(true)`.
    ///
    /// ```
    /// let (a, b) = shmpipe::Builder::new().build()?;
    /// assert!(a.readable() && a.writable() && b.readable() && b.writable());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn new() -> Builder {
        Builder {
            duplex: true,
            capacity: DEFAULT_CAPACITY,
            max_message: DEFAULT_MAX_MESSAGE,
        }
    }

    /// Both directions (`true`, the default) or one (`false`: `build` then returns
    /// `(reader, writer)`).
    ///
    /// ```
    /// let (reader, writer) = shmpipe::Builder::new().duplex(false).build()?;
    /// assert!(reader.readable() && !reader.writable());
    /// assert!(writer.writable() && !writer.readable());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn duplex(mut self, duplex: bool) -> Builder {
        self.duplex = duplex;
        self
    }

    /// Bytes of ring per direction. Rounded up to a power of two, at least 4 KiB; at
    /// most 1 GiB. Messages up to half the ring travel as one record and can be read in
    /// place; longer ones are fragmented.
    ///
    /// ```
    /// use shmpipe::{Builder, Error};
    /// assert!(Builder::new().capacity(10_000).build().is_ok()); // becomes 16 KiB
    /// assert!(matches!(Builder::new().capacity(0).build(), Err(Error::Invalid(_))));
    /// ```
    pub fn capacity(mut self, bytes_per_direction: usize) -> Builder {
        self.capacity = bytes_per_direction;
        self
    }

    /// The longest message a receive on either end allocates memory for: 1 GiB by
    /// default. A longer message (or a peer announcing one) gets
    /// [`Error::MessageTooLong`] and stays in the pipe; nothing is allocated for it.
    /// [`recv_bytes_max`](Connection::recv_bytes_max) takes a limit per call, and
    /// [`Connection::set_max_message_size`] changes it later. Receives into a buffer of
    /// the caller's ([`recv_bytes_into`](Connection::recv_bytes_into) with room enough)
    /// allocate nothing and ignore it.
    ///
    /// ```
    /// use shmpipe::{Builder, Error};
    /// let (a, b) = Builder::new().max_message_size(1000).build()?;
    /// a.send_bytes(&[0; 1001])?;
    /// assert!(matches!(b.recv_bytes(), Err(Error::MessageTooLong { len: 1001, max: 1000 })));
    /// let mut buf = [0; 2000];
    /// assert_eq!(b.recv_bytes_into(&mut buf)?, 1001);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn max_message_size(mut self, bytes: usize) -> Builder {
        self.max_message = bytes;
        self
    }

    /// Makes the pipe.
    ///
    /// # Errors
    /// [`Error::Invalid`] for a capacity of 0 or above 1 GiB; [`Error::Io`] if the
    /// kernel refuses a resource.
    ///
    /// ```
    /// let (a, b) = shmpipe::Builder::new().capacity(1 << 20).build()?;
    /// b.send_bytes(b"hi")?;
    /// assert_eq!(a.recv_bytes()?, b"hi");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn build(&self) -> Result<(Connection, Connection)> {
        let (end0, far) = self.build_one_end()?;
        let end1 = Connection::new(Endpoint::new(far.shared, 1, far.data, far.space));
        if end1.readable() {
            end1.set_max_message_size(self.max_message)?;
        }
        Ok((end0, end1))
    }

    /// Makes the pipe, but only end 0 in this process: end 1's pieces are for another
    /// process (a [`Listener`](crate::Listener) hands them to its client).
    pub(crate) fn build_one_end(&self) -> Result<(Connection, FarEnd)> {
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return Err(Error::Invalid(format!(
                "capacity {} is not between 1 and {MAX_CAPACITY} bytes",
                self.capacity
            )));
        }
        let capacity = self.capacity.max(MIN_CAPACITY).next_power_of_two();
        let rings = if self.duplex { 2 } else { 1 };
        let layout = Layout::new(rings, capacity).expect("checked above");
        let region = Region::create(layout)?;
        let (data0, data1) = Doorbell::pair()?;
        let (space0, space1) = Doorbell::pair()?;
        let shared = Arc::new(Shared { region });
        let end0 = Connection::new(Endpoint::new(shared.clone(), 0, data0, space0));
        if end0.readable() {
            end0.set_max_message_size(self.max_message)?;
        }
        let far = FarEnd {
            shared,
            data: data1,
            space: space1,
        };
        Ok((end0, far))
    }
}

/// End 1 of a new pipe before it is an end anywhere: the region and the end's two
/// doorbells. Dropping it closes this process's copies (and so, if they were never
/// passed on, tells end 0 that the other end is gone).
pub(crate) struct FarEnd {
    pub shared: Arc<Shared>,
    pub data: Doorbell,
    pub space: Doorbell,
}

impl FarEnd {
    /// The three descriptors another process needs: the region's memfd and the two
    /// doorbells, in that order.
    pub(crate) fn fds(&self) -> [BorrowedFd<'_>; 3] {
        [self.shared.region.memfd(), self.data.fd(), self.space.fd()]
    }
}
