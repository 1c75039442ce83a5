//! Faults inside coroutines, checked from a child process (each case re-runs this test binary
//! with `PAGURUS_FAULT_CASE` set, and the child does the faulty thing).

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

const CASE: &str = "PAGURUS_FAULT_CASE";

/// Runs `test` of this binary in a child with the case set; `None` when we are the child.
fn in_child(test: &str, case: &str) -> Option<Output> {
    if std::env::var(CASE).is_ok() {
        return None;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let output = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .output()
        .expect("run the child");
    Some(output)
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    if depth == 0 {
        frame[3]
    } else {
        recurse(depth - 1) + black_box(frame[7])
    }
}

#[test]
fn overflow_aborts_with_actionable_message() {
    let Some(out) = in_child("overflow_aborts_with_actionable_message", "overflow") else {
        let rt = pagurus::Runtime::builder()
            .workers(1)
            .initial_stack_size(8192)
            .build()
            .unwrap();
        rt.block_on(|| pagurus::spawn(|| recurse(1_000_000)).join().unwrap());
        unreachable!("the recursion must overflow an 8 KiB stack");
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "child status {:?}, stderr:\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("pagurus: coroutine stack overflow: coroutine "),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("used more than its 8192 bytes of stack"),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("Builder::initial_stack_size"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn raw_coroutine_overflow_is_reported_too() {
    let Some(out) = in_child("raw_coroutine_overflow_is_reported_too", "raw") else {
        let mut co = pagurus::raw::Coroutine::new(4096, |_| {
            black_box(recurse(1_000_000));
        })
        .unwrap();
        co.resume();
        unreachable!("the recursion must overflow a 4 KiB stack");
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("a raw coroutine used more than its 4096 bytes of stack"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn null_dereference_in_coroutine_still_dies_with_sigsegv() {
    let Some(out) = in_child(
        "null_dereference_in_coroutine_still_dies_with_sigsegv",
        "null",
    ) else {
        pagurus::run(|| {
            let p: *const u64 = black_box(std::ptr::null());
            // SAFETY: none; this child process exists to fault here.
            black_box(unsafe { p.read_volatile() });
        });
        unreachable!("reading address 0 must fault");
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("pagurus: coroutine stack overflow"),
        "stderr:\n{stderr}"
    );
}

#[test]
fn main_thread_overflow_still_reported_by_std() {
    let Some(out) = in_child("main_thread_overflow_still_reported_by_std", "thread") else {
        // Make sure the pagurus handler is installed, then overflow a plain thread's stack.
        pagurus::run(|| ());
        let t = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| recurse(1_000_000))
            .unwrap();
        black_box(t.join().ok());
        unreachable!("the recursion must overflow a 64 KiB thread stack");
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("has overflowed its stack"),
        "std's message expected, stderr:\n{stderr}"
    );
    assert!(!stderr.contains("pagurus:"), "stderr:\n{stderr}");
}
