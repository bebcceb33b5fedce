//! A tokio service and a blocking worker process on one pipe: the parent's tasks send
//! jobs and collect answers concurrently on one end (a task per direction), while the
//! forked child answers them with the blocking API; the answers stop with EOF.
//!
//! Run with `cargo run --release --features tokio --example tokio_pipe`.

mod process;

use shmpipe::{AsyncConnection, Error};
use std::sync::Arc;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut ends = Some(shmpipe::pipe(true)?);
    // Fork before any runtime exists: the child is a plain blocking worker.
    let worker = process::spawn(|| {
        let (parent_end, child_end) = ends.take().expect("both ends");
        drop(parent_end); // the child's copy: EOF must depend on the parent alone
        loop {
            match child_end.recv::<(u32, String)>() {
                Ok((id, text)) => child_end.send(&(id, text.to_uppercase()))?,
                Err(Error::Eof) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    })?;
    let (parent_end, child_end) = ends.take().expect("both ends");
    drop(child_end);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let conn = Arc::new(AsyncConnection::new(parent_end)?);
        let sender = {
            let conn = conn.clone();
            tokio::spawn(async move {
                for (id, word) in ["spam", "eggs", "ham"].into_iter().enumerate() {
                    conn.send(&(id as u32, word.to_string())).await?;
                }
                Ok::<_, Error>(())
            })
        };
        for _ in 0..3 {
            // A receive that takes too long is simply dropped; nothing is lost.
            let answer = tokio::time::timeout(Duration::from_secs(5), conn.recv::<(u32, String)>())
                .await
                .expect("the worker answers")?;
            println!("job {}: {}", answer.0, answer.1);
        }
        sender.await.expect("sender task")?;
        Ok::<_, Error>(())
    })?;
    // The runtime and its connection are gone: the worker sees EOF and exits.
    drop(rt);
    process::join(worker)?;
    Ok(())
}
