//! The lock-free cores of a task: its run-state word and its join word. `task.rs` and
//! `worker.rs` drive them; they hold no coroutine and switch no context, so the loom models at
//! the bottom of this file check exactly this code (`cfg(loom)`, see design.md).
//!
//! # Run state
//!
//! [`RunState`] holds a phase and a `NOTIFIED` bit:
//!
//! ```text
//!   ACTIVE (queued or running) --(coroutine parks)--> PARKED --(wake)--> ACTIVE, queued at home
//!      \--(coroutine finishes, or is abandoned)--> DONE
//! ```
//!
//! A wake that finds the task `ACTIVE` sets `NOTIFIED` instead, and the next park returns at
//! once: a wake is a permit, never lost. Queued and running need no separate phases: a waker
//! treats them alike, and only the move out of `PARKED` puts a task in a queue, so a task is never
//! queued twice. The move to `PARKED` is made by the worker *after* the coroutine has switched
//! away, so a task that a waker sees `PARKED` has its registers saved and may be resumed.
//!
//! Every wake is a read-modify-write with Release, even one that finds `NOTIFIED` already set,
//! and the worker consumes the bit with Acquire: whatever a waker wrote before its wake is
//! visible to the coroutine when it next looks. (A wake that only *read* `NOTIFIED` and returned
//! could be outrun by the worker consuming the bit: the coroutine would then re-check its
//! condition without seeing that waker's write, and park for good. The loom model
//! `loom_second_wake_is_not_lost` found exactly that in an earlier version.)
//!
//! # Join state
//!
//! [`JoinState`] holds `COMPLETE` (the output is written) and `WAITER` (the joiner's waiter is
//! written). Each side writes its part, then sets its bit with one `fetch_or`; whoever sets its
//! bit second sees the other's and acts: the completer wakes the waiter, or the joiner finds the
//! output.
//!
//! `DETACHED` says the `JoinHandle` was dropped unjoined, and decides who drops the output the
//! same way: if the task completes after the handle is gone, the completer drops the output; if
//! the handle is dropped after completion, the handle's drop does it.

use crate::loom::{AtomicUsize, Ordering::*, UnsafeCell};

#[cfg(not(loom))]
use super::park::Unparker;
#[cfg(loom)]
use crate::loom::Unparker;

const PHASE: usize = 0b11;
const ACTIVE: usize = 0;
const PARKED: usize = 1;
const DONE: usize = 2;
const NOTIFIED: usize = 0b100;

/// A task's run state (see the module docs).
pub(crate) struct RunState(AtomicUsize);

impl RunState {
    pub(crate) fn new() -> RunState {
        RunState(AtomicUsize::new(ACTIVE))
    }

