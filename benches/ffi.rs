//! Foreign-call costs: one call of the C fixture `pf_add` (`a + b`, the cheapest call there is)
//! from inside a coroutine, per call, in every mode, against a plain call as the baseline.
//!
//! - `direct_rust_to_c`: a plain `unsafe extern "C"` call, no wrapper, no mode (the baseline).
//! - `mode_switch`, `mode_direct`, `mode_reserve`, `mode_offload`: the same call through a
//!   `pagurus::ffi::foreign!` wrapper, in a runtime whose default mode is that mode (what users
//!   get when they declare C functions with `foreign!`). `mode_reserve` reserves 64 KiB with the
//!   headroom already there (the coroutine called `stack::ensure` first): the check alone.
//! - `call_with_switch`, `call_with_direct`, `call_with_reserve`: the plain declaration called
//!   through `pagurus::ffi::call_with(mode, ..)`, which names its mode: the difference from the
//!   `mode_*` figures is what looking up the runtime's default mode costs.
//! - `callback_switch`, `callback_direct`: `pf_callback(cb, x)`, a C function that calls back into
//!   a Rust `extern "C" fn` and returns: one Rust -> C -> Rust -> C -> Rust round trip.
//!
//! Every benchmark runs in a coroutine of a one-worker runtime, which takes the time itself
//! around its loop (`iter_custom`), so that neither spawning nor joining is on the clock.
//! `cargo xtask bench` reports these with the Go cgo figures and callgrind instruction counts.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use pagurus::ffi::{self, Mode};
use pagurus::{Runtime, stack};
// The C fixtures (crates/ffi-fixtures/c/fixtures.c), declared through `foreign!` and plain.
use pagurus_ffi_fixtures::double_it;
use pagurus_ffi_fixtures::ffi::{pf_add, pf_callback};
use pagurus_ffi_fixtures::plain;

/// What `ffi/mode_reserve` reserves per call.
const RESERVE: usize = 64 * 1024;

/// A timed loop run inside a coroutine: takes the iteration count, returns the time it took.
type Body = fn(u64) -> Duration;

/// A one-worker runtime whose foreign calls default to `mode`.
fn runtime(mode: Mode) -> Runtime {
    Runtime::builder()
        .workers(1)
        .ffi_mode(mode)
        .build()
        .expect("start a runtime")
}

/// Runs `body(iters)` inside a spawned coroutine of `rt` and returns the time it measured.
fn in_coroutine(rt: &Runtime, iters: u64, body: Body) -> Duration {
    rt.block_on(|| {
        pagurus::spawn(move || body(iters))
            .join()
            .expect("bench body panicked")
    })
}

/// `iters` calls of the plain `pf_add` through `ffi::call_with(mode, ..)`; inlined into callers
/// that pass a constant mode, as users do.
#[inline(always)]
fn call_with_loop(iters: u64, mode: Mode) -> Duration {
    stack::ensure(2 * RESERVE);
    let start = Instant::now();
    for i in 0..iters {
        let (a, b) = (black_box(i as i64), black_box(1));
        // SAFETY: pf_add has no preconditions.
        black_box(ffi::call_with(mode, || unsafe { plain::pf_add(a, b) }));
    }
    start.elapsed()
}

/// `iters` calls of `pf_add` through its `foreign!` wrapper, in the runtime's default mode.
fn add_loop(iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        // SAFETY: pf_add has no preconditions.
        black_box(unsafe { pf_add(black_box(i as i64), black_box(1)) });
    }
    start.elapsed()
}

/// `iters` round trips through `pf_callback`, in the runtime's default mode.
fn callback_loop(iters: u64) -> Duration {
    let start = Instant::now();
    for i in 0..iters {
        // SAFETY: pf_callback calls the function it is given, which is safe to call anywhere.
        black_box(unsafe { pf_callback(black_box(double_it), black_box(i as i64)) });
    }
    start.elapsed()
}

fn calls(c: &mut Criterion) {
    let mut group = c.benchmark_group("ffi");

    {
        let rt = runtime(Mode::Direct);
        group.bench_function("direct_rust_to_c", |b| {
            b.iter_custom(|iters| {
                in_coroutine(&rt, iters, |iters| {
                    let start = Instant::now();
                    for i in 0..iters {
                        // SAFETY: pf_add has no preconditions.
                        black_box(unsafe { plain::pf_add(black_box(i as i64), black_box(1)) });
                    }
                    start.elapsed()
                })
            })
        });
    }

    for (name, mode) in [("mode_switch", Mode::Switch), ("mode_direct", Mode::Direct)] {
        let rt = runtime(mode);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| in_coroutine(&rt, iters, add_loop))
        });
    }

    {
        let rt = runtime(Mode::Reserve { bytes: RESERVE });
        group.bench_function("mode_reserve", |b| {
            b.iter_custom(|iters| {
                in_coroutine(&rt, iters, |iters| {
                    // Make the headroom first (with some margin for the loop's own frame), so
                    // that the timed calls only check it.
                    stack::ensure(2 * RESERVE);
                    let before = stack::current().expect("on a coroutine stack").growths;
                    let elapsed = add_loop(iters);
                    let after = stack::current().expect("on a coroutine stack").growths;
                    assert_eq!(before, after, "mode_reserve grew the stack while timed");
                    elapsed
                })
            })
        });
    }

    {
        // Each call hands pf_add to a pool thread and parks until it is done: microseconds.
        let rt = runtime(Mode::Offload);
        group.bench_function("mode_offload", |b| {
            b.iter_custom(|iters| in_coroutine(&rt, iters, add_loop))
        });
    }

    {
        // call_with names its mode, so the runtime's own default does not matter here.
        let rt = runtime(Mode::Switch);
        let bodies: [(&str, Body); 3] = [
            ("call_with_switch", |n| call_with_loop(n, Mode::Switch)),
            ("call_with_direct", |n| call_with_loop(n, Mode::Direct)),
            ("call_with_reserve", |n| {
                call_with_loop(n, Mode::Reserve { bytes: RESERVE })
            }),
        ];
        for (name, body) in bodies {
            group.bench_function(name, |b| {
                b.iter_custom(|iters| in_coroutine(&rt, iters, body))
            });
        }
    }

    for (name, mode) in [
        ("callback_switch", Mode::Switch),
        ("callback_direct", Mode::Direct),
    ] {
        let rt = runtime(mode);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| in_coroutine(&rt, iters, callback_loop))
        });
    }

    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
