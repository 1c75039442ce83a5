//! Frames larger than the guard region (issue 12, defect 3): a probe loop computes the frame's
//! lower bound before its first probe faults, and that bound lies below the guard. Growth must
//! size the new stack from it and move it with the stack.
//!
//! Arena stacks have a 64 KiB guard, so frames from 128 KiB up are "larger than the guard" there
//! (the 5 to 16 MiB ones are larger than the 4 MiB guard of stacks that are mappings of their
//! own, too). A frame that realigns its stack for an over-aligned local describes its CFA through
//! `rbp`, not through the probe loop's bound register: growth recognises the loop from the
//! faulting instruction instead (`realigned_frame_*`).

use std::hint::black_box;

use pagurus::stack::{self, StackInfo};

fn pattern(i: usize, seed: u64) -> u8 {
    (i as u64).wrapping_mul(31).wrapping_add(seed) as u8
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .enumerate()
        .fold(0xcbf2_9ce4_8422_2325, |h, (i, &b)| {
            (h ^ (b as u64) ^ ((i as u64) << 8)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// A frame holding an `N`-byte array, written and checksummed.
#[inline(never)]
fn big_frame<const N: usize>(seed: u64) -> u64 {
    let mut buf = [0u8; N];
    black_box(&mut buf);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern(i, seed);
    }
    black_box(&mut buf);
    checksum(&buf)
}

#[repr(C, align(64))]
struct Line([u8; 64]);

/// A frame holding `N / 64` cache-line-aligned lines: the function realigns its stack pointer
/// (`and rsp, -64`) and uses `rbp` for its CFA.
#[inline(never)]
fn realigned_frame<const N: usize>(seed: u64) -> u64 {
    let mut lines: [Line; N] = [const { Line([0; 64]) }; N];
    black_box(&mut lines);
    for (i, line) in lines.iter_mut().enumerate() {
        line.0[0] = pattern(i, seed);
    }
    black_box(&mut lines);
    assert_eq!(black_box(lines.as_ptr() as usize) % 64, 0);
    let firsts: Vec<u8> = lines.iter().map(|l| l.0[0]).collect();
    checksum(&firsts)
}

/// Runs `big_frame::<N>` on a fresh 4 KiB coroutine of a runtime that lets stacks reach 64 MiB.
fn frame_from_a_4_kib_stack<const N: usize>(seed: u64) {
    assert!(
        N > 2 * stack::ARENA_GUARD_SIZE,
        "the frame is larger than the guard region"
    );
    from_a_4_kib_stack(
        N,
        move || big_frame::<N>(seed),
        (0..N).map(|i| pattern(i, seed)),
    );
}

fn from_a_4_kib_stack(
    n: usize,
    frame: impl FnOnce() -> u64 + Send + 'static,
    expected: impl Iterator<Item = u8>,
) {
    let rt = pagurus::Runtime::builder()
        .workers(1)
        .max_stack_size(64 << 20)
        .build()
        .unwrap();
    let (start, sum, after): (StackInfo, u64, StackInfo) = rt.block_on(|| {
        pagurus::spawn(move || {
            let start = stack::current().unwrap();
            let sum = frame();
            (start, sum, stack::current().unwrap())
        })
        .join()
        .unwrap()
    });
    assert_eq!((start.size, start.growths), (4096, 0));
    let expected: Vec<u8> = expected.collect();
    assert_eq!(sum, checksum(&expected), "{n}-byte frame kept its contents");
    // One growth covers the whole frame: its size comes from the probe loop's bound.
    assert_eq!(after.growths, 1, "{n}-byte frame: {after:?}");
    assert!(after.size >= n && after.size.is_power_of_two(), "{after:?}");
}

#[test]
fn frame_of_256_kib_from_a_4_kib_stack() {
    frame_from_a_4_kib_stack::<{ 256 << 10 }>(2);
}

#[test]
fn frame_of_5_mib_from_a_4_kib_stack() {
    frame_from_a_4_kib_stack::<{ 5 << 20 }>(5);
}

#[test]
fn frame_of_8_mib_from_a_4_kib_stack() {
    frame_from_a_4_kib_stack::<{ 8 << 20 }>(8);
}

#[test]
fn frame_of_16_mib_from_a_4_kib_stack() {
    frame_from_a_4_kib_stack::<{ 16 << 20 }>(16);
}

/// Runs `realigned_frame` with `LINES` 64-byte lines.
fn realigned_from_a_4_kib_stack<const LINES: usize>(seed: u64) {
    from_a_4_kib_stack(
        LINES * 64,
        move || realigned_frame::<LINES>(seed),
        (0..LINES).map(|i| pattern(i, seed)),
    );
}

#[test]
fn realigned_frame_of_256_kib_from_a_4_kib_stack() {
    realigned_from_a_4_kib_stack::<{ 4 << 10 }>(3);
}

#[test]
fn realigned_frame_of_8_mib_from_a_4_kib_stack() {
    realigned_from_a_4_kib_stack::<{ 128 << 10 }>(4);
}
