//! The buffer arena: one anonymous mapping that holds an interface's rings and
//! packet buffers, identity-mapped for the device.
//!
//! # Design
//!
//! vhost-net reads rings and buffers through a memory table that maps "guest
//! physical" addresses to our virtual addresses. Like VPP, vtap makes the map
//! the identity: the guest address of a byte *is* its address in this process,
//! so a descriptor carries a plain pointer value, and the memory table has one
//! region. The arena is a `vm_memory::GuestMemoryMmap` with that single
//! identity region, which is exactly what rust-vmm's `vhost` crate (for
//! `VHOST_SET_MEM_TABLE` and ring address translation) and `virtio-queue`
//! (the userspace device side) consume, so all three see the same memory.
//!
//! Space is handed out once, at set-up, by a bump allocator; nothing is ever
//! freed until the arena goes. Every access from vtap goes through
//! vm-memory's checked, volatile accessors: no `unsafe` here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// Why an arena could not be made or an allocation served.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The mapping failed.
    #[error("cannot map {size} bytes for the buffer arena")]
    Map {
        /// Requested size.
        size: usize,
        /// vm-memory's error.
        #[source]
        source: vm_memory::mmap::MmapRegionError,
    },
    /// The region could not be registered.
    #[error("cannot register the arena region")]
    Region,
    /// Out of arena space.
    #[error("arena exhausted: {want} bytes asked, {left} left of {size}")]
    Exhausted {
        /// Bytes asked for.
        want: usize,
        /// Bytes left.
        left: usize,
        /// Arena size.
        size: usize,
    },
}

/// An identity-mapped memory arena (cheap to clone: shared).
#[derive(Clone, Debug)]
pub struct Arena {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    mem: Arc<GuestMemoryMmap>,
    base: u64,
    size: usize,
    next: AtomicUsize,
}

impl Arena {
    /// Maps `size` bytes (rounded up to a page).
    pub fn new(size: usize) -> Result<Self, Error> {
        let size = size.div_ceil(4096) * 4096;
        let region = MmapRegion::new(size).map_err(|source| Error::Map { size, source })?;
        let base = region.as_ptr() as u64;
        let region = GuestRegionMmap::new(region, GuestAddress(base)).ok_or(Error::Region)?;
        let mem = GuestMemoryMmap::from_regions(vec![region]).map_err(|_| Error::Region)?;
        Ok(Self {
            inner: Arc::new(Inner {
                mem: Arc::new(mem),
                base,
                size,
                next: AtomicUsize::new(0),
            }),
        })
    }

    /// The memory, for vm-memory accessors, vhost and virtio-queue.
    pub fn mem(&self) -> &GuestMemoryMmap {
        &self.inner.mem
    }

    /// The memory as a shared address space (what `vhost` and a backend
    /// thread hold on to).
    pub fn shared_mem(&self) -> Arc<GuestMemoryMmap> {
        self.inner.mem.clone()
    }

    /// First address (= the mapping's address in this process).
    pub fn base(&self) -> GuestAddress {
        GuestAddress(self.inner.base)
    }

    /// Size in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Bytes handed out so far.
    pub fn used(&self) -> usize {
        self.inner.next.load(Ordering::Relaxed)
    }

    /// Hands out `len` bytes aligned to `align` (a power of two), zeroed.
    pub fn alloc(&self, len: usize, align: usize) -> Result<GuestAddress, Error> {
        debug_assert!(align.is_power_of_two());
        let inner = &self.inner;
        let mut cur = inner.next.load(Ordering::Relaxed);
        loop {
            let start = cur.next_multiple_of(align);
            let end =
                start
                    .checked_add(len)
                    .filter(|&e| e <= inner.size)
                    .ok_or(Error::Exhausted {
                        want: len,
                        left: inner.size.saturating_sub(cur),
                        size: inner.size,
                    })?;
            match inner
                .next
                .compare_exchange(cur, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(GuestAddress(inner.base + start as u64)),
                Err(now) => cur = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryBackend;

    #[test]
    fn identity_mapped_and_aligned() {
        let a = Arena::new(10_000).expect("map");
        assert_eq!(a.size(), 12288);
        let x = a.alloc(3, 1).expect("alloc");
        assert_eq!(x, a.base());
        let y = a.alloc(16, 4096).expect("alloc");
        assert_eq!(y.0 % 4096, 0);
        // The guest address is this process's address of the same byte.
        let host = a.mem().get_host_address(y).expect("mapped");
        assert_eq!(host as u64, y.0);
        let e = a.alloc(1 << 20, 1).expect_err("too big");
        assert!(matches!(e, Error::Exhausted { .. }), "{e}");
    }
}
