//! Parked-stack compaction: a parked coroutine's live bytes kept on the heap instead of in a
//! stack.
//!
//! A parked coroutine holds a whole stack (at least a page, plus the guard's page tables) while
//! it uses a few hundred bytes of it. When a worker's parked coroutines hold more stack than its
//! budget (`Builder::parked_stack_budget`), the next coroutine to park is **compacted**
//! ([`compact`]): the words from its saved stack pointer to the top are copied, unchanged and
//! without their zero words, into an exactly sized heap buffer (an [`Image`]), and its stack
//! goes back to the worker's pool (and
//! from there to the arena, which releases its pages). When it is resumed, it is **restored**
//! ([`restore`]): a stack is taken from the pool, the image is copied into it and every word
//! that pointed into the old stack is adjusted by the relocation engine, as for a growth (a
//! suspended coroutine is the easy case: its registers are all on its stack, and `saved_sp` is
//! the one pointer into it kept outside).
//!
//! The new stack is the smallest power of two holding twice the image, at least the runtime's
//! initial stack size and at most the old size: a coroutine that used less than a quarter of its stack comes back on a
//! smaller one (**shrinking**, Go's rule at GC), and the fault path grows it again if it needs to.
//!
//! # Why this is legal
//!
//! The same two rules that let a stack grow (see `stack`, "What may point into a stack"):
//! nothing outside a stack points into it but `saved_sp` (wait queues, timers and poller
//! registrations hold task references, never stack addresses), and a pinned stack is never
//! moved: [`compact`] leaves a pinned coroutine (one lending its stack to an offloaded call)
//! alone. As for growth, a stack is compacted only if its frames can be walked to the
//! coroutine's entry. Compaction runs on the worker, in normal context, between the park and the
//! next resume, when nothing else touches the coroutine.

use crate::arch::PAGE_SIZE;
use crate::coroutine::Context;
use crate::fatal::{self, Who};
use crate::stack::{self, Placement, Span};
use crate::stats;

use super::check_frames;
use super::frames::Regs;
use super::relocate::Move;

/// The live words of a compacted coroutine's stack, and where they were.
///
/// Zero words are left out: a parked coroutine's stack is mostly zeros (locals reserved and not
/// written on the way to the park: measured 146 of 193 words of a coroutine parked in `sleep`),
/// so the image holds a bitmap of the non-zero words (one bit per word) followed by those words
/// alone, in order: about a quarter of the size. Everything is in one allocation, behind one
/// pointer (the task header holds an `Option<Image>` whether or not it is ever compacted).
pub(crate) struct Image {
    /// [`HEAD`] words (`len`, the old span's `guard_start`, `bottom` and `top`, `from`), the
    /// bitmap (`len.div_ceil(64)` words), then the non-zero words of `[from, old.top)` of the old
    /// stack, not adjusted.
    data: Box<[usize]>,
}

/// Words before the bitmap: see [`Image::data`].
const HEAD: usize = 5;
const BITS: usize = usize::BITS as usize;

impl Image {
    /// Packs `words`, the live part `[from, old.top)` of the stack `old`.
    fn pack(words: &[usize], old: Span, from: usize) -> Image {
        let len = words.len();
        let bitmap = len.div_ceil(BITS);
        let nonzero = words.iter().filter(|&&w| w != 0).count();
        let mut data = vec![0usize; HEAD + bitmap + nonzero].into_boxed_slice();
        data[..HEAD].copy_from_slice(&[len, old.guard_start, old.bottom, old.top, from]);
        let (head, rest) = data.split_at_mut(HEAD + bitmap);
        let mut values = rest.iter_mut();
        for (chunk, bits_out) in words.chunks(BITS).zip(&mut head[HEAD..]) {
            let mut bits = 0;
            for (j, &w) in chunk.iter().enumerate() {
                if w != 0 {
                    bits |= 1 << j;
                    if let Some(slot) = values.next() {
                        *slot = w;
                    }
                }
            }
            *bits_out = bits;
        }
        Image { data }
    }

    fn len(&self) -> usize {
        self.data[0]
    }

    /// The stack the image was taken from.
    fn old(&self) -> Span {
        Span {
            guard_start: self.data[1],
            bottom: self.data[2],
            top: self.data[3],
        }
    }

    /// Where the image starts in the old stack.
    fn from(&self) -> usize {
        self.data[4]
    }

    /// Calls `f(index, word)` for every non-zero word of `[from, old.top)`, in order.
    fn for_each_nonzero(&self, f: &mut dyn FnMut(usize, usize)) {
        let (bitmap, values) = self.data[HEAD..].split_at(self.len().div_ceil(BITS));
        let mut values = values.iter();
        for (k, &bits) in bitmap.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let i = k * BITS + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if let Some(&word) = values.next() {
                    f(i, word);
                }
            }
        }
    }

    /// Heap bytes the image holds.
    pub(crate) fn bytes(&self) -> usize {
        self.data.len() * size_of::<usize>()
    }

    /// Bytes of stack the coroutine used when it was compacted.
    pub(crate) fn used(&self) -> usize {
        self.len() * size_of::<usize>()
    }
}

