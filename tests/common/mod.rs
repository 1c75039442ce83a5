//! Helpers shared by the integration tests (each test file includes this with `mod common;`).

#![allow(dead_code, reason = "not every test file uses every helper")]

use std::sync::atomic::{AtomicUsize, Ordering};
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

/// Stack size for coroutines that panic, format or unwind (panics run the hook and the unwinder
/// on the coroutine's stack, and stacks do not grow yet).
pub const BIG_STACK: usize = 1 << 20;

/// Waits (yielding the OS thread) until `counter` reaches `n`: a condition, not a duration.
pub fn wait_for(counter: &AtomicUsize, n: usize) {
    while counter.load(Ordering::SeqCst) < n {
        std::thread::yield_now();
    }
}
