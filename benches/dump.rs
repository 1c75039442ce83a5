//! Coroutine dumps (`pagurus::dump()`).
//!
//! - `parked_100k`: a dump of 100,000 coroutines parked on channels (2 workers), its text
//!   formatted into a byte counter: collection on the workers (most of them compacted, their frames
//!   walked in a scratch copy of their image), symbolisation, formatting. Issue 13's target:
//!   under a second.

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

mod common;

use common::runtime;
use criterion::{Criterion, criterion_group, criterion_main};

const PARKED: usize = 100_000;

#[inline(never)]
fn wait_for_work(rx: pagurus::channel::Receiver<u32>) -> u32 {
    let v = rx.recv().unwrap_or(0);
    black_box(v)
}

fn parked(c: &mut Criterion) {
    let mut group = c.benchmark_group("dump");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    let rt = runtime(2);
    rt.block_on(|| {
        let (tx, rx) = pagurus::channel::bounded::<u32>(1);
        let handles: Vec<_> = (0..PARKED)
            .map(|_| {
                let rx = rx.clone();
                pagurus::spawn(move || wait_for_work(rx))
            })
            .collect();
        // Until every one has started and parked (a condition, not a duration), each showing
        // its own function first: the runtime's frames folded away, also with line tables alone
        // (this profile's debug information), which name functions without their path.
        let shows_own_code = |c: &pagurus::CoroutineSnapshot| {
            c.frames
                .first()
                .and_then(|f| f.function.as_deref())
                .is_some_and(|f| f.ends_with("wait_for_work"))
        };
        loop {
            let dump = pagurus::dump();
            let n = dump
                .coroutines()
                .iter()
                .filter(|c| matches!(c.state, pagurus::CoroutineState::Parked(_)))
                .inspect(|c| assert!(shows_own_code(c), "{c}"))
                .count();
            if n >= PARKED {
                break;
            }
            pagurus::time::sleep(Duration::from_millis(10));
        }
        group.bench_function("parked_100k", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let dump = pagurus::dump();
                    assert!(dump.coroutines().len() > PARKED);
                    // Not `io::sink()`, whose `write_fmt` skips the formatting.
                    let mut text = Counter(0);
                    write!(text, "{dump}").unwrap();
                    assert!(text.0 > PARKED * 100, "{} bytes", text.0);
                }
                start.elapsed()
            })
        });
        drop(tx);
        for h in handles {
            let _ = h.join();
        }
    });
    group.finish();
}

/// Counts the bytes of text written to it.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

criterion_group!(benches, parked);
criterion_main!(benches);
