//! The execution context of one coroutine, and the two moves between contexts.
//!
//! A [`Context`] owns a stack and knows how to get onto it and off it:
//!
//! - [`Context::resume`] is called by the *resumer* (a scheduler loop, or any code holding a raw
//!   coroutine). It saves the resumer's registers on the resumer's stack, records that stack
//!   pointer in `parent_sp`, and switches to the coroutine's `saved_sp`.
//! - [`suspend`] is called *inside* the coroutine. It saves the coroutine's registers on its own
//!   stack, records the stack pointer in `saved_sp`, and switches back to `parent_sp`.
//!
//! Each move passes one word: the resumer passes [`RESUME`] or [`CANCEL`]; the coroutine passes
//! a [`Suspend`] reason. The thread-local `CURRENT` names the innermost context running on this
//! thread; `resume` sets it and restores the previous value when the coroutine switches back, so
//! contexts nest (a coroutine may resume a raw coroutine of its own). `CURRENT` is the stack
//! layer's `RUNNING` slot pointer: a context embeds its [`StackSlot`] as its first field, so the
//! stack layer answers `stack::remaining()` from it and this layer recovers the context.
//!
//! # Layer
//!
//! `coroutine` imports `arch`, `stack` and `fatal` only. Moving a stack is `grow`'s business:
//! this layer exposes what a mover needs ([`Context::span`], [`Context::saved_sp`],
//! [`Context::swap_stack`], the pin count) and nothing of how it is done.
//!
//! # Invariants
//!
//! - While a coroutine is suspended, its registers live on its own stack below `saved_sp`, and
//!   `saved_sp` is the only pointer into that stack held outside it, unless the context is
//!   pinned ([`Context::pin`]; see `stack`, "What may point into a stack").
//! - While it runs, `parent_sp` points into the resumer's stack, which is itself suspended.
//! - A context is only ever resumed by the thread it first ran on (schedulers pin started
//!   coroutines to their worker; raw coroutines are `!Send`). Code in the coroutine may cache
//!   thread-local addresses across a suspension, so moving it to another thread would be unsound.

use std::cell::Cell;
use std::ptr;

use crate::arch;
use crate::fatal;
use crate::stack::{self, Span, Stack, StackSlot};

/// Passed by a resumer: continue normally.
pub(crate) const RESUME: usize = 0;
/// Cancelling a coroutine (a runtime shutting down, a raw coroutine dropped) gives up after this
/// many resumes, in case its code keeps catching the [`Cancelled`] unwind and suspending again.
pub(crate) const CANCEL_ATTEMPTS: usize = 16;

/// Passed by a resumer: the coroutine must unwind (the runtime is shutting down, or a raw
/// coroutine is dropped while suspended). The suspension point raises [`Cancelled`].
pub(crate) const CANCEL: usize = 1;

/// Why a coroutine switched back to its resumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Suspend {
    /// Runnable again right away.
    Yield = 0,
    /// Waiting for a wake-up.
    Park = 1,
    /// Finished; the stack is free.
    Done = 2,
    /// Asks the resumer to move this coroutine to a larger stack (`grow_request` bytes of
    /// headroom below the suspension point), then resume (see `stack::ensure`).
    Grow = 4,
}

impl Suspend {
    fn from_word(word: usize) -> Suspend {
        match word {
            0 => Suspend::Yield,
            1 => Suspend::Park,
            4 => Suspend::Grow,
            _ => Suspend::Done,
        }
    }
}

/// The panic payload a coroutine unwinds with when it is cancelled: the runtime that owned it
/// was dropped while it was suspended (or before it started), or a raw coroutine was dropped
/// unfinished. `JoinHandle::join` returns it as the error.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// let rt = pagurus::Runtime::builder().workers(1).build().unwrap();
/// let handle = rt.block_on(|| pagurus::spawn(|| loop { pagurus::yield_now() }));
/// drop(rt);
/// let err = handle.join().unwrap_err();
/// assert!(err.downcast_ref::<pagurus::Cancelled>().is_some());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("coroutine cancelled: its runtime shut down before it finished")
    }
}