    /// A wake: moves a `PARKED` task to `ACTIVE` and returns `true` (the caller must queue it on
    /// its home worker), or leaves a permit (`NOTIFIED`) on an active one, or does nothing to a
    /// finished one.
    #[inline]
    pub(crate) fn wake(&self) -> bool {
        let mut cur = self.0.load(Relaxed);
        loop {
            let next = match cur & PHASE {
                PARKED => ACTIVE,
                DONE => return false,
                // Also when NOTIFIED is set already: the Release of this RMW is what publishes
                // the waker's writes to the worker that consumes the bit (see the module docs).
                _ => cur | NOTIFIED,
            };
            match self.0.compare_exchange_weak(cur, next, AcqRel, Relaxed) {
                Ok(_) => return cur & PHASE == PARKED,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The worker, after the task's coroutine suspended to park: moves it to `PARKED` and
    /// returns `true`, unless a wake came since it last ran; then consumes that permit and
    /// returns `false` (resume the coroutine: it re-checks its condition). The Release
    /// publishes the saved context, and the home worker, to the waker that will queue the task.
    ///
    /// Only the worker that runs the task calls this.
    #[inline]
    pub(crate) fn park(&self) -> bool {
        let parked = self
            .0
            .fetch_update(Release, Relaxed, |s| (s & NOTIFIED == 0).then_some(PARKED));
        if parked.is_ok() {
            return true;
        }
        // Acquire: synchronises with every wake up to this point (each one an RMW with Release).
        self.0.fetch_and(!NOTIFIED, Acquire);
        false
    }

    /// Shutdown, about to resume a task to cancel it where it parked: makes it `ACTIVE` again
    /// (keeping a pending permit) unless it is done. A wake racing with this finds it `ACTIVE`
    /// and only leaves a permit, or came first and queued it (then the queued reference finds it
    /// done later, or runs it once more).
    #[inline]
    pub(crate) fn reactivate(&self) {
        if self.0.load(Relaxed) & PHASE != ACTIVE {
            let _ = self.0.fetch_update(AcqRel, Acquire, |s| {
                (s & PHASE != DONE).then_some(ACTIVE | (s & NOTIFIED))
            });
        }
    }

    /// The task's coroutine finished: no wake queues it again.
    ///
    /// A swap, not a store: loom orders a plain store that races with a wake's RMW too loosely
    /// (it lets the finishing thread read the wake's value back afterwards, which C11 forbids),
    /// and one RMW per finished coroutine costs nothing measurable.
    #[inline]
    pub(crate) fn finish(&self) {
        self.0.swap(DONE, Release);
    }

    /// Marks a task that will never run again done; `false` if it was done already (whoever
    /// abandons it first completes it).
    #[inline]
    pub(crate) fn abandon(&self) -> bool {
        self.0.swap(DONE, AcqRel) & PHASE != DONE
    }

    pub(crate) fn is_done(&self) -> bool {
        self.0.load(Acquire) & PHASE == DONE
    }

    /// Whether the task is parked (for dumps: a snapshot, stale as soon as it is read unless
    /// the caller is the task's worker between two of its coroutines' runs).
    #[cfg(not(loom))]
    pub(crate) fn is_parked(&self) -> bool {
        self.0.load(Acquire) & PHASE == PARKED
    }
}

const COMPLETE: usize = 0b001;
const WAITER: usize = 0b010;
const DETACHED: usize = 0b100;

/// A task's join state: completion, the joiner's waiter and detachment (see the module docs).
pub(crate) struct JoinState {
    word: AtomicUsize,
    /// Written by the joiner before it sets WAITER; taken by the completer after it sees WAITER.
    waiter: UnsafeCell<Option<Unparker>>,
}

impl JoinState {
    pub(crate) fn new() -> JoinState {
        JoinState {
            word: AtomicUsize::new(0),
            waiter: UnsafeCell::new(None),
        }
    }

    /// Whether [`JoinState::complete`] has run; after `true`, the output may be read.
    #[inline]
    pub(crate) fn is_complete(&self) -> bool {
        self.word.load(Acquire) & COMPLETE != 0
    }

    /// Marks the output written and wakes the joiner, if one is waiting. Returns `true` when the
    /// handle was dropped first (`DETACHED`): nobody will take the output, and the caller must
    /// drop it.
    ///
    /// # Safety
    /// The output must be written, and this called once.
    #[must_use = "an orphaned output must be dropped by the completer"]
    pub(crate) unsafe fn complete(&self) -> bool {
        let prev = self.word.fetch_or(COMPLETE, AcqRel);
        if prev & DETACHED != 0 {
            return true;
        }
        if prev & WAITER != 0 {
            // SAFETY: WAITER was set, so the joiner finished writing the slot (Acquire above) and
            // will not touch it again.
            let waiter = self.waiter.with_mut(|slot| unsafe { (*slot).take() });
            if let Some(waiter) = waiter {
                waiter.unpark();
            }
        }
        false
    }

    /// The joiner registers `waiter`, to be unparked by [`JoinState::complete`]. Returns `false`
    /// if the task completed first (nobody will unpark: the output is ready now).
    ///
    /// # Safety
    /// Called at most once per task (one joiner: `join` consumes its handle), never after
    /// [`JoinState::detach`].
    pub(crate) unsafe fn register(&self, waiter: Unparker) -> bool {
        // SAFETY: WAITER is not set yet (the contract), so the completer does not read the slot
        // until our fetch_or below publishes it.
        self.waiter.with_mut(|slot| unsafe { *slot = Some(waiter) });
        if self.word.fetch_or(WAITER, AcqRel) & COMPLETE != 0 {
            // The completer came first and did not see our waiter: take it back.
            // SAFETY: the completer only reads the slot if it sees WAITER, and it did not.
            drop(self.waiter.with_mut(|slot| unsafe { (*slot).take() }));
            return false;
        }
        true
    }

    /// The handle is dropped unjoined. Returns `true` if the task is complete already: the
    /// caller must drop the output (nobody else will).
    ///
    /// # Safety
    /// Called at most once per task, never after [`JoinState::register`].
    #[must_use = "a completed output must be dropped by the detacher"]
    pub(crate) unsafe fn detach(&self) -> bool {
        self.word.fetch_or(DETACHED, AcqRel) & COMPLETE != 0
    }
}

#[cfg(all(test, loom))]
mod loom_models;
