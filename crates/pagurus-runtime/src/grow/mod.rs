//! Stack growth: moving a coroutine's stack into a larger one.
//!
//! - `relocate`: the engine. Copies a stopped stack image and fixes every pointer into it.
//! - `unwind`: allocation-free DWARF frame walking over the loaded objects' `.eh_frame`.
//! - this file: the explicit path. `stack::ensure` suspends the coroutine with `Suspend::Grow`;
//!   its resumer (a worker, or the owner of a raw coroutine) calls [`grow_suspended`] on its own
//!   stack and resumes it on the new one.
//!
//! # Why a suspended coroutine is easy to move
//!
//! At a suspension every register the coroutine cares about is on its own stack: the switch
//! saves `rbx`/`rbp` and declares every other register clobbered, so the compiler spilled
//! whatever was live. Moving it is copying the image from `saved_sp` up, adjusting every word
//! that points into the old stack, and adjusting `saved_sp`, the one pointer into the stack the
//! runtime keeps.

pub(crate) mod fault;
pub(crate) mod quarantine;
pub(crate) mod relocate;
mod symbol;
#[allow(dead_code, reason = "parts serve tests and diagnostics only")]
pub(crate) mod unwind;

use std::fmt;
use std::ops::ControlFlow;

use relocate::{Move, Span};
use unwind::{Bounds, Regs, WalkEnd, WalkError};

use crate::coroutine::Context;
use crate::stack::{PAGE_SIZE, Stack, StackPool};
use crate::stats;

/// Headroom added to what `ensure` asks for, covering the frames between its caller and the
/// switch (and the caller's own red zone).
const ENSURE_SLACK: usize = 1024;

/// The smallest power-of-two stack size that holds `used` bytes plus `need` bytes of headroom,
/// and at least doubles `current`.
pub(crate) fn next_size(current: usize, used: usize, need: usize) -> Option<usize> {
    let want = used
        .checked_add(need)?
        .checked_add(ENSURE_SLACK)?
        .checked_next_power_of_two()?;
    Some(want.max(current.checked_mul(2)?).max(PAGE_SIZE))
}

/// Moves the suspended coroutine of `ctx` to a stack with at least `ctx.grow_request()` bytes of
/// headroom below its suspension point. New stacks come from `pool` when given; the old stack
/// goes back to it.
///
/// Aborts the process, with a message naming the coroutine (`id`), when the size needed exceeds
/// the context's `max_size` or no memory can be mapped: a coroutine cannot continue without the stack it asked for.
pub(crate) fn grow_suspended(ctx: &Context, mut pool: Option<&mut StackPool>, id: Option<u64>) {
    let max = ctx.max_size();
    let Some(old) = ctx.span() else { return };
    let sp = ctx.saved_sp();
    let size = old.top - old.bottom;
    let used = old.top - sp;
    let need = ctx.grow_request();
    if sp.wrapping_sub(old.bottom) >= need.saturating_add(ENSURE_SLACK) {
        return; // already enough (another path grew it, or the request was generous)
    }
    let new_size = match next_size(size, used, need) {
        Some(n) if n <= max => n,
        _ => limit_exceeded(id, size, used.saturating_add(need), max),
    };
    let new = match pool.as_deref_mut() {
        Some(pool) => pool.get(new_size),
        None => Stack::new(new_size),
    };
    let new = new.unwrap_or_else(|err| map_failed(id, new_size, err));
    let moved = Move::new(old, new.top(), sp, 0);
    if let Err(failure) = check_frames(&suspended_registers(sp), false, old) {
        drop(new);
        fault::report_unwalkable(id, &failure);
    }
    // SAFETY: the coroutine is suspended, so its image [sp, old.top) is stable and readable; the
    // new stack is ours, writable, disjoint from the old one, and large enough (new_size >= used).
    let copied = unsafe { moved.copy_and_adjust() };
    // SAFETY: the whole live image (from saved_sp up) was just copied into `new`.
    let old_stack = unsafe { ctx.replace_stack(new, &moved) };
    match (old_stack, pool) {
        (Some(old), _) if ctx.quarantines() => quarantine::admit(old, id.unwrap_or(0)),
        (Some(old), Some(pool)) => pool.put(old),
        _ => {}
    }
    stats::stack_grew(copied);
    tracing::trace!(
        id,
        from = size,
        to = new_size,
        copied,
        "coroutine stack grew"
    );
}

