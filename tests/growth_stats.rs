//! Growth counters: `stats().growths` and `stats().bytes_copied` account for every move.
//!
//! Reads the process-wide `stats()`, so this file holds exactly one test.

mod common;

use pagurus::stack::{self, StackInfo};
use pagurus::{Runtime, spawn, stats, yield_now};

#[test]
fn growth_counters_cover_every_move() {
    let before = stats();
    let rt = Runtime::builder()
        .workers(2)
        .adaptive_stack_size(false)
        .build()
        .unwrap();
    let (main_info, infos) = rt.block_on(|| {
        let handles: Vec<_> = (0..64u64)
            .map(|i| {
                spawn(move || {
                    let start = stack::current().unwrap();
                    assert_eq!((start.size, start.growths), (4096, 0));
                    // By fault: recursion of 1 KiB frames, 16 KiB to 2 MiB deep.
                    let kib = 16 << (i % 8);
                    let sum = common::recurse_kib(kib);
                    assert_eq!(sum, kib * (kib + 1) / 2);
                    yield_now();
                    let info = stack::current().unwrap();
                    if i % 4 == 0 {
                        // And through `ensure`, past what the recursion needed.
                        stack::ensure(2 * info.size);
                    }
                    (kib, info, stack::current().unwrap())
                })
            })
            .collect();
        let infos: Vec<(u64, StackInfo, StackInfo)> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        (stack::current().unwrap(), infos)
    });
    drop(rt);
    let after = stats();

    let total: u64 = infos.iter().map(|(_, _, e)| e.growths).sum::<u64>() + main_info.growths;
    for (i, (kib, fault, end)) in infos.iter().enumerate() {
        assert!(fault.growths >= 1, "coroutine {i}: {fault:?}");
        assert!(
            fault.size >= (*kib as usize) << 10,
            "coroutine {i}: {fault:?}"
        );
        if i % 4 == 0 {
            assert_eq!(end.growths, fault.growths + 1, "coroutine {i}: one ensure");
            assert!(end.size >= 2 * fault.size, "coroutine {i}: {end:?}");
        } else {
            assert_eq!(
                (end.size, end.growths),
                (fault.size, fault.growths),
                "coroutine {i}"
            );
        }
    }

    let growths = after.growths - before.growths;
    let copied = after.bytes_copied - before.bytes_copied;
    // The only coroutines in this process are the ones above.
    assert_eq!(growths, total, "stats().growths vs StackInfo.growths");
    // A recursion faults when its stack is full: its last move copied (nearly) the whole old
    // stack, at least a quarter of the size it reached (growth by fault at most quadruples).
    let lower_bound: u64 = infos.iter().map(|(_, f, _)| f.size as u64 / 8).sum();
    assert!(
        copied >= lower_bound,
        "{copied} bytes copied, expected at least {lower_bound}"
    );
}
