//! C fixtures for pagurus's foreign-call tests and benchmarks (compiled by `build.rs` with the
//! `cc` crate from `c/fixtures.c`).
//!
//! This crate only links the C code in: the tests and benchmarks declare the functions
//! themselves, through `pagurus::ffi::foreign!`, so that every call goes through a mode. Use it
//! with `use pagurus_ffi_fixtures as _;`.

/// The expected result of `pf_unprobed_64k(seed)`.
pub fn unprobed_64k_expected(seed: i64) -> i64 {
    (0..8192).map(|i| seed + i).sum()
}

/// The expected result of `pf_use_stack(bytes, seed)`.
pub fn use_stack_expected(bytes: usize, seed: i64) -> i64 {
    seed + 2 * (bytes / 1024) as i64
}
