//! Foreign calls from pagurus coroutines: cgo's safety, at close to a direct call's price.
//!
//! # The story of a foreign call
//!
//! C code expects a thread's stack: megabytes, grown by the kernel on demand. A pagurus coroutine
//! starts on 4 KiB and grows by copying, which works for any code with unwind information whose
//! frames fault inside the 4 MiB guard region (C compiled by gcc or clang has both). What it
//! cannot handle is a single frame larger than the guard that skips over it without touching it,
//! or code that keeps pointers into its own stack somewhere the relocation cannot see. Go answers
//! by running every C call on a large system stack (`cgocall`), for about 36 ns a call. Here the
//! choice is the caller's, through a [`Mode`]:
//!
//! | mode | where `f` runs | cost on our machines | use it for |
//! |---|---|---|---|
//! | [`Mode::Switch`] (default) | this thread's 8 MiB system stack (`stack::on_system_stack`) | a few ns | any C code; the safe default |
//! | [`Mode::Direct`] | the coroutine stack, no check | a plain call | small, known C functions; not C that `setjmp`s/`longjmp`s across a growth (design.md section 6) |
//! | [`Mode::Reserve`] | the coroutine stack, after `stack::ensure(bytes)` | a plain call plus a compare | C code whose stack need is known |
//! | [`Mode::Offload`] | a thread of the blocking pool; the coroutine parks | a thread hand-off, microseconds | calls that sleep or block |
//!
//! The mode is chosen, from the most specific: per call ([`call_with`]), per runtime
//! (`Builder::ffi_mode`, or [`set_default_mode`] at any time), or by the `PAGURUS_FFI_MODE`
//! environment variable (`switch`, `direct`, `reserve:<size>` such as `reserve:256k`, `offload`),
//! read when a runtime starts; an invalid value makes the runtime's `build` fail with
//! `InvalidInput` listing those values.
//!
//! Declaring foreign functions with [`foreign!`] makes every call go through the mode, the way
//! every `C.f()` in Go goes through `cgocall`.
//!
//! `errno` after a call is what the call left, in every mode: `Offload` carries it back from the
//! pool thread, as cgo does for `r, err := C.f()`. An offloaded call below the pool's cap of 512
//! threads never waits for another call; one that cannot get a thread at all (none can be
//! started) runs inline, on the caller's system stack.
//!
//! # Callbacks
//!
//! C code may call back into Rust in every mode. In `Switch` mode the callback runs on the system
//! stack, where code cannot suspend: `yield_now`, `join` and other waits panic there with a
//! message that says so (and a panic cannot unwind through C frames, so the process aborts:
//! suspend before or after the foreign call instead). In `Offload` mode it runs on the pool
//! thread.
//!
//! ```
//! pagurus_ffi::foreign! {
//!     extern "C" {
//!         fn abs(x: i32) -> i32;
//!     }
//! }
//! let r = pagurus_runtime::run(|| unsafe { abs(-42) });
//! assert_eq!(r, 42);
//! ```

pub use pagurus_runtime::ffi_mode::Mode;

/// Runs `f`, a closure that calls foreign code, in the current mode (see [`default_mode`]).
///
/// ```
/// let v = pagurus_runtime::run(|| pagurus_ffi::call(|| 6 * 7));
/// assert_eq!(v, 42);
/// ```
#[inline]
pub fn call<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    call_with(default_mode(), f)
}

/// Runs `f` in `mode`, whatever the default.
///
/// ```
/// use pagurus_ffi::{Mode, call_with};
/// pagurus_runtime::run(|| {
///     assert_eq!(call_with(Mode::Direct, || 1 + 1), 2);
///     assert_eq!(call_with(Mode::Reserve { bytes: 64 * 1024 }, || 2 + 2), 4);
///     assert!(pagurus_runtime::stack::remaining().unwrap() >= 64 * 1024 - 4096);
/// });
/// ```
#[inline]
pub fn call_with<F, R>(mode: Mode, f: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    // SAFETY: `F` and `R` are Send, so running `f` on a pool thread (Offload) is sound.
    unsafe { call_unchecked(mode, None, f) }
}

/// Runs `f` in `mode` without requiring it to be `Send`; `stack_hint`, when given, is the stack
/// the call needs, used by `Reserve` (the larger of the two is reserved). This is what
/// [`foreign!`] wrappers call.
///
#[inline]
/// # Safety
/// In `Offload` mode `f` runs on another thread (the calling coroutine waits for it): whatever it
/// uses must be sound to use from there, as if `f` and its result were `Send`. Raw pointers to
/// memory the caller keeps alive for the call (its own stack included) are fine.
pub unsafe fn call_unchecked<F, R>(mode: Mode, stack_hint: Option<usize>, f: F) -> R
where
    F: FnOnce() -> R,
{
    match mode {
        Mode::Switch => pagurus_runtime::stack::on_system_stack(f),
        Mode::Direct => f(),
        Mode::Reserve { bytes } => {
            pagurus_runtime::stack::ensure(stack_hint.map_or(bytes, |hint| hint.max(bytes)));
            f()
        }
        Mode::Offload => {
            let f = AssertSend(f);
            pagurus_runtime::offload::run(move || AssertSend((f.into_inner())())).0
        }
    }
}

/// A value the caller of [`call_unchecked`] vouched may cross to a pool thread.
struct AssertSend<T>(T);

impl<T> AssertSend<T> {
    /// Takes the value out; a method, so that closures capture the whole wrapper (and its Send
    /// impl) rather than its field.
    fn into_inner(self) -> T {
        self.0
    }
}

