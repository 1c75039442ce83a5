//! The relocation engine: copies a stopped stack image into a larger stack and fixes every
//! pointer into the old one.
//!
//! It works on plain memory and plain values and knows nothing of signals, schedulers or DWARF,
//! so it is unit-tested on synthetic images (and property-tested on random ones: `props`). The mover (`grow::move_stack`) drives it for both
//! growth paths: the explicit path
//! (`stack::ensure`, a suspended coroutine whose registers are all on its stack) and the fault
//! path (a coroutine stopped by SIGSEGV, whose registers are in the signal frame).
//!
//! # What counts as a pointer into the old stack
//!
//! Any value in `[guard_start, top]`: the usable stack *and its guard region*, and one past the
//! top (an end pointer, or a stack bound some code computed before the move). The guard is
//! included because large frames compute their lower bound (often in `r11`) before probing, so
//! at a fault that bound points into the guard and must move with the stack (see
//! `stack::GUARD_SIZE`).
//!
//! Stack words are adjusted conservatively: an aligned word whose value lies in that range is
//! taken for a pointer, whatever it really is. A non-pointer that happens to hold such a value
//! (an integer equal to a stack address) is changed too; that is the price of not having type
//! maps for Rust frames, and the reason it is the old stack's range, which is unlikely to collide
//! with small integers. Registers get the same rule, lane by lane for vector registers.
//!
//! # Signal safety
//!
//! Everything here is allocation-free, lock-free and panic-free (wrapping arithmetic), so the
//! fault handler may call it.

use crate::stack::Span;

/// One move of a stack image from `old` to a stack ending at `new_top`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Move {
    pub(crate) old: Span,
    pub(crate) new_top: usize,
    /// Lowest old address to copy: the stopped stack pointer (minus the red zone on the fault
    /// path), aligned down to a word and clamped to `old.bottom`.
    pub(crate) from: usize,
}

const WORD: usize = core::mem::size_of::<usize>();

impl Move {
    /// A move of everything live at and above `sp` (and `red_zone` bytes below it).
    pub(crate) fn new(old: Span, new_top: usize, sp: usize, red_zone: usize) -> Move {
        let from = sp.wrapping_sub(red_zone) & !(WORD - 1);
        Move {
            old,
            new_top,
            from: from.max(old.bottom),
        }
    }

    /// How far everything moves (modular: the new stack may lie below the old one).
    pub(crate) fn delta(&self) -> usize {
        self.new_top.wrapping_sub(self.old.top)
    }

    /// Bytes the move copies.
    pub(crate) fn bytes(&self) -> usize {
        self.old.top.wrapping_sub(self.from)
    }

    /// `value`, moved if it points into the old stack or its guard, or one past its top (the
    /// end of the highest object, and a value the runtime's own bounds arithmetic holds).
    #[inline]
    pub(crate) fn adjust(&self, value: usize) -> usize {
        if value >= self.old.guard_start && value <= self.old.top {
            value.wrapping_add(self.delta())
        } else {
            value
        }
    }

    /// Adjusts register values in place (the signal frame's general registers). Async-signal-safe.
    pub(crate) fn adjust_words(&self, words: &mut [usize]) {
        for w in words {
            *w = self.adjust(*w);
        }
    }

    /// Adjusts 64-bit vector lanes in place (XMM, and YMM/ZMM upper parts). Async-signal-safe.
    pub(crate) fn adjust_lanes(&self, lanes: &mut [u64]) {
        for lane in lanes {
            *lane = self.adjust(*lane as usize) as u64;
        }
    }

