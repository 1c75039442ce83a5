//! The pagurus runtime: stackful coroutines on small contiguous stacks, scheduled on a few OS
//! threads.
//!
//! Most users depend on the `pagurus` facade crate, which re-exports this API. The map of the
//! system (stack layout, context switch, worker model and its soundness argument, measured
//! costs) is `design.md` at the repository root.
//!
//! # Layers
//!
//! Each module imports only from the layers below it (`cargo xtask layers` checks every
//! `crate::` path against this table, and CI runs it):
//!
//! ```text
//!   9  time | net                      sleep, after, tick | sockets on the poller
//!   8  channel | sync | future         channels, select | locks | block_on: all over sched::park
//!   7  offload                         calls lent to a thread pool
//!   6  sched | raw                     runtime, workers, tasks, joins, taking dumps | hand-driven coroutines
//!   5  dump                            what a coroutine dump holds, its text, symbolisation
//!   4  grow                            the mover, fault path, frame walk, quarantine, compaction
//!   3  coroutine                       contexts, resume/suspend, the pin count
//!   2  stack                           arenas, mappings, pools, system stacks, the running stack slot
//!   1  stats | fatal | env | ffi_mode  counters | abort messages | PAGURUS_* switches | the foreign-call Mode
//!   0  arch | loom                     context switch, registers, frame layout, page size |
//!                                      atomics, Arc, Mutex: std's, or loom's under cfg(loom)
//! ```
//!
//! Modules on one row do not import each other. What a lower layer needs from a higher one is
//! handed down at run time, never imported: a context publishes its stack slot to `stack`
//! (`stack::running_word`), a worker registers its stack pool with `stack` and its runtime's
//! foreign-call mode with `ffi_mode`, and the scheduler writes the coroutine's id into its
//! context. `lib.rs` itself (this file) is the top: it only declares and re-exports. Test code
//! (`#[cfg(test)]` modules) may reach upward to drive what it tests.

// Under `cfg(loom)` (`RUSTFLAGS="--cfg loom"`) the crate's tests are only the lock-free protocol
// cores and their loom models (see `loom.rs`), and the crate itself is empty otherwise:
// assembly, signal handlers and mappings cannot run under loom, and nothing of the protocols
// depends on them.
#[cfg(not(loom))]
mod arch;
#[cfg(not(loom))]
pub mod channel;
#[cfg(not(loom))]
mod coroutine;
#[cfg(not(loom))]
mod dump;
#[cfg(not(loom))]
mod env;
#[cfg(not(loom))]
mod fatal;
#[cfg(not(loom))]
pub mod ffi_mode;
#[cfg(not(loom))]
pub mod future;
#[cfg(not(loom))]
mod grow;
#[cfg(any(not(loom), test))]
mod loom;
#[cfg(not(loom))]
pub mod net;
#[cfg(not(loom))]
pub mod offload;
#[cfg(not(loom))]
pub mod raw;
#[cfg(not(loom))]
mod sched;
#[cfg(not(loom))]
pub mod stack;
#[cfg(not(loom))]
mod stats;
#[cfg(not(loom))]
pub mod sync;
#[cfg(not(loom))]
pub mod time;

#[cfg(not(loom))]
pub use coroutine::Cancelled;
#[cfg(not(loom))]
pub use dump::{CoroutineSnapshot, CoroutineState, Dump, Frame, SpawnSite, StackInfo, WaitReason};
#[cfg(not(loom))]
pub use sched::{Builder, JoinHandle, MAX_WORKERS, Runtime, dump, run, spawn, yield_now};
#[cfg(not(loom))]
pub use stats::{StackGuards, Stats, stats};

/// Under loom: the task's run and join words, and the worker's sleep/wake handshake.
#[cfg(all(loom, test))]
mod sched {
    mod idle;
    mod state;
}

/// Under loom: the channel waiter and the queue flavour's wait queues.
#[cfg(all(loom, test))]
pub mod channel {
    mod error;
    mod queue;
    mod waiter;

    pub use error::{
        RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
    };
}
