//! Puts and gets for tokio: each try is the non-blocking one, made in the task; only
//! the wait between two tries runs on tokio's blocking pool, and it takes nothing (a nap
//! on the wake-up word a put or get bumps), so dropping the future loses nothing.
//!
//! No wake-up is lost: the task counts itself as a waiter and reads the word before it
//! tries, so a put (or get) published after the try sees the count, bumps the word and
//! ends the nap (or the nap finds the word moved and does not start). A nap lasts at most
//! [`LOOK_AGAIN`]: a try can also fail because another process holds the turn, and
//! handing the turn over bumps nothing.
//!
//! A message in fragments is the exception on each side. Its put runs whole on the
//! blocking pool (it holds the producers' turn across many waits); dropping the future
//! takes it back (a `Cancel`) unless it is already complete. Its get, once the try has
//! begun it, reads it to its end inside the task, as a blocking get would.

use crate::buffers::{Parts, Scratch};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::queue::lock::{sleep_while, LOOK_AGAIN};
use crate::queue::Queue;
use crate::typed::{serialize, Message};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;

/// This task counted among a side's waiters (so that the other side bumps and wakes the
/// word), until dropped.
struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    fn count(waiters: &'a AtomicU32) -> Waiting<'a> {
        waiters.fetch_add(1, SeqCst);
        // Our count before our try's look at the ring; the other side's publish before
        // its look at the count (`wake.rs`).
        fence(SeqCst);
        Waiting(waiters)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// Which of the control page's wake-up words a nap is on.
#[derive(Clone, Copy)]
enum Word {
    Data,
    Space,
}

impl Queue {
    /// [`get_bytes`](Queue::get_bytes) for tokio: waits without blocking the executor's
    /// thread. Cancel-safe: a future dropped before it returned took no message.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let q = shmpipe::Queue::new()?;
    /// let producer = q.clone();
    /// let put = tokio::spawn(async move { producer.put_bytes_async(b"spam").await });
    /// assert_eq!(q.get_bytes_async().await?, b"spam");
    /// put.await.unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_bytes_async(&self) -> Result<Vec<u8>> {
        self.retry(Word::Data, || self.try_get_bytes()).await
    }

    /// [`put_bytes`](Queue::put_bytes) for tokio: waits for room without blocking the
    /// executor's thread. Cancel-safe: a future dropped before it returned put nothing
    /// (a message in fragments, put on tokio's blocking pool, is taken back unless it was
    /// complete).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let q = shmpipe::Queue::with_capacity(4096)?;
    /// let getter = q.clone();
    /// let got = tokio::spawn(async move { getter.get_bytes_async().await });
    /// // Longer than the queue: it goes in fragments as the getter takes them.
    /// q.put_bytes_async(&[7; 10_000]).await?;
    /// assert_eq!(got.await.unwrap()?, vec![7; 10_000]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_bytes_async(&self, msg: &[u8]) -> Result<()> {
        if msg.len() <= self.__whole_max() {
            return self.retry(Word::Space, || self.try_put_bytes(msg)).await;
        }
        let abandoned = Arc::new(AtomicBool::new(false));
        struct Abandon(Arc<AtomicBool>);
        impl Drop for Abandon {
            fn drop(&mut self) {
                self.0.store(true, Relaxed);
            }
        }
        let _on_drop = Abandon(abandoned.clone());
        let (q, msg) = (self.clone(), msg.to_vec());
        tokio::task::spawn_blocking(move || {
            let mut side = q.inner.producer.take(Deadline::Never)?;
            q.put_from(
                &mut side,
                Parts::new(&[&msg]),
                Deadline::Never,
                Some(&abandoned),
            )
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
    }

    /// [`get`](Queue::get) for tokio, cancel-safe as
    /// [`get_bytes_async`](Queue::get_bytes_async).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let q = shmpipe::Queue::new()?;
    /// q.put_async(&(1u32, 2u64)).await?;
    /// assert_eq!(q.get_async::<(u32, u64)>().await?, (1, 2));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_async<T: Message>(&self) -> Result<T> {
        self.retry(Word::Data, || self.try_get::<T>()).await
    }

    /// [`put`](Queue::put) for tokio, cancel-safe as
    /// [`put_bytes_async`](Queue::put_bytes_async). The value is serialized once, before
    /// the first try.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> shmpipe::Result<()> {
    /// let q = shmpipe::Queue::new()?;
    /// q.put_async(&String::from("eggs")).await?;
    /// assert_eq!(q.get::<String>()?, "eggs");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_async<T: Message>(&self, value: &T) -> Result<()> {
        let bytes = serialize(value, &Scratch::default())?;
        self.put_bytes_async(&bytes).await
    }

    /// Runs `attempt` (a non-blocking put or get) until it does not find the queue full
    /// (or empty, or the turn held), napping on `word` between two tries.
    async fn retry<T>(&self, word: Word, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
        let ctl = self.control();
        let (seq, waiters) = match word {
            Word::Data => (&ctl.data_seq, &ctl.data_waiters),
            Word::Space => (&ctl.space_seq, &ctl.space_waiters),
        };
        loop {
            let seen = seq.load(SeqCst);
            let _waiting = Waiting::count(waiters);
            match attempt() {
                Err(Error::WouldBlock) => {}
                other => return other,
            }
            let q = self.clone();
            tokio::task::spawn_blocking(move || {
                let ctl = q.control();
                let seq = match word {
                    Word::Data => &ctl.data_seq,
                    Word::Space => &ctl.space_seq,
                };
                sleep_while(seq, seen, LOOK_AGAIN)
            })
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))??;
        }
    }
}
