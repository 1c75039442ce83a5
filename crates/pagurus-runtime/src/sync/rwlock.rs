//! `RwLock`: a state word of readers and a writer bit, and a FIFO of waiters served by hand-off.
//!
//! # The state word
//!
//! | bits | meaning |
//! |---|---|
//! | `WRITER` (bit 0) | a writer holds the lock |
//! | `PARKED` (bit 1) | the queue is not empty (set and cleared under the queue lock) |
//! | bits 2.. (`READER` units) | how many readers hold the lock |
//!
//! Fast paths: `read` adds a `READER` if neither `WRITER` nor `PARKED` is set; `write` is a
//! CAS from 0 to `WRITER`. Releases are one `fetch_sub`; the slow path runs only for the last
//! holder out while `PARKED` is set.
//!
//! # Fairness: phase-fair by queue order
//!
//! As soon as anyone is queued (`PARKED`), new readers queue too instead of joining the current
//! readers, so a stream of readers cannot starve a writer. Waiters are served in queue order
//! by hand-off: the releasing holder (under the queue lock) grants the front writer alone, or
//! every reader at the front at once, setting their `WRITER` bit or reader count on their
//! behalf before waking them (`GRANTED`). Nobody can barge while `PARKED` is set, so a grant
//! never races with an acquisition. A consequence, as for std's lock: a coroutine that takes a
//! read lock it already holds may deadlock if a writer queued in between.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex as StdMutex};

use super::waiter::{GRANTED, Wait, WaitList, Waiter, lock_list, unpark_all};
use crate::sched::park::{WaitReason, raise_cancelled};

const WRITER: usize = 1;
const PARKED: usize = 2;
const READER: usize = 4;
const HOLDERS: usize = !PARKED;

/// Waiter kinds.
const READ: u8 = 0;
const WRITE: u8 = 1;

/// A reader-writer lock whose waits park only the calling coroutine (or block a plain thread).
///
/// Any number of readers, or one writer, hold it at a time. Waiters are served in arrival order
/// (readers that arrive together share the lock), so neither readers nor writers starve. There
/// is no poisoning: a panic while a guard is held releases the lock, leaving the data as the
/// panicking code left it (see [`Mutex`](super::Mutex)). A coroutine cancelled while waiting
/// leaves the queue, and releases access that was already granted to it.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use pagurus::sync::RwLock;
///
/// let lock = RwLock::new(vec![1, 2, 3]);
/// pagurus::run(|| {
///     {
///         let a = lock.read();
///         let b = lock.read(); // readers share the lock
///         assert_eq!(a.len() + b.len(), 6);
///     }
///     lock.write().push(4);
/// });
/// assert_eq!(lock.into_inner(), [1, 2, 3, 4]);
/// ```
pub struct RwLock<T: ?Sized> {
    state: AtomicUsize,
    queue: StdMutex<WaitList>,
    data: UnsafeCell<T>,
}

// SAFETY: the lock owns its `T`; moving the lock moves the `T`.
unsafe impl<T: ?Sized + Send> Send for RwLock<T> {}
// SAFETY: sharing the lock gives `&T` to many threads at once (so `T: Sync`) and `&mut T` to one
// at a time (a transfer, so `T: Send`), as for std's RwLock.
unsafe impl<T: ?Sized + Send + Sync> Sync for RwLock<T> {}

impl<T> RwLock<T> {
    /// A new, unlocked lock holding `value`.
    pub const fn new(value: T) -> RwLock<T> {
        RwLock {
            state: AtomicUsize::new(0),
            queue: StdMutex::new(WaitList::new()),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the lock and returns the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Acquires shared read access, parking the calling coroutine (or blocking the thread) while
    /// a writer holds the lock or anyone is queued.
    ///
    /// # Panics
    ///
    /// Unwinds with [`Cancelled`](crate::Cancelled) when the coroutine's runtime is dropped while
    /// it waits; panics if the reader count would overflow.
    #[inline]
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        if !self.try_add_reader() {
            self.wait_for(READ);
        }
        RwLockReadGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Acquires exclusive write access, parking the calling coroutine (or blocking the thread)
    /// while anyone holds the lock or is queued.
    ///
    /// # Panics
    ///
    /// Unwinds with [`Cancelled`](crate::Cancelled) when the coroutine's runtime is dropped while
    /// it waits.
    #[inline]
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        if self
            .state
            .compare_exchange(0, WRITER, Acquire, Relaxed)
            .is_err()
        {
            self.wait_for(WRITE);
        }
        RwLockWriteGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }

    /// Acquires read access if no writer holds the lock and nobody is queued, without waiting.
    #[inline]
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.try_add_reader().then(|| RwLockReadGuard {
            lock: self,
            _not_send: PhantomData,
        })
    }

