//! `Mutex`: one state byte for the fast paths, a wait queue for the rest.
//!
//! # The state byte
//!
//! | bit | meaning | set by | cleared by |
//! |---|---|---|---|
//! | `LOCKED` | someone owns the lock | a locker's CAS, or an unlocker handing off | the owner's unlock (`fetch_sub`) |
//! | `PARKED` | the queue is not empty | a waiter queueing (under the queue lock) | whoever empties the queue (under the queue lock) |
//! | `HANDOFF` | fair mode: the lock passes from owner to the queue's front; nobody barges | a waiter that has waited `STARVATION` (under the queue lock) | the hand-off that serves the last long waiter, or emptying the queue |
//!
//! `HANDOFF` is only ever set together with `PARKED`. Uncontended, `lock` is one CAS (`0` ->
//! `LOCKED`) and unlock one `fetch_sub(LOCKED)` (a `lock xadd`); the unlocker takes the slow
//! path only when the old value had `PARKED`.
//!
//! # Fairness
//!
//! Normally the mutex is *barging*, like parking_lot's and Go's normal mode: an unlock frees the
//! lock and wakes the queue's front waiter (`WOKEN`), which then competes with anyone arriving;
//! a waiter that loses goes back to the *front*. Throughput is good, but two coroutines that
//! re-lock in a loop could keep winning. So a woken waiter that loses after waiting
//! `STARVATION` (1 ms, as Go) sets `HANDOFF`: from then on no one barges (the fast path fails
//! on a non-zero state, the slow path queues), and the next unlock hands the lock directly to
//! the front waiter (`GRANTED`, with `LOCKED` set on its behalf). Hand-off continues while the
//! next waiter in line has also waited `STARVATION`, then the mutex goes back to barging. A
//! waiter therefore waits at most about `STARVATION` plus one critical section per waiter
//! ahead of it.
//!
//! # No lost wake-up
//!
//! `PARKED` is set with a CAS that saw `LOCKED` (or `HANDOFF`) set, under the queue lock. The
//! owner's unlock is a read-modify-write of the same byte that comes after that CAS in its
//! modification order, so it sees `PARKED` and takes the slow path, which takes the queue lock
//! (after the waiter pushed itself) and wakes or grants the front. If the slow path finds the
//! lock taken again (a barger won), it leaves `PARKED` set and does nothing: the new owner's
//! unlock will come here. A woken waiter that is cancelled passes its turn on the same way.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicU8;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use super::waiter::{GRANTED, WAITING, WOKEN, Wait, WaitList, Waiter, lock_list};
use crate::sched::park::{WaitReason, raise_cancelled};

const LOCKED: u8 = 1;
const PARKED: u8 = 2;
const HANDOFF: u8 = 4;

/// How long a waiter waits before the mutex switches to hand-off (see the module docs).
const STARVATION: Duration = Duration::from_millis(1);

/// Rounds of exponential spinning before queueing, while no one is queued.
const SPIN_ROUNDS: u32 = 6;

/// A mutual-exclusion lock whose `lock` parks only the calling coroutine (or blocks a plain
/// thread), never the worker.
///
/// Usable from coroutines and plain threads alike, and between them: a thread may wait for a
/// lock a coroutine holds and the other way round. Uncontended, lock + unlock is one CAS and one
/// atomic add, like `std::sync::Mutex`. Under contention no waiter starves: one that has waited
/// about a millisecond gets the lock handed to it directly.
///
/// # Panics while locked: no poisoning
///
/// There is no poisoning. A panic while a guard is held unwinds through the guard's destructor,
/// which releases the lock: the next locker gets it normally and sees the data as the panicking
/// code left it, possibly half-updated. If an invariant of `T` may be broken midway through an
/// update, restore it in a drop guard, or catch the panic where the update is made.
///
/// A coroutine cancelled while waiting (its runtime is dropped) leaves the queue; if the lock
/// was already handed to it, it passes it on before it unwinds. The lock is never leaked.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use std::sync::Arc;
/// use pagurus::sync::Mutex;
///
/// let total = Arc::new(Mutex::new(0));
/// pagurus::run(|| {
///     let handles: Vec<_> = (0..10)
///         .map(|_| {
///             let total = total.clone();
///             pagurus::spawn(move || *total.lock() += 1)
///         })
///         .collect();
///     for h in handles {
///         h.join().unwrap();
///     }
/// });
/// assert_eq!(*total.lock(), 10);
/// ```
pub struct Mutex<T: ?Sized> {
    state: AtomicU8,
    queue: StdMutex<WaitList>,
    data: UnsafeCell<T>,
}

