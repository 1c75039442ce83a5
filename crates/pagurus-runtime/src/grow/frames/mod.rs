//! Allocation-free DWARF frame walking over the loaded objects' `.eh_frame`.
//!
//! The growth engine must find every frame of a coroutine's stack, from a register state captured
//! either in the SIGSEGV handler (the faulting instruction's full register set) or at a call
//! boundary, up to the coroutine entry trampoline: for each frame its canonical frame address
//! (CFA) and the stack slots holding its return address and saved callee-saved registers. This
//! module does that with the call-frame information of the loaded objects:
//!
//! - `objects`: the table of loaded objects and their in-memory `.eh_frame_hdr`/`.eh_frame`
//!   ([`refresh_objects`], normal context), and the same sections read from the files
//!   (`FileCfi`, for the tests).
//! - [`Unwinder::step`]: one frame. Finds the FDE through the object table and the
//!   `.eh_frame_hdr` binary-search table, runs the CFI program to the row for the frame's address
//!   in a preallocated gimli context with fixed-size storage, and computes the CFA, the slots and
//!   the caller's registers.
//! - `cache`: compact rows keyed by lookup address, so that repeated frames skip gimli.
//! - [`walk`] / [`Unwinder::walk`]: steps until the trampoline.
//!
//! # Register numbering
//!
//! DWARF numbers, named by `arch::dwarf` (`SP`, `FP`, `RA`, `CALLEE_SAVED`): this module holds no
//! number of its own. A caller's registers are: the stack pointer = CFA, the program counter =
//! the saved return address, callee-saved registers read from their slots or unchanged when the
//! frame did not save them, caller-saved registers unknown.
//!
//! # Async-signal safety
//!
//! [`Unwinder::step`], [`Unwinder::walk`], [`walk`] and [`with_thread_unwinder`] run inside the
//! SIGSEGV handler, so they allocate nothing, take no lock, emit no `tracing` event, never call
//! `dl_iterate_phdr`, and do not panic on any input: arithmetic on addresses is checked, slices
//! are indexed with `get` (or with masked indices into fixed-size arrays), and every failure is a
//! [`WalkError`]. Their state is allocated beforehand in normal context: the object table by
//! [`refresh_objects`] (published through an `AtomicPtr`, never freed), the gimli context and the
//! rule cache by [`Unwinder::new`] (per thread: [`prepare_thread`], reached through a
//! const-initialised thread-local pointer). gimli's CFI evaluation is documented signal-safe with
//! non-allocating storage; its parser trusts the loaded objects' CFI to be well formed (the stack
//! contents are what we do not trust).
//!
//! # Cost
//!
//! A step that runs gimli costs about 300 ns on our machines (finding the FDE, parsing it and its
//! CIE, running both CFI programs); one answered by the rule cache about 10-15 ns. Deep stacks
//! repeat a few return addresses, so most steps of a growth hit the cache.
//!
//! Stack memory is read only inside the caller-given [`Bounds`]: a slot or CFA outside them is an
//! error, so a corrupted stack cannot make the walker fault.

mod cache;
mod objects;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::fmt;
use std::ops::ControlFlow;
use std::ptr;

use gimli::{CfaRule, Register, RegisterRule, UnwindContext, UnwindContextStorage};

use self::cache::{Compact, RuleCache};
#[cfg(test)]
pub(crate) use self::objects::{FdeRange, FileCfi};
use self::objects::{Row, Table};
pub(crate) use self::objects::{object_for_address, refresh_objects};

/// DWARF numbers of the registers the walk names (see `arch::dwarf`).
pub(crate) use crate::arch::dwarf::{CALLEE_SAVED, RA, SP};
/// Registers a [`Regs`] tracks: the general registers and the return address.
const NREGS: usize = crate::arch::dwarf::REGISTERS;
/// Most registers one frame can save on the stack. A SysV function saves at most the six
/// callee-saved ones; the rest is room for foreign conventions (`extern "win64"` saves xmm6-15).
pub(crate) const MAX_SAVED: usize = 24;
/// A walk longer than this is reported as an error (a loop in a corrupted stack would otherwise
/// never end; real stacks in small coroutines are far shorter).
pub(crate) const MAX_FRAMES: usize = 1 << 26;
/// Register rules one CFI row may hold: every x86_64 general register, the return address and
/// room to spare.
const MAX_RULES: usize = 32;
/// Depth of the row stack: the CIE's initial rules, the current row and two nested
/// `DW_CFA_remember_state`s (compilers use one).
const MAX_ROW_STACK: usize = 4;

/// Array-backed storage for gimli's `UnwindContext`: evaluating CFI never allocates.
pub(crate) struct FixedStorage;

impl UnwindContextStorage<usize> for FixedStorage {
    type Rules = [(Register, RegisterRule<usize>); MAX_RULES];
    type Stack = [gimli::UnwindTableRow<usize, Self>; MAX_ROW_STACK];
}

