//! The fault path: a coroutine touches its guard region, SIGSEGV arrives, the handler moves the
//! stack into a larger one, edits the saved register state, and returns; the faulting
//! instruction re-executes on the new stack.
//!
//! # Whose fault is it
//!
//! The handler reads `CURRENT` (the innermost context running on this thread) and checks that
//! the faulting address lies in that context's guard region. Every other fault goes to the
//! action installed before ours (std's, which reports overflows of thread stacks, or the default
//! action), so a null dereference still dies with SIGSEGV.
//!
//! # What this entry point gathers
//!
//! The registers (from the signal frame's `ucontext`) and the lowest address the faulting code
//! is about to use; [`super::move_stack`] does the rest, exactly as for the explicit path.
//!
//! # How much to grow
//!
//! The new stack must hold everything from the top down to the lowest address the faulting code
//! is about to use: the fault address, the stack pointer minus the red zone, and, when the
//! faulting frame's CFA is computed from a register other than `rsp` that points below the
//! stack, that register's value, wherever it points. The last covers the probe loops of large
//! frames, which compute their lower bound (in `r11`) before touching the first page and describe
//! their CFA from it: that bound is where the frame will end, below the guard when the frame is
//! larger than the guard (the mover then moves that register explicitly). (Any other register
//! pointing into the guard is moved but does not size the stack: it may hold anything.) The size is the next power of two above that,
//! and at least double the old.
//!
//! # What is moved
//!
//! The mover copies the image from the stack pointer minus the red zone (`arch::RED_ZONE`) (optimised code
//! keeps data there without moving `rsp`) to the top, adjusting every word that points into the
//! old stack or its guard; then the same rule is applied to the sixteen general registers
//! (`rip` excluded) and to every 64-bit lane of the vector registers in the signal frame (XMM,
//! and the YMM/ZMM parts in the XSAVE area: release builds copy structs of pointers through
//! vector registers).
//!
//! # Async-signal safety
//!
//! No allocation, no lock, no `tracing`, no panic: the handler reads const-initialised
//! thread-locals, takes a stack from the thread's registered pool only if no one holds it
//! (`stack::take`, `try_borrow_mut`) or maps one (`mmap`/`mprotect` are plain system calls),
//! gives the old one back without allocating (`stack::give_back`: intrusive free lists) or unmaps
//! it, uses wrapping arithmetic throughout, and reports fatal conditions through `fatal`, which
//! formats into a buffer on its own stack for `write(2)`.
//! `errno` is saved and restored. It runs on an alternate signal stack the runtime installs on
//! every thread that runs coroutines ([`prepare_thread`]), because the faulting stack has no
//! room by definition.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Once, OnceLock};

use super::frames::Regs;
use super::{FAULT_MARGIN, Stopped, quarantine};
use crate::arch::{PAGE_SIZE, RED_ZONE, SignalContext};
use crate::coroutine::{Context, current_context};
use crate::fatal::{self, Who};
use crate::stack::{self, Mapping};

/// Size of the alternate signal stack the runtime gives each thread that runs coroutines. The
/// handler copies in a loop and walks frames with fixed-size buffers; std's default (a few KiB)
/// is too small for the walk.
const ALTSTACK_SIZE: usize = 256 * 1024;

/// The actions for SIGSEGV and SIGBUS before ours.
struct Previous {
    segv: libc::sigaction,
    bus: libc::sigaction,
}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();
static INSTALL: Once = Once::new();

/// Installs the handler, once per process, before any coroutine stack exists (through
/// [`prepare_thread`]).
fn install() {
    INSTALL.call_once(|| {
        #[cfg(panic = "unwind")]
        warm_unwinder();
        crate::arch::prepare_signal_context();
        // SAFETY: getauxval reads the process's auxiliary vector; 0 means "not there".
        let frame = unsafe { libc::getauxval(AT_MINSIGSTKSZ) } as usize;
        SIGNAL_FRAME_ROOM.store(RED_ZONE + frame.max(MINSIGSTKSZ), Relaxed);
        let previous = Previous {
            segv: current_action(libc::SIGSEGV),
            bus: current_action(libc::SIGBUS),
        };
        if PREVIOUS.set(previous).is_err() {
            return;
        }
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; we fill the fields
        // sigaction(2) reads.
        let mut action: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
        action.sa_sigaction = on_fault as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // Every other signal waits until the handler returns (the kernel restores the mask then):
        // a handler of the program's (a sampling profiler walking the interrupted stack) must
        // never see a stack half moved, with the old one already given back or the registers
        // half rewritten.
        // SAFETY: `sa_mask` is a sigset_t owned by `action`.
        unsafe { libc::sigfillset(&mut action.sa_mask) };
        for sig in [libc::SIGSEGV, libc::SIGBUS] {
            // SAFETY: `action` is fully initialised and `on_fault` has the SA_SIGINFO signature.
            let rc = unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) };
            if rc != 0 {
                tracing::warn!(
                    sig,
                    "cannot install the pagurus fault handler; stacks cannot grow by fault"
                );
            }
        }
    });
}

