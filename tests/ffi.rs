//! Foreign calls in every mode, from coroutines on the default 4 KiB stacks, against the C
//! fixtures in `crates/ffi-fixtures`.

use std::ffi::{c_int, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering::SeqCst};

use pagurus::ffi::{self, Mode};
use pagurus::{Runtime, stack};
use pagurus_ffi_fixtures::ffi::{
    pf_add, pf_callback, pf_fail_with_errno, pf_unprobed_64k, pf_use_stack, pf_wait_flag,
};
use pagurus_ffi_fixtures::{unprobed_64k_expected, use_stack_expected};

pagurus::ffi::foreign! {
    extern "C" {
        fn qsort(
            base: *mut c_void,
            n: usize,
            size: usize,
            cmp: extern "C" fn(*const c_void, *const c_void) -> c_int,
        );
        /// Declared under another Rust name: the symbol comes from `link_name`.
        #[link_name = "labs"]
        fn c_labs(x: std::ffi::c_long) -> std::ffi::c_long;
    }
}

/// `#[link_name]` names the foreign symbol, in every mode (it used to land on the wrapper, so the
/// declaration asked the linker for `c_labs` and the build failed).
#[test]
fn link_name_names_the_foreign_symbol() {
    for mode in ALL_MODES {
        let got =
            runtime(mode).block_on(|| pagurus::spawn(|| unsafe { c_labs(-42) }).join().unwrap());
        assert_eq!(got, 42, "{mode}");
    }
}

const ALL_MODES: [Mode; 4] = [
    Mode::Switch,
    Mode::Direct,
    Mode::Reserve { bytes: 128 * 1024 },
    Mode::Offload,
];

/// A runtime whose coroutines start at the default 4 KiB, calling foreign code in `mode`.
fn runtime(mode: Mode) -> Runtime {
    Runtime::builder()
        .workers(2)
        .ffi_mode(mode)
        .build()
        .unwrap()
}

/// Runs `f` in a fresh coroutine of a runtime in `mode` and returns what it returns.
fn in_coroutine<T: Send + 'static>(mode: Mode, f: impl FnOnce() -> T + Send + 'static) -> T {
    runtime(mode).block_on(|| pagurus::spawn(f).join().unwrap())
}

#[test]
fn trivial_call_in_every_mode() {
    for mode in ALL_MODES {
        let (sum, seen) = in_coroutine(mode, || {
            // SAFETY: pf_add has no preconditions.
            (unsafe { pf_add(40, 2) }, ffi::default_mode())
        });
        assert_eq!(sum, 42, "{mode}");
        assert_eq!(seen, mode);
    }
}

#[test]
fn unprobed_64k_frame_from_a_4k_coroutine_in_every_mode() {
    for mode in ALL_MODES {
        let (got, size) = in_coroutine(mode, || {
            assert_eq!(stack::current().unwrap().size, 4096);
            // SAFETY: pf_unprobed_64k has no preconditions.
            let got = unsafe { pf_unprobed_64k(7) };
            (got, stack::current().unwrap().size)
        });
        assert_eq!(got, unprobed_64k_expected(7), "{mode}");
        match mode {
            // The C frame faulted in the guard region, and the stack grew around it.
            Mode::Direct => assert!(size >= 128 * 1024, "{mode}: grew to {size}"),
            // Reserved up front: the hint (80 KiB) or the mode's bytes, whichever is larger.
            Mode::Reserve { .. } => assert!(size >= 128 * 1024, "{mode}: {size}"),
            // Ran elsewhere: the coroutine stack never needed to grow.
            Mode::Switch | Mode::Offload => assert_eq!(size, 4096, "{mode}"),
        }
    }
}

#[test]
fn deep_c_stacks_in_switch_and_reserve_modes() {
    for bytes in [256 * 1024, 4 << 20] {
        for mode in [
            Mode::Switch,
            Mode::Reserve {
                bytes: bytes + (bytes >> 2),
            },
        ] {
            let got = in_coroutine(mode, move || {
                // SAFETY: pf_use_stack has no preconditions; the mode provides the stack.
                unsafe { pf_use_stack(bytes, 3) }
            });
            assert_eq!(got, use_stack_expected(bytes, 3), "{mode}, {bytes} bytes");
        }
    }
}

static COMPARISONS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn compare_i32(a: *const c_void, b: *const c_void) -> c_int {
    COMPARISONS.fetch_add(1, SeqCst);
    // SAFETY: qsort passes pointers to elements of the i32 array it sorts.
    let (a, b) = unsafe { (*(a as *const i32), *(b as *const i32)) };
    a.cmp(&b) as c_int
}

