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
//! Every stack is one mapping split by `mprotect` into two VMAs, so each live stack costs two of
//! the kernel's `vm.max_map_count` (65,530 by default) entries: about 32,000 live stacks is the
//! ceiling until stacks are carved out of shared arenas.
//!
//! # What may point into a stack, and when it may move
//!
//! A stack knows its own bounds ([`Span`], computed in one place: [`Stack::span`]), and the
//! growth movers (`grow`) may copy it elsewhere at any suspension or guard fault. That is sound
//! because of two rules, each asserted by the code that relies on it:
//!
//! 1. **Nothing outside a stack points into it**, except the saved stack pointer of a suspended
//!    coroutine (`Context::saved_sp`), which every mover adjusts. The scheduler keeps only task
//!    pointers, never pointers into stacks.
//! 2. **A pinned stack does not move.** The one exception to rule 1 is lent memory: an offloaded
//!    call (`offload::run`) runs on another thread with borrows of the parked coroutine's stack.
//!    The lender increments the context's pin count for as long as the borrow lives
//!    (`Context::pin`), and every mover asserts the count is zero before it copies anything
//!    (`grow::move_stack`), aborting with a message otherwise. (As Go's `copystack` refuses to
//!    run while a goroutine is in a system call.)
//!
//! # Layer
//!
//! `stack` imports only `arch`, `stats` and `fatal`. What it needs from the layers above is
//! handed down: the coroutine running on this thread is published in a thread-local owned here
//! ([`StackSlot`], [`running`]), and a worker registers its stack pool here ([`pool::register`])
//! so the fault handler can take and give back stacks without knowing the scheduler.

mod mapping;
mod pool;
mod running;
mod system;

pub(crate) use mapping::Mapping;
pub(crate) use pool::{Registration, StackPool, give_back, register_pool, take};
pub use running::{StackInfo, current, ensure, remaining};
pub(crate) use running::{StackSlot, running, running_word};
pub use system::{SYSTEM_STACK_SIZE, on_system_stack};
pub(crate) use system::{
    on_system_stack_active, prepare_system_stack, system_stack_guard_contains,
    system_stack_jumped_guard,
};

use std::io;

pub use crate::arch::PAGE_SIZE;
use crate::stats;

/// Size of the PROT_NONE region under every stack.
///
/// A fault must land *inside* it to be recognised as an overflow of this stack. Probed frames
/// (every Rust frame larger than a page) touch the stack a page at a time, so their first touch
/// lands here whatever their size; their probe loop's end bound (`rsp - frame_size`, usually in
/// `r11`, computed before that touch) may lie far below, and growth honours it wherever it points
/// (`grow::move_stack`). The size matters for *unprobed* frames, which skip their whole size
/// before touching anything: with 4 MiB, glibc's 33 KiB frames and C frames up to about 4 MiB
/// still fault here. It costs address space only: PROT_NONE pages are never backed, and even
/// 32,000 stacks use 128 GiB of the 128 TiB user address space.
pub const GUARD_SIZE: usize = 4 << 20;

/// Every coroutine stack's top is a multiple of this (1 MiB) and of its own size, so a move from
/// one stack to another (a growth) shifts every address by a multiple of 1 MiB and of the old
/// stack's size: an over-aligned local keeps its alignment across moves, both one that already
/// lives in the stack (its alignment is at most the old size, since it fits in it) and one whose
/// frame is being entered when the move happens (its alignment computed in the old stack's
/// addresses), up to 1 MiB. The padding this needs is address space only, reserved for a moment
/// when the stack is mapped and then unmapped.
pub(crate) const TOP_ALIGN: usize = 1 << 20;

/// The largest size a coroutine's stack may grow to unless the builder says otherwise (raw
/// coroutines always use it): 1 GiB.
pub(crate) const DEFAULT_MAX_STACK_SIZE: usize = 1 << 30;

/// Usable bytes of finished coroutines' stacks a worker keeps for reuse by default: 16 MiB.
pub(crate) const DEFAULT_POOL_BYTES: usize = 16 << 20;

/// The largest stack size accepted anywhere: 16 TiB (2^44).
///
/// Stacks are mapped whole (untouched pages cost no memory, only address space), and a process
/// has 128 TiB of user address space on x86_64 (47 bits). Every live coroutine holds its stack's
/// share, and a growth holds the old and the new stack for a moment (1.5 times the new size), so
/// the limit leaves room for a few coroutines of the largest size: at 2^46, a `block_on` and one
/// spawned coroutine could not both be mapped, and the first spawn aborted. The pools' size
/// classes (up to 2^47) cover every accepted size.
pub const MAX_STACK_SIZE_LIMIT: usize = 1 << 44;

