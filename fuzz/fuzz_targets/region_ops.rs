//! A hostile peer's actions on a pipe's shared region, then the reader drains its ring.
//! See `shmpipe::__fuzz::region_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmpipe::__fuzz::region_ops(data));
