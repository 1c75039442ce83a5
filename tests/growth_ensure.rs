//! The explicit growth path: `stack::ensure` moves a coroutine to a larger stack at a call, with
//! no signal, and every pointer into the old stack follows.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use common::DropCounter;
use pagurus::{Runtime, stack};

/// A disguise for an address, so the conservative scan does not recognise it as a pointer.
const MASK: usize = 0x5a5a_5a5a_5a5a_5a5a;

/// Recursion that needs about `depth` KiB of stack; returns a checksum of its frames.
#[inline(never)]
fn use_stack(depth: usize) -> u64 {
    let frame = black_box([depth as u64; 128]);
    if depth == 0 {
        frame[5]
    } else {
        use_stack(depth - 1) + black_box(frame[64])
    }
}

/// Frames that each hold an array and a `&mut` to the previous frame's array, growing the stack
/// at the innermost one; returns the sum walked through the references after the move.
#[inline(never)]
fn chain(depth: usize, prev: Option<&mut [u64; 4]>, grow_to: usize) -> u64 {
    let mut mine = [depth as u64; 4];
    let sum_here: u64 = mine.iter().sum();
    if depth == 0 {
        // black_box keeps the compiler from folding the two XORs back into the live pointer.
        let disguised = black_box((&mine as *const _ as usize) ^ MASK);
        stack::ensure(grow_to);
        // The stack moved under us: our own array is elsewhere now, but the disguised copy of
        // its old address was not adjusted.
        let old_address = black_box(disguised) ^ MASK;
        assert_ne!(
            &mine as *const _ as usize, old_address,
            "the stack must have moved"
        );
        let prev = prev.expect("depth > 0 frames pass a reference");
        prev[0] += 1000; // write through a moved reference
        return sum_here + prev.iter().sum::<u64>();
    }
    let below = chain(depth - 1, Some(&mut mine), grow_to);
    // The callee wrote into our array through its reference: it must land in our (moved) frame.
    assert_eq!(mine[0], depth as u64 + if depth == 1 { 1000 } else { 0 });
    below + sum_here + prev.map_or(0, |p| p.iter().sum())
}

fn small_runtime() -> Runtime {
    Runtime::builder()
        .workers(1)
        .initial_stack_size(16 * 1024)
        .build()
        .unwrap()
}

#[test]
fn ensure_grows_without_a_signal_and_moves_pointers() {
    let rt = small_runtime();
    let (sum, info) = rt.block_on(|| {
        pagurus::spawn(|| {
            let sum = chain(5, None, 1 << 20);
            (sum, stack::current().unwrap())
        })
        .join()
        .unwrap()
    });
    // Frames 0..=5 hold [d; 4]; each frame d >= 1 also adds its caller's array (d + 1) once,
    // and frame 0 adds frame 1's array after the +1000.
    let expected: u64 = (0..=5u64).map(|d| 4 * d).sum::<u64>()
        + (1..5u64).map(|d| 4 * (d + 1)).sum::<u64>()
        + 4
        + 1000;
    assert_eq!(sum, expected);
    assert_eq!(info.growths, 1, "one move");
    assert!(
        info.size >= 2 << 20,
        "a 1 MiB request from a 16 KiB stack gives at least 2 MiB, got {}",
        info.size
    );
}

#[test]
fn headroom_after_ensure_is_usable() {
    let rt = small_runtime();
    let sum = rt.block_on(|| {
        pagurus::spawn(|| {
            stack::ensure(512 * 1024);
            assert!(stack::remaining().unwrap() >= 512 * 1024);
            // ~300 KiB of recursion: it would overflow the 16 KiB stack and abort without growth.
            use_stack(300)
        })
        .join()
        .unwrap()
    });
    assert_eq!(sum, (1..=300u64).sum::<u64>());
}

#[test]
fn ensure_with_headroom_does_nothing() {
    let rt = small_runtime();
    let info = rt.block_on(|| {
        pagurus::spawn(|| {
            stack::ensure(1024);
            stack::ensure(0);
            stack::current().unwrap()
        })
        .join()
        .unwrap()
    });
    assert_eq!(info.growths, 0);
    assert_eq!(info.size, 16 * 1024);
}

#[test]
fn ensure_outside_coroutines_is_a_no_op() {
    assert_eq!(stack::remaining(), None);
    stack::ensure(1 << 30);
    assert!(stack::current().is_none());
}

#[test]
fn repeated_growth_keeps_the_main_coroutine_intact() {
    let rt = small_runtime();
    let mut owned = vec![1u64, 2, 3]; // borrowed from the caller's thread stack: never moves
    let (sizes, local_sum) = rt.block_on(|| {
        let local = [7u64; 16];
        let r = &local;
        let mut sizes = Vec::new();
        for shift in 15..22 {
            stack::ensure(1 << shift);
            sizes.push(stack::current().unwrap().size);
        }
        owned.push(4);
        (sizes, r.iter().sum::<u64>())
    });
    assert_eq!(local_sum, 7 * 16);
    assert_eq!(owned, [1, 2, 3, 4]);
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    assert!(*sizes.last().unwrap() >= 2 << 20, "{sizes:?}");
}

#[test]
fn raw_coroutines_grow_too() {
    let mut seen = Vec::new();
    let mut co = pagurus::raw::Coroutine::new(4096, |s| {
        let x = [3u64; 8];
        let r = &x;
        stack::ensure(256 * 1024);
        s.suspend();
        let info = stack::current().unwrap();
        assert_eq!(info.growths, 1);
        assert!(info.size >= 256 * 1024);
        black_box(use_stack(100));
        assert_eq!(r.iter().sum::<u64>(), 24);
    })
    .unwrap();
    while co.resume() {
        seen.push(());
    }
    assert_eq!(seen.len(), 1);
}

#[test]
fn panic_after_growth_runs_destructors_and_reaches_join() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let err = rt.block_on(|| {
        pagurus::spawn(move || {
            let _outer = DropCounter(d.clone());
            for shift in 13..21 {
                stack::ensure(1 << shift); // 8 growths from 4 KiB
            }
            let _inner = DropCounter(d);
            assert_eq!(stack::current().unwrap().growths, 8);
            panic!("after {} growths", stack::current().unwrap().growths);
        })
        .join()
        .unwrap_err()
    });
    assert_eq!(
        common::panic_message(&*err).as_deref(),
        Some("after 8 growths")
    );
    assert_eq!(drops.load(SeqCst), 2);
}
