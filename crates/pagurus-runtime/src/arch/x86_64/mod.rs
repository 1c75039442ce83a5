//! x86_64 System V (Linux) context switch.
//!
//! # Two halves, one picture
//!
//! A switch goes one of two ways, and each way has its own naked function:
//!
//! - [`resume`] / `resume_switch`: a resumer (scheduler loop, raw-coroutine owner) enters a
//!   coroutine. The call site is inline asm that `call`s `resume_switch`.
//! - [`suspend`] / `suspend_switch`: a coroutine leaves for its resumer. The call site is inline
//!   asm that pushes its own resume address and *jumps* into `suspend_switch`.
//!
//! Only what the SysV ABI makes callee-saved must survive a switch: `rbx`, `rbp`, `r12`-`r15`
//! and `rsp`. The naked halves save `rbx` and `rbp` (which inline asm may not name as clobbered:
//! LLVM reserves them) on the stack of the side that leaves, store that stack pointer in one slot
//! (`save`), load the other side's stack pointer and restore its two registers. The inline asm
//! at each call site declares `r12`-`r15` and every caller-saved register clobbered, so the
//! compiler saves only those that are live across the switch, in the caller's own frame, and
//! can keep those saves out of loops. The x87 control word and MXCSR control bits are
//! callee-saved too, but Rust code never changes them and reloading MXCSR costs more than the
//! rest of the switch, so they are not saved; a coroutine that changes the rounding mode must
//! restore it before it suspends (design.md says so).
//!
//! # The running word, and switches at the bottom of a stack
//!
//! Each half also stores one word into a slot the caller names (the thread's "running stack"
//! word, `stack::running_word`), *after* its last push on the stack it leaves. A switch at the
//! very bottom of a stack pushes into the guard region; the fault handler decides whose stack
//! that is from the running word, so the word must still name the leaving side when its pushes
//! fault. Every instruction of both halves has CFI, so such a fault is walked and grown like any
//! other (`tests/switch_at_bottom.rs`).
//!
//! Nothing else about a suspended side exists anywhere: its registers live on its own stack,
//! below its saved stack pointer. The growth engine relies on this: moving a suspended stack only
//! needs that one slot adjusted.
//!
//! # Why the halves differ: the return stack buffer
//!
//! The CPU predicts every `ret` from a small stack of addresses pushed by `call`. A switch that
//! `call`s a function and then `ret`s into the *other* side mispredicts on every switch (we
//! measured 40 ns per resume+suspend round trip with a symmetric call/ret switch on our
//! machines). So the pair is made to look like one call and its return: the resumer's `call
//! resume_switch` pushes a prediction, `resume_switch` enters the coroutine with an indirect
//! `jmp` (predicted by the branch target buffer, not the return stack), and the coroutine's
//! suspend pushes its resume address by hand and `jmp`s, so the `ret` at the end of
//! `suspend_switch` consumes exactly the prediction the resumer's `call` made. For the same
//! reason [`suspend`] is always inlined, and the functions that wrap it are `#[inline]`: each
//! function boundary between the switch and the coroutine's own loop costs a mispredicted return.
//!
//! # The stack of a suspended side
//!
//! ```text
//!   higher addresses
//!   |  ...frames...                |
//!   |  (live r12-r15, spilled by   |
//!   |   the compiler at the call)  |
//!   |  resume address              |  <- pushed by `call resume_switch`, or by hand in `suspend`
//!   |  rbp                         |
//!   |  rbx                         |  <- saved stack pointer
//!   lower addresses
//! ```
//!
//! # A fresh stack
//!
//! [`init_stack`] writes the same picture by hand, with the trampoline as the resume address and
//! the entry function and its argument in the `rbp` and `rbx` slots. The first switch into the
//! stack pops them and jumps to [`trampoline`], which clears `rbp` (so frame-pointer walkers stop
//! there) and enters the entry function with the stack aligned as after a call.
//!
//! ```text
//!   top (16-aligned)  ->  |  0 (padding)          |  top - 8
//!                         |  0 (padding)          |  top - 16   <- rsp in the trampoline
//!                         |  trampoline           |  top - 24
//!                         |  rbp = entry          |  top - 32
//!                         |  rbx = data           |  top - 40   <- initial saved sp
//! ```

use core::arch::{asm, naked_asm};

pub(crate) mod dwarf;
mod signal;
pub(crate) use signal::{SignalContext, prepare as prepare_signal_context};

/// Size of a page; stack sizes are powers of two no smaller than this.
pub const PAGE_SIZE: usize = 4096;

