//! [`AsyncConnection`]: a [`Connection`] on tokio (feature `tokio`).
//!
//! Every call first tries the ring without waiting, as the blocking calls do; only when
//! that would have to wait does it *announce* that it sleeps (raising the same sleeping
//! flag a blocking call raises), try once more, and then await readiness of its
//! doorbells, registered with tokio's reactor through [`AsyncFd`]. The other side rings
//! only a raised flag, so a busy stream makes no system call and an idle task costs no
//! CPU and no timer. The doorbells also hang up when every copy of the other end is
//! gone, so a task waiting for a message wakes on the peer's death, even by SIGKILL.
//!
//! A connection over a socket (TCP, or Python's wire protocol) instead registers a
//! duplicate of its socket and awaits readable or writable. A dropped send there either
//! sent nothing or is committed whole (see `Connection::send_bytes`): a stream cannot
//! take back the start of a message.
//!
//! The connection sits in a `std::sync::Mutex` that is locked only for one non-blocking
//! attempt at a time, never across an `.await`; so a task can send on an end while
//! another receives on it. Calls in the same direction take turns (a
//! `tokio::sync::Mutex` per direction): each message goes whole to exactly one caller.

use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::shm::doorbell::Drained;
use crate::shm::spin::{pause, ASYNC_LOOKS_PER_YIELD, ASYNC_SPIN_FOR};
use crate::transport::EventSources;
use crate::typed::Message;
use std::os::fd::OwnedFd;
use std::sync::{Mutex, MutexGuard};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};

/// One end of a pipe for tokio: the methods of [`Connection`], as futures.
///
/// It is `Send + Sync` and every future it returns is `Send`, so it can be shared
/// through an `Arc` between tasks on the multi-threaded runtime: one task can send while
/// another receives. Two tasks calling in the same direction at once are served one
/// after the other, each message whole to exactly one of them. The other end may be a
/// blocking [`Connection`] in another process or thread.
///
/// # Cancellation
///
/// Every future may be dropped at any `.await` (by `tokio::time::timeout`, `select!`,
/// or dropping a task) without losing or tearing a message:
/// * a dropped `recv*` future consumed nothing as far as the caller can tell: if it had
///   taken the first fragments of a message longer than the ring, they stay in the
///   connection and the next receive delivers that message whole;
/// * a dropped `send*` future delivered nothing of its message: if it had written some
///   fragments of a message longer than the ring, it takes them back with a cancel
///   record, and the reader drops what it had reassembled.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> shmpipe::Result<()> {
/// let (a, b) = shmpipe::pipe(true)?;
/// let (a, b) = (shmpipe::AsyncConnection::new(a)?, shmpipe::AsyncConnection::new(b)?);
/// a.send_bytes(b"spam").await?;
/// assert_eq!(b.recv_bytes().await?, b"spam");
/// drop(a);
/// assert!(matches!(b.recv_bytes().await, Err(shmpipe::Error::Eof)));
/// # Ok(())
/// # }
/// ```
pub struct AsyncConnection {
    conn: Mutex<Shared>,
    /// Whether the connection was in non-blocking mode before (restored by
    /// `into_inner`).
    was_nonblocking: bool,
    recv_turn: tokio::sync::Mutex<()>,
    send_turn: tokio::sync::Mutex<()>,
    /// The descriptors registered with the reactor.
    readiness: Readiness,
    /// Woken whenever a task drained a doorbell: every waiting task then re-checks.
    drained: tokio::sync::Notify,
}

impl std::fmt::Debug for AsyncConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncConnection")
            .field("was_nonblocking", &self.was_nonblocking)
            .finish_non_exhaustive()
    }
}

/// What a waiting task awaits, by transport.
enum Readiness {
    /// Duplicates of a shared-memory end's doorbells: `data` is rung for messages,
    /// `space` for room; either hangs up when the peer is gone.
    Shm {
        data: AsyncFd<OwnedFd>,
        space: AsyncFd<OwnedFd>,
    },
    /// A duplicate of the connection's socket.
    Socket(AsyncFd<OwnedFd>),
}

