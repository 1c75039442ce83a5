//! Every `PAGURUS_*` environment variable the runtime reads is validated like
//! `PAGURUS_FFI_MODE`: an invalid value makes `Runtime::builder().build()` (and
//! `raw::Coroutine::new`, where the variable applies) fail with `InvalidInput` naming the
//! variable and listing the accepted values, instead of running as if it were unset.
//!
//! The variables the runtime reads: `PAGURUS_FFI_MODE`, `PAGURUS_STACK_QUARANTINE` and
//! `PAGURUS_ADAPTIVE_STACKS` here; `PAGURUS_PARKED_STACK_BUDGET` in `tests/compaction.rs`,
//! `PAGURUS_STACK_GUARDS` in `tests/stack_guards.rs`, `PAGURUS_DUMP_SIGNAL` in `tests/dump.rs`. Each case
//! runs in a child process (this binary, re-run with the variable set), so no test here changes
//! the environment of a process other tests run in.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use pagurus::Runtime;

/// Set (to the test's name) in the children: they check what the parent's case set up.
const CHILD: &str = "PAGURUS_ENV_TEST_CHILD";

/// Runs `test` of this binary in a child with `var=value` (and nothing else of ours set), and
/// asserts that the child's checks passed.
fn run_child(test: &str, var: &str, value: &OsStr) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env_remove("PAGURUS_FFI_MODE")
        .env_remove("PAGURUS_STACK_QUARANTINE")
        .env_remove("PAGURUS_ADAPTIVE_STACKS")
        .env(var, value)
        .env(CHILD, test)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child checks passed"),
        "{var}={value:?}: child {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_child(test: &str) -> bool {
    std::env::var_os(CHILD).is_some_and(|t| t == test)
}

fn assert_refused(err: io::Error, var: &str, value: &str, accepted: &str) {
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(var), "{msg:?} does not name {var}");
    assert!(msg.contains(value), "{msg:?} does not quote {value}");
    assert!(msg.contains(accepted), "{msg:?} does not list {accepted:?}");
}

const QUARANTINE_ACCEPTED: &str = "1, 0, true, false, on, off";

#[test]
fn stack_quarantine_rejects_invalid_values() {
    const TEST: &str = "stack_quarantine_rejects_invalid_values";
    if in_child(TEST) {
        let value = std::env::var_os("PAGURUS_STACK_QUARANTINE").unwrap();
        let quoted = format!("{:?}", value.to_string_lossy());
        let quoted = if value.to_str().is_some() {
            quoted.as_str()
        } else {
            "not valid UTF-8"
        };
        let err = Runtime::builder().workers(1).build().unwrap_err();
        assert_refused(err, "PAGURUS_STACK_QUARANTINE", quoted, QUARANTINE_ACCEPTED);
        // Raw coroutines read it too.
        let err = pagurus::raw::Coroutine::new(4096, |_| ())
            .err()
            .expect("refused");
        assert_refused(err, "PAGURUS_STACK_QUARANTINE", quoted, QUARANTINE_ACCEPTED);
        // A builder that says it itself does not consult the variable.
        let rt = Runtime::builder()
            .workers(1)
            .stack_quarantine(false)
            .build()
            .unwrap();
        assert_eq!(rt.block_on(|| pagurus::spawn(|| 7).join().unwrap()), 7);
        println!("child checks passed");
        return;
    }
    for value in ["maybe", "", "yes", "2", "on off"] {
        run_child(TEST, "PAGURUS_STACK_QUARANTINE", OsStr::new(value));
    }
    run_child(TEST, "PAGURUS_STACK_QUARANTINE", OsStr::from_bytes(b"\xff"));
}

