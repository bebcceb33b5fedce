//! A Rust `Listener` serving a Python program that uses nothing but
//! `multiprocessing.connection.Client` (`examples/python_interop.py`).
//!
//! Run with `cargo run --release --example python_interop` (needs `python3`).
//!
//! With an authkey on both sides the handshake shows that the client is Python, so the
//! listener speaks Python's wire protocol to it (a shmpipe client on the same address
//! would get shared memory). Without an authkey, a listener serving Python clients on a
//! Unix path needs `.python_wire(true)`; over TCP it always speaks Python's protocol.

use shmpipe::Listener;
use std::process::Command;

/// Answers each message with its upper-case version until an empty one.
fn serve(listener: &Listener) -> shmpipe::Result<()> {
    let conn = listener.accept()?;
    println!(
        "rust: accepted {:?}; shared memory: {}",
        listener.last_accepted(),
        conn.is_shared_memory()
    );
    loop {
        let msg = conn.recv_bytes()?;
        if msg.is_empty() {
            return Ok(());
        }
        conn.send_bytes(&msg.to_ascii_uppercase())?;
    }
}

fn main() -> shmpipe::Result<()> {
    let path = std::env::temp_dir().join(format!("interop-{}.sock", std::process::id()));
    let key = "a shared secret";
    let listener = Listener::builder().authkey(key.as_bytes()).bind(&path)?;
    let mut python = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/python_interop.py"
        ))
        .arg(&path)
        .arg(key)
        .spawn()
        .expect("python3 is needed for this example");
    let served = serve(&listener);
    python.wait().unwrap();
    served?;
    println!("rust: done");
    Ok(())
}