/// The connection and the count of doorbell drains, under one lock.
struct Shared {
    conn: Connection,
    /// Bumped by every drain that found bytes or a hang-up. A task about to sleep
    /// compares it with what it saw before its last look at the ring: a change means a
    /// wake-up may have been taken on its behalf, so it looks again instead.
    drains: u64,
}

/// Which way a call waits.
#[derive(Clone, Copy)]
enum Wait {
    /// For a message (the reader's sleeping flag).
    Data,
    /// For room (the writer's).
    Space,
}

impl AsyncConnection {
    /// Wraps `conn` for use from tokio tasks. Must be called inside a tokio runtime with
    /// its I/O driver enabled (`enable_io` or `enable_all`: its reactor watches the end's
    /// descriptors). The connection is switched to
    /// non-blocking mode until [`into_inner`](AsyncConnection::into_inner).
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::Invalid`] outside a tokio runtime; [`Error::Io`] if the
    /// reactor refuses the descriptors.
    ///
    /// ```
    /// let (a, _b) = shmpipe::pipe(true)?;
    /// // No runtime here:
    /// assert!(matches!(shmpipe::AsyncConnection::new(a), Err(shmpipe::Error::Invalid(_))));
    /// # Ok::<(), shmpipe::Error>(())
    /// ```
    pub fn new(conn: Connection) -> Result<AsyncConnection> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Invalid(
                "AsyncConnection::new needs a tokio runtime".into(),
            ));
        }
        let register = |fd: OwnedFd| -> Result<AsyncFd<OwnedFd>> {
            // SAFETY: `fd` is a fresh duplicate that the `AsyncFd` owns until it is
            // dropped; nothing replaces or closes it meanwhile.
            unsafe { AsyncFd::register(fd) }.map_err(|e| Error::Io(e.into_parts().1))
        };
        let readiness = match conn.transport()?.event_sources()? {
            EventSources::Doorbells { data, space } => Readiness::Shm {
                data: register(data)?,
                space: register(space)?,
            },
            EventSources::Socket(sock) => Readiness::Socket(register(sock)?),
        };
        let was_nonblocking = conn.is_nonblocking();
        conn.set_nonblocking(true)?;
        Ok(AsyncConnection {
            conn: Mutex::new(Shared { conn, drains: 0 }),
            was_nonblocking,
            recv_turn: tokio::sync::Mutex::new(()),
            send_turn: tokio::sync::Mutex::new(()),
            readiness,
            drained: tokio::sync::Notify::new(),
        })
    }

    /// The blocking connection back, in the mode it had before.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (a, b) = shmpipe::pipe(true)?;
    /// let a = shmpipe::AsyncConnection::new(a)?;
    /// a.send_bytes(b"x").await?;
    /// let a = a.into_inner();
    /// assert!(!a.is_nonblocking());
    /// assert_eq!(b.recv_bytes()?, b"x");
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_inner(self) -> Connection {
        let conn = self
            .conn
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .conn;
        let _ = conn.set_nonblocking(self.was_nonblocking);
        if let Ok(t) = conn.transport() {
            t.stop_event_driving();
        }
        conn
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic inside an attempt leaves the connection as consistent as any error.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `attempt` (a non-blocking call on the connection) until it does not say
    /// `WouldBlock`, sleeping in between.
    ///
    /// The sleep keeps the blocking wait's handshake: announce (raise the sleeping
    /// flag), look again, and only then sleep until a doorbell is readable; the other
    /// side rings only a raised flag. Doorbells are drained only here, by whichever task
    /// wakes, which then wakes every sleeping task (`drained`); a task about to sleep
    /// first checks that no drain happened since its last look (`drains`), so no task
    /// sleeps through a wake-up another task drained.
    async fn retry<T>(
        &self,
        way: Wait,
        mut attempt: impl FnMut(&Connection) -> Result<T>,
    ) -> Result<T> {
        let (data, space) = match &self.readiness {
            Readiness::Shm { data, space } => (data, space),
            Readiness::Socket(sock) => return self.retry_socket(sock, way, attempt).await,
        };
        loop {
            // One lock per message on a busy stream: look, and if there is something,
            // take it under the same lock.
            let first = {
                let shared = self.lock();
                match way {
                    Wait::Data if !Self::data_ready(&shared.conn) => None,
                    _ => Some(attempt(&shared.conn)),
                }
            };
            match first {
                Some(Err(Error::WouldBlock)) => {}
                Some(other) => return other,
                // Nothing there yet: look for a while before going to sleep.
                None if self.spin_for_data().await => continue,
                None => {}
            }
            // Registered before the look, so that a drain from now on wakes us.
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let seen = {
                let shared = self.lock();
                if let Ok(t) = shared.conn.transport() {
                    // Should the kernel refuse the reader's barrier, that is the limit
                    // DESIGN.md names ("The wake-up protocol").
                    t.announce(matches!(way, Wait::Data));
                }
                let seen = shared.drains;
                match attempt(&shared.conn) {
                    Err(Error::WouldBlock) => seen,
                    other => {
                        Self::lower(&shared.conn, way);
                        return other;
                    }
                }
            };
            if self.lock().drains == seen {
                tokio::select! {
                    r = data.readable() => self.drain(r, true)?,
                    r = space.readable() => self.drain(r, false)?,
                    () = &mut notified => {}
                }
            }
            Self::lower(&self.lock().conn, way);
        }
    }

    /// [`retry`](Self::retry) on a socket: try, and when that would block, await the
    /// socket's readiness and try again, clearing the readiness only after an attempt
    /// made under it found nothing. A receive with the rest of an unfinished send still
    /// to push out also wakes when the socket takes more (see `crate::socket::stream`).
    async fn retry_socket<T>(
        &self,
        sock: &AsyncFd<OwnedFd>,
        way: Wait,
        mut attempt: impl FnMut(&Connection) -> Result<T>,
    ) -> Result<T> {
        loop {
            match attempt(&self.lock().conn) {
                Err(Error::WouldBlock) => {}
                other => return other,
            }
            let flushing = self.lock().conn.has_unsent_output();
            let mut guard = match way {
                Wait::Data if !flushing => sock.readable().await?,
                Wait::Data => tokio::select! {
                    r = sock.readable() => r?,
                    r = sock.writable() => r?,
                },
                Wait::Space => sock.writable().await?,
            };
            match attempt(&self.lock().conn) {
                Err(Error::WouldBlock) => guard.clear_ready(),
                other => return other,
            }
        }
    }

    /// Before a receive that would sleep: look at the ring (memory only, no system call)
    /// for up to [`ASYNC_SPIN_FOR`], yielding to the runtime's other tasks between looks. A
    /// sleep and wake-up through the reactor costs tens of microseconds; in a
    /// conversation the answer usually comes sooner.
    /// Returns whether something turned up.
    async fn spin_for_data(&self) -> bool {
        let until = std::time::Instant::now() + ASYNC_SPIN_FOR;
        while std::time::Instant::now() < until {
            for _ in 0..ASYNC_LOOKS_PER_YIELD {
                pause(1);
                if Self::data_ready(&self.lock().conn) {
                    return true;
                }
            }
            tokio::task::yield_now().await;
        }
        false
    }

    /// Whether a receive would find something to take (a record, or a message half
    /// taken earlier) or an error to report; memory only.
    fn data_ready(conn: &Connection) -> bool {
        conn.transport().map_or(true, |t| t.data_ready())
    }

    fn lower(conn: &Connection, way: Wait) {
        if let Ok(t) = conn.transport() {
            t.lower(matches!(way, Wait::Data));
        }
    }

    /// Drains the doorbell `fd` that `ready` says is readable (through the end's own
    /// socket, the same file: it closes any passed descriptors), counts the drain and
    /// wakes every sleeping task. Readiness is cleared only once the queue is empty, so
    /// a flood cannot make a later ring go unnoticed.
    fn drain(
        &self,
        ready: std::io::Result<AsyncFdReadyGuard<'_, OwnedFd>>,
        data: bool,
    ) -> Result<()> {
        let mut guard = ready?;
        let drained = {
            let mut shared = self.lock();
            let drained = shared.conn.transport()?.drain_doorbell(data)?;
            shared.drains += 1;
            drained
        };
        if drained == Drained::Empty {
            guard.clear_ready();
        }
        self.drained.notify_waiters();
        Ok(())
    }

    /// Sends `buf` as one message, waiting for room as long as needed (see
    /// [`Connection::send_bytes`]).
    ///
    /// Cancel safety: dropping the future before it completes delivers nothing of the
    /// message (see the type's documentation).
    ///
    /// # Errors
    /// As [`Connection::send_bytes`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (a, b) = shmpipe::Builder::new().capacity(4096).build()?;
    /// let (a, b) = (shmpipe::AsyncConnection::new(a)?, shmpipe::AsyncConnection::new(b)?);
    /// // Longer than the ring: it goes in fragments while the reader takes them.
    /// let (sent, got) = tokio::join!(a.send_bytes(&[7; 100_000]), b.recv_bytes());
    /// sent?;
    /// assert_eq!(got?, [7; 100_000]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        let _turn = self.send_turn.lock().await;
        // Progress through a long message, and the guard that takes it back if this
        // future is dropped part-way.
        let mut sending = Sending {
            conn: self,
            total: buf.len(),
            at: 0,
            done: false,
        };
        let result = self
            .retry(Wait::Space, |c| {
                c.transport()?.send_some(buf, &mut sending.at)
            })
            .await;
        sending.done = result.is_ok() || sending.at == 0;
        result?;
        // Over a socket, the end of the message may still wait in the connection (see
        // `crate::socket::stream`): a send completes when it is all out.
        self.retry(Wait::Space, |c| match c.push_unsent()? {
            true => Ok(()),
            false => Err(Error::WouldBlock),
        })
        .await
    }

    /// Sends `value` as an rkyv archive (see [`Connection::send`]): serialized straight
    /// into the ring when it fits now, otherwise into memory and sent as
    /// [`send_bytes`](AsyncConnection::send_bytes) sends.
    ///
    /// Cancel safety: as `send_bytes`.
    ///
    /// # Errors
    /// As [`Connection::send`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (a, b) = shmpipe::pipe(true)?;
    /// let (a, b) = (shmpipe::AsyncConnection::new(a)?, shmpipe::AsyncConnection::new(b)?);
    /// a.send(&(1u32, String::from("one"))).await?;
    /// assert_eq!(b.recv::<(u32, String)>().await?, (1, "one".to_string()));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send<T: Message>(&self, value: &T) -> Result<()> {
        {
            let _turn = self.send_turn.lock().await;
            match self.lock().conn.send(value) {
                Err(Error::WouldBlock) => {}
                other => return other,
            }
        }
        // The connection's kept buffer, as the blocking `send` uses (a dropped future
        // simply drops it).
        let bytes = crate::typed::serialize(value, &self.lock().conn.scratch.send)?;
        let sent = self.send_bytes(&bytes).await;
        self.lock().conn.scratch.send.give_back(bytes);
        sent
    }

    /// Receives the next message (see [`Connection::recv_bytes`]).
    ///
    /// Cancel safety: dropping the future before it completes loses no message.
    ///
    /// # Errors
    /// As [`Connection::recv_bytes`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (a, b) = shmpipe::pipe(true)?;
    /// let b = shmpipe::AsyncConnection::new(b)?;
    /// let reader = tokio::spawn(async move { b.recv_bytes().await });
    /// a.send_bytes(b"hello")?; // a blocking end works with an async one
    /// assert_eq!(reader.await.unwrap()?, b"hello");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_bytes(&self) -> Result<Vec<u8>> {
        let _turn = self.recv_turn.lock().await;
        self.retry(Wait::Data, |c| c.recv_bytes()).await
    }

    /// Like [`recv_bytes`](AsyncConnection::recv_bytes), refusing a message longer than
    /// `maxlength` (see [`Connection::recv_bytes_max`]).
    ///
    /// Cancel safety: as `recv_bytes`.
    ///
    /// # Errors
    /// As [`Connection::recv_bytes_max`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (a, b) = shmpipe::pipe(true)?;
    /// let b = shmpipe::AsyncConnection::new(b)?;
    /// a.send_bytes(b"too long")?;
    /// assert!(matches!(b.recv_bytes_max(3).await, Err(shmpipe::Error::MessageTooLong { .. })));
    /// assert_eq!(b.recv_bytes_max(8).await?, b"too long");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_bytes_max(&self, maxlength: usize) -> Result<Vec<u8>> {
        let _turn = self.recv_turn.lock().await;
        self.retry(Wait::Data, |c| c.recv_bytes_max(maxlength))
            .await
    }

    /// Receives the next message into `buf` (see [`Connection::recv_bytes_into`]).
    ///
    /// Cancel safety: as `recv_bytes`. (A dropped call may have written into `buf`.)
    ///
    /// # Errors
    /// As [`Connection::recv_bytes_into`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (a, b) = shmpipe::pipe(true)?;
    /// let b = shmpipe::AsyncConnection::new(b)?;
    /// a.send_bytes(b"eggs")?;
    /// let mut buf = [0u8; 16];
    /// let n = b.recv_bytes_into(&mut buf).await?;
    /// assert_eq!(&buf[..n], b"eggs");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        let _turn = self.recv_turn.lock().await;
        self.retry(Wait::Data, |c| c.recv_bytes_into(buf)).await
    }

    /// Receives the next message as a `T` (see [`Connection::recv`]).
    ///
    /// Cancel safety: as `recv_bytes`.
    ///
    /// # Errors
    /// As [`Connection::recv`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (a, b) = shmpipe::pipe(true)?;
    /// let b = shmpipe::AsyncConnection::new(b)?;
    /// a.send(&vec![1u16, 2])?;
    /// assert_eq!(b.recv::<Vec<u16>>().await?, [1, 2]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn recv<T: Message>(&self) -> Result<T> {
        let _turn = self.recv_turn.lock().await;
        self.retry(Wait::Data, |c| c.recv::<T>()).await
    }

    /// Waits until a message or EOF is waiting, consuming nothing: Python's
    /// `poll(None)`.
    ///
    /// Cancel safety: it consumes nothing, so dropping it loses nothing.
    ///
    /// # Errors
    /// [`Error::Closed`], [`Error::NotReadable`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let (a, b) = shmpipe::pipe(true)?;
    /// let b = shmpipe::AsyncConnection::new(b)?;
    /// a.send_bytes(b"x")?;
    /// b.readable().await?;
    /// assert_eq!(b.recv_bytes().await?, b"x");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn readable(&self) -> Result<()> {
        // In turn with the receives: they share the reader's sleeping flag.
        let _turn = self.recv_turn.lock().await;
        // Memory and a look at the doorbells only: no drain, no wait.
        self.retry(Wait::Data, |c| {
            if c.transport()?.readable_now()? {
                Ok(())
            } else {
                Err(Error::WouldBlock)
            }
        })
        .await
    }
}

/// A send in progress: takes back a half-sent long message if the future is dropped.
struct Sending<'a> {
    conn: &'a AsyncConnection,
    total: usize,
    /// Bytes of the message written so far.
    at: usize,
    done: bool,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if self.done || self.at == 0 {
            return;
        }
        let shared = self.conn.lock();
        if let Ok(t) = shared.conn.transport() {
            t.abandon_send(self.total);
        }
    }
}

// `AsyncConnection` is shared between tasks: it must be `Send + Sync`.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<AsyncConnection>();
};
