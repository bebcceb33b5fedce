//! A misbehaving writer, for the Python package's trust tests: takes the end its parent
//! passed under `SHMPIPE_CONN`, publishes `N` messages it cancels part-way (each a first
//! fragment announcing 1 GiB, then a cancel record: the peer's word for a length it never
//! sends), then the message `end`, and waits for EOF.
//!
//! Run by `python/tests/test_trust.py` as `cancelling_writer N`.

fn main() -> shmpipe::Result<()> {
    let conn = shmpipe::Connection::from_parent("SHMPIPE_CONN")?;
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    for _ in 0..n {
        if !shmpipe::__fuzz::write_cancelled_message(&conn, 1 << 30, 0) {
            return Err(shmpipe::Error::BrokenPipe);
        }
    }
    conn.send_bytes(b"end")?;
    match conn.recv_bytes() {
        Err(shmpipe::Error::Eof) => Ok(()),
        other => other.map(drop),
    }
}