/// Bytes below the stack pointer that code may use without moving it (the System V red zone):
/// a move of a stack interrupted at any instruction must copy them too.
pub(crate) const RED_ZONE: usize = 128;

/// The function a fresh coroutine starts in. It receives the pointer given to [`init_stack`]
/// and the value passed to the first [`resume`] of the stack, and must never return: it ends
/// by switching away for the last time.
pub(crate) type EntryFn = unsafe extern "sysv64" fn(data: *mut u8, arg: usize) -> !;

/// Bytes [`init_stack`] uses at the top of a fresh stack.
pub(crate) const INIT_FRAME_BYTES: usize = 40;

#[inline(always)]
/// Enters the coroutine whose saved stack pointer is `to`, storing the resumer's in `*save`, and
/// stores `current` in `*running` once the resumer's registers are saved on its stack.
///
/// Returns the word the coroutine passes to [`suspend`] when it switches back. The coroutine sees
/// `arg` as the return value of its own [`suspend`] (or in `rax` in the trampoline, on a fresh
/// stack).
///
/// `running` is the thread's "which stack runs now" word. It changes *after* the last push on
/// the resumer's stack: until then a push that lands in the resumer's guard region is the
/// resumer's, and the fault handler, which reads that word, must grow the resumer's stack.
///
/// # Safety
/// `to` must be a stack pointer saved by [`suspend`] (or built by [`init_stack`]) whose stack is
/// still mapped and not running anywhere, and `save` and `running` must be valid for a write.
/// The coroutine must switch back with [`suspend`] on this thread, passing this `*save`.
pub(crate) unsafe fn resume(
    save: *mut *mut u8,
    to: *mut u8,
    arg: usize,
    running: *mut usize,
    current: usize,
) -> usize {
    let ret: usize;
    // The stack pointer is aligned for a call (no `nostack`), and the `call` is balanced by the
    // coroutine's eventual `ret` in `suspend_switch`.
    // SAFETY: per the contract, `to` is a suspended coroutine of this thread. `resume_switch`
    // saves rbx and rbp; every other register a call may clobber, plus r12-r15, is declared
    // clobbered, so the compiler keeps no value in a register the coroutine may change.
    unsafe {
        asm!(
            "call {switch}",
            switch = sym resume_switch,
            in("rdi") save,
            in("rsi") to,
            in("rdx") arg,
            in("rcx") running,
            in("r8") current,
            lateout("rax") ret,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            clobber_abi("sysv64"),
        )
    };
    ret
}

/// The naked half of [`resume`]: arguments in `rdi` (save), `rsi` (to), `rdx` (arg), `rcx`
/// (running), `r8` (current).
///
/// Its CFI describes every instruction, so that a push faulting in the guard region of the
/// resumer's stack can be walked through (the resumer then grows, see `grow::fault`): at entry
/// the frame is an ordinary call's; each push moves the CFA; after the stack switch the same
/// three-word picture is read from the coroutine's stack, and after the last pop the return
/// address is in `rcx`.
#[unsafe(naked)]
unsafe extern "sysv64" fn resume_switch() {
    naked_asm!(
        ".cfi_startproc",
        // The `call` pushed the resumer's return address; save its rbp and rbx under it.
        "push rbp",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_rel_offset rbp, 0",
        "push rbx",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_rel_offset rbx, 0",
        // The resumer is now fully described by its stack pointer.
        "mov [rdi], rsp",
        // Its last push is done: from here a fault is the coroutine's.
        "mov [rcx], r8",
        // Become the coroutine. Its saved frame has the same shape: CFA = rsp + 24.
        "mov rsp, rsi",
        "pop rbx",
        ".cfi_adjust_cfa_offset -8",
        ".cfi_restore rbx",
        "pop rbp",
        ".cfi_adjust_cfa_offset -8",
        ".cfi_restore rbp",
        // Its resume address: label 2 in `suspend`, or the trampoline. Jump, don't `ret`: the
        // return stack buffer still holds the resumer's return address, which is where the
        // coroutine's next `suspend_switch` will `ret` to.
        "pop rcx",
        ".cfi_adjust_cfa_offset -8",
        ".cfi_register rip, rcx",
        "mov rax, rdx",
        "jmp rcx",
        ".cfi_endproc",
    )
}

