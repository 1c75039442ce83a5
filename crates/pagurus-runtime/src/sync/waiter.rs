//! Waiters and wait queues, shared by every primitive in `sync`.
//!
//! A [`Waiter`] is a heap object (`Arc`) holding the [`Unparker`] of one waiting coroutine or
//! thread and the outcome of its wait. A [`WaitList`] is a FIFO of waiters behind the
//! primitive's internal lock, with O(1) removal from the middle (a departing waiter knows its
//! slot). Nothing here points into a coroutine stack: the list owns `Arc`s, the waiter owns its
//! unparker (a task reference), and whoever dequeues a waiter holds its own `Arc` while it wakes
//! it, so the waiter may return and drop its reference at any time.
//!
//! # The state of a waiter
//!
//! `state` is written only by whoever holds the lock of the list the waiter is (or was) in:
//!
//! - `WAITING`: queued. The waiter itself set it, under the lock, when it pushed itself.
//! - `WOKEN`: dequeued and told to look again (the lock was released, a condition variable was
//!   notified, a wait group reached zero). Nothing was handed to it.
//! - `GRANTED`: dequeued and handed something it now owns (a lock, read access, a permit).
//!
//! The dequeuer stores the new state (`Release`) under the lock and unparks the waiter after
//! dropping it. The waiter reads its state (`Acquire`) after each park; a waiter that gives up
//! (cancelled, timed out) takes the lock and either removes itself (still `WAITING`) or learns
//! under the lock what it was handed, and passes that on.

use std::sync::atomic::AtomicU8;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdMutexGuard};
use std::time::Instant;

use slab::Slab;

use crate::sched::park::{Parked, Unparker, WaitReason, park, park_until};

/// Queued, not dequeued yet.
pub(super) const WAITING: u8 = 0;
/// Dequeued and told to look again; nothing handed over.
pub(super) const WOKEN: u8 = 1;
/// Dequeued and handed a lock, read access or a permit.
pub(super) const GRANTED: u8 = 2;

/// One waiting coroutine or thread, on the heap.
pub(super) struct Waiter {
    unparker: Unparker,
    /// `WAITING`, `WOKEN` or `GRANTED` (see the module docs).
    state: AtomicU8,
    /// The slot of this waiter in the `WaitList` that holds it; written and read under that
    /// list's lock only (an atomic so the waiter can be shared, never for synchronisation).
    slot: AtomicUsize,
    /// What the waiter asks for, for primitives with more than one kind of waiter (`RwLock`).
    pub(super) kind: u8,
    /// When the waiter first queued, for the mutex's fairness.
    pub(super) since: Instant,
}

/// How [`Waiter::wait`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Dequeued, with the state the dequeuer left (`WOKEN` or `GRANTED`).
    Dequeued(u8),
    /// The deadline passed while queued (or just as it was dequeued: re-check under the lock).
    TimedOut,
    /// The runtime cancels the coroutine (or it was dequeued just then: re-check under the lock).
    Cancelled,
}

impl Waiter {
    /// A waiter for the calling coroutine or thread.
    pub(super) fn new(kind: u8) -> Arc<Waiter> {
        Arc::new(Waiter {
            unparker: Unparker::current(),
            state: AtomicU8::new(WAITING),
            slot: AtomicUsize::new(usize::MAX),
            kind,
            since: Instant::now(),
        })
    }

    /// The waiter's state; `Acquire` pairs with the dequeuer's store, so what the dequeuer did
    /// before (release a lock, decrement a counter) is visible after.
    pub(super) fn state(&self) -> u8 {
        self.state.load(Acquire)
    }

    /// Marks a dequeued waiter; call under the lock of the list it was in, then [`unpark`] it
    /// after dropping that lock.
    ///
    /// [`unpark`]: Waiter::unpark
    pub(super) fn set_state(&self, state: u8) {
        self.state.store(state, Release);
    }

    /// Wakes the waiter (a permit if it is not parked yet).
    pub(super) fn unpark(&self) {
        self.unparker.unpark();
    }

    /// Parks until the waiter is dequeued, `deadline` passes or the coroutine is cancelled.
    /// Parks may return spuriously; this loops until one of the three.
    pub(super) fn wait(&self, reason: WaitReason, deadline: Option<Instant>) -> Wait {
        loop {
            let state = self.state();
            if state != WAITING {
                return Wait::Dequeued(state);
            }
            let parked = match deadline {
                None => park(reason),
                Some(deadline) => {
                    if Instant::now() >= deadline {
                        return Wait::TimedOut;
                    }
                    park_until(deadline, reason)
                }
            };
            if parked == Parked::Cancelled {
                return Wait::Cancelled;
            }
        }
    }
}

