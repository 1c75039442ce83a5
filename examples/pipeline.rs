//! A three-stage pipeline over bounded channels: a generator coroutine, a pool of worker
//! coroutines, and a collector that gives up on stragglers after a timeout.
//!
//! Run with `cargo run --example pipeline`.
//!
//! ```text
//!   generator --bounded(16)--> 8 workers --bounded(16)--> collector
//!                                  ^                          |
//!                                  +---- quit (disconnect) ---+
//! ```
//!
//! Four jobs are "slow" (their workers sleep for a second); the collector waits at most 200 ms
//! for each next result (`select!` with `default(dur)`), and when that passes it
//! stops, which disconnects the results channel and makes the workers still busy find out on
//! their next send.

use std::time::{Duration, Instant};

use pagurus::channel::{Receiver, bounded};
use pagurus::select;

const JOBS: u64 = 1_000;
const WORKERS: usize = 8;

fn main() {
    let start = Instant::now();
    let report = pagurus::run(|| {
        let (jobs_tx, jobs_rx) = bounded::<u64>(16);
        let (results_tx, results_rx) = bounded::<(usize, u64, u64)>(16);

        let generator = pagurus::spawn(move || {
            for job in 0..JOBS {
                if jobs_tx.send(job).is_err() {
                    return job; // every worker is gone
                }
            }
            JOBS
        });

        let workers: Vec<_> = (0..WORKERS)
            .map(|id| {
                let (jobs, results) = (jobs_rx.clone(), results_tx.clone());
                pagurus::spawn(move || {
                    let mut done = 0;
                    for job in jobs.iter() {
                        if job % 250 == 249 {
                            pagurus::time::sleep(Duration::from_secs(1)); // a straggler
                        }
                        if results.send((id, job, job * job)).is_err() {
                            break; // the collector stopped
                        }
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        drop((jobs_rx, results_tx));

        let collected = collect(&results_rx, Duration::from_millis(200));
        drop(results_rx); // disconnects: busy workers stop at their next send
        let generated = generator.join().unwrap();
        let per_worker: Vec<u64> = workers.into_iter().map(|h| h.join().unwrap()).collect();
        (generated, collected, per_worker)
    });
    let (generated, (received, sum, timed_out), per_worker) = report;
    println!("generator: {generated} jobs sent");
    println!("workers:   results sent per worker {per_worker:?}");
    println!(
        "collector: {received} results, sum of squares {sum}, {}",
        if timed_out {
            "stopped after waiting 200 ms for the next result (the stragglers)"
        } else {
            "all results in"
        }
    );
    println!("elapsed:   {:.0?}", start.elapsed());
    assert!(
        timed_out,
        "the stragglers sleep for a second; the collector gives up earlier"
    );
    assert_eq!(per_worker.iter().sum::<u64>(), received);
    let stragglers = JOBS / 250;
    assert!(
        received <= JOBS - stragglers,
        "the stragglers' results never arrive"
    );
    assert_eq!(generated, JOBS);
}

/// Receives results until none arrives within `patience`; returns (count, sum, timed out).
fn collect(results: &Receiver<(usize, u64, u64)>, patience: Duration) -> (u64, u64, bool) {
    let (mut count, mut sum) = (0, 0);
    loop {
        select! {
            recv(results) -> msg => match msg {
                Ok((_worker, _job, square)) => {
                    count += 1;
                    sum += square;
                }
                Err(_) => return (count, sum, false), // every worker finished
            },
            default(patience) => return (count, sum, true),
        }
    }
}
