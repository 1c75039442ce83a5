//! Stack growth: moving a coroutine's stack into a larger one.
//!
//! - [`move_stack`] (this file): **the mover**. One function owns every step of a move, for
//!   every caller: walk the frames, size the new stack, take it, copy and adjust the image,
//!   adjust the registers kept outside it, swap it in, give the old one back, count.
//! - [`grow_suspended`] (this file) and `fault::grow_faulting`: the two entry points. They only
//!   describe the stopped coroutine to the mover (a [`Stopped`]): where its registers are (the
//!   frame the switch left at `saved_sp`, or the signal frame) and the lowest address it is about
//!   to use.
//! - `relocate`: the copy-and-adjust engine, on plain memory.
//! - `compact`: parked stacks copied to the heap and back (restored through the same engine).
//! - `frames`: allocation-free DWARF frame walking over the loaded objects' `.eh_frame`.
//! - `quarantine`: old stacks kept inaccessible to catch stale pointers; `symbol`: names for code
//!   addresses in fatal reports.
//!
//! # The explicit path
//!
//! `stack::ensure` suspends the coroutine with `Suspend::Grow`; its resumer (a worker, or the
//! owner of a raw coroutine) calls [`grow_suspended`] on its own stack and resumes it on the new
//! one. A suspended coroutine is easy to move: at a suspension every register it cares about is
//! on its own stack (the switch saves `rbx`/`rbp` and declares every other register clobbered, so
//! the compiler spilled whatever was live), so moving it is copying the image from `saved_sp` up,
//! adjusting every word that points into the old stack, and adjusting `saved_sp`, the one pointer
//! into the stack the runtime keeps.
//!
//! # One sizing rule
//!
//! The new size is the next power of two above `top - lowest + margin`, at least double the old
//! size and at least a page, where `lowest` is the lowest address the coroutine is about to use
//! (lowered further when the innermost frame's CFA comes from a register pointing below the
//! stack, into the guard or beyond it: a probe loop's bound, see `fault`) and `margin` what its entry point adds on top
//! ([`ENSURE_MARGIN`], [`FAULT_MARGIN`]). A stack whose bottom is already below `lowest - margin`
//! is not moved. A size over the context's `max_size` aborts with `fatal::limit_exceeded`.
//!
//! # Layer
//!
//! `grow` imports `arch`, `stack`, `coroutine`, `stats` and `fatal`. It reaches the worker's stack
//! pool through the pool the worker registered with `stack` and learns the coroutine's id from
//! its context, so it knows nothing of the scheduler.

pub(crate) mod compact;
pub(crate) mod fault;
pub(crate) mod frames;
pub(crate) mod quarantine;
mod relocate;
mod symbol;

use std::fmt;
use std::ops::ControlFlow;

use frames::{Bounds, Regs, WalkEnd, WalkError};
use relocate::Move;

use crate::arch::{PAGE_SIZE, SignalContext};
use crate::coroutine::Context;
use crate::fatal::{self, Who};
use crate::stack::{self, Placement, Span};
use crate::stats;

/// What the explicit path adds below `saved_sp - request`: the frames between `ensure`'s caller
/// and the switch (the request counts from the caller's stack pointer), and the caller's red zone.
pub(crate) const ENSURE_MARGIN: usize = 1024;

/// What the fault path adds below the lowest address the faulting code touches, so the next
/// frames do not fault at once.
pub(crate) const FAULT_MARGIN: usize = 2 * PAGE_SIZE;

/// A stopped coroutine, described by an entry point for [`move_stack`].
pub(crate) struct Stopped<'a> {
    /// The registers to start the frame walk from.
    walk_from: Regs,
    /// Whether `walk_from` is a signal frame's state (interrupted mid-instruction) rather than a
    /// call boundary's.
    signal_frame: bool,
    /// The stack pointer: the move copies from here (minus `red_zone`) to the top.
    sp: usize,
    /// Bytes below `sp` that may hold live data.
    red_zone: usize,
    /// The lowest address the coroutine is about to use.
    lowest: usize,
    /// See the module docs, "One sizing rule".
    margin: usize,
    /// Registers kept outside the stack that must follow it: the signal frame on the fault path,
    /// nothing for a suspended coroutine (its registers are on its stack).
    registers: Option<&'a mut SignalContext>,
}

