//! C fixtures for pagurus's foreign-call tests and benchmarks (compiled by `build.rs` with the
//! `cc` crate from `c/fixtures.c`), declared once for all of them.

use std::ffi::c_int;
use std::sync::atomic::AtomicI32;

/// The C functions, declared with `pagurus::ffi::foreign!`: every call goes through the current
/// foreign-call mode.
pub mod ffi {
    use super::*;

    pagurus_ffi::foreign! {
        extern "C" {
            /// `a + b`.
            pub fn pf_add(a: i64, b: i64) -> i64;
            /// A 64 KiB frame entered without stack probes; see [`super::unprobed_64k_expected`].
            pub fn pf_unprobed_64k(seed: i64) -> i64 where stack = 80 * 1024;
            /// Uses about `bytes` of stack; see [`super::use_stack_expected`].
            pub fn pf_use_stack(bytes: usize, seed: i64) -> i64;
            /// `cb(x) + 1`: a call back into the caller.
            pub fn pf_callback(cb: extern "C" fn(i64) -> i64, x: i64) -> i64;
            /// Blocks until `*flag != 0` or `timeout_ms` pass; returns whether the flag was seen.
            pub fn pf_wait_flag(flag: *const AtomicI32, timeout_ms: c_int) -> c_int;
            /// A 14 MiB frame entered without stack probes (more than a system stack and its
            /// guard); returns `seed + 1`.
            pub fn pf_unprobed_14m(seed: i64) -> i64;
            /// Sets `errno` to `err` and returns -1, as failing C library functions do.
            pub fn pf_fail_with_errno(err: c_int) -> c_int;
        }
    }
}

/// The same functions without any wrapper: what a plain Rust program would call.
pub mod plain {
    unsafe extern "C" {
        /// `a + b`.
        pub fn pf_add(a: i64, b: i64) -> i64;
    }
}

/// A callback for `pf_callback`: `2 * x`.
pub extern "C" fn double_it(x: i64) -> i64 {
    x.wrapping_mul(2)
}

/// The expected result of `pf_unprobed_64k(seed)`.
pub fn unprobed_64k_expected(seed: i64) -> i64 {
    (0..8192).map(|i| seed + i).sum()
}

/// The expected result of `pf_use_stack(bytes, seed)`.
pub fn use_stack_expected(bytes: usize, seed: i64) -> i64 {
    seed + 2 * (bytes / 1024) as i64
}
