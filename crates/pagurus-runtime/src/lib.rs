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
//!   4  grow                            the mover, fault path, frame walk, quarantine
//!   3  coroutine                       contexts, resume/suspend, the pin count
//!   2  stack                           mappings, pools, system stacks, the running stack slot
//!   1  stats | fatal | ffi_mode        counters | abort messages | the foreign-call Mode
//!   0  arch                            context switch, registers, frame layout, page size
//! ```
//!
//! Modules on one row do not import each other. What a lower layer needs from a higher one is
//! handed down at run time, never imported: a context publishes its stack slot to `stack`
//! (`stack::running_word`), a worker registers its stack pool with `stack` and its runtime's
//! foreign-call mode with `ffi_mode`, and the scheduler writes the coroutine's id into its
//! context. `lib.rs` itself (this file) is the top: it only declares and re-exports. Test code
//! (`#[cfg(test)]` modules) may reach upward to drive what it tests.

mod arch;
pub mod channel;
mod coroutine;
mod dump;
mod fatal;
pub mod ffi_mode;
pub mod future;
mod grow;
pub mod net;
pub mod offload;
pub mod raw;
mod sched;
pub mod stack;
mod stats;
pub mod sync;
pub mod time;

pub use coroutine::Cancelled;
pub use dump::{CoroutineSnapshot, CoroutineState, Dump, Frame, SpawnSite, StackInfo, WaitReason};
pub use sched::{Builder, JoinHandle, MAX_WORKERS, Runtime, dump, run, spawn, yield_now};
pub use stats::{Stats, stats};
