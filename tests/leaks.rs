//! Descriptors and mappings are released when the last end in a process is dropped.
//! One test in its own binary: it counts the whole process's descriptors and mappings,
//! which other tests running in parallel would disturb.

mod common;

use common::{open_fds, region_mappings};
use shmpipe::{pipe, Builder};

#[test]
fn thousands_of_pipes_leave_nothing_behind() {
    let (fds, maps) = (open_fds(), region_mappings());
    for i in 0..5000 {
        let (a, b) = Builder::new()
            .duplex(i % 2 == 0)
            .capacity(4096)
            .build()
            .unwrap();
        let (reader, writer) = (&a, &b); // duplex or (reader, writer): a reads, b writes
        writer.send_bytes(&[i as u8; 100]).unwrap();
        if i % 3 == 0 {
            reader.fileno().unwrap();
        }
        assert_eq!(reader.recv_bytes().unwrap(), [i as u8; 100]);
        if i % 5 == 0 {
            // Closing one end keeps the region for the other; dropping both frees it.
            drop(a);
            assert!(region_mappings() > maps);
            drop(b);
        }
    }
    assert_eq!(open_fds(), fds, "descriptors leaked");
    assert_eq!(region_mappings(), maps, "mappings leaked");

    // Ends inherited by a child are the child's to release; the parent's count is
    // unaffected by what the child does.
    let (a, b) = pipe(true).unwrap();
    common::fork(|| {
        b.send_bytes(b"from the child").unwrap();
        0
    })
    .join();
    assert_eq!(a.recv_bytes().unwrap(), b"from the child");
    drop((a, b));
    assert_eq!(open_fds(), fds);
    assert_eq!(region_mappings(), maps);
}
