//! Making the sockets: binding a listener (safely: mode, stale files, TCP exposure),
//! connecting a client within a timeout, and naming the peer of an accepted socket.

use crate::error::{Error, Result};
use crate::net::address::Address;
use crate::net::listener::Peer;
use rustix::fs::{FileType, Mode};
use rustix::io::Errno;
use rustix::net::{sockopt, AddressFamily, SocketAddrAny, SocketAddrUnix, SocketFlags, SocketType};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// A new stream socket that refuses passed descriptors and credentials from the start
/// (see [`crate::sys::refuse_ancillary`]): before `connect`, so that no peer can queue
/// any, and before `listen`, which passes the options on to every connection it
/// accepts, even one queued before `accept`.
fn stream_socket(family: AddressFamily) -> Result<OwnedFd> {
    let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    crate::sys::refuse_ancillary(fd.as_fd());
    Ok(fd)
}

fn family_of(a: &SocketAddr) -> AddressFamily {
    if a.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    }
}

fn unix_addr(address: &Address) -> Result<SocketAddrUnix> {
    let too_long = |_| Error::Invalid(format!("{address} is too long for a Unix socket address"));
    match address {
        Address::Unix(p) => SocketAddrUnix::new(p.as_path()).map_err(too_long),
        Address::Abstract(name) => SocketAddrUnix::new_abstract_name(name).map_err(too_long),
        Address::Tcp(_) => unreachable!("callers pass Unix addresses"),
    }
}

/// The socket file a listener created: removed on close by the process that created it,
/// if it is still the same file.
#[derive(Debug)]
pub(crate) struct SocketFile {
    pub path: std::path::PathBuf,
    pub pid: rustix::process::Pid,
    pub dev: u64,
    pub ino: u64,
}

