//! Property-based tests of the relocation engine ([`Move`]): random stack images holding random
//! pointer graphs are moved by the real engine and checked against an oracle that knows which
//! slots the generator made pointers (the engine does not: it goes by value).
//!
//! Two properties:
//! - [`synthetic_images_move_exactly`]: images in ordinary memory, with arbitrary alignment of the
//!   old top, old sizes of 1 to 8 pages, growth by 2, 4 or 8, the new stack above or below the
//!   old one (a positive or a wrapped delta), any stopped stack pointer and red zone.
//! - [`real_stacks_move_exactly_and_keep_alignments`]: the same on stacks the runtime hands out
//!   (`Stack::new` for the old one, as a spawn gets it; `Stack::placed` with
//!   `Placement::for_move` for the new one, as `grow::move_stack` gets it), which also checks the
//!   placement rule that keeps over-aligned locals aligned across a move.
//!
//! `grow::move_stack` itself needs a live, suspended coroutine with DWARF-walkable frames; the
//! integration tests (`growth_*`) drive it. Everything it does to the image and the registers
//! is what is tested here: `Move::new`, `copy_and_adjust`, `adjust_words`, `adjust_lanes`.

use proptest::prelude::*;

use super::{Move, WORD};
use crate::stack::{MOVE_ALIGN, PAGE_SIZE, Placement, Span, Stack};

/// What one word of a generated image holds. Each pointer kind carries a random number that
/// chooses its target.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// A pointer to a live word: a frame-to-frame pointer (or into its own frame).
    Frame(u32),
    /// A pointer to a byte of the live part that is not word-aligned (a byte buffer's cursor).
    Interior(u32),
    /// The slot's own address.
    SelfPtr,
    /// One past the top (an end pointer, a saved bound).
    OnePastEnd,
    /// Into the guard region below the stack (a probe loop's bound).
    Guard(u32),
    /// Into the usable stack below the copied part (a dead frame's address: still in range).
    BelowCopy(u32),
    /// `1 + n` bytes below the guard: not a pointer into the stack.
    BelowGuard(u16),
    /// `1 + n` bytes above one past the top: not a pointer into the stack.
    AboveTop(u16),
    /// A small integer.
    Int(u32),
    /// A value with the top bit set: never a user-space address.
    High(u64),
}

fn slot() -> impl Strategy<Value = Slot> {
    prop_oneof![
        4 => any::<u32>().prop_map(Slot::Frame),
        1 => any::<u32>().prop_map(Slot::Interior),
        1 => Just(Slot::SelfPtr),
        1 => Just(Slot::OnePastEnd),
        1 => any::<u32>().prop_map(Slot::Guard),
        1 => any::<u32>().prop_map(Slot::BelowCopy),
        1 => any::<u16>().prop_map(Slot::BelowGuard),
        1 => any::<u16>().prop_map(Slot::AboveTop),
        2 => any::<u32>().prop_map(Slot::Int),
        1 => any::<u64>().prop_map(|v| Slot::High(v | 1 << 63)),
    ]
}

/// Where the old image lies and which part of it is live.
#[derive(Clone, Copy, Debug)]
struct Layout {
    span: Span,
    /// The lowest copied address, as the oracle computes it.
    from: usize,
}

/// The value the generator puts at `addr` for `slot`, and whether it is a pointer into the
/// old stack (its guard, or one past its top).
fn value(slot: Slot, addr: usize, l: Layout) -> (usize, bool) {
    let Span {
        guard_start,
        bottom,
        top,
    } = l.span;
    let live = top - l.from;
    let pick = |n: u32, len: usize| n as usize % len;
    match slot {
        Slot::Frame(n) => (l.from + WORD * pick(n, live / WORD), true),
        Slot::Interior(n) => {
            let byte = pick(n, live);
            let byte = if byte % WORD == 0 { byte + 1 } else { byte };
            (l.from + byte.min(live - 1), true)
        }
        Slot::SelfPtr => (addr, true),
        Slot::OnePastEnd => (top, true),
        Slot::Guard(n) => (guard_start + pick(n, bottom - guard_start), true),
        Slot::BelowCopy(n) if l.from > bottom => (bottom + pick(n, l.from - bottom), true),
        Slot::BelowCopy(_) => (bottom, true),
        Slot::BelowGuard(n) => (guard_start - 1 - n as usize, false),
        Slot::AboveTop(n) => (top + 1 + n as usize, false),
        Slot::Int(n) => (n as usize, false),
        Slot::High(v) => (v as usize, false),
    }
}

/// What a moved value must be: a pointer keeps its distance to the top, anything else is
/// unchanged.
fn expected(old: usize, is_pointer: bool, old_top: usize, new_top: usize) -> usize {
    if is_pointer {
        new_top - (old_top - old)
    } else {
        old
    }
}