// SAFETY: the mutex owns its `T` and hands out access to one holder at a time; moving the mutex
// to another thread moves the `T`, hence `T: Send`.
unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
// SAFETY: sharing the mutex lets any thread get `&mut T` (one at a time), which is a transfer of
// the `T` between threads: `T: Send` suffices, `T: Sync` is not needed (as for std's Mutex).
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

impl<T> Mutex<T> {
    /// A new, unlocked mutex holding `value`.
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            state: AtomicU8::new(0),
            queue: StdMutex::new(WaitList::new()),
            data: UnsafeCell::new(value),
        }
    }

    /// Consumes the mutex and returns the value.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Acquires the lock, parking the calling coroutine (or blocking the thread) while another
    /// holder has it. The lock is released when the guard is dropped.
    ///
    /// Locking a mutex the caller already holds deadlocks.
    ///
    /// # Panics
    ///
    /// Unwinds with [`Cancelled`](crate::Cancelled) when the coroutine's runtime is dropped while
    /// it waits (the lock is not taken then).
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        if self
            .state
            .compare_exchange(0, LOCKED, Acquire, Relaxed)
            .is_err()
        {
            self.lock_slow();
        }
        MutexGuard::new(self)
    }

    /// Acquires the lock if nobody holds it, without waiting. Also fails while the mutex is in
    /// hand-off mode (the lock is being passed to a waiter that waited long).
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        let mut state = self.state.load(Relaxed);
        loop {
            if state & (LOCKED | HANDOFF) != 0 {
                return None;
            }
            match self
                .state
                .compare_exchange_weak(state, state | LOCKED, Acquire, Relaxed)
            {
                Ok(_) => return Some(MutexGuard::new(self)),
                Err(actual) => state = actual,
            }
        }
    }

    /// A mutable reference to the value; no locking needed, since `&mut self` is exclusive.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    /// Releases the lock held by the caller.
    #[inline]
    fn unlock(&self) {
        // The holder's LOCKED bit is set, so subtracting it clears exactly that bit.
        if self.state.fetch_sub(LOCKED, Release) != LOCKED {
            self.unlock_slow();
        }
    }

    #[cold]
    fn unlock_slow(&self) {
        let mut queue = lock_list(&self.queue);
        let next = self.pass_on(&mut queue);
        drop(queue);
        if let Some(waiter) = next {
            waiter.unpark();
        }
    }

    /// With the queue locked and the lock just released (or about to be given up by a waiter
    /// that was woken), wakes the front waiter, or hands it the lock in `HANDOFF` mode. Returns
    /// the waiter to unpark once the queue lock is dropped.
    fn pass_on(&self, queue: &mut WaitList) -> Option<Arc<Waiter>> {
        let mut state = self.state.load(Relaxed);
        let grant = loop {
            if state & LOCKED != 0 {
                // Taken again already (a barger, or a hand-off by someone else): the owner's
                // unlock will see PARKED and come back here.
                return None;
            }
            if queue.is_empty() {
                // Everyone left (cancelled) since the unlock saw PARKED.
                match self.state.compare_exchange_weak(
                    state,
                    state & !(PARKED | HANDOFF),
                    Relaxed,
                    Relaxed,
                ) {
                    Ok(_) => return None,
                    Err(actual) => {
                        state = actual;
                        continue;
                    }
                }
            }
            let grant = state & HANDOFF != 0;
            let mut new = state;
            if grant {
                // Nobody else can set LOCKED now: bargers stop at HANDOFF and every hand-off
                // happens here, under the queue lock.
                new |= LOCKED;
            }
            match queue.nth(1) {
                None => new &= !(PARKED | HANDOFF),
                Some(next) if next.since.elapsed() < STARVATION => new &= !HANDOFF,
                Some(_) => {}
            }
            match self
                .state
                .compare_exchange_weak(state, new, Relaxed, Relaxed)
            {
                Ok(_) => break grant,
                Err(actual) => state = actual,
            }
        };
        let waiter = queue.pop_front().expect("the queue has a front");
        waiter.set_state(if grant { GRANTED } else { WOKEN });
        Some(waiter)
    }

    #[cold]
    fn lock_slow(&self) {
        let mut spins = 0;
        let mut waiter: Option<Arc<Waiter>> = None;
        loop {
            let state = self.state.load(Relaxed);
            if state & (LOCKED | HANDOFF) == 0 {
                if self
                    .state
                    .compare_exchange_weak(state, state | LOCKED, Acquire, Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            // Spin briefly while nobody is queued: short critical sections end before a park
            // would even start. Coroutines on the same worker as the holder lose little: a few
            // hundred nanoseconds at most.
            if state & PARKED == 0 && spins < SPIN_ROUNDS {
                spins += 1;
                for _ in 0..(1 << spins) {
                    std::hint::spin_loop();
                }
                continue;
            }
            let requeue = waiter.is_some();
            let me = waiter.get_or_insert_with(|| Waiter::new(0)).clone();
            let starving = requeue && me.since.elapsed() >= STARVATION;
            {
                let mut queue = lock_list(&self.queue);
                let mut state = self.state.load(Relaxed);
                loop {
                    if state & (LOCKED | HANDOFF) == 0 {
                        match self.state.compare_exchange_weak(
                            state,
                            state | LOCKED,
                            Acquire,
                            Relaxed,
                        ) {
                            Ok(_) => return,
                            Err(actual) => {
                                state = actual;
                                continue;
                            }
                        }
                    }
                    let new = state | PARKED | if starving { HANDOFF } else { 0 };
                    match self
                        .state
                        .compare_exchange_weak(state, new, Relaxed, Relaxed)
                    {
                        Ok(_) => break,
                        Err(actual) => state = actual,
                    }
                }
                me.set_state(WAITING);
                // A waiter that was woken and lost keeps its place at the front.
                if requeue {
                    queue.push_front(me.clone());
                } else {
                    queue.push_back(me.clone());
                }
            }
            match me.wait(WaitReason::Mutex, None) {
                Wait::Dequeued(GRANTED) => return,
                Wait::Dequeued(_) => {}
                Wait::Cancelled => self.leave_cancelled(&me),
                Wait::TimedOut => unreachable!("no deadline"),
            }
        }
    }

    /// A queued waiter learned that its coroutine is cancelled: leaves the queue, or passes on
    /// what it was handed (the lock, or the turn to look), then unwinds.
    #[cold]
    fn leave_cancelled(&self, me: &Arc<Waiter>) -> ! {
        let mut queue = lock_list(&self.queue);
        if queue.remove(me) {
            if queue.is_empty() {
                self.state.fetch_and(!(PARKED | HANDOFF), Relaxed);
            }
        } else if me.state() == GRANTED {
            drop(queue);
            self.unlock();
        } else {
            // Woken to compete: another waiter must get the turn, or it may sleep on a free lock.
            let next = self.pass_on(&mut queue);
            drop(queue);
            if let Some(next) = next {
                next.unpark();
            }
        }
        raise_cancelled()
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Mutex<T> {
        Mutex::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Mutex<T> {
        Mutex::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// Access to a [`Mutex`]'s value; the lock is released when it is dropped (also while a panic
/// unwinds: see [`Mutex`] on poisoning).
///
/// Like std's guard it is not `Send`: it is released where it was taken (a started coroutine
/// never changes threads, so holding it across a park is fine).
#[must_use = "if unused the Mutex will immediately unlock"]
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard gives only `&T`, so sharing it between threads needs `T: Sync`.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    fn new(mutex: &'a Mutex<T>) -> MutexGuard<'a, T> {
        MutexGuard {
            mutex,
            _not_send: PhantomData,
        }
    }

    /// The guard's mutex, for `Condvar` (which unlocks it with the guard and locks it again).
    pub(super) fn mutex(guard: &MutexGuard<'a, T>) -> &'a Mutex<T> {
        guard.mutex
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock, so no `&mut T` exists elsewhere.
        unsafe { &*self.mutex.data.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock, and `&mut self` makes this the only access through
        // it.
        unsafe { &mut *self.mutex.data.get() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}
