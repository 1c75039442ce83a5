//! The pagurus runtime: stackful coroutines on small contiguous stacks, scheduled on a few OS
//! threads.
//!
//! Most users depend on the `pagurus` facade crate, which re-exports this API. The map of the
//! system (stack layout, context switch, worker model and its soundness argument, measured
//! costs) is `design.md` at the repository root.
//!
//! Layout: `arch` (the context switch, one file per target), `stack` (mappings and pools),
//! `coroutine` (contexts, resume/suspend, raw coroutines), `sched` (runtime, workers, tasks),
//! `stats`.

mod arch;
mod coroutine;
mod fault;
mod sched;
pub mod stack;
mod stats;

/// Coroutines without a scheduler (see [`raw::Coroutine`]).
pub mod raw {
    pub use crate::coroutine::raw::{Coroutine, Suspender};
}

pub use coroutine::Cancelled;
pub use sched::{Builder, JoinHandle, Runtime, run, spawn, yield_now};
pub use stats::{Stats, stats};
