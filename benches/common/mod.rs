//! Helpers shared by the criterion benchmarks (each bench file includes this with `mod common;`).

#![allow(dead_code, reason = "not every benchmark uses every helper")]

use std::time::Duration;

use pagurus::Runtime;

/// A runtime with `workers` workers and the default settings.
pub fn runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .build()
        .expect("start a runtime")
}

/// Runs `body(iters)` inside a spawned coroutine and returns the time it measured.
pub fn in_coroutine(rt: &Runtime, iters: u64, body: fn(u64) -> Duration) -> Duration {
    rt.block_on(|| {
        pagurus::spawn(move || body(iters))
            .join()
            .expect("bench body panicked")
    })
}
