//! Typed rkyv messages between real processes: in-place reads, messages larger than
//! the ring, type mismatches and garbage, and relaying through a bytes-only process.

mod common;

use common::fork;
use shmpipe::{pipe, Builder, Error};

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq, Clone)]
struct Talk {
    name: String,
    spam: i32,
    tags: Vec<String>,
    score: Option<f64>,
}

fn talk() -> Talk {
    Talk {
        name: "bob".into(),
        spam: 42,
        tags: vec!["a".into(), "bc".into()],
        score: Some(0.5),
    }
}

/// Whether `addr` lies in one of this process's shmpipe region mappings.
fn in_a_region(addr: usize) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .any(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (lo, hi) = range.split_once('-').unwrap();
            let (lo, hi) = (
                usize::from_str_radix(lo, 16).unwrap(),
                usize::from_str_radix(hi, 16).unwrap(),
            );
            l.contains("memfd:shmpipe") && (lo..hi).contains(&addr)
        })
}

/// Archives whose sizes jump around the one-pass send's guess (the type's size, then
/// the last archive the general path sent) and the receiver's stack buffer (256 bytes):
/// each arrives whole and in order, whichever path sent or received it.
#[test]
fn typed_messages_of_changing_sizes_arrive_whole_and_in_order() {
    let sizes = [
        0usize,
        1,
        240,
        256,
        300,
        5,
        70_000,
        3,
        255,
        257,
        1 << 20,
        64,
        64,
        4000,
        0,
    ];
    let message = |i: usize, len: usize| -> Vec<u8> { (0..len).map(|k| (k + i) as u8).collect() };
    let (parent, child) = Builder::new().capacity(64 << 10).build().unwrap();
    let kid = fork(|| {
        for round in 0..3 {
            for (i, &len) in sizes.iter().enumerate() {
                child.send(&message(i + round, len)).unwrap();
            }
        }
        0
    });
    for round in 0..3 {
        for (i, &len) in sizes.iter().enumerate() {
            assert_eq!(
                parent.recv::<Vec<u8>>().unwrap(),
                message(i + round, len),
                "message {i}"
            );
        }
    }
    kid.join();
}

#[test]
fn every_common_type_round_trips_across_processes() {
    let (parent, child) = pipe(true).unwrap();
    let kid = fork(|| {
        child.send(&7u8).unwrap();
        child.send(&-3i64).unwrap();
        child.send(&2.5f32).unwrap();
        child.send(&String::from("spam")).unwrap();
        child.send(&vec![1u16, 2, 3]).unwrap();
        child.send(&Some(String::from("eggs"))).unwrap();
        child.send(&None::<u32>).unwrap();
        child.send(&(1u8, String::from("two"), 3.0f64)).unwrap();
        child.send(&talk()).unwrap();
        child.send(&()).unwrap();
        0
    });
    assert_eq!(parent.recv::<u8>().unwrap(), 7);
    assert_eq!(parent.recv::<i64>().unwrap(), -3);
    assert_eq!(parent.recv::<f32>().unwrap(), 2.5);
    assert_eq!(parent.recv::<String>().unwrap(), "spam");
    assert_eq!(parent.recv::<Vec<u16>>().unwrap(), [1, 2, 3]);
    assert_eq!(
        parent.recv::<Option<String>>().unwrap().as_deref(),
        Some("eggs")
    );
    assert_eq!(parent.recv::<Option<u32>>().unwrap(), None);
    assert_eq!(
        parent.recv::<(u8, String, f64)>().unwrap(),
        (1, "two".into(), 3.0)
    );
    assert_eq!(parent.recv::<Talk>().unwrap(), talk());
    parent.recv::<()>().unwrap();
    kid.join();
}

#[test]
fn a_one_mib_vec_is_read_in_place_in_shared_memory_when_asked() {
    let (parent, child) = pipe(true).unwrap();
    let data: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    let kid = fork(|| {
        child.send(&data).unwrap();
        0
    });
    // SAFETY: the peer is shmpipe, which leaves a record alone until it is released.
    let msg = unsafe { parent.recv_archived_in_place::<Vec<u8>>() }.unwrap();
    assert_eq!(msg.as_slice(), &data[..]);
    assert!(in_a_region(msg.as_ptr() as usize), "not read in place");
    assert!(in_a_region(msg.as_bytes().as_ptr() as usize));
    drop(msg);
    kid.join();
}

