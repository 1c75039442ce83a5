//! Coroutine stacks: contiguous usable memory with a guard region below it.
//!
//! ```text
//!   high  +---------------------------+  top (16-aligned; the initial frame sits just below)
//!         |  usable stack (size bytes)|  read/write, grows downwards
//!         +---------------------------+  bottom
//!         |  guard                    |  any touch faults
//!   low   +---------------------------+  guard start
//! ```
//!
//! Where the kernel has guard markers (`MADV_GUARD_INSTALL`, Linux 6.13+), stacks of up to
//! [`ARENA_MAX_SIZE`] are slots carved out of a few large arena mappings, each under an
//! [`ARENA_GUARD_SIZE`] guard of page-table markers, so a million stacks cost a handful of the
//! kernel's `vm.max_map_count` entries. Larger stacks, and every stack on other kernels, are one
//! mapping each, split by `mprotect` into two VMAs under a [`GUARD_SIZE`] guard; new mappings stop
//! short of that limit with a message naming it (see `arena`, and [`guards`] for which is in use).
//!
//! # Where a stack's top may lie
//!
//! A move (growth, or the restore of a compacted stack) shifts every address of the image by
//! `new.top - old.top`, and the compiler assumes that an over-aligned local it placed stays
//! aligned. So a moved-to stack is not any stack of the right size: its top must be congruent to
//! the old top modulo `max(1 MiB, min(old size, new size))` ([`Placement::for_move`]). That keeps
//! every alignment an object already on the stack may have (it fits in both stacks, so its
//! alignment is at most the smaller size), and up to 1 MiB for a frame being entered while the
//! move happens: its realignment was computed in the old addresses, possibly only a few pages
//! below the stack pointer, so the new stack's size does not bound it. Fresh stacks may lie
//! anywhere ([`Placement::ANY`]), which is what lets a million of them pack densely; the arena and
//! the pools keep their free stacks of each size by `top mod 1 MiB`, so a placed request is still
//! one list lookup.
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

mod arena;
mod classes;
mod mapping;
mod pool;
mod running;
mod system;

pub use arena::{ARENA_GUARD_SIZE, ARENA_MAX_SIZE, guards};
pub(crate) use arena::{prepare, trim as trim_arena, warm_bytes as arena_warm_bytes};
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

/// Size of the PROT_NONE region under every stack that is a mapping of its own (system stacks,
/// and coroutine stacks on kernels without guard markers; arena stacks use
/// [`ARENA_GUARD_SIZE`]).
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

/// The alignment a frame being entered during a move keeps, whatever the stacks' sizes (see
/// "Where a stack's top may lie" above): 1 MiB.
pub(crate) const MOVE_ALIGN: usize = 1 << 20;

/// Where a stack's top must lie: `top % modulus == residue`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Placement {
    /// A power of two, at least a page.
    pub(crate) modulus: usize,
    /// Below `modulus`, a multiple of a page.
    pub(crate) residue: usize,
}

impl Placement {
    /// Anywhere (a fresh stack).
    pub(crate) const ANY: Placement = Placement {
        modulus: PAGE_SIZE,
        residue: 0,
    };

    /// Where a stack of `new_size` taking the image of the stack `old` must have its top:
    /// congruent to `old.top` modulo `max(MOVE_ALIGN, min(old size, new_size))` (see the module
    /// docs). Async-signal-safe.
    pub(crate) fn for_move(old: Span, new_size: usize) -> Placement {
        let modulus = old.size().min(new_size).max(MOVE_ALIGN);
        Placement {
            modulus,
            residue: old.top & (modulus - 1),
        }
    }

    /// Whether a stack whose top is `top` lies where this placement asks.
    pub(crate) fn accepts(&self, top: usize) -> bool {
        top & (self.modulus - 1) == self.residue
    }
}

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

/// Where a stack's memory came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A slot of an arena, under an [`ARENA_GUARD_SIZE`] guard of page-table markers.
    Arena,
    /// A mapping of its own, under a [`GUARD_SIZE`] `PROT_NONE` guard (the fallback).
    Mapped,
}

