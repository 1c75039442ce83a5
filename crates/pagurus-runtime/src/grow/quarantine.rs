//! Quarantine of moved-out stacks: catching pointers that outlived a move.
//!
//! The relocation engine fixes every pointer *into* a stack that lives *on* the stack or in the
//! coroutine's registers. A pointer to stack data kept anywhere else (the heap, a global, another
//! thread) is invisible to it and goes stale when the stack moves. With quarantine on, an old
//! stack is not reused: its pages are released (`MADV_DONTNEED`) and the whole mapping is made
//! PROT_NONE, so the first use of a stale pointer faults, and the fault handler reports which
//! coroutine's old stack it pointed into and where, instead of letting it read or corrupt
//! whatever reused the memory.
//!
//! The quarantine is a bounded FIFO of [`CAPACITY`] mappings for the whole process; the oldest is
//! unmapped when a new one arrives. It costs address space and two mappings' worth of
//! `vm.max_map_count` per entry at most, no memory. Its stacks are counted in
//! `stats().stack_bytes_quarantined`, not in `stack_bytes_reserved` (they are neither in use nor
//! pooled), and stay after every runtime is gone.
//!
//! On by default in debug builds of this crate, off in release; `Builder::stack_quarantine` and
//! the `PAGURUS_STACK_QUARANTINE=1|0` environment variable (read when a runtime is built or a raw
//! coroutine created; an invalid value is an error there) choose.
//!
//! Everything here is async-signal-safe: atomics and system calls only.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};

use crate::stack::Stack;
use crate::stats;

/// How many old stacks stay quarantined at once.
pub(crate) const CAPACITY: usize = 64;

struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    size: AtomicUsize,
    /// The coroutine id, or 0 for a raw coroutine.
    id: AtomicU64,
}

static SLOTS: [Slot; CAPACITY] = [const {
    Slot {
        start: AtomicUsize::new(0),
        len: AtomicUsize::new(0),
        size: AtomicUsize::new(0),
        id: AtomicU64::new(0),
    }
}; CAPACITY];
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The quarantine default: `PAGURUS_STACK_QUARANTINE` if set, else on in debug builds. A value
/// that is not one of `env::ACCEPTED` is an `InvalidInput` error naming the variable and listing
/// them (it used to run as if unset).
pub(crate) fn default_enabled() -> io::Result<bool> {
    crate::env::flag(
        "PAGURUS_STACK_QUARANTINE",
        cfg!(debug_assertions),
        "on in debug builds",
    )
}

/// Quarantines the stack a coroutine (`id`, 0 for raw) just moved out of, evicting (unmapping)
/// the oldest entry if the FIFO is full. Async-signal-safe.
pub(crate) fn admit(stack: Stack, id: u64) {
    let (start, len, size) = stack.into_raw();
    // Not in use, not reusable: counted apart from the reserved bytes from now on.
    stats::stack_quarantined(size);
    // SAFETY: the mapping is ours (just released by `into_raw`); releasing its pages and revoking
    // access affects nothing else: the coroutine already runs on its new stack.
    unsafe {
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
        libc::mprotect(start as *mut libc::c_void, len, libc::PROT_NONE);
    }
    let slot = &SLOTS[NEXT.fetch_add(1, Relaxed) % CAPACITY];
    // Invalidate the slot while it changes, so a reader never pairs a new range with an old id.
    let old_len = slot.len.swap(0, AcqRel);
    let old_start = slot.start.load(Acquire);
    let old_size = slot.size.load(Acquire);
    slot.start.store(start, Relaxed);
    slot.size.store(size, Relaxed);
    slot.id.store(id, Relaxed);
    slot.len.store(len, Release);
    if old_len != 0 {
        // SAFETY: the evicted range was a whole stack mapping given to us by `into_raw`, and no
        // one else unmaps it.
        unsafe { Stack::unmap_raw(old_start, old_len, old_size) };
        stats::quarantined_stack_unmapped(old_size);
    }
}

/// The id of the coroutine whose quarantined old stack contains `addr` (0 for a raw coroutine).
/// Async-signal-safe.
pub(crate) fn lookup(addr: usize) -> Option<u64> {
    SLOTS.iter().find_map(|slot| {
        let len = slot.len.load(Acquire);
        let start = slot.start.load(Relaxed);
        (len != 0 && addr >= start && addr - start < len).then(|| slot.id.load(Relaxed))
    })
}