/// Checks a stack size parameter named `param`: a power of two from one page to
/// [`MAX_STACK_SIZE_LIMIT`]. The error is `InvalidInput` naming the parameter and the range.
pub(crate) fn validate_stack_size(param: &str, bytes: usize) -> io::Result<()> {
    if bytes.is_power_of_two() && (PAGE_SIZE..=MAX_STACK_SIZE_LIMIT).contains(&bytes) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{param} must be a power of two from {PAGE_SIZE} to {MAX_STACK_SIZE_LIMIT} (16 \
                 TiB) bytes, got {bytes}"
            ),
        ))
    }
}

/// Where a stack lives, as the movers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    /// Lowest address of the guard region: values from here up to `top` are "into the stack".
    pub(crate) guard_start: usize,
    /// Lowest usable (readable) address.
    pub(crate) bottom: usize,
    /// One past the highest address.
    pub(crate) top: usize,
}

impl Span {
    /// Usable bytes.
    pub(crate) fn size(&self) -> usize {
        self.top.wrapping_sub(self.bottom)
    }

    /// Whether `addr` lies in the guard region. Async-signal-safe.
    pub(crate) fn guard_contains(&self, addr: usize) -> bool {
        (self.guard_start..self.bottom).contains(&addr)
    }
}

/// One coroutine stack and its guard region.
pub(crate) struct Stack {
    map: Mapping,
}

impl Stack {
    /// Maps a stack with `size` usable bytes above a [`GUARD_SIZE`] guard. Async-signal-safe
    /// (`mmap` and `mprotect` are plain system calls; the error is an OS error code).
    ///
    /// `size` must be a power of two no smaller than [`PAGE_SIZE`] (checked by
    /// [`validate_stack_size`]).
    ///
    /// The top is a multiple of [`TOP_ALIGN`] or of `size`, whichever is larger (see there).
    pub(crate) fn new(size: usize) -> io::Result<Stack> {
        debug_assert!(size.is_power_of_two() && size >= PAGE_SIZE);
        let map = Mapping::with_top_align(size, GUARD_SIZE, size.max(TOP_ALIGN))?;
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

    /// The bounds of the stack. Async-signal-safe.
    pub(crate) fn span(&self) -> Span {
        Span {
            guard_start: self.guard_start(),
            bottom: self.bottom(),
            top: self.top(),
        }
    }

    /// Whether `addr` lies in the usable part of the stack.
    #[cfg(test)]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        (self.bottom()..self.top()).contains(&addr)
    }

    /// Gives up ownership of the mapping without unmapping it: `(start, len, size)` of the whole
    /// mapping (guard included) and the usable size. Its bytes stay counted as reserved in
    /// `stats` until the new owner accounts for them (the quarantine moves them to its own
    /// count). Async-signal-safe.
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

    /// Unmaps a mapping given up by [`Stack::into_raw`]; the caller accounts for its bytes in
    /// `stats`. Async-signal-safe.
    ///
    /// # Safety
    /// The parts come from `into_raw`, and this is called once for them.
    pub(crate) unsafe fn unmap_raw(start: usize, len: usize) {
        // SAFETY: per the contract the range is a whole mapping nobody else owns.
        unsafe { libc::munmap(start as *mut libc::c_void, len) };
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
        assert_eq!(s.top() % TOP_ALIGN, 0, "tops are aligned for moves");
        assert_eq!(
            Stack::new(4 << 20).unwrap().top() % (4 << 20),
            0,
            "and to their size"
        );
        assert_eq!(s.top() - s.bottom(), 16 * 1024);
        assert_eq!(s.bottom() - s.guard_start(), GUARD_SIZE);
        let span = s.span();
        assert_eq!(
            (span.guard_start, span.bottom, span.top),
            (s.guard_start(), s.bottom(), s.top())
        );
        assert_eq!(span.size(), s.size());
        assert!(span.guard_contains(s.bottom() - 1) && !span.guard_contains(s.bottom()));
        assert!(!span.guard_contains(s.guard_start() - 1));
        assert!(s.contains(s.bottom()) && s.contains(s.top() - 1));
        assert!(!s.contains(s.top()) && !s.contains(s.bottom() - 1));
        // The usable part is writable end to end.
        for addr in (s.bottom()..s.top()).step_by(PAGE_SIZE) {
            // SAFETY: addr is inside the usable, read/write part of a stack we own.
            unsafe { (addr as *mut u64).write_volatile(0xdead_beef) };
        }
    }

    #[test]
    fn stack_sizes_are_validated_in_one_place() {
        assert!(validate_stack_size("x", PAGE_SIZE).is_ok());
        assert!(validate_stack_size("x", DEFAULT_MAX_STACK_SIZE).is_ok());
        for bad in [
            0,
            PAGE_SIZE / 2,
            PAGE_SIZE + 1,
            5000,
            MAX_STACK_SIZE_LIMIT * 2,
            1 << 47,
        ] {
            let err = validate_stack_size("initial_stack_size", bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            let msg = err.to_string();
            assert!(msg.starts_with("initial_stack_size "), "{msg}");
            assert!(
                msg.contains("from 4096 to 17592186044416 (16 TiB)"),
                "{msg}"
            );
        }
    }
}
