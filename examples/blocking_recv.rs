//! Port of `003_1cccc3311fb70cca.txt`, program 3: a child that calls `recv` forever.
//! The parent sends 'Hello 0'..'Hello 4' and the child prints them; in Python the child
//! then blocks in `recv()` for good. To show the problem without hanging, this child
//! polls with a one-second timeout and, when nothing comes, says why and exits.
//!
//! Run with `cargo run --release --example blocking_recv`.

use shmpipe::Connection;
use std::io::Write;
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