    /// Copies `[from, old.top)` to the same distance below `new_top`, adjusting every word on the
    /// way. Returns the bytes copied. O(bytes).
    ///
    /// # Safety
    /// `[from, old.top)` must be readable and `[from + delta, new_top)` writable, the two must not
    /// overlap, nothing may write either range meanwhile, and both ends must be word-aligned.
    pub(crate) unsafe fn copy_and_adjust(&self) -> usize {
        let n = self.bytes() / WORD;
        let src = self.from as *const usize;
        let dst = self.from.wrapping_add(self.delta()) as *mut usize;
        for i in 0..n {
            // SAFETY: i < n keeps both accesses inside the ranges the caller vouched for; both
            // are word-aligned.
            unsafe { dst.add(i).write(self.adjust(src.add(i).read())) };
        }
        n * WORD
    }

    /// Like [`Move::copy_and_adjust`], from a copy of `[from, old.top)` taken earlier (a
    /// compacted stack, see `compact`) instead of the old stack itself: the destination is
    /// zeroed, then `each_nonzero` calls its argument with `(index, word)` for every word of the
    /// image that is not zero, which is written adjusted. Returns the bytes copied.
    ///
    /// # Safety
    /// Every index `each_nonzero` passes is below `self.bytes() / WORD`, and
    /// `[from + delta, new_top)` is writable and word-aligned.
    pub(crate) unsafe fn copy_sparse_image(
        &self,
        each_nonzero: impl FnOnce(&mut dyn FnMut(usize, usize)),
    ) -> usize {
        let dst = self.from.wrapping_add(self.delta()) as *mut usize;
        let words = self.bytes() / WORD;
        // SAFETY: the caller vouched for `words` writable, aligned words at `dst`.
        unsafe { std::ptr::write_bytes(dst, 0, words) };
        each_nonzero(&mut |i, word| {
            debug_assert!(i < words);
            // SAFETY: i < words keeps the write inside the range the caller vouched for.
            unsafe { dst.add(i).write(self.adjust(word)) };
        });
        words * WORD
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic stack: a word buffer whose low `guard_words` are treated as the guard.
    struct Image {
        words: &'static mut [usize],
        guard_words: usize,
    }

    /// `len` zeroed words that live until the test process ends.
    fn leak(len: usize) -> &'static mut [usize] {
        Box::leak(vec![0; len].into_boxed_slice())
    }

    impl Image {
        fn new(len: usize, guard_words: usize) -> Image {
            Image {
                words: leak(len),
                guard_words,
            }
        }
        fn addr(&self, i: usize) -> usize {
            self.words.as_ptr() as usize + i * WORD
        }
        fn span(&self) -> Span {
            Span {
                guard_start: self.addr(0),
                bottom: self.addr(self.guard_words),
                top: self.addr(self.words.len()),
            }
        }
    }

    #[test]
    fn moves_a_pointer_chain_and_leaves_other_values() {
        // Old stack: 4 guard words + 60 usable; the live part is the top 40 words.
        let old = Image::new(64, 4);
        let new = Image::new(256, 0);
        let outside = Box::new(7usize);
        let outside_addr = &*outside as *const usize as usize;
        let sp_index = 24;
        // A list through the stack: each node at i points to the node at i + 4.
        for i in (sp_index..60).step_by(4) {
            old.words[i] = old.addr(i + 4);
            old.words[i + 1] = i; // a small integer: not a pointer
            old.words[i + 2] = outside_addr; // a heap pointer: unchanged
            old.words[i + 3] = old.addr(1); // points into the guard: moves too
        }
        let m = Move::new(old.span(), new.span().top, old.addr(sp_index), 0);
        assert_eq!(m.from, old.addr(sp_index));
        // SAFETY: both buffers are live, word-aligned and disjoint; the ranges are inside them.
        let copied = unsafe { m.copy_and_adjust() };
        assert_eq!(copied, (64 - sp_index) * WORD);
        let shift = 256 - 64; // the new image's top is 192 words higher, in index terms
        for i in (sp_index..60).step_by(4) {
            let j = i + shift;
            assert_eq!(new.words[j], new.addr(j + 4), "chain link at {i}");
            assert_eq!(new.words[j + 1], i);
            assert_eq!(new.words[j + 2], outside_addr);
            assert_eq!(new.words[j + 3], m.adjust(old.addr(1)));
            assert_eq!(new.words[j + 3].wrapping_sub(old.addr(1)), m.delta());
        }
        // Nothing below the copy was written.
        assert!(new.words[..sp_index + shift].iter().all(|&w| w == 0));
    }

