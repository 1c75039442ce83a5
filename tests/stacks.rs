//! `stack::current()`: what coroutines learn about their own stacks.

use std::cell::Cell;
use std::hint::black_box;

use pagurus::raw::Coroutine;
use pagurus::stack::{self, StackInfo};
use pagurus::{Runtime, spawn, yield_now};

fn check(info: Option<StackInfo>, size: usize) -> StackInfo {
    let info = info.expect("inside a coroutine");
    assert_eq!(info.size, size);
    assert!(info.used > 0, "{info:?}");
    assert!(info.used < info.size, "{info:?}");
    assert_eq!(info.growths, 0);
    info
}

#[test]
fn stack_current_outside_coroutines_is_none() {
    assert_eq!(stack::current(), None);
    let on_thread = std::thread::spawn(stack::current).join().unwrap();
    assert_eq!(on_thread, None);
    // After a block_on returns, this thread is a plain thread again.
    let rt = Runtime::builder().workers(1).build().unwrap();
    assert!(rt.block_on(stack::current).is_some());
    assert_eq!(stack::current(), None);
}

#[test]
fn stack_current_default_size() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let (main, child, after_yield) = rt.block_on(|| {
        let main = stack::current();
        let (child, after_yield) = spawn(|| {
            let before = stack::current();
            yield_now();
            (before, stack::current())
        })
        .join()
        .unwrap();
        (main, child, after_yield)
    });
    check(main, 4096);
    check(child, 4096);
    check(after_yield, 4096);
}

#[test]
fn stack_current_configured_size() {
    const SIZE: usize = 64 * 1024;
    let rt = Runtime::builder()
        .workers(2)
        .initial_stack_size(SIZE)
        .build()
        .unwrap();
    let (main, child) = rt.block_on(|| (stack::current(), spawn(stack::current).join().unwrap()));
    check(main, SIZE);
    check(child, SIZE);
}

#[inline(never)]
fn used_at_depth(depth: u32) -> usize {
    let pad = black_box([depth as u8; 256]);
    let used = if depth == 0 {
        stack::current().unwrap().used
    } else {
        used_at_depth(depth - 1)
    };
    black_box(&pad);
    used
}

/// `used` measures from the top of the stack: deeper calls use more of it.
#[test]
fn stack_used_grows_with_depth() {
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(64 * 1024)
        .build()
        .unwrap();
    let (shallow, deep) = rt.block_on(|| {
        spawn(|| (used_at_depth(black_box(0)), used_at_depth(black_box(20))))
            .join()
            .unwrap()
    });
    assert!(
        deep >= shallow + 20 * 256,
        "20 frames with 256-byte locals: shallow {shallow}, deep {deep}"
    );
    assert!(deep < 64 * 1024);
}

/// A raw coroutine reports its own stack, and the caller's view comes back after it suspends.
#[test]
fn stack_current_in_raw_coroutines() {
    let mut seen = Vec::new();
    let seen_ref = &mut seen;
    // SAFETY: `seen` lives on the test thread's own stack, which never moves.
    let co = unsafe {
        Coroutine::new_unchecked(16 * 1024, move |s| {
            seen_ref.push(stack::current());
            s.suspend();
            seen_ref.push(stack::current());
        })
    };
    let mut co = co.unwrap();
    assert!(co.resume());
    assert_eq!(stack::current(), None, "back on the thread's own stack");
    assert!(!co.resume());
    drop(co);
    assert_eq!(seen.len(), 2);
    for info in seen {
        check(info, 16 * 1024);
    }

    // Nested: a raw coroutine inside a scheduled one. Making a stack takes more than the 4 KiB a
    // coroutine starts with in a debug build (the arena's lists), so the outer one starts larger
    // and must not grow.
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(64 << 10)
        .build()
        .unwrap();
    let (outer_before, inner, outer_after) = rt.block_on(|| {
        spawn(|| {
            let before = stack::current();
            // Handed over in a thread-local: a raw coroutine's closure may not borrow the outer
            // coroutine's locals (its stack may move).
            thread_local! {
                static INNER: Cell<Option<StackInfo>> = const { Cell::new(None) };
            }
            let mut co =
                Coroutine::new(8 * 1024, |_| INNER.with(|c| c.set(stack::current()))).unwrap();
            assert!(!co.resume());
            drop(co);
            (before, INNER.with(Cell::get), stack::current())
        })
        .join()
        .unwrap()
    });
    check(outer_before, 64 << 10);
    check(inner, 8 * 1024);
    check(outer_after, 64 << 10);
}