impl SocketFile {
    /// Removes the file, if this process made it and it was not replaced since.
    pub(crate) fn remove(&self) {
        if rustix::process::getpid() != self.pid {
            return;
        }
        if let Ok(st) = rustix::fs::lstat(&self.path) {
            if (st.st_dev, st.st_ino) == (self.dev, self.ino) {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A bound, listening socket.
pub(crate) struct Bound {
    pub fd: OwnedFd,
    /// The address it really has (a TCP port 0 resolved).
    pub address: Address,
    pub file: Option<SocketFile>,
}

/// Binds and listens on `address`. A Unix socket file gets `mode`; a stale one (a socket
/// file nobody accepts on) is replaced, a live one or any other file is `AddrInUse`.
pub(crate) fn listen(address: &Address, mode: u32, backlog: u32) -> Result<Bound> {
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    match address {
        Address::Tcp(a) => {
            let fd = stream_socket(family_of(a))?;
            sockopt::set_socket_reuseaddr(&fd, true)?;
            rustix::net::bind(&fd, a)?;
            rustix::net::listen(&fd, backlog)?;
            let real = SocketAddr::try_from(rustix::net::getsockname(&fd)?)
                .map_err(|_| Error::Invalid("the TCP socket has no IP address".into()))?;
            Ok(Bound {
                fd,
                address: Address::Tcp(real),
                file: None,
            })
        }
        Address::Abstract(_) => {
            let fd = stream_socket(AddressFamily::UNIX)?;
            rustix::net::bind(&fd, &unix_addr(address)?)?;
            rustix::net::listen(&fd, backlog)?;
            Ok(Bound {
                fd,
                address: address.clone(),
                file: None,
            })
        }
        Address::Unix(path) => {
            let fd = stream_socket(AddressFamily::UNIX)?;
            // The file `bind` creates takes the socket's own mode (less the umask): set
            // it first, so that the file is never more open than asked, not even for a
            // moment. The `chmod` after `bind` undoes what the umask took away.
            let mode = Mode::from_raw_mode(mode & 0o7777);
            rustix::fs::fchmod(&fd, mode)?;
            let addr = unix_addr(address)?;
            match rustix::net::bind(&fd, &addr) {
                Err(Errno::ADDRINUSE) if is_stale(path)? => {
                    std::fs::remove_file(path)?;
                    rustix::net::bind(&fd, &addr)?;
                }
                other => other?,
            }
            let st = chmod_socket_file(path, mode)?;
            rustix::net::listen(&fd, backlog)?;
            Ok(Bound {
                fd,
                address: address.clone(),
                file: Some(SocketFile {
                    path: path.clone(),
                    pid: rustix::process::getpid(),
                    dev: st.st_dev,
                    ino: st.st_ino,
                }),
            })
        }
    }
}

/// Gives the socket file `bind` just made at `path` the mode asked for (`bind` took the
/// umask off it), without following a symbolic link: anyone who can write to the
/// directory can replace the file between `bind` and here, and a `chmod` by path would
/// change the mode of whatever a link they put there points to. The file is opened
/// `O_PATH | O_NOFOLLOW`, must be a socket, and is changed through `/proc/self/fd`, which
/// names that very inode. Returns its status, for removing it on close.
fn chmod_socket_file(path: &Path, mode: Mode) -> Result<rustix::fs::Stat> {
    use rustix::fs::{OFlags, CWD};
    let file = rustix::fs::openat(
        CWD,
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&file)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return Err(Error::Invalid(format!(
            "{} was replaced by something other than our socket while binding",
            path.display()
        )));
    }
    rustix::fs::chmod(format!("/proc/self/fd/{}", file.as_raw_fd()), mode)?;
    Ok(st)
}

/// Whether `path` is a socket file that nobody accepts on (left by a crashed listener).
fn is_stale(path: &Path) -> Result<bool> {
    let Ok(st) = rustix::fs::lstat(path) else {
        return Ok(false);
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return Ok(false);
    }
    let probe = stream_socket(AddressFamily::UNIX)?;
    // Non-blocking: a live listener with a full backlog must not hold us up (it is
    // live: EAGAIN counts as in use).
    rustix::io::ioctl_fionbio(&probe, true)?;
    Ok(rustix::net::connect(&probe, &SocketAddrUnix::new(path)?) == Err(Errno::CONNREFUSED))
}

/// Connects to `address`, giving up after `timeout` (`None`: as long as the kernel
/// tries).
pub(crate) fn connect(address: &Address, timeout: Option<Duration>) -> Result<OwnedFd> {
    if timeout == Some(Duration::ZERO) {
        return Err(Error::Invalid("a zero connect timeout".into()));
    }
    let fd = match address {
        Address::Tcp(a) => stream_socket(family_of(a))?,
        _ => stream_socket(AddressFamily::UNIX)?,
    };
    // A blocking connect honours the send timeout, for TCP and for a Unix listener
    // whose backlog is full alike.
    if timeout.is_some() {
        sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, timeout)?;
    }
    let r = match address {
        Address::Tcp(a) => rustix::net::connect(&fd, a),
        _ => rustix::net::connect(&fd, &unix_addr(address)?),
    };
    match r {
        Ok(()) => {}
        Err(Errno::INPROGRESS | Errno::AGAIN) => return Err(Error::Timeout),
        Err(e) => return Err(e.into()),
    }
    if timeout.is_some() {
        sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, None)?;
    }
    if let Address::Tcp(_) = address {
        no_delay(fd.as_fd())?;
    }
    Ok(fd)
}

/// Turns Nagle's algorithm off on a TCP socket (`TCP_NODELAY`). Every message goes out
/// in one `sendmsg`, so holding small ones back gains nothing but batching, and a send
/// followed by another and a wait for the answer would wait up to a delayed-ACK period
/// (40 ms). Streaming 64-byte messages over loopback costs about twice as much per
/// message this way (DESIGN.md, "Connecting by address"); latency stays predictable.
/// Python leaves Nagle on.
pub(crate) fn no_delay(fd: BorrowedFd<'_>) -> Result<()> {
    Ok(sockopt::set_tcp_nodelay(fd, true)?)
}

/// Who is at the other end of an accepted socket.
pub(crate) fn peer_of(fd: BorrowedFd<'_>, tcp: bool) -> Result<Peer> {
    if tcp {
        let addr = rustix::net::getpeername(fd)?
            .and_then(|a: SocketAddrAny| SocketAddr::try_from(a).ok())
            .ok_or_else(|| Error::Invalid("the peer has no IP address".into()))?;
        Ok(Peer::Tcp(addr))
    } else {
        let cred = crate::sys::peer_credentials(fd)?;
        Ok(Peer::Unix {
            pid: cred.pid,
            uid: cred.uid,
            gid: cred.gid,
        })
    }
}

/// Accepts the next connection on a listening socket, retrying what a peer's early
/// hang-up or a signal causes.
pub(crate) fn accept(listening: BorrowedFd<'_>) -> Result<OwnedFd> {
    loop {
        match rustix::net::accept_with(listening.as_fd(), SocketFlags::CLOEXEC) {
            Ok(fd) => return Ok(fd),
            Err(Errno::INTR | Errno::CONNABORTED) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Whoever can write to the directory can swap the socket file for a symbolic link
    /// between `bind` and the `chmod` that follows; the `chmod` must not follow it (a
    /// `chmod` by path would make the link's target as open as the socket was asked to
    /// be), and must not touch anything but a socket.
    #[test]
    fn the_mode_is_set_on_the_socket_file_only_never_through_a_link() {
        let dir = std::env::temp_dir().join(format!("shmpipe-chmod-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let target = dir.join("target");
        std::fs::write(&target, b"secret").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.join("sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let open = Mode::from_raw_mode(0o777);
        assert!(chmod_socket_file(&link, open).is_err());
        assert!(chmod_socket_file(&target, open).is_err(), "not a socket");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A real socket file gets its mode.
        let sock = dir.join("real");
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        chmod_socket_file(&sock, Mode::from_raw_mode(0o640)).unwrap();
        let mode = std::fs::symlink_metadata(&sock)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o640);
        drop(l);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
