//! Waiters: what a channel's wait queues hold.
//!
//! A blocked operation (a `recv`, a `send`, or a whole `select!`) is one [`Waiter`] on the heap,
//! shared by reference count between the blocked caller and every queue entry it put into the
//! channels it waits on. It holds the caller's [`Unparker`] (a task reference or an OS thread
//! handle) and one atomic word, `state`, that decides which operation completes:
//!
//! ```text
//!   WAITING ──CAS by a counterpart (under that channel's lock)──► SELECTED(op)
//!      │
//!      └──CAS by the waiter itself (timeout, cancellation, "ready, retry")──► ABORTED
//! ```
//!
//! Exactly one CAS leaves `WAITING`, and that winner alone completes an operation with this
//! waiter: a sender that selects a waiting receiver leaves the value in the channel for it (a
//! *handoff*), a receiver that selects a waiting sender takes the value out of the sender's queue
//! entry. A waiter that aborts first is never handed anything. Once out of `WAITING` the state
//! never changes again; a waiter that wants to wait again takes a fresh round (`prepare`).
//!
//! Nothing here points into a stack: the waiter and everything the queues hold are heap objects
//! owned by reference counts, and values travel inside the channel's own (locked) state.
//!
//! Allocation: each thread keeps one spare waiter. A blocked operation takes it (or allocates),
//! and gives it back when it is done if no channel still holds a reference (`Arc::get_mut`
//! succeeds); otherwise the last holder frees it. A coroutine that parks while another on the
//! same thread also waits simply allocates a second one.

#[cfg(not(loom))]
use std::cell::{Cell, RefCell};

use crate::loom::{Arc, AtomicUsize, Ordering::*};

#[cfg(loom)]
use crate::loom::Unparker;
#[cfg(not(loom))]
use crate::sched::park::{Parked, Unparker, WaitReason, defer_cancel, park, raise_cancelled};

/// No operation chosen yet.
const WAITING: usize = 0;
/// The waiter gave up (timeout, cancellation, or retry); nobody may complete with it.
const ABORTED: usize = 1;
/// `SELECTED(op)` is `op + FIRST_OP`.
const FIRST_OP: usize = 2;

/// One blocked operation or `select!`. See the module docs.
#[derive(Debug)]
pub(crate) struct Waiter {
    state: AtomicUsize,
    /// Set while the waiter is in use (`Some` whenever a queue can see it); cleared before it
    /// is cached so that the cache does not keep a finished coroutine's task alive.
    unparker: Option<Unparker>,
}

/// What the state word says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Waiting,
    Aborted,
    Selected(usize),
}

impl Waiter {
    /// A waiter for the caller (the running coroutine or this thread), in state `WAITING`.
    #[cfg(not(loom))]
    pub(crate) fn prepare() -> Arc<Waiter> {
        let unparker = Unparker::current();
        let mut waiter = SPARE.take().unwrap_or_else(|| {
            Arc::new(Waiter {
                state: AtomicUsize::new(WAITING),
                unparker: None,
            })
        });
        let w = Arc::get_mut(&mut waiter).expect("a spare waiter is not shared");
        *w.state.get_mut() = WAITING;
        w.unparker = Some(unparker);
        waiter
    }

    /// Under loom: a fresh waiter for the calling loom thread (no spare: loom threads share one
    /// OS thread, hence its thread-locals).
    #[cfg(loom)]
    pub(crate) fn prepare() -> Arc<Waiter> {
        Arc::new(Waiter {
            state: AtomicUsize::new(WAITING),
            unparker: Some(Unparker::current()),
        })
    }

    /// Gives the waiter back after its round, keeping it as this thread's spare if nothing else
    /// holds it.
    #[cfg(not(loom))]
    pub(crate) fn release(mut waiter: Arc<Waiter>) {
        if let Some(w) = Arc::get_mut(&mut waiter) {
            w.unparker = None;
            SPARE.set(Some(waiter));
        }
    }

    pub(crate) fn state(&self) -> State {
        decode(self.state.load(Acquire))
    }

    /// A counterpart chooses operation `op` of this waiter. Call with the lock of the channel
    /// whose queue holds the entry for `op`; on success, complete the operation in the same
    /// critical section (remove the entry, take its value or leave the handoff).
    pub(crate) fn try_select(&self, op: usize) -> bool {
        self.state
            .compare_exchange(WAITING, op + FIRST_OP, AcqRel, Acquire)
            .is_ok()
    }

