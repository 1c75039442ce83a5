//! Scheduler costs, measured from inside a coroutine so that only pagurus is on the clock.
//!
//! - `yield_now`: one coroutine yields to its worker and is picked again (the scheduler loop's
//!   round trip), and two coroutines on one worker yielding to each other.
//! - `spawn_join`: spawn a coroutine and join it, with warm stack pools, on one worker and on
//!   two (where the child may be stolen by the other worker).
//! - `wake_compacted`: on a runtime that compacts every parked coroutine
//!   (`parked_stack_budget(0)`), wake a coroutine parked in `recv` (its stack restored from its
//!   heap image, about 1 KiB), let it run to its next `recv` and park (compacted again): one
//!   restore, one compaction, a channel hand-off and a yield per iteration. `wake_parked` is the
//!   same on a runtime with the default budget (nothing compacted): the difference is what
//!   compaction and restore cost.

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
            b.iter_custom(|iters| in_coroutine(&rt, iters, wake_and_repark))
        });
    }
    group.finish();
}

/// `iters` times: wake a partner parked in `recv`, and let it run to its next `recv`.
fn wake_and_repark(iters: u64) -> std::time::Duration {
    let (tx, rx) = pagurus::channel::bounded::<u64>(1);
    let (done_tx, done_rx) = pagurus::channel::bounded::<u64>(1);
    let partner = pagurus::spawn(move || {
        let mut sum = 0;
        for v in rx.iter() {
            sum += v;
        }
        done_tx.send(sum).unwrap();
    });
    pagurus::yield_now(); // the partner parks in `recv`
    let start = Instant::now();
    for i in 0..iters {
        tx.send(i).unwrap();
        pagurus::yield_now(); // it runs, then parks again
    }
    let elapsed = start.elapsed();
    drop(tx);
    assert_eq!(done_rx.recv().unwrap(), iters * (iters - 1) / 2);
    partner.join().unwrap();
    elapsed
}

criterion_group!(benches, yield_now, spawn_join, wake_compacted);
criterion_main!(benches);