/// The registers of a coroutine suspended at `sp` (see `arch::x86_64`: `rbx`, `rbp` and the
/// resume address are the three words at `sp`; every other register was spilled by the compiler
/// into the frames the unwind information describes).
fn suspended_registers(sp: usize) -> Regs {
    // SAFETY: `sp` is a suspended coroutine's saved stack pointer: the three words above it are
    // its saved rbx, rbp and resume address, inside its mapped stack.
    let word = |i: usize| unsafe { ((sp + 8 * i) as *const usize).read() };
    let mut regs = Regs::new();
    regs.set(3, word(0)); // rbx
    regs.set(unwind::RBP, word(1));
    regs.set(unwind::RA, word(2));
    regs.set(unwind::RSP, sp + 24);
    regs
}

/// Why a stack cannot be moved: a frame the walk could not get past.
pub(crate) enum WalkFailure {
    Error(WalkError),
    /// The walk ended at an outermost frame that is not the coroutine trampoline.
    WrongEnd {
        pc: usize,
        frames: usize,
    },
}

impl WalkFailure {
    /// The program counter of the frame that stopped the walk.
    pub(crate) fn pc(&self) -> usize {
        match self {
            WalkFailure::Error(e) => e.pc,
            WalkFailure::WrongEnd { pc, .. } => *pc,
        }
    }
}

impl fmt::Display for WalkFailure {
    /// Formats without allocating (the fault handler prints it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalkFailure::Error(e) => e.fmt(f),
            WalkFailure::WrongEnd { pc, frames } => write!(
                f,
                "the frame walk ended after {frames} frames at pc {pc:#x}, not at the coroutine's \
                 entry"
            ),
        }
    }
}

/// What the frame walk of a stopped stack found.
pub(crate) struct Walked {
    /// The register the innermost frame's CFA is computed from.
    pub(crate) first_cfa_reg: u16,
}

/// Walks every frame of the stopped stack `span` from `regs` with its DWARF call-frame
/// information, and checks that the walk ends at the coroutine trampoline. A stack is moved only
/// if this succeeds: a frame the walk cannot describe may keep state the move would break.
/// Async-signal-safe.
pub(crate) fn check_frames(
    regs: &Regs,
    signal_frame: bool,
    span: Span,
) -> Result<Walked, WalkFailure> {
    let bounds = Bounds::new(span.bottom, span.top);
    let mut first_cfa_reg = None;
    let mut each = |frame: &unwind::Frame, _: &Regs| {
        first_cfa_reg.get_or_insert(frame.cfa_reg);
        ControlFlow::Continue(())
    };
    // SAFETY: the usable part of a coroutine stack, [bottom, top), is mapped and readable, and
    // the coroutine is stopped while we read it.
    match unsafe { unwind::walk(regs, signal_frame, bounds, &mut each) } {
        Ok(WalkEnd::Trampoline { .. }) => Ok(Walked {
            first_cfa_reg: first_cfa_reg.unwrap_or(unwind::RSP),
        }),
        Ok(WalkEnd::Outermost { frames, pc, .. }) => Err(WalkFailure::WrongEnd { pc, frames }),
        Ok(WalkEnd::Stopped { frames }) => Err(WalkFailure::WrongEnd {
            pc: regs.pc().unwrap_or(0),
            frames,
        }),
        Err(e) => Err(WalkFailure::Error(e)),
    }
}

fn limit_exceeded(id: Option<u64>, size: usize, needed: usize, max: usize) -> ! {
    eprintln!(
        "pagurus: {} needs a stack of more than {needed} bytes (it has {size}), over its \
         max_stack_size of {max} bytes. Raise Builder::max_stack_size, or use less stack \
         (deep recursion, large arrays on the stack).",
        who(id)
    );
    std::process::abort()
}

fn map_failed(id: Option<u64>, size: usize, err: std::io::Error) -> ! {
    eprintln!(
        "pagurus: out of memory growing the stack of {} to {size} bytes: {err}. Check ulimit -v, \
         memory overcommit settings and vm.max_map_count.",
        who(id)
    );
    std::process::abort()
}

fn who(id: Option<u64>) -> String {
    match id {
        Some(id) => format!("coroutine {id}"),
        None => "a raw coroutine".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_double_at_least_and_cover_the_request() {
        assert_eq!(next_size(4096, 1000, 100), Some(8192));
        assert_eq!(next_size(4096, 1000, 1 << 20), Some(2 << 20));
        assert_eq!(next_size(1 << 20, 4096, 4096), Some(2 << 20));
        assert_eq!(next_size(4096, 0, usize::MAX), None);
    }
}