    /// The waiter gives up; `Err` names the operation somebody selected first.
    pub(crate) fn try_abort(&self) -> Result<(), usize> {
        match self
            .state
            .compare_exchange(WAITING, ABORTED, AcqRel, Acquire)
        {
            Ok(_) => Ok(()),
            Err(actual) => match decode(actual) {
                State::Selected(op) => Err(op),
                // Only the waiter aborts, and only once per round.
                State::Waiting | State::Aborted => unreachable!("waiter aborted twice"),
            },
        }
    }

    /// Whether a counterpart could still select this waiter.
    pub(crate) fn is_waiting(&self) -> bool {
        self.state.load(Acquire) == WAITING
    }

    /// Wakes the waiter (after a successful `try_select`, outside the channel lock).
    pub(crate) fn unpark(&self) {
        self.unparker
            .as_ref()
            .expect("a waiter in a queue has an unparker")
            .unpark();
    }

    /// This waiter's identity, for handoffs: its address in its `Arc`, stable while any `Arc`
    /// to it lives, and the waiter holds one until it has collected its handoff.
    pub(crate) fn id(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }
}

fn decode(state: usize) -> State {
    match state {
        WAITING => State::Waiting,
        ABORTED => State::Aborted,
        op => State::Selected(op - FIRST_OP),
    }
}

/// Defers a cancellation that came too late to give up the operation (a counterpart had
/// already completed it), and remembers that this coroutine owes an unwind.
///
/// Why remember: a coroutine whose cancellation is deferred goes on until it parks again, and the
/// runtime cancels it there on its next shutdown round. If that park were an ordinary channel
/// wait, a counterpart (another coroutine cancelled the same way, or a plain thread that is never
/// cancelled) could select it again first, and again on the next round, for ever: the runtime
/// would give up on it after its bounded number of rounds and leak it mid-operation. So its next
/// channel wait joins no queue at all ([`wait_for_deferred_cancellation`]).
#[cfg(not(loom))]
pub(crate) fn defer_cancellation() {
    defer_cancel();
    DEFERRED.with_borrow_mut(|owed| owed.push(Unparker::current()));
}

/// If the caller owes an unwind (see [`defer_cancellation`]), parks it where nobody can select
/// it until the runtime cancels it again, then unwinds with `Cancelled`.
#[cfg(not(loom))]
pub(crate) fn wait_for_deferred_cancellation() {
    let owes = DEFERRED.with_borrow_mut(|owed| {
        if owed.is_empty() {
            return false;
        }
        let me = Unparker::current();
        let found = owed.iter().position(|u| u.same_waiter(&me));
        found.map(|i| owed.swap_remove(i)).is_some()
    });
    if owes {
        while park(WaitReason::Channel) != Parked::Cancelled {}
        raise_cancelled();
    }
}

#[cfg(not(loom))]
thread_local! {
    /// Coroutines of this thread (coroutines never change threads once started) whose
    /// cancellation was deferred and which have not waited on a channel since. Only shutdown
    /// cancels, and a worker's thread exits after its shutdown, so this never grows for long.
    static DEFERRED: RefCell<Vec<Unparker>> = const { RefCell::new(Vec::new()) };
    /// This thread's spare waiter (see the module docs).
    static SPARE: Cell<Option<Arc<Waiter>>> = const { Cell::new(None) };
    /// The state of this thread's xorshift generator (never zero).
    static RNG: Cell<u64> = const { Cell::new(0) };
}

/// A cheap pseudo-random number (xorshift64*), per thread; seeded from the thread's address
/// space layout and the clock. Good enough to choose among ready `select!` arms.
#[cfg(not(loom))]
pub(crate) fn random() -> u64 {
    RNG.with(|cell| {
        let mut x = cell.get();
        if x == 0 {
            let local = 0u8;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            x = (std::ptr::addr_of!(local) as u64 ^ nanos.rotate_left(32)) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        cell.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A uniformly random index below `n` (n > 0), by multiply-shift (no division).
#[cfg(not(loom))]
pub(crate) fn random_below(n: usize) -> usize {
    (((random() >> 32) * n as u64) >> 32) as usize
}
