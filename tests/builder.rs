//! `Builder` validation and settings.

use std::io;

use pagurus::{Runtime, spawn};

fn build_err(builder: pagurus::Builder) -> io::Error {
    match builder.build() {
        Ok(rt) => panic!("built a runtime from invalid settings: {rt:?}"),
        Err(err) => err,
    }
}

fn assert_invalid(builder: pagurus::Builder, param: &str, detail: &str) {
    let err = build_err(builder);
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(param), "message {msg:?} does not name {param}");
    assert!(
        msg.contains(detail),
        "message {msg:?} does not say {detail:?}"
    );
}

#[test]
fn invalid_builder_values() {
    assert_invalid(Runtime::builder().workers(0), "workers", "got 0");
    assert_invalid(
        Runtime::builder().initial_stack_size(5000),
        "initial_stack_size",
        "5000",
    );
    assert_invalid(
        Runtime::builder().initial_stack_size(2048),
        "initial_stack_size",
        "2048",
    );
    assert_invalid(
        Runtime::builder().initial_stack_size(0),
        "initial_stack_size",
        "got 0",
    );
    // Smaller than the initial size (itself valid).
    assert_invalid(
        Runtime::builder()
            .initial_stack_size(64 * 1024)
            .max_stack_size(16 * 1024),
        "max_stack_size",
        "16384",
    );
    // Smaller than the default initial size of 4096.
    assert_invalid(
        Runtime::builder().max_stack_size(2048),
        "max_stack_size",
        "2048",
    );
    assert_invalid(
        Runtime::builder().max_stack_size(3 << 20),
        "max_stack_size",
        &(3usize << 20).to_string(),
    );
    // The first invalid setting in check order is reported even when several are wrong.
    assert_invalid(
        Runtime::builder().workers(0).initial_stack_size(5000),
        "workers",
        "got 0",
    );
}

#[test]
fn valid_builder_values_build() {
    // Edge values: one worker, initial == max == one page, no pool.
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(4096)
        .max_stack_size(4096)
        .stack_pool_bytes(0)
        .build()
        .unwrap();
    assert_eq!(rt.block_on(|| spawn(|| 40 + 2).join().unwrap()), 42);
    let size = rt.block_on(|| {
        spawn(|| pagurus::stack::current().unwrap().size)
            .join()
            .unwrap()
    });
    assert_eq!(size, 4096);
    drop(rt);

    // Larger sizes, several workers.
    let rt = Runtime::builder()
        .workers(3)
        .initial_stack_size(128 * 1024)
        .max_stack_size(1 << 30)
        .stack_pool_bytes(1 << 20)
        .build()
        .unwrap();
    let sizes = rt.block_on(|| {
        let main = pagurus::stack::current().unwrap().size;
        let child = spawn(|| pagurus::stack::current().unwrap().size)
            .join()
            .unwrap();
        (main, child)
    });
    assert_eq!(sizes, (128 * 1024, 128 * 1024));
    let debug = format!("{rt:?}");
    assert!(debug.contains("workers: 3"), "{debug}");
    drop(rt);

    // Defaults.
    let rt = Runtime::new().unwrap();
    assert_eq!(
        rt.block_on(|| pagurus::stack::current().unwrap().size),
        4096
    );
    let rt2 = Runtime::builder().build().unwrap();
    assert_eq!(rt2.block_on(|| spawn(|| "ok").join().unwrap()), "ok");
}

/// Values at and beyond the edges of each range: every one is refused with `InvalidInput`
/// naming the parameter and the accepted range, never a panic, an allocation abort, a silently
/// truncated setting, or an abort at first use (issue 12, defect 11).
#[test]
fn out_of_range_values_name_the_parameter_and_the_range() {
    use pagurus::ffi::Mode;
    // Workers: `usize::MAX` panicked ("capacity overflow"), 1 << 28 aborted on allocation.
    for n in [usize::MAX, 1 << 28, 1025] {
        assert_invalid(Runtime::builder().workers(n), "workers", "from 1 to 1024");
    }
    // Stack sizes: 1 << 47 was called "not a power of two"; 1 << 46 built and aborted at first
    // use (two such stacks do not fit in the address space).
    for bytes in [1usize << 47, 1 << 46, 1 << 45, usize::MAX] {
        assert_invalid(
            Runtime::builder().initial_stack_size(bytes),
            "initial_stack_size",
            "from 4096 to 17592186044416 (16 TiB)",
        );
        assert_invalid(
            Runtime::builder().max_stack_size(bytes),
            "max_stack_size",
            "from 4096 to 17592186044416 (16 TiB)",
        );
    }
    assert_invalid(
        Runtime::builder().initial_stack_size(5000),
        "initial_stack_size",
        "power of two",
    );
    // Reserve: stored as `bytes << 2`, `1 << 62` became `Reserve { bytes: 0 }`; and a Reserve
    // larger than max_stack_size was accepted and aborted at the first call.
    for bytes in [1usize << 62, usize::MAX, 1 << 30, (1 << 29) + 1] {
        assert_invalid(
            Runtime::builder().ffi_mode(Mode::Reserve { bytes }),
            "ffi_mode",
            "at most half of max_stack_size (536870912 bytes)",
        );
    }
    assert_invalid(
        Runtime::builder()
            .max_stack_size(1 << 20)
            .ffi_mode(Mode::Reserve { bytes: 1 << 20 }),
        "ffi_mode",
        "at most half of max_stack_size (524288 bytes)",
    );

    // The edges themselves are accepted and work.
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(1 << 44)
        .max_stack_size(1 << 44)
        .stack_pool_bytes(0)
        .ffi_mode(Mode::Reserve { bytes: 1 << 43 })
        .build()
        .unwrap();
    assert_eq!(
        rt.block_on(|| spawn(|| pagurus::ffi::call(|| 6 * 7)).join().unwrap()),
        42
    );
    drop(rt);
    let rt = Runtime::builder()
        .workers(1)
        .max_stack_size(1 << 20)
        .ffi_mode(Mode::Reserve { bytes: 1 << 19 })
        .build()
        .unwrap();
    // Reserving half the maximum from a fresh coroutine fits.
    assert_eq!(
        rt.block_on(|| spawn(|| pagurus::ffi::call(|| 6 * 7)).join().unwrap()),
        42
    );

    // Changing the mode later is checked against the same range, and a refused mode changes
    // nothing (it used to be stored truncated: `Reserve { bytes: 0 }`).
    rt.block_on(|| {
        for bytes in [1usize << 62, 1 << 20] {
            let err = pagurus::ffi::set_default_mode(Mode::Reserve { bytes }).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(
                err.to_string().contains("at most half of max_stack_size"),
                "{err}"
            );
            assert_eq!(
                pagurus::ffi::default_mode(),
                Mode::Reserve { bytes: 1 << 19 }
            );
        }
        pagurus::ffi::set_default_mode(Mode::Reserve { bytes: 4096 }).unwrap();
        assert_eq!(pagurus::ffi::default_mode(), Mode::Reserve { bytes: 4096 });
    });
}
