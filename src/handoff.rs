//! Handing an end to a child started with `std::process::Command` (exec), and taking it
//! up in the child. (`fork` needs nothing: the child inherits the end as it is.)
//!
//! The parent lets the end's three descriptors (the region's memfd and the end's two
//! doorbell sockets) survive `exec` in that one child, by clearing their close-on-exec
//! flag between fork and exec, and names them in an environment variable together with
//! each one's identity (device and inode). The child checks everything it can before it
//! takes ownership of anything, because the variable may be stale (inherited by a
//! grandchild whose numbers now mean other files), forged, or simply wrong.

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::queue::Queue;
use crate::shm::doorbell::Doorbell;
use crate::shm::endpoint::{Endpoint, Shared};
use crate::shm::layout::Layout;
use crate::shm::region::Region;
use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::{Arc, Mutex};

const TAG: &str = "shmpipe2";

/// Keys already taken up by `from_parent` in this process (and the lock that stops two
/// threads taking the same key at once).
static CLAIMED: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// A descriptor as named in the variable: its number and the identity of its file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Named {
    fd: RawFd,
    dev: u64,
    ino: u64,
}

impl Named {
    /// `fd/dev/ino`, as a variable names one descriptor.
    fn encode(self) -> String {
        format!("{}/{}/{}", self.fd, self.dev, self.ino)
    }

    fn decode(s: &str) -> Option<Named> {
        let mut it = s.split('/');
        let n = Named {
            fd: it.next()?.parse().ok().filter(|&fd: &RawFd| fd >= 0)?,
            dev: it.next()?.parse().ok()?,
            ino: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(n)
    }
}

/// The descriptors that make up one end, in the order they are named.
#[derive(Debug, PartialEq, Eq)]
struct Fds {
    end: usize,
    memfd: Named,
    data: Named,
    space: Named,
}

impl Fds {
    fn of(ep: &Endpoint) -> Result<Fds> {
        ep.whole()?;
        let bells = ep.bells();
        Ok(Fds {
            end: ep.end,
            memfd: named(ep.shared.region.memfd().as_raw_fd())?,
            data: named(bells.data.fd().as_raw_fd())?,
            space: named(bells.space.fd().as_raw_fd())?,
        })
    }

    fn all(&self) -> [Named; 3] {
        [self.memfd, self.data, self.space]
    }

    fn encode(&self) -> String {
        let [m, d, s] = self.all().map(Named::encode);
        format!("{TAG}:{}:{m}:{d}:{s}", self.end)
    }

    fn decode(s: &str) -> Option<Fds> {
        let mut parts = s.split(':');
        if parts.next()? != TAG {
            return None;
        }
        let end = parts.next()?.parse().ok().filter(|&e: &usize| e < 2)?;
        let mut named = || Named::decode(parts.next()?);
        let (memfd, data, space) = (named()?, named()?, named()?);
        if parts.next().is_some() {
            return None;
        }
        Some(Fds {
            end,
            memfd,
            data,
            space,
        })
    }
}

fn named(fd: RawFd) -> Result<Named> {
    let st = crate::sys::fstat_raw(fd).ok_or_else(std::io::Error::last_os_error)?;
    Ok(Named {
        fd,
        dev: st.st_dev,
        ino: st.st_ino,
    })
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
    /// open until the child is spawned (otherwise `spawn` fails with `EBADF`, rather
    /// than hand the child whatever has taken the end's descriptor numbers since); close it
    /// afterwards if the parent has no more use for it (EOF comes only when every copy
    /// is closed).
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
        let ep = shm_end(self)?;
        check_key(key)?;
        let bells = ep.bells();
        let fds = Fds::of(ep)?;
        cmd.env(key, fds.encode());
        let numbers = fds.all().map(|n| n.fd);
        // Weak references: the command must not keep the end open (that would delay the
        // EOF of whoever waits for this end to close), but the child must know whether
        // the end still existed when it was forked. If it did, the numbers are its
        // descriptors in the child's copy of the table; if not, they may name anything.
        let (region, bells) = (Arc::downgrade(&ep.shared), Arc::downgrade(bells));
        let alive = move || region.strong_count() > 0 && bells.strong_count() > 0;
        keep_in_child(cmd, numbers.to_vec(), alive);
        Ok(())
    }

