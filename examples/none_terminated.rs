//! Port of `003_1cccc3311fb70cca.txt`, program 4: the child stops at a `None` sentinel.
//! The parent sends 'Hello 0'..'Hello 4' and then `None`; the child prints every message
//! until it receives `None` (an `Option<String>` here) and leaves its loop.
//!
//! Run with `cargo run --release --example none_terminated`.

mod process;
use process::{join, spawn};

use shmpipe::Connection;

fn func(conn: &Connection) -> shmpipe::Result<()> {
    // `while True: msg = conn.recv(); if not msg: break`
    while let Some(msg) = conn.recv::<Option<String>>()? {
        println!("{msg}");
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (conn1, conn2) = shmpipe::pipe(true)?;
    let child = spawn(|| func(&conn2))?;
    for i in 0..5 {
        conn1.send(&Some(format!("Hello {i}")))?;
    }
    conn1.send(&None::<String>)?;
    join(child)?;
    Ok(())
}
