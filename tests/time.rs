//! Sleeping parks only the sleeping coroutine: timers per worker, no OS timer per sleeper.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use pagurus::Runtime;

#[test]
fn sleep_lasts_at_least_its_duration() {
    pagurus::run(|| {
        for ms in [0u64, 1, 3, 10] {
            let start = Instant::now();
            pagurus::time::sleep(Duration::from_millis(ms));
            assert!(start.elapsed() >= Duration::from_millis(ms), "{ms} ms");
        }
        let h = pagurus::spawn(|| {
            let deadline = Instant::now() + Duration::from_millis(7);
            pagurus::time::sleep_until(deadline);
            Instant::now() >= deadline
        });
        assert!(h.join().unwrap());
    });
}

#[test]
fn sleep_on_a_plain_thread_sleeps_the_thread() {
    let start = Instant::now();
    pagurus::time::sleep(Duration::from_millis(5));
    assert!(start.elapsed() >= Duration::from_millis(5));
}

/// A sleeping coroutine does not block its worker: with one worker, another coroutine makes
/// progress while the first sleeps.
#[test]
fn a_sleeper_leaves_its_worker_free() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let progress = rt.block_on(|| {
        let done = Arc::new(AtomicUsize::new(0));
        let d = done.clone();
        let sleeper = pagurus::spawn(move || {
            pagurus::time::sleep(Duration::from_millis(30));
            d.store(1, SeqCst);
        });
        let busy = pagurus::spawn(move || {
            let mut steps = 0u64;
            while done.load(SeqCst) == 0 {
                steps += 1;
                pagurus::yield_now();
            }
            steps
        });
        sleeper.join().unwrap();
        busy.join().unwrap()
    });
    assert!(progress > 0);
}

/// Thousands of sleepers are asleep at the same time (not one after another), on two workers.
#[test]
fn many_sleepers_sleep_at_once() {
    const N: usize = 2_000;
    let rt = Runtime::builder().workers(2).build().unwrap();
    let (asleep, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let woken = rt.block_on(|| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let (asleep, most) = (asleep.clone(), most.clone());
                pagurus::spawn(move || {
                    let now = asleep.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    // Everyone waits until all are asleep: if sleeps ran one after another, the
                    // count would never reach N while the first still sleeps.
                    let start = Instant::now();
                    while asleep.load(SeqCst) < N && start.elapsed() < Duration::from_secs(60) {
                        pagurus::time::sleep(Duration::from_millis(1 + (i % 7) as u64));
                    }
                    i
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum::<usize>()
    });
    assert_eq!(woken, N * (N - 1) / 2);
    assert_eq!(most.load(SeqCst), N);
}

/// Dropping a runtime cancels its sleepers: destructors run, join reports `Cancelled`, nothing
/// stays live.
#[test]
fn dropping_the_runtime_cancels_sleepers() {
    let drops = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handles = rt.block_on(|| {
        let started = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..50)
            .map(|_| {
                let guard = common::DropCounter(drops.clone());
                let started = started.clone();
                pagurus::spawn(move || {
                    let _guard = guard;
                    started.fetch_add(1, SeqCst);
                    pagurus::time::sleep(Duration::from_secs(3600));
                })
            })
            .collect();
        while started.load(SeqCst) < 50 {
            pagurus::time::sleep(Duration::from_millis(1));
        }
        hs
    });
    drop(rt);
    assert_eq!(drops.load(SeqCst), 50);
    for h in handles {
        let err = h.join().unwrap_err();
        assert!(err.downcast_ref::<pagurus::Cancelled>().is_some());
    }
}
