//! Port of `003_1cccc3311fb70cca.txt`, program 5: the child stops at EOF. Each process
//! closes the end it does not use; the child receives until `recv` fails with EOF
//! (Python's `EOFError`), which comes once the parent closes its `conn1`.
//!
//! Run with `cargo run --release --example eof_loop`.

mod process;
use process::{join, spawn};

use shmpipe::{Connection, Error};

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
