//! How foreign calls run: the [`Mode`] switch, kept per runtime, and the lookup of the mode in
//! force for the caller ([`current`], [`set_current`]).
//!
//! The calls themselves live in the `pagurus-ffi` crate (`pagurus::ffi`); the runtime only keeps
//! the setting, because it is part of a runtime's configuration (`Builder::ffi_mode`, the
//! `PAGURUS_FFI_MODE` environment variable read when a runtime is built) and can be changed at
//! any time while the runtime runs.
//!
//! This module imports nothing from the runtime: a thread that runs a runtime's coroutines (a
//! worker, a `block_on` caller) registers that runtime's mode word here while it does
//! ([`register`]), so the lookup is one thread-local read and one atomic load.

mod mode;

use std::cell::Cell;
use std::ptr;

pub use mode::Mode;
pub(crate) use mode::{AtomicMode, mode_from_env};

/// The mode of calls made outside any runtime (where it rarely matters: there is no coroutine
/// stack to protect).
static OUTSIDE: AtomicMode = AtomicMode::new_outside();

thread_local! {
    /// The mode word of the runtime this thread runs coroutines for; null outside runtimes.
    static REGISTERED: Cell<*const AtomicMode> = const { Cell::new(ptr::null()) };
}

/// Makes `mode` the mode word of calls from this thread until the returned registration drops.
///
/// # Safety
/// `mode` must stay alive until the registration drops, and it must drop on this thread.
pub(crate) unsafe fn register(mode: &AtomicMode) -> Registration {
    Registration {
        previous: REGISTERED.with(|c| c.replace(mode)),
    }
}

/// Restores the thread's previous mode word when dropped.
#[must_use = "the mode is unregistered when this drops"]
pub(crate) struct Registration {
    previous: *const AtomicMode,
}

impl Drop for Registration {
    fn drop(&mut self) {
        REGISTERED.with(|c| c.set(self.previous));
    }
}

/// The mode word in force for the caller.
#[inline]
fn word() -> &'static AtomicMode {
    let registered = REGISTERED.with(Cell::get);
    // SAFETY: a registered word outlives its registration (`register`'s contract), which clears
    // the pointer when it drops; the 'static does not escape this module's use of it.
    unsafe { registered.as_ref() }.unwrap_or(&OUTSIDE)
}

/// The mode of the runtime the caller runs in (its coroutines and workers), or of calls outside
/// any runtime.
#[inline]
pub fn current() -> Mode {
    word().load()
}

/// Sets the mode of the runtime the caller runs in, for every later call that does not name its
/// own; outside any runtime, the mode of calls made outside runtimes.
///
/// Fails with `InvalidInput`, changing nothing, for a `Reserve` larger than half the runtime's
/// `max_stack_size` (a call could never get it).
pub fn set_current(mode: Mode) -> std::io::Result<()> {
    word().store(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registered_word_wins_until_the_registration_drops() {
        let runtime = AtomicMode::new(Mode::Direct, 1 << 20).unwrap();
        let outside = current();
        {
            // SAFETY: `runtime` outlives the registration, dropped on this thread.
            let _registered = unsafe { register(&runtime) };
            assert_eq!(current(), Mode::Direct);
            set_current(Mode::Offload).unwrap();
            assert_eq!(runtime.load(), Mode::Offload);
        }
        assert_eq!(
            current(),
            outside,
            "the word outside runtimes was not touched"
        );
    }
}
