//! Architecture-specific primitives and facts.
//!
//! Each target gets one module exposing the same small interface under neutral names:
//!
//! - `resume` / `suspend`: enter a coroutine from its resumer, and leave it for its resumer,
//!   saving only the callee-saved registers of the side that leaves, and publishing the entered
//!   side in the thread's running word after the last push on the stack being left.
//! - `init_stack`: lay out a fresh stack so that the first `resume` enters `coroutine::entry`
//!   through a trampoline whose unwind info ends the stack (`trampoline_start` finds it).
//! - `call_on_stack`, `stack_pointer`: run a function on another stack (raising a flag while
//!   there); read the stack pointer.
//! - `SignalContext`: the registers of a thread stopped by a signal (for growth by fault).
//! - `dwarf`: register numbers as DWARF numbers them (`SP`, `FP`, `RA`, `CALLEE_SAVED`,
//!   `REGISTERS`), the `ucontext` register table (`signal_registers`) and the suspended frame's
//!   layout (`suspended_registers`, `SUSPENDED_FRAME_BYTES`).
//! - `PAGE_SIZE`, `RED_ZONE`.
//!
//! Everything else in the runtime is architecture-neutral: no other module names a register, a
//! register number or an offset into a saved frame (`cargo xtask layers` keeps this module at the
//! bottom of the layer order; a grep for register numbers outside it finds none). Only x86_64
//! Linux is implemented; an aarch64 port adds `aarch64/` with the same items.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod x86_64;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub use x86_64::PAGE_SIZE;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) use x86_64::*;

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("pagurus supports x86_64 Linux only for now (see design.md, 'Portability')");