fn current_action(sig: libc::c_int) -> libc::sigaction {
    // SAFETY: sigaction with a null new action only writes the current one into `old`, which is
    // valid for writes.
    unsafe {
        let mut old = MaybeUninit::<libc::sigaction>::zeroed();
        libc::sigaction(sig, std::ptr::null(), old.as_mut_ptr());
        old.assume_init()
    }
}

/// This thread's alternate signal stack (with a guard page below), unmapped when the thread
/// exits. Not a coroutine stack: it is not counted in `stats()`.
struct AltStack {
    map: Mapping,
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // Disable it first if it is still the installed one.
        // SAFETY: sigaltstack with a null new stack only reads the current one into `cur`.
        let mut cur: libc::stack_t = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: `cur` is valid for writes.
        unsafe { libc::sigaltstack(std::ptr::null(), &mut cur) };
        if cur.ss_sp as usize == self.map.bottom() {
            let disable = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: disabling the alternate stack of this thread, which is not on it now.
            unsafe { libc::sigaltstack(&disable, std::ptr::null_mut()) };
        }
    }
}

thread_local! {
    static ALTSTACK: RefCell<Option<AltStack>> = const { RefCell::new(None) };
}

/// Prepares this thread for the handler: the handler itself (once per process), an alternate
/// signal stack of at least [`ALTSTACK_SIZE`] bytes, and a frame walker (see
/// `frames::prepare_thread`). Called by every thread before it maps or runs coroutine stacks
/// (workers, `block_on` callers, raw coroutine owners), on its own stack; after the first call on
/// a thread it is an atomic load and two thread-local checks.
pub(crate) fn prepare_thread() {
    install();
    super::frames::prepare_thread();
    ALTSTACK.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_some() {
            return;
        }
        // SAFETY: a zeroed stack_t is valid; sigaltstack writes the current one into it.
        let mut cur: libc::stack_t = unsafe { MaybeUninit::zeroed().assume_init() };
        // SAFETY: `cur` is valid for writes; a null new stack changes nothing.
        unsafe { libc::sigaltstack(std::ptr::null(), &mut cur) };
        if cur.ss_flags & libc::SS_DISABLE == 0 && cur.ss_size >= ALTSTACK_SIZE {
            return; // someone already gave this thread a big enough one
        }
        let Ok(map) = Mapping::new(ALTSTACK_SIZE, PAGE_SIZE) else {
            tracing::warn!("cannot map an alternate signal stack; stack growth by fault may crash");
            return;
        };
        let new = libc::stack_t {
            ss_sp: map.bottom() as *mut libc::c_void,
            ss_flags: 0,
            ss_size: ALTSTACK_SIZE,
        };
        // SAFETY: `new` describes a mapping we own and keep alive (in ALTSTACK) until the thread
        // exits, where the AltStack drop uninstalls it before unmapping.
        if unsafe { libc::sigaltstack(&new, std::ptr::null_mut()) } == 0 {
            *slot = Some(AltStack { map });
        }
    });
}

