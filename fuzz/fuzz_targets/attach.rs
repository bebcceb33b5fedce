//! A region handed over by a hostile parent: any size, seals and header.
//! See `shmpipe::__fuzz::attach`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmpipe::__fuzz::attach(data));
