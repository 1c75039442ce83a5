//! `stats()` after every runtime is gone: stacks a coroutine moved out of and that sit in the
//! quarantine are not "in use or pooled", so they are not counted in `stack_bytes_reserved`
//! (issue 12, defect 14: a debug build reported 262,144 bytes still reserved).
//!
//! Reads the process-wide `stats()`, so this file holds exactly one test.

use pagurus::{Runtime, spawn, stats};

#[test]
fn quarantined_stacks_are_not_counted_as_reserved() {
    let before = stats();
    let rt = Runtime::builder()
        .workers(1)
        .stack_quarantine(true)
        .build()
        .unwrap();
    // 4 KiB -> 8 KiB -> ... : every stack moved out of goes to the quarantine.
    let grown = rt.block_on(|| {
        spawn(|| {
            pagurus::stack::ensure(64 * 1024);
            pagurus::stack::current().unwrap().size
        })
        .join()
        .unwrap()
    });
    assert!(grown >= 128 * 1024, "{grown}");
    let during = stats();
    assert!(during.growths > before.growths);
    drop(rt);

    let after = stats();
    assert_eq!(after.live, before.live, "{before:?} -> {after:?}");
    assert_eq!(
        after.stack_bytes_reserved, before.stack_bytes_reserved,
        "no stack in use or pooled is left: {before:?} -> {after:?}"
    );
    assert_eq!(after.stack_bytes_pooled, before.stack_bytes_pooled);
    // The old stack (4 KiB, the one moved out of) is quarantined: its pages are released and it
    // is counted apart.
    assert!(
        after.stack_bytes_quarantined >= before.stack_bytes_quarantined + 4096,
        "{before:?} -> {after:?}"
    );
}