/// The safe `recv_archived` reads a private copy: nothing it hands out points into
/// memory the peer can write.
#[test]
fn recv_archived_reads_a_private_copy() {
    let (parent, child) = pipe(true).unwrap();
    let data: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    let kid = fork(|| {
        child.send(&data).unwrap();
        child.send(&talk()).unwrap();
        0
    });
    let msg = parent.recv_archived::<Vec<u8>>().unwrap();
    assert_eq!(msg.as_slice(), &data[..]);
    assert!(!in_a_region(msg.as_ptr() as usize), "read in shared memory");
    assert!(!in_a_region(msg.as_bytes().as_ptr() as usize));
    let t = parent.recv_archived::<Talk>().unwrap();
    assert!(!in_a_region(t.name.as_ptr() as usize));
    assert_eq!(t.name, talk().name);
    assert_eq!(msg.len(), 1 << 20, "the first guard is still valid");
    kid.join();
}

#[test]
fn an_8_mib_vec_larger_than_the_ring_arrives_both_ways() {
    let (parent, child) = pipe(true).unwrap();
    let data: Vec<u64> = (0..1 << 20).map(|i| i * 3).collect(); // 8 MiB, ring is 4 MiB
    let kid = fork(|| {
        child.send(&data).unwrap();
        child.send(&data).unwrap();
        0
    });
    assert_eq!(parent.recv::<Vec<u64>>().unwrap(), data);
    let msg = parent.recv_archived::<Vec<u64>>().unwrap();
    assert_eq!(msg.len(), data.len());
    assert!(msg.iter().zip(&data).all(|(a, b)| a.to_native() == *b));
    assert_eq!(
        msg.as_ptr() as usize % 8,
        0,
        "the reassembled copy is aligned"
    );
    assert!(
        !in_a_region(msg.as_ptr() as usize),
        "a fragmented message is a copy"
    );
    drop(msg);
    kid.join();
}

/// Long typed messages are serialized and reassembled in buffers kept from one message
/// to the next: a shorter message after a longer one, a failed one in between, and a
/// guard still alive while the next message arrives must all come out exact.
#[test]
fn reused_buffers_never_leak_one_long_message_into_the_next() {
    let (a, b) = Builder::new().capacity(4096).build().unwrap();
    let long = |n: u32, tag: u32| -> Vec<u32> { (0..n).map(|i| i ^ tag).collect() };
    let sender = std::thread::spawn(move || {
        b.send(&long(30_000, 1)).unwrap();
        b.send(&long(5_000, 2)).unwrap();
        b.send_bytes(&[0xff; 20_000]).unwrap(); // fragmented, not an archive
        b.send(&long(9_000, 3)).unwrap();
        b.send(&long(7_000, 4)).unwrap();
        b.send(&long(8_000, 5)).unwrap();
        b
    });
    assert_eq!(a.recv::<Vec<u32>>().unwrap(), long(30_000, 1));
    let m = a.recv_archived::<Vec<u32>>().unwrap();
    assert!(m.iter().map(|x| x.to_native()).eq(long(5_000, 2)));
    drop(m);
    assert!(matches!(a.recv::<Vec<String>>(), Err(Error::Invalid(_))));
    assert_eq!(a.recv::<Vec<u32>>().unwrap(), long(9_000, 3));
    // A reassembled guard is a copy, so the next message can arrive while it lives.
    let first = a.recv_archived::<Vec<u32>>().unwrap();
    let second = a.recv_archived::<Vec<u32>>().unwrap();
    assert!(first.iter().map(|x| x.to_native()).eq(long(7_000, 4)));
    assert!(second.iter().map(|x| x.to_native()).eq(long(8_000, 5)));
    drop((first, second));
    drop(sender.join().unwrap());
}

