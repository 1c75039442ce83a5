//! System stacks: one large stack per thread for code that must not run on a small coroutine
//! stack (foreign calls in `Switch` mode, and the runtime's own heavy paths).
//!
//! [`on_system_stack`] switches the stack pointer to the top of this thread's system stack,
//! calls the closure there, and switches back: one call through a naked function, a few
//! nanoseconds, no scheduler involved. The system stack is mapped on first use (8 MiB, like a
//! thread's default stack, above a guard page; untouched pages cost nothing) and lives as long as
//! the thread.
//!
//! While the closure runs, the thread is marked as on its system stack: `stack::current()` is
//! `None`, `stack::ensure` does nothing, and code there cannot suspend (`yield_now`, `join` and
//! other waits panic with a message saying why, because suspending would save the system stack's
//! state as the coroutine's). Nested calls run directly. A panic in the closure unwinds from the
//! system stack straight into the caller's frames: the switch function's unwind information
//! describes the jump between the two stacks.

use std::cell::{Cell, RefCell};
use std::mem::{ManuallyDrop, MaybeUninit};

use super::{GUARD_SIZE, Mapping, running};
use crate::{arch, fatal};

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
    /// The top of this thread's system stack, 0 until mapped: the fast path's copy (a plain
    /// const cell, where `STACK` needs its destructor registered on every access).
    static TOP: Cell<usize> = const { Cell::new(0) };
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
/// Whenever `f` panics. When the system stack cannot be mapped (out of memory) the process
/// aborts with a message saying so.
#[inline]
pub fn on_system_stack<R>(f: impl FnOnce() -> R) -> R {
    if running().is_null() || ACTIVE.with(Cell::get) {
        return call_here(f);
    }
    on_system_stack_now(f)
}

/// Calls `f` on the current stack, in a frame of its own. Never inlined: LLVM would otherwise
/// merge `f`'s stack slots into the caller's frame, so a closure with a large frame meant for the
/// system stack would make every caller's frame on the coroutine stack that large, whichever
/// branch runs.
#[inline(never)]
fn call_here<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// The top of this thread's system stack, mapping it on first use.
#[inline]
fn system_stack_top() -> usize {
    match TOP.with(Cell::get) {
        0 => map_system_stack(),
        top => top,
    }
}

#[cold]
fn map_system_stack() -> usize {
    STACK.with(|slot| {
        // An abort, not a panic: the caller is often a coroutine on a small stack, and
        // unwinding from here would need that stack to grow, in the same shortage of memory.
        let map = Mapping::new(SYSTEM_STACK_SIZE, GUARD_SIZE).unwrap_or_else(|err| {
            fatal::system_stack_alloc_failed(SYSTEM_STACK_SIZE, err.raw_os_error().unwrap_or(0))
        });
        let top = map.top();
        GUARD.with(|g| g.set((map.start(), map.bottom())));
        TOP.with(|t| t.set(top));
        *slot.borrow_mut() = Some(map);
        top
    })
}

/// [`on_system_stack`] for a caller known to be on a coroutine stack.
#[inline]
fn on_system_stack_now<F: FnOnce() -> R, R>(f: F) -> R {
    let top = system_stack_top();
    let mut call = Call::<F, R> {
        f: ManuallyDrop::new(f),
        out: MaybeUninit::uninit(),
    };
    // `call_on_stack` sets ACTIVE once it has pushed all it pushes on the coroutine stack (a push
    // there that faults in the guard is the coroutine's to grow) and clears it before it returns
    // to it. A panic in `f` unwinds from the system stack through `call_on_stack`'s frame (its
    // CFI describes the switch) back into this one with ACTIVE still set: this guard clears it.
    let _active = Leave;
    // SAFETY: `top` is the 16-aligned end of this thread's system stack, which nothing else uses
    // now (ACTIVE was false); `run::<F, R>` takes the `Call<F, R>` we pass, consumes `f` once and
    // writes `out` unless it unwinds; ACTIVE is this thread's and outlives the call.
    unsafe {
        arch::call_on_stack(
            (&raw mut call).cast(),
            run::<F, R>,
            top,
            ACTIVE.with(Cell::as_ptr),
        )
    };
    // SAFETY: `run` returned normally, so it wrote `out`.
    unsafe { call.out.assume_init() }
}

/// Leaves the system stack's "active" state when dropped.
struct Leave;

impl Drop for Leave {
    #[inline]
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(false));
    }
}

struct Call<F, R> {
    f: ManuallyDrop<F>,
    out: MaybeUninit<R>,
}

/// Runs on the system stack; a panic in `f` unwinds out of it (hence the `-unwind` ABI).
///
/// # Safety
/// `data` is the `Call<F, R>` of the `on_system_stack_now` frame that switched here, whose `f`
/// has not been taken.
unsafe extern "sysv64-unwind" fn run<F: FnOnce() -> R, R>(data: *mut u8) {
    // SAFETY: per the contract; that frame waits for us and reads `out` only if we return.
    let call = unsafe { &mut *data.cast::<Call<F, R>>() };
    // SAFETY: `f` is taken exactly once, here; the frame never drops it itself (ManuallyDrop).
    let f = unsafe { ManuallyDrop::take(&mut call.f) };
    call.out.write(f());
}

/// Maps this thread's system stack now if it is not yet, so that a later [`on_system_stack`]
/// switches at once. Mapping it runs on the caller's stack and needs more of it than the switch:
/// a caller whose coroutine stack cannot move for a while (an offloaded call pins it) prepares
/// first.
///
/// Aborts with a message when the system stack cannot be mapped (out of memory).
pub(crate) fn prepare_system_stack() {
    system_stack_top();
}

/// Whether this thread runs on its system stack now (where suspending is forbidden).
#[inline]
pub(crate) fn on_system_stack_active() -> bool {
    ACTIVE.with(Cell::get)
}

/// How far below the start of this thread's system stack's guard `sp` lies, if it does (by at
/// most [`JUMP_LIMIT`]): where a frame larger than stack and guard together lands when it is
/// entered without probes. `None` without a system stack. Async-signal-safe.
pub(crate) fn system_stack_jumped_guard(sp: usize) -> Option<usize> {
    let (start, _) = GUARD.with(Cell::get);
    let below = start.wrapping_sub(sp);
    (start != 0 && sp < start && below <= JUMP_LIMIT).then_some(below)
}

/// How far below its guard a stack pointer may be and still be taken for a frame of the system
/// stack that jumped the guard: frames of up to 1 GiB.
const JUMP_LIMIT: usize = 1 << 30;

/// Whether `addr` lies in the guard page of this thread's system stack. Async-signal-safe.
pub(crate) fn system_stack_guard_contains(addr: usize) -> bool {
    let (start, bottom) = GUARD.with(Cell::get);
    (start..bottom).contains(&addr)
}
