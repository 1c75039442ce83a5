//! The synchronisation primitives of the runtime's lock-free protocols: std's in every real
//! build, [loom]'s model-checked ones under `cfg(loom)`.
//!
//! The protocol cores (the task's run and join words in `sched::state`, the worker's
//! sleep/wake handshake in `sched::idle`, the channel waiter and its queues in `channel`) take
//! their atomics, `Arc`, `Mutex` and `UnsafeCell` from here, so the very code the runtime runs
//! is what the loom models check (`RUSTFLAGS="--cfg loom" cargo test -p pagurus-runtime
//! --release --lib`, see design.md). In a real build everything here is a re-export, or (for
//! [`UnsafeCell`]) a `#[repr(transparent)]` wrapper whose methods inline away: nothing costs
//! more than std.
//!
//! Under `cfg(loom)` the crate compiles only this module and those protocol cores (see
//! `lib.rs`); [`Unparker`] then stands in for `sched::park::Unparker` with a loom thread handle.
//!
//! [loom]: https://docs.rs/loom

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `std::cell::UnsafeCell` with loom's access API: the pointer is only reachable inside a
/// closure, which loom uses to record each access and report data races.
#[cfg(not(loom))]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    #[inline(always)]
    pub(crate) const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Writes through the pointer.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// Under loom: the waiter handle of the protocols (in a real build, `sched::park::Unparker`, a
/// task reference or an OS thread), here a loom thread, which `loom::thread::park` parks. Its
/// unpark is a permit, as the real one's is.
#[cfg(loom)]
#[derive(Clone)]
pub(crate) struct Unparker(loom::thread::Thread);

#[cfg(loom)]
impl Unparker {
    pub(crate) fn current() -> Unparker {
        Unparker(loom::thread::current())
    }

    pub(crate) fn unpark(&self) {
        self.0.unpark();
    }
}

#[cfg(loom)]
impl std::fmt::Debug for Unparker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unparker({:?})", self.0.id())
    }
}
