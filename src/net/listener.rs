//! [`Listener`]: accepts connections from unrelated processes, like Python's
//! `multiprocessing.connection.Listener`.

use crate::connection::Connection;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::net::address::Address;
use crate::net::handshake::{self, Terms};
use crate::net::socket_setup::{self, SocketFile};
use crate::shm::layout::DEFAULT_CAPACITY;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::Duration;

/// Who connected: what [`Listener::last_accepted`] returns.
///
/// ```
/// let p = shmpipe::Peer::Unix { pid: 42, uid: 1000, gid: 1000 };
/// assert!(matches!(p.clone(), shmpipe::Peer::Unix { uid: 1000, .. }));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// A process on this machine, as the kernel saw it connect (`SO_PEERCRED`).
    Unix {
        /// Its process id.
        pid: i32,
        /// Its user id.
        uid: u32,
        /// Its group id.
        gid: u32,
    },
    /// A TCP peer's address.
    Tcp(SocketAddr),
}

/// Listens on an [`Address`] and accepts [`Connection`]s from processes that connect
/// with [`Client`](crate::Client) (or with Python's `multiprocessing.connection.Client`).
///
/// On a Unix address, a shmpipe client gets a shared-memory connection, exactly like a
/// [`pipe`](crate::pipe) end; a Python client needs
/// [`python_wire(true)`](ListenerBuilder::python_wire) here, or an authkey on both
/// sides (the handshake then tells them apart). Over TCP, connections speak Python's
/// wire protocol.
///
/// ```
/// use shmpipe::{Client, Listener};
/// let path = std::env::temp_dir().join(format!("shmpipe-doc-{}.sock", std::process::id()));
/// let listener = Listener::bind(&path)?;
/// let client = std::thread::spawn(move || -> shmpipe::Result<()> {
///     let conn = Client::connect(&path)?;
///     conn.send_bytes(b"hello")?;
///     Ok(())
/// });
/// let conn = listener.accept()?;
/// assert!(conn.is_shared_memory());
/// assert_eq!(conn.recv_bytes()?, b"hello");
/// client.join().unwrap()?;
/// # Ok::<(), shmpipe::Error>(())
/// ```
pub struct Listener {
    fd: OwnedFd,
    address: Address,
    terms: Terms,
    handshake_timeout: Duration,
    file: Option<SocketFile>,
    last: Mutex<Option<Peer>>,
    closed: bool,
    /// The process that bound the socket: only its `close` shuts the socket down (a
    /// shutdown acts on the socket itself, in every process that holds a copy).
    owner: rustix::process::Pid,
}

