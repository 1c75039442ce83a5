//! A bounded cache of stacks, one free list per power-of-two size class, and the thread's
//! registered pool.
//!
//! Each worker owns one pool and touches it only from its own thread, so it needs no lock.
//! Pooled stacks keep their pages resident: a warm spawn takes a stack whose pages are already
//! mapped and faulted in, so it costs no `mmap`, no `mprotect` and no page fault.
//!
//! One verb pair moves stacks in and out: [`StackPool::take`] / [`StackPool::give_back`], and
//! the same pair on this thread's registered pool, [`take`] / [`give_back`], which is how the
//! growth movers (the fault handler among them) reach the worker's pool without knowing the
//! scheduler. A worker registers its pool for as long as it runs coroutines ([`register_pool`]).
//!
//! # Signal-safe
//!
//! Every operation here may run in the SIGSEGV handler: the free lists are intrusive (a pooled
//! stack holds the link to the next one in its own top bytes, memory nobody else uses while it is
//! pooled), so giving a stack back never allocates; counters are relaxed atomics; mapping and
//! unmapping are plain system calls. The registered pool is reached with `try_borrow_mut`, which
//! cannot fail while a coroutine runs (its worker holds no borrow across a resume).

use std::cell::{Cell, RefCell};
use std::io;
use std::mem::{align_of, size_of};
use std::ptr;

use super::{PAGE_SIZE, Stack};
use crate::stats;

/// Size classes go from one page (class 0) up to 2^47 bytes.
const CLASSES: usize = 36;

/// Where a pooled stack keeps the link to the next one: this many bytes below its top (room for
/// the link, rounded up to keep it aligned).
const LINK_OFFSET: usize = size_of::<Option<Stack>>().next_multiple_of(16);
const _: () = assert!(align_of::<Option<Stack>>() <= 16 && LINK_OFFSET <= PAGE_SIZE);

pub(crate) struct StackPool {
    /// The first stack of each class; each holds the next in its own memory (see `push`).
    free: [Option<Stack>; CLASSES],
    counts: [usize; CLASSES],
    pooled_bytes: usize,
    limit_bytes: usize,
    stats: stats::Local,
}

impl StackPool {
    /// A pool that keeps at most `limit_bytes` of usable stack memory.
    pub(crate) fn new(limit_bytes: usize) -> StackPool {
        StackPool {
            free: std::array::from_fn(|_| None),
            counts: [0; CLASSES],
            pooled_bytes: 0,
            limit_bytes,
            stats: stats::Local::new(),
        }
    }

    fn class(size: usize) -> usize {
        (size / PAGE_SIZE).trailing_zeros() as usize
    }

    /// A stack of exactly `size` usable bytes: a pooled one when there is one, else a fresh
    /// mapping. Async-signal-safe.
    pub(crate) fn take(&mut self, size: usize) -> io::Result<Stack> {
        match self.pop(size) {
            Some(stack) => Ok(stack),
            None => Stack::new(size),
        }
    }

    /// Keeps `stack` for reuse, or unmaps it when the pool is full. Async-signal-safe.
    pub(crate) fn give_back(&mut self, stack: Stack) {
        let size = stack.size();
        if self.pooled_bytes + size > self.limit_bytes {
            return; // dropping unmaps it
        }
        let class = Self::class(size);
        let link = (stack.top() - LINK_OFFSET) as *mut Option<Stack>;
        // SAFETY: `link` lies in the top page of the usable, read/write part of `stack`, is
        // aligned (top is page-aligned, LINK_OFFSET a multiple of 16), and nothing else uses that
        // memory while the stack is pooled: the pool owns it. The handle written there is read
        // back exactly once, by `pop`, before the stack leaves the pool.
        unsafe { ptr::write(link, self.free[class].take()) };
        self.free[class] = Some(stack);
        self.counts[class] += 1;
        self.pooled_bytes += size;
        self.stats.pooled(self.pooled_bytes);
    }

    /// A pooled stack of `size` bytes, never a new mapping.
    fn pop(&mut self, size: usize) -> Option<Stack> {
        let class = Self::class(size);
        let stack = self.free.get_mut(class)?.take()?;
        let link = (stack.top() - LINK_OFFSET) as *const Option<Stack>;
        // SAFETY: `give_back` wrote the next handle there when it pooled `stack`, and nothing
        // has touched the pooled stack's memory since; reading it moves that handle out once.
        self.free[class] = unsafe { ptr::read(link) };
        self.counts[class] -= 1;
        self.pooled_bytes -= size;
        self.stats.pooled(self.pooled_bytes);
        Some(stack)
    }
}

impl Drop for StackPool {
    fn drop(&mut self) {
        // Unmap iteratively: each stack holds the next one's handle in its own memory.
        for class in 0..CLASSES {
            while let Some(stack) = self.pop(PAGE_SIZE << class) {
                drop(stack);
            }
        }
    }
}

