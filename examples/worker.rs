//! A worker process started safely: the program runs itself again as a child
//! (`current_exe`) and hands it one end of a pipe with `pass_to_child`; no `fork`, no
//! `unsafe`. The parent sends typed jobs, the worker answers each, and stops at EOF.
//!
//! `cargo run --example worker`

use shmpipe::{pipe, Connection, Error};
use std::process::Command;

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug)]
struct Job {
    id: u32,
    name: String,
}

/// The environment variable that carries the worker's end.
const KEY: &str = "WORKER_PIPE";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os(KEY).is_some() {
        return work(Connection::from_parent(KEY)?);
    }
    let (mine, theirs) = pipe(true)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    theirs.pass_to_child(&mut cmd, KEY)?;
    let mut child = cmd.spawn()?;
    drop(theirs); // the child holds its own copy now
    for (id, name) in [(1, "spam"), (2, "eggs")] {
        mine.send(&Job {
            id,
            name: name.into(),
        })?;
        println!("{}", String::from_utf8_lossy(&mine.recv_bytes()?));
    }
    drop(mine); // the worker sees EOF and exits
    child.wait()?;
    Ok(())
}

/// The worker: answers every job until the parent closes its end.
fn work(conn: Connection) -> Result<(), Box<dyn std::error::Error>> {
    loop {
        match conn.recv::<Job>() {
            Ok(job) => conn.send_bytes(format!("job {} done: {}", job.id, job.name).as_bytes())?,
            Err(Error::Eof) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
