//! The streaming path allocates nothing: `send_bytes`, `recv_bytes_into`, a typed `send`
//! that fits in the ring (serialized in place, no intermediate buffer) and
//! `recv_archived` (its private copy goes into a buffer kept between messages), a typed
//! `recv` of a struct with nothing on the heap; neither
//! does a receive that has to go to sleep. Counted by a global
//! allocator, per thread.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        let _ = LARGEST.try_with(|c| c.set(c.get().max(layout.size())));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnMut()) -> usize {
    let before = ALLOCATIONS.with(|c| c.get());
    let mut f = f;
    f();
    ALLOCATIONS.with(|c| c.get()) - before
}

/// The largest single allocation `f` makes on this thread.
fn largest_allocation_in(f: impl FnOnce()) -> usize {
    LARGEST.with(|c| c.set(0));
    f();
    LARGEST.with(|c| c.get())
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Tick {
    seq: u64,
    symbol: String,
    prices: Vec<f64>,
}

/// A struct with nothing on the heap: its typed `recv` deserializes without allocating.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, PartialEq)]
struct Quote {
    seq: u64,
    price: f64,
    qty: u32,
    symbol: [u8; 8],
}

#[test]
fn the_streaming_path_does_not_allocate() {
    let (a, b) = shmpipe::pipe(true).unwrap();
    let tick = Tick {
        seq: 1,
        symbol: "ACME".into(),
        prices: vec![1.0; 32],
    };
    let payload = [7u8; 64];
    let mut buf = [0u8; 4096];
    let mut round = || {
        for _ in 0..1000 {
            a.send_bytes(&payload).unwrap();
            assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 64);
            a.send(&tick).unwrap();
            let t = b.recv_archived::<Tick>().unwrap();
            assert_eq!(t.prices.len(), 32);
            drop(t); // gives the kept buffer back for the next typed receive
            let quote = Quote {
                seq: 9,
                price: 1.5,
                qty: 100,
                symbol: *b"ACME\0\0\0\0",
            };
            a.send(&quote).unwrap();
            assert_eq!(b.recv::<Quote>().unwrap(), quote);
        }
    };
    round(); // warm up: rkyv's thread-local arena, the first reloads
    assert_eq!(allocations_in(&mut round), 0);
}

#[test]
fn a_receive_that_sleeps_does_not_allocate() {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::sync::Arc;

    let (a, b) = shmpipe::pipe(true).unwrap();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let received = Arc::new(AtomicU32::new(0));
    let sender = {
        let received = received.clone();
        std::thread::spawn(move || {
            for i in 0..50u8 {
                // Send only once the receiver has taken the last message and is asleep in
                // poll(2) waiting for this one: the path under test.
                while received.load(SeqCst) != u32::from(i) {
                    std::thread::yield_now();
                }
                while common::process_state(tid) != Some('S') {
                    std::thread::yield_now();
                }
                a.send_bytes(&[i; 64]).unwrap();
            }
        })
    };
    let mut buf = [0u8; 64];
    let mut receive = |i: u8| {
        assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 64);
        assert_eq!(buf, [i; 64]);
        received.fetch_add(1, SeqCst);
    };
    receive(0); // warm up
    let n = allocations_in(|| (1..50u8).for_each(&mut receive));
    sender.join().unwrap();
    assert_eq!(n, 0);
}

/// A peer announcing a long message gets no memory for it up front: the buffer grows with
/// the bytes that actually arrive. (It used to reserve up to 64 MiB from the announced
/// total before the second fragment came.)
#[test]
fn an_announced_length_allocates_nothing_before_the_bytes_arrive() {
    use common::{fork, layout, memfd_of, RawRegion};
    let (a, b) = shmpipe::Builder::new().capacity(4096).build().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = b.send_bytes(&[9; 5000]); // FIRST, then more fragments as room appears
        b
    });
    assert!(a.poll(None).unwrap());
    // Another process rewrites the FIRST record's total (its `aux`) to 512 MiB.
    let fd = memfd_of(&a);
    fork(|| {
        RawRegion::map(fd).write_u64(layout::RING0_DATA + 8, 512 << 20);
        0
    })
    .join();
    let largest = largest_allocation_in(|| {
        // The fragments that follow do not add up to the forged total.
        assert!(matches!(a.recv_bytes(), Err(shmpipe::Error::Corrupt(_))));
    });
    assert!(largest < 64 << 10, "{largest} bytes allocated at once");
    drop(a);
    drop(sender.join().unwrap());
}