impl Stopped<'_> {
    /// A suspended coroutine (`saved_sp`) that asks for `request` bytes below it.
    ///
    /// # Safety
    /// `ctx` is suspended, with a mapped stack: its saved frame is readable.
    pub(crate) unsafe fn suspended(ctx: &Context, request: usize) -> Stopped<'static> {
        let sp = ctx.saved_sp();
        Stopped {
            // SAFETY: per the contract, `sp` is a suspended coroutine's saved stack pointer.
            walk_from: unsafe { Regs::suspended(sp) },
            signal_frame: false,
            sp,
            red_zone: 0,
            lowest: sp.saturating_sub(request),
            margin: ENSURE_MARGIN,
            registers: None,
        }
    }
}

/// Moves the suspended coroutine of `ctx` to a stack with at least `ctx.grow_request()` bytes of
/// headroom below its suspension point (the explicit path: `stack::ensure`).
///
/// Aborts the process, with a message naming the coroutine, when the size needed exceeds the
/// context's `max_size`, no memory can be mapped, or the stack cannot be walked: a coroutine
/// cannot continue without the stack it asked for.
pub(crate) fn grow_suspended(ctx: &Context) {
    if !ctx.has_stack() {
        return;
    }
    // SAFETY: the resumer calls this while `ctx` is suspended with `Grow`, and it has a stack.
    let stopped = unsafe { Stopped::suspended(ctx, ctx.grow_request()) };
    if let Some(moved) = move_stack(ctx, stopped) {
        tracing::trace!(
            id = ctx.id(),
            from = moved.from,
            to = moved.to,
            copied = moved.copied,
            "coroutine stack grew"
        );
    }
}

/// What one move did.
pub(crate) struct Moved {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) copied: usize,
}

/// **The mover.** Moves the stopped coroutine of `ctx` into a larger stack: walks its frames (a
/// stack that cannot be walked to the coroutine's entry is not moved), sizes the new stack (the
/// module's one rule), takes it from this thread's pool, copies and adjusts the image, adjusts
/// the registers kept outside it, swaps it in, gives the old one back (or quarantines it), and
/// counts the move. Returns `None` when the stack already has the room asked for.
///
/// Aborts (see `fatal`) when the context is pinned, the walk fails, the size exceeds `max_size`
/// or no memory can be mapped. Async-signal-safe: the fault handler runs it.
pub(crate) fn move_stack(ctx: &Context, stopped: Stopped<'_>) -> Option<Moved> {
    let who = Who(ctx.id());
    if ctx.pins() != 0 {
        fatal::move_while_pinned(who, ctx.pins());
    }
    let old = ctx.span()?;
    let walked = match check_frames(&stopped.walk_from, stopped.signal_frame, old) {
        Ok(walked) => walked,
        Err(failure) => fatal::unwalkable(who, &failure, |out| symbol::describe(failure.pc(), out)),
    };
    let mut lowest = stopped.lowest;
    // A probe loop keeps the frame's lower bound in a register: that is where the frame will
    // end, possibly far below the fault, and below the guard region too when the frame is larger
    // than the guard. Without a frame pointer the loop's CFI computes the CFA from that register
    // (the walk checked that the CFA computed from it lies in the stack, so the bound is at most
    // one frame, as its CFI describes it, below). A frame that realigns its stack for an
    // over-aligned local has an `rbp`-based CFA instead; then the faulting instruction itself
    // tells (`arch::dwarf::probe_loop_bound`).
    let below = |reg: u16| {
        stopped
            .walk_from
            .get(reg)
            .filter(|&bound| bound < old.bottom && bound <= stopped.sp)
    };
    let bound_reg = if walked.first_cfa_reg != frames::SP && below(walked.first_cfa_reg).is_some() {
        Some(walked.first_cfa_reg)
    } else if stopped.signal_frame
        && let Some(pc) = stopped.walk_from.get(frames::RA)
    {
        // SAFETY: `pc` is the faulting instruction of the interrupted code, whose bytes (and the
        // loop's compare after them) are mapped code.
        unsafe { crate::arch::dwarf::probe_loop_bound(pc) }.filter(|&reg| below(reg).is_some())
    } else {
        None
    };
    let frame_bound = bound_reg.and_then(below);
    if let Some(bound) = frame_bound {
        lowest = lowest.min(bound);
    }
    let needed = old.top.wrapping_sub(lowest).saturating_add(stopped.margin);
    if needed <= old.size() {
        return None; // already enough (another path grew it, or the request was generous)
    }
    let size = match new_size(old.size(), needed) {
        Some(size) if size <= ctx.max_size() => size,
        _ => fatal::limit_exceeded(who, old.size(), needed, ctx.max_size()),
    };
    let new = match stack::take(size, Placement::for_move(old, size)) {
        Ok(new) => new,
        Err(err) => fatal::grow_map_failed(who, size, err.raw_os_error().unwrap_or(0)),
    };
    let moved = Move::new(old, new.top(), stopped.sp, stopped.red_zone);
    // SAFETY: the coroutine is stopped (suspended, or interrupted by the signal being handled),
    // so nothing writes its stack; the source range is readable (clamped to the usable part), the
    // new stack is ours, writable, disjoint from the old one and at least `needed` bytes, which
    // covers the copy.
    let copied = unsafe { moved.copy_and_adjust() };
    if let Some(registers) = stopped.registers {
        moved.adjust_words(registers.general_registers());
        // A bound below the guard is outside what `adjust` moves (values there may be anything
        // else); this one register is known to be the frame's bound, so it follows the stack.
        if let (Some(reg), Some(bound)) = (bound_reg, frame_bound)
            && bound < old.guard_start
        {
            registers.set_register(reg, bound.wrapping_add(moved.delta()));
        }
        registers.for_each_vector_register_range(|lanes| moved.adjust_lanes(lanes));
    }
    // SAFETY: the whole live image was copied into `new` and its registers follow; `saved_sp`
    // (meaningful for a suspended coroutine) moves with it; not pinned (checked above).
    let old_stack = unsafe { ctx.swap_stack(new, moved.adjust(ctx.saved_sp())) };
    if let Some(old_stack) = old_stack {
        if ctx.quarantines() {
            quarantine::admit(old_stack, ctx.id());
        } else {
            stack::give_back(old_stack);
        }
    }
    stats::stack_grew(copied);
    ctx.count_copied(copied);
    Some(Moved {
        from: old.size(),
        to: size,
        copied,
    })
}

