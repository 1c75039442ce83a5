//! The runtime built with `panic = "abort"` (CI runs this with `--profile abort`, see `.ci/run`):
//! nothing can unwind, so the code paths that cancel by unwinding take their other branch.
//!
//! Prints one line per check, then drops a suspended raw coroutine, which cannot be unwound
//! without unwinding: the process must abort with the runtime's message. `.ci/run` checks the
//! lines, the message and the abort.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]); // 512 bytes a frame
    if depth == 0 {
        0
    } else {
        pad[3] + recurse(depth - 1)
    }
}

fn main() {
    if cfg!(panic = "unwind") {
        eprintln!("abort-mode: build this example with `--profile abort`");
        std::process::exit(2);
    }
    let rt = pagurus::Runtime::builder().workers(2).build().unwrap();

    // Growth by fault and by `ensure` works as with unwinding.
    let (sum, grown) = rt.block_on(|| {
        pagurus::spawn(|| {
            let sum = recurse(4000); // about 2 MiB of stack, from 4 KiB
            pagurus::stack::ensure(1 << 20);
            (sum, pagurus::stack::current().unwrap())
        })
        .join()
        .unwrap()
    });
    assert_eq!(sum, 4000 * 4001 / 2);
    assert!(grown.growths >= 2 && grown.size >= 2 << 20, "{grown:?}");
    println!(
        "abort-mode: growth ok ({} moves, {} bytes)",
        grown.growths, grown.size
    );

    // Shutdown cannot unwind a suspended coroutine: it abandons it, and the join says Cancelled.
    let started = Arc::new(AtomicBool::new(false));
    let flag = started.clone();
    let spinning = rt.block_on(|| {
        pagurus::spawn(move || {
            flag.store(true, Ordering::Release);
            loop {
                pagurus::yield_now();
            }
        })
    });
    while !started.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    drop(rt);
    let err = spinning.join().unwrap_err();
    assert!(err.downcast_ref::<pagurus::Cancelled>().is_some());
    println!("abort-mode: shutdown abandoned a suspended coroutine");

    // A raw coroutine dropped while suspended cannot be unwound either: this aborts.
    let mut co = pagurus::raw::Coroutine::new(16 * 1024, |s| {
        loop {
            s.suspend();
        }
    })
    .unwrap();
    assert!(co.resume());
    println!("abort-mode: dropping a suspended raw coroutine");
    drop(co);
    println!("abort-mode: still alive (wrong)");
}
