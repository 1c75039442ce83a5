//! `PAGURUS_FFI_MODE` is read when a runtime is built. One test in this file: it sets a
//! process-wide environment variable.

use pagurus::Runtime;
use pagurus::ffi::{self, Mode};

#[test]
fn ffi_mode_from_the_environment() {
    // SAFETY: this is the only test of this binary, so no other thread reads the environment.
    unsafe { std::env::set_var("PAGURUS_FFI_MODE", "reserve:256k") };
    let rt = Runtime::builder().workers(1).build().unwrap();
    assert_eq!(
        rt.block_on(ffi::default_mode),
        Mode::Reserve { bytes: 256 * 1024 }
    );

    // The builder wins over the environment.
    let rt = Runtime::builder()
        .workers(1)
        .ffi_mode(Mode::Direct)
        .build()
        .unwrap();
    assert_eq!(rt.block_on(ffi::default_mode), Mode::Direct);

    // SAFETY: as above.
    unsafe { std::env::set_var("PAGURUS_FFI_MODE", "turbo") };
    let err = Runtime::builder().workers(1).build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let msg = err.to_string();
    assert!(msg.contains("PAGURUS_FFI_MODE"), "{msg}");
    assert!(msg.contains("\"turbo\""), "{msg}");
    assert!(msg.contains("switch, direct, reserve:<size>"), "{msg}");
    assert!(msg.contains("offload"), "{msg}");

    // 2^62 bytes: parsed, but more than any stack may have. It was stored as `bytes << 2` and
    // became `Reserve { bytes: 0 }`; now `build` refuses it, naming the variable and the range.
    // SAFETY: as above.
    unsafe { std::env::set_var("PAGURUS_FFI_MODE", "reserve:4294967296g") };
    let err = Runtime::builder().workers(1).build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let msg = err.to_string();
    assert!(msg.contains("PAGURUS_FFI_MODE"), "{msg}");
    assert!(
        msg.contains("Reserve { bytes: 4611686018427387904 }"),
        "{msg}"
    );
    assert!(
        msg.contains("at most half of max_stack_size (536870912 bytes)"),
        "{msg}"
    );

    // SAFETY: as above.
    unsafe { std::env::remove_var("PAGURUS_FFI_MODE") };
    let rt = Runtime::builder().workers(1).build().unwrap();
    assert_eq!(rt.block_on(ffi::default_mode), Mode::Switch, "the default");
}