/// Fills `[layout.from, top)` with `slots` (cyclically) and `[bottom, from)` with `dead`;
/// returns, for each live word from `from` up, its value and whether it is a pointer.
///
/// # Safety
/// `[bottom, top)` of `layout.span` must be writable memory nothing else uses.
unsafe fn fill(layout: Layout, slots: &[Slot], dead: usize) -> Vec<(usize, bool)> {
    let Span { bottom, top, .. } = layout.span;
    let mut addr = bottom;
    while addr < layout.from {
        // SAFETY: `addr` is a word of `[bottom, from)`, writable per the contract.
        unsafe { (addr as *mut usize).write(dead) };
        addr += WORD;
    }
    let mut words = Vec::with_capacity((top - layout.from) / WORD);
    for (i, addr) in (layout.from..top).step_by(WORD).enumerate() {
        let (v, is_pointer) = value(slots[i % slots.len()], addr, layout);
        let in_range = v >= layout.span.guard_start && v <= top;
        assert_eq!(
            in_range,
            is_pointer,
            "generator: {:?}",
            slots[i % slots.len()]
        );
        // SAFETY: `addr` is a word of `[from, top)`, writable per the contract.
        unsafe { (addr as *mut usize).write(v) };
        words.push((v, is_pointer));
    }
    words
}

