//! A bounded cache of stacks, one free list per power-of-two size class and top residue
//! (`classes`), and the thread's registered pool. This is the per-worker stack cache; the arena
//! behind it (`arena`) is the global spill every worker shares.
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

use super::classes::{KEYED_LISTS, KEYED_MAX_SIZE, Occupancy, list_of};
use super::{PAGE_SIZE, Placement, Stack};
use crate::stats;

/// Where a pooled stack keeps the link to the next one: this many bytes below its top (room for
/// the link, rounded up to keep it aligned).
const LINK_OFFSET: usize = size_of::<Option<Stack>>().next_multiple_of(16);
const _: () = assert!(align_of::<Option<Stack>>() <= 16 && LINK_OFFSET <= PAGE_SIZE);

/// Pooled stacks larger than [`KEYED_MAX_SIZE`] (at least 2 MiB each): a few, searched in turn.
const LARGE: usize = 16;

pub(crate) struct StackPool {
    /// The stack given back last, kept out of the lists: a spawn right after a coroutine finished
    /// (the common churn) takes it back with a compare, no list or bitmap work.
    last: Option<Stack>,
    /// The first stack of each list (`classes::list_of`: one per size class and top modulo the
    /// size); each holds the next in its own memory (see `give_back`).
    free: Box<[Option<Stack>]>,
    /// Which lists of `free` are non-empty.
    occupied: Occupancy,
    /// Larger stacks.
    large: [Option<Stack>; LARGE],
    pooled_bytes: usize,
    /// The least `pooled_bytes` since the last [`trim`](StackPool::trim): stacks that much
    /// stayed pooled, unused, the whole period.
    low_bytes: usize,
    limit_bytes: usize,
    stats: stats::Local,
}

impl StackPool {
    /// A pool that keeps at most `limit_bytes` of usable stack memory.
    pub(crate) fn new(limit_bytes: usize) -> StackPool {
        StackPool {
            last: None,
            free: (0..KEYED_LISTS).map(|_| None).collect(),
            occupied: Occupancy::new(),
            large: std::array::from_fn(|_| None),
            pooled_bytes: 0,
            low_bytes: 0,
            limit_bytes,
            stats: stats::Local::new(),
        }
    }

    /// A stack of exactly `size` usable bytes whose top lies where `placement` asks: a pooled
    /// one when there is one, else a new one. Async-signal-safe.
    #[inline]
    pub(crate) fn take(&mut self, size: usize, placement: Placement) -> io::Result<Stack> {
        match self.pop(size, placement) {
            Some(stack) => Ok(stack),
            None => Stack::placed(size, placement),
        }
    }

    /// Keeps `stack` for reuse, or frees it when the pool is full. Async-signal-safe.
    pub(crate) fn give_back(&mut self, stack: Stack) {
        let size = stack.size();
        if self.pooled_bytes + size > self.limit_bytes {
            return; // dropping frees it
        }
        self.pooled_bytes += size;
        self.stats.pooled(self.pooled_bytes);
        if let Some(older) = self.last.replace(stack) {
            self.file(older);
        }
    }

    /// Puts a pooled stack in its list.
    fn file(&mut self, stack: Stack) {
        let size = stack.size();
        if size > KEYED_MAX_SIZE {
            let Some(slot) = self.large.iter_mut().find(|s| s.is_none()) else {
                self.pooled_bytes -= size;
                self.low_bytes = self.low_bytes.min(self.pooled_bytes);
                self.stats.pooled(self.pooled_bytes);
                return; // dropping frees it
            };
            *slot = Some(stack);
        } else {
            let list = list_of(size, stack.top());
            let link = (stack.top() - LINK_OFFSET) as *mut Option<Stack>;
            // SAFETY: `link` lies in the top page of the usable, read/write part of `stack`, is
            // aligned (top is page-aligned, LINK_OFFSET a multiple of 16), and nothing else uses
            // that memory while the stack is pooled: the pool owns it. The handle written there
            // is read back exactly once, by `pop`, before the stack leaves the pool.
            unsafe { ptr::write(link, self.free[list].take()) };
            self.free[list] = Some(stack);
            self.occupied.set(list, true);
        }
    }

