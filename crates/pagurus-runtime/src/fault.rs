//! The SIGSEGV/SIGBUS handler that recognises a coroutine running off the bottom of its stack.
//!
//! Stacks do not grow yet, so a touch of a coroutine's guard region is fatal; without this
//! handler it would end the process with a bare "Segmentation fault". The handler checks whether
//! the faulting address lies in the guard region of the coroutine running on the faulting thread;
//! if so it prints which coroutine overflowed, how big its stack was and what to change, and
//! aborts. Every other fault goes to the handler that was installed before ours (std's, which
//! reports overflows of thread stacks, or the default action), so a null dereference still dies
//! with SIGSEGV.
//!
//! # Async-signal safety
//!
//! The handler allocates nothing, takes no lock and emits no `tracing` event: it reads two
//! const-initialised thread-locals (plain `fs`-relative loads), the current context's stack
//! bounds, and the saved previous actions (written once before the handler is installed), formats
//! into a buffer on its own stack and writes it with `write(2)`. It needs an alternate signal
//! stack, since the faulting stack has no room: std gives every thread it starts one (and the
//! main thread), which covers workers and `block_on` callers started by std.

use std::fmt::Write as _;
use std::mem::MaybeUninit;
use std::sync::{Once, OnceLock};

use crate::coroutine::current_context;

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
                    "cannot install the pagurus fault handler; overflows will not be reported"
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

/// The signal handler. Async-signal-safe (see the module docs).
extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, ucontext: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; si_addr is defined for
    // SIGSEGV and SIGBUS.
    let addr = unsafe { (*info).si_addr() } as usize;
    if let Some(overflow) = coroutine_overflow(addr) {
        report(&overflow);
        // SAFETY: abort(3) is async-signal-safe and does not return.
        unsafe { libc::abort() };
    }
    chain(sig, info, ucontext);
}

struct Overflow {
    id: Option<u64>,
    size: usize,
    addr: usize,
    below: usize,
}

/// Whether `addr` lies in the guard region of the coroutine running on this thread.
fn coroutine_overflow(addr: usize) -> Option<Overflow> {
    let ctx = current_context();
    if ctx.is_null() {
        return None;
    }
    // SAFETY: CURRENT holds the context running on this thread, which is alive; reading its
    // bounds touches no lock and no allocation.
    let (guard_start, bottom, size) = unsafe { (*ctx).bounds() }?;
    if !(guard_start..bottom).contains(&addr) {
        return None;
    }
    Some(Overflow {
        id: crate::sched::current_coroutine_id(),
        size,
        addr,
        below: bottom - addr,
    })
}

fn report(o: &Overflow) {
    let mut buf = Buf {
        bytes: [0; 640],
        len: 0,
    };
    let who = match o.id {
        Some(id) => Id(id),
        None => Id(0),
    };
    let _ = writeln!(
        buf,
        "pagurus: coroutine stack overflow: {who} used more than its {} bytes of stack \
         (fault at {:#x}, {} bytes below the stack). Stacks do not grow yet: give the runtime a \
         larger stack with Builder::initial_stack_size (or raw::Coroutine::new's stack_size).",
        o.size, o.addr, o.below
    );
    // SAFETY: write(2) is async-signal-safe; the buffer holds `len` initialised bytes.
    unsafe { libc::write(libc::STDERR_FILENO, buf.bytes.as_ptr().cast(), buf.len) };
}

/// Names a coroutine in the report: `coroutine 42`, or `a raw coroutine` (id 0).
struct Id(u64);

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            0 => f.write_str("a raw coroutine"),
            id => write!(f, "coroutine {id}"),
        }
    }
}

/// A fixed buffer `fmt::Write` can fill without allocating; output past its end is dropped.
struct Buf {
    bytes: [u8; 640],
    len: usize,
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