/// One coroutine stack and its guard region: a slot of an arena, or (on kernels without guard
/// markers) a mapping of its own (see `arena`).
pub(crate) struct Stack {
    top: usize,
    size: usize,
    kind: Kind,
}

impl Stack {
    /// A fresh stack with `size` usable bytes above its guard, anywhere ([`Placement::ANY`]).
    /// See [`Stack::placed`].
    pub(crate) fn new(size: usize) -> io::Result<Stack> {
        Stack::placed(size, Placement::ANY)
    }

    /// A stack with `size` usable bytes above its guard and its top where `placement` asks: a
    /// slot of an arena (up to [`ARENA_MAX_SIZE`]), or a mapping of its own when arenas are not
    /// in use (or the stack is larger, or this thread is inside the arena already, or it has no
    /// room). Async-signal-safe (plain system calls, a spin lock that is never taken twice by a
    /// thread; the error is an OS error code).
    ///
    /// Aborts with a message naming `vm.max_map_count` when a mapping of its own would come too
    /// close to that limit.
    ///
    /// `size` must be a power of two no smaller than [`PAGE_SIZE`] (checked by
    /// [`validate_stack_size`]).
    pub(crate) fn placed(size: usize, placement: Placement) -> io::Result<Stack> {
        debug_assert!(size.is_power_of_two() && size >= PAGE_SIZE);
        if size <= ARENA_MAX_SIZE
            && arena::uses_arenas()
            && let Some(top) = arena::take(size, placement)
        {
            stats::stack_mapped(size);
            return Ok(Stack {
                top,
                size,
                kind: Kind::Arena,
            });
        }
        arena::admit_mapping();
        let map = match Mapping::placed(size, GUARD_SIZE, placement) {
            Ok(map) => map,
            Err(err) => {
                arena::mapping_gone();
                return Err(err);
            }
        };
        let top = map.top();
        // The stack owns the mapping from here on and unmaps it in `drop`.
        std::mem::forget(map);
        stats::stack_mapped(size);
        Ok(Stack {
            top,
            size,
            kind: Kind::Mapped,
        })
    }

    /// Usable bytes.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// One past the highest usable byte; 16-byte aligned.
    pub(crate) fn top(&self) -> usize {
        self.top
    }

    /// Lowest usable byte.
    pub(crate) fn bottom(&self) -> usize {
        self.top - self.size
    }

    /// Bytes of guard below the usable part.
    pub(crate) fn guard_size(&self) -> usize {
        match self.kind {
            Kind::Arena => ARENA_GUARD_SIZE,
            Kind::Mapped => GUARD_SIZE,
        }
    }

