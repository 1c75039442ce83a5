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
    Builder, Cancelled, JoinHandle, Runtime, Stats, net, raw, run, spawn, stack, stats, time,
    yield_now,
};

/// Foreign calls (see the `pagurus-ffi` crate).
pub use pagurus_ffi as ffi;
