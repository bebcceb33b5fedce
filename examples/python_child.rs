//! A Rust parent of a Python child: passes one end of a pipe to
//! `python3 -c ...`, which takes it with `shmpipe.Connection.from_parent` (the Python
//! package must be installed for that interpreter: `pip install ./python`).
//!
//! Run with `cargo run --example python_child [PYTHON]` (default `python3`).

use std::process::Command;

const CHILD: &str = r#"
import shmpipe
conn = shmpipe.Connection.from_parent("SHMPIPE_CONN")
msg = conn.recv_bytes()
conn.send_bytes(msg.upper())
print("python got:", msg)
"#;

fn main() -> shmpipe::Result<()> {
    let python = std::env::args().nth(1).unwrap_or_else(|| "python3".into());
    let (mine, theirs) = shmpipe::pipe(true)?;
    let mut cmd = Command::new(python);
    cmd.args(["-c", CHILD]);
    theirs.pass_to_child(&mut cmd, "SHMPIPE_CONN")?;
    let mut child = cmd.spawn()?;
    drop(theirs);
    mine.send_bytes(b"from rust")?;
    let answer = mine.recv_bytes()?;
    println!("rust got: b{:?}", String::from_utf8_lossy(&answer));
    child.wait()?;
    Ok(())
}
