//! The coroutine stack this thread runs on, and the public questions about it
//! ([`current`], [`ensure`], [`remaining`]).
//!
//! Each coroutine context embeds a [`StackSlot`]: its stack, the copy of the stack's bottom that
//! `ensure` compares against, and its growth count. The coroutine layer publishes the slot of the
//! innermost running coroutine in this thread's `RUNNING` (the context switch itself writes it,
//! through [`running_word`], on every resume and on the way back, each time after the last push
//! on the stack it leaves), so this layer answers "how much stack is left" without knowing what a
//! coroutine is; the one thing it cannot do itself, suspending the coroutine to have its stack
//! moved, it asks of the slot's owner through [`StackSlot::new`]'s `request_growth`.
//!
//! Who writes what: `stack` is written by the owner before the first resume and after the last
//! suspension, and by a mover while the coroutine is stopped; `limit` and `growths` by a mover;
//! `grow_request` by the coroutine itself, read by its resumer. Contexts are used by one thread at
//! a time, so plain cells suffice.

use std::cell::{Cell, UnsafeCell};
use std::ptr;

use super::{Span, Stack, on_system_stack_active};
use crate::arch;

/// A coroutine's stack, as the stack layer tracks it.
pub(crate) struct StackSlot {
    /// Mapped lazily by the owner ([`StackSlot::install`]), taken back when the coroutine is done.
    stack: UnsafeCell<Option<Stack>>,
    /// Lowest usable address of the stack (a copy of `Stack::bottom`, next to the hot fields so
    /// [`ensure`] costs two loads); 0 without a stack.
    limit: Cell<usize>,
    /// Moves of this stack so far.
    growths: Cell<u64>,
    /// Headroom asked for by the pending growth request (see [`ensure`]).
    grow_request: Cell<usize>,
    /// Suspends the running coroutine owning this slot so that its resumer moves it to a stack
    /// with `grow_request` bytes of headroom; returns once it runs on the new stack.
    request_growth: unsafe fn(&StackSlot),
}

thread_local! {
    /// The slot of the innermost coroutine running on this thread, null on a plain thread stack.
    static RUNNING: Cell<*const StackSlot> = const { Cell::new(ptr::null()) };
}

/// The slot of the innermost coroutine running on this thread; null on a plain thread stack.
/// Async-signal-safe (a const-initialised thread-local).
#[inline]
pub(crate) fn running() -> *const StackSlot {
    RUNNING.with(Cell::get)
}

/// The address of this thread's running-slot word, for the context switch to publish the
/// entered side's slot in once the leaving side's registers are saved (see `arch::resume`). The
/// word holds a `*const StackSlot`.
#[inline]
pub(crate) fn running_word() -> *mut usize {
    RUNNING.with(|c| c.as_ptr().cast::<usize>())
}

impl StackSlot {
    /// A slot without a stack. `request_growth` is called on the coroutine's own stack, with
    /// this slot, when [`ensure`] finds too little headroom.
    ///
    /// # Safety
    /// `request_growth` must be safe to call from the running coroutine that owns the slot,
    /// and return only once the stack has at least `grow_request` bytes below the caller.
    pub(crate) const unsafe fn new(request_growth: unsafe fn(&StackSlot)) -> StackSlot {
        StackSlot {
            stack: UnsafeCell::new(None),
            limit: Cell::new(0),
            growths: Cell::new(0),
            grow_request: Cell::new(0),
            request_growth,
        }
    }

    /// Whether the slot holds a stack.
    pub(crate) fn has_stack(&self) -> bool {
        // SAFETY: the slot is only written by `install`, `replace` and `take`, which keep no
        // reference beyond their call, and a slot is used by one thread at a time.
        unsafe { (*self.stack.get()).is_some() }
    }

    /// Gives the slot its first stack.
    pub(crate) fn install(&self, stack: Stack) {
        debug_assert!(!self.has_stack());
        self.limit.set(stack.bottom());
        // SAFETY: see `has_stack`; no reference into the slot is alive.
        unsafe { *self.stack.get() = Some(stack) };
    }

    /// Installs `new` in place of the current stack after a mover copied the coroutine into it,
    /// and counts the move; returns the old stack. Async-signal-safe.
    ///
    /// # Safety
    /// The coroutine must be stopped (suspended, or interrupted by the signal being handled)
    /// and its live image already copied into `new`.
    pub(crate) unsafe fn replace(&self, new: Stack) -> Option<Stack> {
        self.limit.set(new.bottom());
        self.growths.set(self.growths.get().wrapping_add(1));
        // SAFETY: see `has_stack`; the coroutine is stopped, so nothing refers to the slot.
        unsafe { (*self.stack.get()).replace(new) }
    }

