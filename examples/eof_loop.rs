//! Port of `003_1cccc3311fb70cca.txt`, program 5: the child stops at EOF. Each process
//! closes the end it does not use; the child receives until `recv` fails with EOF
//! (Python's `EOFError`), which comes once the parent closes its `conn1`.
//!
//! Run with `cargo run --release --example eof_loop`.

use shmpipe::{Connection, Error};
use std::io::Write;

fn func(conn1: &mut Connection, conn2: &mut Connection) -> shmpipe::Result<()> {
    conn1.close();
    loop {
        match conn2.recv::<String>() {
            Ok(msg) => println!("{msg}"),
            Err(Error::Eof) => {
                conn2.close();
                break Ok(());
            }
            Err(e) => break Err(e),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut conn1, mut conn2) = shmpipe::pipe(true)?;
    let child = spawn(|| func(&mut conn1, &mut conn2))?;
    conn2.close();
    for i in 0..5 {
        conn1.send(&format!("Hello {i}"))?;
    }
    conn1.close();
    join(child)?;
    Ok(())
}

/// Like `Process(target=...).start()`: forks, runs `target` in the child, flushes stdout
/// and leaves with `_exit`. Returns the child's pid to the parent.
fn spawn(target: impl FnOnce() -> shmpipe::Result<()>) -> std::io::Result<libc::pid_t> {
    // SAFETY: this process is single-threaded, so the child may run any code after fork.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            let code = match target() {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("child: {e}");
                    1
                }
            };
            let _ = std::io::stdout().flush();
            // SAFETY: ends the child at once, without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(pid),
    }
}

/// Like `Process.join()`: waits for the child and fails unless it exited with status 0.
fn join(pid: libc::pid_t) -> std::io::Result<()> {
    let mut status = 0;
    // SAFETY: `pid` is our child and `status` is a valid place for the kernel to write.
    if unsafe { libc::waitpid(pid, &mut status, 0) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "child {pid} failed: status {status:#x}"
        )))
    }
}
