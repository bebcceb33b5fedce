//! [`Client`]: connects to a [`Listener`](crate::Listener) (or to Python's
//! `multiprocessing.connection.Listener`) by address.

use crate::connection::Connection;
use crate::deadline::Deadline;
use crate::error::Result;
use crate::net::address::Address;
use crate::net::handshake::{self, Terms};
use crate::net::socket_setup;
use crate::shm::layout::DEFAULT_CAPACITY;
use std::time::Duration;

/// Connects to a listener, like Python's `multiprocessing.connection.Client`.
///
/// To a shmpipe [`Listener`](crate::Listener) on a Unix address the connection runs on
/// shared memory; over TCP, or with [`python_wire(true)`](ClientBuilder::python_wire),
/// it speaks Python's wire protocol.
///
/// ```
/// use shmpipe::{Client, Listener};
/// let listener = Listener::bind("\0shmpipe-doc-client")?;
/// let t = std::thread::spawn(move || listener.accept()?.recv_bytes());
/// let conn = Client::connect("\0shmpipe-doc-client")?;
/// conn.send_bytes(b"hello")?;
/// assert_eq!(t.join().unwrap()?, b"hello");
/// # Ok::<(), shmpipe::Error>(())
/// ```
#[derive(Debug)]
pub struct Client {
    _private: (),
}

impl Client {
    /// Connects to `address` with the defaults of [`ClientBuilder`].
    ///
    /// # Errors
    /// As [`ClientBuilder::connect`].
    ///
    /// ```
    /// use shmpipe::{Client, Error};
    /// let nobody = Client::connect("/nonexistent/shmpipe.sock");
    /// assert!(matches!(nobody, Err(Error::Io(_))));
    /// ```
    pub fn connect(address: impl Into<Address>) -> Result<Connection> {
        ClientBuilder::new().connect(address)
    }

    /// A builder, to set an authkey, the protocol or a timeout.
    ///
    /// ```
    /// let b = shmpipe::Client::builder().authkey(b"secret");
    /// # let _ = b;
    /// ```
    pub fn builder() -> ClientBuilder {
        ClientBuilder::new()
    }
}

/// Configures a connection made by [`Client`].
///
/// ```
/// use std::time::Duration;
/// let b = shmpipe::Client::builder().authkey(b"secret").timeout(Duration::from_secs(3));
/// # let _ = b;
/// ```
#[derive(Clone, Default)]
pub struct ClientBuilder {
    authkey: Option<Vec<u8>>,
    python_wire: bool,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("authkey", &self.authkey.as_ref().map(|_| "<secret>"))
            .field("python_wire", &self.python_wire)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ClientBuilder {
    /// The defaults: no authkey, shared memory with a shmpipe listener on a Unix
    /// address, no timeout (as Python: the listener may call `accept` late).
    ///
    /// ```
    /// let b = shmpipe::ClientBuilder::new();
    /// # let _ = b;
    /// ```
    pub fn new() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// Prove to the listener that we hold this key, and make it prove it too.
    ///
    /// ```
    /// let b = shmpipe::Client::builder().authkey(b"secret");
    /// # let _ = b;
    /// ```
    pub fn authkey(mut self, key: &[u8]) -> ClientBuilder {
        self.authkey = Some(key.to_vec());
        self
    }

    /// On a Unix address, speak Python's wire protocol rather than ask for shared
    /// memory: needed to reach a Python listener when there is no authkey (with one,
    /// the handshake finds out by itself).
    ///
    /// ```
    /// let b = shmpipe::Client::builder().python_wire(true);
    /// # let _ = b;
    /// ```
    pub fn python_wire(mut self, python_wire: bool) -> ClientBuilder {
        self.python_wire = python_wire;
        self
    }

    /// Give up if connecting and the handshake take longer than this.
    ///
    /// ```
    /// let b = shmpipe::Client::builder().timeout(std::time::Duration::from_secs(1));
    /// # let _ = b;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = Some(timeout);
        self
    }

    /// Connects to `address`.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) when nobody listens there;
    /// [`Error::Authentication`](crate::Error::Authentication) when the keys differ;
    /// [`Error::Timeout`](crate::Error::Timeout) past the timeout;
    /// [`Error::Invalid`](crate::Error::Invalid) when the listener spoke another
    /// protocol (a listener with an authkey, to a client without one, shows as that) or
    /// offered a shared region that fails the checks, and for a zero timeout;
    /// [`Error::Eof`](crate::Error::Eof) when the listener hung up during the handshake
    /// (one without an authkey, to a client with one, does so at its handshake
    /// timeout).
    ///
    /// ```
    /// use shmpipe::{Client, Error, Listener};
    /// let listener = Listener::builder().authkey(b"right").bind("\0shmpipe-doc-wrong-key")?;
    /// let t = std::thread::spawn(move || listener.accept().map(drop));
    /// let wrong = Client::builder().authkey(b"wrong").connect("\0shmpipe-doc-wrong-key");
    /// assert!(matches!(wrong, Err(Error::Authentication(_))));
    /// assert!(matches!(t.join().unwrap(), Err(Error::Authentication(_))));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn connect(&self, address: impl Into<Address>) -> Result<Connection> {
        let address = address.into();
        let deadline = Deadline::after(self.timeout);
        let fd = socket_setup::connect(&address, self.timeout)?;
        let terms = Terms {
            authkey: self.authkey.clone(),
            python_wire: self.python_wire,
            unix: address.is_unix(),
            capacity: DEFAULT_CAPACITY,
        };
        handshake::as_client(fd, &terms, deadline)
    }
}
