//! System stacks: one large stack per thread for code that must not run on a small coroutine
//! stack (foreign calls in `Switch` mode, and the runtime's own heavy paths).
//!
//! [`on_system_stack`] switches the stack pointer to the top of this thread's system stack,
//! calls the closure there, and switches back: one call through a naked function, a few
//! nanoseconds, no scheduler involved. The system stack is mapped on first use (8 MiB, like a
//! thread's default stack, above a guard page; untouched pages cost nothing) and lives as long as
//! the thread.
//!
//! While the closure runs, the thread has no current coroutine (`stack::current()` is `None`,
//! `stack::ensure` does nothing), and code there cannot suspend: `yield_now`, `join` and other
//! waits panic with a message saying why, because suspending would save the system stack's
//! state as the coroutine's. Nested calls run directly. A panic in the closure is caught on the
//! system stack and resumed on the caller's.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};

use super::{GUARD_SIZE, Mapping};
use crate::arch;
use crate::coroutine::{current_context, set_current_context};

/// Usable bytes of a system stack: as much as a thread gets by default.
pub const SYSTEM_STACK_SIZE: usize = 8 << 20;

thread_local! {
    /// This thread's system stack, mapped on first use.
    static STACK: RefCell<Option<Mapping>> = const { RefCell::new(None) };
    /// `(guard start, bottom)` of this thread's system stack, for the fault handler (a plain
    /// const-initialised cell, so reading it there is async-signal-safe); `(0, 0)` without one.
    static GUARD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    /// Whether this thread is running on its system stack now.
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on this thread's system stack when called from a coroutine, and directly anywhere
/// else (a plain thread stack, or already on the system stack). Returns what `f` returns; a
/// panic in `f` resumes in the caller.
///
/// Use it for code that needs a large stack at once and cannot be made to grow through faults
/// (foreign code without unwind information, or with frames larger than the guard region).
/// `pagurus::ffi`'s `Switch` mode is built on it.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// let depth = pagurus::run(|| {
///     pagurus::stack::on_system_stack(|| {
///         assert!(pagurus::stack::current().is_none(), "not a coroutine stack");
///         let big = std::hint::black_box([1u8; 1 << 20]); // 1 MiB at once
///         big.iter().map(|&b| b as usize).sum::<usize>()
///     })
/// });
/// assert_eq!(depth, 1 << 20);
/// ```
///
/// # Panics
///
/// When the system stack cannot be mapped (out of memory), and whenever `f` panics.
#[inline]
pub fn on_system_stack<R>(f: impl FnOnce() -> R) -> R {
    if current_context().is_null() || ACTIVE.with(Cell::get) {
        return f();
    }
    on_system_stack_now(f)
}

/// [`on_system_stack`] for a caller known to be on a coroutine stack.
#[inline(never)]
fn on_system_stack_now<F: FnOnce() -> R, R>(f: F) -> R {
    let top = STACK.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            let map = Mapping::new(SYSTEM_STACK_SIZE, GUARD_SIZE)
                .unwrap_or_else(|err| panic!("pagurus: cannot map a system stack: {err}"));
            GUARD.with(|g| g.set((map.start(), map.bottom())));
            *slot = Some(map);
        }
        slot.as_ref().map_or(0, Mapping::top)
    });
    let mut call = Call::<F, R> {
        f: Some(f),
        out: None,
    };
    let ctx = set_current_context(std::ptr::null());
    ACTIVE.with(|a| a.set(true));
    // SAFETY: `top` is the 16-aligned end of this thread's system stack, which nothing else uses
    // now (ACTIVE was false); `run::<F, R>` takes the `Call<F, R>` we pass and does not unwind.
    unsafe { arch::call_on_stack((&raw mut call).cast(), run::<F, R>, top) };
    ACTIVE.with(|a| a.set(false));
    set_current_context(ctx);
    match call.out {
        Some(Ok(value)) => value,
        Some(Err(payload)) => panic::resume_unwind(payload),
        None => unreachable!("the system-stack call did not run"),
    }
}

struct Call<F, R> {
    f: Option<F>,
    out: Option<Result<R, Box<dyn Any + Send>>>,
}

/// Runs on the system stack.
///
/// # Safety
/// `data` is the `Call<F, R>` of the `on_system_stack_now` frame that switched here.
unsafe extern "sysv64" fn run<F: FnOnce() -> R, R>(data: *mut u8) {
    // SAFETY: per the contract; that frame waits for us and touches `call` only after we return.
    let call = unsafe { &mut *data.cast::<Call<F, R>>() };
    if let Some(f) = call.f.take() {
        call.out = Some(panic::catch_unwind(AssertUnwindSafe(f)));
    }
}

/// Whether this thread runs on its system stack now (where suspending is forbidden).
#[inline]
pub(crate) fn on_system_stack_active() -> bool {
    ACTIVE.with(Cell::get)
}

/// Whether `addr` lies in the guard page of this thread's system stack. Async-signal-safe.
pub(crate) fn system_stack_guard_contains(addr: usize) -> bool {
    let (start, bottom) = GUARD.with(Cell::get);
    (start..bottom).contains(&addr)
}