    /// In a child started by a parent that called
    /// [`pass_to_child`](Connection::pass_to_child) with the same `key`, takes up the end
    /// the parent passed. Each key can be taken once per process. The variable is left
    /// in the environment (changing it while other threads run is unsound); the child's
    /// own children inherit it, but what it names is closed on their `exec`, and their
    /// `from_parent` refuses it.
    ///
    /// Nothing is taken over until every descriptor the variable names has been checked:
    /// open, not close-on-exec (a descriptor the parent passed never is; one that this
    /// process opened itself is, and belongs to other code), the very file the parent
    /// named (device and inode), and of the right kind: a sealed memfd holding a shmpipe
    /// region whose geometry matches its size, and two connected Unix stream sockets. So
    /// a stale, forged or mistaken variable gives an error and closes nothing.
    ///
    /// # Errors
    /// [`Error::Invalid`] if the variable is missing, malformed or already taken, or
    /// names descriptors that fail a check.
    ///
    /// ```no_run
    /// let conn = shmpipe::Connection::from_parent("MY_PIPE")?;
    /// let work = conn.recv_bytes()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn from_parent(key: &str) -> Result<Connection> {
        let mut claimed = claim(key)?;
        let value = std::env::var(key)
            .map_err(|_| Error::Invalid(format!("no connection passed under {key:?}")))?;
        let fds = Fds::decode(&value)
            .ok_or_else(|| Error::Invalid(format!("{key:?} does not name a shmpipe end")))?;
        check_fds(&fds)?;
        claimed
            .get_or_insert_with(HashSet::new)
            .insert(key.to_string());
        // The variable stays: changing the environment while another thread may read it
        // is undefined behaviour (a Python host has threads). A child of ours that
        // inherits it finds numbers that are closed, other files, or close-on-exec, and
        // `check_fds` refuses them all (see DESIGN.md, "Trust").
        // SAFETY: each descriptor is open, is the file the parent named, and was left
        // open across exec for this process (it is not close-on-exec, which every
        // descriptor Rust's standard library and shmpipe open is); the claim above makes
        // sure no other call in this process takes them too. So we may own them.
        let own = |n: Named| unsafe { OwnedFd::from_raw_fd(n.fd) };
        let [memfd, data, space] = fds.all().map(own);
        take_end(fds.end, memfd, data, space)
    }
}

/// What `pass_to_child` puts in the child's environment for `conn`, and the descriptors
/// it names, for a child started by other means (which must keep those descriptors
/// open, at the same numbers, across its exec).
pub(crate) fn env_value(conn: &Connection) -> Result<(String, [RawFd; 3])> {
    let fds = Fds::of(shm_end(conn)?)?;
    Ok((fds.encode(), fds.all().map(|n| n.fd)))
}

/// The shared-memory end of `conn`: the only kind that can be passed this way.
fn shm_end(conn: &Connection) -> Result<&Endpoint> {
    conn.transport()?.shm().ok_or_else(|| {
        Error::Invalid("only a shared-memory connection can be passed to a child this way".into())
    })
}

/// Makes `end` of a pipe from descriptors received from another process (over a socket,
/// or duplicated by Python's `multiprocessing`), checking what it can: the memfd holds a
/// region sealed against resizing whose size matches its header, the doorbells are
/// connected Unix stream sockets. If anything is wrong they are all disposed of on the
/// closer thread (closing what another process made can block: see [`crate::sys`]).
pub(crate) fn take_end(
    end: usize,
    memfd: OwnedFd,
    data: OwnedFd,
    space: OwnedFd,
) -> Result<Connection> {
    // The header is read once, here: the layout checked is the layout mapped.
    let layout = match check_end(end, &memfd, &data, &space) {
        Ok(layout) => layout,
        Err(e) => {
            crate::sys::dispose([memfd, data, space]);
            return Err(e);
        }
    };
    let region = Region::map(memfd, layout)?;
    let (data, space) = (Doorbell::adopt(data), Doorbell::adopt(space));
    let shared = Arc::new(Shared { region });
    Ok(Connection::new(Endpoint::new(shared, end, data, space)))
}