/// The registers of one frame, with per-register validity, in DWARF numbering (see the module
/// docs). Each value also records the stack slot it was read from, if any, so the growth engine
/// knows where a callee-saved register of an outer frame currently lives.
///
/// Equality compares the known registers (values and slots) only.
#[derive(Clone, Copy)]
pub(crate) struct Regs {
    vals: [usize; NREGS],
    slots: [usize; NREGS],
    valid: u32,
}

impl Regs {
    /// No register known.
    pub(crate) const fn new() -> Regs {
        Regs {
            vals: [0; NREGS],
            slots: [0; NREGS],
            valid: 0,
        }
    }

    /// The interrupted state from a signal handler's `ucontext`: every general register and the
    /// program counter. Async-signal-safe.
    pub(crate) fn from_ucontext(uc: &libc::ucontext_t) -> Regs {
        let mut regs = Regs::new();
        crate::arch::dwarf::signal_registers(uc, |reg, value| regs.set(reg, value));
        regs
    }

    /// The registers of a coroutine suspended at `sp` (the frame the switch left; every other
    /// register was spilled into frames the unwind information describes). Async-signal-safe.
    ///
    /// # Safety
    /// `sp` is the saved stack pointer of a suspended coroutine whose stack is mapped.
    pub(crate) unsafe fn suspended(sp: usize) -> Regs {
        let mut regs = Regs::new();
        // SAFETY: forwarded contract.
        unsafe { crate::arch::dwarf::suspended_registers(sp, |reg, value| regs.set(reg, value)) };
        regs
    }

    /// The value of register `reg`, if known.
    #[inline]
    pub(crate) fn get(&self, reg: u16) -> Option<usize> {
        let i = usize::from(reg);
        if i < NREGS && self.valid & (1 << i) != 0 {
            self.vals.get(i).copied()
        } else {
            None
        }
    }

    /// The stack slot register `reg`'s value was read from, if it came from one.
    pub(crate) fn slot(&self, reg: u16) -> Option<usize> {
        self.get(reg)?;
        self.slots
            .get(usize::from(reg))
            .copied()
            .filter(|&s| s != 0)
    }

    /// Sets register `reg` (ignored beyond the return-address column), as not read from memory.
    #[inline]
    pub(crate) fn set(&mut self, reg: u16, value: usize) {
        self.set_from(reg, value, 0);
    }

    #[inline]
    fn set_from(&mut self, reg: u16, value: usize, slot: usize) {
        let i = usize::from(reg);
        if let (Some(v), Some(s)) = (self.vals.get_mut(i), self.slots.get_mut(i)) {
            *v = value;
            *s = slot;
            self.valid |= 1 << i;
        }
    }

    /// Forgets register `reg`.
    #[inline]
    pub(crate) fn invalidate(&mut self, reg: u16) {
        if usize::from(reg) < NREGS {
            self.valid &= !(1 << reg);
        }
    }

    /// The frame's program counter (`rip`, the return-address column).
    #[inline]
    pub(crate) fn pc(&self) -> Option<usize> {
        self.get(RA)
    }

    /// The frame's stack pointer.
    #[cfg(test)]
    pub(crate) fn sp(&self) -> Option<usize> {
        self.get(SP)
    }

    /// Starts `caller`'s register set from this one: caller-saved registers become unknown,
    /// callee-saved ones (and their slots) stay as they are until a rule says otherwise. Copies
    /// only what stays known: this runs once per frame.
    #[inline]
    fn start_caller(&self, caller: &mut Regs) {
        caller.valid = self.valid & CALLEE_SAVED_MASK;
        for reg in CALLEE_SAVED {
            let i = usize::from(reg);
            caller.vals[i] = self.vals[i];
            caller.slots[i] = self.slots[i];
        }
    }
}

impl PartialEq for Regs {
    fn eq(&self, other: &Regs) -> bool {
        self.valid == other.valid
            && (0..NREGS as u16)
                .all(|r| self.get(r) == other.get(r) && self.slot(r) == other.slot(r))
    }
}

impl Eq for Regs {}

/// Bit mask of [`CALLEE_SAVED`].
const CALLEE_SAVED_MASK: u32 = {
    let mut mask = 0;
    let mut i = 0;
    while i < CALLEE_SAVED.len() {
        mask |= 1 << CALLEE_SAVED[i];
        i += 1;
    }
    mask
};

impl fmt::Debug for Regs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; NREGS] = [
            "rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15", "rip",
        ];
        let mut map = f.debug_map();
        for (reg, name) in (0u16..).zip(NAMES) {
            if let Some(v) = self.get(reg) {
                map.entry(&name, &format_args!("{v:#x}"));
            }
        }
        map.finish()
    }
}

/// The part of memory a walk may read: `[lo, hi)`, the stack being walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Lowest readable address.
    pub(crate) lo: usize,
    /// One past the highest readable address.
    pub(crate) hi: usize,
}

impl Bounds {
    /// The range `[lo, hi)`.
    pub(crate) const fn new(lo: usize, hi: usize) -> Bounds {
        Bounds { lo, hi }
    }

