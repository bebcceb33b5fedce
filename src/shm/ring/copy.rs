//! Moving payload bytes between the ring and memory of our own.
//!
//! A `ptr::copy_nonoverlapping` of a length known only at run time compiles to a call
//! of libc's `memcpy`: through the PLT, then a dispatch on the length, then the moves.
//! For a 64-byte message that call was the largest single cost left on each side. So a
//! payload of 16 to 64 bytes
//! is moved here inline, in two or four 16-byte moves that may overlap (from the start,
//! and ending at the end), the way `memcpy` implementations handle small sizes; anything
//! else still goes to `memcpy`, which is what it is good at.
//!
//! The source or the destination is ring memory, which the peer may write during the
//! copy: it is only ever touched through raw pointers here, never through a reference,
//! and what the peer changes can only make the copied bytes wrong (see the module
//! documentation of [`crate::shm::ring`]).

use std::ptr::{copy_nonoverlapping, read_unaligned, write_unaligned};

/// Copies `len` bytes from `src` to `dst`.
///
/// # Safety
/// `src..src + len` must be readable and `dst..dst + len` writable, and the two must not
/// overlap.
#[inline(always)]
pub(super) unsafe fn copy(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's contract. With `16 <= len <= 64`, every 16-byte move below
    // stays in `0..len`: they start at 0, 16 and `len - 32` (those two only when
    // `len > 32`) and at `len - 16`. Unaligned loads and stores need no alignment.
    unsafe {
        if (16..=64).contains(&len) {
            // All loads, then all stores, in registers (an array of 32 bytes went through
            // the stack). Where two moves overlap, the bytes are written twice with what
            // was read each time: the same, unless the peer changed them in between,
            // which only makes the copy wrong, as the peer could anyway.
            let load = |at: usize| read_unaligned(src.add(at) as *const u128);
            let store = |at: usize, v: u128| write_unaligned(dst.add(at) as *mut u128, v);
            if len > 32 {
                let (a, b, c, d) = (load(0), load(16), load(len - 32), load(len - 16));
                store(0, a);
                store(16, b);
                store(len - 32, c);
                store(len - 16, d);
            } else {
                let (a, d) = (load(0), load(len - 16));
                store(0, a);
                store(len - 16, d);
            }
        } else {
            copy_nonoverlapping(src, dst, len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::copy;

    /// Every length from 0 to 200 (each way of splitting into moves, and `memcpy` on
    /// both sides of them), at every offset within a 16-byte block: exactly the bytes
    /// asked for are copied, and nothing around them is touched.
    #[test]
    fn copies_exactly_the_bytes_asked_for() {
        let src: Vec<u8> = (0..256u32).map(|i| (i * 7 + 1) as u8).collect();
        for len in 0..=200 {
            for offset in 0..16 {
                let mut dst = vec![0xEEu8; 256];
                // SAFETY: both ranges lie inside their vectors, which are distinct.
                unsafe { copy(src.as_ptr().add(offset), dst.as_mut_ptr().add(3), len) };
                assert_eq!(&dst[3..3 + len], &src[offset..offset + len], "len {len}");
                assert!(dst[..3].iter().all(|&b| b == 0xEE), "before, len {len}");
                assert!(
                    dst[3 + len..].iter().all(|&b| b == 0xEE),
                    "after, len {len}"
                );
            }
        }
    }
}