/// The signal handler. Async-signal-safe (see the module docs).
extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ucontext: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; si_addr is defined for
    // SIGSEGV and SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    let ctx = current_context();
    // SAFETY: CURRENT holds the context running on this thread (alive), or null.
    match unsafe { ctx.as_ref() } {
        // On the system stack the registers are not the coroutine's: a fault there is never a
        // growth of the coroutine.
        Some(ctx) if !stack::on_system_stack_active() && in_guard(ctx, addr) => {
            // SAFETY: `ucontext` is the third argument of this running SA_SIGINFO handler.
            let mut regs = unsafe { SignalContext::from_raw(ucontext) };
            grow_faulting(ctx, &mut regs, addr);
        }
        _ if stack::system_stack_guard_contains(addr) => {
            fatal::system_stack_overflow(stack::SYSTEM_STACK_SIZE)
        }
        _ => match quarantine::lookup(addr) {
            Some(id) => {
                // SAFETY: as above.
                let pc = unsafe { SignalContext::from_raw(ucontext) }.pc();
                fatal::stale_pointer(Who(id), addr, pc, |out| super::symbol::describe(pc, out))
            }
            None => {
                // SAFETY: as above.
                let sp = unsafe { SignalContext::from_raw(ucontext) }.sp();
                // SAFETY: as above; si_code is defined for every signal.
                let code = unsafe { (*info).si_code };
                explain_foreign_fault(sig, code, addr, sp, ctx);
                chain(sig, info, ucontext)
            }
        },
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Names the two faults that are not growths but happen because of coroutine stacks, before they
/// are handed on: otherwise they would be bare SIGSEGVs. Async-signal-safe.
///
/// - A frame on the system stack that jumped over its guard: the stack pointer lies below the
///   guard, while the thread is marked as on its system stack. Aborts with a message.
/// - A signal whose handler was installed without `SA_ONSTACK`, arriving while a coroutine's
///   stack has less room than the kernel's signal frame: the kernel cannot push the frame and
///   sends SIGSEGV itself instead (`SI_KERNEL`, address 0), with the coroutine's registers. The
///   stack cannot grow for the kernel and the signal is lost by then, so this is fatal: aborts
///   with a message. (Handed on, the SIGSEGV would be ignored by std's handler, which only
///   handles its own guard pages, and the program would go on without its signal.)
fn explain_foreign_fault(
    sig: libc::c_int,
    code: libc::c_int,
    addr: usize,
    sp: usize,
    ctx: *const Context,
) {
    if stack::on_system_stack_active() {
        if let Some(below) = stack::system_stack_jumped_guard(sp) {
            fatal::system_stack_jumped_guard(sp, below, stack::SYSTEM_STACK_SIZE, stack::GUARD_SIZE)
        }
        return;
    }
    if sig != libc::SIGSEGV || code != libc::SI_KERNEL || addr != 0 {
        return;
    }
    // SAFETY: CURRENT holds the context running on this thread (alive), or null.
    let Some(span) = unsafe { ctx.as_ref() }.and_then(Context::span) else {
        return;
    };
    if !(span.guard_start..span.top).contains(&sp) {
        return;
    }
    let room = sp.saturating_sub(span.bottom);
    if room < SIGNAL_FRAME_ROOM.load(Relaxed) {
        // SAFETY: as above (checked non-null by `span`).
        let id = unsafe { (*ctx).id() };
        fatal::signal_frame_did_not_fit(Who(id), sp, room, span.size());
    }
}

/// Stack a signal frame needs below the stack pointer: the red zone, and the frame itself as the
/// kernel sizes it (`AT_MINSIGSTKSZ`, which counts the processor's extended state; at least the
/// classic `MINSIGSTKSZ`). Set when the handler is installed.
static SIGNAL_FRAME_ROOM: AtomicUsize = AtomicUsize::new(RED_ZONE + MINSIGSTKSZ);

/// The classic minimum signal stack size, for kernels that do not say (`<signal.h>`).
const MINSIGSTKSZ: usize = 2048;
/// The auxiliary vector entry with the kernel's signal frame size (`<linux/auxvec.h>`).
const AT_MINSIGSTKSZ: libc::c_ulong = 51;

fn in_guard(ctx: &Context, addr: usize) -> bool {
    ctx.span().is_some_and(|s| s.guard_contains(addr))
}

/// The fault path's entry point: gathers the registers and the lowest address the faulting
/// code needs, and has [`super::move_stack`] move the stack; returns normally so the instruction
/// re-executes on the new stack.
fn grow_faulting(ctx: &Context, regs: &mut SignalContext, addr: usize) {
    let sp = regs.sp();
    // SAFETY: no `&mut` into the ucontext is alive here.
    let walk_from = Regs::from_ucontext(unsafe { regs.ucontext() });
    let stopped = Stopped {
        walk_from,
        signal_frame: true,
        sp,
        red_zone: RED_ZONE,
        lowest: addr.min(sp.wrapping_sub(RED_ZONE)),
        margin: FAULT_MARGIN,
        registers: Some(regs),
    };
    super::move_stack(ctx, stopped);
}

/// Hands a fault that is not ours to the action installed before ours.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ucontext: *mut libc::c_void) {
    let Some(previous) = PREVIOUS.get() else {
        return restore_default(sig);
    };
    let action = if sig == libc::SIGBUS {
        &previous.bus
    } else {
        &previous.segv
    };
    match action.sa_sigaction {
        // Ignoring a fault would re-execute the faulting instruction forever: treat it as default.
        libc::SIG_DFL | libc::SIG_IGN => restore_default(sig),
        handler if action.sa_flags & libc::SA_SIGINFO != 0 => {
            // SAFETY: the previous owner registered this address as an SA_SIGINFO handler.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(handler) };
            f(sig, info, ucontext);
        }
        handler => {
            // SAFETY: the previous owner registered this address as a plain handler.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(handler) };
            f(sig);
        }
    }
}

/// Resets `sig` to its default action; returning then re-executes the faulting instruction,
/// which kills the process with the signal.
fn restore_default(sig: libc::c_int) {
    // SAFETY: signal(2) with SIG_DFL is async-signal-safe.
    unsafe { libc::signal(sig, libc::SIG_DFL) };
}

/// Unwinds once through a frame with a destructor, on the caller's (thread) stack.
///
/// The first unwind in a process makes the dynamic linker resolve libgcc's lazily bound symbols
/// (`_Unwind_Find_FDE`, `_Unwind_Resume`, ...), and the resolver saves the whole extended
/// register state on the stack: over 2 KiB, more than a 4 KiB coroutine has left once a panic is
/// under way. Doing it here, before the first coroutine stack exists and where stacks are large,
/// binds them for every later unwind. (Built with `panic = "abort"` nothing unwinds, and
/// unwinding here would abort.)
#[cfg(panic = "unwind")]
fn warm_unwinder() {
    struct Cleanup;
    impl Drop for Cleanup {
        fn drop(&mut self) {
            std::hint::black_box(self);
        }
    }
    #[inline(never)]
    fn unwind_through_cleanup() {
        let _cleanup = Cleanup;
        // resume_unwind skips the panic hook: nothing is printed.
        std::panic::resume_unwind(Box::new(()));
    }
    let _ = std::panic::catch_unwind(unwind_through_cleanup);
}
