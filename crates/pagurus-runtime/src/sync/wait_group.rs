//! `WaitGroup`: Go's `sync.WaitGroup`, a counter and the waiters for it to reach zero.
//!
//! A waiter checks the counter under the queue lock before it queues; `done` takes the counter
//! to zero first, then drains the queue under the same lock. So a waiter either sees zero or is
//! queued before the drain: no wake-up is lost. Each drain wakes the waiters queued at that
//! moment (`WOKEN`), and they return even if `add` has started a new round since, as in Go.

use std::fmt;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};
use std::sync::{Arc, Mutex as StdMutex};

use super::waiter::{WOKEN, Wait, WaitList, Waiter, lock_list, unpark_all};
use crate::sched::park::{WaitReason, defer_cancel, raise_cancelled};

/// Waits for a collection of coroutines (or threads) to finish, like Go's `sync.WaitGroup`.
///
/// [`add`](WaitGroup::add) raises the counter by the number of tasks to wait for, each calls
/// [`done`](WaitGroup::done) when finished, and [`wait`](WaitGroup::wait) parks the calling
/// coroutine (or blocks a plain thread) until the counter is zero. Clones share one counter.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use pagurus::sync::WaitGroup;
///
/// let finished = Arc::new(AtomicUsize::new(0));
/// pagurus::run(|| {
///     let wg = WaitGroup::new();
///     for _ in 0..100 {
///         wg.add(1);
///         let (wg, finished) = (wg.clone(), finished.clone());
///         pagurus::spawn(move || {
///             finished.fetch_add(1, Ordering::Relaxed);
///             wg.done();
///         });
///     }
///     wg.wait();
///     assert_eq!(finished.load(Ordering::Relaxed), 100);
/// });
/// ```
#[derive(Clone)]
pub struct WaitGroup {
    inner: Arc<Inner>,
}

struct Inner {
    count: AtomicUsize,
    queue: StdMutex<WaitList>,
}

impl WaitGroup {
    /// A wait group with a counter of zero.
    pub fn new() -> WaitGroup {
        WaitGroup {
            inner: Arc::new(Inner {
                count: AtomicUsize::new(0),
                queue: StdMutex::new(WaitList::new()),
            }),
        }
    }

    /// Raises the counter by `n`.
    ///
    /// # Panics
    ///
    /// If the counter would overflow.
    pub fn add(&self, n: usize) {
        let mut count = self.inner.count.load(Relaxed);
        loop {
            let new = count
                .checked_add(n)
                .expect("WaitGroup::add: the counter would overflow");
            match self
                .inner
                .count
                .compare_exchange_weak(count, new, Relaxed, Relaxed)
            {
                Ok(_) => return,
                Err(actual) => count = actual,
            }
        }
    }

    /// Lowers the counter by one; at zero, wakes every waiter.
    ///
    /// # Panics
    ///
    /// If the counter is already zero (more `done`s than `add`ed), leaving it at zero.
    pub fn done(&self) {
        let mut count = self.inner.count.load(Relaxed);
        loop {
            assert!(
                count > 0,
                "WaitGroup::done called more times than add: the counter would go below zero"
            );
            // AcqRel: the last `done` sees every earlier `done`'s work, and publishes all of it
            // to the waiters it wakes (and to `wait`s that read zero).
            match self
                .inner
                .count
                .compare_exchange_weak(count, count - 1, AcqRel, Relaxed)
            {
                Ok(_) => break,
                Err(actual) => count = actual,
            }
        }
        if count == 1 {
            let mut queue = lock_list(&self.inner.queue);
            let all: Vec<_> = std::iter::from_fn(|| queue.pop_front()).collect();
            for waiter in &all {
                waiter.set_state(WOKEN);
            }
            drop(queue);
            unpark_all(all);
        }
    }

    /// Parks the calling coroutine (or blocks the thread) until the counter is zero. Returns at
    /// once if it is zero now.
    ///
    /// # Panics
    ///
    /// Unwinds with [`Cancelled`](crate::Cancelled) when the coroutine's runtime is dropped while
    /// it waits.
    pub fn wait(&self) {
        if self.inner.count.load(Acquire) == 0 {
            return;
        }
        let me = Waiter::new(0);
        {
            let mut queue = lock_list(&self.inner.queue);
            if self.inner.count.load(Acquire) == 0 {
                return;
            }
            queue.push_back(me.clone());
        }
        match me.wait(WaitReason::WaitGroup, None) {
            Wait::Dequeued(_) => {}
            Wait::Cancelled => {
                let mut queue = lock_list(&self.inner.queue);
                if queue.remove(&me) {
                    drop(queue);
                    raise_cancelled();
                }
                // The counter reached zero as the cancellation came: the wait is over, so
                // return; the coroutine learns of the cancellation at its next park.
                defer_cancel();
            }
            Wait::TimedOut => unreachable!("no deadline"),
        }
    }

    /// The counter now (a snapshot).
    pub fn count(&self) -> usize {
        self.inner.count.load(Relaxed)
    }
}

impl Default for WaitGroup {
    fn default() -> WaitGroup {
        WaitGroup::new()
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup")
            .field("count", &self.count())
            .finish()
    }
}
