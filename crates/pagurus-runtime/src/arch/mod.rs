//! Architecture-specific primitives.
//!
//! Each target gets one file exposing the same tiny interface:
//!
//! - [`switch`]: save the callee-saved registers of the running side on its own stack, store its
//!   stack pointer, load the other side's stack pointer and restore its registers.
//! - [`init_stack`]: lay out a fresh stack so that the first [`switch`] into it enters
//!   [`coroutine_entry`](crate::coroutine) through a trampoline whose unwind info ends the stack.
//! - [`stack_pointer`]: the current stack pointer.
//!
//! Everything else in the runtime is architecture-neutral. Only x86_64 Linux is implemented; an
//! aarch64 port adds `aarch64.rs` with the same three items.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod x86_64;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) use x86_64::*;

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("pagurus supports x86_64 Linux only for now (see design.md, 'Portability')");