/// Copies the live part of the parked coroutine's stack to the heap and gives its stack back to
/// this thread's pool. `None` (nothing done) when the context has no stack, is pinned, or its
/// frames cannot be walked.
///
/// # Safety
/// The coroutine of `ctx` is suspended (parked), and nothing resumes it until [`restore`].
pub(crate) unsafe fn compact(ctx: &Context) -> Option<Image> {
    if ctx.pins() != 0 {
        return None;
    }
    let old = ctx.span()?;
    let sp = ctx.saved_sp();
    // SAFETY: per the contract the coroutine is suspended at `sp` on its mapped stack.
    let regs = unsafe { Regs::suspended(sp) };
    check_frames(&regs, false, old).ok()?;
    let from = Move::new(old, old.top, sp, 0).from;
    let len = (old.top - from) / size_of::<usize>();
    // SAFETY: `[from, top)` is the live, readable part of the suspended coroutine's stack, and
    // word-aligned; nothing writes it while we read.
    let words = unsafe { std::slice::from_raw_parts(from as *const usize, len) };
    let image = Image::pack(words, old, from);
    let stack = ctx.take_stack()?;
    stack::give_back(stack);
    stats::stack_compacted(image.bytes());
    Some(image)
}

/// Gives a compacted coroutine a stack again: takes one from this thread's pool (see the module
/// docs for its size; never below `min_size`, the size coroutines start with), copies the image
/// in, adjusts every pointer into the old stack, and adjusts `saved_sp`. Aborts like a growth
/// when no memory can be mapped.
///
/// # Safety
/// `image` came from [`compact`] of `ctx`, which has not run since.
pub(crate) unsafe fn restore(ctx: &Context, image: Image, min_size: usize) {
    let used = image.used();
    let size = used
        .saturating_mul(2)
        .next_power_of_two()
        .max(min_size)
        .max(PAGE_SIZE)
        .min(image.old().size());
    let new = match stack::take(size, Placement::for_move(image.old(), size)) {
        Ok(new) => new,
        Err(err) => fatal::grow_map_failed(Who(ctx.id()), size, err.raw_os_error().unwrap_or(0)),
    };
    let moved = Move::new(image.old(), new.top(), image.from(), 0);
    // SAFETY: `new` is ours, writable, and `size >= used` bytes below its top take the image.
    unsafe { moved.copy_sparse_image(|write| image.for_each_nonzero(write)) };
    // SAFETY: the image (the coroutine's whole live stack) was copied into `new` and adjusted;
    // `saved_sp` follows it; the context has no stack since `compact`.
    unsafe { ctx.restore_stack(new, moved.adjust(ctx.saved_sp())) };
    if size < image.old().size() {
        stats::stack_shrunk();
    }
}

/// Runs `f` on a scratch copy of a compacted coroutine's stack, relocated as a restore would
/// place it: `f` gets the scratch stack's bounds and the saved stack pointer in the copy, which
/// walk like the coroutine's own (dumps name a compacted coroutine's frames this way). The
/// coroutine itself is not touched, and the scratch stack goes back to this thread's pool.
/// `None` when no stack could be had.
///
/// # Safety
/// `image` came from [`compact`] of `ctx`, which has not run since.
pub(crate) unsafe fn with_scratch_copy<R>(
    ctx: &Context,
    image: &Image,
    f: impl FnOnce(Span, usize) -> R,
) -> Option<R> {
    let size = image.old().size();
    let scratch = stack::take(size, Placement::for_move(image.old(), size)).ok()?;
    let moved = Move::new(image.old(), scratch.top(), image.from(), 0);
    // SAFETY: the scratch stack is ours, writable, and as large as the one the image came from.
    unsafe { moved.copy_sparse_image(|write| image.for_each_nonzero(write)) };
    let result = f(scratch.span(), moved.adjust(ctx.saved_sp()));
    stack::give_back(scratch);
    Some(result)
}

impl Drop for Image {
    fn drop(&mut self) {
        stats::image_freed(self.bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_keep_every_word_and_leave_zeros_out() {
        let span = Span {
            guard_start: 0x1000,
            bottom: 0x2000,
            top: 0x4000,
        };
        for len in [0usize, 1, 63, 64, 65, 193, 1000] {
            let words: Vec<usize> = (0..len)
                .map(|i| if i % 3 == 0 { 0 } else { i * 0x1_0001 })
                .collect();
            let image = Image::pack(&words, span, span.top - len * 8);
            let mut back = vec![0; len];
            image.for_each_nonzero(&mut |i, w| back[i] = w);
            assert_eq!(back, words, "{len} words");
            assert_eq!(image.used(), len * 8);
            let nonzero = words.iter().filter(|&&w| w != 0).count();
            assert_eq!(image.bytes(), (HEAD + len.div_ceil(64) + nonzero) * 8);
            assert_eq!((image.old(), image.from()), (span, span.top - len * 8));
            std::mem::forget(image); // not counted in stats: never compacted for real
        }
    }
}
