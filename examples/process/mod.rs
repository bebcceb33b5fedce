//! Python's `Process(target=...).start()` and `join()` for the examples: fork, run the
//! target in the child, leave with `_exit`; wait and check the exit status.

use std::io::Write;

/// Like `Process(target=...).start()`: forks, runs `target` in the child, flushes stdout
/// and leaves with `_exit`. Returns the child's pid to the parent.
pub fn spawn(target: impl FnOnce() -> shmpipe::Result<()>) -> std::io::Result<libc::pid_t> {
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
pub fn join(pid: libc::pid_t) -> std::io::Result<()> {
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