fn check_end(end: usize, memfd: &OwnedFd, data: &OwnedFd, space: &OwnedFd) -> Result<Layout> {
    if end > 1 {
        return Err(Error::Invalid(format!("there is no end {end}")));
    }
    let layout = Region::check(memfd.as_fd())?;
    for (fd, what) in [(data, "data"), (space, "space")] {
        Doorbell::check(fd.as_fd())
            .map_err(|why| Error::Invalid(format!("the {what} doorbell {why}")))?;
    }
    for fd in [memfd, data, space] {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
    }
    Ok(layout)
}

/// Checks every descriptor the variable names without taking ownership of any: the
/// identity checks, then what each must be.
fn check_fds(fds: &Fds) -> Result<()> {
    check_named(&fds.all())?;
    let bad = |fd: RawFd, what: &str| Error::Invalid(format!("descriptor {fd} {what}"));
    let borrow = |fd: RawFd| {
        // SAFETY: the number is open (checked above) and stays open for the duration of
        // the check, which takes no ownership.
        unsafe { BorrowedFd::borrow_raw(fd) }
    };
    Region::check(borrow(fds.memfd.fd))?;
    for n in [fds.data, fds.space] {
        Doorbell::check(borrow(n.fd)).map_err(|why| bad(n.fd, &why))?;
    }
    Ok(())
}

/// What every descriptor a variable names must be, whatever it is for: distinct, open,
/// the very file the parent named, and not close-on-exec (passed to us, not opened here).
fn check_named(all: &[Named]) -> Result<()> {
    let distinct: HashSet<RawFd> = all.iter().map(|n| n.fd).collect();
    if distinct.len() != all.len() {
        return Err(Error::Invalid("descriptors are repeated".into()));
    }
    let bad = |fd: RawFd, what: &str| Error::Invalid(format!("descriptor {fd} {what}"));
    for &n in all {
        let st = crate::sys::fstat_raw(n.fd).ok_or_else(|| bad(n.fd, "is not open"))?;
        if (st.st_dev, st.st_ino) != (n.dev, n.ino) {
            return Err(bad(n.fd, "is not the file the parent passed"));
        }
        if crate::sys::is_cloexec(n.fd) != Some(false) {
            return Err(bad(
                n.fd,
                "is close-on-exec: it was opened in this process, not passed to it",
            ));
        }
    }
    Ok(())
}

/// The tag of a queue's variable: `shmpipeq1:ring:control`, each `fd/dev/ino`.
const QUEUE_TAG: &str = "shmpipeq1";

fn encode_queue(ring: Named, control: Named) -> String {
    let [r, c] = [ring, control].map(Named::encode);
    format!("{QUEUE_TAG}:{r}:{c}")
}

fn decode_queue(s: &str) -> Option<(Named, Named)> {
    let mut parts = s.split(':');
    if parts.next()? != QUEUE_TAG {
        return None;
    }
    let mut named = || Named::decode(parts.next()?);
    let (ring, control) = (named()?, named()?);
    parts.next().is_none().then_some((ring, control))
}

/// Takes the key in this process, once.
fn claim(key: &str) -> Result<std::sync::MutexGuard<'static, Option<HashSet<String>>>> {
    check_key(key)?;
    let claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
    if claimed.as_ref().is_some_and(|c| c.contains(key)) {
        return Err(Error::Invalid(format!("{key:?} was already taken up")));
    }
    Ok(claimed)
}

