//! Channel costs, measured from inside coroutines so that only pagurus is on the clock, next to
//! crossbeam-channel between two OS threads in the same run.
//!
//! - `pingpong_*`: a round trip (`send` then `recv`) over two rendezvous channels, between two
//!   coroutines on one worker, between a coroutine on a worker and one on the `block_on` thread
//!   (two threads), and between two threads with crossbeam-channel.
//! - `bounded1024_*`: one producer, one consumer, `bounded(1024)`; time per message.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use pagurus::Runtime;
use pagurus::channel::bounded;

fn runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .build()
        .expect("start a runtime")
}

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
    group.bench_function("pingpong_same_worker", |b| {
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
    group.bench_function("pingpong_two_threads", |b| {
        b.iter_custom(|iters| {
            // The main coroutine runs on the block_on thread; what it spawns runs on the worker.
            rt1.block_on(|| {
                pingpong_rounds(iters, |f| {
                    pagurus::spawn(f);
                })
            })
        })
    });
    group.bench_function("pingpong_crossbeam_threads", |b| {
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
    group.bench_function("bounded1024_same_worker", |b| {
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
    group.bench_function("bounded1024_two_threads", |b| {
        b.iter_custom(|iters| {
            rt1.block_on(|| {
                stream(iters, |f| {
                    pagurus::spawn(f);
                })
            })
        })
    });
    group.bench_function("bounded1024_crossbeam_threads", |b| {
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