/// How a coroutine's stack may grow.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GrowthLimits {
    /// The largest size the stack may reach.
    pub(crate) max_size: usize,
    /// Quarantine the stacks it moves out of (see `grow::quarantine`).
    pub(crate) quarantine: bool,
}

/// The code a context runs: `body(data)` once, on the coroutine's stack. `body` must not unwind.
pub(crate) type Body = unsafe fn(data: *const ());

/// What [`Context::prefetch`] asks for: eight lines from 128 bytes below the saved stack pointer,
/// so the lines its next calls write below it, the saved frame, and its callers' frames above
/// it (more lines stalled on the CPU's miss buffers when measured).
const PREFETCH_BELOW: usize = 128;
const PREFETCH_LINES: usize = 8;

/// One coroutine's execution context.
///
/// Who writes each field: the owner (a worker, or a raw coroutine's handle) writes everything
/// before the first resume (`start`); `parent_sp` is written by `resume`, `saved_sp` by every
/// suspension and by a mover (`swap_stack`, while the coroutine is stopped); `pins` by the
/// coroutine itself, around the calls that lend its stack; `parent_slot` by `resume`;
/// `cancel_raised` and `reported_growths` by the coroutine and its resumer, never at the same
/// time. The fault
/// handler only reads, apart from `swap_stack`.
#[repr(C)] // `slot` first: `current_context` recovers the context from the running slot
pub(crate) struct Context {
    /// The stack and what the stack layer tracks of it (see `stack::StackSlot`).
    slot: StackSlot,
    /// The coroutine's stack pointer while it is suspended.
    saved_sp: Cell<*mut u8>,
    /// The resumer's stack pointer while the coroutine runs.
    parent_sp: Cell<*mut u8>,
    /// The running stack slot the resumer had (null on a plain thread stack): the switch back
    /// publishes it again (see `Context::resume`).
    parent_slot: Cell<*const StackSlot>,
    /// The largest size the stack may grow to.
    max_size: Cell<usize>,
    /// Whether stacks this coroutine moves out of are quarantined (see `grow::quarantine`).
    quarantine: Cell<bool>,
    /// The scheduler's id of the coroutine, 0 for a raw coroutine (for reports).
    id: Cell<u64>,
    /// How many borrows of the stack outside it are alive (see [`Context::pin`]).
    pins: Cell<usize>,
    /// Whether a `CANCEL` resume has already been turned into a `Cancelled` unwind.
    cancel_raised: Cell<bool>,
    /// Growths when the resumer last reported them (the fault handler cannot log).
    reported_growths: Cell<u64>,
    /// Bytes the movers copied for this coroutine (for dumps).
    bytes_copied: Cell<u64>,
    body: Body,
    data: Cell<*const ()>,
}

impl Context {
    /// A context that will run `body(data)`, where `data` is given to [`Context::start`]; it has
    /// no stack until then.
    pub(crate) fn new(body: Body) -> Context {
        Context {
            // SAFETY: `request_growth` suspends the context owning the slot with `Grow`, which
            // every resumer serves by moving it before resuming it (see that function).
            slot: unsafe { StackSlot::new(request_growth) },
            saved_sp: Cell::new(ptr::null_mut()),
            parent_sp: Cell::new(ptr::null_mut()),
            parent_slot: Cell::new(ptr::null()),
            max_size: Cell::new(0),
            quarantine: Cell::new(false),
            id: Cell::new(0),
            pins: Cell::new(0),
            cancel_raised: Cell::new(false),
            reported_growths: Cell::new(0),
            bytes_copied: Cell::new(0),
            body,
            data: Cell::new(ptr::null()),
        }
    }

    /// Whether [`Context::start`] has given this context a stack.
    pub(crate) fn has_stack(&self) -> bool {
        self.slot.has_stack()
    }

