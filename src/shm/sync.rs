//! The atomics of a ring's control block, and the fences around them: std's, or, when
//! built with `--cfg loom` for the model check of the ring code itself
//! (`src/shm/ring/loom.rs`), loom's, which explore every interleaving and every
//! weak-memory outcome the memory model allows.
//!
//! Under loom only the ring's unit tests run: a control block of loom atomics is not
//! plain memory, so a real region cannot hold one. Record headers and payloads stay
//! plain memory reached through raw pointers (loom runs one thread at a time, so they
//! read what was last written); what the model checks is the protocol on the control
//! words that orders them.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64};

/// Nothing, except under loom, where a `SeqCst` fence. Loom treats `SeqCst` loads,
/// stores and read-modify-writes as `Acquire`/`Release`, which lets a store and a later
/// load of another location pass each other where C11's single total order of `SeqCst`
/// operations (and x86, where a `SeqCst` store or RMW is a full barrier) forbids it.
/// The real code relies on that order in two places, each marked with this call: the
/// reader's `tail` publish before its look at the writer's flag, and a writer raising
/// its flag before it looks at `tail` again.
#[inline(always)]
pub(crate) fn seq_cst_order() {
    #[cfg(loom)]
    fence(std::sync::atomic::Ordering::SeqCst);
}

/// The writer's compiler-only fence of the asymmetric fence (see `crate::shm::fence`).
/// loom has none (it cannot run the `membarrier` that pairs with it): a full fence
/// there, as a process without `membarrier` uses.
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::compiler_fence;
#[cfg(loom)]
pub(crate) fn compiler_fence(order: std::sync::atomic::Ordering) {
    fence(order);
}
