//! # pagurus
//!
//! Stackful coroutines with Go-style copying stacks for Rust. A hermit crab moves into a bigger
//! shell as it grows; a pagurus coroutine starts on one 4 KiB page and is meant to move to a
//! larger stack when it needs one.
//!
//! ```
//! let sum = pagurus::run(|| {
//!     let handles: Vec<_> = (0..100u64).map(|i| pagurus::spawn(move || i)).collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
//! });
//! assert_eq!(sum, 4950);
//! ```
//!
//! See `README.md` for a quick start and `design.md` for how it works.

pub use pagurus_runtime::{
    Builder, Cancelled, CoroutineSnapshot, CoroutineState, Dump, Frame, JoinHandle, MAX_WORKERS,
    Runtime, SpawnSite, StackGuards, StackInfo, Stats, WaitReason, channel, dump, future, net, raw,
    run, select, spawn, stack, stats, sync, time, yield_now,
};

/// Calls that block, run on a pool of threads while the calling coroutine parks (what
/// `pagurus::ffi`'s `Offload` mode uses). The call may borrow from the coroutine's stack: the
/// stack is pinned (it cannot move) until the call returns.
///
/// ```
/// let rt = pagurus::Runtime::builder().workers(1).build().unwrap();
/// let total = rt.block_on(|| {
///     let mut buf = [1u32; 8]; // on the coroutine's stack, lent to the pool thread
///     pagurus::offload::run(|| {
///         std::thread::sleep(std::time::Duration::from_millis(1));
///         buf.iter_mut().for_each(|x| *x *= 3);
///     });
///     buf.iter().sum::<u32>()
/// });
/// assert_eq!(total, 24);
/// ```
pub mod offload {
    pub use pagurus_runtime::offload::run;
}

/// Foreign calls (see the `pagurus-ffi` crate).
pub use pagurus_ffi as ffi;
