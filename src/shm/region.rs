//! The shared region: one memfd, sealed against resizing, mapped `MAP_SHARED`.
//!
//! This module and [`ring`](crate::shm::ring) are the only places that turn addresses in the
//! mapping into references or pointers. The header and control blocks are reached as
//! `&AtomicU*` (atomics may be changed by anyone, including another process, so such
//! references are sound); ring data is reached only through raw pointers.

use crate::error::{Error, Result};
use crate::shm::layout::{Header, Layout, RingControl, MAGIC, VERSION};
use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{MemfdFlags, SealFlags};
use std::fs::File;
use std::mem::offset_of;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;

/// A mapped region. Dropping it unmaps it and closes the memfd.
pub(crate) struct Region {
    map: MmapRaw,
    memfd: File,
    layout: Layout,
}

// The seals every region carries: nobody can shrink the file under a mapping (which
// would turn a read into SIGBUS), grow it, or change the seals.
fn required_seals() -> SealFlags {
    SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL
}

impl Region {
    /// Creates, sizes, seals and maps a fresh region and writes its header.
    pub(crate) fn create(layout: Layout) -> Result<Region> {
        // NOEXEC_SEAL (Linux 6.3+): the region is data, never code; kernels that know
        // the flag warn about a memfd created without it, and refuse one when
        // `vm.memfd_noexec` is 2. Older kernels refuse the flag itself: go without.
        let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
        let fd = match rustix::fs::memfd_create("shmpipe", flags | MemfdFlags::NOEXEC_SEAL) {
            Err(rustix::io::Errno::INVAL) => rustix::fs::memfd_create("shmpipe", flags)?,
            other => other?,
        };
        rustix::fs::ftruncate(&fd, layout.size() as u64)?;
        rustix::fs::fcntl_add_seals(&fd, required_seals())?;
        let region = Region::map(fd, layout)?;
        // The header is written before any other process can reach the region (the fd
        // has not been shared yet), so the ordering of these stores does not matter.
        let h = region.header();
        h.magic.store(MAGIC, Ordering::Relaxed);
        h.version.store(VERSION, Ordering::Relaxed);
        h.rings.store(layout.rings as u32, Ordering::Relaxed);
        h.capacity.store(layout.capacity as u64, Ordering::Relaxed);
        Ok(region)
    }

    /// Maps a region received from another process, trusting nothing (see
    /// [`Region::check`]). The layout is read once, here, and kept in this process; the
    /// header is never consulted again.
    pub(crate) fn attach(memfd: OwnedFd) -> Result<Region> {
        let layout = Region::check(memfd.as_fd())?;
        Region::map(memfd, layout)
    }

