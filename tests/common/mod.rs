//! Helpers shared by the integration tests (each test file includes this with `mod common;`).

#![allow(dead_code, reason = "not every test file uses every helper")]

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Counts its own drop into a shared counter.
pub struct DropCounter(pub Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Appends its label to a shared log when dropped, to check drop order.
pub struct DropLog(pub &'static str, pub Arc<Mutex<Vec<&'static str>>>);

impl Drop for DropLog {
    fn drop(&mut self) {
        // Drops may run while a panic unwinds; never turn a poisoned lock into a double panic.
        self.1
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.0);
    }
}

/// The message of a panic payload, if it is a `String` or a `&'static str`.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    if let Some(s) = payload.downcast_ref::<String>() {
        Some(s.clone())
    } else {
        payload
            .downcast_ref::<&'static str>()
            .map(|s| (*s).to_owned())
    }
}

/// Stack size for tests that are not about stack size: large enough that panics, formatting and
/// unwinding never need the stack to grow.
pub const BIG_STACK: usize = 1 << 20;

/// Waits (yielding the OS thread) until `counter` reaches `n`: a condition, not a duration.
pub fn wait_for(counter: &AtomicUsize, n: usize) {
    while counter.load(Ordering::SeqCst) < n {
        std::thread::yield_now();
    }
}

/// XOR mask that disguises a stack address, so the conservative relocation (which adjusts every
/// word that looks like a pointer into the moving stack) leaves the disguised copy alone. Used
/// to remember where something was before a move and measure how far the stack moved.
pub const MASK: usize = 0x5a5a_5a5a_5a5a_5a5a;

/// The address of `r`, disguised (see [`MASK`]); `black_box` keeps the compiler from undoing it.
#[inline(always)]
pub fn disguised_addr<T: ?Sized>(r: &T) -> usize {
    std::hint::black_box((r as *const T).cast::<u8>() as usize ^ MASK)
}

/// Undoes [`disguised_addr`].
#[inline(always)]
pub fn reveal(disguised: usize) -> usize {
    std::hint::black_box(disguised) ^ MASK
}

/// The address of `r`, as a plain integer.
#[inline(always)]
pub fn addr<T: ?Sized>(r: &T) -> usize {
    (r as *const T).cast::<u8>() as usize
}

/// Recursion with 1 KiB frames, `kib` deep (about `kib` KiB of stack, more in debug builds);
/// returns `1 + 2 + ... + kib`, proving every frame kept its contents.
#[inline(never)]
pub fn recurse_kib(kib: u64) -> u64 {
    let frame = std::hint::black_box([kib; 128]);
    if kib == 0 {
        frame[5]
    } else {
        let below = recurse_kib(kib - 1);
        below + std::hint::black_box(frame)[127]
    }
}

/// Writes a zero `offset` bytes below the stack pointer, without clobbering any register: on a
/// coroutine whose stack has less than `offset` bytes left this lands in the guard region and
/// forces a growth by fault *in the middle of the caller*, with whatever the caller keeps in
/// registers live across it. `offset` must stay below the guard size (4 MiB).
#[inline(always)]
pub fn touch_below_sp(offset: usize) {
    let neg = offset.wrapping_neg();
    // SAFETY: the word written lies below the stack pointer (nothing lives there; the red zone is
    // only 128 bytes and `offset` is larger), either in the guard region of the current coroutine
    // stack (the fault handler grows the stack and re-executes the store, which then lands in the
    // new stack below the stack pointer) or in unused stack.
    unsafe {
        std::arch::asm!(
            "mov qword ptr [rsp + {neg}], 0",
            neg = in(reg) neg,
            options(nostack, preserves_flags),
        )
    };
}

/// A runtime whose coroutines all start on 4 KiB stacks (the default size, and no adaptive start
/// size: these tests grow every coroutine from there), with `workers` workers.
pub fn default_stack_runtime(workers: usize) -> pagurus::Runtime {
    pagurus::Runtime::builder()
        .workers(workers)
        .adaptive_stack_size(false)
        .build()
        .unwrap()
}

/// Runs test `test` of the current test binary in a child process with the environment variable
/// `var` set to `case`, for cases that must end the process (an abort with a message). Returns
/// the child's output, or `None` when called in the child itself, which then does the thing.
pub fn in_child(var: &str, case: &str, test: &str) -> Option<Output> {
    if std::env::var(var).is_ok() {
        return None;
    }
    let exe = std::env::current_exe().expect("test binary path");
    let output = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(var, case)
        .output()
        .expect("run the child");
    Some(output)
}

/// Asserts that a child process died of `signal` and that its stderr contains every needle.
pub fn assert_died_of(out: &Output, signal: i32, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(signal),
        "child status {:?}, stderr:\n{stderr}",
        out.status
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "expected {needle:?} in stderr:\n{stderr}"
        );
    }
}

/// Yields the coroutine until `flag` is set.
pub fn spin_until(flag: &AtomicBool) {
    while !flag.load(Ordering::SeqCst) {
        pagurus::yield_now();
    }
}

/// `depth + 1` frames with a drop guard each (counted in `drops`); the innermost counts itself
/// in `started`, then yields until `never` is set. Returns `depth`.
#[inline(never)]
pub fn guarded_frames_until(
    drops: &Arc<AtomicUsize>,
    started: &AtomicUsize,
    never: &AtomicBool,
    depth: u32,
) -> u32 {
    let _guard = DropCounter(drops.clone());
    if depth == 0 {
        started.fetch_add(1, Ordering::SeqCst);
        spin_until(never);
        0
    } else {
        guarded_frames_until(drops, started, never, depth - 1) + 1
    }
}