impl Listener {
    /// Listens on `address` with the defaults of [`ListenerBuilder`].
    ///
    /// # Errors
    /// As [`ListenerBuilder::bind`].
    ///
    /// ```
    /// let listener = shmpipe::Listener::bind("\0shmpipe-doc-bind")?;
    /// assert_eq!(listener.address().to_string(), "@shmpipe-doc-bind");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn bind(address: impl Into<Address>) -> Result<Listener> {
        ListenerBuilder::new().bind(address)
    }

    /// A builder, to set an authkey, the socket file's mode and more before binding.
    ///
    /// ```
    /// let listener = shmpipe::Listener::builder().authkey(b"secret").bind("\0shmpipe-doc-builder")?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn builder() -> ListenerBuilder {
        ListenerBuilder::new()
    }

    /// Waits for the next client and returns the connection to it. Several threads may
    /// accept on one listener at once.
    ///
    /// The handshake (authentication, and the move to shared memory) must finish within
    /// the [handshake timeout](ListenerBuilder::handshake_timeout): a client that says
    /// nothing, garbage or too much fails with an error for that one connection, and the
    /// listener carries on. A client that hangs up between two handshake messages is
    /// skipped (one that hangs up inside a message is an error for that connection).
    ///
    /// # Errors
    /// [`Error::Authentication`] when the client does not know the authkey (or the
    /// handshake went wrong); [`Error::Timeout`] when it took too long;
    /// [`Error::Invalid`] when the client spoke another protocol; [`Error::Closed`]
    /// after [`close`](Listener::close); [`Error::Io`].
    ///
    /// ```
    /// use shmpipe::{Client, Listener};
    /// let listener = Listener::bind("\0shmpipe-doc-accept")?;
    /// let t = std::thread::spawn(|| Client::connect("\0shmpipe-doc-accept")?.recv_bytes());
    /// listener.accept()?.send_bytes(b"hi")?;
    /// assert_eq!(t.join().unwrap()?, b"hi");
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn accept(&self) -> Result<Connection> {
        if self.closed {
            return Err(Error::Closed);
        }
        loop {
            let fd = socket_setup::accept(self.fd.as_fd())?;
            let Ok(peer) = socket_setup::peer_of(fd.as_fd(), !self.terms.unix) else {
                continue; // gone already
            };
            if !self.terms.unix {
                socket_setup::no_delay(fd.as_fd())?;
            }
            let deadline = Deadline::after(Some(self.handshake_timeout));
            match handshake::as_listener(fd, &self.terms, deadline) {
                Ok(conn) => {
                    *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(peer);
                    return Ok(conn);
                }
                Err(Error::Eof) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The address listened on; for TCP with port 0, the port the kernel chose.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// let listener = shmpipe::Listener::bind((Ipv4Addr::LOCALHOST, 0))?;
    /// let shmpipe::Address::Tcp(addr) = listener.address() else { unreachable!() };
    /// assert_ne!(addr.port(), 0);
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Who the last successful [`accept`](Listener::accept) connected to (in any
    /// thread); `None` before the first.
    ///
    /// ```
    /// use shmpipe::{Client, Listener, Peer};
    /// let listener = Listener::bind("\0shmpipe-doc-peer")?;
    /// assert!(listener.last_accepted().is_none());
    /// let t = std::thread::spawn(|| Client::connect("\0shmpipe-doc-peer"));
    /// let _conn = listener.accept()?;
    /// let Some(Peer::Unix { pid, .. }) = listener.last_accepted() else { panic!() };
    /// assert_eq!(pid as u32, std::process::id());
    /// t.join().unwrap()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn last_accepted(&self) -> Option<Peer> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops listening: clients can no longer connect, [`accept`](Listener::accept)
    /// returns [`Error::Closed`], and the socket file is removed (by the process that
    /// created it, if it is still the same file). Idempotent; dropping the listener
    /// does the same. Connections already accepted are not affected.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("shmpipe-doc-close-{}.sock", std::process::id()));
    /// let mut listener = shmpipe::Listener::bind(&path)?;
    /// assert!(path.exists());
    /// listener.close();
    /// assert!(!path.exists());
    /// assert!(matches!(listener.accept(), Err(shmpipe::Error::Closed)));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        if let Some(file) = self.file.take() {
            file.remove();
        }
        // Wakes threads blocked in `accept` (they get EINVAL) and refuses new clients; in
        // the process that bound it only, as CPython does its unlinking: a forked worker
        // that closes the listener it inherited must not stop its parent's.
        if rustix::process::getpid() == self.owner {
            let _ = rustix::net::shutdown(&self.fd, rustix::net::Shutdown::Both);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

impl AsFd for Listener {
    /// The listening socket, readable when a client is waiting to be accepted.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Listener {
    /// The listening socket (see [`AsFd`]).
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("closed", &self.closed)
            .finish()
    }
}

/// Configures a [`Listener`].
///
/// ```
/// use std::time::Duration;
/// let listener = shmpipe::Listener::builder()
///     .authkey(b"secret")
///     .handshake_timeout(Duration::from_secs(2))
///     .capacity(1 << 20)
///     .bind("\0shmpipe-doc-listener-builder")?;
/// # Ok::<(), shmpipe::Error>(())
/// ```
#[derive(Clone)]
pub struct ListenerBuilder {
    authkey: Option<Vec<u8>>,
    backlog: u32,
    capacity: usize,
    python_wire: bool,
    mode: u32,
    handshake_timeout: Duration,
    allow_unauthenticated: bool,
}

impl std::fmt::Debug for ListenerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerBuilder")
            .field("authkey", &self.authkey.as_ref().map(|_| "<secret>"))
            .field("backlog", &self.backlog)
            .field("capacity", &self.capacity)
            .field("python_wire", &self.python_wire)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("handshake_timeout", &self.handshake_timeout)
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .finish()
    }
}

impl Default for ListenerBuilder {
    fn default() -> Self {
        ListenerBuilder::new()
    }
}

impl ListenerBuilder {
    /// The defaults: no authkey, backlog 128, 4 MiB rings, shared memory for shmpipe
    /// clients on Unix addresses, socket file mode 0600, handshake timeout 5 s, TCP
    /// only on loopback without an authkey.
    ///
    /// ```
    /// let b = shmpipe::ListenerBuilder::new();
    /// # let _ = b;
    /// ```
    pub fn new() -> ListenerBuilder {
        ListenerBuilder {
            authkey: None,
            backlog: 128,
            capacity: DEFAULT_CAPACITY,
            python_wire: false,
            mode: 0o600,
            handshake_timeout: Duration::from_secs(5),
            allow_unauthenticated: false,
        }
    }

    /// Clients must prove they hold this key (CPython's HMAC challenge, in both
    /// directions), and the listener proves it to them.
    ///
    /// ```
    /// let b = shmpipe::Listener::builder().authkey(b"secret");
    /// # let _ = b;
    /// ```
    pub fn authkey(mut self, key: &[u8]) -> ListenerBuilder {
        self.authkey = Some(key.to_vec());
        self
    }

    /// How many clients may wait to be accepted (128; Python's default is 1).
    ///
    /// ```
    /// let b = shmpipe::Listener::builder().backlog(16);
    /// # let _ = b;
    /// ```
    pub fn backlog(mut self, backlog: u32) -> ListenerBuilder {
        self.backlog = backlog;
        self
    }

    /// Bytes of ring per direction for shared-memory connections (see
    /// [`Builder::capacity`](crate::Builder::capacity)).
    ///
    /// ```
    /// let b = shmpipe::Listener::builder().capacity(64 * 1024);
    /// # let _ = b;
    /// ```
    pub fn capacity(mut self, bytes_per_direction: usize) -> ListenerBuilder {
        self.capacity = bytes_per_direction;
        self
    }

    /// On a Unix address, speak Python's wire protocol instead of moving to shared
    /// memory (needed for Python clients when there is no authkey). TCP always speaks
    /// it.
    ///
    /// ```
    /// let b = shmpipe::Listener::builder().python_wire(true);
    /// # let _ = b;
    /// ```
    pub fn python_wire(mut self, python_wire: bool) -> ListenerBuilder {
        self.python_wire = python_wire;
        self
    }

    /// Permission bits of the Unix socket file (0600: only this user can connect).
    /// The file never has more than these, not even while it is being created.
    ///
    /// ```
    /// let b = shmpipe::Listener::builder().mode(0o660);
    /// # let _ = b;
    /// ```
    pub fn mode(mut self, mode: u32) -> ListenerBuilder {
        self.mode = mode;
        self
    }

    /// How long a client has to finish the handshake (5 s).
    ///
    /// ```
    /// let b = shmpipe::Listener::builder().handshake_timeout(std::time::Duration::from_secs(1));
    /// # let _ = b;
    /// ```
    pub fn handshake_timeout(mut self, timeout: Duration) -> ListenerBuilder {
        self.handshake_timeout = timeout;
        self
    }

    /// Allow TCP on an address other than loopback without an authkey. Python allows
    /// it silently; shmpipe refuses unless told: anyone who can reach the port could
    /// connect.
    ///
    /// ```
    /// let b = shmpipe::Listener::builder().allow_unauthenticated(true);
    /// # let _ = b;
    /// ```
    pub fn allow_unauthenticated(mut self, allow: bool) -> ListenerBuilder {
        self.allow_unauthenticated = allow;
        self
    }

    /// Binds to `address` and listens.
    ///
    /// # Errors
    /// [`Error::Invalid`] for TCP on a non-loopback address without an authkey (see
    /// [`allow_unauthenticated`](ListenerBuilder::allow_unauthenticated)), a zero
    /// handshake timeout, or a path too long for a socket; [`Error::Io`] with
    /// `AddrInUse` when the address is in use (a socket file is replaced only if
    /// nobody listens on it); other [`Error::Io`]s from the system.
    ///
    /// ```
    /// use std::net::Ipv4Addr;
    /// use shmpipe::{Error, Listener};
    /// let open = Listener::builder().bind((Ipv4Addr::UNSPECIFIED, 0));
    /// assert!(matches!(open, Err(Error::Invalid(_))));
    /// let guarded = Listener::builder().authkey(b"k").bind((Ipv4Addr::UNSPECIFIED, 0));
    /// assert!(guarded.is_ok());
    /// ```
    pub fn bind(&self, address: impl Into<Address>) -> Result<Listener> {
        let address = address.into();
        if let Address::Tcp(a) = &address {
            if !a.ip().is_loopback() && self.authkey.is_none() && !self.allow_unauthenticated {
                return Err(Error::Invalid(format!(
                    "listening on {a} without an authkey would let anyone who can reach it \
                     connect: set an authkey, listen on loopback, or allow_unauthenticated(true)"
                )));
            }
        }
        if self.handshake_timeout.is_zero() {
            return Err(Error::Invalid("a zero handshake timeout".into()));
        }
        let bound = socket_setup::listen(&address, self.mode, self.backlog)?;
        Ok(Listener {
            fd: bound.fd,
            terms: Terms {
                authkey: self.authkey.clone(),
                python_wire: self.python_wire,
                unix: bound.address.is_unix(),
                capacity: self.capacity,
            },
            address: bound.address,
            handshake_timeout: self.handshake_timeout,
            file: bound.file,
            last: Mutex::new(None),
            closed: false,
            owner: rustix::process::getpid(),
        })
    }
}
