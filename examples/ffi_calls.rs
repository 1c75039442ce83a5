//! Makes `count` foreign calls of the C fixture `pf_add` in one mode, from a coroutine of a
//! one-worker runtime: the program `cargo xtask bench` runs under callgrind (twice, with two
//! counts) to get instructions per call, a figure that machine noise does not move.
//!
//! ```sh
//! cargo run --release --example ffi_calls -- switch 1000000
//! ```
//!
//! Modes: `baseline` (a plain `unsafe extern "C"` call), `switch`, `direct`, `reserve` (64 KiB,
//! with the headroom made beforehand), `offload` (calls through `pagurus::ffi::foreign!` wrappers
//! in a runtime of that mode), `call_with_switch`, `call_with_direct`, `call_with_reserve` (the
//! plain declaration called through `pagurus::ffi::call_with` with that mode), and
//! `callback_switch`, `callback_direct` (`pf_callback` calling back a Rust `extern "C" fn`). The
//! same calls as the `ffi/*` criterion benchmarks.

use std::hint::black_box;
use std::process::ExitCode;

use pagurus::ffi::{self, Mode};
use pagurus::{Runtime, stack};
// The C fixtures (crates/ffi-fixtures/c/fixtures.c), declared through `foreign!` and plain.
use pagurus_ffi_fixtures::double_it;
use pagurus_ffi_fixtures::ffi::{pf_add, pf_callback};
use pagurus_ffi_fixtures::plain;

const RESERVE: usize = 64 * 1024;
const MODES: &str = "baseline, switch, direct, reserve, offload, call_with_switch, \
                     call_with_direct, call_with_reserve, callback_switch, callback_direct";

#[derive(Clone, Copy)]
enum Kind {
    Baseline,
    Add,
    /// `pagurus::ffi::call_with(mode, ..)` around the plain declaration: the mode is named at
    /// the call, so no default-mode lookup.
    CallWith,
    Callback,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(name), Some(count)) = (args.first(), args.get(1)) else {
        eprintln!("usage: ffi_calls <mode> <count>\nmodes: {MODES}");
        return ExitCode::from(2);
    };
    let Ok(count) = count.parse::<u64>() else {
        eprintln!("ffi_calls: count must be a whole number, got {count:?}");
        return ExitCode::from(2);
    };
    let (kind, mode) = match name.as_str() {
        "baseline" => (Kind::Baseline, Mode::Direct),
        "switch" => (Kind::Add, Mode::Switch),
        "direct" => (Kind::Add, Mode::Direct),
        "reserve" => (Kind::Add, Mode::Reserve { bytes: RESERVE }),
        "offload" => (Kind::Add, Mode::Offload),
        "call_with_switch" => (Kind::CallWith, Mode::Switch),
        "call_with_direct" => (Kind::CallWith, Mode::Direct),
        "call_with_reserve" => (Kind::CallWith, Mode::Reserve { bytes: RESERVE }),
        "callback_switch" => (Kind::Callback, Mode::Switch),
        "callback_direct" => (Kind::Callback, Mode::Direct),
        other => {
            eprintln!("ffi_calls: unknown mode {other:?}; expected one of {MODES}");
            return ExitCode::from(2);
        }
    };
    let rt = match Runtime::builder().workers(1).ffi_mode(mode).build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("ffi_calls: cannot start a runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let sum = rt.block_on(|| {
        pagurus::spawn(move || {
            // The same setup whatever the count, so that it cancels out of the difference.
            stack::ensure(2 * RESERVE);
            let mut sum = 0i64;
            match kind {
                Kind::Baseline => {
                    for i in 0..count {
                        // SAFETY: pf_add has no preconditions.
                        let r = unsafe { plain::pf_add(black_box(i as i64), black_box(1)) };
                        sum = sum.wrapping_add(black_box(r));
                    }
                }
                Kind::Add => {
                    for i in 0..count {
                        // SAFETY: pf_add has no preconditions.
                        let r = unsafe { pf_add(black_box(i as i64), black_box(1)) };
                        sum = sum.wrapping_add(black_box(r));
                    }
                }
                Kind::CallWith => {
                    // One loop per mode, each with a constant mode, as users write it.
                    macro_rules! calls {
                        ($mode:expr) => {
                            for i in 0..count {
                                let (a, b) = (black_box(i as i64), black_box(1));
                                // SAFETY: pf_add has no preconditions.
                                let r = ffi::call_with($mode, || unsafe { plain::pf_add(a, b) });
                                sum = sum.wrapping_add(black_box(r));
                            }
                        };
                    }
                    match mode {
                        Mode::Switch => calls!(Mode::Switch),
                        Mode::Direct => calls!(Mode::Direct),
                        _ => calls!(Mode::Reserve { bytes: RESERVE }),
                    }
                }
                Kind::Callback => {
                    for i in 0..count {
                        // SAFETY: pf_callback calls the function it is given.
                        let r = unsafe { pf_callback(black_box(double_it), black_box(i as i64)) };
                        sum = sum.wrapping_add(black_box(r));
                    }
                }
            }
            sum
        })
        .join()
        .expect("the calling coroutine panicked")
    });
    // Every call's result went into the sum: check it, so that none was skipped.
    let n = count as i64;
    let expected = match kind {
        Kind::Baseline | Kind::Add | Kind::CallWith => n.wrapping_mul(n - 1) / 2 + n,
        Kind::Callback => n.wrapping_mul(n - 1) + n,
    };
    if sum != expected {
        eprintln!("ffi_calls: wrong sum {sum}, expected {expected}");
        return ExitCode::FAILURE;
    }
    println!("{name}: {count} calls, sum {sum}");
    ExitCode::SUCCESS
}
