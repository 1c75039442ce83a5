//! Timers (issue 8, "Speed"): 10,000 coroutines on 2 workers, each doing
//! `pagurus::time::sleep(1 ms)` ten times.
//!
//! - `sleep_fanout_wall`: wall time of the whole run (spawn to the last join); ten 1 ms sleeps
//!   in a row take 10 ms at best, so the rest is what the timers and the scheduler add.
//!   Target: <= 20 ms.
//! - `sleep_cpu_per_sleep`: CPU time of the process (getrusage user + system, every thread)
//!   across the run, divided by the 100,000 sleeps. Target: <= 300 ns. Criterion's "time per
//!   iteration" for this row is that CPU time per sleep.
//!
//! Go's `time.Sleep` fan-out (`benches/go/goroutines`) measures the same two figures.

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use pagurus::Runtime;

const COROUTINES: u64 = 10_000;
const SLEEPS_EACH: u64 = 10;

/// The process's user + system CPU time so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage writes a `rusage` into the zeroed one we own.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut ru), 0);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// One fan-out: returns its wall time and the CPU time the process spent meanwhile.
fn fan_out(rt: &Runtime) -> (Duration, Duration) {
    rt.block_on(|| {
        let cpu = cpu_time();
        let start = Instant::now();
        let handles: Vec<_> = (0..COROUTINES)
            .map(|_| {
                pagurus::spawn(|| {
                    for _ in 0..SLEEPS_EACH {
                        pagurus::time::sleep(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("a sleeper panicked");
        }
        (start.elapsed(), cpu_time() - cpu)
    })
}

fn sleep_fanout(c: &mut Criterion) {
    let rt = Runtime::builder()
        .workers(2)
        .build()
        .expect("start a runtime");
    fan_out(&rt); // map the stacks once, as Go's warm-up round does
    let mut group = c.benchmark_group("time");
    // Each iteration is a whole run of >= 10 ms: few samples, each of the same iteration count.
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function("sleep_fanout_wall", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| fan_out(&rt).0).sum())
    });
    group.bench_function("sleep_cpu_per_sleep", |b| {
        b.iter_custom(|iters| {
            let cpu: Duration = (0..iters).map(|_| fan_out(&rt).1).sum();
            // One "iteration" reports the CPU time of one sleep.
            cpu / (COROUTINES * SLEEPS_EACH) as u32
        })
    });
    group.finish();
}

criterion_group!(benches, sleep_fanout);
criterion_main!(benches);
