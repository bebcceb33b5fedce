//! Port of `000_9aa813b95f1a9493.txt`, example 1: `proc1` sends 0, 1, 2, ... on one end
//! of a duplex pipe and `proc2` prints what it receives, each in its own process.
//!
//! The Python runs forever; this port sends 10 messages, sleeps 100 ms instead of 1 s,
//! and stops `proc2` at EOF. EOF needs every copy of `pipe1` closed, so, unlike the
//! Python, `proc2` and the parent close the copies of `pipe1` they inherited (and,
//! symmetrically, `proc1` and the parent close `pipe2`).
//!
//! Run with `cargo run --release --example proc1_proc2`.

mod process;
use process::{join, spawn};

use shmpipe::{Connection, Error};
use std::thread::sleep;
use std::time::Duration;

/// Sends data.
fn proc1(pipe: &Connection) -> shmpipe::Result<()> {
    for i in 0..10i64 {
        println!("send: {i}");
        pipe.send(&i)?;
        sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Receives data.
fn proc2(pipe: &Connection) -> shmpipe::Result<()> {
    loop {
        match pipe.recv::<i64>() {
            Ok(i) => println!("proc2 recv: {i}"),
            Err(Error::Eof) => return Ok(()),
            Err(e) => return Err(e),
        }
        sleep(Duration::from_millis(100));
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut pipe1, mut pipe2) = shmpipe::pipe(true)?;
    let p1 = spawn(|| {
        pipe2.close();
        proc1(&pipe1)
    })?;
    let p2 = spawn(|| {
        pipe1.close();
        proc2(&pipe2)
    })?;
    drop((pipe1, pipe2));
    join(p1)?;
    join(p2)?;
    Ok(())
}