/// The sizing rule: the smallest power of two that holds `needed` bytes, at least double
/// `current` and at least a page; `None` on overflow.
pub(crate) fn new_size(current: usize, needed: usize) -> Option<usize> {
    Some(
        needed
            .checked_next_power_of_two()?
            .max(current.checked_mul(2)?)
            .max(PAGE_SIZE),
    )
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
    let mut each = |frame: &frames::Frame, _: &Regs| {
        first_cfa_reg.get_or_insert(frame.cfa_reg);
        ControlFlow::Continue(())
    };
    // SAFETY: the usable part of a coroutine stack, [bottom, top), is mapped and readable, and
    // the coroutine is stopped while we read it.
    match unsafe { frames::walk(regs, signal_frame, bounds, &mut each) } {
        Ok(WalkEnd::Trampoline { .. }) => Ok(Walked {
            first_cfa_reg: first_cfa_reg.unwrap_or(frames::SP),
        }),
        Ok(WalkEnd::Outermost { frames, pc, .. }) => Err(WalkFailure::WrongEnd { pc, frames }),
        Ok(WalkEnd::Stopped { frames }) => Err(WalkFailure::WrongEnd {
            pc: regs.pc().unwrap_or(0),
            frames,
        }),
        Err(e) => Err(WalkFailure::Error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_double_at_least_and_cover_the_request() {
        assert_eq!(new_size(4096, 1000 + 100), Some(8192));
        assert_eq!(new_size(4096, 5000), Some(8192));
        assert_eq!(new_size(4096, 9000), Some(16384));
        assert_eq!(new_size(4096, 1000 + (1 << 20)), Some(2 << 20));
        assert_eq!(new_size(1 << 20, 8192), Some(2 << 20));
        assert_eq!(new_size(1024, 10), Some(PAGE_SIZE));
        assert_eq!(new_size(4096, usize::MAX), None);
        assert_eq!(new_size(usize::MAX / 2 + 1, 8), None);
    }
}
