//! `Semaphore`: a permit count in one word, and a FIFO of waiters served by hand-off.
//!
//! The word is `permits << 1 | WAITERS`. `WAITERS` is set (under the queue lock) only by a
//! waiter that found no permit, and cleared when the queue empties; while it is set the count is
//! zero, because a released permit goes straight to the front waiter (`GRANTED`) instead of
//! into the count. So queued waiters are served in order and a newcomer cannot take a permit a
//! waiter is owed; `try_acquire` and `acquire` take from the count only when nobody waits.
//! Fast paths: acquire is one CAS (decrement while the count is non-zero), release one CAS
//! (increment while `WAITERS` is clear).

use std::fmt;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::waiter::{GRANTED, Wait, WaitList, Waiter, lock_list, unpark_all};
use crate::sched::park::{WaitReason, raise_cancelled};

const WAITERS: usize = 1;
const ONE: usize = 2;

/// A counting semaphore whose `acquire` parks only the calling coroutine (or blocks a plain
/// thread) until a permit is free.
///
/// Waiters get permits in arrival order. A permit is returned when its [`SemaphorePermit`] is
/// dropped. A coroutine cancelled while waiting leaves the queue, and returns a permit that was
/// already handed to it: permits are never leaked.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use std::sync::Arc;
/// use pagurus::sync::Semaphore;
///
/// let slots = Arc::new(Semaphore::new(2));
/// pagurus::run(|| {
///     let a = slots.acquire();
///     let b = slots.acquire();
///     assert!(slots.try_acquire().is_none());
///     drop(a);
///     assert!(slots.try_acquire().is_some());
///     drop(b);
/// });
/// assert_eq!(slots.available_permits(), 2);
/// ```
pub struct Semaphore {
    state: AtomicUsize,
    queue: StdMutex<WaitList>,
}

impl Semaphore {
    /// The largest number of permits a semaphore can hold.
    pub const MAX_PERMITS: usize = usize::MAX >> 1;

    /// A semaphore with `permits` permits available.
    ///
    /// # Panics
    ///
    /// If `permits` exceeds [`MAX_PERMITS`](Semaphore::MAX_PERMITS).
    pub const fn new(permits: usize) -> Semaphore {
        assert!(permits <= Self::MAX_PERMITS, "Semaphore: too many permits");
        Semaphore {
            state: AtomicUsize::new(permits << 1),
            queue: StdMutex::new(WaitList::new()),
        }
    }

    /// Takes a permit, parking the calling coroutine (or blocking the thread) until one is
    /// free. The permit is returned when the guard is dropped.
    ///
    /// # Panics
    ///
    /// Unwinds with [`Cancelled`](crate::Cancelled) when the coroutine's runtime is dropped while
    /// it waits (no permit is kept then).
    #[inline]
    pub fn acquire(&self) -> SemaphorePermit<'_> {
        if !self.try_take() {
            self.acquire_slow();
        }
        SemaphorePermit { semaphore: self }
    }

    /// Takes a permit if one is free and nobody is queued for one, without waiting.
    #[inline]
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.try_take().then(|| SemaphorePermit { semaphore: self })
    }

    /// Adds `n` permits: they go to queued waiters first, in order, and the rest to the count.
    ///
    /// # Panics
    ///
    /// If the count would exceed [`MAX_PERMITS`](Semaphore::MAX_PERMITS).
    pub fn add_permits(&self, n: usize) {
        if n > 0 {
            self.release(n);
        }
    }

    /// How many permits are free now (a snapshot: others may take or return some at any time).
    pub fn available_permits(&self) -> usize {
        self.state.load(Relaxed) >> 1
    }

    #[inline]
    fn try_take(&self) -> bool {
        let mut state = self.state.load(Relaxed);
        loop {
            // While WAITERS is set the count is zero, so this also refuses to jump the queue.
            if state < ONE {
                return false;
            }
            match self
                .state
                .compare_exchange_weak(state, state - ONE, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
    }

    #[cold]
    fn acquire_slow(&self) {
        let me = Waiter::new(0);
        {
            let mut queue = lock_list(&self.queue);
            let mut state = self.state.load(Relaxed);
            loop {
                let (new, order) = if state >= ONE {
                    (state - ONE, Acquire)
                } else {
                    (state | WAITERS, Relaxed)
                };
                match self.state.compare_exchange_weak(state, new, order, Relaxed) {
                    Ok(_) if state >= ONE => return,
                    Ok(_) => break,
                    Err(actual) => state = actual,
                }
            }
            queue.push_back(me.clone());
        }
        match me.wait(WaitReason::Semaphore, None) {
            Wait::Dequeued(_) => {}
            Wait::Cancelled => {
                let mut queue = lock_list(&self.queue);
                if queue.remove(&me) {
                    if queue.is_empty() {
                        self.state.fetch_and(!WAITERS, Relaxed);
                    }
                    drop(queue);
                } else {
                    debug_assert_eq!(me.state(), GRANTED);
                    drop(queue);
                    // Handed a permit, but gone: it goes to the next waiter or the count.
                    self.release(1);
                }
                raise_cancelled()
            }
            Wait::TimedOut => unreachable!("no deadline"),
        }
    }

    /// Returns `n` permits.
    #[inline]
    fn release(&self, n: usize) {
        let add = n
            .checked_mul(ONE)
            .filter(|&add| add <= Self::MAX_PERMITS << 1)
            .expect("Semaphore: too many permits");
        let mut state = self.state.load(Relaxed);
        loop {
            if state & WAITERS != 0 {
                return self.release_slow(n);
            }
            let new = state.checked_add(add).expect("Semaphore: too many permits");
            match self
                .state
                .compare_exchange_weak(state, new, Release, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => state = actual,
            }
        }
    }

    #[cold]
    fn release_slow(&self, n: usize) {
        let mut queue = lock_list(&self.queue);
        let mut granted = Vec::new();
        while granted.len() < n {
            let Some(waiter) = queue.pop_front() else {
                break;
            };
            waiter.set_state(GRANTED);
            granted.push(waiter);
        }
        let rest = n - granted.len();
        if queue.is_empty() {
            // Nobody waits any more: clear WAITERS and put the rest in the count. Concurrent
            // `try_take`s may decrement meanwhile once WAITERS is clear: a CAS loop.
            let mut state = self.state.load(Relaxed);
            loop {
                let new = (state & !WAITERS)
                    .checked_add(rest * ONE)
                    .expect("Semaphore: too many permits");
                match self
                    .state
                    .compare_exchange_weak(state, new, Release, Relaxed)
                {
                    Ok(_) => break,
                    Err(actual) => state = actual,
                }
            }
        }
        drop(queue);
        unpark_all(granted);
    }
}

impl Default for Semaphore {
    /// A semaphore with no permits (add them with [`add_permits`](Semaphore::add_permits)).
    fn default() -> Semaphore {
        Semaphore::new(0)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load(Relaxed);
        f.debug_struct("Semaphore")
            .field("permits", &(state >> 1))
            .field("waiters", &(state & WAITERS != 0))
            .finish()
    }
}

/// A permit from a [`Semaphore`], returned to it when dropped.
#[must_use = "the permit is returned as soon as it is dropped"]
pub struct SemaphorePermit<'a> {
    semaphore: &'a Semaphore,
}

impl Drop for SemaphorePermit<'_> {
    #[inline]
    fn drop(&mut self) {
        self.semaphore.release(1);
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").finish_non_exhaustive()
    }
}
