//! Handing an end to a child started with `std::process::Command` (exec), and taking it
//! up in the child. (`fork` needs nothing: the child inherits the end as it is.)
//!
//! The parent lets the end's descriptors survive `exec` in that one child (it clears
//! their close-on-exec flag between fork and exec) and names them in an environment
//! variable; the child checks every descriptor before it trusts it.

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::shm::endpoint::{Endpoint, RingBells, Shared};
use crate::shm::region::Region;
use crate::shm::wakeup::Doorbell;
use rustix::fs::FileType;
use rustix::io::FdFlags;
use std::collections::HashSet;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Mutex};

const TAG: &str = "shmpipe1";

/// Keys already taken up by `from_parent` in this process: taking one twice would make
/// two owners of the same descriptors.
static CLAIMED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// The descriptors that make up one end, in the order they are named.
struct Fds {
    end: usize,
    memfd: RawFd,
    liveness: RawFd,
    bells: Vec<RawFd>,
}

impl Fds {
    fn all(&self) -> Vec<RawFd> {
        let mut v = vec![self.memfd, self.liveness];
        v.extend(&self.bells);
        v
    }

    fn encode(&self) -> String {
        let bells: Vec<String> = self.bells.iter().map(|fd| fd.to_string()).collect();
        format!(
            "{TAG}:{}:{}:{}:{}",
            self.end,
            self.memfd,
            self.liveness,
            bells.join(",")
        )
    }

    fn decode(s: &str) -> Option<Fds> {
        let mut parts = s.split(':');
        if parts.next()? != TAG {
            return None;
        }
        let end = parts.next()?.parse().ok().filter(|&e: &usize| e < 2)?;
        let memfd = parts.next()?.parse().ok()?;
        let liveness = parts.next()?.parse().ok()?;
        let bells = parts
            .next()?
            .split(',')
            .map(|b| b.parse().ok())
            .collect::<Option<Vec<RawFd>>>()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Fds {
            end,
            memfd,
            liveness,
            bells,
        })
    }
}

fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.contains('=') || key.contains('\0') {
        return Err(Error::Invalid(format!(
            "{key:?} cannot name an environment variable"
        )));
    }
    Ok(())
}

