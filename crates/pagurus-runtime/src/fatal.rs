//! Every message the runtime prints on its way to `abort()`, and the buffer they are built in.
//!
//! A coroutine that cannot get the stack it needs cannot continue, and neither can a process in
//! which a stale pointer into a moved stack was just used: these end the process, never with a
//! bare SIGSEGV but with a message saying what happened and what to do. Several are raised inside
//! the SIGSEGV handler, so every function here is **async-signal-safe up to its last step**:
//!
//! 1. the message is formatted into a [`Buf`] on the caller's stack (no allocation; output past
//!    its end is dropped) and written with `write(2)`;
//! 2. only then comes anything riskier: naming the code address (`symbolise`, which reads an
//!    object file and allocates), whose output is written separately, so a failure there cannot
//!    lose the part already written; and only where the stack has room for it (a plain thread's
//!    alternate signal stack, std's few KiB, has not: the name is skipped with a note);
//! 3. `abort(3)`.
//!
//! This module imports nothing from the rest of the runtime (it sits at the bottom of the layer
//! order, next to `arch`): callers pass in what a message needs, including the symbolisation step
//! as a closure.

use std::fmt::{self, Write as _};

/// Names a coroutine in a report: `coroutine 42`, or `a raw coroutine` (id 0).
#[derive(Clone, Copy)]
pub(crate) struct Who(pub(crate) u64);

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("a raw coroutine"),
            id => write!(f, "coroutine {id}"),
        }
    }
}

/// Bytes a [`Buf`] holds: the longest message with room for a long path or symbol.
const BUF_BYTES: usize = 768;

/// A fixed buffer `fmt::Write` can fill without allocating; output past its end is dropped.
/// Async-signal-safe.
pub(crate) struct Buf {
    bytes: [u8; BUF_BYTES],
    len: usize,
}

impl Buf {
    pub(crate) fn new() -> Buf {
        Buf {
            bytes: [0; BUF_BYTES],
            len: 0,
        }
    }

