//! `stack::on_system_stack`: large stacks for a moment, panics across the switch, nesting.

use pagurus::{Runtime, stack};

fn runtime() -> Runtime {
    Runtime::builder().workers(1).build().unwrap()
}

#[test]
fn a_panic_on_the_system_stack_reaches_the_caller_and_the_coroutine_goes_on() {
    let (msg, info_after, remaining_after_yield) = runtime().block_on(|| {
        pagurus::spawn(|| {
            let err = std::panic::catch_unwind(|| {
                stack::on_system_stack(|| -> u32 { panic!("deep {}", std::hint::black_box(42)) })
            })
            .unwrap_err();
            let msg = err
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            // Back on the coroutine stack, with the system stack marked inactive again: a stack
            // to describe, and suspending works (it panics on the system stack).
            let info = stack::current();
            pagurus::yield_now();
            (msg, info, stack::remaining())
        })
        .join()
        .unwrap()
    });
    assert_eq!(msg, "deep 42");
    assert!(info_after.is_some(), "on the coroutine stack again");
    assert!(
        remaining_after_yield.is_some_and(|r| r > 0 && r < 4096),
        "still on the 4 KiB coroutine stack after the yield: {remaining_after_yield:?}"
    );
}

/// The frame the test puts on the system stack: 2 MiB.
const BIG_FRAME: usize = 2 << 20;

/// Bytes of the read/write mapping of this process that contains `addr` (from /proc/self/maps).
fn mapping_size(addr: usize) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|line| {
            let range = line.split_whitespace().next()?;
            let (lo, hi) = range.split_once('-')?;
            let lo = usize::from_str_radix(lo, 16).ok()?;
            let hi = usize::from_str_radix(hi, 16).ok()?;
            (lo..hi).contains(&addr).then_some(hi - lo)
        })
        .next()
        .expect("a mapping holds the stack")
}

#[test]
fn the_system_stack_holds_megabytes_and_nests() {
    let (sum, nested_is_none, outside_is_some, system_stack_bytes) = runtime().block_on(|| {
        pagurus::spawn(|| {
            let bytes = stack::on_system_stack(|| {
                let local = 0u8;
                mapping_size(std::hint::black_box(&local) as *const u8 as usize)
            });
            // The coroutine's own size, not its mapping's: an arena stack shares one mapping
            // with every other stack (see design.md section 2).
            assert!(
                stack::current().unwrap().size < bytes,
                "the coroutine runs on a different, smaller stack"
            );
            let sum = stack::on_system_stack(|| {
                let mut big = [3u8; BIG_FRAME];
                std::hint::black_box(&mut big);
                let inner = stack::on_system_stack(|| stack::current().is_none());
                (big.iter().map(|&b| b as u64).sum::<u64>(), inner)
            });
            (sum.0, sum.1, stack::current().is_some(), bytes)
        })
        .join()
        .unwrap()
    });
    assert_eq!(sum, 3 * BIG_FRAME as u64);
    assert!(nested_is_none && outside_is_some);
    // Neighbouring read/write mappings may merge with it, so at least.
    assert!(
        system_stack_bytes >= stack::SYSTEM_STACK_SIZE,
        "the system stack's mapping has {system_stack_bytes} bytes, less than SYSTEM_STACK_SIZE"
    );
}

#[test]
fn ensure_on_the_system_stack_does_nothing() {
    let growths = runtime().block_on(|| {
        pagurus::spawn(|| {
            stack::on_system_stack(|| {
                assert_eq!(stack::remaining(), None);
                stack::ensure(64 << 20);
            });
            stack::current().unwrap().growths
        })
        .join()
        .unwrap()
    });
    assert_eq!(growths, 0);
}

/// A closure whose frame is far larger than the coroutine stack's guard region: it runs on the
/// system stack, and the coroutine's own frame stays small. `on_system_stack` also has a branch
/// that calls the closure directly (outside coroutines); were that call inlined, the closure's
/// 6 MiB of locals would become part of the caller's frame on the 4 KiB coroutine stack, and the
/// probe of that frame would run 6 MiB below the stack before the switch (issue 12).
#[test]
fn a_six_mib_frame_on_the_system_stack_leaves_the_coroutine_stack_alone() {
    const BIG: usize = 6 << 20;
    let (sum, info) = runtime().block_on(|| {
        pagurus::spawn(|| {
            let sum = stack::on_system_stack(|| {
                let big = [1u8; BIG];
                std::hint::black_box(&big);
                big.iter().map(|&b| usize::from(b)).sum::<usize>()
            });
            (sum, stack::current().unwrap())
        })
        .join()
        .unwrap()
    });
    assert_eq!(sum, BIG);
    assert_eq!(
        (info.size, info.growths),
        (4096, 0),
        "the coroutine stack did not grow"
    );
}
