//! Stack pools: warm spawns reuse pooled stacks; a zero-byte pool maps a stack per coroutine.
//!
//! Reads the process-wide `stats()`, so this file holds exactly one test.

use pagurus::{Runtime, spawn, stats};

#[test]
fn pools_serve_warm_spawns() {
    const N: u64 = 10_000;
    let before = stats();

    // --- Default pool: after a warm-up, spawns cost no new mapping. ---
    let rt = Runtime::builder().workers(1).build().unwrap();
    let warm_sums = rt.block_on(|| {
        // From the main coroutine (children come through the injector) ...
        let from_main: u64 = (0..10u64).map(|i| spawn(move || i).join().unwrap()).sum();
        // ... and from a coroutine on the worker (children go to its LIFO slot), which needs two
        // stacks at once.
        let from_worker: u64 = spawn(|| (0..10u64).map(|i| spawn(move || i).join().unwrap()).sum())
            .join()
            .unwrap();
        (from_main, from_worker)
    });
    assert_eq!(warm_sums, (45, 45));
    let warmed = stats();
    assert!(warmed.stack_maps > before.stack_maps);

    let (from_main, from_worker) = rt.block_on(|| {
        let from_main: u64 = (0..N).map(|i| spawn(move || i).join().unwrap()).sum();
        let from_worker: u64 = spawn(|| (0..N).map(|i| spawn(move || i).join().unwrap()).sum())
            .join()
            .unwrap();
        (from_main, from_worker)
    });
    assert_eq!(from_main, N * (N - 1) / 2);
    assert_eq!(from_worker, N * (N - 1) / 2);
    let pooled_run = stats();
    assert_eq!(
        pooled_run.stack_maps, warmed.stack_maps,
        "2 x {N} warm spawns mapped new stacks"
    );
    assert_eq!(pooled_run.spawned, warmed.spawned + 2 * N + 2);
    // The main coroutine's stack went back to the runtime's pool when block_on returned.
    assert!(
        pooled_run.stack_bytes_pooled >= before.stack_bytes_pooled + 4096,
        "{pooled_run:?}"
    );
    assert!(pooled_run.stack_bytes_reserved >= pooled_run.stack_bytes_pooled);

    drop(rt);
    let dropped = stats();
    assert_eq!(dropped.stack_bytes_pooled, before.stack_bytes_pooled);
    assert_eq!(dropped.stack_bytes_reserved, before.stack_bytes_reserved);
    assert_eq!(dropped.live, before.live);

    // --- No pool: every coroutine, the main one included, maps its own stack. ---
    const M: u64 = 1000;
    let rt = Runtime::builder()
        .workers(1)
        .stack_pool_bytes(0)
        .build()
        .unwrap();
    let start = stats();
    let sum: u64 = rt.block_on(|| (0..M).map(|i| spawn(move || i).join().unwrap()).sum());
    assert_eq!(sum, M * (M - 1) / 2);
    let unpooled = stats();
    // Nothing else maps stacks in this process, so the count is exact: M children and main.
    assert_eq!(unpooled.stack_maps, start.stack_maps + M + 1);
    assert_eq!(unpooled.stack_bytes_pooled, before.stack_bytes_pooled);
    // A second call maps the main coroutine's stack again: nothing was kept.
    rt.block_on(|| ());
    assert_eq!(stats().stack_maps, unpooled.stack_maps + 1);
    drop(rt);

    let after = stats();
    assert_eq!(after.live, before.live);
    assert_eq!(after.stack_bytes_reserved, before.stack_bytes_reserved);
    assert_eq!(after.stack_bytes_pooled, before.stack_bytes_pooled);
}