    /// Checks, without mapping it or taking it over, that `memfd` holds a region: a
    /// memfd sealed against resizing whose size matches a header with our magic and
    /// version. Returns the geometry the header gives.
    pub(crate) fn check(memfd: BorrowedFd<'_>) -> Result<Layout> {
        let seals = rustix::fs::fcntl_get_seals(memfd)
            .map_err(|e| Error::Invalid(format!("region fd is not a memfd: {e}")))?;
        if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
            return Err(Error::Invalid(
                "region memfd is not sealed against resizing".into(),
            ));
        }
        let size = rustix::fs::fstat(memfd)?.st_size as u64;
        if size
            < Layout::new(1, crate::shm::layout::MIN_CAPACITY)
                .unwrap()
                .size() as u64
        {
            return Err(Error::Invalid(format!(
                "region of {size} bytes is too small"
            )));
        }
        // Read the header with pread: a copy of our own, read once.
        let mut page = [0u8; std::mem::size_of::<Header>()];
        let mut got = 0;
        while got < page.len() {
            match rustix::io::pread(memfd, &mut page[got..], got as u64) {
                Ok(0) => return Err(Error::Invalid("region header is cut short".into())),
                Ok(n) => got += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let u64_at = |at: usize| u64::from_ne_bytes(page[at..at + 8].try_into().unwrap());
        let u32_at = |at: usize| u32::from_ne_bytes(page[at..at + 4].try_into().unwrap());
        let magic = u64_at(offset_of!(Header, magic));
        let version = u32_at(offset_of!(Header, version));
        let rings = u32_at(offset_of!(Header, rings)) as usize;
        let capacity = u64_at(offset_of!(Header, capacity));
        if magic != MAGIC {
            return Err(Error::Invalid(
                "region does not start with the shmpipe magic".into(),
            ));
        }
        if version != VERSION {
            return Err(Error::Invalid(format!(
                "region has layout version {version}, this library speaks {VERSION}"
            )));
        }
        let layout = usize::try_from(capacity)
            .ok()
            .and_then(|c| Layout::new(rings, c))
            .ok_or_else(|| Error::Invalid(format!("bad geometry: {rings} rings of {capacity}")))?;
        if layout.size() as u64 != size {
            return Err(Error::Invalid(format!(
                "region is {size} bytes, its header says {}",
                layout.size()
            )));
        }
        Ok(layout)
    }

    /// Maps `memfd`, whose geometry was checked to be `layout`.
    pub(crate) fn map(memfd: OwnedFd, layout: Layout) -> Result<Region> {
        let memfd = File::from(memfd);
        let map = MmapOptions::new().len(layout.size()).map_raw(&memfd)?;
        Ok(Region { map, memfd, layout })
    }

    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    pub(crate) fn memfd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: offset 0 of a mapping at least one page long, page aligned; `Header`
        // is all atomics and fits in a page.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    pub(crate) fn control(&self, ring: usize) -> &RingControl {
        assert!(ring < self.layout.rings);
        // SAFETY: `control_offset` lies inside the mapping with room for a RingControl
        // (checked at compile time in `layout`), 128-byte aligned because the mapping is
        // page aligned; the block is all atomics.
        unsafe { &*(self.map.as_ptr().add(self.layout.control_offset(ring)) as *const RingControl) }
    }

    /// Start of ring `ring`'s data area: `capacity` bytes, page aligned.
    pub(crate) fn data(&self, ring: usize) -> *mut u8 {
        assert!(ring < self.layout.rings);
        // SAFETY: `data_offset + capacity <= size`, the mapping's length.
        unsafe { self.map.as_mut_ptr().add(self.layout.data_offset(ring)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_is_sealed_and_not_executable_where_the_kernel_knows_how() {
        let region = Region::create(Layout::new(2, 4096).unwrap()).unwrap();
        let seals = rustix::fs::fcntl_get_seals(region.memfd()).unwrap();
        assert!(seals.contains(required_seals()));
        // F_SEAL_EXEC exists since Linux 6.3, as does MFD_NOEXEC_SEAL, which sets it.
        let probe = rustix::fs::memfd_create("probe", MemfdFlags::NOEXEC_SEAL);
        if probe.is_ok() {
            assert!(seals.contains(SealFlags::EXEC), "{seals:?}");
        }
        assert_eq!(Region::check(region.memfd()).unwrap(), region.layout());
    }
}

/// A reference to an atomic in a region's mapping, without a lifetime: for a hot path
/// that would otherwise reach it through the `Arc<Shared>` and the region: two dependent
/// loads before the one it wants, on every message.
#[derive(Clone, Copy)]
pub(crate) struct InRegion<T> {
    ptr: std::ptr::NonNull<T>,
}

// SAFETY: an `InRegion` is an address in a shared mapping of atomics (`T: Sync`), which
// any thread of the process may touch; the mapping is kept alive by the `Arc<Shared>`
// of the endpoint that holds it, wherever that endpoint moves (as for `RingRef`).
unsafe impl<T: Sync> Send for InRegion<T> {}

impl<T: Sync> InRegion<T> {
    /// # Safety
    /// `value` must lie in a region's mapping that outlives every use of the result (the
    /// holder keeps the region's `Arc<Shared>`), and `T` must be made of atomics.
    pub(crate) unsafe fn new(value: &T) -> InRegion<T> {
        InRegion {
            ptr: std::ptr::NonNull::from(value),
        }
    }

    /// The value.
    #[inline(always)]
    pub(crate) fn get(&self) -> &T {
        // SAFETY: `new`'s contract: the mapping outlives `self`, and atomics may be
        // shared with anyone, another process included.
        unsafe { self.ptr.as_ref() }
    }
}
