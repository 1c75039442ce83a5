//! Parking: the one way anything in pagurus waits.
//!
//! Every blocking primitive (join, channels, locks, timers, sockets, offloaded calls) is built
//! from three pieces, and from nothing else:
//!
//! - [`Unparker::current`] names the waiter: the running scheduled coroutine (a task reference),
//!   or the calling OS thread when no coroutine runs. It is `Clone + Send + Sync` and owns what it
//!   names, so a wait queue stores it by value.
//! - [`park`] / [`park_until`] wait until the unparker is used, the deadline passes, or the
//!   runtime cancels the coroutine.
//! - [`Unparker::unpark`] wakes it, from any thread.
//!
//! # Permits, not events
//!
//! An unpark is a *permit*: if the waiter is not parked yet, its next park returns at once. So a
//! waiter may publish its unparker, check its condition, and park, without a lock held across
//! the park: an unpark that lands between the check and the park is not lost. Parks may also
//! return spuriously (a permit left over from an earlier wait), so every caller parks in a loop
//! that re-checks its condition. This is the contract of `std::thread::park`, and threads use it
//! directly.
//!
//! # Nothing points into a stack
//!
//! Stacks move (growth, and later compaction of parked stacks), so a wait queue must never hold a
//! pointer into a coroutine stack: no waiter nodes on the stack, no `&` to a stack local handed to
//! another thread. An [`Unparker`] is a reference-counted pointer to the task's heap allocation;
//! whatever the waker must hand over (a value sent on a channel) goes into a heap cell the waiter
//! owns a reference to.
//!
//! # Cancellation
//!
//! Dropping a runtime resumes each parked coroutine once with a cancellation request; [`park`]
//! then returns [`Parked::Cancelled`]. The caller removes its waiter from whatever queue holds it
//! (so no value or permit is handed to a waiter that is gone) and unwinds with
//! [`raise_cancelled`]. A coroutine is told once; parks after that (in destructors that run while
//! it unwinds) return `Woken`.

use std::panic;
use std::thread::{self, Thread};
use std::time::Instant;

use super::BLOCKING_CALL;
use super::task::{CachedWaiter, TaskRef, wake};
use super::worker::WorkerCore;
use crate::coroutine::{Cancelled, Suspend};

/// How a park ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a cancelled park must be handled: clean up, then raise_cancelled()"]
pub(crate) enum Parked {
    /// Unparked, or the deadline passed, or spuriously: re-check the condition.
    Woken,
    /// The runtime is shutting down: leave every wait queue, then [`raise_cancelled`].
    Cancelled,
}

/// What a parked coroutine waits for (shown by coroutine dumps).
pub(crate) use crate::dump::WaitReason;

/// A handle that wakes one parked waiter (a coroutine or an OS thread).
#[derive(Clone)]
pub(crate) struct Unparker {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Task(TaskRef),
    Thread(Thread),
}

impl Unparker {
    /// The caller as a waiter: the running scheduled coroutine, or this OS thread.
    ///
    /// # Panics
    ///
    /// On the system stack or in a raw coroutine nested in a scheduled one: code there cannot
    /// park the coroutine (see `scheduled_context`).
    pub(crate) fn current() -> Unparker {
        let inner = match super::current_task() {
            Some(task) => Inner::Task(task),
            None => Inner::Thread(thread::current()),
        };
        Unparker { inner }
    }

    /// Wakes the waiter, or leaves it a permit if it is not parked.
    #[inline]
    pub(crate) fn unpark(&self) {
        match &self.inner {
            Inner::Task(task) => wake(task),
            Inner::Thread(thread) => thread.unpark(),
        }
    }

    /// Whether it names a coroutine (not an OS thread).
    pub(crate) fn is_task(&self) -> bool {
        matches!(self.inner, Inner::Task(_))
    }

    /// Whether both name the same waiter.
    pub(crate) fn same_waiter(&self, other: &Unparker) -> bool {
        match (&self.inner, &other.inner) {
            (Inner::Task(a), Inner::Task(b)) => {
                std::ptr::addr_eq(std::sync::Arc::as_ptr(a), std::sync::Arc::as_ptr(b))
            }
            (Inner::Thread(a), Inner::Thread(b)) => a.id() == b.id(),
            _ => false,
        }
    }
}

impl std::fmt::Debug for Unparker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::Task(task) => write!(f, "Unparker(coroutine {})", task.header().id),
            Inner::Thread(thread) => write!(f, "Unparker(thread {:?})", thread.id()),
        }
    }
}

/// Parks the caller until it is unparked (or spuriously; see the module docs). In a coroutine
/// the worker runs others meanwhile; on a plain thread the thread blocks.
pub(crate) fn park(reason: WaitReason) -> Parked {
    if WorkerCore::current().is_none() {
        thread::park();
        return Parked::Woken;
    }
    park_coroutine(reason)
}

/// Like [`park`], but also returns once `deadline` has passed. A coroutine's deadline is a timer
/// on its worker (no OS timer, no thread), removed when the park returns.
pub(crate) fn park_until(deadline: Instant, reason: WaitReason) -> Parked {
    let Some(core) = WorkerCore::current() else {
        let now = Instant::now();
        if deadline > now {
            thread::park_timeout(deadline - now);
        }
        return Parked::Woken;
    };
    if deadline <= Instant::now() {
        return Parked::Woken;
    }
    park_timer(core, deadline, reason).0
}

