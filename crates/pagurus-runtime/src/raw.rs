//! Coroutines without a scheduler: resume one by hand, it runs until it suspends.
//!
//! This is the primitive the scheduler is built on, exposed for code that wants generator-like
//! control flow and for measuring the bare switch. A raw coroutine runs on the thread that
//! resumes it and never moves to another (`Coroutine` is `!Send`).
//!
//! ```
//! # use pagurus_runtime as pagurus;
//! use pagurus::raw::Coroutine;
//!
//! let mut steps = Vec::new();
//! let mut co = Coroutine::new(16 * 1024, |s| {
//!     for i in 0..3 {
//!         println!("step {i}");
//!         s.suspend();
//!     }
//! })
//! .unwrap();
//! while co.resume() {
//!     steps.push(steps.len());
//! }
//! assert_eq!(steps, [0, 1, 2]);
//! assert!(co.is_done());
//! ```

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::io;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::{self, NonNull};

use crate::coroutine::{
    CANCEL, CANCEL_ATTEMPTS, Cancelled, Context, GrowthLimits, RESUME, Suspend, current_context,
    suspend,
};
use crate::fatal;
use crate::grow::{fault, grow_suspended, quarantine};
use crate::stack::{DEFAULT_MAX_STACK_SIZE, Stack, validate_stack_size};

/// A coroutine driven by hand with [`Coroutine::resume`].
pub struct Coroutine<'a> {
    /// Owned (from `Box::into_raw`), freed by `Drop`. Only shared references are ever made to
    /// it, because the coroutine's own stack holds one across every suspension.
    inner: NonNull<Inner<'a>>,
    _not_send: PhantomData<*mut ()>,
}

struct Inner<'a> {
    ctx: Context,
    body: UnsafeCell<Option<Body<'a>>>,
    panic: UnsafeCell<Option<Box<dyn Any + Send>>>,
    done: Cell<bool>,
}

type Body<'a> = Box<dyn FnOnce(&Suspender) + 'a>;

/// Handed to a raw coroutine's closure; suspends that coroutine.
pub struct Suspender {
    ctx: *const Context,
    _not_send: PhantomData<*mut ()>,
}

impl Coroutine<'static> {
    /// A coroutine that will run `f` on a stack of `stack_size` bytes (a power of two from one
    /// page to 16 TiB; the stack is mapped now and unmapped when the coroutine finishes or
    /// drops). Fails with `InvalidInput` for a size out of that range or an invalid
    /// `PAGURUS_STACK_QUARANTINE`, and with the OS error when the stack cannot be mapped.
    ///
    /// `f` must be `'static`: a closure borrowing the creator's locals would keep their
    /// addresses on the heap, and when the creator runs on a coroutine stack that grows (moves),
    /// those addresses go stale (design.md, "What may point into a coroutine stack"). Share
    /// state through `Rc`/`Arc` or move it in; [`Coroutine::new_unchecked`] borrows, with that
    /// contract left to the caller.
    ///
    /// ```compile_fail
    /// # use pagurus_runtime as pagurus;
    /// let mut n = 0;
    /// // Borrows `n`: rejected, since `n` could live on a stack that moves.
    /// let co = pagurus::raw::Coroutine::new(4096, |_| n += 1);
    /// ```
    pub fn new<F>(stack_size: usize, f: F) -> io::Result<Coroutine<'static>>
    where
        F: FnOnce(&Suspender) + 'static,
    {
        // SAFETY: a 'static closure borrows nothing, so nothing it uses can move under it.
        unsafe { Coroutine::new_unchecked(stack_size, f) }
    }
}

impl<'a> Coroutine<'a> {
    /// [`Coroutine::new`] for a closure that borrows data living for `'a`.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let mut n = 0;
    /// // SAFETY: `n` lives on this thread's own stack, which never moves.
    /// let mut co = unsafe { pagurus::raw::Coroutine::new_unchecked(4096, |_| n += 1) }.unwrap();
    /// assert!(!co.resume());
    /// drop(co);
    /// assert_eq!(n, 1);
    /// ```
    ///
    /// The lifetime makes borrowed data outlive the coroutine, but cannot keep it in place: data
    /// on a **coroutine stack** moves when that stack grows, and the closure's copies of its
    /// addresses, on the heap, are not adjusted (design.md, "What may point into a coroutine
    /// stack"). Borrow from a thread's own stack, the heap or a static; or, for data on a
    /// coroutine stack, first reserve with `stack::ensure` all the stack that coroutine will need
    /// while this one is alive, so that it does not move.
    ///
    /// # Safety
    ///
    /// Everything `f` borrows stays at the same address for as long as the coroutine may run
    /// (until it finishes or is dropped).
    pub unsafe fn new_unchecked<F>(stack_size: usize, f: F) -> io::Result<Coroutine<'a>>
    where
        F: FnOnce(&Suspender) + 'a,
    {
        validate_stack_size("stack_size", stack_size)?;
        let quarantine = quarantine::default_enabled()?;
        fault::prepare_thread();
        crate::stack::prepare()?;
        let stack = Stack::new(stack_size)?;
        let inner = Box::new(Inner {
            ctx: Context::new(run_body),
            body: UnsafeCell::new(Some(Box::new(f))),
            panic: UnsafeCell::new(None),
            done: Cell::new(false),
        });
        let data = &*inner as *const Inner<'_> as *const ();
        let limits = GrowthLimits {
            max_size: DEFAULT_MAX_STACK_SIZE,
            quarantine,
        };
        // SAFETY: the context is fresh and lives on the heap, where it stays until `drop`;
        // `data` is the Inner that `run_body` expects.
        unsafe { inner.ctx.start(stack, data, 0, limits) };
        let inner = NonNull::from(Box::leak(inner));
        Ok(Coroutine {
            inner,
            _not_send: PhantomData,
        })
    }

