//! Two processes that did not start each other, meeting at a socket path: a server with
//! a `Listener` and a client with `Client`, as Python's `multiprocessing.connection`
//! does it, but the connection they get runs on shared memory.
//!
//! Run with `cargo run --release --example listener_client`: it starts the server, and
//! the server starts the client as a separate program (this same binary with the
//! argument `client`), which inherits nothing from it. Or run the two sides yourself,
//! in two terminals:
//!
//! ```text
//! cargo run --release --example listener_client -- serve /tmp/squares.sock
//! cargo run --release --example listener_client -- client /tmp/squares.sock
//! ```

use shmpipe::{Client, Error, Listener};
use std::process::Command;

fn serve(path: &str, start_client: bool) -> shmpipe::Result<()> {
    let listener = Listener::bind(path)?; // mode 0600: only this user may connect
    println!("server: listening on {path}");
    let client = start_client.then(|| {
        Command::new(std::env::current_exe().unwrap())
            .args(["client", path])
            .spawn()
            .expect("start the client")
    });
    let conn = listener.accept()?;
    println!(
        "server: accepted {:?}, shared memory: {}",
        listener.last_accepted(),
        conn.is_shared_memory()
    );
    // Answer each number with its square until the client hangs up.
    loop {
        match conn.recv::<u64>() {
            Ok(n) => conn.send(&(n * n))?,
            Err(Error::Eof) => break,
            Err(e) => return Err(e),
        }
    }
    println!("server: the client is gone");
    if let Some(mut c) = client {
        c.wait().unwrap();
    }
    Ok(())
}

fn client(path: &str) -> shmpipe::Result<()> {
    let conn = Client::connect(path)?;
    for n in 1..=5u64 {
        conn.send(&n)?;
        println!("client: {n} squared is {}", conn.recv::<u64>()?);
    }
    Ok(()) // dropping the connection is the server's EOF
}

fn main() -> shmpipe::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", path] => serve(path, false),
        ["client", path] => client(path),
        [] => {
            let path = std::env::temp_dir().join(format!("squares-{}.sock", std::process::id()));
            serve(path.to_str().unwrap(), true)
        }
        _ => {
            eprintln!("usage: listener_client [serve PATH | client PATH]");
            std::process::exit(2)
        }
    }
}
