//! A bounded cache of stacks, one free list per power-of-two size class.
//!
//! Each worker owns one pool and touches it only from its own thread, so it needs no lock.
//! Pooled stacks keep their pages resident: a warm spawn takes a stack whose pages are already
//! mapped and faulted in, so it costs no `mmap`, no `mprotect` and no page fault.

use std::io;

use super::{PAGE_SIZE, Stack};
use crate::stats;

/// Size classes go from one page (class 0) up to 2^47 bytes.
const CLASSES: usize = 36;
/// Free-list capacity reserved per class, so that stacks moved out of by the fault handler can
/// come back to the pool.
const SIGNAL_SPARE: usize = 8;

pub(crate) struct StackPool {
    free: [Vec<Stack>; CLASSES],
    pooled_bytes: usize,
    limit_bytes: usize,
    stats: stats::Local,
}

impl StackPool {
    /// A pool that keeps at most `limit_bytes` of usable stack memory.
    pub(crate) fn new(limit_bytes: usize) -> StackPool {
        StackPool {
            // Spare capacity up front: the fault handler may only return a stack to a list that
            // has room without allocating.
            free: std::array::from_fn(|_| Vec::with_capacity(SIGNAL_SPARE)),
            pooled_bytes: 0,
            limit_bytes,
            stats: stats::Local::new(),
        }
    }

    fn class(size: usize) -> usize {
        (size / PAGE_SIZE).trailing_zeros() as usize
    }

    /// A stack of exactly `size` usable bytes, from the pool when one is there.
    pub(crate) fn get(&mut self, size: usize) -> io::Result<Stack> {
        match self.take_pooled(size) {
            Some(stack) => Ok(stack),
            None => Stack::new(size),
        }
    }

    /// Gives a stack back without allocating: `Err` (the stack) when its free list has no spare
    /// capacity or the pool is full. Async-signal-safe.
    pub(crate) fn put_without_allocating(&mut self, stack: Stack) -> Result<(), Stack> {
        let size = stack.size();
        let list = &mut self.free[Self::class(size)];
        if list.len() == list.capacity() || self.pooled_bytes + size > self.limit_bytes {
            return Err(stack);
        }
        list.push(stack);
        self.pooled_bytes += size;
        self.stats.pooled(self.pooled_bytes);
        Ok(())
    }

    /// Takes a pooled stack of `size` bytes, never mapping one. Async-signal-safe.
    pub(crate) fn take_pooled(&mut self, size: usize) -> Option<Stack> {
        let stack = self.free.get_mut(Self::class(size))?.pop()?;
        self.pooled_bytes -= size;
        self.stats.pooled(self.pooled_bytes);
        Some(stack)
    }

    /// Gives a stack back; it is unmapped instead when the pool is full.
    pub(crate) fn put(&mut self, stack: Stack) {
        let size = stack.size();
        if self.pooled_bytes + size > self.limit_bytes {
            return; // dropping unmaps it
        }
        self.pooled_bytes += size;
        self.stats.pooled(self.pooled_bytes);
        self.free[Self::class(size)].push(stack);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_same_class_and_respects_limit() {
        let mut pool = StackPool::new(3 * PAGE_SIZE);
        let a = pool.get(PAGE_SIZE).unwrap();
        let a_top = a.top();
        pool.put(a);
        let b = pool.get(PAGE_SIZE).unwrap();
        assert_eq!(b.top(), a_top, "a pooled stack of the same class is reused");
        let c = pool.get(2 * PAGE_SIZE).unwrap();
        let d = pool.get(2 * PAGE_SIZE).unwrap();
        pool.put(b);
        pool.put(c);
        assert_eq!(pool.pooled_bytes, 3 * PAGE_SIZE);
        pool.put(d); // over the limit: unmapped
        assert_eq!(pool.pooled_bytes, 3 * PAGE_SIZE);
        assert_eq!(pool.free[1].len(), 1);
    }
}
