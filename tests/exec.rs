//! Handing an end to a child started with `std::process::Command`.
//!
//! The child is this same test binary, run again with `--exact child_role` and the
//! environment variable `SHMPIPE_TEST_ROLE` saying what to do; without the variable the
//! `child_role` test does nothing.

mod common;

use shmpipe::{pipe, Connection, Error, Queue};
use std::process::{Command, Stdio};

const KEY: &str = "SHMPIPE_TEST_CONN";
const QUEUE_KEY: &str = "SHMPIPE_TEST_QUEUE";

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
    if role == "queue-worker" {
        // Doubles every number it gets until a 0, through a queue its parent passed.
        let jobs = Queue::from_parent(QUEUE_KEY).unwrap();
        let answers = Queue::from_parent("SHMPIPE_TEST_ANSWERS").unwrap();
        assert!(matches!(
            Queue::from_parent(QUEUE_KEY),
            Err(Error::Invalid(_))
        ));
        loop {
            let n: u64 = jobs.get().unwrap();
            if n == 0 {
                return;
            }
            answers.put(&(2 * n)).unwrap();
        }
    }
    if role == "stale" {
        // A grandchild: it inherited the variable, not the descriptors (closed on exec
        // in its parent, which took them up), so the variable is refused.
        match Connection::from_parent(KEY) {
            Err(Error::Invalid(_)) => return,
            other => panic!("{other:?}"),
        }
    }
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
            // The variable stays (library code must not change the environment while
            // other threads may read it), but the key is taken.
            assert!(std::env::var(KEY).is_ok());
            assert!(matches!(
                Connection::from_parent(KEY),
                Err(Error::Invalid(_))
            ));
            assert!(child("stale").status().unwrap().success());
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
    // Forged values: garbage, the old format, fds that are not open, and fds of the
    // wrong kinds (0, 1, 2 are the test's stdio, which must survive the attempt).
    let id = |fd| {
        // SAFETY: fstat into a zeroed stat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        format!("{fd}/{}/{}", st.st_dev, st.st_ino)
    };
    let (stdin, stdout, stderr) = (id(0), id(1), id(2));
    let forged = [
        "garbage".to_string(),
        "shmpipe1:0:3:4:5,6".to_string(),
        "shmpipe2:0:999/1/2:998/1/2:997/1/2".to_string(),
        format!("shmpipe2:0:{stdin}:{stdout}:{stderr}"),
        format!("shmpipe2:0:{stdin}:{stdin}:{stderr}"),
        format!("shmpipe2:5:{stdin}:{stdout}:{stderr}"),
        format!("shmpipe2:0:-1/0/0:{stdout}:{stderr}"),
        format!("shmpipe2:0:{stdin}:{stdout}"),
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

/// A variable naming descriptors this process owns (here: a live pipe's own, found
/// through its hand-off variable) is refused: taking them would make two owners, and
/// the old code then closed the live pipe's descriptors or aborted on an I/O-safety
/// violation. The live pipe goes on working.
#[test]
fn from_parent_refuses_descriptors_owned_in_this_process() {
    let (a, b) = pipe(true).unwrap();
    let (value, fds) = common::passed(&a);
    std::env::set_var("SHMPIPE_OWNED", &value);
    match Connection::from_parent("SHMPIPE_OWNED") {
        Err(Error::Invalid(why)) => assert!(why.contains("close-on-exec"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(fds.iter().all(|&(fd, ..)| common::is_open(fd)));
    a.send_bytes(b"still mine").unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"still mine");
}

/// A stale variable (inherited from a grandparent, say) names numbers that are now other
/// files: the recorded identities do not match, and nothing is taken or closed.
#[test]
fn from_parent_refuses_a_stale_variable_and_closes_nothing() {
    let (a, _b) = pipe(true).unwrap();
    let (_, fds) = common::passed(&a);
    // Other files, not close-on-exec, as inherited descriptors would be.
    // SAFETY: dup(2) of stdin.
    let others: Vec<i32> = (0..3).map(|_| unsafe { libc::dup(0) }).collect();
    let named: Vec<String> = fds
        .iter()
        .zip(&others)
        .map(|(&(_, dev, ino), fd)| format!("{fd}/{dev}/{ino}"))
        .collect();
    std::env::set_var("SHMPIPE_STALE", format!("shmpipe2:0:{}", named.join(":")));
    match Connection::from_parent("SHMPIPE_STALE") {
        Err(Error::Invalid(why)) => assert!(why.contains("not the file"), "{why}"),
        other => panic!("{other:?}"),
    }
    for fd in others {
        assert!(common::is_open(fd));
        // SAFETY: our own dup.
        unsafe { libc::close(fd) };
    }
}

/// `pass_to_child` on an end that is dropped before `spawn`: the numbers it recorded may
/// belong to other files by then (here, a close-on-exec file opened in between), which
/// the old code handed to the child by clearing their close-on-exec flag. Spawning now
/// fails instead.
#[test]
fn spawning_after_the_passed_end_was_dropped_fails_and_leaks_nothing() {
    let (_a, b) = pipe(true).unwrap();
    let mut cmd = child("echo");
    b.pass_to_child(&mut cmd, KEY).unwrap();
    drop(b);
    let _unrelated = std::fs::File::open("/dev/null").unwrap(); // O_CLOEXEC
    match cmd.spawn() {
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}"),
        Ok(mut child) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("spawned with the descriptors of a dropped end");
        }
    }
}

#[test]
fn a_queue_goes_to_an_exec_child_and_works_both_ways() {
    let (jobs, answers) = (Queue::new().unwrap(), Queue::new().unwrap());
    let mut cmd = child("queue-worker");
    jobs.pass_to_child(&mut cmd, QUEUE_KEY).unwrap();
    answers
        .pass_to_child(&mut cmd, "SHMPIPE_TEST_ANSWERS")
        .unwrap();
    let mut proc = cmd.spawn().unwrap();
    for n in 1..=100u64 {
        jobs.put(&n).unwrap();
        assert_eq!(answers.get::<u64>().unwrap(), 2 * n);
    }
    jobs.put(&0u64).unwrap();
    assert!(proc.wait().unwrap().success());
}

#[test]
fn a_forged_or_foreign_queue_variable_is_refused() {
    for value in [
        "",
        "shmpipeq1:3/1/1",
        "shmpipeq1:-1/1/1:4/1/1",
        "shmpipe2:0:3/1/1:4/1/1:5/1/1",
    ] {
        std::env::set_var("SHMPIPE_TEST_FORGED_QUEUE", value);
        assert!(
            matches!(
                Queue::from_parent("SHMPIPE_TEST_FORGED_QUEUE"),
                Err(Error::Invalid(_))
            ),
            "{value:?}"
        );
    }
    // A key nobody set.
    assert!(matches!(
        Queue::from_parent("SHMPIPE_TEST_UNSET"),
        Err(Error::Invalid(_))
    ));
}
