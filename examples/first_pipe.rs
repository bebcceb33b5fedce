//! Port of `003_1cccc3311fb70cca.txt`, program 1 ("初识管道", a first pipe): one
//! process sends '123456' on one end of a pipe and prints what the other end receives.
//!
//! Run with `cargo run --release --example first_pipe`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (conn1, conn2) = shmpipe::pipe(true)?;
    conn1.send(&String::from("123456"))?;

    println!("{}", conn2.recv::<String>()?);
    Ok(())
}