    /// Whether a CFA may be `cfa`: inside the stack or exactly at its top (the CFA of a frame is
    /// the stack pointer before the call that created it).
    #[inline]
    fn holds_cfa(&self, cfa: usize) -> bool {
        self.lo <= cfa && cfa <= self.hi
    }

    /// Reads the word at `slot`, or fails if it is not entirely inside the bounds.
    ///
    /// # Safety
    /// Every address in `[lo, hi)` must be readable.
    #[inline]
    unsafe fn read(&self, slot: usize) -> Result<usize, ErrorKind> {
        match self.hi.checked_sub(size_of::<usize>()) {
            Some(last) if self.lo <= slot && slot <= last => {
                // SAFETY: [slot, slot + 8) lies in [lo, hi), readable per the contract. Unaligned
                // reads are allowed because CFI offsets, not the compiler, place the slot.
                Ok(unsafe { ptr::read_unaligned(slot as *const usize) })
            }
            _ => Err(ErrorKind::OutOfBounds { addr: slot }),
        }
    }
}

/// One frame found by a step.
#[derive(Clone, Copy)]
pub(crate) struct Frame {
    /// The frame's program counter: the interrupted `rip` for the signal frame, the return
    /// address into it otherwise.
    pub(crate) pc: usize,
    /// Canonical frame address: the stack pointer just before the call that created the frame
    /// (for x86_64, the address just above the return address slot).
    pub(crate) cfa: usize,
    /// The slot holding the return address into the caller.
    pub(crate) ra_slot: usize,
    /// The register the CFA is computed from (`rsp`, `rbp`, or, in the probe loop of a large
    /// frame, the register holding the frame's lower bound).
    pub(crate) cfa_reg: u16,
    saved: [(u16, usize); MAX_SAVED],
    saved_len: usize,
}

impl Frame {
    /// An empty frame, to be filled by [`Unwinder::step`].
    pub(crate) const fn new() -> Frame {
        Frame {
            pc: 0,
            cfa: 0,
            ra_slot: 0,
            cfa_reg: SP,
            saved: [(0, 0); MAX_SAVED],
            saved_len: 0,
        }
    }

    /// `(DWARF register, slot address)` of every register this frame saved on the stack (the
    /// caller's value of that register), sorted by register; the return address is
    /// [`Frame::ra_slot`] instead.
    pub(crate) fn saved(&self) -> &[(u16, usize)] {
        self.saved.get(..self.saved_len).unwrap_or(&[])
    }

    fn reset(&mut self, pc: usize, cfa: usize, cfa_reg: u16) {
        self.pc = pc;
        self.cfa = cfa;
        self.cfa_reg = cfa_reg;
        self.ra_slot = 0;
        self.saved_len = 0;
    }

    fn push_saved(&mut self, reg: u16, slot: usize) -> Result<(), ErrorKind> {
        let entry = self
            .saved
            .get_mut(self.saved_len)
            .ok_or(ErrorKind::TooManySaved)?;
        *entry = (reg, slot);
        self.saved_len += 1;
        Ok(())
    }

    /// Sorts `saved` by register (insertion sort: a handful of entries, no allocation).
    fn sort_saved(&mut self) {
        let saved = self.saved.get_mut(..self.saved_len).unwrap_or(&mut []);
        for i in 1..saved.len() {
            let mut j = i;
            while j > 0 && saved[j - 1].0 > saved[j].0 {
                saved.swap(j - 1, j);
                j -= 1;
            }
        }
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Frame) -> bool {
        self.pc == other.pc
            && self.cfa == other.cfa
            && self.ra_slot == other.ra_slot
            && self.saved() == other.saved()
    }
}

impl Eq for Frame {}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("pc", &format_args!("{:#x}", self.pc))
            .field("cfa", &format_args!("{:#x}", self.cfa))
            .field("ra_slot", &format_args!("{:#x}", self.ra_slot))
            .field("saved", &self.saved())
            .finish()
    }
}

/// The outermost frame of a stack: its CFI marks the return address undefined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct End {
    /// The outermost frame's program counter.
    pub(crate) pc: usize,
    /// Its CFA.
    pub(crate) cfa: usize,
    /// Whether it is the coroutine entry trampoline (otherwise: a thread's or the process's
    /// first frame, or foreign code that ends its stack).
    pub(crate) trampoline: bool,
}

/// What a step found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// The frame and its caller's registers were written to the step's out-parameters.
    Caller,
    /// The frame is the outermost one; the out-parameters are unspecified.
    End(End),
}

/// How a walk ended (without error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WalkEnd {
    /// Reached the coroutine entry trampoline after `frames` frames (not counting it).
    Trampoline { frames: usize, cfa: usize },
    /// Reached another outermost frame (a thread stack's first frame) after `frames` frames.
    Outermost {
        frames: usize,
        pc: usize,
        cfa: usize,
    },
    /// The callback broke off after `frames` frames.
    Stopped { frames: usize },
}