    fn inner(&self) -> &Inner<'a> {
        // SAFETY: `inner` is a live heap allocation owned by self until `drop`.
        unsafe { self.inner.as_ref() }
    }

    /// Runs the coroutine until it suspends (`true`) or finishes (`false`). Resuming a finished
    /// coroutine returns `false` again. A panic inside the coroutine resumes here, on the caller's
    /// stack, after the coroutine's own stack has unwound.
    #[inline]
    pub fn resume(&mut self) -> bool {
        self.resume_with(RESUME)
    }

    /// Whether the closure has returned (or panicked).
    pub fn is_done(&self) -> bool {
        self.inner().done.get()
    }

    #[inline]
    fn resume_with(&mut self, arg: usize) -> bool {
        let inner = self.inner();
        if inner.done.get() {
            return false;
        }
        let mut arg = arg;
        loop {
            // SAFETY: the context has a stack (given in `new`, taken only once done), is
            // suspended, and being !Send it has only ever run on this thread.
            let reason = unsafe { inner.ctx.resume(arg) };
            inner.ctx.report_growths();
            match reason {
                Suspend::Done => return self.finished(),
                Suspend::Grow => {
                    grow_suspended(&inner.ctx);
                    arg = RESUME;
                }
                Suspend::Yield | Suspend::Park => return true,
            }
        }
    }

    /// Cleans up after the coroutine's last switch; re-raises its panic.
    #[cold]
    fn finished(&mut self) -> bool {
        let inner = self.inner();
        inner.done.set(true);
        drop(inner.ctx.take_stack());
        // SAFETY: the coroutine is done, so nothing else touches the panic slot.
        if let Some(payload) = unsafe { (*inner.panic.get()).take() } {
            panic::resume_unwind(payload);
        }
        false
    }
}

impl Drop for Coroutine<'_> {
    fn drop(&mut self) {
        // A suspended coroutine unwinds its stack so that its destructors run. The first resume
        // of a coroutine that never ran skips its body entirely (see `entry`).
        let attempts = if cfg!(panic = "unwind") {
            CANCEL_ATTEMPTS
        } else {
            0
        };
        for _ in 0..attempts {
            if self.is_done() {
                break;
            }
            // A panic here means the coroutine turned the cancellation into some other panic
            // while unwinding: it is done all the same, and a destructor must not panic.
            let _ = panic::catch_unwind(AssertUnwindSafe(|| self.resume_with(CANCEL)));
        }
        if !self.is_done() && self.inner().ctx.has_stack() {
            // Its stack may hold borrows of data whose lifetime ends when this drop returns (a
            // scoped thread still writing to it, say): neither freeing the stack nor returning
            // can be made safe. Stop here, loudly.
            fatal::raw_dropped_suspended(attempts);
        }
        // SAFETY: `inner` came from Box::leak in `new`; the coroutine is done or never started,
        // so no reference into it survives this point.
        drop(unsafe { Box::from_raw(self.inner.as_ptr()) });
    }
}

impl Suspender {
    /// Switches back to whoever called [`Coroutine::resume`].
    ///
    /// # Panics
    ///
    /// When called from any stack other than this coroutine's own (e.g. from a nested coroutine
    /// the closure created). When the coroutine is being dropped, this raises [`Cancelled`] so the
    /// stack unwinds; do not catch it.
    #[inline] // puts the switch in the caller's frame, which keeps the CPU's return predictions right
    pub fn suspend(&self) {
        assert!(
            ptr::eq(current_context(), self.ctx),
            "Suspender::suspend called outside the coroutine it belongs to"
        );
        // SAFETY: `self.ctx` is the current context (checked above), so it is alive.
        let ctx = unsafe { &*self.ctx };
        // SAFETY: we are on the stack of that context.
        let arg = unsafe { suspend(ctx, Suspend::Yield) };
        if ctx.should_raise_cancel(arg) {
            panic::resume_unwind(Box::new(Cancelled));
        }
    }
}

/// The body of every raw coroutine: runs the closure, keeps a panic for `resume` to re-raise.
///
/// # Safety
/// `data` points to the `Inner` that owns the running context.
unsafe fn run_body(data: *const ()) {
    // SAFETY: per the contract; `body` and `panic` are only touched from the coroutine while it
    // runs and from the resumer while it is suspended or done, never both at once.
    let inner = unsafe { &*(data as *const Inner<'_>) };
    // SAFETY: as above.
    let Some(f) = (unsafe { (*inner.body.get()).take() }) else {
        return;
    };
    let suspender = Suspender {
        ctx: &inner.ctx,
        _not_send: PhantomData,
    };
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| f(&suspender)))
        && payload.downcast_ref::<Cancelled>().is_none()
    {
        // SAFETY: as above.
        unsafe { *inner.panic.get() = Some(payload) };
    }
}
