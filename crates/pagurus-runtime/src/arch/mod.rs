//! Architecture-specific primitives.
//!
//! Each target gets one file exposing the same tiny interface:
//!
//! - `resume` / `suspend`: enter a coroutine from its resumer, and leave it for its resumer,
//!   saving only the callee-saved registers of the side that leaves.
//! - `init_stack`: lay out a fresh stack so that the first `resume` enters `coroutine::entry`
//!   through a trampoline whose unwind info ends the stack.
//! - `stack_pointer`: the current stack pointer.
//! - `SignalContext`: the registers of a thread stopped by a signal (for growth by fault).
//!
//! Everything else in the runtime is architecture-neutral. Only x86_64 Linux is implemented; an
//! aarch64 port adds `aarch64.rs` with the same items.

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod x86_64;
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) use x86_64::*;

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
compile_error!("pagurus supports x86_64 Linux only for now (see design.md, 'Portability')");