    /// Lowest byte of the guard region.
    pub(crate) fn guard_start(&self) -> usize {
        self.bottom() - self.guard_size()
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

    /// Gives up ownership of the stack without freeing it: `(start, len, size)` of the whole
    /// range (guard included) and the usable size. Its bytes stay counted as reserved in `stats`
    /// until the new owner accounts for them (the quarantine moves them to its own count).
    /// Async-signal-safe.
    pub(crate) fn into_raw(self) -> (usize, usize, usize) {
        let parts = (
            self.guard_start(),
            self.top() - self.guard_start(),
            self.size(),
        );
        // Forgetting skips our Drop: the memory lives on, owned by whoever holds the parts.
        std::mem::forget(self);
        parts
    }

    /// Frees a stack given up by [`Stack::into_raw`], whose whole range may have been made
    /// `PROT_NONE` meanwhile (quarantine): an arena slot gets its access back and returns to the
    /// arena, a mapping of its own is unmapped; the caller accounts for its bytes in `stats`.
    /// Async-signal-safe.
    ///
    /// # Safety
    /// The parts come from `into_raw`, and this is called once for them.
    pub(crate) unsafe fn unmap_raw(start: usize, len: usize, size: usize) {
        if arena::contains(start) {
            // SAFETY: per the contract the range is a whole slot nobody else uses; restoring
            // read/write access lets the kernel merge it back into its region's VMA, and the
            // guard markers below the usable part were never removed.
            unsafe {
                libc::mprotect(
                    start as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                );
                arena::give_back(start + len, size);
            }
        } else {
            // SAFETY: per the contract the range is a whole mapping nobody else owns.
            unsafe { libc::munmap(start as *mut libc::c_void, len) };
            arena::mapping_gone();
        }
    }
}

impl Stack {
    /// Frees the stack with its memory given back to the system now. (Dropping an arena stack
    /// keeps its top page resident for the free list's link: cheaper to reuse, but resident.)
    pub(crate) fn release(self) {
        let this = std::mem::ManuallyDrop::new(self);
        match this.kind {
            Kind::Arena => {
                // SAFETY: the slot came from `arena::take` and we own it; nobody uses it any
                // more, and `this` is never dropped, so it is given back once.
                unsafe { arena::release(this.top, this.size) };
                stats::stack_unmapped(this.size);
            }
            Kind::Mapped => drop(std::mem::ManuallyDrop::into_inner(this)),
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let (start, len, size) = (self.guard_start(), self.top - self.guard_start(), self.size);
        match self.kind {
            // SAFETY: the slot came from `arena::take` and we own it; nobody uses it any more.
            Kind::Arena => unsafe {
                arena::give_back(self.top, size);
            },
            Kind::Mapped => {
                // SAFETY: the range is the whole mapping this stack owns.
                unsafe { libc::munmap(start as *mut libc::c_void, len) };
                arena::mapping_gone();
            }
        }
        stats::stack_unmapped(size);
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
        assert_eq!(s.bottom() - s.guard_start(), s.guard_size());
        assert!([GUARD_SIZE, ARENA_GUARD_SIZE].contains(&s.guard_size()));
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
    fn placed_stacks_lie_where_asked() {
        // Small (arena slots where the kernel has guard markers) and large (mappings) stacks,
        // with every kind of residue: the top lands where asked and the stack is usable.
        for (size, modulus) in [
            (2 * PAGE_SIZE, MOVE_ALIGN),
            (64 << 10, MOVE_ALIGN),
            (1 << 20, MOVE_ALIGN),
            (2 << 20, MOVE_ALIGN),
            (8 << 20, 4 << 20),
        ] {
            for residue in [0, PAGE_SIZE, modulus - PAGE_SIZE, modulus / 2 + PAGE_SIZE] {
                let want = Placement {
                    modulus,
                    residue: residue % modulus,
                };
                let s = Stack::placed(size, want).unwrap();
                assert!(want.accepts(s.top()), "{size} {want:?}: top {:#x}", s.top());
                assert_eq!(s.size(), size);
                // SAFETY: both ends of the usable part of a stack we own.
                unsafe {
                    (s.bottom() as *mut u64).write_volatile(1);
                    ((s.top() - 8) as *mut u64).write_volatile(2);
                }
            }
        }
    }

    #[test]
    fn a_move_keeps_the_top_congruent() {
        let span = |top: usize, size: usize| Span {
            guard_start: top - size - ARENA_GUARD_SIZE,
            bottom: top - size,
            top,
        };
        let top = 0x7000_1234_5000;
        // Modulo 1 MiB, or the smaller of the two sizes when that is larger.
        assert_eq!(
            Placement::for_move(span(top, PAGE_SIZE), 8 * PAGE_SIZE),
            Placement {
                modulus: MOVE_ALIGN,
                residue: 0x4_5000
            }
        );
        assert_eq!(
            Placement::for_move(span(top, PAGE_SIZE), 4 << 20).modulus,
            MOVE_ALIGN
        );
        assert_eq!(
            Placement::for_move(span(top, 2 << 20), 4 << 20).modulus,
            2 << 20
        );
        // Shrinking: modulo the new size (or 1 MiB).
        assert_eq!(
            Placement::for_move(span(top, 4 << 20), 2 << 20).modulus,
            2 << 20
        );
        assert_eq!(
            Placement::for_move(span(top, 1 << 20), 2 * PAGE_SIZE).modulus,
            MOVE_ALIGN
        );
        assert!(Placement::ANY.accepts(top));
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