    /// A pooled stack of `size` bytes that `placement` accepts, never a new one.
    #[inline]
    fn pop(&mut self, size: usize, placement: Placement) -> Option<Stack> {
        let stack = match self.last.take() {
            Some(last) if last.size() == size && placement.accepts(last.top()) => last,
            other => {
                self.last = other;
                self.pop_filed(size, placement)?
            }
        };
        self.pooled_bytes -= size;
        self.low_bytes = self.low_bytes.min(self.pooled_bytes);
        self.stats.pooled(self.pooled_bytes);
        Some(stack)
    }

    /// [`StackPool::pop`] from the lists.
    #[inline(never)]
    fn pop_filed(&mut self, size: usize, placement: Placement) -> Option<Stack> {
        if size > KEYED_MAX_SIZE {
            self.large
                .iter_mut()
                .find(|s| {
                    s.as_ref()
                        .is_some_and(|s| s.size() == size && placement.accepts(s.top()))
                })?
                .take()
        } else {
            let list = self.occupied.find(size, placement)?;
            self.pop_list(list)
        }
    }

    /// The first stack of list `list`.
    fn pop_list(&mut self, list: usize) -> Option<Stack> {
        let stack = self.free[list].take()?;
        let link = (stack.top() - LINK_OFFSET) as *const Option<Stack>;
        // SAFETY: `give_back` wrote the next handle there when it pooled `stack`, and nothing has
        // touched the pooled stack's memory since; reading it moves that handle out once.
        self.free[list] = unsafe { ptr::read(link) };
        self.occupied.set(list, self.free[list].is_some());
        Some(stack)
    }

    /// Unmaps about half of the stack bytes that stayed pooled and unused since the last call,
    /// and starts the next period. Called by a worker a few times a second while its pool holds
    /// anything, so memory a burst left pooled goes back to the system within seconds once the
    /// burst is over, while a steady churn keeps the stacks it keeps using. Returns the bytes
    /// unmapped.
    pub(crate) fn trim(&mut self) -> usize {
        let excess = self.low_bytes / 2;
        let mut released = 0;
        while released < excess {
            let Some(stack) = self.pop_any() else { break };
            released += stack.size();
            stack.release();
        }
        self.pooled_bytes -= released;
        self.low_bytes = self.pooled_bytes;
        self.stats.pooled(self.pooled_bytes);
        released
    }

    /// Usable bytes of the stacks pooled now.
    pub(crate) fn pooled_bytes(&self) -> usize {
        self.pooled_bytes
    }

    /// Any pooled stack, the large ones first.
    fn pop_any(&mut self) -> Option<Stack> {
        if let Some(stack) = self.large.iter_mut().find_map(Option::take) {
            return Some(stack);
        }
        match self.occupied.first_set(0, KEYED_LISTS) {
            Some(list) => self.pop_list(list),
            None => self.last.take(),
        }
    }
}