#[test]
fn stack_quarantine_accepts_every_listed_value() {
    const TEST: &str = "stack_quarantine_accepts_every_listed_value";
    if in_child(TEST) {
        let value = std::env::var("PAGURUS_STACK_QUARANTINE").unwrap();
        let on = matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "on"
        );
        let rt = Runtime::builder().workers(1).build().unwrap();
        // With the quarantine on, the stack a coroutine moves out of is not reused: it is
        // counted as quarantined, not as reserved.
        let before = pagurus::stats();
        rt.block_on(|| {
            pagurus::spawn(|| pagurus::stack::ensure(64 * 1024))
                .join()
                .unwrap()
        });
        let after = pagurus::stats();
        assert_eq!(
            after.stack_bytes_quarantined > before.stack_bytes_quarantined,
            on,
            "{value}: {before:?} -> {after:?}"
        );
        assert!(pagurus::raw::Coroutine::new(4096, |_| ()).is_ok());
        println!("child checks passed");
        return;
    }
    for value in ["1", "0", "true", "false", "on", "off", "ON", " Off "] {
        run_child(TEST, "PAGURUS_STACK_QUARANTINE", OsStr::new(value));
    }
}

#[test]
fn ffi_mode_rejects_invalid_values() {
    const TEST: &str = "ffi_mode_rejects_invalid_values";
    if in_child(TEST) {
        let value: OsString = std::env::var_os("PAGURUS_FFI_MODE").unwrap();
        let quoted = match value.to_str() {
            Some(s) => format!("{s:?}"),
            None => "not valid UTF-8".to_owned(),
        };
        let err = Runtime::builder().workers(1).build().unwrap_err();
        assert_refused(
            err,
            "PAGURUS_FFI_MODE",
            &quoted,
            "switch, direct, reserve:<size>",
        );
        println!("child checks passed");
        return;
    }
    for value in ["turbo", "", "reserve:", "reserve:1t"] {
        run_child(TEST, "PAGURUS_FFI_MODE", OsStr::new(value));
    }
    run_child(TEST, "PAGURUS_FFI_MODE", OsStr::from_bytes(b"sw\xffitch"));
}

/// Start sizes of eight coroutines of one spawn site, each of which grows to 64 KiB.
fn start_sizes(rt: &Runtime) -> Vec<usize> {
    rt.block_on(|| {
        (0..8)
            .map(|_| {
                pagurus::spawn(|| {
                    let start = pagurus::stack::current().unwrap().size;
                    pagurus::stack::ensure(48 << 10);
                    start
                })
                .join()
                .unwrap()
            })
            .collect()
    })
}

#[test]
fn adaptive_stacks_rejects_invalid_values() {
    const TEST: &str = "adaptive_stacks_rejects_invalid_values";
    if in_child(TEST) {
        let value = std::env::var("PAGURUS_ADAPTIVE_STACKS").unwrap();
        let err = Runtime::builder().workers(1).build().unwrap_err();
        assert_refused(
            err,
            "PAGURUS_ADAPTIVE_STACKS",
            &format!("{value:?}"),
            QUARANTINE_ACCEPTED,
        );
        // A builder that says it itself does not consult the variable.
        let rt = Runtime::builder()
            .workers(1)
            .adaptive_stack_size(false)
            .build()
            .unwrap();
        assert!(start_sizes(&rt).iter().all(|&s| s == 4096));
        println!("child checks passed");
        return;
    }
    for value in ["maybe", "", "2"] {
        run_child(TEST, "PAGURUS_ADAPTIVE_STACKS", OsStr::new(value));
    }
}

#[test]
fn adaptive_stacks_accepts_every_listed_value() {
    const TEST: &str = "adaptive_stacks_accepts_every_listed_value";
    if in_child(TEST) {
        let value = std::env::var("PAGURUS_ADAPTIVE_STACKS").unwrap();
        let on = matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "on"
        );
        let rt = Runtime::builder().workers(1).build().unwrap();
        let sizes = start_sizes(&rt);
        // Four that grew teach the site; the next ones start on 64 KiB, unless it is off.
        assert_eq!(
            sizes[4..].iter().all(|&s| s == 64 << 10),
            on,
            "{value}: {sizes:?}"
        );
        println!("child checks passed");
        return;
    }
    for value in ["1", "0", "true", "false", "on", "off", "ON", " Off "] {
        run_child(TEST, "PAGURUS_ADAPTIVE_STACKS", OsStr::new(value));
    }
}
