//! A coroutine that spawns a burst of children on the default 4 KiB stack.
//!
//! Regression test. `spawn` from a scheduled coroutine pushes older children into the worker's
//! crossbeam-deque; when its buffer is full (64 entries) `Worker::push` resizes it and retires the
//! old buffer through crossbeam-epoch's `Local::defer`, whose release-build frame is about 4.1 KB
//! behind a stack probe. On a 4 KiB coroutine stack that always hit the guard. The runtime now
//! runs that slow path on the worker's own stack (`on_system_stack`).
//!
//! Deterministic with one worker: nothing steals from the deque, so the 66th spawn (1 in the LIFO
//! slot, 64 in the deque, 1 more) always needs the resize.

use pagurus::{JoinHandle, Runtime, spawn};

#[test]
fn coroutine_spawns_burst_on_default_stack() {
    const N: u64 = 100;
    let rt = Runtime::builder().workers(1).build().unwrap();
    let sum: u64 = rt.block_on(|| {
        spawn(|| {
            let handles: Vec<JoinHandle<u64>> = (0..N).map(|i| spawn(move || i)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        })
        .join()
        .unwrap()
    });
    assert_eq!(sum, N * (N - 1) / 2);
}