// SAFETY: only built in `call_unchecked`, whose contract makes the caller vouch for it.
unsafe impl<T> Send for AssertSend<T> {}

/// The mode calls use when they do not name one: that of the runtime the caller runs in (set by
/// `Builder::ffi_mode`, `PAGURUS_FFI_MODE` or [`set_default_mode`]; `Switch` if none), or, outside
/// any runtime, the process-wide one.
///
/// ```
/// use pagurus_ffi::{Mode, default_mode, set_default_mode};
/// let rt = pagurus_runtime::Runtime::builder().ffi_mode(Mode::Direct).build().unwrap();
/// rt.block_on(|| {
///     assert_eq!(default_mode(), Mode::Direct);
///     set_default_mode(Mode::Reserve { bytes: 1 << 20 }).unwrap();
///     assert_eq!(default_mode(), Mode::Reserve { bytes: 1 << 20 });
///     // More than half the runtime's max_stack_size (1 GiB by default) is refused.
///     assert!(set_default_mode(Mode::Reserve { bytes: 1 << 30 }).is_err());
/// });
/// ```
#[inline]
pub fn default_mode() -> Mode {
    pagurus_runtime::ffi_mode::current()
}

/// Changes the mode of the runtime the caller runs in, from now on, for every call that does not
/// name one; outside any runtime, the process-wide mode of calls made outside runtimes.
///
/// Fails with `InvalidInput`, changing nothing, for a `Reserve` of more than half the runtime's
/// `max_stack_size` (no call could get it).
pub fn set_default_mode(mode: Mode) -> std::io::Result<()> {
    pagurus_runtime::ffi_mode::set_current(mode)
}

/// Declares foreign functions whose every call goes through the current [`Mode`].
///
/// Each `fn` becomes an `unsafe fn` of the same name and signature that calls the foreign symbol
/// with [`call_unchecked`]. `where stack = BYTES` after a signature gives the stack the function
/// needs, which `Reserve` mode reserves (if larger than the mode's own bytes). Attributes on the
/// block (such as `#[link(name = "m")]`) apply to the foreign declarations; `#[link_name = ".."]`
/// on a `fn` names the foreign symbol (the wrapper keeps the Rust name); every other attribute on
/// a `fn` (docs, `cfg`, `allow`) applies to its wrapper.
///
/// The wrappers are `unsafe` for the foreign function's own contract, and because in `Offload`
/// mode the call runs on another thread (with the caller waiting).
///
/// ```
/// pagurus_ffi::foreign! {
///     extern "C" {
///         /// libc's `labs`.
///         pub fn labs(x: std::ffi::c_long) -> std::ffi::c_long;
///         fn strlen(s: *const std::ffi::c_char) -> usize where stack = 16 * 1024;
///         #[link_name = "abs"]
///         fn c_abs(x: std::ffi::c_int) -> std::ffi::c_int;
///     }
/// }
/// let n = pagurus_runtime::run(|| unsafe { strlen(c"hermit".as_ptr()) + labs(-1) as usize });
/// assert_eq!(n, 7);
/// assert_eq!(pagurus_runtime::run(|| unsafe { c_abs(-5) }), 5);
/// ```
#[macro_export]
macro_rules! foreign {
    (
        $(#[$block:meta])*
        extern $abi:literal { $($items:tt)* }
    ) => {
        $crate::foreign!(@items [$(#[$block])*] $abi; $($items)*);
    };
    (@items [$($block:tt)*] $abi:literal; ) => {};
    (@items [$($block:tt)*] $abi:literal; $($rest:tt)+) => {
        $crate::foreign!(@fn [$($block)*] $abi; [] []; $($rest)+);
    };
    // Sorting an item's attributes: `link_name` names the foreign symbol, so it goes on the
    // declaration inside; every other attribute (docs, `cfg`, lints) goes on the wrapper.
    (
        @fn [$($block:tt)*] $abi:literal; [$($outer:tt)*] [$($inner:tt)*];
        #[link_name = $link:literal] $($rest:tt)+
    ) => {
        $crate::foreign!(@fn [$($block)*] $abi; [$($outer)*] [$($inner)* #[link_name = $link]]; $($rest)+);
    };
    (
        @fn [$($block:tt)*] $abi:literal; [$($outer:tt)*] [$($inner:tt)*];
        #[$attr:meta] $($rest:tt)+
    ) => {
        $crate::foreign!(@fn [$($block)*] $abi; [$($outer)* #[$attr]] [$($inner)*]; $($rest)+);
    };
    (
        @fn [$($block:tt)*] $abi:literal; [$($outer:tt)*] [$($inner:tt)*];
        $vis:vis fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)?
        $(where stack = $hint:expr)? ;
        $($rest:tt)*
    ) => {
        $($outer)*
        #[allow(clippy::missing_safety_doc)]
        #[inline]
        // # Safety: the foreign function's own contract (see the macro's documentation).
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            $($block)*
            unsafe extern $abi {
                $($inner)*
                fn $name($($arg: $ty),*) $(-> $ret)?;
            }
            // SAFETY: the caller upholds the foreign function's contract (this wrapper is an
            // `unsafe fn` with the same one), including when it runs on a pool thread.
            unsafe {
                $crate::call_unchecked(
                    $crate::default_mode(),
                    ::core::option::Option::<usize>::None $(.or(::core::option::Option::Some($hint)))?,
                    move || $name($($arg),*),
                )
            }
        }
        $crate::foreign!(@items [$($block)*] $abi; $($rest)*);
    };
}