    /// Gives the context its stack and lays out the first frame on it; the first resume will
    /// run `body(data)` there, and the stack may grow as `limits` say. `id` names the coroutine
    /// in reports (0 for a raw coroutine).
    ///
    /// # Safety
    /// The context must not have a stack yet, and must not move in memory from now until its
    /// coroutine is done (the initial frame records its address). `data` must satisfy `body`'s
    /// contract whenever the coroutine runs.
    pub(crate) unsafe fn start(
        &self,
        stack: Stack,
        data: *const (),
        id: u64,
        limits: GrowthLimits,
    ) {
        self.data.set(data);
        self.id.set(id);
        self.max_size.set(limits.max_size);
        self.quarantine.set(limits.quarantine);
        let top = stack.top() as *mut u8;
        // SAFETY: `top` is the 16-aligned end of a fresh read/write stack with far more than
        // INIT_FRAME_BYTES below it; `entry` upholds EntryFn for a pinned `Context` pointer.
        let sp = unsafe { arch::init_stack(top, entry, self as *const Context as *mut u8) };
        self.saved_sp.set(sp);
        self.slot.install(stack);
    }

    /// Bounds of the stack, for the movers. Async-signal-safe.
    pub(crate) fn span(&self) -> Option<Span> {
        self.slot.span()
    }

    /// Usable bytes of the coroutine's stack, if it has one.
    pub(crate) fn stack_size(&self) -> Option<usize> {
        self.slot.size()
    }

    /// The saved stack pointer of the suspended coroutine. Async-signal-safe.
    pub(crate) fn saved_sp(&self) -> usize {
        self.saved_sp.get() as usize
    }

    /// Starts loading the suspended stack's lines its next resume will touch, so that resuming
    /// a coroutine whose stack went cold (one of thousands woken at once) does not stall on
    /// memory. A hint: harmless on a context without a stack.
    #[inline]
    pub(crate) fn prefetch(&self) {
        let sp = self.saved_sp.get() as usize;
        if sp != 0 {
            arch::prefetch::<PREFETCH_LINES>(sp - PREFETCH_BELOW);
        }
    }

    /// Headroom asked for by the pending `Suspend::Grow`.
    pub(crate) fn grow_request(&self) -> usize {
        self.slot.grow_request()
    }

    /// The coroutine's id, 0 for a raw coroutine. Async-signal-safe.
    pub(crate) fn id(&self) -> u64 {
        self.id.get()
    }

    /// Emits a `tracing` event for growths that happened since the last call (the fault handler
    /// only counts them). Called by resumers, from normal context, after each resume.
    #[inline]
    pub(crate) fn report_growths(&self) {
        let growths = self.slot.growths();
        if growths != self.reported_growths.get() {
            self.reported_growths.set(growths);
            let size = self.span().map_or(0, |s| s.size());
            let id = self.id();
            tracing::debug!(id, growths, size, "coroutine stack grew");
        }
    }

    /// Moves of the stack so far. Async-signal-safe.
    pub(crate) fn growths(&self) -> u64 {
        self.slot.growths()
    }

    /// Bytes the moves of the stack copied so far. Async-signal-safe.
    pub(crate) fn bytes_copied(&self) -> u64 {
        self.bytes_copied.get()
    }

    /// Counts the bytes one move copied (the mover, while the coroutine is stopped).
    /// Async-signal-safe.
    pub(crate) fn count_copied(&self, bytes: usize) {
        self.bytes_copied
            .set(self.bytes_copied.get().wrapping_add(bytes as u64));
    }

    /// The largest size the stack may grow to. Async-signal-safe.
    pub(crate) fn max_size(&self) -> usize {
        self.max_size.get()
    }

    /// Whether a suspension that was resumed with `arg` must raise `Cancelled`: only for the
    /// first `CANCEL`. A coroutine resumed with `CANCEL` again has suspended during or after that
    /// unwind (a destructor waiting for something, or code that caught it); raising again inside
    /// a destructor would abort the process, so later cancellations just return, and the
    /// canceller keeps resuming until the coroutine finishes or gives up on it.
    pub(crate) fn should_raise_cancel(&self, arg: usize) -> bool {
        arg == CANCEL && !self.cancel_raised.replace(true)
    }

