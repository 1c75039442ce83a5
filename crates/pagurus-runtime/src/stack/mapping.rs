//! An anonymous read/write mapping with a PROT_NONE guard region below it: the memory of every
//! stack the runtime makes (coroutine stacks, system stacks, alternate signal stacks).

use std::io;

use memmap2::{MmapMut, MmapOptions};

pub(crate) struct Mapping {
    map: MmapMut,
    size: usize,
}

// SAFETY: a Mapping is plain memory owned by whoever holds it; moving the owner between threads
// moves nothing that is tied to a thread.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `size` usable bytes above `guard` bytes of PROT_NONE (both multiples of a page).
    pub(crate) fn new(size: usize, guard: usize) -> io::Result<Mapping> {
        let len = size
            .checked_add(guard)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "stack size overflows"))?;
        // MAP_STACK documents the intent (and keeps transparent huge pages off small stacks on
        // recent kernels); MAP_NORESERVE keeps the guard from being charged against overcommit.
        let mut map = MmapOptions::new()
            .len(len)
            .stack()
            .no_reserve_swap()
            .map_anon()?;
        // SAFETY: the first `guard` bytes lie inside the mapping we own; nothing refers to them
        // yet, so revoking access cannot invalidate a live reference.
        let rc = unsafe { libc::mprotect(map.as_mut_ptr().cast(), guard, libc::PROT_NONE) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { map, size })
    }

    /// Lowest address of the mapping (the guard's start).
    pub(crate) fn start(&self) -> usize {
        self.map.as_ptr() as usize
    }

    /// One past the highest address; page-aligned, so 16-byte aligned.
    pub(crate) fn top(&self) -> usize {
        self.start() + self.map.len()
    }

    /// Lowest usable address.
    pub(crate) fn bottom(&self) -> usize {
        self.top() - self.size
    }

    /// Usable bytes.
    pub(crate) fn size(&self) -> usize {
        self.size
    }
}
