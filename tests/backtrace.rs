//! Backtraces taken on a coroutine stack end at the coroutine's trampoline.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::hint::black_box;

use pagurus::{Runtime, spawn};

#[inline(never)]
fn pagurus_test_frame_outer(depth: u32) -> Backtrace {
    let bt = pagurus_test_frame_middle(black_box(depth + 1));
    black_box(&bt);
    bt
}

#[inline(never)]
fn pagurus_test_frame_middle(depth: u32) -> Backtrace {
    let bt = pagurus_test_frame_inner(black_box(depth + 1));
    black_box(&bt);
    bt
}

#[inline(never)]
fn pagurus_test_frame_inner(depth: u32) -> Backtrace {
    black_box(depth);
    let bt = Backtrace::force_capture();
    black_box(&bt);
    bt
}

/// One frame of a `{:#}`-formatted std backtrace.
struct Frame {
    address: String,
    name: String,
}

/// The frames of a `{:#}`-formatted std backtrace, innermost first. Frame lines look like
/// `  12:     0x55d0c0ffee00 - some::function::h0123456789abcdef`, each followed by optional
/// `at file:line` lines.
fn frames(formatted: &str) -> Vec<Frame> {
    formatted
        .lines()
        .filter_map(|line| {
            let (index, rest) = line.trim_start().split_once(": ")?;
            if index.is_empty() || !index.chars().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let (address, name) = rest.trim().split_once(" - ")?;
            Some(Frame {
                address: address.trim().to_owned(),
                name: name.trim().to_owned(),
            })
        })
        .collect()
}

#[test]
fn backtrace_ends_at_coroutine_boundary() {
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(1 << 20)
        .build()
        .unwrap();
    let bt = rt.block_on(|| {
        spawn(|| pagurus_test_frame_outer(black_box(0)))
            .join()
            .unwrap()
    });
    assert_eq!(bt.status(), BacktraceStatus::Captured);
    let formatted = format!("{bt:#}");
    let mut frames = frames(&formatted);
    assert!(
        frames.len() >= 4,
        "too few frames parsed from:\n{formatted}"
    );
    // libgcc's unwinder reports the end of the stack as one last pseudo-frame at address 0
    // (plain threads show it after `clone3` too); it is not a caller.
    if frames.last().is_some_and(|f| f.address == "0x0") {
        frames.pop();
    }
    assert!(
        frames.iter().all(|f| f.address != "0x0"),
        "a null frame before the end:\n{formatted}"
    );
    let names: Vec<&str> = frames.iter().map(|f| f.name.as_str()).collect();

    // Our helpers are on the stack (at least the one that called force_capture; #[inline(never)]
    // keeps all three in both profiles).
    for helper in [
        "pagurus_test_frame_inner",
        "pagurus_test_frame_middle",
        "pagurus_test_frame_outer",
    ] {
        assert!(
            names.iter().any(|n| n.contains(helper)),
            "{helper} missing from:\n{formatted}"
        );
    }
    let inner = names
        .iter()
        .position(|n| n.contains("pagurus_test_frame_inner"))
        .unwrap();
    let outer = names
        .iter()
        .position(|n| n.contains("pagurus_test_frame_outer"))
        .unwrap();
    assert!(inner < outer, "frames out of order:\n{formatted}");

    // The outermost frame is the trampoline every coroutine stack starts in, and nothing of the
    // worker thread's own stack follows it.
    let last = names.last().unwrap();
    assert!(
        last.contains("pagurus_runtime::arch::x86_64::trampoline"),
        "outermost frame is {last:?}, not the trampoline:\n{formatted}"
    );
    assert_eq!(
        names.iter().filter(|n| n.contains("trampoline")).count(),
        1,
        "exactly one trampoline frame:\n{formatted}"
    );
    for foreign in [
        "run_worker",
        "next_task",
        "run_task",
        "std::thread",
        "std::sys",
        "thread_start",
        "start_thread",
        "clone3",
        "__clone",
        "lang_start",
    ] {
        assert!(
            !names.iter().any(|n| n.contains(foreign)),
            "scheduler-side frame {foreign:?} leaked into the coroutine backtrace:\n{formatted}"
        );
    }
}
