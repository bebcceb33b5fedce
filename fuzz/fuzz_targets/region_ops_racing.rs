//! A hostile peer's actions on a pipe's shared region while another thread keeps writing
//! over it, reads racing with the writes; then the reader drains its ring. See
//! `shmpipe::__fuzz::region_ops_racing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shmpipe::__fuzz::region_ops_racing(data));
