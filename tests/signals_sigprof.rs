//! Signals during growth: a 1 kHz `SIGPROF` timer with a handler on the alternate signal stack
//! (`SA_ONSTACK`, as a sampling profiler installs it) while rounds of 1,000 coroutines grow from
//! 4 KiB to hundreds of KiB. The signals land anywhere: in coroutine code near the bottom of a
//! small stack, in a context switch, and in the middle of a move (the growth handler runs on the
//! same alternate stack and does not block `SIGPROF`, so the profiler's frame nests below it).
//! Every result is checked, and the handler must have run many times.
//!
//! The handler counts itself and uses some stack (1 KiB, as a handler that formats a sample
//! would), and keeps `errno`; it allocates nothing, takes no lock and prints nothing.

#[path = "signals/workload.rs"]
mod workload;

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

static SIGNALS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigprof(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    let mut scratch = [0u8; 1024];
    black_box(&mut scratch);
    scratch[SIGNALS.fetch_add(1, SeqCst) % 1024] = 1;
    black_box(&scratch);
    // SAFETY: as above; restoring the interrupted code's errno.
    unsafe { *libc::__errno_location() = errno };
}

#[test]
fn sigprof_at_1khz_while_a_thousand_coroutines_grow() {
    workload::install_sigprof(on_sigprof);
    let (rounds, grew) = workload::run_until_sampled(&SIGNALS, 1000, 500);
    let signals = SIGNALS.load(SeqCst);
    eprintln!(
        "{signals} SIGPROF signals handled over {rounds} rounds of {} coroutines ({grew} grew)",
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
}
