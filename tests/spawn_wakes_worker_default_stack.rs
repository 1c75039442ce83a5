//! The main coroutine spawns, on the default 4 KiB stack, while the workers sleep.
//!
//! One test in this file: it needs a thread that has never waited on a crossbeam channel.
//!
//! Regression test. When a worker sleeps in `recv`, `spawn` sends it a nudge, and
//! crossbeam-channel's `SyncWaker::notify` -> `Waker::try_select` -> `current_thread_id()` lazily
//! initialises a thread-local the first time a thread does so; unoptimised, that chain needed more
//! than the 4 KiB the main coroutine has left under an ordinary
//! `(1..=10).map(|i| spawn(..)).collect()`. The runtime now wakes workers from its own stack
//! (`on_system_stack`).
//!
//! The test waits, by polling `/proc/self/task/*/stat` (a condition, not a delay), until both
//! worker threads are blocked, which makes the wake-up path certain.

use std::fs;

use pagurus::{JoinHandle, Runtime, spawn};

/// How many `pagurus-worker-*` threads of this process are blocked (state `S`).
fn workers_asleep() -> usize {
    let mut asleep = 0;
    for entry in fs::read_dir("/proc/self/task").expect("procfs") {
        let path = entry.expect("task entry").path();
        let comm = fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.starts_with("pagurus-worker") {
            continue;
        }
        let stat = fs::read_to_string(path.join("stat")).unwrap_or_default();
        // The state follows the parenthesised command name.
        let state = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .chars()
            .next();
        if state == Some('S') {
            asleep += 1;
        }
    }
    asleep
}

#[test]
fn first_spawn_wakes_sleeping_worker_on_default_stack() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    while workers_asleep() < 2 {
        std::thread::yield_now();
    }
    let mut squares = Vec::new();
    rt.block_on(|| {
        let handles: Vec<JoinHandle<u64>> = (1..=10u64).map(|i| spawn(move || i * i)).collect();
        for h in handles {
            squares.push(h.join().unwrap());
        }
    });
    assert_eq!(squares, (1..=10u64).map(|i| i * i).collect::<Vec<_>>());
}