impl Connection {
    /// Arranges for `cmd`'s child to inherit this end: its descriptors stay open across
    /// `exec` in that child only, and the environment variable `key` tells
    /// [`from_parent`](Connection::from_parent) where they are. Keep this connection
    /// open until the child is spawned; close it afterwards if the parent has no more
    /// use for it (EOF comes only when every copy is closed).
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::Invalid`] if `key` cannot be an environment variable
    /// name (empty, or containing `=` or NUL).
    ///
    /// ```no_run
    /// use std::process::Command;
    /// let (parent_end, child_end) = shmpipe::pipe(true)?;
    /// let mut cmd = Command::new("my-worker");
    /// child_end.pass_to_child(&mut cmd, "MY_PIPE")?;
    /// let mut child = cmd.spawn()?;
    /// drop(child_end); // the child holds its own copy now
    /// parent_end.send_bytes(b"work")?;
    /// # child.wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pass_to_child(&self, cmd: &mut Command, key: &str) -> Result<()> {
        let ep = self.inner.as_ref().ok_or(Error::Closed)?;
        check_key(key)?;
        let fds = Fds {
            end: ep.end,
            memfd: ep.shared.region.memfd().as_raw_fd(),
            liveness: ep.liveness().as_raw_fd(),
            bells: ep
                .shared
                .bells
                .iter()
                .flat_map(|b| [b.data.fd().as_raw_fd(), b.space.fd().as_raw_fd()])
                .collect(),
        };
        cmd.env(key, fds.encode());
        let inherit = fds.all();
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe functions may be called; it calls only fcntl(2) and
        // allocates nothing (`inherit` was built before the fork).
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &inherit {
                    let flags = libc::fcntl(fd, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// In a child started by a parent that called
    /// [`pass_to_child`](Connection::pass_to_child) with the same `key`, takes up the end
    /// the parent passed. Each key can be taken once per process.
    ///
    /// Every descriptor named by the variable is checked (a sealed memfd holding a
    /// shmpipe region, a socket, eventfds, all distinct) before any is taken over, so a
    /// stray or forged variable gives an error and closes nothing.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the variable is missing, malformed, already taken, or names
    /// descriptors that are not what they should be.
    ///
    /// ```no_run
    /// let conn = shmpipe::Connection::from_parent("MY_PIPE")?;
    /// let work = conn.recv_bytes()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn from_parent(key: &str) -> Result<Connection> {
        check_key(key)?;
        let value = std::env::var(key)
            .map_err(|_| Error::Invalid(format!("no connection passed under {key:?}")))?;
        let fds = Fds::decode(&value)
            .ok_or_else(|| Error::Invalid(format!("{key:?} does not name a shmpipe end")))?;
        let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
        let claimed = claimed.get_or_insert_with(HashSet::new);
        if claimed.contains(key) {
            return Err(Error::Invalid(format!("{key:?} was already taken up")));
        }
        check_fds(&fds)?;
        claimed.insert(key.to_string());
        // SAFETY: each descriptor is open, of the expected kind, and distinct from the
        // others (checked above); the parent passed them for this process to own, and
        // the claim above makes sure no other call in this process takes them too.
        let own = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(fd) };
        let (memfd, liveness) = (own(fds.memfd), own(fds.liveness));
        let bells: Vec<OwnedFd> = fds.bells.iter().map(|&fd| own(fd)).collect();
        for fd in bells.iter().chain([&memfd, &liveness]) {
            rustix::io::fcntl_setfd(fd, FdFlags::CLOEXEC)?;
        }
        let region = Region::attach(memfd)?;
        if bells.len() != 2 * region.layout().rings {
            return Err(Error::Invalid(format!(
                "{} doorbells for {} rings",
                bells.len(),
                region.layout().rings
            )));
        }
        let mut it = bells.into_iter().map(Doorbell::from_fd);
        let bells = (0..region.layout().rings)
            .map(|_| RingBells {
                data: it.next().unwrap(),
                space: it.next().unwrap(),
            })
            .collect();
        let shared = Arc::new(Shared { region, bells });
        Ok(Connection::new(Endpoint::new(shared, fds.end, liveness)))
    }
}

/// Checks every named descriptor without taking ownership of any.
fn check_fds(fds: &Fds) -> Result<()> {
    let all = fds.all();
    let distinct: HashSet<RawFd> = all.iter().copied().collect();
    if distinct.len() != all.len() || all.iter().any(|&fd| fd < 0) {
        return Err(Error::Invalid(
            "descriptors are repeated or negative".into(),
        ));
    }
    let bad = |fd: RawFd, what: &str| Error::Invalid(format!("descriptor {fd} is not {what}"));
    for &fd in &all {
        // SAFETY: only borrowed for the duration of these checks; fcntl on a closed
        // number fails with EBADF rather than misbehaving.
        let b = unsafe { BorrowedFd::borrow_raw(fd) };
        rustix::io::fcntl_getfd(b).map_err(|_| bad(fd, "open"))?;
    }
    // SAFETY: as above, each is open.
    let borrow = |fd: RawFd| unsafe { BorrowedFd::borrow_raw(fd) };
    rustix::fs::fcntl_get_seals(borrow(fds.memfd)).map_err(|_| bad(fds.memfd, "a memfd"))?;
    let st = rustix::fs::fstat(borrow(fds.liveness))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Socket {
        return Err(bad(fds.liveness, "a socket"));
    }
    for &fd in &fds.bells {
        let link =
            std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|_| bad(fd, "an eventfd"))?;
        if link.as_os_str() != "anon_inode:[eventfd]" {
            return Err(bad(fd, "an eventfd"));
        }
    }
    Ok(())
}