    /// What was written so far.
    #[cfg(test)]
    fn as_str(&self) -> &str {
        // Only whole `&str`s are copied in, but truncation may split a character.
        match std::str::from_utf8(&self.bytes[..self.len]) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&self.bytes[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// Writes the buffer to stderr with `write(2)` and empties it. Async-signal-safe.
    fn flush(&mut self) {
        // SAFETY: write(2) is async-signal-safe; the buffer holds `len` initialised bytes.
        unsafe { libc::write(libc::STDERR_FILENO, self.bytes.as_ptr().cast(), self.len) };
        self.len = 0;
    }
}

impl fmt::Write for Buf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Stack a symbolising step may need: it maps and parses an object file and demangles, tens of
/// KiB in debug builds.
const SYMBOLISE_STACK: usize = 64 * 1024;

/// Whether the stack the caller runs on has room for a symbolising step. A fatal report raised
/// in the SIGSEGV handler runs on the thread's alternate signal stack, which may be std's few
/// KiB (a plain thread that used a stale pointer): there, only with [`SYMBOLISE_STACK`] bytes
/// left below the caller. On a thread's own stack (no alternate stack in use), yes.
/// Async-signal-safe.
fn room_to_symbolise() -> bool {
    // SAFETY: a zeroed stack_t is valid; sigaltstack with a null new stack only writes the
    // current one into `cur`.
    let mut cur: libc::stack_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; `cur` is valid for writes.
    if unsafe { libc::sigaltstack(std::ptr::null(), &mut cur) } != 0 {
        return false;
    }
    if cur.ss_flags & libc::SS_ONSTACK == 0 {
        return true;
    }
    // The address of a local stands for the stack pointer (no architecture import here).
    let marker = 0u8;
    let here = std::hint::black_box(&marker) as *const u8 as usize;
    here.saturating_sub(cur.ss_sp as usize) >= SYMBOLISE_STACK
}

/// Writes `safe` (async-signal-safe formatting), then what `symbolise` appends (may allocate;
/// skipped, with a note, where the stack has no room for it), then `rest`, each part as soon as
/// it is formatted; then aborts.
fn report(
    safe: impl FnOnce(&mut Buf),
    symbolise: impl FnOnce(&mut dyn fmt::Write),
    rest: impl FnOnce(&mut Buf),
) -> ! {
    let mut buf = Buf::new();
    safe(&mut buf);
    buf.flush();
    if room_to_symbolise() {
        symbolise(&mut buf);
    } else {
        let _ = buf.write_str(" (code not named: too little signal stack to read symbols)");
    }
    buf.flush();
    rest(&mut buf);
    buf.flush();
    // SAFETY: abort(3) is async-signal-safe and never returns.
    unsafe { libc::abort() }
}

/// A message with no risky part.
fn report_safe(message: impl FnOnce(&mut Buf)) -> ! {
    report(message, |_| {}, |_| {})
}

/// A coroutine needs a stack larger than its `max_stack_size`. Async-signal-safe.
pub(crate) fn limit_exceeded(who: Who, size: usize, needed: usize, max: usize) -> ! {
    report_safe(|buf| {
        let _ = writeln!(
            buf,
            "pagurus: {who} needs a stack of more than {needed} bytes (it has {size}), over its \
             max_stack_size of {max} bytes. Raise Builder::max_stack_size, or use less stack \
             (deep recursion, large arrays on the stack)."
        );
    })
}

/// No memory could be mapped for a larger stack. Async-signal-safe (`err` is an OS error code,
/// formatted without allocating).
pub(crate) fn grow_map_failed(who: Who, size: usize, errno: i32) -> ! {
    report_safe(|buf| {
        let _ = writeln!(
            buf,
            "pagurus: out of memory growing the stack of {who} to {size} bytes (os error \
             {errno}). Check ulimit -v, memory overcommit settings and vm.max_map_count."
        );
    })
}

/// No memory could be mapped for a coroutine's first stack. Async-signal-safe.
pub(crate) fn stack_alloc_failed(size: usize, errno: i32) -> ! {
    report_safe(|buf| {
        let _ = writeln!(
            buf,
            "pagurus: cannot map a {size}-byte coroutine stack (os error {errno}). Check \
             `ulimit -v`, memory overcommit settings and vm.max_map_count."
        );
    })
}

/// A new stack mapping would come too close to `vm.max_map_count` (the per-stack fallback of
/// kernels without guard markers). Async-signal-safe.
pub(crate) fn map_count_exhausted(live: usize, limit: usize) -> ! {
    report_safe(|buf| {
        let _ = writeln!(
            buf,
            "pagurus: cannot map another coroutine stack: {live} stacks already use two of the \
             kernel's vm.max_map_count = {limit} mappings each, and the rest is kept for the \
             process (this kernel has no MADV_GUARD_INSTALL, Linux 6.13+, so each stack is its \
             own mapping). Raise the limit (sysctl -w vm.max_map_count=N) or run fewer \
             coroutines at once."
        );
    })
}

/// No memory could be mapped for a thread's system stack (mapped on its first use, often from a
/// coroutine on a small stack, where unwinding a panic would itself need the stack to grow).
/// Async-signal-safe.
pub(crate) fn system_stack_alloc_failed(size: usize, errno: i32) -> ! {
    report_safe(|buf| {
        let _ = writeln!(
            buf,
            "pagurus: cannot map this thread's {size}-byte system stack (os error {errno}). \
             Check `ulimit -v`, memory overcommit settings and vm.max_map_count."
        );
    })
}

/// A stack that cannot be walked to its coroutine's entry is not moved: say which frame stopped
/// the walk (`failure`), and where (`symbolise`), then abort. Async-signal-safe up to
/// `symbolise`.
pub(crate) fn unwalkable(
    who: Who,
    failure: &dyn fmt::Display,
    symbolise: impl FnOnce(&mut dyn fmt::Write),
) -> ! {
    report(
        |buf| {
            let _ = write!(buf, "pagurus: cannot grow the stack of {who}: {failure}");
        },
        symbolise,
        |buf| {
            let _ = writeln!(
                buf,
                ". The stack was not moved. Code without unwind information (hand-written \
                 assembly without CFI, objects built with -fno-asynchronous-unwind-tables) cannot \
                 run on a growable stack: call it on the system stack (pagurus::ffi Switch mode) \
                 or reserve stack first (pagurus::stack::ensure, or Reserve mode)."
            );
        },
    )
}

/// A stale pointer into a quarantined old stack was used: say whose and where, then abort.
/// Async-signal-safe up to `symbolise`.
pub(crate) fn stale_pointer(
    who: Who,
    addr: usize,
    pc: usize,
    symbolise: impl FnOnce(&mut dyn fmt::Write),
) -> ! {
    report(
        |buf| {
            let _ = write!(
                buf,
                "pagurus: a pointer into the old stack of {who} was used after the stack moved \
                 (fault at {addr:#x}, instruction at {pc:#x}"
            );
        },
        symbolise,
        |buf| {
            let _ = writeln!(
                buf,
                "). A move fixes pointers held on the stack and in registers only; pointers to \
                 stack data kept in the heap, a global or another thread go stale. Keep such data \
                 on the heap, or call pagurus::stack::ensure before lending it (design.md, \"What \
                 may point into a coroutine stack\")."
            );
        },
    )
}

/// Code on this thread's system stack (`size` bytes) used more than all of it.
/// Async-signal-safe.
pub(crate) fn system_stack_overflow(size: usize) -> ! {
    report_safe(|buf| {
        let _ = writeln!(
            buf,
            "pagurus: the system stack ({size} bytes) overflowed, in a foreign call in Switch \
             mode or in pagurus::stack::on_system_stack. Use Reserve mode with enough bytes (the \
             coroutine stack grows up to max_stack_size), or use less stack."
        );
    })
}

/// The kernel could not deliver a signal on a coroutine's stack (or a general-protection fault
/// happened there): a SIGSEGV with `si_code` `SI_KERNEL` and no address while the coroutine's
/// stack pointer `sp` was `room` bytes above the end of its stack. The signal is lost by then, so
/// the process cannot go on as if nothing happened. Async-signal-safe.
pub(crate) fn signal_frame_did_not_fit(who: Who, sp: usize, room: usize, size: usize) -> ! {
    report(
        |buf| {
            let _ = write!(
                buf,
                "pagurus: SIGSEGV from the kernel, not from a memory access (si_code SI_KERNEL, \
                 address 0), while {who} ran with its stack pointer at {sp:#x}, {room} bytes \
                 above the end of its {size}-byte stack. "
            );
        },
        |_| {},
        |buf| {
            let _ = writeln!(
                buf,
                "Most likely a signal arrived whose handler was installed without SA_ONSTACK: \
                 the kernel pushes such a handler's frame onto the coroutine's stack, which had \
                 no room for it and cannot grow for the kernel, and the signal is lost. Install \
                 signal handlers with SA_ONSTACK (pagurus gives every thread that runs \
                 coroutines a 256 KiB alternate signal stack), or block the signal on those \
                 threads. (A general-protection fault, such as a misaligned SSE access, looks the \
                 same.)"
            );
        },
    )
}

/// Code on this thread's system stack moved the stack pointer past the system stack's guard
/// (`below` bytes below the guard's start): a single frame larger than guard and stack together,
/// entered without stack probes. Async-signal-safe.
pub(crate) fn system_stack_jumped_guard(sp: usize, below: usize, size: usize, guard: usize) -> ! {
    report(
        |buf| {
            let _ = write!(
                buf,
                "pagurus: on the system stack ({size} bytes above a {guard}-byte guard), the \
                 stack pointer ({sp:#x}) jumped {below} bytes below the guard: a single frame \
                 larger than stack and guard together, entered without stack probes (C built \
                 without -fstack-clash-protection), in a foreign call in Switch mode or in \
                 pagurus::stack::on_system_stack. "
            );
        },
        |_| {},
        |buf| {
            let _ = writeln!(
                buf,
                "Had that memory been mapped, it would have been overwritten silently. Build \
                 such code with -fstack-clash-protection, or run it on a thread of its own whose \
                 stack is large enough (std::thread::Builder::stack_size; Offload mode's 8 MiB \
                 pool threads are no larger)."
            );
        },
    )
}

/// A stack was about to move while something outside it still points into it (the context is
/// pinned: an offloaded call borrows it). Moving would leave that pointer stale, so stop here.
/// Async-signal-safe.
pub(crate) fn move_while_pinned(who: Who, pins: usize) -> ! {
    report_safe(|buf| {
        let _ = writeln!(
            buf,
            "pagurus: the stack of {who} had to move while it is pinned ({pins} pin(s): an \
             offloaded call is using it). The stack was not moved. This is a bug in the runtime: \
             a pinned coroutine is parked and cannot grow."
        );
    })
}

/// A raw coroutine dropped while suspended that could not be unwound (`attempts`
/// cancellations).
pub(crate) fn raw_dropped_suspended(attempts: usize) -> ! {
    report_safe(|buf| {
        let _ = writeln!(
            buf,
            "pagurus: a raw coroutine was dropped while suspended and could not be unwound (it \
             kept suspending after {attempts} cancellations, or the program is built with panic \
             = \"abort\"); aborting, since its borrows would outlive their data"
        );
    })
}

/// A coroutine was resumed after it finished: the runtime itself is broken.
pub(crate) fn resumed_after_done() -> ! {
    report_safe(|buf| {
        let _ = writeln!(
            buf,
            "pagurus: a finished coroutine was resumed (runtime bug)"
        );
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_truncates_instead_of_allocating() {
        let mut buf = Buf::new();
        for _ in 0..100 {
            let _ = write!(buf, "0123456789");
        }
        assert_eq!(buf.as_str().len(), BUF_BYTES);
        let mut buf = Buf::new();
        let _ = write!(buf, "{} and {}", Who(7), Who(0));
        assert_eq!(buf.as_str(), "coroutine 7 and a raw coroutine");
    }
}
