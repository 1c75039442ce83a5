//! Lock costs, measured from inside a coroutine, next to `std::sync::Mutex` in the same run.
//!
//! - `mutex_uncontended` / `std_mutex_uncontended`: one lock + unlock with nobody else around
//!   (design target: pagurus within 1.2x of std).
//! - `rwlock_read_uncontended`, `semaphore_uncontended`: the other fast paths.
//! - `mutex_contended_2_workers`: two coroutines on a two-worker runtime (one per worker) each
//!   add to one counter under the lock; time per lock + unlock, all acquisitions counted.
//!   `std_mutex_contended_2_threads` is the same with two threads and std's mutex.
//! - `block_on_ready`: `future::block_on` of a future that is ready at once (allocation, waker,
//!   one poll on the system stack).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{in_coroutine, runtime};
use criterion::{Criterion, criterion_group, criterion_main};
use pagurus::sync::{Mutex, RwLock, Semaphore};

fn uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("sync");
    let rt = runtime(1);
    group.bench_function("mutex_uncontended", |b| {
        b.iter_custom(|iters| {
            in_coroutine(&rt, iters, |iters| {
                let m = Mutex::new(0u64);
                let start = Instant::now();
                for _ in 0..iters {
                    *black_box(&m).lock() += 1;
                }
                let elapsed = start.elapsed();
                assert_eq!(m.into_inner(), iters);
                elapsed
            })
        })
    });
    group.bench_function("std_mutex_uncontended", |b| {
        b.iter_custom(|iters| {
            in_coroutine(&rt, iters, |iters| {
                let m = std::sync::Mutex::new(0u64);
                let start = Instant::now();
                for _ in 0..iters {
                    *black_box(&m).lock().unwrap() += 1;
                }
                let elapsed = start.elapsed();
                assert_eq!(m.into_inner().unwrap(), iters);
                elapsed
            })
        })
    });
    group.bench_function("rwlock_read_uncontended", |b| {
        b.iter_custom(|iters| {
            in_coroutine(&rt, iters, |iters| {
                let l = RwLock::new(1u64);
                let mut sum = 0;
                let start = Instant::now();
                for _ in 0..iters {
                    sum += *black_box(&l).read();
                }
                let elapsed = start.elapsed();
                assert_eq!(sum, iters);
                elapsed
            })
        })
    });
    group.bench_function("semaphore_uncontended", |b| {
        b.iter_custom(|iters| {
            in_coroutine(&rt, iters, |iters| {
                let s = Semaphore::new(1);
                let start = Instant::now();
                for _ in 0..iters {
                    drop(black_box(&s).acquire());
                }
                start.elapsed()
            })
        })
    });
    group.bench_function("block_on_ready", |b| {
        b.iter_custom(|iters| {
            in_coroutine(&rt, iters, |iters| {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(pagurus::future::block_on(async move { black_box(i) }));
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn contended(c: &mut Criterion) {
    let mut group = c.benchmark_group("sync");
    let rt = runtime(2);
    group.bench_function("mutex_contended_2_workers", |b| {
        b.iter_custom(|iters| {
            let m = Arc::new(Mutex::new(0u64));
            let ready = Arc::new(AtomicUsize::new(0));
            let half = iters.div_ceil(2);
            let elapsed = rt.block_on(|| {
                let start = Instant::now();
                let hs: Vec<_> = (0..2)
                    .map(|_| {
                        let (m, ready) = (m.clone(), ready.clone());
                        pagurus::spawn(move || {
                            // Both start before either locks, and the first spins without
                            // yielding meanwhile, so the second starts on the other worker (a
                            // yield after 50 ms keeps a lone worker from waiting for ever).
                            ready.fetch_add(1, Ordering::SeqCst);
                            let waiting = Instant::now();
                            while ready.load(Ordering::SeqCst) < 2 {
                                if waiting.elapsed() > Duration::from_millis(50) {
                                    pagurus::yield_now();
                                }
                            }
                            for _ in 0..half {
                                *m.lock() += 1;
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
                start.elapsed()
            });
            assert_eq!(*m.lock(), 2 * half);
            elapsed
        })
    });
    group.bench_function("std_mutex_contended_2_threads", |b| {
        b.iter_custom(|iters| {
            let m = Arc::new(std::sync::Mutex::new(0u64));
            let half = iters.div_ceil(2);
            let start = Instant::now();
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    let m = m.clone();
                    thread::spawn(move || {
                        for _ in 0..half {
                            *m.lock().unwrap() += 1;
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            let elapsed = start.elapsed();
            assert_eq!(*m.lock().unwrap(), 2 * half);
            elapsed
        })
    });
    group.finish();
}

criterion_group!(benches, uncontended, contended);
criterion_main!(benches);
