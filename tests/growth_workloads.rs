//! Growth by fault under real workloads: every coroutine here starts on the default 4 KiB stack
//! and grows because its code touches the guard region (`stack::ensure` appears only where a test
//! reserves headroom on purpose). Each test checks that what lived on the stack (arrays,
//! references between frames, closures, trait objects, iterators, floating-point and SIMD values,
//! destructors, collections, C library frames) is intact and usable after the moves.

mod common;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};

use common::{DropCounter, addr, default_stack_runtime, disguised_addr, recurse_kib, reveal};
use pagurus::stack::{self, StackInfo};

fn info() -> StackInfo {
    stack::current().expect("inside a coroutine")
}

/// Runs `f` in a fresh coroutine (4 KiB stack) of a fresh two-worker runtime and returns its
/// result; a panic in the coroutine fails the test with its message.
fn in_coroutine<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let rt = default_stack_runtime(2);
    rt.block_on(|| {
        pagurus::spawn(move || {
            let start = info();
            assert_eq!(start.size, 4096, "coroutines start on the default 4 KiB");
            assert_eq!(start.growths, 0);
            f()
        })
        .join()
    })
    .unwrap_or_else(|payload| {
        panic!(
            "the coroutine panicked: {:?}",
            common::panic_message(&*payload)
        )
    })
}

// ---------------------------------------------------------------------------------------------
// 1. A linked list through the stack.
// ---------------------------------------------------------------------------------------------

const W: usize = 8;

/// One link of a list whose nodes are frames: the node's own array and a `&mut` to the previous
/// frame's node. (A trait object, because `&'a mut Node<'a>` cannot be built frame by frame.)
trait Link {
    fn vals(&mut self) -> &mut [u64; W];
    fn prev(&mut self) -> Option<&mut dyn Link>;
}

struct Node<'a> {
    vals: [u64; W],
    prev: Option<&'a mut dyn Link>,
}

impl Link for Node<'_> {
    fn vals(&mut self) -> &mut [u64; W] {
        &mut self.vals
    }
    fn prev(&mut self) -> Option<&mut dyn Link> {
        match &mut self.prev {
            Some(p) => Some(&mut **p),
            None => None,
        }
    }
}

/// What frame `depth` starts with in slot `k`.
fn initial(depth: u64, k: usize) -> u64 {
    depth * 1000 + k as u64 + 1
}

/// The callee marks its caller's slot 0 on entry ...
const ENTRY_MARK: u64 = 0x5_0000_0000;
/// ... the walk at the bottom adds one to slot 1 of every node ...
const WALK_MARK: u64 = 1;
/// ... and the callee writes this into its caller's slot 2 just before it returns.
fn exit_value(callee_depth: u64) -> u64 {
    callee_depth * 7 + 3
}

struct Bottom {
    depth: u64,
    nodes_walked: u64,
    info: Option<StackInfo>,
}

/// Descends until `target` bytes of stack are in use, then walks the list from the bottom to the
/// top through the references, summing every node. Each frame checks its own array after the
/// callee returns: writes made through the references (before and after the moves) must have
/// landed in it.
#[inline(never)]
fn descend(depth: u64, prev: Option<&mut dyn Link>, target: usize, bottom: &mut Bottom) -> u64 {
    let mut node = Node {
        vals: std::array::from_fn(|k| initial(depth, k)),
        prev,
    };
    if let Some(p) = node.prev() {
        p.vals()[0] ^= ENTRY_MARK; // written before the growth(s) below us
    }
    black_box(&mut node);
    let sum = if info().used >= target {
        bottom.depth = depth;
        bottom.info = Some(info());
        let mut walked = 0;
        let mut sum = 0u64;
        let mut cur: Option<&mut dyn Link> = Some(&mut node);
        while let Some(n) = cur {
            n.vals()[1] += WALK_MARK;
            sum = sum.wrapping_add(n.vals().iter().sum::<u64>());
            walked += 1;
            cur = n.prev();
        }
        bottom.nodes_walked = walked;
        sum
    } else {
        let sum = descend(depth + 1, Some(&mut node), target, bottom);
        // Our callee (and the walk) wrote into our array through references made before the
        // stack moved; the writes must be here, in our (moved) frame.
        let mut want: [u64; W] = std::array::from_fn(|k| initial(depth, k));
        want[0] ^= ENTRY_MARK;
        want[1] += WALK_MARK;
        want[2] = exit_value(depth + 1);
        assert_eq!(node.vals, want, "frame {depth} after return");
        sum
    };
    if let Some(p) = node.prev() {
        p.vals()[2] = exit_value(depth); // written after the growth(s)
    }
    sum
}

/// The sum the walk computes for a bottom at `depth`: every node 0..=depth, with the entry mark
/// on all but the bottom one and the walk mark on all.
fn expected_walk_sum(depth: u64) -> u64 {
    (0..=depth)
        .map(|d| {
            let mut vals: [u64; W] = std::array::from_fn(|k| initial(d, k));
            if d != depth {
                vals[0] ^= ENTRY_MARK;
            }
            vals[1] += WALK_MARK;
            vals.iter().sum::<u64>()
        })
        .fold(0u64, u64::wrapping_add)
}

