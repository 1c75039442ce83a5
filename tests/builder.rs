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