    /// Takes the stack back once the coroutine is done (or will never run again).
    pub(crate) fn take(&self) -> Option<Stack> {
        self.limit.set(0);
        // SAFETY: see `has_stack`.
        unsafe { (*self.stack.get()).take() }
    }

    /// The bounds of the stack, if it has one. Async-signal-safe.
    pub(crate) fn span(&self) -> Option<Span> {
        // SAFETY: see `has_stack`.
        unsafe { &*self.stack.get() }.as_ref().map(Stack::span)
    }

    /// Usable bytes of the stack, if there is one.
    pub(crate) fn size(&self) -> Option<usize> {
        // SAFETY: see `has_stack`.
        unsafe { &*self.stack.get() }.as_ref().map(Stack::size)
    }

    /// Moves of this stack so far.
    pub(crate) fn growths(&self) -> u64 {
        self.growths.get()
    }

    /// Headroom asked for by the pending growth request.
    pub(crate) fn grow_request(&self) -> usize {
        self.grow_request.get()
    }

    /// Usable size of the stack, and how many bytes of it are in use at stack pointer `sp`.
    fn usage(&self, sp: usize) -> (usize, usize) {
        match self.span() {
            Some(span) => (span.size(), span.top.saturating_sub(sp)),
            None => (0, 0),
        }
    }
}

/// The running coroutine's slot, unless the caller is on a plain thread stack or the system
/// stack.
#[inline]
fn running_coroutine_stack() -> Option<&'static StackSlot> {
    let slot = running();
    if slot.is_null() || on_system_stack_active() {
        return None;
    }
    // SAFETY: RUNNING only ever holds the slot of a context running on this thread right now,
    // and a running context is alive; the 'static does not escape the caller's use on this
    // thread while it runs.
    Some(unsafe { &*slot })
}

/// Facts about the stack the calling code runs on.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// pagurus::run(|| {
///     let info = pagurus::stack::current().expect("inside a coroutine");
///     assert_eq!(info.size, 4096);
///     assert!(info.used > 0 && info.used < info.size);
/// });
/// assert!(pagurus::stack::current().is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StackInfo {
    /// Usable bytes of the current stack.
    pub size: usize,
    /// Bytes between the top of the stack and the caller's stack pointer.
    pub used: usize,
    /// How many times this coroutine's stack has been moved to a larger one.
    pub growths: u64,
}

/// Describes the stack of the coroutine calling it; `None` on a plain thread stack.
pub fn current() -> Option<StackInfo> {
    let slot = running_coroutine_stack()?;
    // Any call here may fault and move the stack (unoptimised code calls even `Cell::get`): read
    // again until no move happened in between, so size, use and count describe one stack.
    loop {
        let growths = slot.growths.get();
        let (size, used) = slot.usage(arch::stack_pointer());
        if slot.growths.get() == growths {
            return Some(StackInfo {
                size,
                used,
                growths,
            });
        }
    }
}

/// Guarantees `bytes` of stack below the caller, moving the current coroutine to a larger stack
/// first if needed (at this call, without a fault). Call it before lending stack data to another
/// thread or before code that needs a lot of stack at once (a foreign call). Outside a coroutine
/// it does nothing: thread stacks are the OS's.
///
/// With enough headroom it costs two loads and a compare.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// pagurus::run(|| {
///     pagurus::stack::ensure(256 * 1024);
///     assert!(pagurus::stack::remaining().unwrap() >= 256 * 1024);
///     assert_eq!(pagurus::stack::current().unwrap().growths, 1);
/// });
/// ```
///
/// # Panics
///
/// Never; a coroutine that would exceed its runtime's `max_stack_size` aborts the process with a
/// message instead.
#[inline]
pub fn ensure(bytes: usize) {
    if let Some(headroom) = remaining()
        && headroom < bytes
    {
        request_growth(bytes);
    }
}

/// Bytes left between the caller's stack pointer and the bottom of the current coroutine's
/// stack; `None` on a plain thread stack.
#[inline]
pub fn remaining() -> Option<usize> {
    let slot = running_coroutine_stack()?;
    Some(arch::stack_pointer().wrapping_sub(slot.limit.get()))
}

/// Asks the running coroutine's owner to move it to a stack with `bytes` of headroom below the
/// caller; returns once running on the new stack.
#[cold]
#[inline(never)]
fn request_growth(bytes: usize) {
    let Some(slot) = running_coroutine_stack() else {
        return;
    };
    slot.grow_request.set(bytes);
    // SAFETY: we run on the coroutine that owns `slot` (it is the running one, and we are not on
    // the system stack), which is what `StackSlot::new`'s contract requires of the call.
    unsafe { (slot.request_growth)(slot) };
}