const NIL: usize = usize::MAX;

/// A FIFO of waiters with O(1) push at either end, pop and removal of any waiter: a doubly
/// linked list threaded through a slab, so nodes are heap slots, never stack frames.
pub(super) struct WaitList {
    nodes: Slab<Node>,
    head: usize,
    tail: usize,
}

struct Node {
    waiter: Arc<Waiter>,
    prev: usize,
    next: usize,
}

impl WaitList {
    pub(super) const fn new() -> WaitList {
        WaitList {
            nodes: Slab::new(),
            head: NIL,
            tail: NIL,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The waiter that [`pop_front`](WaitList::pop_front) would return.
    pub(super) fn front(&self) -> Option<&Arc<Waiter>> {
        (self.head != NIL).then(|| &self.nodes[self.head].waiter)
    }

    /// The `n`th waiter from the front.
    pub(super) fn nth(&self, n: usize) -> Option<&Arc<Waiter>> {
        let mut at = self.head;
        for _ in 0..n {
            if at == NIL {
                return None;
            }
            at = self.nodes[at].next;
        }
        (at != NIL).then(|| &self.nodes[at].waiter)
    }

    /// Queues `waiter` (whose state must be `WAITING`) last.
    pub(super) fn push_back(&mut self, waiter: Arc<Waiter>) {
        let slot = self.nodes.insert(Node {
            waiter,
            prev: self.tail,
            next: NIL,
        });
        self.nodes[slot].waiter.slot.store(slot, Relaxed);
        match self.tail {
            NIL => self.head = slot,
            tail => self.nodes[tail].next = slot,
        }
        self.tail = slot;
    }

    /// Queues `waiter` (whose state must be `WAITING`) first.
    pub(super) fn push_front(&mut self, waiter: Arc<Waiter>) {
        let slot = self.nodes.insert(Node {
            waiter,
            prev: NIL,
            next: self.head,
        });
        self.nodes[slot].waiter.slot.store(slot, Relaxed);
        match self.head {
            NIL => self.tail = slot,
            head => self.nodes[head].prev = slot,
        }
        self.head = slot;
    }

    pub(super) fn pop_front(&mut self) -> Option<Arc<Waiter>> {
        (self.head != NIL).then(|| self.unlink(self.head))
    }

    /// Removes `waiter` if this list holds it; `false` if it was dequeued already.
    pub(super) fn remove(&mut self, waiter: &Arc<Waiter>) -> bool {
        let slot = waiter.slot.load(Relaxed);
        match self.nodes.get(slot) {
            Some(node) if Arc::ptr_eq(&node.waiter, waiter) => {
                self.unlink(slot);
                true
            }
            _ => false,
        }
    }

    fn unlink(&mut self, slot: usize) -> Arc<Waiter> {
        let node = self.nodes.remove(slot);
        match node.prev {
            NIL => self.head = node.next,
            prev => self.nodes[prev].next = node.next,
        }
        match node.next {
            NIL => self.tail = node.prev,
            next => self.nodes[next].prev = node.prev,
        }
        node.waiter.slot.store(NIL, Relaxed);
        if self.head == NIL && self.nodes.capacity() > 64 {
            // A burst of waiters (a wait group over 10,000 coroutines) should not keep its slab.
            self.nodes = Slab::new();
        }
        node.waiter
    }
}

/// Locks a primitive's internal queue. Nothing panics while holding it, but a poisoned lock
/// would still be consistent: every update of a list is complete before anything can panic.
pub(super) fn lock_list(list: &StdMutex<WaitList>) -> StdMutexGuard<'_, WaitList> {
    list.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Wakes waiters that were dequeued (and marked) under a lock, after it was dropped.
pub(super) fn unpark_all(waiters: impl IntoIterator<Item = Arc<Waiter>>) {
    for waiter in waiters {
        waiter.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_keeps_order_and_removes_from_the_middle() {
        let mut list = WaitList::new();
        let w: Vec<_> = (0..5).map(Waiter::new).collect();
        for x in &w[1..4] {
            list.push_back(x.clone());
        }
        list.push_front(w[0].clone());
        list.push_back(w[4].clone());
        assert_eq!(list.len(), 5);
        assert_eq!(list.nth(2).unwrap().kind, 2);
        assert!(list.remove(&w[2]));
        assert!(!list.remove(&w[2]), "removed twice");
        assert!(list.remove(&w[4]));
        let order: Vec<u8> = std::iter::from_fn(|| list.pop_front().map(|x| x.kind)).collect();
        assert_eq!(order, [0, 1, 3]);
        assert!(list.is_empty());
        assert!(!list.remove(&w[0]));
    }
}