/// Keeps `numbers` open across the exec of `cmd`'s child, if `alive` says that what they
/// belong to still existed when the child was forked (else `spawn` fails with `EBADF`).
fn keep_in_child(
    cmd: &mut Command,
    numbers: Vec<RawFd>,
    alive: impl Fn() -> bool + Send + Sync + 'static,
) {
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe functions may be called; `alive` reads reference counts (plain
    // atomic loads), then fcntl(2); nothing allocates.
    unsafe {
        cmd.pre_exec(move || {
            if !alive() {
                // Only an errno crosses back to the parent's `spawn`.
                return Err(std::io::Error::from_raw_os_error(libc::EBADF));
            }
            for &fd in &numbers {
                crate::sys::keep_across_exec(fd)?;
            }
            Ok(())
        });
    }
}

impl Queue {
    /// Arranges for `cmd`'s child to inherit this queue, as
    /// [`Connection::pass_to_child`] does for a pipe end: its two descriptors stay open
    /// across `exec` in that child only, and the environment variable `key` names them
    /// for [`from_parent`](Queue::from_parent). Keep the queue until the child is spawned.
    ///
    /// # Errors
    /// [`Error::Invalid`] if `key` cannot be an environment variable name.
    ///
    /// ```no_run
    /// use std::process::Command;
    /// let q = shmpipe::Queue::new()?;
    /// let mut cmd = Command::new("my-worker");
    /// q.pass_to_child(&mut cmd, "MY_QUEUE")?;
    /// let mut child = cmd.spawn()?;
    /// q.put_bytes(b"work")?;
    /// # child.wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pass_to_child(&self, cmd: &mut Command, key: &str) -> Result<()> {
        check_key(key)?;
        let (ring, control) = self.__fds();
        let (ring, control) = (named(ring.as_raw_fd())?, named(control.as_raw_fd())?);
        cmd.env(key, encode_queue(ring, control));
        let alive = self.weak();
        keep_in_child(cmd, vec![ring.fd, control.fd], move || {
            alive.strong_count() > 0
        });
        Ok(())
    }

    /// In a child started by a parent that called [`pass_to_child`](Queue::pass_to_child)
    /// with the same `key`, takes up the queue it passed. Each key can be taken once per
    /// process; nothing is taken over until both descriptors pass the checks
    /// [`Connection::from_parent`] makes (open, the files the parent named, not
    /// close-on-exec, a queue's ring and control page).
    ///
    /// # Errors
    /// [`Error::Invalid`] if the variable is missing, malformed or already taken, or
    /// names descriptors that fail a check.
    ///
    /// ```no_run
    /// let q = shmpipe::Queue::from_parent("MY_QUEUE")?;
    /// let work = q.get_bytes()?;
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn from_parent(key: &str) -> Result<Queue> {
        let mut claimed = claim(key)?;
        let value = std::env::var(key)
            .map_err(|_| Error::Invalid(format!("no queue passed under {key:?}")))?;
        let (ring, control) = decode_queue(&value)
            .ok_or_else(|| Error::Invalid(format!("{key:?} does not name a shmpipe queue")))?;
        check_named(&[ring, control])?;
        // SAFETY: as in `Connection::from_parent`: each descriptor is open, the file the
        // parent named, left open across exec for this process, and claimed once here.
        let own = |n: Named| unsafe { OwnedFd::from_raw_fd(n.fd) };
        let (ring_fd, control_fd) = (own(ring), own(control));
        for fd in [&ring_fd, &control_fd] {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        }
        let q = Queue::__from_fds(ring_fd, control_fd)?;
        claimed
            .get_or_insert_with(HashSet::new)
            .insert(key.to_string());
        Ok(q)
    }
}

/// A doorbell must be a connected Unix stream socket.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_round_trips_and_rejects_garbage() {
        let n = |fd, dev, ino| Named { fd, dev, ino };
        let fds = Fds {
            end: 1,
            memfd: n(3, 10, 11),
            data: n(4, 12, 13),
            space: n(5, 12, 14),
        };
        assert_eq!(Fds::decode(&fds.encode()), Some(fds));
        for bad in [
            "",
            "shmpipe1:0:3:4:5,6",
            "shmpipe2:2:3/1/1:4/1/1:5/1/1",
            "shmpipe2:0:-3/1/1:4/1/1:5/1/1",
            "shmpipe2:0:3/1/1:4/1/1",
            "shmpipe2:0:3/1/1:4/1/1:5/1/1:6/1/1",
            "shmpipe2:0:3/1:4/1/1:5/1/1",
            "shmpipe2:0:3/1/1/1:4/1/1:5/1/1",
        ] {
            assert_eq!(Fds::decode(bad), None, "{bad}");
        }
    }
}
