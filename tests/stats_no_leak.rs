//! Dropping a runtime cancels what is left (unwinding suspended stacks, dropping unstarted
//! closures) and gives back every coroutine count and stack byte it took.
//!
//! Reads the process-wide `stats()`, so this file holds exactly one test.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;

use common::{DropCounter, guarded_frames_until, spin_until, wait_for};
use pagurus::{Cancelled, JoinHandle, Runtime, spawn, stats};

/// Spawns a coroutine from its destructor. Dropped while its coroutine is cancelled during
/// shutdown, it spawns one that never starts.
struct SpawnOnDrop {
    drops: Arc<AtomicUsize>,
    out: Arc<Mutex<Vec<JoinHandle<u32>>>>,
}

impl Drop for SpawnOnDrop {
    fn drop(&mut self) {
        let guard = DropCounter(self.drops.clone());
        let handle = spawn(move || {
            let _guard = guard;
            1u32
        });
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
        self.drops.fetch_add(1, SeqCst);
    }
}

#[inline(never)]
#[test]
fn shutdown_cancels_and_leaks_nothing() {
    let before = stats();
    let rt = Runtime::builder()
        .workers(2)
        .initial_stack_size(256 * 1024)
        .build()
        .unwrap();

    let never = Arc::new(AtomicBool::new(false)); // never set
    let go = Arc::new(AtomicBool::new(false));
    let drops = Arc::new(AtomicUsize::new(0));
    // Coroutines that reached their suspension point (guards on their stacks count only then).
    let started = Arc::new(AtomicUsize::new(0));
    let spawned_in_drop: Arc<Mutex<Vec<JoinHandle<u32>>>> = Arc::new(Mutex::new(Vec::new()));

    let (finishers, late, looper, joiner, guarded, watched) = rt.block_on(|| {
        // Coroutines that finish.
        let finishers: Vec<JoinHandle<u64>> = (0..10u64).map(|i| spawn(move || i * i)).collect();
        // One that can only finish after this block_on has returned.
        let g = go.clone();
        let late = spawn(move || {
            spin_until(&g);
            "finished after block_on"
        });
        // A looper that yields forever, with a guard in each of its 3 frames.
        let (d, st, n) = (drops.clone(), started.clone(), never.clone());
        let looper = spawn(move || guarded_frames_until(&d, &st, &n, 2));
        // A coroutine parked forever joining another looper (1 guard), with 2 guards of its own.
        let (d, st, n) = (drops.clone(), started.clone(), never.clone());
        let inner_looper = spawn(move || guarded_frames_until(&d, &st, &n, 0));
        let (d, st, n) = (drops.clone(), started.clone(), never.clone());
        let joiner = spawn(move || {
            let _a = DropCounter(d.clone());
            let _b = DropCounter(d.clone());
            st.fetch_add(1, SeqCst);
            let _ = inner_looper.join();
            // Joined only through cancellation; keep suspending until our own cancellation.
            spin_until(&n);
            2u32
        });
        // A parked coroutine whose guard spawns a coroutine while it is being cancelled; that
        // one never starts.
        let out = spawned_in_drop.clone();
        let (d, st, n) = (drops.clone(), started.clone(), never.clone());
        let third_looper = spawn(move || guarded_frames_until(&d, &st, &n, 0));
        let (d, st, n) = (drops.clone(), started.clone(), never.clone());
        let guarded = spawn(move || {
            let _spawner = SpawnOnDrop {
                drops: d.clone(),
                out,
            };
            let _c = DropCounter(d);
            st.fetch_add(1, SeqCst);
            let _ = third_looper.join();
            spin_until(&n);
            3u32
        });
        // A looper a plain thread will be blocked joining when the runtime drops.
        let (d, st, n) = (drops.clone(), started.clone(), never.clone());
        let watched = spawn(move || guarded_frames_until(&d, &st, &n, 1));
        (finishers, late, looper, joiner, guarded, watched)
    });

    // Coroutines keep running after block_on returns: `late` finishes once we let it, after
    // the first block_on is over, and a second block_on joins it.
    assert!(!late.is_finished());
    go.store(true, SeqCst);
    while !late.is_finished() {
        thread::yield_now();
    }
    let (late_value, squares) = rt.block_on(|| {
        let squares: Vec<u64> = finishers.into_iter().map(|h| h.join().unwrap()).collect();
        (late.join().unwrap(), squares)
    });
    assert_eq!(late_value, "finished after block_on");
    assert_eq!(squares, (0..10u64).map(|i| i * i).collect::<Vec<_>>());
    assert_eq!(
        drops.load(SeqCst),
        0,
        "nothing cancelled while the runtime lives"
    );

    // All six never-finishing coroutines are running (suspended, with their guards on their
    // stacks) before the drop.
    wait_for(&started, 6);
    let watcher = thread::spawn(move || watched.join());
    drop(rt);

    // Every guard on a suspended stack ran: looper 3, inner looper 1, joiner 2, third looper 1,
    // guarded 1 + its spawner 1, the never-started coroutine's captured guard 1, watched 2.
    assert_eq!(drops.load(SeqCst), 12);

    let is_cancelled = |r: std::thread::Result<u32>| match r {
        Ok(v) => panic!("expected Cancelled, got Ok({v})"),
        Err(payload) => payload.downcast_ref::<Cancelled>().copied(),
    };
    assert_eq!(is_cancelled(looper.join()), Some(Cancelled));
    assert_eq!(is_cancelled(joiner.join()), Some(Cancelled));
    assert_eq!(is_cancelled(guarded.join()), Some(Cancelled));
    assert_eq!(is_cancelled(watcher.join().unwrap()), Some(Cancelled));
    let unstarted: Vec<JoinHandle<u32>> = spawned_in_drop.lock().unwrap().drain(..).collect();
    assert_eq!(unstarted.len(), 1);
    for h in unstarted {
        assert!(h.is_finished());
        assert_eq!(is_cancelled(h.join()), Some(Cancelled));
    }

    let after = stats();
    // Two main coroutines, 10 finishers, late, 6 that never finish (looper, inner looper,
    // joiner, third looper, guarded, watched), and the one spawned during cancellation.
    assert_eq!(after.spawned, before.spawned + 2 + 10 + 1 + 6 + 1);
    assert_eq!(after.live, before.live, "{before:?} -> {after:?}");
    assert_eq!(after.stack_bytes_reserved, before.stack_bytes_reserved);
    assert_eq!(after.stack_bytes_pooled, before.stack_bytes_pooled);
}
