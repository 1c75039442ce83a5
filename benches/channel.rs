//! Channel costs, measured from inside coroutines so that only pagurus is on the clock, next to
//! crossbeam-channel between two OS threads in the same run.
//!
//! - `pingpong_*`: a round trip (`send` then `recv`) over two rendezvous channels, between two
//!   coroutines on one worker (`pingpong_1_worker`), on two workers (`pingpong_2_workers`),
//!   between a coroutine on a worker and one on the `block_on` thread (`pingpong_block_on`), and
//!   between two threads with crossbeam-channel (`crossbeam_pingpong_threads`).
//! - `bounded_1024_*`: one producer, one consumer, `bounded(1024)`; time per message.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::runtime;
use criterion::{Criterion, criterion_group, criterion_main};
use pagurus::channel::bounded;

/// `iters` round trips: we send on `ping`, the partner answers on `pong`.
fn pingpong_rounds(iters: u64, spawn_partner: impl FnOnce(Box<dyn FnOnce() + Send>)) -> Duration {
    let (ping_tx, ping_rx) = bounded::<u64>(0);
    let (pong_tx, pong_rx) = bounded::<u64>(0);
    spawn_partner(Box::new(move || {
        for v in ping_rx.iter() {
            pong_tx.send(v + 1).unwrap();
        }
    }));
    // One untimed round trip: the partner is running and waiting.
    ping_tx.send(0).unwrap();
    pong_rx.recv().unwrap();
    let start = Instant::now();
    for i in 0..iters {
        ping_tx.send(i).unwrap();
        black_box(pong_rx.recv().unwrap());
    }
    start.elapsed()
}

fn pingpong(c: &mut Criterion) {
    let mut group = c.benchmark_group("channel");
    let rt1 = runtime(1);
    group.bench_function("pingpong_1_worker", |b| {
        b.iter_custom(|iters| {
            rt1.block_on(|| {
                // Spawned from a worker, the partner stays on that worker (its lifo slot).
                pagurus::spawn(move || {
                    pingpong_rounds(iters, |f| {
                        pagurus::spawn(f);
                    })
                })
                .join()
                .unwrap()
            })
        })
    });
    let rt2 = runtime(2);
    group.bench_function("pingpong_2_workers", |b| {
        b.iter_custom(|iters| {
            rt2.block_on(|| {
                let on_two = pagurus::spawn(move || {
                    pingpong_rounds(iters, |f| {
                        // The partner must start on the other worker. A spawn goes to this
                        // worker's unstealable lifo slot; a second spawn pushes the first into
                        // the stealable deque and nudges the idle worker, which steals it while
                        // this coroutine spins (without yielding) until it hears from it.
                        let me = thread::current().id();
                        let (where_tx, where_rx) = bounded::<thread::ThreadId>(1);
                        drop(pagurus::spawn(move || {
                            where_tx.send(thread::current().id()).unwrap();
                            f();
                        }));
                        drop(pagurus::spawn(|| ()));
                        let start = Instant::now();
                        loop {
                            match where_rx.try_recv() {
                                Ok(id) => {
                                    assert_ne!(id, me, "the partner runs on the other worker");
                                    break;
                                }
                                Err(_) if start.elapsed() > Duration::from_secs(10) => {
                                    panic!("the partner never started on the other worker")
                                }
                                Err(_) => std::hint::spin_loop(),
                            }
                        }
                    })
                });
                on_two.join().unwrap()
            })
        })
    });
    group.bench_function("pingpong_block_on", |b| {
        b.iter_custom(|iters| {
            // The main coroutine runs on the block_on thread; what it spawns runs on the worker.
            rt1.block_on(|| {
                pingpong_rounds(iters, |f| {
                    pagurus::spawn(f);
                })
            })
        })
    });
    group.bench_function("crossbeam_pingpong_threads", |b| {
        b.iter_custom(|iters| {
            let (ping_tx, ping_rx) = crossbeam_channel::bounded::<u64>(0);
            let (pong_tx, pong_rx) = crossbeam_channel::bounded::<u64>(0);
            let partner = thread::spawn(move || {
                for v in ping_rx.iter() {
                    pong_tx.send(v + 1).unwrap();
                }
            });
            ping_tx.send(0).unwrap();
            pong_rx.recv().unwrap();
            let start = Instant::now();
            for i in 0..iters {
                ping_tx.send(i).unwrap();
                black_box(pong_rx.recv().unwrap());
            }
            let elapsed = start.elapsed();
            drop(ping_tx);
            partner.join().unwrap();
            elapsed
        })
    });
    group.finish();
}

/// `iters` messages through `bounded(1024)` to a consumer started by `spawn_consumer`.
fn stream(iters: u64, spawn_consumer: impl FnOnce(Box<dyn FnOnce() + Send>)) -> Duration {
    let (tx, rx) = bounded::<u64>(1024);
    let (done_tx, done_rx) = bounded::<u64>(1);
    spawn_consumer(Box::new(move || {
        done_tx.send(rx.iter().fold(0, u64::wrapping_add)).unwrap();
    }));
    let start = Instant::now();
    for i in 0..iters {
        tx.send(i).unwrap();
    }
    drop(tx);
    black_box(done_rx.recv().unwrap());
    start.elapsed()
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("channel");
    let rt1 = runtime(1);
    group.bench_function("bounded_1024_spsc", |b| {
        b.iter_custom(|iters| {
            rt1.block_on(|| {
                pagurus::spawn(move || {
                    stream(iters, |f| {
                        pagurus::spawn(f);
                    })
                })
                .join()
                .unwrap()
            })
        })
    });
    group.bench_function("bounded_1024_block_on", |b| {
        b.iter_custom(|iters| {
            rt1.block_on(|| {
                stream(iters, |f| {
                    pagurus::spawn(f);
                })
            })
        })
    });
    group.bench_function("crossbeam_bounded_1024_spsc", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = crossbeam_channel::bounded::<u64>(1024);
            let consumer = thread::spawn(move || rx.iter().fold(0, u64::wrapping_add));
            let start = Instant::now();
            for i in 0..iters {
                tx.send(i).unwrap();
            }
            drop(tx);
            black_box(consumer.join().unwrap());
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, pingpong, throughput);
criterion_main!(benches);
