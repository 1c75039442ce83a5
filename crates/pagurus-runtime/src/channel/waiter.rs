//! Waiters: what a channel's wait queues hold.
//!
//! A blocked operation (a `recv`, a `send`, or a whole `select!`) is one [`Waiter`] on the heap,
//! shared by reference count between the blocked caller and every queue entry it put into the
//! channels it waits on. It holds the caller's [`Unparker`] (a task reference or an OS thread
//! handle) and one atomic word, `state`, that decides which operation completes:
//!
//! ```text
//!   WAITING ──CAS by a counterpart (under that channel's lock)──► SELECTED(op)
//!      │    └─CAS by a disconnection (under that channel's lock)──► SELECTED(op) + DISCONNECTED
//!      │
//!      └──CAS by the waiter itself (timeout, cancellation, "ready, retry")──► ABORTED
//! ```
//!
//! Exactly one CAS leaves `WAITING`, and that winner alone completes an operation with this
//! waiter: a sender that selects a waiting receiver leaves the value in the channel for it (a
//! *handoff*), a receiver that selects a waiting sender takes the value out of the sender's queue
//! entry. A waiter that aborts first is never handed anything. A selection by a disconnection
//! says so in the state word, so a selected sender learns whether its value was taken without
//! taking the channel's lock again. Once out of `WAITING` the state
//! never changes again; a waiter that wants to wait again takes a fresh round (`prepare`).
//!
//! Nothing here points into a stack: the waiter and everything the queues hold are heap objects
//! owned by reference counts, and values travel inside the channel's own (locked) state.
//!
//! Allocation: a waiter is made for one coroutine (or thread) and reused by it. A coroutine keeps
//! its waiter in its task (`park::cache_waiter`, emptied when the coroutine finishes, since the
//! waiter's unparker refers back to the task); a plain thread keeps its own in a thread-local.
//! A blocked operation takes it back if nothing else still holds a reference (a queue entry or
//! a waker that has not dropped its clone yet), and otherwise allocates a fresh one.

#[cfg(not(loom))]
use std::cell::{Cell, RefCell};

use crate::loom::{Arc, AtomicUsize, Ordering::*};

#[cfg(loom)]
use crate::loom::Unparker;
#[cfg(not(loom))]
use crate::sched::park::{
    Parked, Unparker, WaitReason, cache_waiter, defer_cancel, park, raise_cancelled,
    take_cached_waiter,
};

/// No operation chosen yet.
const WAITING: usize = 0;
/// The waiter gave up (timeout, cancellation, or retry); nobody may complete with it.
const ABORTED: usize = 1;
/// `SELECTED(op)` is `FIRST_OP + 2 * op`, plus [`DISCONNECTED`] when a disconnection selected it.
const FIRST_OP: usize = 2;
/// The selection was a disconnection of the channel, not a counterpart's operation.
const DISCONNECTED: usize = 1;

/// One blocked operation or `select!`. See the module docs.
#[derive(Debug)]
pub(crate) struct Waiter {
    state: AtomicUsize,
    /// The coroutine or thread the waiter belongs to, for its whole life.
    unparker: Unparker,
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
    ///
    /// # Panics
    ///
    /// Where the caller cannot park (see `Unparker::current`).
    #[cfg(not(loom))]
    pub(crate) fn prepare() -> Arc<Waiter> {
        let cached = match take_cached_waiter() {
            Some(cached) => cached.downcast::<Waiter>().ok(),
            None => SPARE.take(),
        };
        if let Some(waiter) = cached
            && Arc::strong_count(&waiter) == 1
        {
            // Nobody else holds it: whoever dropped the last other reference did so (Release)
            // after its last use, which this fence orders before the reuse.
            std::sync::atomic::fence(Acquire);
            waiter.state.store(WAITING, Relaxed);
            return waiter;
        }
        Arc::new(Waiter {
            state: AtomicUsize::new(WAITING),
            unparker: Unparker::current(),
        })
    }

    /// Under loom: a fresh waiter for the calling loom thread (no reuse: loom threads share one
    /// OS thread, hence its thread-locals).
    #[cfg(loom)]
    pub(crate) fn prepare() -> Arc<Waiter> {
        Arc::new(Waiter {
            state: AtomicUsize::new(WAITING),
            unparker: Unparker::current(),
        })
    }

    /// Gives the waiter back after its round, for the caller's next one.
    #[cfg(not(loom))]
    pub(crate) fn release(waiter: Arc<Waiter>) {
        if waiter.unparker.is_task() {
            cache_waiter(waiter);
        } else {
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
            .compare_exchange(WAITING, FIRST_OP + 2 * op, AcqRel, Acquire)
            .is_ok()
    }

    /// A disconnection of the channel of operation `op` selects it (under that channel's lock,
    /// in the same critical section that marks the side gone): the operation's entry stays
    /// queued and nothing is handed over.
    pub(crate) fn try_select_disconnected(&self, op: usize) -> bool {
        self.state
            .compare_exchange(WAITING, FIRST_OP + 2 * op + DISCONNECTED, AcqRel, Acquire)
            .is_ok()
    }

    /// Whether the waiter was selected by a disconnection (call once it is selected).
    pub(crate) fn selected_by_disconnection(&self) -> bool {
        let state = self.state.load(Acquire);
        state >= FIRST_OP && (state - FIRST_OP) & DISCONNECTED != 0
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
        self.unparker.unpark();
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
        selected => State::Selected((selected - FIRST_OP) / 2),
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
    DEFERRED.with_borrow_mut(|owed| {
        owed.push(Unparker::current());
        OWED.set(owed.len());
    });
}

/// Whether some coroutine of this thread owes an unwind (a cheap first check before
/// [`wait_for_deferred_cancellation`], which then tells whether it is the caller).
#[cfg(not(loom))]
#[inline]
pub(crate) fn deferred_cancellation_owed() -> bool {
    OWED.get() != 0
}

/// If the caller owes an unwind (see [`defer_cancellation`]), parks it where nobody can select
/// it until the runtime cancels it again, then unwinds with `Cancelled`.
#[cfg(not(loom))]
pub(crate) fn wait_for_deferred_cancellation() {
    if !deferred_cancellation_owed() {
        return;
    }
    let owes = DEFERRED.with_borrow_mut(|owed| {
        if owed.is_empty() {
            return false;
        }
        let me = Unparker::current();
        let found = owed.iter().position(|u| u.same_waiter(&me));
        let owes = found.map(|i| owed.swap_remove(i)).is_some();
        OWED.set(owed.len());
        owes
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
    /// `DEFERRED`'s length, for the check every blocking operation makes: a `Cell` without a
    /// destructor is a plain thread-local load, where the `RefCell<Vec>` needs its registration
    /// state checked and a borrow.
    static OWED: Cell<usize> = const { Cell::new(0) };
    /// This thread's waiter, when it is not a coroutine (see the module docs).
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