    /// Forgets that a cancellation was reported, so the next `CANCEL` resume is reported again:
    /// for a suspension point that learned of the cancellation but had to complete its operation
    /// anyway (a value was already handed to it).
    pub(crate) fn rearm_cancel(&self) {
        self.cancel_raised.set(false);
    }

    /// Whether old stacks go to quarantine instead of back to a pool. Async-signal-safe.
    pub(crate) fn quarantines(&self) -> bool {
        self.quarantine.get()
    }

    /// Pins the stack where it is until the guard drops: something outside the stack (another
    /// thread running an offloaded call) points into it, so no mover may move it meanwhile.
    /// Pins nest. Called by the coroutine itself, on its own thread.
    pub(crate) fn pin(&self) -> Pin<'_> {
        self.pins.set(self.pins.get() + 1);
        Pin { ctx: self }
    }

    /// How many pins are alive. Every mover asserts it is zero. Async-signal-safe.
    pub(crate) fn pins(&self) -> usize {
        self.pins.get()
    }

    /// Installs `new` as the stack after a mover copied the coroutine into it and adjusted its
    /// pointers, with `saved_sp` the adjusted saved stack pointer; returns the old stack and
    /// counts the move. Async-signal-safe.
    ///
    /// # Safety
    /// The coroutine must be stopped (suspended, or interrupted by the signal being handled),
    /// not pinned, and its whole live image must have been copied into `new`, with `saved_sp`
    /// pointing at the same place in the copy as the current one in the original.
    pub(crate) unsafe fn swap_stack(&self, new: Stack, saved_sp: usize) -> Option<Stack> {
        debug_assert_eq!(self.pins(), 0);
        self.saved_sp.set(saved_sp as *mut u8);
        // SAFETY: forwarded contract.
        unsafe { self.slot.replace(new) }
    }

    /// Gives a compacted coroutine its stack again, after a mover copied its image into `new`;
    /// `saved_sp` is the adjusted saved stack pointer. Not counted as a growth.
    ///
    /// # Safety
    /// The coroutine must be suspended without a stack (taken by a compaction), not pinned, and
    /// its whole live image must have been copied into `new`, with `saved_sp` pointing at the
    /// same place in the copy as the old one did in the original.
    pub(crate) unsafe fn restore_stack(&self, new: Stack, saved_sp: usize) {
        debug_assert_eq!(self.pins(), 0);
        self.saved_sp.set(saved_sp as *mut u8);
        self.slot.install(new);
    }

    /// Takes the stack back once the coroutine is done (or will never run again), or while it is
    /// parked to compact it (`grow::compact`).
    pub(crate) fn take_stack(&self) -> Option<Stack> {
        self.slot.take()
    }

    #[inline]
    /// Runs the coroutine until it suspends; returns why it did.
    ///
    /// The running slot (`stack::running`) changes inside the switch, after the resumer's last
    /// push, and changes back inside the coroutine's switch back, after its last push: a push at
    /// the very bottom of either stack faults while that stack's own slot is the running one, so
    /// the fault handler grows the right stack.
    ///
    /// # Safety
    /// The context must have a stack, be suspended (started and not done), not be running on any
    /// thread, and have last run on this thread (if it ran before).
    pub(crate) unsafe fn resume(&self, arg: usize) -> Suspend {
        self.parent_slot.set(stack::running());
        // SAFETY: the caller guarantees `saved_sp` describes a suspended stack of this thread;
        // `parent_sp` is ours to write; the running word is this thread's.
        let word = unsafe {
            arch::resume(
                self.parent_sp.as_ptr(),
                self.saved_sp.get(),
                arg,
                stack::running_word(),
                &self.slot as *const StackSlot as usize,
            )
        };
        Suspend::from_word(word)
    }

    /// Switches from this context's coroutine back to its resumer with `word`.
    ///
    /// # Safety
    /// Must run on this context's stack, as the current context, with its resumer waiting in
    /// [`Context::resume`].
    #[inline(always)]
    unsafe fn switch_back(&self, word: usize) -> usize {
        // SAFETY: per the contract; the running word is this thread's.
        unsafe {
            arch::suspend(
                self.saved_sp.as_ptr(),
                self.parent_sp.get(),
                word,
                stack::running_word(),
                self.parent_slot.get() as usize,
            )
        }
    }
}

