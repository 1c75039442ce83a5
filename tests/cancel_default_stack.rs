//! Cancelling coroutines that run on the default 4 KiB stacks, in a fresh process.
//!
//! One test in this file, so that the cancellation below is the first unwind of the process.
//!
//! Regression test. Cancellation raises `Cancelled` with `resume_unwind` on the coroutine's own
//! stack. The first unwind in a process calls libgcc's lazily bound `_Unwind_Find_FDE`, and the
//! dynamic linker's resolver (`_dl_runtime_resolve_xsavec`, which saves the whole vector register
//! state on the stack) ran on that stack too, overflowing 4 KiB. The runtime now unwinds once on
//! an ordinary stack before it maps the first coroutine stack (`prepare_process`).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use common::{guarded_frames_until, wait_for};
use pagurus::{Cancelled, JoinHandle, Runtime, spawn};

#[test]
fn cancellation_unwinds_default_size_stacks() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let never = Arc::new(AtomicBool::new(false));
    let handles: Vec<JoinHandle<u32>> = rt.block_on(|| {
        (0..10)
            .map(|_| {
                let (d, s, n) = (drops.clone(), started.clone(), never.clone());
                spawn(move || guarded_frames_until(&d, &s, &n, 3))
            })
            .collect()
    });
    wait_for(&started, 10);
    drop(rt);
    assert_eq!(
        drops.load(SeqCst),
        10 * 4,
        "every guard on the 4 KiB stacks ran"
    );
    for h in handles {
        let payload = h.join().unwrap_err();
        assert!(payload.downcast_ref::<Cancelled>().is_some());
    }
}
