//! What the foreign-call mode changes, visibly: the same C calls made from a 4 KiB coroutine in
//! whatever mode you pick, with where each ran, what it cost, and what it did to the stack.
//!
//! ```sh
//! cargo run --release --example ffi_modes                        # the default: switch
//! PAGURUS_FFI_MODE=direct cargo run --release --example ffi_modes
//! cargo run --release --example ffi_modes -- --mode reserve:256k
//! cargo run --release --example ffi_modes -- --mode offload
//! cargo run --release --example ffi_modes -- --all               # every mode, one after another
//! ```
//!
//! Two calls, both declared with `pagurus::ffi::foreign!` so that the mode applies to them:
//!
//! - libc's `strlen`, a tiny function: its cost per call is the cost of the mode itself;
//! - `pf_unprobed_64k`, a C function (in `crates/ffi-fixtures/c/fixtures.c`) with a 64 KiB local
//!   array and no stack probes, declared `where stack = 80 * 1024`: the coroutine's 4 KiB stack
//!   cannot hold it. `switch` runs it on the thread's system stack and `offload` on a pool
//!   thread, so the coroutine's stack stays small; `direct` runs it on the coroutine stack, which
//!   grows when the frame faults in its guard (the walk goes through the C frame's `.eh_frame`);
//!   `reserve` grows the stack before the call to the larger of its size and the declared need.

use std::ffi::{CStr, c_char};
use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use pagurus::ffi::{self, Mode};
use pagurus::{Runtime, stack};
use pagurus_ffi_fixtures::ffi::pf_unprobed_64k;
use pagurus_ffi_fixtures::unprobed_64k_expected;

pagurus::ffi::foreign! {
    extern "C" {
        fn strlen(s: *const c_char) -> usize;
    }
}

/// Calls timed for the per-call cost.
const CALLS: u32 = 200_000;
const ALL: [&str; 4] = ["switch", "direct", "reserve:256k", "offload"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let modes: Vec<Option<Mode>> = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => vec![None],
        ["--all"] => ALL
            .iter()
            .map(|m| Some(m.parse().expect("a valid mode")))
            .collect(),
        ["--mode", m] => match m.parse::<Mode>() {
            Ok(mode) => vec![Some(mode)],
            Err(e) => {
                eprintln!("ffi_modes: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => {
            eprintln!("usage: ffi_modes [--mode switch|direct|reserve:<size>|offload | --all]");
            return ExitCode::FAILURE;
        }
    };
    for mode in modes {
        let mut builder = Runtime::builder().workers(1).initial_stack_size(4096);
        if let Some(mode) = mode {
            builder = builder.ffi_mode(mode);
        }
        // Without --mode, the builder takes PAGURUS_FFI_MODE (and rejects a bad value).
        let rt = match builder.build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("ffi_modes: cannot build the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        if !rt.block_on(|| pagurus::spawn(report).join().expect("the report panicked")) {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Makes the calls from a fresh coroutine and prints what happened; `false` on a wrong result.
fn report() -> bool {
    let mode = ffi::default_mode();
    let where_ = match mode {
        Mode::Switch => "on this worker thread's system stack",
        Mode::Direct => "on the coroutine's own stack",
        Mode::Reserve { .. } => "on the coroutine's own stack, after reserving room",
        Mode::Offload => "on a blocking-call pool thread, the coroutine parked meanwhile",
    };
    println!("mode {mode}: calls run {where_}");

    let text = c"pagurus, the hermit crab";
    let start = Instant::now();
    let mut total = 0;
    for _ in 0..CALLS {
        // SAFETY: `text` is a NUL-terminated string that outlives the call.
        total += unsafe { strlen(black_box(text.as_ptr())) };
    }
    let per_call = start.elapsed() / CALLS;
    let expected = text.to_bytes().len();
    let stack_size = stack::current().expect("a coroutine has a stack").size;
    println!(
        "  strlen({:?}) = {}: {per_call:?} per call; coroutine stack now {stack_size} bytes \
         (it started with 4096)",
        text_of(text),
        total / CALLS as usize
    );
    if total != expected * CALLS as usize {
        eprintln!("  wrong: strlen returned {} in all", total);
        return false;
    }

    let before = stack::current().expect("a coroutine has a stack");
    let start = Instant::now();
    // SAFETY: the fixture only computes on its own local array.
    let got = unsafe { pf_unprobed_64k(7) };
    let took = start.elapsed();
    let after = stack::current().expect("a coroutine has a stack");
    let right = got == unprobed_64k_expected(7);
    println!(
        "  a 64 KiB C frame: {} in {took:?}; coroutine stack {} -> {} bytes ({} growth{})",
        if right {
            "right answer"
        } else {
            "WRONG ANSWER"
        },
        before.size,
        after.size,
        after.growths - before.growths,
        if after.growths - before.growths == 1 {
            ""
        } else {
            "s"
        },
    );
    right
}

fn text_of(s: &CStr) -> &str {
    s.to_str().expect("ASCII")
}