/// A pin on a context's stack (see [`Context::pin`]); unpins when dropped.
pub(crate) struct Pin<'a> {
    ctx: &'a Context,
}

impl Drop for Pin<'_> {
    fn drop(&mut self) {
        self.ctx.pins.set(self.ctx.pins.get() - 1);
    }
}

/// Entry point of every coroutine: runs the body, then leaves for the last time.
///
/// # Safety
/// `data` is the `Context` whose stack this is (as set up by `Context::start`).
unsafe extern "sysv64" fn entry(data: *mut u8, arg: usize) -> ! {
    // SAFETY: per the contract above, `data` is a live, pinned Context.
    let ctx = unsafe { &*(data as *const Context) };
    if arg != CANCEL {
        // SAFETY: `body` and `data` were paired by the Context's creator; `body` does not unwind.
        unsafe { (ctx.body)(ctx.data.get()) };
    }
    // SAFETY: we run on ctx's stack, so it is the current context; its resumer is suspended at
    // parent_sp and waits for exactly this switch. Nobody switches back after `Done`.
    unsafe { ctx.switch_back(Suspend::Done as usize) };
    // A context is never resumed after Done; getting here means the runtime itself is broken.
    fatal::resumed_after_done()
}

/// The innermost context running on this thread; null on a plain thread stack.
#[inline]
pub(crate) fn current_context() -> *const Context {
    // Only `Context::resume` publishes a slot, and the slot is the first field of a repr(C)
    // Context, so the slot's address is its context's.
    stack::running().cast::<Context>()
}

#[inline]
/// Suspends the current coroutine, telling its resumer `reason`; returns what the resumer passed
/// when it switched back ([`RESUME`] or [`CANCEL`]).
///
/// # Safety
/// Must be called on the stack of `ctx`, which must be the current context, and `reason` must
/// not be `Done` (only `entry` may finish a coroutine).
pub(crate) unsafe fn suspend(ctx: &Context, reason: Suspend) -> usize {
    debug_assert!(ptr::eq(current_context(), ctx));
    debug_assert!(reason != Suspend::Done);
    // SAFETY: per the contract, we are ctx's coroutine and its resumer waits at parent_sp.
    unsafe { ctx.switch_back(reason as usize) }
}

/// Suspends the coroutine owning `slot` with `Suspend::Grow`: its resumer moves it to a stack
/// with the requested headroom, then resumes it (see `stack::ensure`).
///
/// # Safety
/// Must be called on the stack of the running coroutine whose context embeds `slot`.
unsafe fn request_growth(slot: &StackSlot) {
    // SAFETY: `slot` is the first field of a repr(C) Context (every slot is created by
    // `Context::new`), so its address is the context's.
    let ctx = unsafe { &*(slot as *const StackSlot).cast::<Context>() };
    // SAFETY: per the contract we run on ctx's stack and it is the current context; both the
    // scheduler and raw coroutines serve `Grow` before resuming it.
    unsafe { suspend(ctx, Suspend::Grow) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// # Safety
    /// None: the body does nothing with `data`.
    unsafe fn nothing(_: *const ()) {}

    #[test]
    fn pins_nest_and_unpin_on_drop() {
        let ctx = Context::new(nothing);
        assert_eq!(ctx.pins(), 0);
        let outer = ctx.pin();
        let inner = ctx.pin();
        assert_eq!(ctx.pins(), 2);
        drop(inner);
        assert_eq!(ctx.pins(), 1);
        drop(outer);
        assert_eq!(ctx.pins(), 0);
    }
}