/// Why a step or walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// [`refresh_objects`] has not run yet.
    NoTable,
    /// No [`Unwinder`] for this thread ([`prepare_thread`] was not called), or it is in use by
    /// the code this signal interrupted.
    NotPrepared,
    /// The register set has no program counter, or it is 0.
    NoPc,
    /// The pc lies outside the code of every loaded object with CFI.
    NoObject,
    /// No FDE covers the pc.
    NoFde,
    /// gimli failed to parse or evaluate the CFI.
    Dwarf(gimli::Error),
    /// The CFA is a DWARF expression. Such FDEs occur in PLT stubs (`.plt`: CFA depends on the
    /// pc's offset in the stub) and signal-return trampolines (`__restore_rt`); neither is ever a
    /// caller frame on a coroutine stack, and with `-z now` a PLT stub never touches the stack,
    /// so it cannot be the faulting frame either.
    UnsupportedCfa,
    /// A register rule of a form we do not evaluate (expressions, architectural, constants), or
    /// a return-address rule other than "saved at an offset" or "undefined".
    UnsupportedRule { reg: u16 },
    /// The CFA or a rule refers to a register whose value is not known in this frame.
    UnknownRegister { reg: u16 },
    /// The row has no rule for the return address.
    NoReturnAddress,
    /// A CFA or slot address lies outside the bounds.
    OutOfBounds { addr: usize },
    /// A caller's CFA is not above its callee's: the stack is corrupt.
    NotMonotonic { cfa: usize },
    /// The frame saves more than [`MAX_SAVED`] registers.
    TooManySaved,
    /// More than [`MAX_FRAMES`] frames.
    TooManyFrames,
}

/// A failed step or walk: what failed, and at which frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WalkError {
    /// The program counter of the frame that could not be stepped (0 if unknown).
    pub(crate) pc: usize,
    /// How many frames were walked successfully before it.
    pub(crate) frames: usize,
    /// What went wrong.
    pub(crate) kind: ErrorKind,
}

impl fmt::Display for WalkError {
    /// Formats without allocating, so the signal handler can print it into a fixed buffer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot unwind frame {} at pc {:#x}: ",
            self.frames, self.pc
        )?;
        match self.kind {
            ErrorKind::NoTable => f.write_str("the loaded-object table was never built"),
            ErrorKind::NotPrepared => f.write_str("no unwinder available on this thread"),
            ErrorKind::NoPc => f.write_str("no program counter"),
            ErrorKind::NoObject => f.write_str("pc outside every loaded object with unwind info"),
            ErrorKind::NoFde => f.write_str("no unwind info (FDE) for this pc"),
            ErrorKind::Dwarf(e) => write!(f, "bad unwind info: {e}"),
            ErrorKind::UnsupportedCfa => f.write_str("CFA given by a DWARF expression"),
            ErrorKind::UnsupportedRule { reg } => write!(f, "unsupported rule for register {reg}"),
            ErrorKind::UnknownRegister { reg } => write!(f, "register {reg} unknown in this frame"),
            ErrorKind::NoReturnAddress => f.write_str("no rule for the return address"),
            ErrorKind::OutOfBounds { addr } => write!(f, "address {addr:#x} outside the stack"),
            ErrorKind::NotMonotonic { cfa } => write!(f, "caller CFA {cfa:#x} not above callee's"),
            ErrorKind::TooManySaved => f.write_str("frame saves too many registers"),
            ErrorKind::TooManyFrames => write!(f, "more than {MAX_FRAMES} frames"),
        }
    }
}

/// The state a walk needs, allocated up front so that walking allocates nothing: gimli's
/// evaluation context (fixed-size storage) and the rule cache.
pub(crate) struct Unwinder {
    ctx: Box<UnwindContext<usize, FixedStorage>>,
    cache: RuleCache,
    /// Steps answered from the cache.
    pub(crate) hits: u64,
    /// Steps that ran gimli (with the cache in use).
    pub(crate) misses: u64,
    /// Misses whose row had a form the cache cannot hold (they miss every time).
    pub(crate) uncacheable: u64,
}

impl Unwinder {
    /// Allocates an unwinder (normal context only; about 130 KiB, mostly the cache).
    pub(crate) fn new() -> Unwinder {
        Unwinder {
            ctx: Box::new(UnwindContext::new_in()),
            // Tagged with the current table, so that its first use in a handler does not clear it.
            cache: RuleCache::new(objects::current().map_or(0, |t| t.generation)),
            hits: 0,
            misses: 0,
            uncacheable: 0,
        }
    }

    /// Steps one frame, using and filling the rule cache. Signal-safe.
    ///
    /// `regs` are the frame's registers; `signal_frame` says whether they were interrupted
    /// mid-instruction (the first frame of a walk from a signal: its CFI is looked up at `rip`
    /// itself) rather than at a call (looked up at `rip - 1`, inside the call instruction, which
    /// may be the last instruction of its function). On [`Next::Caller`], `frame` describes the
    /// frame and `caller` holds the caller's registers.
    ///
    /// # Safety
    /// Every address in `bounds` must be readable for the duration of the call.
    #[inline]
    pub(crate) unsafe fn step(
        &mut self,
        regs: &Regs,
        signal_frame: bool,
        bounds: Bounds,
        frame: &mut Frame,
        caller: &mut Regs,
    ) -> Result<Next, WalkError> {
        // SAFETY: forwarded contract.
        unsafe { self.step_with(regs, signal_frame, bounds, frame, caller, true) }
    }

