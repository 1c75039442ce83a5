//! Coroutine stacks: one contiguous mapping per stack, a PROT_NONE guard region below it.
//!
//! ```text
//!   high  +---------------------------+  top (16-aligned; the initial frame sits just below)
//!         |  usable stack (size bytes)|  read/write, grows downwards
//!         +---------------------------+  bottom
//!         |  guard (GUARD_SIZE bytes) |  PROT_NONE: any touch faults
//!   low   +---------------------------+  mapping start
//! ```
//!
//! A stack knows its own bounds and nothing outside it keeps pointers into it except the saved
//! stack pointer of a suspended coroutine (see `coroutine`). That is the invariant the growth
//! engine needs to move a stack.
//!
//! Every stack is one mapping split by `mprotect` into two VMAs, so each live stack costs two of
//! the kernel's `vm.max_map_count` (65,530 by default) entries: about 32,000 live stacks is the
//! ceiling until stacks are carved out of shared arenas.

mod mapping;
mod pool;
mod system;

pub(crate) use mapping::Mapping;
pub(crate) use pool::StackPool;
pub use system::{SYSTEM_STACK_SIZE, on_system_stack};
pub(crate) use system::{on_system_stack_active, system_stack_guard_contains};

use std::io;

use crate::stats;

/// Facts about the stack the calling code runs on.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// pagurus::run(|| {
///     let info = pagurus::stack::current().expect("inside a coroutine");
///     assert_eq!(info.size, 4096);
///     assert!(info.used > 0 && info.used < info.size);
/// });
/// assert!(pagurus::stack::current().is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StackInfo {
    /// Usable bytes of the current stack.
    pub size: usize,
    /// Bytes between the top of the stack and the caller's stack pointer.
    pub used: usize,
    /// How many times this coroutine's stack has been moved to a larger one.
    pub growths: u64,
}

/// Describes the stack of the coroutine calling it; `None` on a plain thread stack.
pub fn current() -> Option<StackInfo> {
    crate::coroutine::current_usage().map(|(size, used, growths)| StackInfo {
        size,
        used,
        growths,
    })
}

/// Guarantees `bytes` of stack below the caller, moving the current coroutine to a larger stack
/// first if needed (at this call, without a fault). Call it before lending stack data to another
/// thread or before code that needs a lot of stack at once (a foreign call). Outside a coroutine
/// it does nothing: thread stacks are the OS's.
///
/// With enough headroom it costs two loads and a compare.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// pagurus::run(|| {
///     pagurus::stack::ensure(256 * 1024);
///     assert!(pagurus::stack::remaining().unwrap() >= 256 * 1024);
///     assert_eq!(pagurus::stack::current().unwrap().growths, 1);
/// });
/// ```
///
/// # Panics
///
/// Never; a coroutine that would exceed its runtime's `max_stack_size` aborts the process with a
/// message instead.
#[inline]
pub fn ensure(bytes: usize) {
    if let Some(headroom) = crate::coroutine::current_headroom()
        && headroom < bytes
    {
        crate::coroutine::request_growth(bytes);
    }
}

/// Bytes left between the caller's stack pointer and the bottom of the current coroutine's
/// stack; `None` on a plain thread stack.
#[inline]
pub fn remaining() -> Option<usize> {
    crate::coroutine::current_headroom()
}

/// Size of a page; stack sizes are powers of two no smaller than this.
pub const PAGE_SIZE: usize = 4096;

/// Size of the PROT_NONE region under every stack.
///
/// It is this large because a fault must land *inside* it to be recognised as an overflow of this
/// stack. Large frames are entered through a probe loop that computes its end bound (usually in
/// `r11`) as `rsp - frame_size` before touching anything, and describes its CFA through that
/// register; when the first probe faults, the bound already points up to a whole frame below the
/// stack. With a 4 MiB guard, frames of up to about 4 MiB (including 1 MiB Rust arrays and glibc's
/// unprobed 33 KiB frames) fault here and keep their bound inside the region the relocation engine
/// treats as "this stack". It costs address space only: PROT_NONE pages are never backed, and even
/// 32,000 stacks use 128 GiB of the 128 TiB user address space.
pub const GUARD_SIZE: usize = 4 << 20;

/// One coroutine stack and its guard region.
pub(crate) struct Stack {
    map: Mapping,
}

impl Stack {
    /// Maps a stack with `size` usable bytes above a [`GUARD_SIZE`] guard.
    ///
    /// `size` must be a power of two no smaller than [`PAGE_SIZE`] (checked by the builder).
    pub(crate) fn new(size: usize) -> io::Result<Stack> {
        debug_assert!(size.is_power_of_two() && size >= PAGE_SIZE);
        crate::prepare_process();
        let map = Mapping::new(size, GUARD_SIZE)?;
        stats::stack_mapped(size);
        Ok(Stack { map })
    }

    /// Usable bytes.
    pub(crate) fn size(&self) -> usize {
        self.map.size()
    }

    /// One past the highest usable byte; 16-byte aligned.
    pub(crate) fn top(&self) -> usize {
        self.map.top()
    }

    /// Lowest usable byte.
    pub(crate) fn bottom(&self) -> usize {
        self.map.bottom()
    }

    /// Lowest byte of the guard region.
    pub(crate) fn guard_start(&self) -> usize {
        self.map.start()
    }

    /// Whether `addr` lies in the usable part of the stack.
    #[cfg(test)]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        (self.bottom()..self.top()).contains(&addr)
    }

    /// Gives up ownership of the mapping without unmapping it: `(start, len, size)` of the whole
    /// mapping (guard included) and the usable size. Async-signal-safe.
    pub(crate) fn into_raw(self) -> (usize, usize, usize) {
        let parts = (
            self.guard_start(),
            self.top() - self.guard_start(),
            self.size(),
        );
        // Forgetting skips both our Drop and the map's munmap: the mapping lives on, owned by
        // whoever holds the parts.
        std::mem::forget(self);
        parts
    }

    /// Unmaps a mapping given up by [`Stack::into_raw`]. Async-signal-safe.
    ///
    /// # Safety
    /// The parts come from `into_raw`, and this is called once for them.
    pub(crate) unsafe fn unmap_raw(start: usize, len: usize, size: usize) {
        // SAFETY: per the contract the range is a whole mapping nobody else owns.
        unsafe { libc::munmap(start as *mut libc::c_void, len) };
        stats::stack_unmapped(size);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        stats::stack_unmapped(self.size());
    }
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("bottom", &format_args!("{:#x}", self.bottom()))
            .field("top", &format_args!("{:#x}", self.top()))
            .field("size", &self.size())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_consistent() {
        let s = Stack::new(16 * 1024).unwrap();
        assert_eq!(s.size(), 16 * 1024);
        assert_eq!(s.top() % 16, 0);
        assert_eq!(s.top() - s.bottom(), 16 * 1024);
        assert_eq!(s.bottom() - s.guard_start(), GUARD_SIZE);
        assert!(s.contains(s.bottom()) && s.contains(s.top() - 1));
        assert!(!s.contains(s.top()) && !s.contains(s.bottom() - 1));
        // The usable part is writable end to end.
        for addr in (s.bottom()..s.top()).step_by(PAGE_SIZE) {
            // SAFETY: addr is inside the usable, read/write part of a stack we own.
            unsafe { (addr as *mut u64).write_volatile(0xdead_beef) };
        }
    }
}