fn list_through_the_stack(target: usize) {
    let (sum, bottom, after) = in_coroutine(move || {
        let mut bottom = Bottom {
            depth: 0,
            nodes_walked: 0,
            info: None,
        };
        let sum = descend(0, None, target, &mut bottom);
        (sum, bottom, info())
    });
    let at_bottom = bottom.info.expect("the recursion reached its target");
    assert_eq!(bottom.nodes_walked, bottom.depth + 1, "every frame walked");
    assert_eq!(sum, expected_walk_sum(bottom.depth));
    assert!(at_bottom.used >= target, "{at_bottom:?}");
    assert!(at_bottom.size >= at_bottom.used, "{at_bottom:?}");
    assert!(at_bottom.size.is_power_of_two(), "{at_bottom:?}");
    assert!(at_bottom.growths > 0, "{at_bottom:?}");
    // Every growth at least doubles the stack.
    let max_growths = (at_bottom.size / 4096).trailing_zeros() as u64;
    assert!(at_bottom.growths <= max_growths, "{at_bottom:?}");
    // Stacks do not shrink: after the return the coroutine is still on the grown stack.
    assert_eq!(after.growths, at_bottom.growths);
    assert_eq!(after.size, at_bottom.size);
}

#[test]
fn list_through_stack_frames_1_mib() {
    list_through_the_stack(1 << 20);
}

#[test]
fn list_through_stack_frames_64_mib() {
    list_through_the_stack(64 << 20);
}

// ---------------------------------------------------------------------------------------------
// 2. Large frames, entered through a stack probe loop.
// ---------------------------------------------------------------------------------------------

