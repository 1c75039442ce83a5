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
//! # How much to grow
//!
//! The new stack must hold everything from the top down to the lowest address the faulting code
//! is about to use: the fault address, the stack pointer minus the red zone, and, when the
//! faulting frame's CFA is computed from a register other than `rsp` that points into the guard,
//! that register's value. The last covers the probe loops of large frames, which compute their
//! lower bound (in `r11`) before touching the first page and describe their CFA from it: that
//! bound is where the frame will end. (Any other register pointing into the guard is moved but
//! does not size the stack: it may hold anything.) The size is the next power of two above that,
//! and at least double the old.
//!
//! # What is moved
//!
//! [`Move`] copies the image from the stack pointer minus the 128-byte red zone (optimised code
//! keeps data there without moving `rsp`) to the top, adjusting every word that points into the
//! old stack or its guard; then the same rule is applied to the sixteen general registers
//! (`rip` excluded) and to every 64-bit lane of the vector registers in the signal frame (XMM,
//! and the YMM/ZMM parts in the XSAVE area: release builds copy structs of pointers through
//! vector registers).
//!
//! # Async-signal safety
//!
//! No allocation, no lock, no `tracing`, no panic: the handler reads const-initialised
//! thread-locals, takes a stack from the worker's pool only if no one holds it (`try_borrow_mut`)
//! or maps one (`mmap`/`mprotect` are plain system calls), unmaps the old one, uses wrapping
//! arithmetic throughout, and formats messages into a buffer on its own stack for `write(2)`.
//! `errno` is saved and restored. It runs on an alternate signal stack the runtime installs on
//! every thread that runs coroutines ([`prepare_thread`]), because the faulting stack has no
//! room by definition.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::sync::{Once, OnceLock};

use super::quarantine;
use super::relocate::Move;
use super::unwind::Regs;
use crate::arch::SignalContext;
use crate::coroutine::{Context, current_context};
use crate::stack::{Mapping, PAGE_SIZE, Stack};
use crate::stats;

/// Bytes of the SysV red zone below the stack pointer.
const RED_ZONE: usize = 128;
/// Headroom added above what the faulting code needs, so the next frames do not fault at once.
const FAULT_SLACK: usize = 2 * PAGE_SIZE;
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

