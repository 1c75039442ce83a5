//! How large a stack growth by fault makes: the next power of two above what the faulting code
//! needs, at least double the old size — not more because of what the runtime's own code happens
//! to hold in registers when the fault hits.
//!
//! The limit case runs in a child process (this test binary re-run with `PAGURUS_SIZING_CASE`
//! set), because exceeding `max_stack_size` aborts the process.

mod common;

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::process::Output;

use pagurus::stack;

const CASE: &str = "PAGURUS_SIZING_CASE";

fn in_child(test: &str) -> Option<Output> {
    common::in_child(CASE, "1", test)
}

/// One change of stack size seen by the recursion: `(depth, used, size, growths)` right after it.
type Step = (u32, usize, usize, u64);

/// What the recursion saw.
#[derive(Debug, Default)]
struct Seen {
    /// Every change of size.
    steps: Vec<Step>,
    /// Every `StackInfo` with `used > size` (impossible for a correct report).
    inconsistent: Vec<Step>,
    /// The deepest report.
    last: Option<Step>,
}

/// Small frames (`P` words of padding each), each asking `stack::current()` for its stack (as a
/// program printing its stack use would), until `target` bytes are in use. Records every size
/// change.
#[inline(never)]
fn recurse_asking<const P: usize>(depth: u32, target: usize, seen: &mut Seen) -> u64 {
    let pad = black_box([depth as u64; P]);
    let info = stack::current().unwrap();
    let step = (depth, info.used, info.size, info.growths);
    if seen.steps.last().is_none_or(|s| s.2 != info.size) {
        seen.steps.push(step);
    }
    if info.used > info.size {
        seen.inconsistent.push(step);
    }
    seen.last = Some(step);
    if info.used >= target || depth > 1_000_000 {
        return pad[0];
    }
    recurse_asking::<P>(depth + 1, target, seen) + black_box(pad)[P - 1]
}

/// Runs the recursion in a fresh coroutine of `rt` and checks that what `stack::current()`
/// reported along the way was consistent.
fn run_asking<const P: usize>(rt: &pagurus::Runtime, target: usize) -> Seen {
    let seen = rt.block_on(|| {
        pagurus::spawn(move || {
            let mut seen = Seen::default();
            seen.steps.reserve(64);
            seen.inconsistent.reserve(64);
            recurse_asking::<P>(0, target, &mut seen);
            seen
        })
        .join()
        .unwrap()
    });
    assert!(
        seen.inconsistent.is_empty(),
        "{P}-word frames: stack::current() reported more bytes used than the stack has, (depth, \
         used, size, growths): {:?}; size changes: {:?}",
        seen.inconsistent,
        seen.steps
    );
    let last = seen.last.unwrap();
    assert!(
        last.1 >= target && last.1 <= last.2,
        "{P}-word frames: {seen:?}"
    );
    seen
}

/// Runs the recursion with frames of many sizes, so that the faults land on many different
/// instructions (of the recursion, and of `stack::current()` itself); returns `(P, seen)` each.
fn sweep(rt: &pagurus::Runtime, target: usize) -> Vec<(usize, Seen)> {
    macro_rules! sizes {
        ($($p:literal)*) => { vec![$(($p, run_asking::<$p>(rt, target))),*] };
    }
    sizes!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 96 128)
}

/// Every growth of a recursion of small frames makes the stack at most twice as large (or the
/// next power of two above the old size plus a few pages, from a very small stack).
#[test]
fn fault_growth_of_small_frames_at_most_doubles() {
    let rt = common::default_stack_runtime(1);
    for (p, seen) in sweep(&rt, 512 << 10) {
        let steps = seen.steps;
        for pair in steps.windows(2) {
            let (old, new) = (pair[0].2, pair[1].2);
            let bound = (2 * old).max((old + (12 << 10)).next_power_of_two());
            assert!(
                new <= bound,
                "{p}-word frames: a stack of {old} bytes grew to {new} (at most {bound} \
                 expected); size changes (depth, used, size, growths): {steps:?}"
            );
        }
        let last = steps.last().unwrap();
        assert!(last.2 <= 1 << 20, "{p}-word frames, 512 KiB: {steps:?}");
    }
}

/// The same recursion under a 1 MiB `max_stack_size`: it needs 512 KiB and must finish.
#[test]
fn stack_current_in_every_frame_fits_a_1_mib_limit() {
    let Some(out) = in_child("stack_current_in_every_frame_fits_a_1_mib_limit") else {
        let rt = pagurus::Runtime::builder()
            .workers(1)
            .max_stack_size(1 << 20)
            .build()
            .unwrap();
        let seen = sweep(&rt, 512 << 10);
        println!("CHILD DONE {}", seen.len());
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("CHILD DONE"),
        "the child failed: status {:?} (signal {:?})\nstderr:\n{stderr}",
        out.status,
        out.status.signal()
    );
}
