//! Signals during growth, with a handler that walks the stack: the same 1 kHz `SIGPROF` load
//! as `signals_sigprof.rs`, with a handler that unwinds the interrupted stack as a sampling
//! profiler does, so the walk reads coroutine stacks at any moment: mid-switch, at the bottom of
//! a 4 KiB stack, and while the growth handler is copying the stack the walk is reading.
//!
//! Which walk: `backtrace::trace_unsynchronized`, the DWARF unwinder (libgcc's
//! `_Unwind_Backtrace`) that sampling profilers for Rust call from their signal handler. A walk
//! by frame pointers would stop at the first frame without one (Rust omits them by default), and
//! reading raw words from the interrupted stack pointer would need the architecture's ucontext
//! layout here. The unwinder is async-signal-safe in practice on this platform (glibc 2.35+
//! finds unwind tables with the lock-free `_dl_find_object`, and the unwinder is warmed up
//! before the timer starts); it allocates nothing. The walk is capped at 128 frames, as
//! profilers cap it, so a signal costs a bounded time.

#[path = "signals/workload.rs"]
mod workload;

use std::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);
/// Walks that reached the cap: samples taken deep in a recursion.
static DEEP_WALKS: AtomicUsize = AtomicUsize::new(0);
/// The most frames one walk saw.
static MAX_FRAMES: AtomicUsize = AtomicUsize::new(0);
/// Walks whose last frame has a null instruction pointer: the end marker of a coroutine stack
/// (its trampoline's return address), so walks that went all the way through a coroutine.
static ENDED_AT_NULL: AtomicUsize = AtomicUsize::new(0);
/// Frames found after a frame with a null instruction pointer: a walk that went off the rails.
static PAST_NULL: AtomicUsize = AtomicUsize::new(0);

const MAX_DEPTH: usize = 128;

/// Walks the stack the signal interrupted (through the kernel's signal frame, which the
/// unwinder recognises), counting frames up to [`MAX_DEPTH`].
#[inline(never)]
fn walk() -> usize {
    let mut frames = 0;
    let mut after_null = false;
    // SAFETY: no other walk runs on this thread meanwhile (a nested SIGPROF is blocked while
    // this handler runs: no SA_NODEFER), which is what `trace_unsynchronized` asks.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            if after_null {
                PAST_NULL.fetch_add(1, SeqCst);
            }
            after_null = frame.ip().is_null();
            frames += 1;
            frames < MAX_DEPTH
        })
    };
    if after_null {
        ENDED_AT_NULL.fetch_add(1, SeqCst);
    }
    frames
}

extern "C" fn on_sigprof(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut c_void) {
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    SIGNALS.fetch_add(1, SeqCst);
    let frames = walk();
    MAX_FRAMES.fetch_max(frames, SeqCst);
    if frames >= MAX_DEPTH {
        DEEP_WALKS.fetch_add(1, SeqCst);
    }
    // SAFETY: as above; restoring the interrupted code's errno.
    unsafe { *libc::__errno_location() = errno };
}

#[test]
fn sigprof_handlers_that_walk_the_stack_while_coroutines_grow() {
    // Warm the unwinder up (its one-time set-up) outside any signal handler.
    assert!(walk() > 1);
    workload::install_sigprof(on_sigprof);
    let (rounds, grew) = workload::run_until_sampled(&SIGNALS, 1000, 500);
    let signals = SIGNALS.load(SeqCst);
    let deep = DEEP_WALKS.load(SeqCst);
    let through = ENDED_AT_NULL.load(SeqCst);
    eprintln!(
        "{signals} SIGPROF stack walks over {rounds} rounds of {} coroutines ({grew} grew); \
         {deep} reached {MAX_DEPTH} frames, {through} went through a whole coroutine stack",
        workload::COROUTINES
    );
    assert!(
        signals >= 1000,
        "only {signals} SIGPROF signals in {rounds} rounds"
    );
    assert_eq!(
        grew,
        rounds * workload::COROUTINES as usize,
        "every coroutine grew"
    );
    // The walks went through the signal frame into the coroutines' deep recursions.
    assert_eq!(MAX_FRAMES.load(SeqCst), MAX_DEPTH);
    assert!(deep >= 10, "only {deep} of {signals} walks were deep");
    assert!(
        through >= 10,
        "only {through} of {signals} walks ended at a coroutine's entry"
    );
    assert_eq!(
        PAST_NULL.load(SeqCst),
        0,
        "walks went on past the end of a stack"
    );
}