    /// [`Unwinder::step`] without the cache: always evaluates the CFI with gimli (the tests
    /// compare the two).
    ///
    /// # Safety
    /// As for [`Unwinder::step`].
    #[cfg(test)]
    pub(crate) unsafe fn step_uncached(
        &mut self,
        regs: &Regs,
        signal_frame: bool,
        bounds: Bounds,
        frame: &mut Frame,
        caller: &mut Regs,
    ) -> Result<Next, WalkError> {
        // SAFETY: forwarded contract.
        unsafe { self.step_with(regs, signal_frame, bounds, frame, caller, false) }
    }

    /// The common part of both steps; with the cache, a hit is answered here and everything else
    /// goes to the out-of-line [`Unwinder::step_slow`].
    ///
    /// # Safety
    /// As for [`Unwinder::step`].
    #[inline(always)]
    unsafe fn step_with(
        &mut self,
        regs: &Regs,
        signal_frame: bool,
        bounds: Bounds,
        frame: &mut Frame,
        caller: &mut Regs,
        use_cache: bool,
    ) -> Result<Next, WalkError> {
        let fail = |pc, kind| WalkError {
            pc,
            frames: 0,
            kind,
        };
        let pc = match regs.pc() {
            Some(pc) if pc != 0 => pc,
            _ => return Err(fail(0, ErrorKind::NoPc)),
        };
        // A return address points after the call, which may be the first byte of the next
        // function (a call to a noreturn function ends its caller); the call itself is at pc-1.
        let lookup = if signal_frame { pc } else { pc - 1 };
        let Some(table) = objects::current() else {
            return Err(fail(pc, ErrorKind::NoTable));
        };
        let args = Apply {
            table,
            regs,
            pc,
            lookup,
            bounds,
        };
        if use_cache {
            self.cache.sync(table.generation);
            if let Some(compact) = self.cache.get(lookup) {
                self.hits += 1;
                // SAFETY: forwarded contract.
                return unsafe { args.compact(compact, frame, caller) }
                    .map_err(|kind| fail(pc, kind));
            }
        }
        // SAFETY: forwarded contract.
        unsafe { self.step_slow(&args, frame, caller, use_cache) }.map_err(|kind| fail(pc, kind))
    }

    /// Finds the row with gimli, caches it if it can, and applies it.
    ///
    /// # Safety
    /// Every address in `args.bounds` must be readable.
    #[inline(never)] // the cold path: keeps the cached path small
    unsafe fn step_slow(
        &mut self,
        args: &Apply<'_>,
        frame: &mut Frame,
        caller: &mut Regs,
        use_cache: bool,
    ) -> Result<Next, ErrorKind> {
        let object = args
            .table
            .object_for(args.lookup)
            .ok_or(ErrorKind::NoObject)?;
        let row = object
            .row(&mut self.ctx, args.lookup)
            .map_err(|e| match e {
                gimli::Error::NoUnwindInfoForAddress => ErrorKind::NoFde,
                e => ErrorKind::Dwarf(e),
            })?;
        if use_cache {
            self.misses += 1;
            if let Some(compact) = Compact::from_row(args.lookup, row) {
                self.cache.insert(compact);
                // SAFETY: forwarded contract.
                return unsafe { args.compact(&compact, frame, caller) };
            }
            self.uncacheable += 1;
        }
        // SAFETY: forwarded contract.
        unsafe { args.row(row, frame, caller) }
    }