fn pattern(i: usize, seed: u64) -> u8 {
    ((i as u64).wrapping_mul(131) ^ (i as u64 >> 9) ^ seed.wrapping_mul(0x9e37)) as u8
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .enumerate()
        .fold(0xcbf2_9ce4_8422_2325, |h, (i, &b)| {
            (h ^ (b as u64) ^ ((i as u64) << 8)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The checksum `big_frame::<N>(seed, None)` must return, computed on the heap.
fn expected_checksum(n: usize, seed: u64) -> u64 {
    let v: Vec<u8> = (0..n).map(|i| pattern(i, seed)).collect();
    checksum(&v)
}

/// A frame holding an `N`-byte array that is written, kept across a call to `next` (which may
/// grow the stack again, moving this frame), and checksummed afterwards.
#[inline(never)]
fn big_frame<const N: usize>(seed: u64, next: Option<fn(u64) -> u64>) -> u64 {
    let mut buf = [0u8; N];
    black_box(&mut buf);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern(i, seed);
    }
    black_box(&mut buf);
    let inner = next.map_or(0, |f| f(seed + 1));
    black_box(&mut buf);
    checksum(&buf) ^ inner.rotate_left(17)
}

fn big_frame_fresh<const N: usize>(seed: u64) {
    let (sum, after) = in_coroutine(move || (big_frame::<N>(seed, None), info()));
    assert_eq!(sum, expected_checksum(N, seed), "{N}-byte frame");
    // The probe loop's first touch faults with the frame's lower bound already computed (in the
    // register the frame's CFA is described by): one growth covers the whole frame.
    assert_eq!(after.growths, 1, "{N}-byte frame: {after:?}");
    assert!(after.size >= N, "{after:?}");
    assert!(after.size.is_power_of_two());
}

#[test]
fn frame_of_8_kib_from_a_4_kib_stack() {
    big_frame_fresh::<{ 8 << 10 }>(1);
}

#[test]
fn frame_of_64_kib_from_a_4_kib_stack() {
    big_frame_fresh::<{ 64 << 10 }>(2);
}

#[test]
fn frame_of_1_mib_from_a_4_kib_stack() {
    big_frame_fresh::<{ 1 << 20 }>(3);
}

fn nested_1m(seed: u64) -> u64 {
    big_frame::<{ 1 << 20 }>(seed, None)
}
fn nested_64k(seed: u64) -> u64 {
    big_frame::<{ 64 << 10 }>(seed, Some(nested_1m))
}

/// 8 KiB -> 64 KiB -> 1 MiB frames, each entered while the outer ones hold written arrays: the
/// inner probes move the outer arrays, whose checksums are taken after the moves.
#[test]
fn nested_large_frames_keep_their_contents_across_later_growths() {
    let (sum, after) = in_coroutine(|| (big_frame::<{ 8 << 10 }>(10, Some(nested_64k)), info()));
    let c1m = expected_checksum(1 << 20, 12);
    let c64k = expected_checksum(64 << 10, 11) ^ c1m.rotate_left(17);
    let c8k = expected_checksum(8 << 10, 10) ^ c64k.rotate_left(17);
    assert_eq!(sum, c8k);
    assert!(after.growths >= 2, "{after:?}");
    assert!(
        after.size >= (1 << 20) + (64 << 10) + (8 << 10),
        "{after:?}"
    );
}

/// The same large frame over and over: the first call grows the stack, later ones fit.
#[test]
fn same_large_frame_called_in_a_loop() {
    let (sums, growths_after_first, last) = in_coroutine(|| {
        let mut sums = Vec::with_capacity(100);
        sums.push(big_frame::<{ 64 << 10 }>(0, None));
        let growths_after_first = info().growths;
        for seed in 1..100 {
            sums.push(big_frame::<{ 64 << 10 }>(seed % 4, None));
        }
        for seed in 0..10 {
            sums.push(big_frame::<{ 1 << 20 }>(seed, None));
        }
        (sums, growths_after_first, info())
    });
    let small: Vec<u64> = (0..4).map(|s| expected_checksum(64 << 10, s)).collect();
    assert_eq!(sums[0], small[0]);
    for (seed, &sum) in sums[1..100].iter().enumerate() {
        assert_eq!(sum, small[(seed + 1) % 4], "64 KiB call {}", seed + 1);
    }
    for (seed, &sum) in sums[100..].iter().enumerate() {
        assert_eq!(
            sum,
            expected_checksum(1 << 20, seed as u64),
            "1 MiB call {seed}"
        );
    }
    assert!(growths_after_first > 0);
    assert!(
        last.growths > growths_after_first,
        "the 1 MiB frames need a larger stack"
    );
    assert!(last.size >= 1 << 20, "{last:?}");
}

#[inline(never)]
fn probe_then_check(seed: u64) -> (u64, u64) {
    let first = big_frame::<{ 64 << 10 }>(seed, None);
    (first, info().growths)
}

/// After the first 64 KiB call has grown the stack, repeating it grows nothing.
#[test]
fn repeated_large_frames_grow_only_once() {
    let results = in_coroutine(|| {
        // One call site, so every call starts at the same stack depth.
        let mut results = Vec::with_capacity(50);
        for seed in 0..50 {
            results.push(probe_then_check(seed));
        }
        results
    });
    let first_growths = results[0].1;
    assert!(first_growths > 0);
    for (seed, &(sum, growths)) in results.iter().enumerate() {
        assert_eq!(sum, expected_checksum(64 << 10, seed as u64), "call {seed}");
        assert_eq!(growths, first_growths, "call {seed} grew again");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Closures and trait objects pointing at outer frames.
// ---------------------------------------------------------------------------------------------

trait Shape {
    fn area(&self) -> u64;
    fn describe(&self) -> String;
}

/// A trait object whose data lives in an outer frame and itself borrows other outer locals.
struct Rect<'a> {
    dims: &'a [u64; 2],
    label: &'a str,
}

impl Shape for Rect<'_> {
    fn area(&self) -> u64 {
        self.dims[0] * self.dims[1]
    }
    fn describe(&self) -> String {
        format!("{} {}x{}", self.label, self.dims[0], self.dims[1])
    }
}

struct Poly {
    sides: [u64; 6],
}

impl Shape for Poly {
    fn area(&self) -> u64 {
        self.sides.iter().product()
    }
    fn describe(&self) -> String {
        format!("poly {:?}", self.sides)
    }
}

/// Recursion with 256-byte frames that calls `f` and the shapes at the bottom, after the stack
/// has grown under them.
#[inline(never)]
fn deep_calls(n: u64, f: &dyn Fn(u64) -> u64, shapes: &[&dyn Shape]) -> (u64, Vec<String>, u64) {
    let pad = black_box([n; 32]);
    if n == 0 {
        let growths = info().growths;
        let value = f(5) + shapes.iter().map(|s| s.area()).sum::<u64>();
        let names = shapes.iter().map(|s| s.describe()).collect();
        return (value, names, growths);
    }
    let (v, names, g) = deep_calls(n - 1, f, shapes);
    (v + black_box(pad)[31] - n, names, g)
}

/// A generic `impl Fn` capturing outer locals, called at every level.
#[inline(never)]
fn deep_generic<F: Fn(u64) -> u64>(n: u64, f: &F) -> u64 {
    let pad = black_box([n; 32]);
    let here = f(n);
    if n == 0 {
        return here;
    }
    deep_generic(n - 1, f) + here + black_box(pad)[0] - n
}

/// An `impl FnMut` called on the way down and again on the way up.
#[inline(never)]
fn deep_fnmut<F: FnMut(u64)>(n: u64, f: &mut F) {
    let pad = black_box([n; 32]);
    f(n);
    if n > 0 {
        deep_fnmut(n - 1, f);
    }
    f(black_box(pad)[7] + 1_000_000);
}

/// The same through `&mut dyn FnMut`.
#[inline(never)]
fn deep_dyn_fnmut(n: u64, f: &mut dyn FnMut(u64) -> u64) -> u64 {
    let pad = black_box([n; 32]);
    let mine = f(n);
    let below = if n > 0 { deep_dyn_fnmut(n - 1, f) } else { 0 };
    mine + below + black_box(pad)[9] - n
}

#[test]
fn closures_and_trait_objects_called_after_growth() {
    const DEPTH: u64 = 1500; // >= 375 KiB of 256-byte frames
    let (value, names, growths) = in_coroutine(|| {
        let offsets = [10u64, 20, 30];
        let k = black_box(3u64);
        let f = |x: u64| x * k + offsets.iter().sum::<u64>();
        let dims = [6u64, 7];
        let label = String::from("rect");
        let rect = Rect {
            dims: &dims,
            label: &label,
        };
        let poly = Poly {
            sides: [1, 2, 3, 4, 5, 6],
        };
        let shapes: [&dyn Shape; 2] = [&rect, &poly];
        deep_calls(DEPTH, &f, &shapes)
    });
    assert!(growths > 0, "the recursion must have grown the stack");
    assert_eq!(value, 5 * 3 + 60 + 42 + 720);
    assert_eq!(names, ["rect 6x7", "poly [1, 2, 3, 4, 5, 6]"]);
}

#[test]
fn generic_closure_capturing_outer_locals_at_every_depth() {
    const DEPTH: u64 = 1500;
    let (sum, growths) = in_coroutine(|| {
        let table: [u64; 16] = std::array::from_fn(|i| (i * i) as u64);
        let scale = black_box(2u64);
        let f = |x: u64| table[(x % 16) as usize] * scale;
        (deep_generic(DEPTH, &f), info().growths)
    });
    assert!(growths > 0);
    let want: u64 = (0..=DEPTH).map(|x| (x % 16) * (x % 16) * 2).sum();
    assert_eq!(sum, want);
}

#[test]
fn fnmut_accumulating_into_outer_locals() {
    const DEPTH: u64 = 1500;
    let (total, calls, buckets, growths, dyn_sum, dyn_calls) = in_coroutine(|| {
        let mut total = 0u64;
        let mut calls = 0u64;
        let mut buckets = [0u64; 8];
        let mut acc = |x: u64| {
            total += x;
            calls += 1;
            buckets[(x % 8) as usize] += 1;
        };
        deep_fnmut(DEPTH, &mut acc);
        let growths = info().growths;
        let mut dyn_calls = 0u64;
        let mut seen = [0u64; 4];
        let dyn_sum = deep_dyn_fnmut(DEPTH, &mut |x| {
            dyn_calls += 1;
            seen[(x % 4) as usize] += x;
            x * 2
        });
        assert_eq!(seen.iter().sum::<u64>(), DEPTH * (DEPTH + 1) / 2);
        (total, calls, buckets, growths, dyn_sum, dyn_calls)
    });
    assert!(growths > 0);
    let n = DEPTH + 1;
    assert_eq!(calls, 2 * n);
    assert_eq!(total, 2 * (DEPTH * (DEPTH + 1) / 2) + n * 1_000_000);
    let mut want = [0u64; 8];
    for x in 0..=DEPTH {
        want[(x % 8) as usize] += 1;
        want[((x + 1_000_000) % 8) as usize] += 1;
    }
    assert_eq!(buckets, want);
    assert_eq!(dyn_calls, n);
    assert_eq!(dyn_sum, DEPTH * (DEPTH + 1));
}

// ---------------------------------------------------------------------------------------------
// 4. Iterators over stack arrays held across a growth.
// ---------------------------------------------------------------------------------------------

#[test]
fn slice_iterator_held_across_growth() {
    let (firsts, middle, rest, moved, growths) = in_coroutine(|| {
        let arr: [u64; 64] = std::array::from_fn(|i| (i * i + 1) as u64);
        let before = disguised_addr(&arr);
        let mut it = arr.iter();
        let first = it.next();
        let second = it.next();
        black_box(&mut it);
        let g0 = info().growths;
        assert_eq!(black_box(recurse_kib(256)), 256 * 257 / 2);
        let g1 = info().growths;
        assert!(g1 > g0, "256 KiB of recursion must grow a 4 KiB stack");
        let firsts = (*first.unwrap(), *second.unwrap());
        let middle: Vec<u64> = it.by_ref().take(10).copied().collect();
        black_box(&mut it);
        assert_eq!(black_box(recurse_kib(2048)), 2048 * 2049 / 2);
        let rest: Vec<u64> = it.copied().collect();
        let moved = addr(&arr) != reveal(before);
        (firsts, middle, rest, moved, info().growths - g0)
    });
    assert!(moved, "the array must have moved");
    assert!(growths >= 2, "two growths at least, got {growths}");
    let arr: [u64; 64] = std::array::from_fn(|i| (i * i + 1) as u64);
    assert_eq!(firsts, (arr[0], arr[1]));
    assert_eq!(middle, arr[2..12]);
    assert_eq!(rest, arr[12..]);
}

#[test]
fn mutable_chunk_and_str_iterators_held_across_growth() {
    let (arr, text, growths) = in_coroutine(|| {
        let mut arr = [1u32; 48];
        let mut chunks = arr.chunks_exact_mut(4);
        for c in chunks.by_ref().take(3) {
            c.fill(2);
        }
        let bytes = *b"hello, pagurus: a crab in a bigger shell";
        let s = std::str::from_utf8(&bytes).unwrap();
        let mut words = s.split(' ');
        let mut chars = s.chars();
        assert_eq!(words.next(), Some("hello,"));
        assert_eq!(chars.next(), Some('h'));
        black_box((&mut chunks, &mut words, &mut chars));
        assert_eq!(black_box(recurse_kib(512)), 512 * 513 / 2);
        for (i, c) in chunks.enumerate() {
            c.fill(10 + i as u32);
        }
        let text = format!(
            "{}|{}",
            words.collect::<Vec<_>>().join("_"),
            chars.collect::<String>()
        );
        (arr, text, info().growths)
    });
    assert!(growths > 0);
    let mut want = [2u32; 48];
    for i in 3..12 {
        want[4 * i..4 * i + 4].fill(10 + (i - 3) as u32);
    }
    assert_eq!(arr, want);
    assert_eq!(
        text,
        "pagurus:_a_crab_in_a_bigger_shell|ello, pagurus: a crab in a bigger shell"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Floating point and SIMD values across growth.
// ---------------------------------------------------------------------------------------------

use std::arch::x86_64::*;

/// The scalar inputs: ordinary, tiny, huge, negative, with no exact short representation.
fn float_inputs() -> [f64; 4] {
    [1.0 / 3.0, std::f64::consts::PI, -2.5e-300, 6.022_140_76e23]
}

/// Results computed from the inputs; the coroutine computes the same after the moves.
fn float_results(x: [f64; 4]) -> [u64; 6] {
    [
        (x[0] * x[1]).to_bits(),
        (x[2] * x[3]).to_bits(),
        (x[0] + x[1] + x[2] + x[3]).to_bits(),
        (x[1] / x[0]).to_bits(),
        x[1].sqrt().to_bits(),
        (x[3] - x[0] * x[3]).to_bits(),
    ]
}

#[inline(never)]
fn floats_across_a_growing_call() -> ([u64; 6], [u64; 6], u64) {
    let x = black_box(float_inputs());
    let (a, b, c, d) = (x[0], x[1], x[2], x[3]);
    let before = float_results([a, b, c, d]);
    let partial = a * b + c; // live across the call, in a stack slot (xmm are caller-saved)
    assert_eq!(black_box(recurse_kib(300)), 300 * 301 / 2);
    let after = float_results([a, b, c, d]);
    assert_eq!(partial.to_bits(), (a * b + c).to_bits());
    (before, after, info().growths)
}

#[inline(never)]
fn floats_across_a_fault_in_this_frame() -> ([u64; 6], u64, u64) {
    let x = black_box(float_inputs());
    let (a, b, c, d) = (x[0], x[1], x[2], x[3]);
    let g0 = info().growths;
    let below_bottom = stack::remaining().unwrap() + (64 << 10);
    let p = a * b;
    let q = c * d;
    // Faults in the middle of this function: whatever the compiler keeps in xmm registers
    // across the touch (nothing is clobbered) must come back unchanged.
    common::touch_below_sp(below_bottom);
    let r = p + q + a + b + c + d;
    let out = float_results([a, b, c, d]);
    (out, r.to_bits(), info().growths - g0)
}

#[test]
fn f64_values_across_growth() {
    let ((before, after, g), (in_frame, r, g2)) = in_coroutine(|| {
        (
            floats_across_a_growing_call(),
            floats_across_a_fault_in_this_frame(),
        )
    });
    let x = float_inputs();
    let want = float_results(x);
    assert!(g > 0);
    assert_eq!(before, want);
    assert_eq!(after, want);
    assert_eq!(g2, 1, "the touch 64 KiB below must fault once");
    assert_eq!(in_frame, want);
    assert_eq!(
        r,
        (x[0] * x[1] + x[2] * x[3] + x[0] + x[1] + x[2] + x[3]).to_bits()
    );
}

fn bits2(v: __m128d) -> [u64; 2] {
    // SAFETY: __m128d and [u64; 2] have the same size; every bit pattern is valid for both.
    unsafe { std::mem::transmute::<__m128d, [u64; 2]>(v) }
}

fn bits4(v: __m256d) -> [u64; 4] {
    // SAFETY: __m256d and [u64; 4] have the same size; every bit pattern is valid for both.
    unsafe { std::mem::transmute::<__m256d, [u64; 4]>(v) }
}

/// SSE2 (baseline on x86_64) vectors live across a growing call and across a fault in this frame.
#[inline(never)]
#[target_feature(enable = "sse2")]
fn sse_across_growth() -> [[u64; 2]; 5] {
    let x = black_box(float_inputs());
    let v = _mm_set_pd(x[1], x[0]); // lanes [x0, x1]
    let w = _mm_set_pd(x[3], x[2]); // lanes [x2, x3]
    let s = _mm_add_pd(v, w);
    assert_eq!(black_box(recurse_kib(300)), 300 * 301 / 2);
    let below_bottom = stack::remaining().unwrap() + (64 << 10);
    let p = _mm_mul_pd(v, w);
    common::touch_below_sp(below_bottom);
    let q = _mm_div_pd(v, w);
    let r = _mm_sqrt_pd(_mm_mul_pd(v, v));
    [
        bits2(v),
        bits2(w),
        bits2(s),
        bits2(p),
        bits2(_mm_add_pd(q, r)),
    ]
}

/// AVX vectors (256-bit, upper halves included) live across a growing call and a fault.
#[target_feature(enable = "avx2")]
fn avx_across_growth() -> [[u64; 4]; 5] {
    let x = black_box(float_inputs());
    let v = _mm256_set_pd(x[3], x[2], x[1], x[0]); // lanes [x0, x1, x2, x3]
    let w = _mm256_set_pd(x[0], x[1], x[2], x[3]); // lanes [x3, x2, x1, x0]
    let s = _mm256_add_pd(v, w);
    let ints = _mm256_set_epi64x(4, -3, 2, -1);
    assert_eq!(black_box(recurse_kib(300)), 300 * 301 / 2);
    let below_bottom = stack::remaining().unwrap() + (64 << 10);
    let p = _mm256_mul_pd(v, w);
    common::touch_below_sp(below_bottom);
    let i2 = _mm256_add_epi64(ints, _mm256_set1_epi64x(10));
    let q = _mm256_div_pd(s, p);
    [
        bits4(v),
        bits4(s),
        bits4(p),
        bits4(q),
        bits4(_mm256_castsi256_pd(i2)),
    ]
}

#[test]
fn sse_vectors_across_growth() {
    // SAFETY: SSE2 is part of the x86_64 baseline.
    let (got, growths) = in_coroutine(|| (unsafe { sse_across_growth() }, info().growths));
    assert!(
        growths >= 2,
        "a call and a fault below the bottom both grow"
    );
    let x = float_inputs();
    let lanes = |f: &dyn Fn(usize) -> f64| [f(0).to_bits(), f(1).to_bits()];
    assert_eq!(got[0], lanes(&|i| x[i]));
    assert_eq!(got[1], lanes(&|i| x[i + 2]));
    assert_eq!(got[2], lanes(&|i| x[i] + x[i + 2]));
    assert_eq!(got[3], lanes(&|i| x[i] * x[i + 2]));
    assert_eq!(got[4], lanes(&|i| x[i] / x[i + 2] + (x[i] * x[i]).sqrt()));
}

#[test]
fn avx_vectors_across_growth() {
    if !is_x86_feature_detected!("avx2") {
        eprintln!("no AVX2 on this CPU: skipping the 256-bit part");
        return;
    }
    // SAFETY: AVX2 is available (checked above).
    let (got, growths) = in_coroutine(|| (unsafe { avx_across_growth() }, info().growths));
    assert!(growths >= 2);
    let x = float_inputs();
    let lanes = |f: &dyn Fn(usize) -> f64| std::array::from_fn::<u64, 4, _>(|i| f(i).to_bits());
    assert_eq!(got[0], lanes(&|i| x[i]));
    assert_eq!(got[1], lanes(&|i| x[i] + x[3 - i]));
    assert_eq!(got[2], lanes(&|i| x[i] * x[3 - i]));
    assert_eq!(got[3], lanes(&|i| (x[i] + x[3 - i]) / (x[i] * x[3 - i])));
    assert_eq!(got[4], [9u64, 12, 7, 14]);
}

// ---------------------------------------------------------------------------------------------
// 6. Panics after many growths.
// ---------------------------------------------------------------------------------------------

const PANIC_AFTER_GROWTHS: u64 = 8;

/// Recurses (each frame holding a drop guard) until the stack has grown by fault
/// `PANIC_AFTER_GROWTHS` times, then panics with a message naming where.
#[inline(never)]
fn dive_then_panic(depth: u64, drops: &Arc<AtomicUsize>, frames: &AtomicU64, growths: &AtomicU64) {
    let _guard = DropCounter(drops.clone());
    frames.fetch_add(1, SeqCst);
    let pad = black_box([depth; 24]);
    let g = info().growths;
    if g >= PANIC_AFTER_GROWTHS {
        growths.store(g, SeqCst);
        panic!("boom at depth {depth} after {g} growths");
    }
    dive_then_panic(depth + 1, drops, frames, growths);
    black_box(pad);
}

#[test]
fn panic_after_many_growths_reaches_join_with_all_destructors_run() {
    let drops = Arc::new(AtomicUsize::new(0));
    let frames = Arc::new(AtomicU64::new(0));
    let growths = Arc::new(AtomicU64::new(0));
    let rt = default_stack_runtime(2);
    let (d, f, g) = (drops.clone(), frames.clone(), growths.clone());
    let err = rt
        .block_on(|| {
            pagurus::spawn(move || {
                assert_eq!(info().size, 4096);
                let _outer = DropCounter(d.clone());
                dive_then_panic(0, &d, &f, &g);
                unreachable!()
            })
            .join()
        })
        .unwrap_err();
    let frames = frames.load(SeqCst);
    let growths = growths.load(SeqCst);
    assert!(growths >= 7, "{growths}");
    assert!(frames > 1000, "{frames} frames for {growths} growths");
    assert_eq!(
        common::panic_message(&*err).as_deref(),
        Some(format!("boom at depth {} after {growths} growths", frames - 1).as_str())
    );
    assert_eq!(
        drops.load(SeqCst) as u64,
        frames + 1,
        "one guard per frame plus the outer one"
    );
}

#[derive(Debug, PartialEq)]
struct Payload {
    depth: u64,
    data: Vec<u64>,
    name: String,
    growths: u64,
}

#[inline(never)]
fn dive_then_panic_any(depth: u64, drops: &Arc<AtomicUsize>) -> u64 {
    let _guard = DropCounter(drops.clone());
    let pad = black_box([depth; 40]);
    let g = info().growths;
    if g >= PANIC_AFTER_GROWTHS {
        std::panic::panic_any(Payload {
            depth,
            data: (0..depth % 97).collect(),
            name: format!("payload from depth {depth}"),
            growths: g,
        });
    }
    dive_then_panic_any(depth + 1, drops) + black_box(pad)[3]
}

#[test]
fn custom_panic_payload_after_many_growths_is_intact() {
    let drops = Arc::new(AtomicUsize::new(0));
    let rt = default_stack_runtime(1);
    let d = drops.clone();
    let err = rt
        .block_on(|| pagurus::spawn(move || dive_then_panic_any(0, &d)).join())
        .unwrap_err();
    let payload = err.downcast::<Payload>().expect("a Payload");
    assert!(payload.growths >= 7, "{:?}", payload.growths);
    assert_eq!(payload.data, (0..payload.depth % 97).collect::<Vec<_>>());
    assert_eq!(
        payload.name,
        format!("payload from depth {}", payload.depth)
    );
    assert_eq!(drops.load(SeqCst) as u64, payload.depth + 1);
}

/// A panic caught inside the coroutine, below frames that hold data, after growths: the frames
/// above the catch keep working on the grown stack.
#[test]
fn panic_caught_inside_the_coroutine_after_growth() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let (msg, outer_sum, growths_at_catch, after) = in_coroutine(move || {
        let outer = [11u64; 16];
        let outer_ref = &outer;
        let caught = std::panic::catch_unwind(|| dive_then_panic_any(0, &d));
        let growths_at_catch = info().growths;
        let payload = caught.unwrap_err().downcast::<Payload>().unwrap();
        // Keep going on the grown stack.
        let again = recurse_kib(1024);
        (
            payload.name,
            outer_ref.iter().sum::<u64>() + again,
            growths_at_catch,
            info(),
        )
    });
    assert!(msg.starts_with("payload from depth "), "{msg}");
    assert_eq!(outer_sum, 11 * 16 + 1024 * 1025 / 2);
    assert!(growths_at_catch >= PANIC_AFTER_GROWTHS);
    assert!(after.growths >= growths_at_catch);
    let depth: u64 = msg["payload from depth ".len()..].parse().unwrap();
    assert_eq!(drops.load(SeqCst) as u64, depth + 1);
}

/// Recurses until at least `min_used` bytes are in use and less than 1 KiB is left, then
/// panics: the panic machinery (message formatting, the hook, the unwinder) itself runs out of
/// stack and grows it by fault.
#[inline(never)]
fn dive_to_the_bottom_then_panic(depth: u64, min_used: usize, drops: &Arc<AtomicUsize>) -> u64 {
    let _guard = DropCounter(drops.clone());
    let pad = black_box([depth; 8]);
    let left = stack::remaining().unwrap();
    if left < 1024 && info().used >= min_used {
        panic!("out of stack at depth {depth} with {left} bytes left");
    }
    dive_to_the_bottom_then_panic(depth + 1, min_used, drops) + black_box(pad)[1]
}

#[test]
fn panic_raised_with_little_stack_left() {
    let rt = default_stack_runtime(1);
    for min_used in [0, 8 << 10, 64 << 10, 512 << 10] {
        let drops = Arc::new(AtomicUsize::new(0));
        let d = drops.clone();
        let err = rt.block_on(|| {
            pagurus::spawn(move || dive_to_the_bottom_then_panic(0, min_used, &d))
                .join()
                .unwrap_err()
        });
        let msg = common::panic_message(&*err).expect("a String payload");
        let depth: u64 = msg
            .strip_prefix("out of stack at depth ")
            .and_then(|m| m.split(' ').next())
            .and_then(|d| d.parse().ok())
            .unwrap_or_else(|| panic!("unexpected payload {msg:?}"));
        assert!(msg.ends_with(" bytes left"), "{msg}");
        assert_eq!(
            drops.load(SeqCst) as u64,
            depth + 1,
            "min_used {min_used}: one guard per frame"
        );
    }
}

/// The main coroutine of `block_on` grows too, and its borrows of the caller's thread stack (which
/// never moves) stay valid.
#[test]
fn main_coroutine_grows_with_borrows_of_the_callers_stack() {
    let rt = default_stack_runtime(1);
    let mut on_thread = [0u64; 8];
    let text = String::from("borrowed");
    let (sum, start, end) = rt.block_on(|| {
        let start = info();
        let local = [5u64; 8];
        let r = &local;
        let s = recurse_kib(512);
        on_thread[3] = s;
        (s + r.iter().sum::<u64>() + text.len() as u64, start, info())
    });
    assert_eq!((start.size, start.growths), (4096, 0));
    assert!(end.growths > 0 && end.size >= 512 << 10, "{end:?}");
    assert_eq!(on_thread[3], 512 * 513 / 2);
    assert_eq!(sum, 512 * 513 / 2 + 40 + 8);
}

/// A raw coroutine grows by fault across suspensions, keeping references to its own stack and
/// to its owner's (thread) stack.
#[test]
fn raw_coroutine_grows_across_suspensions() {
    let mut owner = [0u64; 4];
    let mut infos = Vec::new();
    {
        let infos = &mut infos;
        let owner = &mut owner;
        // SAFETY: `owner` and `infos` live on the test thread's own stack, which never moves.
        let co = unsafe {
            pagurus::raw::Coroutine::new_unchecked(4096, move |s| {
                let mine = [9u64; 16];
                let r = &mine;
                infos.push(info());
                owner[0] = recurse_kib(64);
                s.suspend();
                infos.push(info());
                owner[1] = recurse_kib(1024);
                s.suspend();
                owner[2] = r.iter().sum::<u64>() + recurse_kib(2048);
                infos.push(info());
            })
        };
        let mut co = co.unwrap();
        let mut resumes = 1;
        while co.resume() {
            resumes += 1;
        }
        assert_eq!(resumes, 3);
    }
    assert_eq!(
        owner,
        [64 * 65 / 2, 1024 * 1025 / 2, 144 + 2048 * 2049 / 2, 0]
    );
    assert_eq!((infos[0].size, infos[0].growths), (4096, 0));
    assert!(infos[1].growths > 0, "{infos:?}");
    assert!(infos[2].growths > infos[1].growths, "{infos:?}");
    assert!(infos[2].size >= 2 << 20, "{infos:?}");
}

/// A raw coroutine nested in a scheduled one grows by fault (from the worker's pool) while its
/// closure borrows the outer coroutine's locals; the outer coroutine reserves headroom with
/// `ensure` first, so it does not move while the borrow lives (the documented way to lend stack
/// data).
#[test]
fn nested_raw_coroutine_grows_inside_a_scheduled_one() {
    let (total, outer_growths, inner_infos) = in_coroutine(|| {
        stack::ensure(512 << 10);
        let outer_growths = info().growths;
        let mut total = 0u64;
        let mut inner_infos = Vec::new();
        {
            let (total, inner_infos) = (&mut total, &mut inner_infos);
            // SAFETY: `total` and `inner_infos` live on the outer coroutine's stack, which has
            // the headroom reserved above for all it does while this coroutine lives, so it does
            // not move (checked below).
            let co = unsafe {
                pagurus::raw::Coroutine::new_unchecked(4096, move |s| {
                    *total += recurse_kib(256);
                    inner_infos.push(info());
                    s.suspend();
                    *total += recurse_kib(2048);
                    inner_infos.push(info());
                })
            };
            let mut co = co.unwrap();
            assert!(co.resume());
            // Work on the outer stack between the resumes, within its headroom.
            assert_eq!(recurse_kib(128), 128 * 129 / 2);
            assert!(!co.resume());
        }
        assert_eq!(
            info().growths,
            outer_growths,
            "the outer stack did not move"
        );
        (total, outer_growths, inner_infos)
    });
    assert_eq!(outer_growths, 1);
    assert_eq!(total, 256 * 257 / 2 + 2048 * 2049 / 2);
    assert!(inner_infos[0].growths > 0, "{inner_infos:?}");
    assert!(
        inner_infos[1].growths > inner_infos[0].growths,
        "{inner_infos:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Allocating std types around a growth.
// ---------------------------------------------------------------------------------------------

/// Recursion that, at the bottom (after growth), formats and allocates, reading outer data
/// through references held in the frames above.
#[inline(never)]
fn deep_std(n: u64, v: &Vec<u64>, map: &mut HashMap<String, u64>, s: &str) -> String {
    let pad = black_box([n; 32]);
    if n == 0 {
        let mut local: HashMap<u64, String> = HashMap::new();
        for i in 0..50u64 {
            local.insert(i, format!("v{i}"));
        }
        let beta = map["beta"];
        map.insert("deep".to_string(), v.iter().sum());
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        return format!(
            "{s}|{:?}|{beta}|{keys:?}|{}|{}",
            &v[..5],
            local[&42],
            info().growths > 0
        );
    }
    let out = deep_std(n - 1, v, map, s);
    assert_eq!(black_box(pad)[0], n);
    out
}

#[test]
fn format_vec_hashmap_around_growth() {
    let (deep, after, growths) = in_coroutine(|| {
        let v: Vec<u64> = (1..=1000).collect();
        let words = ["alpha", "beta", "gamma", "delta"];
        let mut map: HashMap<String, u64> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i as u64 * 100))
            .collect();
        let s = format!("{}-{}", words[2], v.len());
        // References held on the stack, to heap data and to stack data.
        let v_ref = &v;
        let first = &v[0];
        let tail = &v[995..];
        let s_ref: &str = &s;
        let word_ref = &words[3];
        let mut buf = [0u8; 64];
        let mut cursor: &mut [u8] = &mut buf;
        use std::io::Write;
        write!(cursor, "{}:", word_ref).unwrap();
        let deep = deep_std(1500, v_ref, &mut map, s_ref);
        // After the growth: keep using what was built before it.
        write!(cursor, "{}:{}", first, tail.iter().sum::<u64>()).unwrap();
        let left = cursor.len();
        let written = std::str::from_utf8(&buf[..64 - left]).unwrap().to_string();
        map.insert("after".into(), *first + tail[4]);
        let mut pairs: Vec<(String, u64)> = map.into_iter().collect();
        pairs.sort();
        let mut extra = v.clone();
        extra.extend_from_slice(tail);
        let after = format!(
            "{written}|{pairs:?}|{}|{}",
            extra.len(),
            extra.iter().sum::<u64>()
        );
        (deep, after, info().growths)
    });
    assert!(growths > 0);
    assert_eq!(
        deep,
        "gamma-1000|[1, 2, 3, 4, 5]|100|[\"alpha\", \"beta\", \"deep\", \"delta\", \"gamma\"]|v42|true"
    );
    let tail_sum: u64 = (996..=1000).sum();
    let pairs = [
        ("after", 1 + 1000),
        ("alpha", 0),
        ("beta", 100),
        ("deep", 500_500),
        ("delta", 300),
        ("gamma", 200),
    ]
    .map(|(k, v)| (k.to_string(), v as u64));
    assert_eq!(
        after,
        format!("delta:1:{tail_sum}|{pairs:?}|1005|{}", 500_500 + tail_sum)
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Faults inside C library code.
// ---------------------------------------------------------------------------------------------

/// Each frame (`P` words of padding) formats with glibc's `snprintf` into a stack buffer, parses
/// it back with `strtod`, and reads the clock (the vDSO): with frame sizes swept, some growths
/// fault inside those C functions, whose frames the handler must walk and move.
#[inline(never)]
fn libc_frames<const P: usize>(depth: u32, target: usize, calls: &mut u64) {
    let pad = black_box([depth as u64; P]);
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let x = depth as f64 / 8.0;
    // SAFETY: the buffer holds 64 bytes, the format is NUL-terminated and matches the arguments.
    let n = unsafe { libc::snprintf(buf.as_mut_ptr().cast(), 64, c"%u-%.3f".as_ptr(), depth, x) };
    let text = std::str::from_utf8(&buf[..n as usize]).unwrap();
    assert_eq!(text, format!("{depth}-{x:.3}"));
    let dash = text.find('-').unwrap();
    // SAFETY: `buf` is NUL-terminated after the `n` bytes snprintf wrote.
    let parsed = unsafe { libc::strtod(buf.as_ptr().add(dash + 1).cast(), std::ptr::null_mut()) };
    assert_eq!(parsed, x);
    assert!(started.elapsed().as_secs() < 3600); // any value; the call is what matters
    *calls += 1;
    if info().used < target {
        libc_frames::<P>(depth + 1, target, calls);
    }
    assert_eq!(black_box(pad)[P - 1], depth as u64);
}

#[test]
fn libc_calls_at_every_depth_grow_by_fault() {
    let rt = default_stack_runtime(1);
    macro_rules! sweep {
        ($($p:literal)*) => {$(
            let (calls, end) = rt.block_on(|| {
                pagurus::spawn(|| {
                    let mut calls = 0;
                    libc_frames::<$p>(0, 256 << 10, &mut calls);
                    (calls, info())
                })
                .join()
                .unwrap()
            });
            assert!(end.growths >= 4 && end.size >= 256 << 10, "{}-word frames: {end:?}", $p);
            assert!(calls > 64, "{}-word frames: {calls} calls", $p);
        )*};
    }
    sweep!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24);
}
