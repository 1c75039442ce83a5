//! The pagurus runtime: stackful coroutines on small contiguous stacks, scheduled on a few OS
//! threads.
//!
//! Most users depend on the `pagurus` facade crate, which re-exports this API. The map of the
//! system (stack layout, context switch, worker model and its soundness argument, measured
//! costs) is `design.md` at the repository root.
//!
//! Layout: `arch` (the context switch, one file per target), `stack` (mappings and pools),
//! `coroutine` (contexts, resume/suspend, raw coroutines), `sched` (runtime, workers, tasks,
//! parking, timers, the netpoller), `time`, `net` (sockets over the netpoller), `stats`.

mod arch;
mod blocking;
mod coroutine;
mod foreign;
mod grow;
pub mod net;
mod sched;
pub mod stack;
mod stats;
pub mod time;

/// The foreign-call mode setting (the calls themselves are in `pagurus::ffi`).
pub mod ffi_mode {
    pub use crate::foreign::{Mode, current, set_current};
}

/// Calls that block, run on a pool of threads while the calling coroutine parks.
pub mod offload {
    pub use crate::blocking::run;
}

/// Coroutines without a scheduler (see [`raw::Coroutine`]).
pub mod raw {
    pub use crate::coroutine::raw::{Coroutine, Suspender};
}

pub use coroutine::Cancelled;
pub use sched::{Builder, JoinHandle, Runtime, run, spawn, yield_now};
pub use stats::{Stats, stats};

/// One-time process setup, done before the first coroutine stack exists (every stack mapping
/// calls it; after the first, it is one atomic load).
fn prepare_process() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        grow::fault::install();
        #[cfg(panic = "unwind")]
        warm_unwinder();
    });
}

/// Unwinds once through a frame with a destructor, on the caller's (thread) stack.
///
/// The first unwind in a process makes the dynamic linker resolve libgcc's lazily bound symbols
/// (`_Unwind_Find_FDE`, `_Unwind_Resume`, ...), and the resolver saves the whole extended
/// register state on the stack: over 2 KiB, more than a 4 KiB coroutine has left once a panic is
/// under way. Doing it here, where stacks are large, binds them for every later unwind. (Built
/// with `panic = "abort"` nothing unwinds, and unwinding here would abort.)
#[cfg(panic = "unwind")]
fn warm_unwinder() {
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            std::hint::black_box(self);
        }
    }
    #[inline(never)]
    fn unwind_through_cleanup() {
        let _cleanup = Cleanup;
        // resume_unwind skips the panic hook: nothing is printed.
        std::panic::resume_unwind(Box::new(()));
    }
    let _ = std::panic::catch_unwind(unwind_through_cleanup);
}