    /// Walks from `regs` up to the outermost frame, calling `f` with each frame and that frame's
    /// registers (outermost frame excluded). Signal-safe.
    ///
    /// `first_is_signal_frame` is [`Unwinder::step`]'s `signal_frame` for the first frame; every
    /// later frame is a caller. The walk fails rather than read outside `bounds`, and fails if a
    /// caller's CFA is not above its callee's or after [`MAX_FRAMES`] frames.
    ///
    /// # Safety
    /// Every address in `bounds` must be readable for the duration of the call.
    pub(crate) unsafe fn walk<F>(
        &mut self,
        regs: &Regs,
        first_is_signal_frame: bool,
        bounds: Bounds,
        f: &mut F,
    ) -> Result<WalkEnd, WalkError>
    where
        F: FnMut(&Frame, &Regs) -> ControlFlow<()>,
    {
        // Two register buffers whose roles swap each step (swapping the references, not the
        // 280-byte contents).
        let mut buffers = (*regs, Regs::new());
        let (mut current, mut caller) = (&mut buffers.0, &mut buffers.1);
        let mut frame = Frame::new();
        let mut signal_frame = first_is_signal_frame;
        let mut prev_cfa: Option<usize> = None;
        let mut frames = 0;
        loop {
            if frames >= MAX_FRAMES {
                return Err(WalkError {
                    pc: current.pc().unwrap_or(0),
                    frames,
                    kind: ErrorKind::TooManyFrames,
                });
            }
            let with_count = move |e: WalkError| WalkError { frames, ..e };
            // SAFETY: forwarded contract.
            let next = unsafe { self.step(current, signal_frame, bounds, &mut frame, caller) }
                .map_err(with_count)?;
            let cfa = match next {
                Next::End(end) => end.cfa,
                Next::Caller => frame.cfa,
            };
            if prev_cfa.is_some_and(|p| cfa <= p) {
                return Err(WalkError {
                    pc: current.pc().unwrap_or(0),
                    frames,
                    kind: ErrorKind::NotMonotonic { cfa },
                });
            }
            match next {
                Next::End(End {
                    trampoline: true,
                    cfa,
                    ..
                }) => return Ok(WalkEnd::Trampoline { frames, cfa }),
                Next::End(End { pc, cfa, .. }) => {
                    return Ok(WalkEnd::Outermost { frames, pc, cfa });
                }
                Next::Caller => {}
            }
            frames += 1;
            if f(&frame, current).is_break() {
                return Ok(WalkEnd::Stopped { frames });
            }
            prev_cfa = Some(frame.cfa);
            signal_frame = false;
            std::mem::swap(&mut current, &mut caller);
        }
    }
}

impl Default for Unwinder {
    fn default() -> Unwinder {
        Unwinder::new()
    }
}

/// The inputs shared by the two ways of applying a row.
struct Apply<'a> {
    table: &'a Table,
    regs: &'a Regs,
    pc: usize,
    lookup: usize,
    bounds: Bounds,
}