#[test]
fn a_type_mismatch_is_invalid_consumed_and_harmless() {
    let (parent, child) = pipe(true).unwrap();
    let kid = fork(|| {
        child
            .send(&String::from("definitely not a vector of u64"))
            .unwrap();
        child.send(&vec![0x41u8; 20]).unwrap();
        child.send(&talk()).unwrap();
        0
    });
    match parent.recv::<Vec<u64>>() {
        Err(Error::Invalid(why)) => {
            assert!(
                why.contains("not a valid archive of alloc::vec::Vec<u64>"),
                "{why}"
            );
            assert!(
                why.contains("overran") || why.contains("range"),
                "rkyv's reason: {why}"
            );
        }
        other => panic!("{other:?}"),
    }
    match parent.recv_archived::<String>() {
        Err(Error::Invalid(why)) => assert!(why.contains("UTF-8"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        parent.recv::<Talk>().unwrap(),
        talk(),
        "the connection goes on"
    );
    kid.join();
}

#[test]
fn garbage_bytes_are_invalid_not_a_crash() {
    let (parent, child) = pipe(true).unwrap();
    let kid = fork(|| {
        let mut rng = common::Rng(99);
        for _ in 0..200 {
            let len = rng.below(300) as usize;
            child
                .send_bytes(&(0..len).map(|_| rng.next() as u8).collect::<Vec<_>>())
                .unwrap();
        }
        child.send(&talk()).unwrap();
        0
    });
    let mut invalid = 0;
    for _ in 0..200 {
        match parent.recv::<Talk>() {
            Ok(_) => {}
            Err(Error::Invalid(why)) => {
                assert!(!why.is_empty());
                invalid += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        invalid > 150,
        "garbage mostly fails validation ({invalid}/200)"
    );
    assert_eq!(parent.recv::<Talk>().unwrap(), talk());
    kid.join();
}

#[test]
fn typed_messages_are_ordinary_messages() {
    let (a, b) = pipe(true).unwrap();
    let archive = rkyv::to_bytes::<rkyv::rancor::Error>(&talk()).unwrap();
    a.send(&talk()).unwrap();
    assert_eq!(
        b.recv_bytes().unwrap(),
        archive.as_slice(),
        "recv_bytes gives the archive"
    );
    a.send_bytes(&archive).unwrap();
    assert_eq!(
        b.recv::<Talk>().unwrap(),
        talk(),
        "recv of send_bytes(archive)"
    );
}

#[test]
fn a_typed_message_survives_a_bytes_only_relay_process() {
    let (mut parent, relay_end) = pipe(true).unwrap();
    let relay = fork(|| {
        parent.close(); // or the relay's inherited copy would keep the pipe open
        loop {
            match relay_end.recv_bytes() {
                Ok(m) => relay_end.send_bytes(&m).unwrap(),
                Err(Error::Eof) => return 0,
                Err(_) => return 1,
            }
        }
    });
    drop(relay_end);
    let big = vec![talk(); 100_000]; // several MiB: fragmented on the way out and back
    parent.send(&talk()).unwrap();
    assert_eq!(parent.recv::<Talk>().unwrap(), talk());
    let sender = std::thread::spawn(move || {
        parent.send(&big).unwrap();
        (parent, big)
    });
    let (parent, big) = sender.join().unwrap();
    assert_eq!(parent.recv::<Vec<Talk>>().unwrap(), big);
    drop(parent);
    relay.join();
}

#[test]
fn a_message_borrowed_in_place_blocks_other_receives_until_dropped() {
    let (a, b) = pipe(true).unwrap();
    a.send(&1u32).unwrap();
    a.send(&2u32).unwrap();
    // SAFETY: the peer is shmpipe in this process.
    let first = unsafe { b.recv_archived_in_place::<u32>() }.unwrap();
    assert!(matches!(b.recv::<u32>(), Err(Error::Invalid(_))));
    assert!(matches!(b.recv_bytes(), Err(Error::Invalid(_))));
    // The one-pass receive too, though the next message is there and would fit.
    assert!(matches!(
        b.recv_bytes_into(&mut [0; 64]),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(shmpipe::wait(&[&b], None), Err(Error::Invalid(_))));
    assert_eq!(*first, 1);
    drop(first);
    assert_eq!(b.recv::<u32>().unwrap(), 2);
}

#[test]
fn typed_sends_wait_for_room_and_break_like_bytes() {
    let (r, mut w) = Builder::new().duplex(false).capacity(4096).build().unwrap();
    assert!(matches!(r.send(&1u8), Err(Error::NotWritable)));
    assert!(matches!(w.recv::<u8>(), Err(Error::NotReadable)));
    let sender = std::thread::spawn(move || {
        for i in 0..10_000u32 {
            w.send(&(i, format!("message {i}"))).unwrap();
        }
        w.close();
        assert!(matches!(w.send(&1u8), Err(Error::Closed)));
    });
    for i in 0..10_000u32 {
        assert_eq!(
            r.recv::<(u32, String)>().unwrap(),
            (i, format!("message {i}"))
        );
    }
    sender.join().unwrap();
    assert!(matches!(r.recv::<u8>(), Err(Error::Eof)));
}

/// A process that forks while it reads a message in place: the child's copy of the guard
/// must not give the message back (the writer would then overwrite bytes the parent is
/// still reading). It fails in the child, where the end is not to be used, and the
/// parent's own drop releases the message as usual.
#[test]
fn a_forked_copy_of_a_held_message_does_not_release_it() {
    let (a, b) = Builder::new().capacity(4096).build().unwrap();
    a.send(&vec![7u8; 1000]).unwrap();
    // SAFETY: the peer is shmpipe in this process.
    let mut held = Some(unsafe { b.recv_archived_in_place::<Vec<u8>>() }.unwrap());
    let child = fork(|| {
        drop(held.take()); // runs the guard's destructor in the child
        match b.recv_bytes() {
            Err(Error::Corrupt(shmpipe::Violation::HeldByParent)) => 0,
            _ => 1,
        }
    });
    child.join();
    let m = held.take().unwrap();
    assert!(m.iter().all(|&x| x == 7));
    drop(m);
    a.send_bytes(b"next").unwrap();
    assert_eq!(
        b.recv_bytes().unwrap(),
        b"next",
        "the parent's release worked"
    );
}
