//! A Rust child of a Python (or any) parent: takes the end its parent passed under
//! `SHMPIPE_CONN` (Python: `subprocess.Popen(cmd, **conn.popen_kwargs("SHMPIPE_CONN"))`)
//! and echoes every message until EOF.
//!
//! Run by `python/tests/test_processes.py`; by hand:
//!
//! ```text
//! cargo build --example echo_child
//! python3 -c 'import shmpipe, subprocess
//! a, b = shmpipe.Pipe()
//! p = subprocess.Popen(["target/debug/examples/echo_child"], **b.popen_kwargs("SHMPIPE_CONN"))
//! b.close(); a.send_bytes(b"hi"); print(a.recv_bytes()); a.close(); p.wait()'
//! ```

fn main() -> shmpipe::Result<()> {
    let conn = shmpipe::Connection::from_parent("SHMPIPE_CONN")?;
    loop {
        match conn.recv_bytes() {
            Ok(m) => conn.send_bytes(&m)?,
            Err(shmpipe::Error::Eof) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}