    #[test]
    fn red_zone_is_copied_but_never_the_guard() {
        let old = Image::new(64, 8);
        let span = old.span();
        let m = Move::new(span, 0x10_0000, old.addr(40), 128);
        assert_eq!(m.from, old.addr(40) - 128, "sp minus the red zone");
        let m = Move::new(span, 0x10_0000, old.addr(9), 128);
        assert_eq!(m.from, span.bottom, "clamped to the usable bottom");
        let m = Move::new(span, 0x10_0000, old.addr(2), 128);
        assert_eq!(
            m.from, span.bottom,
            "a stack pointer inside the guard copies from the bottom"
        );
        let unaligned = Move::new(span, 0x10_0000, old.addr(30) + 3, 0);
        assert_eq!(unaligned.from, old.addr(30));
    }

    #[test]
    fn registers_and_lanes_follow_the_same_rule() {
        let old = Image::new(32, 4);
        let span = old.span();
        let m = Move::new(span, span.top + 0x4000, span.bottom, 0);
        let mut regs = [
            span.top - 8,
            span.top,
            span.top + 8,
            span.guard_start,
            span.guard_start - 1,
            42,
            span.bottom,
        ];
        m.adjust_words(&mut regs);
        assert_eq!(
            regs,
            [
                span.top - 8 + 0x4000,
                span.top + 0x4000, // one past the top moves too
                span.top + 8,
                span.guard_start + 0x4000,
                span.guard_start - 1,
                42,
                span.bottom + 0x4000
            ]
        );
        let mut lanes = [span.top as u64 - 16, u64::MAX, 0, span.bottom as u64];
        m.adjust_lanes(&mut lanes);
        assert_eq!(
            lanes,
            [
                span.top as u64 - 16 + 0x4000,
                u64::MAX,
                0,
                span.bottom as u64 + 0x4000
            ]
        );
    }

    /// Copies a two-link chain from `old` (live from word 10) into `new` and checks the links
    /// point into `new` afterwards.
    fn move_chain(old: &mut Image, new: &Image) -> Move {
        old.words[10] = old.addr(12);
        old.words[12] = old.addr(15);
        let m = Move::new(old.span(), new.span().top, old.addr(10), 0);
        // SAFETY: both buffers are live, aligned and disjoint.
        unsafe { m.copy_and_adjust() };
        let j = new.words.len() - old.words.len() + 10;
        assert_eq!(new.words[j], new.addr(j + 2));
        assert_eq!(new.words[j + 2], new.addr(j + 5));
        m
    }

    #[test]
    fn delta_is_modular_in_both_directions() {
        // One allocation holds both images, so which lies above the other is chosen here, not by
        // the allocator: first the old stack in the low part, then in the high part.
        let (low, high) = leak(16 + 128).split_at_mut(16);
        let mut old = Image {
            words: low,
            guard_words: 2,
        };
        let new = Image {
            words: high,
            guard_words: 0,
        };
        let up = move_chain(&mut old, &new);
        assert!(new.span().top > old.span().top, "moved up");
        assert_eq!(up.delta(), 128 * WORD, "a positive delta");

        let (low, high) = leak(128 + 16).split_at_mut(128);
        let new = Image {
            words: low,
            guard_words: 0,
        };
        let mut old = Image {
            words: high,
            guard_words: 2,
        };
        let down = move_chain(&mut old, &new);
        assert!(new.span().top < old.span().top, "moved down");
        assert_eq!(
            down.delta(),
            (16 * WORD).wrapping_neg(),
            "a wrapped, negative delta"
        );
    }
}
