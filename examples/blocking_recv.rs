//! Port of `003_1cccc3311fb70cca.txt`, program 3: a child that calls `recv` forever.
//! The parent sends 'Hello 0'..'Hello 4' and the child prints them; in Python the child
//! then blocks in `recv()` for good. To show the problem without hanging, this child
//! polls with a one-second timeout and, when nothing comes, says why and exits.
//!
//! Run with `cargo run --release --example blocking_recv`.

mod process;
use process::{join, spawn};

use shmpipe::Connection;
use std::time::Duration;

fn func(conn: &Connection) -> shmpipe::Result<()> {
    // Python: `while True: print(conn.recv())`
    while conn.poll(Some(Duration::from_secs(1)))? {
        println!("{}", conn.recv::<String>()?);
    }
    println!(
        "no message for 1 s: a plain recv() would block here forever, because no sentinel \
         was sent and the parent's copy of the other end (conn1) is still open"
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (conn1, conn2) = shmpipe::pipe(true)?;
    let child = spawn(|| func(&conn2))?;
    for i in 0..5 {
        conn1.send(&format!("Hello {i}"))?;
    }
    // Like Python at exit, wait for the child, with conn1 still open.
    join(child)?;
    Ok(())
}