#[test]
fn qsort_calls_back_into_rust_in_every_mode() {
    for mode in ALL_MODES {
        let before = COMPARISONS.load(SeqCst);
        let sorted = in_coroutine(mode, || {
            let mut v: Vec<i32> = (0..200).map(|i| (i * 7919) % 211).collect();
            // SAFETY: the pointer and length describe `v`, whose elements are i32.
            unsafe { qsort(v.as_mut_ptr().cast(), v.len(), 4, compare_i32) };
            v
        });
        let mut expected: Vec<i32> = (0..200).map(|i| (i * 7919) % 211).collect();
        expected.sort();
        assert_eq!(sorted, expected, "{mode}");
        assert!(
            COMPARISONS.load(SeqCst) > before,
            "{mode}: the Rust comparator ran"
        );
    }
}

#[test]
fn callback_round_trip_in_every_mode() {
    for mode in ALL_MODES {
        // SAFETY: pf_callback calls the function it is given.
        let got = in_coroutine(mode, || unsafe {
            pf_callback(pagurus_ffi_fixtures::double_it, 20)
        });
        assert_eq!(got, 41, "{mode}");
    }
}

#[test]
fn parking_on_the_system_stack_panics_with_a_reason() {
    let msg = in_coroutine(Mode::Switch, || {
        let err = std::panic::catch_unwind(|| ffi::call(pagurus::yield_now)).unwrap_err();
        err.downcast_ref::<String>().cloned().unwrap_or_default()
    });
    assert!(msg.contains("called on the system stack"), "{msg}");
    assert!(msg.contains("cannot suspend"), "{msg}");
}

#[test]
fn offload_lets_the_worker_run_other_coroutines() {
    // One worker: if the blocking call held it, the coroutine that sets the flag could never
    // run and the call would time out.
    let rt = Runtime::builder()
        .workers(1)
        .ffi_mode(Mode::Offload)
        .build()
        .unwrap();
    let seen = rt.block_on(|| {
        pagurus::spawn(|| {
            let flag = Arc::new(AtomicI32::new(0));
            let setter = {
                let flag = flag.clone();
                pagurus::spawn(move || flag.store(1, SeqCst))
            };
            // SAFETY: the flag outlives the call (we hold an Arc), and the C side only reads it.
            let seen = unsafe { pf_wait_flag(Arc::as_ptr(&flag), 10_000) };
            setter.join().unwrap();
            seen
        })
        .join()
        .unwrap()
    });
    assert_eq!(seen, 1);
}

#[test]
fn modes_switch_per_call_and_at_any_time() {
    let rt = runtime(Mode::Direct);
    let modes = rt.block_on(|| {
        pagurus::spawn(|| {
            let mut modes = vec![ffi::default_mode()];
            ffi::set_default_mode(Mode::Switch).unwrap();
            modes.push(ffi::default_mode());
            // A per-call mode does not change the default.
            let on_system = ffi::call_with(Mode::Switch, || stack::current().is_none());
            let direct = ffi::call_with(Mode::Direct, || stack::current().is_some());
            assert!(on_system && direct);
            modes.push(ffi::default_mode());
            modes
        })
        .join()
        .unwrap()
    });
    assert_eq!(modes, [Mode::Direct, Mode::Switch, Mode::Switch]);
    // The runtime-wide setting outlives the coroutine that made it.
    assert_eq!(rt.block_on(ffi::default_mode), Mode::Switch);
}

#[test]
fn outside_coroutines_every_mode_calls_directly() {
    for mode in ALL_MODES {
        // SAFETY: pf_add has no preconditions.
        assert_eq!(ffi::call_with(mode, || unsafe { pf_add(1, 2) }), 3);
    }
}

/// `errno` set by a foreign call is what the caller reads after it, in every mode, as with cgo's
/// `r, err := C.f()`. Offload runs the call on a pool thread, whose `errno` the runtime carries
/// back (issue 12, defect 10: it was lost); the other modes run on the caller's thread.
#[test]
fn errno_set_by_a_foreign_call_reaches_the_caller_in_every_mode() {
    fn errno() -> Option<i32> {
        std::io::Error::last_os_error().raw_os_error()
    }
    for mode in ALL_MODES {
        let got = in_coroutine(mode, || {
            let mut seen = Vec::new();
            for err in [libc::EDOM, libc::ERANGE, libc::EINTR] {
                // SAFETY: the fixture only sets errno.
                let r = unsafe { pf_fail_with_errno(err) };
                seen.push((r, errno()));
            }
            // A libc call through ffi::call: close(-1) fails with EBADF.
            // SAFETY: closing an invalid descriptor touches nothing.
            let r = ffi::call(|| unsafe { libc::close(-1) });
            seen.push((r, errno()));
            seen
        });
        assert_eq!(
            got,
            [
                (-1, Some(libc::EDOM)),
                (-1, Some(libc::ERANGE)),
                (-1, Some(libc::EINTR)),
                (-1, Some(libc::EBADF)),
            ],
            "{mode}"
        );
    }
}