/// Installs the handler, once per process. Called before any coroutine stack exists.
pub(crate) fn install() {
    INSTALL.call_once(|| {
        crate::arch::prepare_signal_context();
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

/// Prepares this thread for the handler: an alternate signal stack of at least
/// [`ALTSTACK_SIZE`] bytes, and a frame walker (see `unwind::prepare_thread`). Called by every
/// thread before it runs coroutines (workers, `block_on` callers, raw coroutine owners), on its
/// own stack; after the first call on a thread it is two thread-local checks.
pub(crate) fn prepare_thread() {
    super::unwind::prepare_thread();
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
        Some(ctx) if !crate::stack::on_system_stack_active() && in_guard(ctx, addr) => {
            // SAFETY: `ucontext` is the third argument of this running SA_SIGINFO handler.
            let mut regs = unsafe { SignalContext::from_raw(ucontext) };
            grow_faulting(ctx, &mut regs, addr);
        }
        _ if crate::stack::system_stack_guard_contains(addr) => report_system_stack_overflow(),
        _ => match quarantine::lookup(addr) {
            // SAFETY: as above.
            Some(id) => report_stale(id, addr, unsafe { SignalContext::from_raw(ucontext) }.pc()),
            None => chain(sig, info, ucontext),
        },
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

fn in_guard(ctx: &Context, addr: usize) -> bool {
    ctx.span()
        .is_some_and(|s| (s.guard_start..s.bottom).contains(&addr))
}

/// Moves the faulting coroutine's stack; returns normally so the instruction re-executes.
fn grow_faulting(ctx: &Context, regs: &mut SignalContext, addr: usize) {
    let Some(old) = ctx.span() else { return };
    let sp = regs.sp();
    // SAFETY: no `&mut` into the ucontext is alive here.
    let walk_regs = Regs::from_ucontext(unsafe { regs.ucontext() });
    let walked = match super::check_frames(&walk_regs, true, old) {
        Ok(walked) => walked,
        Err(failure) => report_unwalkable(crate::sched::current_coroutine_id_for(ctx), &failure),
    };
    let mut lowest = addr.min(sp.wrapping_sub(RED_ZONE));
    // A probe loop computes the CFA from the register holding the frame's lower bound: that is
    // where the frame will end, possibly far below the fault.
    if walked.first_cfa_reg != super::unwind::RSP
        && let Some(bound) = walk_regs.get(walked.first_cfa_reg)
        && (old.guard_start..old.bottom).contains(&bound)
    {
        lowest = lowest.min(bound);
    }
    let size = old.top.wrapping_sub(old.bottom);
    let needed = old.top.wrapping_sub(lowest).saturating_add(FAULT_SLACK);
    let new_size = needed
        .checked_next_power_of_two()
        .unwrap_or(usize::MAX)
        .max(size.saturating_mul(2));
    let max = ctx.max_size();
    if new_size > max {
        report_limit(ctx, size, needed, max);
    }
    let Some(new) = take_stack(new_size) else {
        report_oom(ctx, new_size)
    };
    let moved = Move::new(old, new.top(), sp, RED_ZONE);
    // SAFETY: the coroutine is stopped in this handler, so nothing else writes its stack; the
    // source range is readable (clamped to the usable part), the new stack is ours, writable,
    // disjoint and at least `needed` bytes, which covers the copy.
    let copied = unsafe { moved.copy_and_adjust() };
    for r in regs.general_registers() {
        *r = moved.adjust(*r as usize) as libc::greg_t;
    }
    regs.for_each_vector_lane(|lane| *lane = moved.adjust(*lane as usize) as u64);
    // SAFETY: the image was copied and the registers follow; the coroutine resumes on `new`.
    match unsafe { ctx.replace_stack(new, &moved) } {
        Some(old) if ctx.quarantines() => quarantine::admit(
            old,
            crate::sched::current_coroutine_id_for(ctx).unwrap_or(0),
        ),
        Some(old) => give_back(old),
        None => {}
    }
    stats::stack_grew(copied);
}

/// A stack of `size` bytes: from this worker's pool when it is free to borrow, else mapped.
fn take_stack(size: usize) -> Option<Stack> {
    if let Some(stack) = crate::sched::pooled_stack_for_signal(size) {
        return Some(stack);
    }
    Stack::new(size).ok()
}

/// Returns an old stack to the pool if it has room without allocating; unmaps it otherwise.
fn give_back(stack: Stack) {
    if let Err(stack) = crate::sched::pool_stack_for_signal(stack) {
        drop(stack); // munmap: a plain system call
    }
}

fn report_limit(ctx: &Context, size: usize, needed: usize, max: usize) -> ! {
    let mut buf = Buf::new();
    let _ = writeln!(
        buf,
        "pagurus: {} needs a stack of more than {needed} bytes (it has {size}), over its \
         max_stack_size of {max} bytes. Raise Builder::max_stack_size, or use less stack \
         (deep recursion, large arrays on the stack).",
        Who(crate::sched::current_coroutine_id_for(ctx))
    );
    buf.write_and_abort()
}

fn report_oom(ctx: &Context, size: usize) -> ! {
    let mut buf = Buf::new();
    let _ = writeln!(
        buf,
        "pagurus: out of memory growing the stack of {} to {size} bytes. Check ulimit -v, memory \
         overcommit settings and vm.max_map_count.",
        Who(crate::sched::current_coroutine_id_for(ctx))
    );
    buf.write_and_abort()
}

/// A stack that cannot be walked to its coroutine's entry is not moved: say which frame stopped
/// the walk, then abort. Async-signal-safe up to the best-effort symbol lookup.
pub(crate) fn report_unwalkable(id: Option<u64>, failure: &super::WalkFailure) -> ! {
    let mut buf = Buf::new();
    let _ = write!(
        buf,
        "pagurus: cannot grow the stack of {}: {failure}",
        Who(id)
    );
    write_symbol(&mut buf, failure.pc());
    let _ = writeln!(
        buf,
        ". The stack was not moved. Code without unwind information (hand-written assembly \
         without CFI, objects built with -fno-asynchronous-unwind-tables) cannot run on a growable \
         stack: call it on the system stack (pagurus::ffi Switch mode) or reserve stack first \
         (pagurus::stack::ensure, or Reserve mode)."
    );
    buf.write_and_abort()
}

/// Appends ` in SYMBOL+0xOFF` (or the object's path) for `pc`. Not async-signal-safe (it reads
/// the object's file), which is why it runs only on the way to `abort()`, after the safe part of
/// the message.
fn write_symbol(buf: &mut Buf, pc: usize) {
    super::symbol::describe(pc, buf);
}

/// Code on this thread's system stack used more than its 8 MiB.
fn report_system_stack_overflow() -> ! {
    let mut buf = Buf::new();
    let _ = writeln!(
        buf,
        "pagurus: the system stack ({} bytes) overflowed, in a foreign call in Switch mode or in \
         pagurus::stack::on_system_stack. Use Reserve mode with enough bytes (the coroutine stack \
         grows up to max_stack_size), or use less stack.",
        crate::stack::SYSTEM_STACK_SIZE
    );
    buf.write_and_abort()
}

/// A stale pointer into a quarantined old stack was used: say whose and where, then abort.
fn report_stale(id: u64, addr: usize, pc: usize) -> ! {
    let mut buf = Buf::new();
    let who = Who((id != 0).then_some(id));
    let _ = write!(
        buf,
        "pagurus: a pointer into the old stack of {who} was used after the stack moved (fault at \
         {addr:#x}, instruction at {pc:#x}"
    );
    write_symbol(&mut buf, pc);
    let _ = writeln!(
        buf,
        "). A move fixes pointers held on the stack and in registers only; pointers to stack data \
         kept in the heap, a global or another thread go stale. Keep such data on the heap, or \
         call pagurus::stack::ensure before lending it (design.md, \"What may point into a \
         coroutine stack\")."
    );
    buf.write_and_abort()
}

/// Names a coroutine in a report: `coroutine 42`, or `a raw coroutine`.
struct Who(Option<u64>);

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => write!(f, "coroutine {id}"),
            None => f.write_str("a raw coroutine"),
        }
    }
}

/// A fixed buffer `fmt::Write` can fill without allocating; output past its end is dropped.
struct Buf {
    bytes: [u8; 768],
    len: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            bytes: [0; 768],
            len: 0,
        }
    }

    fn write_and_abort(&self) -> ! {
        // SAFETY: write(2) and abort(3) are async-signal-safe; the buffer holds `len` bytes.
        unsafe {
            libc::write(libc::STDERR_FILENO, self.bytes.as_ptr().cast(), self.len);
            libc::abort()
        }
    }
}

impl std::fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
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
