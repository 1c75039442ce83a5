//! Many coroutines growing at once: 1,000 coroutines on a multi-worker runtime recurse to
//! different depths, yielding inside the recursion so that their growths interleave on each
//! worker, and each checks every frame and returns a checksum. Run once, and twice in one
//! runtime (the second round grows into stacks the first round returned to the pools).

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use pagurus::stack::{self, StackInfo};
use pagurus::{Runtime, spawn, yield_now};

const COROUTINES: u64 = 1000;
/// Words per frame: 256 bytes of array in every frame.
const FRAME_WORDS: usize = 32;
const YIELD_EVERY: u64 = 64;

fn depth_of(i: u64) -> u64 {
    50 + (i * 37) % 2000
}

/// What frame `d` of coroutine `i` holds in word `k`.
fn word(i: u64, d: u64, k: usize) -> u64 {
    (i << 40) ^ (d << 12) ^ (k as u64 * 0x9e37_79b9) ^ 0xa5
}

/// Recursion of `d` + 1 frames of at least 256 bytes each, yielding every `YIELD_EVERY` frames
/// on the way down and up; every frame checks its array after its callee returns and adds it to
/// the sum. Returns the sum and the stack in use at the bottom.
#[inline(never)]
fn recurse(i: u64, d: u64, progress: &AtomicUsize) -> (u64, usize) {
    let mut frame = [0u64; FRAME_WORDS];
    for (k, w) in frame.iter_mut().enumerate() {
        *w = word(i, d, k);
    }
    black_box(&mut frame);
    if d.is_multiple_of(YIELD_EVERY) {
        progress.fetch_add(1, SeqCst);
        yield_now();
    }
    let (below, used) = if d == 0 {
        (0, stack::current().unwrap().used)
    } else {
        recurse(i, d - 1, progress)
    };
    if d % YIELD_EVERY == 32 {
        yield_now();
    }
    black_box(&mut frame);
    for (k, &w) in frame.iter().enumerate() {
        assert_eq!(w, word(i, d, k), "coroutine {i}, frame {d}, word {k}");
    }
    let sum = frame.iter().fold(below, |s, &w| s.wrapping_add(w));
    (sum, used)
}

fn expected_sum(i: u64) -> u64 {
    (0..=depth_of(i))
        .flat_map(|d| (0..FRAME_WORDS).map(move |k| word(i, d, k)))
        .fold(0, u64::wrapping_add)
}

struct Outcome {
    sum: u64,
    used_at_bottom: usize,
    start: StackInfo,
    end: StackInfo,
}

/// Spawns the 1,000 coroutines from the main coroutine, joins them all, and checks each.
fn round(rt: &Runtime, label: &str) {
    let progress = Arc::new(AtomicUsize::new(0));
    let outcomes: Vec<Outcome> = rt.block_on(|| {
        let handles: Vec<_> = (0..COROUTINES)
            .map(|i| {
                let progress = progress.clone();
                spawn(move || {
                    let start = stack::current().unwrap();
                    let (sum, used_at_bottom) = recurse(i, depth_of(i), &progress);
                    Outcome {
                        sum,
                        used_at_bottom,
                        start,
                        end: stack::current().unwrap(),
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(outcomes.len() as u64, COROUTINES);
    let mut grew = 0;
    for (i, o) in outcomes.iter().enumerate() {
        let i = i as u64;
        let depth = depth_of(i);
        assert_eq!(
            o.sum,
            expected_sum(i),
            "{label}: coroutine {i} (depth {depth})"
        );
        assert_eq!(o.start.size, 4096, "{label}: coroutine {i} starts on 4 KiB");
        assert_eq!(o.start.growths, 0, "{label}: coroutine {i}");
        let need = (depth as usize + 1) * FRAME_WORDS * 8;
        assert!(
            o.end.size.is_power_of_two(),
            "{label}: coroutine {i}: size {}",
            o.end.size
        );
        assert!(
            o.end.size >= need && o.end.size >= o.used_at_bottom,
            "{label}: coroutine {i} (depth {depth}, needs {need} bytes, used {}): size {}",
            o.used_at_bottom,
            o.end.size
        );
        // Each growth at least doubles the stack.
        let max_growths = (o.end.size / 4096).trailing_zeros() as u64;
        assert!(
            o.end.growths >= 1 && o.end.growths <= max_growths,
            "{label}: coroutine {i}: {:?}",
            o.end
        );
        grew += 1;
    }
    assert_eq!(grew, COROUTINES);
    let yields: usize = (0..COROUTINES)
        .map(|i| (depth_of(i) / YIELD_EVERY + 1) as usize)
        .sum();
    assert_eq!(progress.load(SeqCst), yields);
}

#[test]
fn thousand_coroutines_grow_to_different_depths_while_yielding() {
    // Every coroutine grows from 4 KiB: no adaptive start size.
    let rt = Runtime::builder()
        .workers(4)
        .adaptive_stack_size(false)
        .build()
        .unwrap();
    round(&rt, "round 1");
}

/// The same workload twice in one runtime, with the quarantine off so that the stacks the first
/// round grew out of and finished on go back to the pools and are reused by the second round
/// (as new stacks and as growth targets).
#[test]
fn second_round_reuses_pooled_stacks_safely() {
    let rt = Runtime::builder()
        .workers(4)
        .stack_quarantine(false)
        .adaptive_stack_size(false)
        .build()
        .unwrap();
    round(&rt, "round 1");
    round(&rt, "round 2");
    // And once more, with coroutines that keep what they hold across several growths and a
    // yield, on stacks that earlier rounds used.
    let sums = rt.block_on(|| {
        let handles: Vec<_> = (0..200u64)
            .map(|i| {
                spawn(move || {
                    let mine = [i; 16];
                    let r = &mine;
                    let a = common::recurse_kib(64 + i % 64);
                    yield_now();
                    let b = common::recurse_kib(256 + i);
                    r.iter().sum::<u64>() + a + b
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    for (i, sum) in sums.into_iter().enumerate() {
        let i = i as u64;
        let a = 64 + i % 64;
        let b = 256 + i;
        assert_eq!(
            sum,
            16 * i + a * (a + 1) / 2 + b * (b + 1) / 2,
            "coroutine {i}"
        );
    }
}
