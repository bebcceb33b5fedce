//! Port of `003_1cccc3311fb70cca.txt`, program 2: a child process sends 'Hello' through
//! the pipe and the parent prints it.
//!
//! Run with `cargo run --release --example hello_process`.

mod process;
use process::{join, spawn};

use shmpipe::Connection;

fn func(conn: &Connection) -> shmpipe::Result<()> {
    conn.send(&String::from("Hello"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (conn1, conn2) = shmpipe::pipe(true)?;
    let child = spawn(|| func(&conn1))?;
    println!("{}", conn2.recv::<String>()?);
    join(child)?;
    Ok(())
}