impl Apply<'_> {
    /// `base + offset`, checked to be a possible CFA.
    fn cfa(&self, reg: u16, offset: i64) -> Result<usize, ErrorKind> {
        let cfa = self.cfa_unchecked(reg, offset)?;
        if self.bounds.holds_cfa(cfa) {
            Ok(cfa)
        } else {
            Err(ErrorKind::OutOfBounds { addr: cfa })
        }
    }

    /// `reg + offset`, wherever it points.
    fn cfa_unchecked(&self, reg: u16, offset: i64) -> Result<usize, ErrorKind> {
        let base = self
            .regs
            .get(reg)
            .ok_or(ErrorKind::UnknownRegister { reg })?;
        isize::try_from(offset)
            .ok()
            .and_then(|o| base.checked_add_signed(o))
            .ok_or(ErrorKind::OutOfBounds { addr: base })
    }

    fn end(&self, cfa: usize) -> Next {
        Next::End(End {
            pc: self.pc,
            cfa,
            trampoline: self.table.trampoline.contains(&self.lookup),
        })
    }

    /// Applies a cached row. Must give exactly what [`Apply::row`] gives for the row it was
    /// compressed from (the cache test checks this).
    ///
    /// # Safety
    /// Every address in `self.bounds` must be readable.
    #[inline(always)] // the hot path: returning its result through memory cost a third of it
    unsafe fn compact(
        &self,
        c: &Compact,
        frame: &mut Frame,
        caller: &mut Regs,
    ) -> Result<Next, ErrorKind> {
        let cfa = self.cfa(u16::from(c.cfa_reg), i64::from(c.cfa_off))?;
        if c.outermost {
            return Ok(self.end(cfa));
        }
        // One check for every slot; if it fails, the slot-by-slot path finds which one.
        let in_bounds = match (
            cfa.checked_add_signed(c.min_off as isize),
            cfa.checked_add_signed(c.max_off as isize),
        ) {
            (Some(lo), Some(hi)) => {
                self.bounds.lo <= lo
                    && self
                        .bounds
                        .hi
                        .checked_sub(size_of::<usize>())
                        .is_some_and(|last| hi <= last)
            }
            _ => false,
        };
        if !in_bounds {
            // SAFETY: forwarded contract.
            return unsafe { self.compact_checked(c, cfa, frame, caller) };
        }
        let read = |offset: i32| {
            let at = cfa.wrapping_add_signed(offset as isize);
            // SAFETY: min_off <= offset <= max_off, so [at, at + 8) lies in the bounds (checked
            // above), readable per the contract.
            (unsafe { ptr::read_unaligned(at as *const usize) }, at)
        };
        frame.pc = self.pc;
        frame.cfa = cfa;
        frame.cfa_reg = u16::from(c.cfa_reg);
        self.regs.start_caller(caller);
        let (ra, ra_slot) = read(c.ra_off);
        frame.ra_slot = ra_slot;
        let mut valid = caller.valid | 1 << RA | 1 << SP;
        let mut n = 0;
        for ((reg, offset), entry) in c.saved().zip(frame.saved.iter_mut()) {
            let (value, at) = read(offset);
            *entry = (reg, at);
            n += 1;
            let i = usize::from(reg);
            if let (Some(v), Some(s)) = (caller.vals.get_mut(i), caller.slots.get_mut(i)) {
                (*v, *s) = (value, at);
                valid |= 1 << i;
            }
        }
        frame.saved_len = n;
        (caller.vals[usize::from(RA)], caller.slots[usize::from(RA)]) = (ra, ra_slot);
        (caller.vals[usize::from(SP)], caller.slots[usize::from(SP)]) = (cfa, 0);
        caller.valid = valid;
        Ok(Next::Caller)
    }

    /// [`Apply::compact`] reading slot by slot, for rows whose slots are not all in bounds: fails
    /// on the same slot as [`Apply::row`] would.
    ///
    /// # Safety
    /// Every address in `self.bounds` must be readable.
    #[cold]
    unsafe fn compact_checked(
        &self,
        c: &Compact,
        cfa: usize,
        frame: &mut Frame,
        caller: &mut Regs,
    ) -> Result<Next, ErrorKind> {
        frame.reset(self.pc, cfa, u16::from(c.cfa_reg));
        self.regs.start_caller(caller);
        let ra_slot = slot(cfa, i64::from(c.ra_off))?;
        // SAFETY: forwarded contract.
        let ra = unsafe { self.bounds.read(ra_slot) }?;
        frame.ra_slot = ra_slot;
        caller.set_from(RA, ra, ra_slot);
        for (reg, offset) in c.saved() {
            let at = slot(cfa, i64::from(offset))?;
            // SAFETY: forwarded contract.
            let value = unsafe { self.bounds.read(at) }?;
            frame.push_saved(reg, at)?;
            caller.set_from(reg, value, at);
        }
        caller.set(SP, cfa);
        Ok(Next::Caller)
    }

    /// Applies a row as gimli evaluated it.
    ///
    /// # Safety
    /// Every address in `self.bounds` must be readable.
    unsafe fn row(
        &self,
        row: &Row,
        frame: &mut Frame,
        caller: &mut Regs,
    ) -> Result<Next, ErrorKind> {
        // The return address in a register: the entry of the switch, where the CFA is the
        // caller's stack pointer itself, which may lie below the stack's bottom (a caller's frame
        // reserves room it has not touched yet). Nothing of this frame is read at its CFA, and
        // the caller's frame is checked as usual.
        let ra_in_register = matches!(row.register(Register(RA)), Some(RegisterRule::Register(_)));
        let (cfa, cfa_reg) = match *row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } if ra_in_register => {
                (self.cfa_unchecked(register.0, offset)?, register.0)
            }
            CfaRule::RegisterAndOffset { register, offset } => {
                (self.cfa(register.0, offset)?, register.0)
            }
            CfaRule::Expression(_) => return Err(ErrorKind::UnsupportedCfa),
        };
        frame.reset(self.pc, cfa, cfa_reg);
        self.regs.start_caller(caller);
        match row.register(Register(RA)) {
            // DWARF's way of saying "outermost frame" (the trampoline, `_start`, `clone`).
            Some(RegisterRule::Undefined) => return Ok(self.end(cfa)),
            Some(RegisterRule::Offset(offset)) => {
                let at = slot(cfa, offset)?;
                // SAFETY: forwarded contract.
                let ra = unsafe { self.bounds.read(at) }?;
                frame.ra_slot = at;
                caller.set_from(RA, ra, at);
            }
            // The return address is still in a register: the first instruction of the switch
            // (`suspend_switch`), reached only as the faulting frame, whose registers all come
            // from the signal context. No stack slot holds it (`ra_slot` stays 0).
            Some(RegisterRule::Register(from)) => match self.regs.get(from.0) {
                Some(ra) => caller.set_from(RA, ra, self.regs.slot(from.0).unwrap_or(0)),
                None => return Err(ErrorKind::UnsupportedRule { reg: RA }),
            },
            Some(_) => return Err(ErrorKind::UnsupportedRule { reg: RA }),
            None => return Err(ErrorKind::NoReturnAddress),
        }
        for (register, rule) in row.registers() {
            let reg = register.0;
            if reg == RA {
                continue;
            }
            if reg == SP {
                // The caller's stack pointer is the CFA by definition on x86_64.
                match rule {
                    RegisterRule::SameValue | RegisterRule::Undefined => continue,
                    _ => return Err(ErrorKind::UnsupportedRule { reg }),
                }
            }
            match *rule {
                RegisterRule::Undefined => caller.invalidate(reg),
                RegisterRule::SameValue => match self.regs.get(reg) {
                    Some(value) => caller.set_from(reg, value, self.regs.slot(reg).unwrap_or(0)),
                    None => caller.invalidate(reg),
                },
                RegisterRule::Offset(offset) => {
                    let at = slot(cfa, offset)?;
                    // SAFETY: forwarded contract.
                    let value = unsafe { self.bounds.read(at) }?;
                    frame.push_saved(reg, at)?;
                    caller.set_from(reg, value, at);
                }
                RegisterRule::ValOffset(offset) => {
                    let value = slot(cfa, offset)?;
                    caller.set(reg, value);
                }
                RegisterRule::Register(from) => match self.regs.get(from.0) {
                    Some(value) => caller.set_from(reg, value, self.regs.slot(from.0).unwrap_or(0)),
                    None => caller.invalidate(reg),
                },
                _ => return Err(ErrorKind::UnsupportedRule { reg }),
            }
        }
        frame.sort_saved();
        caller.set(SP, cfa);
        Ok(Next::Caller)
    }
}

