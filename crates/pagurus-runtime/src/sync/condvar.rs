//! `Condvar`: a queue of waiters, each notified at most once.
//!
//! `wait` queues its waiter *before* it releases the mutex, so a notifier that takes the mutex
//! after the waiter checked its condition always finds the waiter queued: no notification is
//! lost. A notification dequeues a waiter (`WOKEN`) under the queue lock; a waiter that gives up
//! (timed out, cancelled) removes itself under the same lock, or learns there that it was
//! notified meanwhile. A timed-out waiter that was notified reports "not timed out"; a
//! cancelled one passes the notification on to the next waiter, so `notify_one` is never
//! swallowed by a waiter that is gone.

use std::fmt;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::mutex::{Mutex, MutexGuard};
use super::waiter::{WOKEN, Wait, WaitList, Waiter, lock_list, unpark_all};
use crate::sched::park::{WaitReason, raise_cancelled};

/// A condition variable: wait, with a [`Mutex`] released, until another coroutine or thread
/// notifies.
///
/// Waiting parks only the calling coroutine (or blocks a plain thread). A wait may return
/// without a notification (spuriously), like std's: wait for a condition in a loop, or use
/// [`wait_while`](Condvar::wait_while), which does. Use one condition variable with one mutex.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use std::sync::Arc;
/// use pagurus::sync::{Condvar, Mutex};
///
/// let pair = Arc::new((Mutex::new(false), Condvar::new()));
/// pagurus::run(|| {
///     let p = pair.clone();
///     let h = pagurus::spawn(move || {
///         *p.0.lock() = true;
///         p.1.notify_one();
///     });
///     let ready = pair.1.wait_while(pair.0.lock(), |ready| !*ready);
///     assert!(*ready);
///     drop(ready);
///     h.join().unwrap();
/// });
/// ```
pub struct Condvar {
    queue: StdMutex<WaitList>,
    /// How many waiters are queued (a copy of the list's length, updated under its lock), so
    /// that a notification with no waiter takes no lock. A waiter is counted before it unlocks
    /// the mutex, so a notifier holding the mutex sees it.
    queued: AtomicUsize,
}

impl Condvar {
    /// A condition variable with no waiters.
    pub const fn new() -> Condvar {
        Condvar {
            queue: StdMutex::new(WaitList::new()),
            queued: AtomicUsize::new(0),
        }
    }

    /// Releases the guard's mutex, waits for a notification, locks the mutex again and returns
    /// its guard. May return spuriously.
    ///
    /// # Panics
    ///
    /// Unwinds with [`Cancelled`](crate::Cancelled) when the coroutine's runtime is dropped while
    /// it waits (the mutex is not locked again then).
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
        self.wait_until(guard, None).0
    }

    /// Waits (as [`wait`](Condvar::wait)) for as long as `condition` returns true, checking it
    /// with the mutex held, and returns the guard once it returns false. Spurious wake-ups are
    /// absorbed here.
    pub fn wait_while<'a, T: ?Sized, F>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: F,
    ) -> MutexGuard<'a, T>
    where
        F: FnMut(&mut T) -> bool,
    {
        while condition(&mut *guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// Waits (as [`wait`](Condvar::wait)) for at most about `timeout`. Returns the guard and
    /// whether the wait timed out (`true`) rather than being notified. May return spuriously,
    /// with `false`, before the timeout.
    ///
    /// # Panics
    ///
    /// As [`wait`](Condvar::wait).
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> (MutexGuard<'a, T>, bool) {
        // A timeout too far to represent is no timeout.
        let deadline = Instant::now().checked_add(timeout);
        self.wait_until(guard, deadline)
    }

    fn wait_until<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, T>, bool) {
        let mutex: &'a Mutex<T> = MutexGuard::mutex(&guard);
        let me = Waiter::new(0);
        {
            let mut queue = lock_list(&self.queue);
            queue.push_back(me.clone());
            self.queued.store(queue.len(), Relaxed);
        }
        drop(guard);
        let timed_out = match me.wait(WaitReason::Condvar, deadline) {
            Wait::Dequeued(_) => false,
            Wait::TimedOut => {
                let mut queue = lock_list(&self.queue);
                let removed = queue.remove(&me);
                self.queued.store(queue.len(), Relaxed);
                // Not in the queue any more: a notification reached us after all.
                removed
            }
            Wait::Cancelled => {
                let mut queue = lock_list(&self.queue);
                let next = if queue.remove(&me) {
                    None
                } else {
                    // Notified, but gone: the notification goes to the next waiter instead.
                    self.dequeue(&mut queue)
                };
                self.queued.store(queue.len(), Relaxed);
                drop(queue);
                unpark_all(next);
                raise_cancelled()
            }
        };
        (mutex.lock(), timed_out)
    }

    /// Wakes one waiter, if any is queued.
    pub fn notify_one(&self) {
        if self.queued.load(Relaxed) == 0 {
            return;
        }
        let mut queue = lock_list(&self.queue);
        let next = self.dequeue(&mut queue);
        self.queued.store(queue.len(), Relaxed);
        drop(queue);
        unpark_all(next);
    }

    /// Wakes every waiter queued now.
    pub fn notify_all(&self) {
        if self.queued.load(Relaxed) == 0 {
            return;
        }
        let mut queue = lock_list(&self.queue);
        let all: Vec<_> = std::iter::from_fn(|| self.dequeue(&mut queue)).collect();
        self.queued.store(0, Relaxed);
        drop(queue);
        unpark_all(all);
    }

    /// Dequeues the front waiter and marks it notified (under the queue lock).
    fn dequeue(&self, queue: &mut WaitList) -> Option<std::sync::Arc<Waiter>> {
        let waiter = queue.pop_front()?;
        waiter.set_state(WOKEN);
        Some(waiter)
    }
}

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar")
            .field("waiters", &self.queued.load(Relaxed))
            .finish()
    }
}