thread_local! {
    /// The pool of the worker (or `block_on` call) running on this thread; null when none.
    static REGISTERED: Cell<*const RefCell<StackPool>> = const { Cell::new(ptr::null()) };
}

/// Makes `pool` this thread's pool until the returned registration drops.
///
/// # Safety
/// `pool` must stay alive (and not move) until the registration drops, and the registration must
/// drop on this thread.
pub(crate) unsafe fn register_pool(pool: &RefCell<StackPool>) -> Registration {
    Registration {
        previous: REGISTERED.with(|c| c.replace(pool)),
    }
}

/// Restores the thread's previous pool when dropped.
#[must_use = "the pool is unregistered when this drops"]
pub(crate) struct Registration {
    previous: *const RefCell<StackPool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        REGISTERED.with(|c| c.set(self.previous));
    }
}

/// Runs `f` on this thread's registered pool if there is one and nobody borrows it now.
fn with_registered<R>(f: impl FnOnce(&mut StackPool) -> R) -> Option<R> {
    let pool = REGISTERED.with(Cell::get);
    // SAFETY: a registered pool outlives its registration (`register_pool`'s contract), which
    // clears the pointer when it drops.
    let pool = unsafe { pool.as_ref() }?;
    let mut pool = pool.try_borrow_mut().ok()?;
    Some(f(&mut pool))
}

/// A stack of `size` usable bytes from this thread's pool, or a fresh mapping when the thread
/// has none (or it is busy). Async-signal-safe.
pub(crate) fn take(size: usize) -> io::Result<Stack> {
    with_registered(|pool| pool.take(size)).unwrap_or_else(|| Stack::new(size))
}

/// Gives `stack` back to this thread's pool; unmaps it when there is none (or it is busy, or
/// full). Async-signal-safe.
pub(crate) fn give_back(stack: Stack) {
    let mut stack = Some(stack);
    with_registered(|pool| {
        if let Some(stack) = stack.take() {
            pool.give_back(stack);
        }
    });
    drop(stack); // not pooled: unmapped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_same_class_and_respects_limit() {
        let mut pool = StackPool::new(3 * PAGE_SIZE);
        let a = pool.take(PAGE_SIZE).unwrap();
        let a_top = a.top();
        pool.give_back(a);
        let b = pool.take(PAGE_SIZE).unwrap();
        assert_eq!(b.top(), a_top, "a pooled stack of the same class is reused");
        let c = pool.take(2 * PAGE_SIZE).unwrap();
        let d = pool.take(2 * PAGE_SIZE).unwrap();
        pool.give_back(b);
        pool.give_back(c);
        assert_eq!(pool.pooled_bytes, 3 * PAGE_SIZE);
        pool.give_back(d); // over the limit: unmapped
        assert_eq!(pool.pooled_bytes, 3 * PAGE_SIZE);
        assert_eq!(pool.counts[1], 1);
    }

    #[test]
    fn free_lists_hand_back_every_stack_once() {
        let mut pool = StackPool::new(64 * PAGE_SIZE);
        let stacks: Vec<Stack> = (0..5).map(|_| pool.take(PAGE_SIZE).unwrap()).collect();
        let mut tops: Vec<usize> = stacks.iter().map(Stack::top).collect();
        for s in stacks {
            pool.give_back(s);
        }
        assert_eq!(pool.counts[0], 5);
        let mut again: Vec<usize> = (0..5)
            .map(|_| pool.pop(PAGE_SIZE).expect("pooled").top())
            .collect();
        assert!(pool.pop(PAGE_SIZE).is_none(), "exactly five were pooled");
        tops.sort();
        again.sort();
        assert_eq!(tops, again);
    }

    #[test]
    fn the_registered_pool_serves_take_and_give_back() {
        let pool = RefCell::new(StackPool::new(16 * PAGE_SIZE));
        let stack = Stack::new(PAGE_SIZE).unwrap();
        let top = stack.top();
        {
            // SAFETY: `pool` outlives the registration, which drops on this thread.
            let _registered = unsafe { register_pool(&pool) };
            give_back(stack);
            assert_eq!(pool.borrow().counts[0], 1);
            assert_eq!(take(PAGE_SIZE).unwrap().top(), top, "taken from the pool");
            let borrowed = pool.borrow_mut();
            let fresh = take(PAGE_SIZE).unwrap(); // the pool is busy: a new mapping
            drop(borrowed);
            give_back(fresh);
            assert_eq!(pool.borrow().counts[0], 1);
        }
        let unpooled = Stack::new(PAGE_SIZE).unwrap();
        give_back(unpooled); // no pool registered any more: unmapped
        assert_eq!(pool.borrow().counts[0], 1);
    }
}