/// The naked half of [`suspend`]: entered by `jmp` with the resume address (label 2 in
/// [`suspend`]) in `rax`; arguments in `rdi` (save), `rsi` (to), `rdx` (arg), `rcx` (running),
/// `r8` (current).
///
/// Its first instruction pushes the resume address, which makes the frame look like a call's
/// (CFA = rsp + 8, return address at CFA - 8, into the caller's inline asm). The CFI describes
/// every instruction, the entry included (CFA = rsp, return address in `rax`): a push that faults
/// here, at the bottom of the coroutine's stack, is walked and grown like any other fault, and a
/// signal handler that unwinds from any instruction of the switch (a sampling profiler) finds the
/// caller. Pushing in the caller's inline asm instead would leave its `jmp` with a stack pointer
/// the caller's own CFI does not describe.
#[unsafe(naked)]
unsafe extern "sysv64" fn suspend_switch() {
    naked_asm!(
        ".cfi_startproc",
        // Nothing pushed yet: the caller's stack pointer is ours, its return address in rax.
        ".cfi_def_cfa rsp, 0",
        ".cfi_register rip, rax",
        "push rax",
        ".cfi_def_cfa_offset 8",
        ".cfi_offset rip, -8",
        "push rbp",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_rel_offset rbp, 0",
        "push rbx",
        ".cfi_adjust_cfa_offset 8",
        ".cfi_rel_offset rbx, 0",
        "mov [rdi], rsp",
        // The coroutine's last push is done: from here a fault is the resumer's.
        "mov [rcx], r8",
        // The resumer's saved frame has the same shape: CFA = rsp + 24.
        "mov rsp, rsi",
        "pop rbx",
        ".cfi_adjust_cfa_offset -8",
        ".cfi_restore rbx",
        "pop rbp",
        ".cfi_adjust_cfa_offset -8",
        ".cfi_restore rbp",
        "mov rax, rdx",
        // Back to just after the resumer's `call resume_switch`: the prediction it pushed.
        "ret",
        ".cfi_endproc",
    )
}

#[inline(always)]
/// Leaves the running coroutine for its resumer, whose saved stack pointer is `to`, storing the
/// coroutine's own in `*save` and, once its registers are saved on its stack, `current` (the
/// resumer's) in `*running` (see [`resume`]). Returns the `arg` of the [`resume`] that enters it
/// again.
///
/// # Safety
/// Must run on a coroutine stack entered by [`resume`] on this thread, with `to` the pointer that
/// call stored; `save` and `running` must be valid for a write.
pub(crate) unsafe fn suspend(
    save: *mut *mut u8,
    to: *mut u8,
    arg: usize,
    running: *mut usize,
    current: usize,
) -> usize {
    let ret: usize;
    // No instruction of this block moves the stack pointer, so the function's own CFI stays true
    // at each of them (a `jmp` after a push here would be an instruction at which an unwinder,
    // run by a signal handler, computes a wrong frame).
    // SAFETY: per the contract, `to` is a suspended resumer of this thread waiting in
    // `resume`. Clobbers as in `resume`. `suspend_switch` pushes one word (the resume address,
    // passed in rax), which `resume_switch` pops before jumping back to label 2: balanced.
    unsafe {
        asm!(
            "lea rax, [rip + 2f]",
            "jmp {switch}",
            "2:",
            switch = sym suspend_switch,
            in("rdi") save,
            in("rsi") to,
            in("rdx") arg,
            in("rcx") running,
            in("r8") current,
            lateout("rax") ret,
            out("r12") _,
            out("r13") _,
            out("r14") _,
            out("r15") _,
            clobber_abi("sysv64"),
        )
    };
    ret
}

#[unsafe(naked)]
/// First code run on a fresh stack (see the module docs for the frame it starts in).
///
/// Its unwind info marks the return address as undefined, which is how DWARF says "outermost
/// frame": backtraces and unwinders stop here instead of reading the padding words above as a
/// caller. `rbp` is zero too, so frame-pointer walkers stop as well.
unsafe extern "sysv64" fn trampoline() -> ! {
    naked_asm!(
        ".cfi_startproc",
        ".cfi_undefined rip",
        // rax holds the value the first switch passed; rbx and rbp were loaded from the slots
        // init_stack filled.
        "mov rsi, rax",
        "mov rdi, rbx",
        "mov rcx, rbp",
        "xor ebp, ebp",
        // A call without `call`: push a return address inside this function (so unwinders find
        // this frame's CFI) but leave the return stack buffer alone, so the entry function's
        // final `suspend` still returns where the resumer's prediction says.
        "lea rax, [rip + 2f]",
        "push rax",
        "jmp rcx",
        // The entry function never returns.
        "2:",
        "ud2",
        ".cfi_endproc",
    )
}

