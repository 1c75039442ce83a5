//! The bare context switch: resume a raw coroutine and have it suspend straight back.
//!
//! Reported by `cargo xtask bench`; the figure is one resume plus one suspend (two switches).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pagurus::raw::Coroutine;

fn resume_yield_round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("raw");
    let mut co = Coroutine::new(16 * 1024, |s| {
        loop {
            s.suspend();
        }
    })
    .expect("map a coroutine stack");
    group.bench_function("resume_yield_round_trip", |b| {
        b.iter(|| black_box(co.resume()))
    });
    group.finish();
}

criterion_group!(benches, resume_yield_round_trip);
criterion_main!(benches);