/// Moves the filled image with the engine and checks every word of the new stack, the old image
/// (unchanged), and the same values as registers and vector lanes.
///
/// # Safety
/// `layout.span`'s `[bottom, top)` and `new_bottom..new_top` must be writable, disjoint, word
/// aligned memory nothing else uses, with the new part at least as large as the old; the old
/// image must have been filled by [`fill`] (giving `words`).
unsafe fn move_and_check(
    layout: Layout,
    words: &[(usize, bool)],
    dead: usize,
    sp: usize,
    red_zone: usize,
    new_bottom: usize,
    new_top: usize,
) -> Result<(), TestCaseError> {
    const SENTINEL: usize = 0x0bad_cafe_0bad_cafe;
    let old = layout.span;
    for addr in (new_bottom..new_top).step_by(WORD) {
        // SAFETY: a word of the new part, writable per the contract.
        unsafe { (addr as *mut usize).write(SENTINEL) };
    }
    let m = Move::new(old, new_top, sp, red_zone);
    prop_assert_eq!(m.from, layout.from, "the lowest copied word");
    prop_assert_eq!(m.bytes(), old.top - layout.from);
    prop_assert_eq!(m.delta(), new_top.wrapping_sub(old.top));
    // SAFETY: per the contract; `from` is word aligned and at least `bottom`, and the new part
    // covers `[from + delta, new_top)` because it is at least as large as the old stack.
    let copied = unsafe { m.copy_and_adjust() };
    prop_assert_eq!(copied, old.top - layout.from);
    let new_from = new_top - (old.top - layout.from);
    for addr in (new_bottom..new_from).step_by(WORD) {
        // SAFETY: a word of the new part.
        let w = unsafe { (addr as *const usize).read() };
        prop_assert_eq!(w, SENTINEL, "written below the copy at {:#x}", addr);
    }
    for (i, &(v, is_pointer)) in words.iter().enumerate() {
        let at = new_from + i * WORD;
        // SAFETY: a word of the copied part of the new stack.
        let got = unsafe { (at as *const usize).read() };
        let want = expected(v, is_pointer, old.top, new_top);
        prop_assert_eq!(
            got,
            want,
            "word {} (old value {:#x}, pointer: {})",
            i,
            v,
            is_pointer
        );
        if is_pointer && v < old.top && v >= layout.from && v % WORD == 0 {
            // A link of the graph: the new pointer reaches the moved copy of its old target.
            let target = (v - layout.from) / WORD;
            // SAFETY: `got` is a word of the copied part (the old target was a live word).
            let through = unsafe { (got as *const usize).read() };
            let (tv, tp) = words[target];
            prop_assert_eq!(through, expected(tv, tp, old.top, new_top), "link {}", i);
        }
        // SAFETY: a word of the old image, still ours.
        let kept = unsafe { ((layout.from + i * WORD) as *const usize).read() };
        prop_assert_eq!(kept, v, "the old image is not written");
    }
    for addr in (old.bottom..layout.from).step_by(WORD) {
        // SAFETY: a word of the old usable part.
        prop_assert_eq!(unsafe { (addr as *const usize).read() }, dead);
    }
    // Registers and vector lanes follow the same rule.
    let mut regs: Vec<usize> = words.iter().take(40).map(|w| w.0).collect();
    let mut lanes: Vec<u64> = regs.iter().map(|&v| v as u64).collect();
    m.adjust_words(&mut regs);
    m.adjust_lanes(&mut lanes);
    for (i, &(v, is_pointer)) in words.iter().take(40).enumerate() {
        let want = expected(v, is_pointer, old.top, new_top);
        prop_assert_eq!(regs[i], want, "register {}", i);
        prop_assert_eq!(lanes[i], want as u64, "lane {}", i);
    }
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn synthetic_images_move_exactly(
        old_pages in 1usize..=8,
        growth_log2 in 1u32..=3,
        guard_words in 1usize..=64,
        top_misalign in 0usize..PAGE_SIZE / WORD,
        sp_pick in any::<u32>(),
        sp_byte in 0usize..WORD,
        red_zone in prop_oneof![Just(0usize), Just(128)],
        new_below in any::<bool>(),
        gap_words in 0usize..64,
        dead_pick in any::<u32>(),
        slots in prop::collection::vec(slot(), 1..128),
    ) {
        let old_words = old_pages * PAGE_SIZE / WORD;
        let new_words = old_words << growth_log2;
        // One buffer holds both images, so which lies above the other is chosen here:
        // [misalign | guard | old | gap | new] or [misalign | new | gap | guard | old].
        let mut buf = vec![0usize; top_misalign + guard_words + old_words + gap_words + new_words];
        let base = buf.as_mut_ptr() as usize + top_misalign * WORD;
        let (old_start, new_bottom) = if new_below {
            (base + (new_words + gap_words) * WORD, base)
        } else {
            (base, base + (guard_words + old_words + gap_words) * WORD)
        };
        let span = Span {
            guard_start: old_start,
            bottom: old_start + guard_words * WORD,
            top: old_start + (guard_words + old_words) * WORD,
        };
        let new_top = new_bottom + new_words * WORD;
        // Any stopped stack pointer in the usable part (not always word aligned), and the oracle's
        // own idea of the lowest copied word.
        let sp = span.bottom + (sp_pick as usize % old_words) * WORD + sp_byte;
        let from = (sp.saturating_sub(red_zone) / WORD * WORD).max(span.bottom);
        let layout = Layout { span, from };
        // Dead words below the copy: a stack address, which must not be copied.
        let dead = span.bottom + (dead_pick as usize % old_words) * WORD;
        // SAFETY: the old usable part lies inside `buf`, disjoint from the new part.
        let words = unsafe { fill(layout, &slots, dead) };
        // SAFETY: both parts lie inside `buf`, disjoint, word aligned; the new one is larger.
        unsafe { move_and_check(layout, &words, dead, sp, red_zone, new_bottom, new_top)? };
    }
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn real_stacks_move_exactly_and_keep_alignments(
        old_log2 in prop_oneof![0u32..=4, 7u32..=9],
        growth_log2 in 1u32..=3,
        sp_pick in any::<u32>(),
        red_zone in prop_oneof![Just(0usize), Just(128)],
        dead_pick in any::<u32>(),
        slots in prop::collection::vec(slot(), 1..128),
    ) {
        let old_size = PAGE_SIZE << old_log2;
        let new_size = old_size << growth_log2;
        let old = Stack::new(old_size).expect("map the old stack");
        let span = old.span();
        let new = Stack::placed(new_size, Placement::for_move(span, new_size))
            .expect("map the new stack");
        prop_assert_eq!(span.size(), old_size);
        let sp = span.bottom + (sp_pick as usize % (old_size / 16)) * 16;
        let from = sp.saturating_sub(red_zone).max(span.bottom);
        let layout = Layout { span, from };
        let dead = span.bottom + (dead_pick as usize % (old_size / WORD)) * WORD;
        // SAFETY: the usable part of a stack we own is mapped read-write.
        let words = unsafe { fill(layout, &slots, dead) };
        // SAFETY: two stacks we own: usable parts mapped read-write, disjoint, page aligned; the
        // new one is larger.
        unsafe { move_and_check(layout, &words, dead, sp, red_zone, new.bottom(), new.top())? };
        // The placement rule: every address moves by a multiple of the old size (an object on
        // the old stack is aligned to at most that) and of 1 MiB (a frame being entered during
        // the move).
        let align = old_size.max(MOVE_ALIGN);
        prop_assert_eq!(new.top().wrapping_sub(span.top) % align, 0);
        for &(v, is_pointer) in words.iter().filter(|w| w.1) {
            let moved = expected(v, is_pointer, span.top, new.top());
            prop_assert_eq!(moved % align, v % align, "alignment of {:#x}", v);
        }
    }
}