/// Address of [`trampoline`], the outermost frame of every coroutine stack.
///
/// The frame walker (`grow::frames`) takes the trampoline's extent from its CFI and reports a walk
/// that reaches it as one that covered the whole coroutine stack.
pub(crate) fn trampoline_start() -> usize {
    trampoline as *const () as usize
}

/// Writes the initial frame of a coroutine whose stack ends at `top` and returns the stack
/// pointer to pass to the first [`resume`].
///
/// # Safety
/// `top` must be 16-byte aligned and the [`INIT_FRAME_BYTES`] below it writable. `entry` must
/// uphold the [`EntryFn`] contract for `data`.
pub(crate) unsafe fn init_stack(top: *mut u8, entry: EntryFn, data: *mut u8) -> *mut u8 {
    debug_assert_eq!(top as usize % 16, 0, "stack top must be 16-byte aligned");
    let words: [usize; 5] = [
        data as usize,                    // rbx
        entry as usize,                   // rbp
        trampoline as *const () as usize, // resume address of the first switch
        0,                                // padding, keeps the entry call aligned
        0,                                // padding
    ];
    let sp = top.wrapping_sub(INIT_FRAME_BYTES);
    // SAFETY: the caller guarantees INIT_FRAME_BYTES below `top` are writable; `sp` is 8-aligned
    // because `top` is 16-aligned and 40 is a multiple of 8.
    unsafe { core::ptr::copy_nonoverlapping(words.as_ptr(), sp.cast::<usize>(), words.len()) };
    sp
}

/// Calls `f(arg)` with the stack pointer at `top`, then returns on the caller's stack; `*active`
/// is 1 exactly while the stack pointer is on the other stack.
///
/// Frame-pointer based: `rbp` holds the caller's stack pointer during the call, and the CFI says
/// so, so unwinders and backtraces walk from the other stack back into the caller.
///
/// `*active` is set after the last push on the caller's stack and cleared before the stack
/// pointer comes back to it: a push here that faults in the caller's guard region is the
/// caller's to grow, and the fault handler, which reads the flag, must see it clear.
///
/// A panic in `f` unwinds through this frame into the caller, like through any call, leaving
/// `*active` set: the caller clears it.
///
/// ```text
///   caller's stack                          other stack
///   |  return address  |  <- CFA            |                  |  <- top
///   |  caller's rbp    |  <- rbp            |  return address  |  (into this function)
///   |  caller's rbx    |  (rbx = active)    |  f's frames ...  |
/// ```
///
/// # Safety
/// `top` must be the 16-byte aligned end of a mapped stack nothing else is using, large enough
/// for `f`; `active` must be valid for byte writes while the call lasts.
#[unsafe(naked)]
pub(crate) unsafe extern "sysv64-unwind" fn call_on_stack(
    arg: *mut u8,
    f: unsafe extern "sysv64-unwind" fn(*mut u8),
    top: usize,
    active: *mut bool,
) {
    naked_asm!(
        ".cfi_startproc",
        "push rbp",
        ".cfi_def_cfa_offset 16",
        ".cfi_offset rbp, -16",
        "mov rbp, rsp",
        ".cfi_def_cfa_register rbp",
        "push rbx",
        ".cfi_offset rbx, -24",
        "mov rbx, rcx",
        // The last push on the caller's stack is done.
        "mov byte ptr [rbx], 1",
        // `top` is 16-aligned, as a call site must be; `arg` is already in rdi.
        "mov rsp, rdx",
        "call rsi",
        // Still on the other stack: clear the flag before touching the caller's again.
        "mov byte ptr [rbx], 0",
        "lea rsp, [rbp - 8]",
        "pop rbx",
        ".cfi_restore rbx",
        "mov rsp, rbp",
        ".cfi_def_cfa_register rsp",
        "pop rbp",
        ".cfi_def_cfa_offset 8",
        ".cfi_restore rbp",
        "ret",
        ".cfi_endproc",
    )
}

/// The current stack pointer.
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads a register; no memory or flags are touched.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

/// Asks the CPU to start loading `LINES` cache lines from `start` (a hint: a wrong address costs
/// nothing but the hint). Unrolled: `LINES` is a constant.
#[inline(always)]
pub(crate) fn prefetch<const LINES: usize>(start: usize) {
    for i in 0..LINES {
        // SAFETY: a prefetch is a hint: it never faults, even on an unmapped address, and
        // changes no architectural state.
        unsafe {
            asm!("prefetcht0 [{}]", in(reg) start + i * 64, options(nostack, preserves_flags, readonly))
        };
    }
}
