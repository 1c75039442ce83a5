//! Shared by the signal tests (`signals_*.rs`, each its own process): a 1 kHz `SIGPROF` timer
//! with a handler installed as a sampling profiler installs it (`SA_ONSTACK | SA_SIGINFO |
//! SA_RESTART`), and rounds of 1,000 coroutines that grow from 4 KiB to hundreds of KiB by
//! deep recursion, yielding inside it, each checking every frame.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use pagurus::stack;
use pagurus::{Runtime, spawn, yield_now};

pub const COROUTINES: u64 = 1000;
/// Words per frame: 256 bytes of array in every frame.
const FRAME_WORDS: usize = 32;
const YIELD_EVERY: u64 = 64;

/// From 50 to 2,049 frames: 13 KiB to over 512 KiB of stack.
fn depth_of(i: u64) -> u64 {
    50 + (i * 37) % 2000
}

fn word(i: u64, d: u64, k: usize) -> u64 {
    (i << 40) ^ (d << 12) ^ (k as u64 * 0x9e37_79b9) ^ 0x5a
}

#[inline(never)]
fn recurse(i: u64, d: u64) -> u64 {
    let mut frame = [0u64; FRAME_WORDS];
    for (k, w) in frame.iter_mut().enumerate() {
        *w = word(i, d, k);
    }
    black_box(&mut frame);
    if d % YIELD_EVERY == 7 {
        yield_now();
    }
    let below = if d == 0 { 0 } else { recurse(i, d - 1) };
    black_box(&mut frame);
    for (k, &w) in frame.iter().enumerate() {
        assert_eq!(w, word(i, d, k), "coroutine {i}, frame {d}, word {k}");
    }
    frame.iter().fold(below, |s, &w| s.wrapping_add(w))
}

fn expected_sum(i: u64) -> u64 {
    (0..=depth_of(i))
        .flat_map(|d| (0..FRAME_WORDS).map(move |k| word(i, d, k)))
        .fold(0, u64::wrapping_add)
}

/// One round: 1,000 coroutines recurse and return their sums and final stack sizes; every sum
/// and every size is checked. Returns how many coroutines grew.
pub fn round(rt: &Runtime) -> usize {
    let results: Vec<(u64, usize)> = rt.block_on(|| {
        let handles: Vec<_> = (0..COROUTINES)
            .map(|i| {
                spawn(move || {
                    let sum = recurse(i, depth_of(i));
                    (sum, stack::current().unwrap().size)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.len() as u64, COROUTINES);
    for (i, &(sum, size)) in results.iter().enumerate() {
        let i = i as u64;
        assert_eq!(sum, expected_sum(i), "coroutine {i}");
        let need = (depth_of(i) as usize + 1) * FRAME_WORDS * 8;
        assert!(
            size >= need,
            "coroutine {i}: stack of {size} bytes, needs {need}"
        );
    }
    results.iter().filter(|r| r.1 > 4096).count()
}

/// Installs `handler` for `SIGPROF` as a sampling profiler does: on the alternate signal stack
/// (coroutine stacks are small; pagurus gives every thread that runs coroutines one), with
/// `siginfo`, restarting interrupted system calls.
pub fn install_sigprof(
    handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
) {
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the fields sigaction
    // reads are filled, and `handler` has the SA_SIGINFO signature.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_ONSTACK | libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGPROF, &action, std::ptr::null_mut()),
            0
        );
    }
}

/// Starts (`period_us` > 0) or stops (0) the process's profiling timer: `SIGPROF` every
/// `period_us` microseconds of CPU time the process uses.
pub fn profiling_timer(period_us: i64) {
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: period_us as libc::suseconds_t,
    };
    let timer = libc::itimerval {
        it_interval: tv,
        it_value: tv,
    };
    // SAFETY: setitimer reads `timer`; no old value is asked for.
    let rc = unsafe { libc::setitimer(libc::ITIMER_PROF, &timer, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "setitimer: {}", std::io::Error::last_os_error());
}

/// Runs rounds on a runtime with the timer at 1 kHz until `signals` has counted `target`
/// deliveries (a count, not a duration; at most `max_rounds`). Returns (rounds, coroutines that
/// grew).
pub fn run_until_sampled(
    signals: &AtomicUsize,
    target: usize,
    max_rounds: usize,
) -> (usize, usize) {
    let rt = Runtime::builder().workers(2).build().unwrap();
    profiling_timer(1000);
    let mut rounds = 0;
    let mut grew = 0;
    while rounds < max_rounds && (rounds == 0 || signals.load(SeqCst) < target) {
        grew += round(&rt);
        rounds += 1;
    }
    profiling_timer(0);
    drop(rt);
    (rounds, grew)
}
