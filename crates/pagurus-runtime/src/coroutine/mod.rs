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
//! contexts nest (a coroutine may resume a raw coroutine of its own).
//!
//! # Invariants
//!
//! - While a coroutine is suspended, its registers live on its own stack below `saved_sp`, and
//!   `saved_sp` is the only pointer into that stack held outside it.
//! - While it runs, `parent_sp` points into the resumer's stack, which is itself suspended.
//! - A context is only ever resumed by the thread it first ran on (schedulers pin started
//!   coroutines to their worker; raw coroutines are `!Send`). Code in the coroutine may cache
//!   thread-local addresses across a suspension, so moving it to another thread would be unsound.

pub mod raw;

use std::cell::{Cell, UnsafeCell};
use std::ptr;

use crate::arch;
use crate::grow::relocate::{Move, Span};
use crate::stack::Stack;

/// Passed by a resumer: continue normally.
pub(crate) const RESUME: usize = 0;
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

thread_local! {
    /// The innermost context running on this thread, null on a plain thread stack.
    static CURRENT: Cell<*const Context> = const { Cell::new(ptr::null()) };
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

pub(crate) struct Context {
    /// The coroutine's stack pointer while it is suspended.
    saved_sp: Cell<*mut u8>,
    /// The resumer's stack pointer while the coroutine runs.
    parent_sp: Cell<*mut u8>,
    /// Mapped lazily by [`Context::start`], handed back by [`Context::take_stack`].
    stack: UnsafeCell<Option<Stack>>,
    /// Lowest usable address of the stack (a copy of `Stack::bottom`, kept next to the hot
    /// fields so `stack::ensure` costs two loads); 0 without a stack.
    limit: Cell<usize>,
    /// Headroom asked for by the pending `Suspend::Grow`.
    grow_request: Cell<usize>,
    /// The largest size the stack may grow to.
    max_size: Cell<usize>,
    /// Whether stacks this coroutine moves out of are quarantined (see `grow::quarantine`).
    quarantine: Cell<bool>,
    /// Whether a `CANCEL` resume has already been turned into a `Cancelled` unwind.
    cancel_raised: Cell<bool>,
    growths: Cell<u64>,
    /// `growths` when the resumer last reported them (the fault handler cannot log).
    reported_growths: Cell<u64>,
    body: Body,
    data: Cell<*const ()>,
}

impl Context {
    /// A context that will run `body(data)`, where `data` is given to [`Context::start`]; it has
    /// no stack until then.
    pub(crate) fn new(body: Body) -> Context {
        Context {
            saved_sp: Cell::new(ptr::null_mut()),
            parent_sp: Cell::new(ptr::null_mut()),
            stack: UnsafeCell::new(None),
            limit: Cell::new(0),
            grow_request: Cell::new(0),
            max_size: Cell::new(0),
            quarantine: Cell::new(false),
            cancel_raised: Cell::new(false),
            growths: Cell::new(0),
            reported_growths: Cell::new(0),
            body,
            data: Cell::new(ptr::null()),
        }
    }

    /// Whether [`Context::start`] has given this context a stack.
    pub(crate) fn has_stack(&self) -> bool {
        // SAFETY: the stack slot is only written by `start` and `take_stack`, which take no
        // reference that outlives their call, and contexts are used by one thread at a time.
        unsafe { (*self.stack.get()).is_some() }
    }

    /// Gives the context its stack and lays out the first frame on it; the first resume will
    /// run `body(data)` there, and the stack may grow as `limits` say.
    ///
    /// # Safety
    /// The context must not have a stack yet, and must not move in memory from now until its
    /// coroutine is done (the initial frame records its address). `data` must satisfy `body`'s
    /// contract whenever the coroutine runs.
    pub(crate) unsafe fn start(&self, stack: Stack, data: *const (), limits: GrowthLimits) {
        self.data.set(data);
        self.max_size.set(limits.max_size);
        self.quarantine.set(limits.quarantine);
        let top = stack.top() as *mut u8;
        // SAFETY: `top` is the 16-aligned end of a fresh read/write stack with far more than
        // INIT_FRAME_BYTES below it; `entry` upholds EntryFn for a pinned `Context` pointer.
        let sp = unsafe { arch::init_stack(top, entry, self as *const Context as *mut u8) };
        self.saved_sp.set(sp);
        self.limit.set(stack.bottom());
        // SAFETY: see `has_stack`; no reference into the slot is alive.
        unsafe { *self.stack.get() = Some(stack) };
    }

    /// Bounds of the stack, for the relocation engine.
    pub(crate) fn span(&self) -> Option<Span> {
        self.bounds().map(|(guard_start, bottom, size)| Span {
            guard_start,
            bottom,
            top: bottom + size,
        })
    }

    pub(crate) fn saved_sp(&self) -> usize {
        self.saved_sp.get() as usize
    }

    pub(crate) fn grow_request(&self) -> usize {
        self.grow_request.get()
    }

    /// Emits a `tracing` event for growths that happened since the last call (the fault handler
    /// only counts them). Called by resumers, from normal context, after each resume.
    #[inline]
    pub(crate) fn report_growths(&self, id: Option<u64>) {
        let growths = self.growths.get();
        if growths != self.reported_growths.get() {
            self.reported_growths.set(growths);
            let size = self.span().map_or(0, |s| s.top - s.bottom);
            tracing::debug!(id, growths, size, "coroutine stack grew");
        }
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

    /// Installs `new` after `moved` copied the coroutine's image into it; returns the old stack.
    /// Async-signal-safe.
    ///
    /// # Safety
    /// The coroutine must be stopped (suspended, or interrupted by the signal being handled), and
    /// `moved` must have copied its whole live image from the current stack into `new`.
    pub(crate) unsafe fn replace_stack(&self, new: Stack, moved: &Move) -> Option<Stack> {
        self.saved_sp.set(moved.adjust(self.saved_sp()) as *mut u8);
        self.limit.set(new.bottom());
        self.growths.set(self.growths.get().wrapping_add(1));
        // SAFETY: see `has_stack`; the coroutine is stopped, so nothing refers to the slot.
        unsafe { (*self.stack.get()).replace(new) }
    }

    /// Takes the stack back once the coroutine is done (or will never run again).
    pub(crate) fn take_stack(&self) -> Option<Stack> {
        // SAFETY: see `has_stack`.
        unsafe { (*self.stack.get()).take() }
    }

    #[inline]
    /// Runs the coroutine until it suspends; returns why it did.
    ///
    /// # Safety
    /// The context must have a stack, be suspended (started and not done), not be running on any
    /// thread, and have last run on this thread (if it ran before).
    pub(crate) unsafe fn resume(&self, arg: usize) -> Suspend {
        let prev = CURRENT.with(|c| c.replace(self));
        // SAFETY: the caller guarantees `saved_sp` describes a suspended stack of this thread;
        // `parent_sp` is ours to write.
        let word = unsafe { arch::resume(self.parent_sp.as_ptr(), self.saved_sp.get(), arg) };
        CURRENT.with(|c| c.set(prev));
        Suspend::from_word(word)
    }

    /// `(guard start, bottom, usable size)` of the stack, if it has one. Async-signal-safe.
    pub(crate) fn bounds(&self) -> Option<(usize, usize, usize)> {
        // SAFETY: see `has_stack`.
        unsafe { &*self.stack.get() }
            .as_ref()
            .map(|s| (s.guard_start(), s.bottom(), s.size()))
    }

    /// Usable size of the stack, and how many bytes of it are in use at stack pointer `sp`.
    fn usage(&self, sp: usize) -> (usize, usize) {
        // SAFETY: see `has_stack`.
        match unsafe { &*self.stack.get() } {
            Some(stack) => (stack.size(), stack.top().saturating_sub(sp)),
            None => (0, 0),
        }
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
    unsafe {
        arch::suspend(
            ctx.saved_sp.as_ptr(),
            ctx.parent_sp.get(),
            Suspend::Done as usize,
        )
    };
    // A context is never resumed after Done; getting here means the runtime itself is broken.
    std::process::abort()
}

/// The innermost context running on this thread; null on a plain thread stack.
#[inline]
pub(crate) fn current_context() -> *const Context {
    CURRENT.with(|c| c.get())
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
    unsafe { arch::suspend(ctx.saved_sp.as_ptr(), ctx.parent_sp.get(), reason as usize) }
}

/// Bytes between the caller's stack pointer and the bottom of the current coroutine's stack;
/// `None` on a plain thread stack.
#[inline]
pub(crate) fn current_headroom() -> Option<usize> {
    let ctx = current_context();
    if ctx.is_null() || crate::stack::on_system_stack_active() {
        return None;
    }
    // SAFETY: CURRENT holds the context running on this thread, which is alive.
    let limit = unsafe { (*ctx).limit.get() };
    Some(arch::stack_pointer().wrapping_sub(limit))
}

/// Moves the running coroutine to a stack with at least `bytes` of headroom below the caller,
/// by asking its resumer to do it. Returns once running on the new stack.
#[cold]
#[inline(never)]
pub(crate) fn request_growth(bytes: usize) {
    let ctx = current_context();
    if ctx.is_null() || crate::stack::on_system_stack_active() {
        return;
    }
    // SAFETY: CURRENT is the context running on this thread: we are on its stack, and its
    // resumer serves `Grow` (both the scheduler and raw coroutines do) before resuming it.
    unsafe {
        (*ctx).grow_request.set(bytes);
        suspend(&*ctx, Suspend::Grow);
    }
}

/// `(size, used, growths)` of the current coroutine's stack; `None` on a plain thread stack.
pub(crate) fn current_usage() -> Option<(usize, usize, u64)> {
    let ctx = current_context();
    if ctx.is_null() || crate::stack::on_system_stack_active() {
        return None;
    }
    // SAFETY: CURRENT only ever holds a context that is running on this thread right now, and a
    // running context is alive.
    let ctx = unsafe { &*ctx };
    // Any call here may fault and move the stack (unoptimised code calls even `Cell::get`): read
    // again until no move happened in between, so size, use and count describe one stack.
    loop {
        let growths = ctx.growths.get();
        let (size, used) = ctx.usage(arch::stack_pointer());
        if ctx.growths.get() == growths {
            return Some((size, used, growths));
        }
    }
}
