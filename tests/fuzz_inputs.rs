//! The fuzz targets' quick version: random inputs, every input the fuzzer kept
//! (`fuzz/corpus/*`) and every input that once failed (`fuzz/regressions/*`), played
//! through the same entry points as `cargo fuzz run`. Each must return without panicking
//! or hanging (the targets panic if a reader never stops).

mod common;

use common::Rng;
use shmpipe::__fuzz;
use std::path::Path;

fn random_input(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(600) as usize;
    (0..len).map(|_| rng.next() as u8).collect()
}

#[test]
fn random_peer_actions_never_break_the_reader() {
    let mut rng = Rng(0x5EED_0001);
    for _ in 0..3000 {
        __fuzz::region_ops(&random_input(&mut rng));
    }
}

/// The same with another thread writing over the region while the reader reads.
#[test]
fn random_racing_writes_never_break_the_reader() {
    let mut rng = Rng(0x5EED_0003);
    for _ in 0..1000 {
        __fuzz::region_ops_racing(&random_input(&mut rng));
    }
}

/// A writer flooding the reader with cancelled messages: every receive returns within
/// its deadline or at once in non-blocking mode, and the whole messages arrive in order.
#[test]
fn random_cancel_floods_never_hold_a_receive() {
    let mut rng = Rng(0x5EED_0004);
    for _ in 0..300 {
        __fuzz::cancel_flood(&random_input(&mut rng));
    }
}

#[test]
fn random_headers_never_break_attach() {
    let mut rng = Rng(0x5EED_0002);
    for _ in 0..3000 {
        let mut input = random_input(&mut rng);
        // Start most headers with the real magic and version so the later checks run.
        // (Byte 0 picks one of the fixed sizes, byte 1 the seals, the header follows.)
        if rng.below(2) == 0 && input.len() >= 14 {
            input[0] = rng.below(5) as u8;
            input[2..10].copy_from_slice(b"SHMPIPE\0");
            input[10..14].copy_from_slice(&1u32.to_le_bytes());
        }
        __fuzz::attach(&input);
    }
}

/// Replays what the fuzzer found interesting (`fuzz/corpus`) and every input that once
/// failed (`fuzz/regressions`), so that both stay checked by every `cargo test`.
#[test]
fn the_fuzz_corpus_and_regressions_replay_cleanly() {
    let mut played = 0;
    for dir in ["fuzz/corpus", "fuzz/regressions"] {
        played += replay(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir));
    }
    eprintln!("replayed {played} inputs");
}

fn replay(root: &Path) -> usize {
    let mut played = 0;
    for (target, run) in [
        ("region_ops", __fuzz::region_ops as fn(&[u8])),
        // The same inputs, with the racing writes the first bytes choose.
        ("region_ops", __fuzz::region_ops_racing),
        ("region_ops_racing", __fuzz::region_ops_racing),
        ("attach", __fuzz::attach),
        ("cancel_flood", __fuzz::cancel_flood),
    ] {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        for entry in dir {
            let input = std::fs::read(entry.unwrap().path()).unwrap();
            run(&input);
            played += 1;
        }
    }
    played
}
