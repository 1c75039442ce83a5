//! A spawned coroutine gets its stack when it first runs, not when it is spawned.
//!
//! Reads the process-wide `stats()`, so this file holds exactly one test.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use pagurus::{JoinHandle, Runtime, spawn, stats};

#[test]
fn stacks_are_mapped_lazily() {
    const SIZE: usize = 16 * 1024;
    const N: u64 = 16;
    let before = stats();
    // No pool: every stack a coroutine starts on is a fresh mapping.
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(SIZE)
        .stack_pool_bytes(0)
        .build()
        .unwrap();
    let built = stats();
    assert_eq!(
        built.stack_maps, before.stack_maps,
        "workers map nothing up front"
    );
    assert_eq!(built.stack_bytes_reserved, before.stack_bytes_reserved);

    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let release_rx = Arc::new(Mutex::new(release_rx));

    let (in_main, busy, spawned, observed, after_join) = rt.block_on(move || {
        let in_main = stats();
        // Occupy the only worker: this coroutine blocks its OS thread until released.
        let blocker = spawn(move || {
            started_tx.send(()).unwrap();
            release_rx.lock().unwrap().recv().unwrap();
        });
        started_rx.recv().unwrap();
        let busy = stats();
        let handles: Vec<JoinHandle<(u64, bool)>> = (0..N)
            .map(|_| spawn(|| (stats().stack_maps, pagurus::stack::current().is_some())))
            .collect();
        let spawned = stats();
        release_tx.send(()).unwrap();
        blocker.join().unwrap();
        let observed: Vec<(u64, bool)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (in_main, busy, spawned, observed, stats())
    });

    // The main coroutine's stack, then the blocker's.
    assert_eq!(in_main.stack_maps, before.stack_maps + 1);
    assert_eq!(
        in_main.stack_bytes_reserved,
        before.stack_bytes_reserved + SIZE
    );
    assert_eq!(busy.stack_maps, before.stack_maps + 2);
    assert_eq!(
        busy.stack_bytes_reserved,
        before.stack_bytes_reserved + 2 * SIZE
    );
    // Spawning N coroutines created N coroutines and not a single stack.
    assert_eq!(spawned.spawned, busy.spawned + N);
    assert_eq!(spawned.live, busy.live + N);
    assert_eq!(spawned.stack_maps, busy.stack_maps, "spawn mapped a stack");
    assert_eq!(spawned.stack_bytes_reserved, busy.stack_bytes_reserved);
    // Each mapped its stack just before it first ran: they ran one after another on the single
    // worker, so each saw one more mapping than the one before.
    let mut maps_seen: Vec<u64> = observed.iter().map(|&(maps, _)| maps).collect();
    maps_seen.sort_unstable();
    assert_eq!(
        maps_seen,
        (1..=N).map(|k| busy.stack_maps + k).collect::<Vec<_>>()
    );
    assert!(observed.iter().all(|&(_, on_stack)| on_stack));
    assert_eq!(after_join.stack_maps, busy.stack_maps + N);

    drop(rt);
    let after = stats();
    assert_eq!(after.stack_maps, before.stack_maps + 2 + N);
    assert_eq!(after.live, before.live);
    assert_eq!(after.stack_bytes_reserved, before.stack_bytes_reserved);
    assert_eq!(after.stack_bytes_pooled, before.stack_bytes_pooled);
}
