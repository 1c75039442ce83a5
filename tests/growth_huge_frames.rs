//! Frames larger than the guard region (issue 12, defect 3): a probe loop computes the frame's
//! lower bound before its first probe faults, and that bound lies below the guard. Growth must
//! size the new stack from it and move it with the stack.

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

/// Runs `big_frame::<N>` on a fresh 4 KiB coroutine of a runtime that lets stacks reach 64 MiB.
fn frame_from_a_4_kib_stack<const N: usize>(seed: u64) {
    assert!(
        N > stack::GUARD_SIZE,
        "the frame is larger than the guard region"
    );
    let rt = pagurus::Runtime::builder()
        .workers(1)
        .max_stack_size(64 << 20)
        .build()
        .unwrap();
    let (start, sum, after): (StackInfo, u64, StackInfo) = rt.block_on(|| {
        pagurus::spawn(move || {
            let start = stack::current().unwrap();
            let sum = big_frame::<N>(seed);
            (start, sum, stack::current().unwrap())
        })
        .join()
        .unwrap()
    });
    assert_eq!((start.size, start.growths), (4096, 0));
    let expected: Vec<u8> = (0..N).map(|i| pattern(i, seed)).collect();
    assert_eq!(sum, checksum(&expected), "{N}-byte frame kept its contents");
    // One growth covers the whole frame: its size comes from the probe loop's bound.
    assert_eq!(after.growths, 1, "{N}-byte frame: {after:?}");
    assert!(after.size >= N && after.size.is_power_of_two(), "{after:?}");
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
