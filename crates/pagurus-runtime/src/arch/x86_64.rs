//! x86_64 System V (Linux) context switch.
//!
//! # What a switch saves
//!
//! A switch is an ordinary function call as far as the compiler is concerned, so only the
//! registers the SysV ABI makes callee-saved must survive it: `rbx`, `rbp`, `r12`-`r15` and
//! `rsp`. They are pushed onto the stack of the side that suspends, and that side's stack pointer
//! is stored in one place (the `save` slot). Nothing else about a suspended side exists anywhere:
//! its registers live on its own stack, below its saved stack pointer. The growth engine relies on
//! this: moving a suspended stack only needs that one slot adjusted.
//!
//! The x87 control word and the MXCSR control bits are also callee-saved in the ABI, but Rust
//! code never changes them, and saving them costs more than the rest of the switch together
//! (`ldmxcsr` is slow). A coroutine that changes the rounding mode must restore it before it
//! suspends; design.md says so.
//!
//! # The stack of a suspended side
//!
//! ```text
//!   higher addresses
//!   |  ...caller frames...         |
//!   |  return address into caller  |  <- pushed by `call switch`
//!   |  rbp                         |
//!   |  rbx                         |
//!   |  r12                         |
//!   |  r13                         |
//!   |  r14                         |
//!   |  r15                         |  <- saved stack pointer
//!   lower addresses
//! ```
//!
//! # A fresh stack
//!
//! [`init_stack`] writes the same picture by hand, with the trampoline as the "return address"
//! and the entry function and its argument in the `r13` and `r12` slots. The first switch into
//! the stack pops them and returns into [`trampoline`], which calls the entry function with the
//! stack pointer 16-byte aligned, as a call site must have it.
//!
//! ```text
//!   top (16-aligned)  ->  |  0 (padding)          |  top - 8
//!                         |  0 (padding)          |  top - 16   <- rsp after `ret`
//!                         |  trampoline           |  top - 24
//!                         |  rbp = 0              |  top - 32
//!                         |  rbx = 0              |  top - 40
//!                         |  r12 = data           |  top - 48
//!                         |  r13 = entry          |  top - 56
//!                         |  r14 = 0              |  top - 64
//!                         |  r15 = 0              |  top - 72   <- initial saved sp
//! ```

use core::arch::{asm, naked_asm};

/// The function a fresh coroutine starts in. It receives the pointer given to [`init_stack`]
/// and the value passed to the first [`switch`] into the stack, and must never return: it ends
/// by switching away for the last time.
pub(crate) type EntryFn = unsafe extern "sysv64" fn(data: *mut u8, arg: usize) -> !;

/// Bytes [`init_stack`] uses at the top of a fresh stack.
pub(crate) const INIT_FRAME_BYTES: usize = 72;

/// Switches from the running side to the side whose stack pointer is `to`.
///
/// Saves the callee-saved registers on the current stack, stores the resulting stack pointer in
/// `*save`, then restores the other side's registers from `to` and returns there. The other side
/// sees `arg` as the return value of its own `switch` call (or as the trampoline's `rax` on a
/// fresh stack). When something later switches back to `*save`, this call returns the value that
/// switch passed.
///
/// # Safety
///
/// `to` must be a stack pointer saved by `switch` (or built by [`init_stack`]) whose stack is
/// still mapped and not running anywhere, and `save` must be valid for a write. Whoever switches
/// back must do so on this thread, while this stack is still mapped.
#[unsafe(naked)]
pub(crate) unsafe extern "sysv64" fn switch(save: *mut *mut u8, to: *mut u8, arg: usize) -> usize {
    naked_asm!(
        // The call pushed our return address; push the callee-saved registers under it.
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        // This side is now fully described by its stack pointer.
        "mov [rdi], rsp",
        // Become the other side.
        "mov rsp, rsi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "mov rax, rdx",
        "ret",
    )
}

/// First code run on a fresh stack (see the module docs for the frame it starts in).
///
/// Its unwind info marks the return address as undefined, which is how DWARF says "outermost
/// frame": backtraces and unwinders stop here instead of reading the padding words above as a
/// caller. `rbp` is zero too, so frame-pointer walkers stop as well.
#[unsafe(naked)]
unsafe extern "sysv64" fn trampoline() -> ! {
    naked_asm!(
        ".cfi_startproc",
        ".cfi_undefined rip",
        // rax holds the value the first switch passed.
        "mov rdi, r12",
        "mov rsi, rax",
        "call r13",
        // The entry function never returns.
        "ud2",
        ".cfi_endproc",
    )
}

/// Writes the initial frame of a coroutine whose stack ends at `top` and returns the stack
/// pointer to pass to the first [`switch`].
///
/// # Safety
///
/// `top` must be 16-byte aligned and the [`INIT_FRAME_BYTES`] below it writable. `entry` must
/// uphold the [`EntryFn`] contract for `data`.
pub(crate) unsafe fn init_stack(top: *mut u8, entry: EntryFn, data: *mut u8) -> *mut u8 {
    debug_assert_eq!(top as usize % 16, 0, "stack top must be 16-byte aligned");
    let words: [usize; 9] = [
        0,                                // r15
        0,                                // r14
        entry as usize,                   // r13
        data as usize,                    // r12
        0,                                // rbx
        0,                                // rbp
        trampoline as *const () as usize, // return address of the first switch
        0,                                // padding, keeps the entry call aligned
        0,                                // padding
    ];
    let sp = top.wrapping_sub(INIT_FRAME_BYTES);
    // SAFETY: the caller guarantees INIT_FRAME_BYTES below `top` are writable; `sp` is 8-aligned
    // because `top` is 16-aligned and 72 is a multiple of 8.
    unsafe { core::ptr::copy_nonoverlapping(words.as_ptr(), sp.cast::<usize>(), words.len()) };
    sp
}

/// The current stack pointer.
#[inline(always)]
pub(crate) fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads a register; no memory or flags are touched.
    unsafe { asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}
