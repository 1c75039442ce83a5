//! Stack growth costs (design.md, "Measured costs").
//!
//! - `chain_1m_fault` / `chain_16m_fault`: a recursion of 112-byte frames, each pointing at the
//!   previous one, from a fresh 4 KiB coroutine stack down to 1 MiB (16 MiB) of stack: every
//!   doubling is a fault, a copy and a pointer fix-up. Go 1.23 does 2 KiB -> 1 MiB in 343 us.
//! - `chain_1m_pregrown` / `chain_16m_pregrown`: the same recursion on a stack grown beforehand,
//!   so the difference is what growth costs.
//! - `ensure_no_growth`: `stack::ensure` with enough headroom (the check alone).
//! - `grow_4k_to_8k_fault` / `grow_4k_to_8k_ensure`: one doubling, by fault and by `ensure`.
//!
//! Each iteration of the growth benchmarks starts a new coroutine (the clock runs inside it,
//! around the growing part only).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use pagurus::{Runtime, stack};

/// A 112-byte frame (with the return address and the saved frame data) linking to its caller's.
struct Node<'a> {
    payload: [u64; 10],
    prev: Option<&'a Node<'a>>,
}

#[inline(never)]
fn chain(depth: u32, prev: Option<&Node<'_>>) -> u64 {
    let node = Node {
        payload: [depth as u64; 10],
        prev,
    };
    let node = black_box(&node);
    if depth == 0 {
        // Walk the whole chain back up: every link was moved by the growth.
        let mut sum = 0;
        let mut cur = Some(node);
        while let Some(n) = cur {
            sum += n.payload[9];
            cur = n.prev;
        }
        sum
    } else {
        chain(depth - 1, Some(node))
    }
}

/// Frames needed for `bytes` of stack, measured once: the frame size depends on the build.
fn frames_for(rt: &Runtime, bytes: usize) -> u32 {
    rt.block_on(|| {
        pagurus::spawn(move || {
            let before = stack::current().unwrap().used;
            let mut used = 0;
            #[inline(never)]
            fn probe(depth: u32, prev: Option<&Node<'_>>, out: &mut usize) -> u64 {
                let node = Node {
                    payload: [depth as u64; 10],
                    prev,
                };
                if depth == 0 {
                    *out = stack::current().unwrap().used;
                    return black_box(&node).payload[0];
                }
                probe(depth - 1, Some(black_box(&node)), out)
            }
            probe(1000, None, &mut used);
            let per_frame = (used - before) / 1000;
            (bytes / per_frame) as u32
        })
        .join()
        .unwrap()
    })
}

fn run_each(
    rt: &Runtime,
    iters: u64,
    body: impl Fn() -> Duration + Send + Sync + Copy + 'static,
) -> Duration {
    rt.block_on(|| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            total += pagurus::spawn(body).join().unwrap();
        }
        total
    })
}

fn growth(c: &mut Criterion) {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let mut group = c.benchmark_group("growth");
    for (name, bytes) in [("1m", 1usize << 20), ("16m", 16 << 20)] {
        let depth = frames_for(&rt, bytes);
        group.bench_function(format!("chain_{name}_fault"), |b| {
            b.iter_custom(|iters| {
                run_each(&rt, iters, move || {
                    let t = Instant::now();
                    black_box(chain(depth, None));
                    t.elapsed()
                })
            })
        });
        group.bench_function(format!("chain_{name}_pregrown"), |b| {
            b.iter_custom(|iters| {
                run_each(&rt, iters, move || {
                    stack::ensure(bytes + (bytes >> 2));
                    let t = Instant::now();
                    black_box(chain(depth, None));
                    t.elapsed()
                })
            })
        });
    }
    group.bench_function("grow_4k_to_8k_fault", |b| {
        b.iter_custom(|iters| {
            run_each(&rt, iters, || {
                let t = Instant::now();
                // A frame just over the rest of a 4 KiB stack: one fault, one doubling.
                black_box(touch_5k());
                t.elapsed()
            })
        })
    });
    group.bench_function("grow_4k_to_8k_ensure", |b| {
        b.iter_custom(|iters| {
            run_each(&rt, iters, || {
                let t = Instant::now();
                stack::ensure(5 * 1024);
                t.elapsed()
            })
        })
    });
    group.bench_function("ensure_no_growth", |b| {
        b.iter_custom(|iters| {
            rt.block_on(|| {
                pagurus::spawn(move || {
                    stack::ensure(64 * 1024);
                    let t = Instant::now();
                    for _ in 0..iters {
                        stack::ensure(black_box(1024));
                    }
                    t.elapsed()
                })
                .join()
                .unwrap()
            })
        })
    });
    group.finish();
}

#[inline(never)]
fn touch_5k() -> u8 {
    let buf = black_box([1u8; 5 * 1024]);
    buf[100]
}

criterion_group!(benches, growth);
criterion_main!(benches);