impl Drop for StackPool {
    fn drop(&mut self) {
        // Free iteratively: each stack holds the next one's handle in its own memory.
        for list in 0..KEYED_LISTS {
            while let Some(stack) = self.free[list].take() {
                let link = (stack.top() - LINK_OFFSET) as *const Option<Stack>;
                // SAFETY: as in `pop`: the handle `give_back` wrote, read once.
                self.free[list] = unsafe { ptr::read(link) };
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

/// A stack of `size` usable bytes whose top lies where `placement` asks, from this thread's
/// pool, or a new one when the thread has none (or it is busy). Async-signal-safe.
pub(crate) fn take(size: usize, placement: Placement) -> io::Result<Stack> {
    with_registered(|pool| pool.take(size, placement))
        .unwrap_or_else(|| Stack::placed(size, placement))
}

/// Gives `stack` back to this thread's pool; frees it when there is none (or it is busy, or
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

    const ANY: Placement = Placement::ANY;

    fn count(pool: &mut StackPool, size: usize, placement: Placement) -> usize {
        let mut taken = Vec::new();
        while let Some(s) = pool.pop(size, placement) {
            taken.push(s);
        }
        let n = taken.len();
        for s in taken {
            pool.give_back(s);
        }
        n
    }

    #[test]
    fn reuses_same_class_and_respects_limit() {
        let mut pool = StackPool::new(3 * PAGE_SIZE);
        let a = pool.take(PAGE_SIZE, ANY).unwrap();
        let a_top = a.top();
        pool.give_back(a);
        let b = pool.take(PAGE_SIZE, ANY).unwrap();
        assert_eq!(b.top(), a_top, "a pooled stack of the same class is reused");
        let c = pool.take(2 * PAGE_SIZE, ANY).unwrap();
        let d = pool.take(2 * PAGE_SIZE, ANY).unwrap();
        pool.give_back(b);
        pool.give_back(c);
        assert_eq!(pool.pooled_bytes, 3 * PAGE_SIZE);
        pool.give_back(d); // over the limit: freed
        assert_eq!(pool.pooled_bytes, 3 * PAGE_SIZE);
        assert_eq!(count(&mut pool, 2 * PAGE_SIZE, ANY), 1);
    }

    #[test]
    fn a_placed_take_finds_only_stacks_where_asked() {
        let mut pool = StackPool::new(1 << 30);
        let size = 16 * PAGE_SIZE;
        let at = |residue| Placement {
            modulus: size,
            residue,
        };
        let a = pool.take(size, at(0x3000)).unwrap();
        let b = pool.take(size, at(0x7000)).unwrap();
        assert!(at(0x3000).accepts(a.top()) && at(0x7000).accepts(b.top()));
        let (a_top, b_top) = (a.top(), b.top());
        pool.give_back(a);
        pool.give_back(b);
        assert_eq!(
            count(&mut pool, size, at(0x5000)),
            0,
            "no pooled stack lies there"
        );
        assert_eq!(count(&mut pool, size, ANY), 2);
        assert_eq!(pool.pop(size, at(0x7000)).unwrap().top(), b_top);
        assert_eq!(pool.pop(size, at(0x3000)).unwrap().top(), a_top);
        // Large stacks (mappings of their own) are matched the same way.
        let big = 4 << 20;
        let want = Placement {
            modulus: 1 << 20,
            residue: 0x5000,
        };
        let c = pool.take(big, want).unwrap();
        assert!(want.accepts(c.top()));
        let c_top = c.top();
        pool.give_back(c);
        assert!(
            pool.pop(
                big,
                Placement {
                    residue: 0x6000,
                    ..want
                }
            )
            .is_none()
        );
        assert!(pool.pop(2 << 20, ANY).is_none(), "other sizes");
        assert_eq!(pool.pop(big, want).unwrap().top(), c_top);
    }

    #[test]
    fn free_lists_hand_back_every_stack_once() {
        let mut pool = StackPool::new(64 * PAGE_SIZE);
        let stacks: Vec<Stack> = (0..5).map(|_| pool.take(PAGE_SIZE, ANY).unwrap()).collect();
        let mut tops: Vec<usize> = stacks.iter().map(Stack::top).collect();
        for s in stacks {
            pool.give_back(s);
        }
        let mut again: Vec<usize> = (0..5)
            .map(|_| pool.pop(PAGE_SIZE, ANY).expect("pooled").top())
            .collect();
        assert!(
            pool.pop(PAGE_SIZE, ANY).is_none(),
            "exactly five were pooled"
        );
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
            assert_eq!(pool.borrow().pooled_bytes, PAGE_SIZE);
            assert_eq!(
                take(PAGE_SIZE, ANY).unwrap().top(),
                top,
                "taken from the pool"
            );
            let borrowed = pool.borrow_mut();
            let fresh = take(PAGE_SIZE, ANY).unwrap(); // the pool is busy: a new stack
            drop(borrowed);
            give_back(fresh);
            assert_eq!(pool.borrow().pooled_bytes, PAGE_SIZE);
        }
        let unpooled = Stack::new(PAGE_SIZE).unwrap();
        give_back(unpooled); // no pool registered any more: freed
        assert_eq!(pool.borrow().pooled_bytes, PAGE_SIZE);
    }
}
