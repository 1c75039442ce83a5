//! An anonymous read/write mapping with a PROT_NONE guard region below it: the memory of every
//! stack the runtime makes (coroutine stacks, system stacks, alternate signal stacks).
//!
//! The top of a mapping can be placed at a given residue modulo a power of two
//! ([`Mapping::placed`]): a stack a coroutine moves to must keep its addresses' residues (see
//! `Placement`). The extra address space is reserved only for a moment and trimmed.

use std::io;
use std::ptr;

use super::{PAGE_SIZE, Placement};

pub(crate) struct Mapping {
    /// Lowest address (the guard's start).
    start: usize,
    /// Bytes mapped, guard included.
    len: usize,
    /// Usable bytes.
    size: usize,
}

// SAFETY: a Mapping is plain memory owned by whoever holds it; moving the owner between threads
// moves nothing that is tied to a thread.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `size` usable bytes above `guard` bytes of PROT_NONE (both multiples of a page).
    /// Async-signal-safe (system calls only).
    pub(crate) fn new(size: usize, guard: usize) -> io::Result<Mapping> {
        Mapping::placed(size, guard, Placement::ANY)
    }

    /// [`Mapping::new`] with the top (one past the highest usable byte) where `placement` asks.
    /// Async-signal-safe.
    pub(crate) fn placed(size: usize, guard: usize, placement: Placement) -> io::Result<Mapping> {
        let Placement { modulus, residue } = placement;
        debug_assert!(modulus.is_power_of_two() && modulus >= PAGE_SIZE && residue < modulus);
        let overflow = || io::Error::new(io::ErrorKind::InvalidInput, "stack size overflows");
        let len = size.checked_add(guard).ok_or_else(overflow)?;
        let total = len.checked_add(modulus - PAGE_SIZE).ok_or_else(overflow)?;
        // MAP_STACK documents the intent (and keeps transparent huge pages off small stacks on
        // recent kernels); MAP_NORESERVE keeps the guard from being charged against overcommit.
        // SAFETY: a fresh anonymous mapping at an address the kernel chooses affects nothing
        // else.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = base as usize;
        // The lowest top with the residue asked for that leaves `len` bytes above `base`; both
        // are page multiples, so it is at most `modulus - PAGE_SIZE` above `base + len`, inside
        // the reservation.
        let lowest = base + len;
        let top = lowest + (residue.wrapping_sub(lowest) & (modulus - 1));
        let start = top - len;
        // SAFETY: both ranges are parts of the reservation just made, which nothing uses yet.
        unsafe {
            if start > base {
                libc::munmap(base as *mut libc::c_void, start - base);
            }
            if base + total > top {
                libc::munmap(top as *mut libc::c_void, base + total - top);
            }
        }
        let map = Mapping { start, len, size };
        // SAFETY: the first `guard` bytes lie inside the mapping we own; nothing refers to them
        // yet, so revoking access cannot invalidate a live reference.
        let rc = unsafe { libc::mprotect(start as *mut libc::c_void, guard, libc::PROT_NONE) };
        if rc != 0 {
            return Err(io::Error::last_os_error()); // `map` drops: unmapped
        }
        Ok(map)
    }

    /// Lowest address of the mapping (the guard's start).
    pub(crate) fn start(&self) -> usize {
        self.start
    }

    /// One past the highest address; page-aligned, so 16-byte aligned.
    pub(crate) fn top(&self) -> usize {
        self.start + self.len
    }

    /// Lowest usable address.
    pub(crate) fn bottom(&self) -> usize {
        self.top() - self.size
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is the whole mapping this value owns; nothing refers to it any more.
        unsafe { libc::munmap(self.start as *mut libc::c_void, self.len) };
    }
}
