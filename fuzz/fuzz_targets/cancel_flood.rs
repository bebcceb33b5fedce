//! A writer flooding the reader with cancelled messages between whole ones while the
//! reader receives with deadlines.
//! See `shmpipe::__fuzz::cancel_flood`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmpipe::__fuzz::cancel_flood(data));
