//! Adaptive initial stack size per spawn site: a site whose coroutines keep growing starts its
//! next ones on the size they grew to; one whose coroutines stop needing it goes back.

use std::hint::black_box;

use pagurus::stack::{self, StackInfo};
use pagurus::{JoinHandle, Runtime, spawn, stats};

/// About `depth` KiB of stack, in 1 KiB frames.
#[inline(never)]
fn deep(depth: u64) -> u64 {
    let frame = black_box([depth; 128]);
    if depth == 0 {
        return 0;
    }
    deep(depth - 1) + frame[(depth % 128) as usize] - depth + 1
}

/// What one coroutine saw: its stack when it started, and when it finished.
struct Seen {
    start: StackInfo,
    end: StackInfo,
}

/// The body of every coroutine here: `depth` KiB of stack, and what it saw.
fn run(depth: u64) -> Seen {
    let start = stack::current().unwrap();
    assert_eq!(deep(depth), depth);
    Seen {
        start,
        end: stack::current().unwrap(),
    }
}

/// Every coroutine of this test's "site A" comes from this one `spawn` call.
fn site_a(depth: u64) -> JoinHandle<Seen> {
    spawn(move || run(depth))
}

/// "Site B": another `spawn` call, the same code.
fn site_b(depth: u64) -> JoinHandle<Seen> {
    spawn(move || run(depth))
}

#[test]
fn a_site_that_keeps_growing_starts_bigger_and_goes_back_when_it_stops() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| {
        let adaptive_before = stats().adaptive_starts;
        // Four coroutines in a row grow past 16 KiB: the site learns.
        let first: Vec<Seen> = (0..4).map(|_| site_a(20).join().unwrap()).collect();
        for seen in &first {
            assert_eq!(seen.start.size, 4096);
            assert!(seen.end.growths > 0 && seen.end.size >= 32 << 10);
        }
        let learned = first.iter().map(|s| s.end.size).min().unwrap();
        let next = site_a(20).join().unwrap();
        assert_eq!(next.start.size, learned, "starts on what its site grew to");
        assert_eq!(next.end.growths, 0, "and no longer moves");
        assert!(stats().adaptive_starts > adaptive_before);
        // Another site is not affected.
        let other = site_b(0).join().unwrap();
        assert_eq!(other.start.size, 4096);
        // The site's coroutines stop needing the stack: within one probe period (64 starts) a
        // coroutine starts small, does not grow, and the site goes back to 4 KiB.
        let mut went_back = None;
        for i in 0..70 {
            let seen = site_a(0).join().unwrap();
            assert!(seen.start.size == learned || seen.start.size == 4096);
            assert_eq!(seen.end.growths, 0);
            if seen.start.size == 4096 {
                went_back = Some(i);
                break;
            }
        }
        assert!(went_back.is_some(), "a probe started small");
        for _ in 0..10 {
            assert_eq!(site_a(0).join().unwrap().start.size, 4096);
        }
    });
}