    /// Acquires write access if nobody holds the lock or is queued, without waiting.
    #[inline]
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.state
            .compare_exchange(0, WRITER, Acquire, Relaxed)
            .is_ok()
            .then(|| RwLockWriteGuard {
                lock: self,
                _not_send: PhantomData,
            })
    }

    /// A mutable reference to the value; no locking needed, since `&mut self` is exclusive.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    #[inline]
    fn try_add_reader(&self) -> bool {
        let mut state = self.state.load(Relaxed);
        loop {
            if state & (WRITER | PARKED) != 0 {
                return false;
            }
            let new = state.checked_add(READER).expect("RwLock: too many readers");
            match self
                .state
                .compare_exchange_weak(state, new, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => state = actual,
            }
        }
    }

    /// Queues for `kind` access (unless it became free) and waits until it is granted.
    #[cold]
    fn wait_for(&self, kind: u8) {
        let me = Waiter::new(kind);
        {
            let mut queue = lock_list(&self.queue);
            let mut state = self.state.load(Relaxed);
            loop {
                let (free, take) = match kind {
                    READ => (state & (WRITER | PARKED) == 0, READER),
                    _ => (state == 0, WRITER),
                };
                let new = if free {
                    state.checked_add(take).expect("RwLock: too many readers")
                } else {
                    state | PARKED
                };
                let order = if free { Acquire } else { Relaxed };
                match self.state.compare_exchange_weak(state, new, order, Relaxed) {
                    Ok(_) if free => return,
                    Ok(_) => break,
                    Err(actual) => state = actual,
                }
            }
            queue.push_back(me.clone());
        }
        match me.wait(WaitReason::Mutex, None) {
            Wait::Dequeued(_) => {}
            Wait::Cancelled => self.leave_cancelled(&me),
            Wait::TimedOut => unreachable!("no deadline"),
        }
    }

    /// Releases one reader.
    #[inline]
    fn read_unlock(&self) {
        if self.state.fetch_sub(READER, Release) == READER | PARKED {
            self.release_slow();
        }
    }

    /// Releases the writer.
    #[inline]
    fn write_unlock(&self) {
        if self.state.fetch_sub(WRITER, Release) != WRITER {
            self.release_slow();
        }
    }

    #[cold]
    fn release_slow(&self) {
        let mut queue = lock_list(&self.queue);
        let granted = self.grant(&mut queue);
        drop(queue);
        unpark_all(granted);
    }

    /// Under the queue lock: grants access to the front of the queue if it is compatible with
    /// the current holders (a writer when nobody holds the lock; the run of readers at the
    /// front when no writer does), and clears `PARKED` when the queue empties. Returns the
    /// granted waiters, to unpark once the queue lock is dropped.
    fn grant(&self, queue: &mut WaitList) -> Vec<Arc<Waiter>> {
        let mut state = self.state.load(Relaxed);
        loop {
            let (count, add) = match queue.front().map(|w| w.kind) {
                None => (0, 0),
                Some(WRITE) if state & HOLDERS == 0 => (1, WRITER),
                Some(READ) if state & WRITER == 0 => {
                    let mut n = 0;
                    while queue.nth(n).is_some_and(|w| w.kind == READ) {
                        n += 1;
                    }
                    (n, READER * n)
                }
                Some(_) => return Vec::new(),
            };
            let mut new = state.checked_add(add).expect("RwLock: too many readers");
            if count == queue.len() {
                new &= !PARKED;
            }
            // Only releases (`fetch_sub`) race with this: nobody acquires while PARKED is set.
            match self
                .state
                .compare_exchange_weak(state, new, Relaxed, Relaxed)
            {
                Ok(_) => {
                    let granted: Vec<_> = (0..count)
                        .map(|_| queue.pop_front().expect("counted above"))
                        .collect();
                    for waiter in &granted {
                        waiter.set_state(GRANTED);
                    }
                    return granted;
                }
                Err(actual) => state = actual,
            }
        }
    }

    /// A queued waiter learned that its coroutine is cancelled: leaves the queue (which may let
    /// the waiters behind it in) or releases what it was granted, then unwinds.
    #[cold]
    fn leave_cancelled(&self, me: &Arc<Waiter>) -> ! {
        let mut queue = lock_list(&self.queue);
        if queue.remove(me) {
            let granted = self.grant(&mut queue);
            drop(queue);
            unpark_all(granted);
        } else {
            debug_assert_eq!(me.state(), GRANTED);
            drop(queue);
            match me.kind {
                READ => self.read_unlock(),
                _ => self.write_unlock(),
            }
        }
        raise_cancelled()
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> RwLock<T> {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(value: T) -> RwLock<T> {
        RwLock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.try_read() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Shared access to an [`RwLock`]'s value, released on drop. Not `Send`, like std's.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard gives only `&T`, so sharing it between threads needs `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockReadGuard<'_, T> {}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds read access, so no writer (no `&mut T`) exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.read_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

/// Exclusive access to an [`RwLock`]'s value, released on drop. Not `Send`, like std's.
#[must_use = "if unused the RwLock will immediately unlock"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard gives only `&T`, so sharing it between threads needs `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds write access: no other reference to the value exists.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds write access, and `&mut self` makes this the only access
        // through it.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T: ?Sized> Drop for RwLockWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.write_unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
