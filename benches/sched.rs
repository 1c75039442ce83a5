//! Scheduler costs, measured from inside a coroutine so that only pagurus is on the clock.
//!
//! - `yield_now`: one coroutine yields to its worker and is picked again (the scheduler loop's
//!   round trip), and two coroutines on one worker yielding to each other.
//! - `spawn_join`: spawn a coroutine and join it, with warm stack pools, on one worker and on
//!   two (where the child may be stolen by the other worker).
//! - `wake_compacted`: on a runtime that compacts every parked coroutine
//!   (`parked_stack_budget(0)`), coroutines parked in `recv` on a channel each (compacted: a heap
//!   image of about 1 KiB of live stack) are woken one by one, and each runs to its end: per
//!   iteration one send, one restore (a stack from the pool, the image copied in and relocated),
//!   the rest of the coroutine and its finish. `wake_parked` is the same on a runtime with the
//!   default budget (nothing compacted): the difference is what the restore costs.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

mod common;

use common::{in_coroutine, runtime};
use criterion::{Criterion, criterion_group, criterion_main};

fn yield_now(c: &mut Criterion) {
    let mut group = c.benchmark_group("sched");
    let rt = runtime(1);
    group.bench_function("yield_now", |b| {
        b.iter_custom(|iters| {
            in_coroutine(&rt, iters, |iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    pagurus::yield_now();
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("yield_now_two_coroutines", |b| {
        b.iter_custom(|iters| {
            in_coroutine(&rt, iters, |iters| {
                let stop = Arc::new(AtomicBool::new(false));
                let partner = {
                    let stop = stop.clone();
                    pagurus::spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            pagurus::yield_now();
                        }
                    })
                };
                pagurus::yield_now(); // let the partner start
                let start = Instant::now();
                for _ in 0..iters {
                    pagurus::yield_now();
                }
                // Each of our yields ran one partner yield too: report per switch pair.
                let elapsed = start.elapsed();
                stop.store(true, Ordering::Relaxed);
                partner.join().unwrap();
                elapsed
            })
        })
    });
    group.finish();
}

fn spawn_join(c: &mut Criterion) {
    let mut group = c.benchmark_group("sched");
    for workers in [1, 2] {
        let rt = runtime(workers);
        group.bench_function(format!("spawn_join_{workers}_workers"), |b| {
            b.iter_custom(|iters| {
                in_coroutine(&rt, iters, |iters| {
                    // Warm the pool so that the timed loop maps nothing.
                    pagurus::spawn(|| ()).join().unwrap();
                    let start = Instant::now();
                    for i in 0..iters {
                        let h = pagurus::spawn(move || black_box(i));
                        black_box(h.join().unwrap());
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

fn wake_compacted(c: &mut Criterion) {
    let mut group = c.benchmark_group("sched");
    for (name, budget) in [("wake_compacted", 0), ("wake_parked", 16 << 20)] {
        let rt = pagurus::Runtime::builder()
            .workers(1)
            .parked_stack_budget(budget)
            .build()
            .expect("start a runtime");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| in_coroutine(&rt, iters, wake_parked_coroutines))
        });
    }
    group.finish();
}

/// Parks `iters` coroutines in `recv`, then times waking each and letting it run to its end.
fn wake_parked_coroutines(iters: u64) -> std::time::Duration {
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (senders, handles): (Vec<_>, Vec<_>) = (0..iters)
        .map(|_| {
            let (tx, rx) = pagurus::channel::bounded::<u64>(1);
            let done = done.clone();
            let h = pagurus::spawn(move || {
                let v = rx.recv().unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                black_box(v)
            });
            (tx, h)
        })
        .unzip();
    // Until every one has parked (on one worker, one yield runs them all to their `recv`).
    while pagurus::stats().parked < iters {
        pagurus::yield_now();
    }
    let start = Instant::now();
    for (i, tx) in senders.iter().enumerate() {
        tx.send(i as u64).unwrap();
    }
    while done.load(Ordering::Relaxed) < iters {
        pagurus::yield_now();
    }
    let elapsed = start.elapsed();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), i as u64);
    }
    elapsed
}

criterion_group!(benches, yield_now, spawn_join, wake_compacted);
criterion_main!(benches);
