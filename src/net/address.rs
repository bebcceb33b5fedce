//! [`Address`]: where a [`Listener`](crate::Listener) listens and a
//! [`Client`](crate::Client) connects, with Python's rules for telling the kinds apart.

use crate::error::{Error, Result};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// An address to listen on or connect to, as Python's `multiprocessing.connection`
/// takes them: a string is a Unix socket path (one starting with `'\0'` names a Linux
/// abstract socket), a host and port is TCP.
///
/// **The classic mistake**: as in Python, *every* string converted with `From`/`Into`
/// is a path, `"127.0.0.1:6000"` too (it names a socket file called `127.0.0.1:6000`).
/// For TCP give a [`SocketAddr`] or an `(ip, port)` pair, or `parse()` a string:
/// [`FromStr`] reads `"/path"` (or any string with a `/`) as a path, `"@name"` as an
/// abstract name and `"host:port"` as TCP.
///
/// ```
/// use shmpipe::Address;
/// use std::net::{Ipv4Addr, SocketAddr};
///
/// assert!(matches!(Address::from("/tmp/feed.sock"), Address::Unix(_)));
/// assert!(matches!(Address::from("\0feed"), Address::Abstract(name) if name == b"feed"));
/// // A string given to `from` is always a path...
/// assert!(matches!(Address::from("127.0.0.1:6000"), Address::Unix(_)));
/// // ...while `parse` and tuples mean TCP.
/// let tcp: Address = "127.0.0.1:6000".parse()?;
/// assert_eq!(tcp, Address::from((Ipv4Addr::LOCALHOST, 6000)));
/// assert_eq!(tcp.to_string(), "127.0.0.1:6000");
/// assert_eq!("@feed".parse::<Address>()?, Address::Abstract(b"feed".to_vec()));
/// # Ok::<(), shmpipe::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix socket file (Python: a `str` path).
    Unix(PathBuf),
    /// A Linux abstract Unix socket: a name in the network namespace, no file (Python:
    /// a `str` starting with `'\0'`; here the name without that byte).
    Abstract(Vec<u8>),
    /// TCP (Python: a `(host, port)` tuple).
    Tcp(SocketAddr),
}

impl Address {
    /// Whether this is a Unix socket (a path or an abstract name), where two shmpipe
    /// processes upgrade to shared memory.
    ///
    /// ```
    /// assert!(shmpipe::Address::from("/tmp/x.sock").is_unix());
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn is_unix(&self) -> bool {
        !matches!(self, Address::Tcp(_))
    }
}

fn from_path_bytes(bytes: &[u8]) -> Address {
    match bytes.strip_prefix(b"\0") {
        Some(name) => Address::Abstract(name.to_vec()),
        None => Address::Unix(PathBuf::from(std::ffi::OsStr::from_bytes(bytes))),
    }
}

impl From<&str> for Address {
    fn from(s: &str) -> Address {
        from_path_bytes(s.as_bytes())
    }
}

impl From<String> for Address {
    fn from(s: String) -> Address {
        from_path_bytes(s.as_bytes())
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Address {
        from_path_bytes(p.as_os_str().as_bytes())
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Address {
        from_path_bytes(p.as_os_str().as_bytes())
    }
}

impl From<&PathBuf> for Address {
    fn from(p: &PathBuf) -> Address {
        from_path_bytes(p.as_os_str().as_bytes())
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Address {
        Address::Tcp(a)
    }
}

impl From<(IpAddr, u16)> for Address {
    fn from(a: (IpAddr, u16)) -> Address {
        Address::Tcp(a.into())
    }
}

impl From<(Ipv4Addr, u16)> for Address {
    fn from(a: (Ipv4Addr, u16)) -> Address {
        Address::Tcp(a.into())
    }
}

impl From<&Address> for Address {
    fn from(a: &Address) -> Address {
        a.clone()
    }
}

impl fmt::Display for Address {
    /// A path as it is, an abstract name as `@name` (bytes that are not printable
    /// escaped), TCP as `host:port`; what [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "{}", p.display()),
            Address::Abstract(name) => write!(f, "@{}", name.escape_ascii()),
            Address::Tcp(a) => write!(f, "{a}"),
        }
    }
}

impl FromStr for Address {
    type Err = Error;

    /// `"@name"` is an abstract socket, a string with a `/` a path, anything else
    /// `host:port` (a name is resolved; the first address wins).
    fn from_str(s: &str) -> Result<Address> {
        if let Some(name) = s.strip_prefix('@') {
            return Ok(Address::Abstract(name.as_bytes().to_vec()));
        }
        if s.contains('/') {
            return Ok(Address::Unix(PathBuf::from(s)));
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Address::Tcp(a));
        }
        s.to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .map(Address::Tcp)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "{s:?} is neither a path (with a '/'), an abstract name ('@name') nor host:port"
                ))
            })
    }
}
