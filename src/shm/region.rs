//! The shared region: one memfd, sealed against resizing, mapped `MAP_SHARED`.
//!
//! This module and [`ring`](crate::ring) are the only places that turn addresses in the
//! mapping into references or pointers. The header and control blocks are reached as
//! `&AtomicU*` (atomics may be changed by anyone, including another process, so such
//! references are sound); ring data is reached only through raw pointers.

use crate::error::{Error, Result};
use crate::shm::layout::{Header, Layout, RingControl, MAGIC, VERSION};
use memmap2::{MmapOptions, MmapRaw};
use rustix::fs::{MemfdFlags, SealFlags};
use std::fs::File;
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
    pub fn create(layout: Layout) -> Result<Region> {
        let fd =
            rustix::fs::memfd_create("shmpipe", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        rustix::fs::ftruncate(&fd, layout.size() as u64)?;
        rustix::fs::fcntl_add_seals(&fd, required_seals())?;
        let region = Region::map(File::from(fd), layout)?;
        // The header is written before any other process can reach the region (the fd
        // has not been shared yet), so the ordering of these stores does not matter.
        let h = region.header();
        h.magic.store(MAGIC, Ordering::Relaxed);
        h.version.store(VERSION, Ordering::Relaxed);
        h.rings.store(layout.rings as u32, Ordering::Relaxed);
        h.capacity.store(layout.capacity as u64, Ordering::Relaxed);
        Ok(region)
    }

    /// Maps a region received from another process, trusting nothing: the fd must be a
    /// sealed memfd whose size matches a header with our magic and version. The layout is
    /// read once here and kept in this process; the header is never consulted again.
    pub fn attach(memfd: OwnedFd) -> Result<Region> {
        let seals = rustix::fs::fcntl_get_seals(&memfd)
            .map_err(|e| Error::Invalid(format!("region fd is not a memfd: {e}")))?;
        if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
            return Err(Error::Invalid(
                "region memfd is not sealed against resizing".into(),
            ));
        }
        let size = rustix::fs::fstat(&memfd)?.st_size as u64;
        if size
            < Layout::new(1, crate::shm::layout::MIN_CAPACITY)
                .unwrap()
                .size() as u64
        {
            return Err(Error::Invalid(format!(
                "region of {size} bytes is too small"
            )));
        }
        // Map just the header page first to learn the geometry.
        let file = File::from(memfd);
        let probe = MmapOptions::new().len(4096).map_raw(&file)?;
        // SAFETY: the mapping is 4096 bytes, page aligned, and `Header` fits in it (checked
        // at compile time in `layout`); its fields are atomics, fine to share.
        let h = unsafe { &*(probe.as_ptr() as *const Header) };
        let magic = h.magic.load(Ordering::Relaxed);
        let version = h.version.load(Ordering::Relaxed);
        let rings = h.rings.load(Ordering::Relaxed) as usize;
        let capacity = h.capacity.load(Ordering::Relaxed);
        drop(probe);
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
        Region::map(file, layout)
    }

    fn map(memfd: File, layout: Layout) -> Result<Region> {
        let map = MmapOptions::new().len(layout.size()).map_raw(&memfd)?;
        Ok(Region { map, memfd, layout })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn memfd(&self) -> BorrowedFd<'_> {
        self.memfd.as_fd()
    }

    pub fn header(&self) -> &Header {
        // SAFETY: offset 0 of a mapping at least one page long, page aligned; `Header`
        // is all atomics and fits in a page.
        unsafe { &*(self.map.as_ptr() as *const Header) }
    }

    pub fn control(&self, ring: usize) -> &RingControl {
        assert!(ring < self.layout.rings);
        // SAFETY: `control_offset` lies inside the mapping with room for a RingControl
        // (checked at compile time in `layout`), 128-byte aligned because the mapping is
        // page aligned; the block is all atomics.
        unsafe { &*(self.map.as_ptr().add(self.layout.control_offset(ring)) as *const RingControl) }
    }

    /// Start of ring `ring`'s data area: `capacity` bytes, page aligned.
    pub fn data(&self, ring: usize) -> *mut u8 {
        assert!(ring < self.layout.rings);
        // SAFETY: `data_offset + capacity <= size`, the mapping's length.
        unsafe { self.map.as_mut_ptr().add(self.layout.data_offset(ring)) }
    }
}
