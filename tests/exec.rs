//! Handing an end to a child started with `std::process::Command`.
//!
//! The child is this same test binary, run again with `--exact child_role` and the
//! environment variable `SHMPIPE_TEST_ROLE` saying what to do; without the variable the
//! `child_role` test does nothing.

use shmpipe::{pipe, Connection, Error};
use std::process::{Command, Stdio};

const KEY: &str = "SHMPIPE_TEST_CONN";

fn child(role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_role", "--nocapture", "--test-threads=1"])
        .env("SHMPIPE_TEST_ROLE", role)
        .stdout(Stdio::null());
    cmd
}

/// The body of the exec'd child.
#[test]
fn child_role() {
    let Ok(role) = std::env::var("SHMPIPE_TEST_ROLE") else {
        return;
    };
    let conn = Connection::from_parent(KEY).unwrap();
    match role.as_str() {
        "echo" => loop {
            match conn.recv_bytes() {
                Ok(m) => conn.send_bytes(&m).unwrap(),
                Err(Error::Eof) => break,
                Err(e) => panic!("{e}"),
            }
        },
        "claim-twice" => {
            assert!(matches!(
                Connection::from_parent(KEY),
                Err(Error::Invalid(_))
            ));
            conn.send_bytes(b"checked").unwrap();
        }
        "write-then-exit" => conn.send_bytes(b"from the child").unwrap(),
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn exec_child_echoes_over_a_passed_end() {
    let (parent_end, child_end) = pipe(true).unwrap();
    let mut cmd = child("echo");
    child_end.pass_to_child(&mut cmd, KEY).unwrap();
    let mut proc = cmd.spawn().unwrap();
    drop(child_end);
    for i in 0..100u32 {
        let m = vec![i as u8; i as usize * 997];
        parent_end.send_bytes(&m).unwrap();
        assert_eq!(parent_end.recv_bytes().unwrap(), m);
    }
    let big = vec![3u8; 9 << 20]; // larger than the ring
    let sender = std::thread::spawn(move || {
        parent_end.send_bytes(&big).unwrap();
        parent_end
    });
    let mut parent_end = sender.join().unwrap();
    assert_eq!(parent_end.recv_bytes().unwrap(), vec![3u8; 9 << 20]);
    parent_end.close();
    assert!(proc.wait().unwrap().success());
}

#[test]
fn eof_when_the_exec_child_exits() {
    let (r, w) = pipe(false).unwrap();
    let mut cmd = child("write-then-exit");
    w.pass_to_child(&mut cmd, KEY).unwrap();
    let mut proc = cmd.spawn().unwrap();
    drop(w);
    assert_eq!(r.recv_bytes().unwrap(), b"from the child");
    assert!(matches!(r.recv_bytes(), Err(Error::Eof)));
    assert!(proc.wait().unwrap().success());
}

#[test]
fn a_key_is_taken_up_once() {
    let (r, w) = pipe(false).unwrap();
    let mut cmd = child("claim-twice");
    w.pass_to_child(&mut cmd, KEY).unwrap();
    let mut proc = cmd.spawn().unwrap();
    drop(w);
    assert_eq!(r.recv_bytes().unwrap(), b"checked");
    assert!(proc.wait().unwrap().success());
}

#[test]
fn bad_keys_and_forged_variables_are_refused_without_closing_anything() {
    let (a, _b) = pipe(true).unwrap();
    let mut cmd = Command::new("true");
    for key in ["", "A=B", "NUL\0"] {
        assert!(
            matches!(a.pass_to_child(&mut cmd, key), Err(Error::Invalid(_))),
            "{key:?}"
        );
    }
    assert!(matches!(
        Connection::from_parent("SHMPIPE_NOT_SET"),
        Err(Error::Invalid(_))
    ));
    // Forged values: garbage, fds that are not open, and fds of the wrong kinds (0, 1,
    // 2 are the test's stdio, which must survive the attempt).
    let forged = [
        "garbage",
        "shmpipe1:0:999:998:997,996",
        "shmpipe1:0:0:1:2,2",
        "shmpipe1:0:0:1:2,0",
        "shmpipe1:5:0:1:2,0",
        "shmpipe1:0:-1:1:2,0",
        "shmpipe1:0:0:1:2",
    ];
    for (i, value) in forged.iter().enumerate() {
        let key = format!("SHMPIPE_FORGED_{i}");
        std::env::set_var(&key, value);
        assert!(
            matches!(Connection::from_parent(&key), Err(Error::Invalid(_))),
            "{value}"
        );
    }
    for fd in 0..3 {
        // SAFETY: F_GETFD on a descriptor number.
        assert!(
            unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0,
            "fd {fd} was closed"
        );
    }
}