/// Parks the running coroutine of `core` with a timer at `deadline`; also says whether the
/// timer fired (so the deadline has passed, without reading the clock).
fn park_timer(core: &WorkerCore, deadline: Instant, reason: WaitReason) -> (Parked, bool) {
    let ctx = super::scheduled_context(BLOCKING_CALL);
    let task = core
        .current_task()
        .expect("a worker's parker is its running coroutine");
    let key = core.add_timer(deadline, task);
    // SAFETY: `scheduled_context` checked that we run on the stack of the worker's current
    // coroutine, which is the innermost context of this thread (so it is alive).
    let parked = unsafe { suspend_parked(core, &*ctx, reason) };
    let header = core
        .current_header()
        .expect("a worker's parker is its running coroutine");
    // A fired timer is gone from the wheel; one that did not fire (or that shutdown cleared) is
    // looked up and removed.
    let fired = header.timer_fired.replace(false) || !core.cancel_timer(key);
    (parked, fired)
}

/// Sleeps until `deadline`: [`park_until`] in a loop that ends at the deadline (`Cancelled` if
/// the runtime is being dropped).
pub(crate) fn sleep_until(deadline: Instant) -> Parked {
    sleep_from(Instant::now(), deadline)
}

/// [`sleep_until`] for a caller that has just read the clock (`sleep(dur)`): one read fewer.
pub(crate) fn sleep_from(now: Instant, deadline: Instant) -> Parked {
    let Some(core) = WorkerCore::current() else {
        let mut now = now;
        while now < deadline {
            thread::park_timeout(deadline - now);
            now = Instant::now();
        }
        return Parked::Woken;
    };
    if deadline <= now {
        return Parked::Woken;
    }
    loop {
        match park_timer(core, deadline, WaitReason::Sleep) {
            (Parked::Cancelled, _) => return Parked::Cancelled,
            // A fired timer means the clock reached the deadline's tick.
            (Parked::Woken, true) => return Parked::Woken,
            (Parked::Woken, false) if Instant::now() >= deadline => return Parked::Woken,
            (Parked::Woken, false) => {}
        }
    }
}

/// Parks the running scheduled coroutine.
#[inline]
fn park_coroutine(reason: WaitReason) -> Parked {
    let ctx = super::scheduled_context(BLOCKING_CALL);
    let core = WorkerCore::current().expect("scheduled_context found a worker");
    // SAFETY: `scheduled_context` checked that we run on the stack of the worker's current
    // coroutine, which is the innermost context of this thread (so it is alive).
    unsafe { suspend_parked(core, &*ctx, reason) }
}

/// Parks the running coroutine of `core`, whose context is `ctx`.
///
/// # Safety
/// `ctx` is the context `scheduled_context` returned on this coroutine's stack.
#[inline]
unsafe fn suspend_parked(
    core: &WorkerCore,
    ctx: &crate::coroutine::Context,
    reason: WaitReason,
) -> Parked {
    core.set_wait_reason(reason);
    // SAFETY: per the contract, we are that context's coroutine, on its stack.
    let arg = unsafe { crate::coroutine::suspend(ctx, Suspend::Park) };
    if ctx.should_raise_cancel(arg) {
        Parked::Cancelled
    } else {
        Parked::Woken
    }
}

/// Takes the running coroutine's cached waiter (see `Header::waiter_cache`); `None` outside a
/// scheduled coroutine or when nothing is cached.
///
/// # Panics
///
/// Where a coroutine cannot park (on the system stack, in a raw coroutine), as
/// [`Unparker::current`] does.
#[inline]
pub(crate) fn take_cached_waiter() -> Option<CachedWaiter> {
    let core = WorkerCore::current()?;
    super::scheduled_context(BLOCKING_CALL);
    core.current_header()?.waiter_cache.take()
}

/// Caches `waiter` in the running coroutine for its next wait; dropped when not called from a
/// scheduled coroutine. The coroutine's task must not be needed back from it after the
/// coroutine finishes (the cache is emptied then).
pub(crate) fn cache_waiter(waiter: CachedWaiter) {
    if let Some(header) = WorkerCore::current().and_then(WorkerCore::current_header) {
        header.waiter_cache.set(Some(waiter));
    }
}

/// Defers a cancellation that [`park`] reported: for a waiter that learned of it too late to give
/// up its operation (a value or permit was already handed to it). The operation completes
/// normally; the next park of this coroutine (shutdown resumes it again) reports `Cancelled`
/// again. A no-op on a plain thread.
pub(crate) fn defer_cancel() {
    if WorkerCore::current().is_none() {
        return;
    }
    let ctx = super::scheduled_context(BLOCKING_CALL);
    // SAFETY: `scheduled_context` checked that this is the running coroutine's live context.
    unsafe { &*ctx }.rearm_cancel();
}

/// Unwinds the calling coroutine with the [`Cancelled`] payload, after a park returned
/// [`Parked::Cancelled`] and the caller left its wait queues.
pub(crate) fn raise_cancelled() -> ! {
    panic::resume_unwind(Box::new(Cancelled))
}