/// `cfa + offset`, checked.
#[inline]
fn slot(cfa: usize, offset: i64) -> Result<usize, ErrorKind> {
    isize::try_from(offset)
        .ok()
        .and_then(|o| cfa.checked_add_signed(o))
        .ok_or(ErrorKind::OutOfBounds { addr: cfa })
}

thread_local! {
    /// This thread's unwinder, or null (none yet, or checked out by [`with_thread_unwinder`]).
    /// A const-initialised `Cell` of a pointer: reading it is a plain `fs`-relative load, with no
    /// lazy initialisation and no destructor registration, so the signal handler may use it.
    static THREAD_UNWINDER: Cell<*mut Unwinder> = const { Cell::new(ptr::null_mut()) };
    /// Owns the boxed unwinder and frees it at thread exit.
    static OWNER: Owner = const { Owner(Cell::new(ptr::null_mut())) };
}

struct Owner(Cell<*mut Unwinder>);

impl Drop for Owner {
    fn drop(&mut self) {
        let unwinder = self.0.replace(ptr::null_mut());
        if unwinder.is_null() {
            return;
        }
        // Unpublish first, so nothing on this thread reaches the unwinder once it is freed.
        let _ = THREAD_UNWINDER.try_with(|c| c.set(ptr::null_mut()));
        // SAFETY: `unwinder` came from Box::into_raw in `prepare_thread`, and the only other
        // pointer to it, THREAD_UNWINDER, was just cleared. A walk cannot be in progress: thread
        // exit does not run inside one.
        drop(unsafe { Box::from_raw(unwinder) });
    }
}

/// Prepares this thread for walks from its signal handler: allocates its [`Unwinder`] (once per
/// thread) and builds the loaded-object table if none exists yet.
///
/// Normal context only, on a thread's own stack (it builds a 4 KiB gimli context on the stack
/// before boxing it). The runtime calls it when a worker starts.
pub(crate) fn prepare_thread() {
    if objects::current().is_none() {
        refresh_objects();
    }
    if !THREAD_UNWINDER.with(|c| c.get()).is_null() {
        return;
    }
    let unwinder = Box::into_raw(Box::new(Unwinder::new()));
    OWNER.with(|o| o.0.set(unwinder));
    THREAD_UNWINDER.with(|c| c.set(unwinder));
}

/// Runs `f` with this thread's unwinder, or returns `None` if the thread has none
/// ([`prepare_thread`] was not called) or it is already in use (a signal interrupted a walk on
/// this thread). Signal-safe.
///
/// The unwinder is checked out of its thread-local for the duration of `f`, so a signal handler
/// that interrupts `f` finds none instead of aliasing it. A handler that arrives between the load
/// and the store of the check-out uses and returns it before this code continues, so the two uses
/// never overlap.
pub(crate) fn with_thread_unwinder<R>(f: impl FnOnce(&mut Unwinder) -> R) -> Option<R> {
    struct Return(*mut Unwinder);
    impl Drop for Return {
        fn drop(&mut self) {
            THREAD_UNWINDER.with(|c| c.set(self.0));
        }
    }
    let unwinder = THREAD_UNWINDER.with(|c| c.replace(ptr::null_mut()));
    if unwinder.is_null() {
        return None;
    }
    let guard = Return(unwinder);
    // SAFETY: a non-null THREAD_UNWINDER is a live Box owned by this thread's OWNER, and checking
    // it out (null in the cell until `guard` drops) makes this the only reference to it.
    let result = f(unsafe { &mut *guard.0 });
    drop(guard);
    Some(result)
}

/// Walks the stack described by `regs` with this thread's unwinder: see [`Unwinder::walk`].
/// Signal-safe; fails with [`ErrorKind::NotPrepared`] if [`with_thread_unwinder`] would return
/// `None`.
///
/// # Safety
/// Every address in `bounds` must be readable for the duration of the call.
pub(crate) unsafe fn walk<F>(
    regs: &Regs,
    first_is_signal_frame: bool,
    bounds: Bounds,
    f: &mut F,
) -> Result<WalkEnd, WalkError>
where
    F: FnMut(&Frame, &Regs) -> ControlFlow<()>,
{
    // SAFETY: forwarded contract.
    with_thread_unwinder(|u| unsafe { u.walk(regs, first_is_signal_frame, bounds, f) }).unwrap_or(
        Err(WalkError {
            pc: regs.pc().unwrap_or(0),
            frames: 0,
            kind: ErrorKind::NotPrepared,
        }),
    )
}
