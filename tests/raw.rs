//! Raw coroutines: driven by hand with `resume`, suspended with `Suspender::suspend`.

mod common;

use std::cell::{Cell, RefCell};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use common::{BIG_STACK, DropCounter, panic_message};
use pagurus::raw::{Coroutine, Suspender};
use pagurus::{Runtime, spawn};

/// Values flow both ways through shared cells, one step per resume.
#[test]
fn raw_resume_suspend_sequence() {
    let out = Cell::new(0u64);
    let input = Cell::new(0u64);
    // SAFETY: `input` and `out` live on the test thread's own stack, which never moves.
    let co = unsafe {
        Coroutine::new_unchecked(16 * 1024, |s| {
            // A generator of running sums of what the caller feeds in.
            let mut sum = 0;
            for step in 1..=5u64 {
                sum += input.get() * step;
                out.set(sum);
                s.suspend();
            }
            out.set(u64::MAX);
        })
    };
    let mut co = co.unwrap();

    let mut seen = Vec::new();
    for feed in [10, 20, 30, 40, 50] {
        input.set(feed);
        assert!(co.resume(), "suspended after feeding {feed}");
        assert!(!co.is_done());
        seen.push(out.get());
    }
    assert_eq!(seen, [10, 50, 140, 300, 550]);
    assert!(!co.resume(), "the closure returned");
    assert!(co.is_done());
    assert_eq!(out.get(), u64::MAX);
    // Resuming a finished coroutine does nothing.
    assert!(!co.resume());
    assert!(co.is_done());
}

/// A coroutine that never suspends finishes on its first resume; a closure given to
/// `new_unchecked` may borrow and mutate the caller's locals.
#[test]
fn raw_runs_to_completion_and_borrows() {
    let mut words = vec!["a"];
    let shared = Rc::new(RefCell::new(0));
    {
        let sh = shared.clone();
        // SAFETY: `words` and `sh` live on the test thread's own stack, which never moves.
        let co = unsafe {
            Coroutine::new_unchecked(4096, |_| {
                words.push("b");
                *sh.borrow_mut() += 1;
            })
        };
        let mut co = co.unwrap();
        assert!(!co.is_done());
        assert!(!co.resume());
        assert!(co.is_done());
    }
    assert_eq!(words, ["a", "b"]);
    assert_eq!(*shared.borrow(), 1);
}

/// Two raw coroutines resumed alternately keep their own state.
#[test]
fn raw_coroutines_interleave() {
    let log = RefCell::new(Vec::new());
    let make = |name: &'static str, n: usize| {
        let log = &log;
        // SAFETY: `log` lives on the test thread's own stack, which never moves.
        let co = unsafe {
            Coroutine::new_unchecked(16 * 1024, move |s: &Suspender| {
                for i in 0..n {
                    log.borrow_mut().push((name, i));
                    s.suspend();
                }
            })
        };
        co.unwrap()
    };
    let mut a = make("a", 3);
    let mut b = make("b", 2);
    let mut turns = 0;
    loop {
        let a_more = a.resume();
        let b_more = b.resume();
        turns += 1;
        if !a_more && !b_more {
            break;
        }
    }
    drop((a, b));
    assert_eq!(turns, 4);
    assert_eq!(
        *log.borrow(),
        [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2)]
    );
}

/// A panic inside a raw coroutine unwinds its stack, then resumes on the caller of `resume`.
#[test]
fn raw_panic_resumes_on_caller() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let mut co = Coroutine::new(BIG_STACK, move |s| {
        let _g = DropCounter(d.clone());
        s.suspend();
        let _h = DropCounter(d);
        let code = std::hint::black_box(17);
        panic!("raw coroutine failed: {code}");
    })
    .unwrap();
    assert!(co.resume());
    assert_eq!(drops.load(SeqCst), 0);
    let payload = panic::catch_unwind(AssertUnwindSafe(|| co.resume())).unwrap_err();
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("raw coroutine failed: 17")
    );
    assert_eq!(drops.load(SeqCst), 2, "the coroutine's stack unwound first");
    assert!(co.is_done());
    assert!(!co.resume(), "a panicked coroutine is finished");

    // A &'static str payload on the first resume.
    let mut co = Coroutine::new(BIG_STACK, |_| panic!("first resume")).unwrap();
    let payload = panic::catch_unwind(AssertUnwindSafe(|| co.resume())).unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"first resume"));
}

#[inline(never)]
fn deep_suspend(s: &Suspender, drops: &Arc<AtomicUsize>, depth: u32, reached: &Cell<bool>) {
    let _g = DropCounter(drops.clone());
    if depth == 0 {
        s.suspend();
        reached.set(true); // never: the coroutine is dropped while suspended
    } else {
        deep_suspend(s, drops, depth - 1, reached);
    }
}

/// Dropping a suspended raw coroutine unwinds its stack (guards in every frame run, the code
/// after the suspension point does not); dropping an unstarted one drops its closure.
#[test]
fn raw_drop_runs_destructors() {
    let drops = Arc::new(AtomicUsize::new(0));
    let reached = Cell::new(false);
    let d = drops.clone();
    // SAFETY: `d` and `reached` live on the test thread's own stack, which never moves.
    let co = unsafe {
        Coroutine::new_unchecked(256 * 1024, |s| {
            let _outer = DropCounter(d.clone());
            deep_suspend(s, &d, 4, &reached);
        })
    };
    let mut co = co.unwrap();
    assert!(co.resume());
    assert_eq!(drops.load(SeqCst), 0);
    drop(co);
    assert_eq!(drops.load(SeqCst), 1 + 5);
    assert!(!reached.get());

    // Never resumed: the body never runs, the captured guard is dropped.
    let ran = Cell::new(false);
    let captured = DropCounter(drops.clone());
    // SAFETY: `ran` lives on the test thread's own stack, which never moves.
    let co = unsafe {
        Coroutine::new_unchecked(4096, |_| {
            let _c = captured;
            ran.set(true);
        })
    }
    .unwrap();
    drop(co);
    assert!(!ran.get());
    assert_eq!(drops.load(SeqCst), 7);

    // Finished: dropping it does nothing more.
    let d = drops.clone();
    let mut co = Coroutine::new(4096, move |_| drop(DropCounter(d))).unwrap();
    assert!(!co.resume());
    assert_eq!(drops.load(SeqCst), 8);
    drop(co);
    assert_eq!(drops.load(SeqCst), 8);
}

/// A suspender only works on its own coroutine's stack: calling it from a nested raw coroutine
/// panics (inside the nested one; the panic reaches the outer coroutine through `resume`).
#[test]
fn raw_nested_suspender_panics() {
    let message = RefCell::new(None);
    let after = Cell::new(0);
    let outer_body = |outer_s: &Suspender| {
        // SAFETY: `outer_s` lives on the outer coroutine's 1 MiB stack, which this test never
        // fills, so it does not move while `inner` lives.
        let inner = unsafe {
            Coroutine::new_unchecked(256 * 1024, |_inner_s| {
                outer_s.suspend(); // wrong suspender
            })
        };
        let mut inner = inner.unwrap();
        let caught = panic::catch_unwind(AssertUnwindSafe(|| inner.resume()));
        *message.borrow_mut() = caught.err().and_then(|p| panic_message(&*p));
        assert!(inner.is_done());
        drop(inner);
        // The outer coroutine still suspends normally with its own suspender.
        after.set(1);
        outer_s.suspend();
        after.set(2);
    };
    // SAFETY: `message` and `after` live on the test thread's own stack, which never moves.
    let mut outer = unsafe { Coroutine::new_unchecked(BIG_STACK, outer_body) }.unwrap();
    assert!(outer.resume());
    assert_eq!(after.get(), 1);
    let msg = message
        .borrow()
        .clone()
        .expect("the nested suspend panicked");
    assert!(
        msg.contains("Suspender::suspend called outside the coroutine it belongs to"),
        "{msg}"
    );
    assert!(!outer.resume());
    assert_eq!(after.get(), 2);
}

/// Nested raw coroutines each suspend to their own resumer.
#[test]
fn raw_nested_coroutines_suspend_to_their_resumer() {
    let log = RefCell::new(Vec::new());
    let outer_body = |s: &Suspender| {
        // SAFETY: the closure borrows only `log`, on the test thread's stack, which never
        // moves.
        let inner = unsafe {
            Coroutine::new_unchecked(16 * 1024, |s2| {
                log.borrow_mut().push("inner 1");
                s2.suspend();
                log.borrow_mut().push("inner 2");
            })
        };
        let mut inner = inner.unwrap();
        assert!(inner.resume());
        log.borrow_mut().push("outer 1");
        s.suspend();
        assert!(!inner.resume());
        log.borrow_mut().push("outer 2");
    };
    // SAFETY: `log` lives on the test thread's own stack, which never moves.
    let outer = unsafe { Coroutine::new_unchecked(64 * 1024, outer_body) };
    let mut outer = outer.unwrap();
    assert!(outer.resume());
    log.borrow_mut().push("caller");
    assert!(!outer.resume());
    assert_eq!(
        *log.borrow(),
        ["inner 1", "outer 1", "caller", "inner 2", "outer 2"]
    );
}

#[test]
fn raw_invalid_stack_size() {
    for bad in [0, 2048, 5000, 4096 + 1, 3 * 4096] {
        match Coroutine::new(bad, |_| ()) {
            Ok(_) => panic!("stack size {bad} accepted"),
            Err(err) => {
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}: {err}");
                let msg = err.to_string();
                assert!(msg.contains("stack_size"), "{bad}: {msg}");
                assert!(msg.contains(&bad.to_string()), "{bad}: {msg}");
            }
        }
    }
    for good in [4096, 8192, 1 << 20] {
        let mut co = Coroutine::new(good, |_| ()).unwrap();
        assert!(!co.resume());
    }
}

/// Inside a raw coroutine nested in a scheduled one, the scheduler's suspension points
/// (`yield_now`, `join`) refuse to run, with a message saying why.
#[test]
fn raw_inside_scheduled_cannot_use_scheduler() {
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(BIG_STACK)
        .build()
        .unwrap();
    let (yield_msg, join_msg, joined) = rt.block_on(|| {
        spawn(|| {
            let mut yield_msg = None;
            let mut co = Coroutine::new(256 * 1024, |_| pagurus::yield_now()).unwrap();
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| co.resume())) {
                yield_msg = panic_message(&*p);
            }
            drop(co);

            let child = spawn(|| 5u8);
            let mut join_msg = None;
            let mut co = Coroutine::new(256 * 1024, move |_| {
                let _ = child.join();
            })
            .unwrap();
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| co.resume())) {
                join_msg = panic_message(&*p);
            }
            drop(co);
            // Spawning from the raw coroutine is fine, and joining from the scheduled one too.
            let spawned = Rc::new(Cell::new(None));
            let into = spawned.clone();
            let mut co =
                Coroutine::new(256 * 1024, move |_| into.set(Some(spawn(|| 6u8)))).unwrap();
            assert!(!co.resume());
            drop(co);
            let joined = spawned.take().unwrap().join().unwrap();
            (yield_msg, join_msg, joined)
        })
        .join()
        .unwrap()
    });
    let yield_msg = yield_msg.expect("yield_now panicked");
    assert!(
        yield_msg.contains(
            "pagurus::yield_now called from a raw coroutine nested inside a scheduled one"
        ),
        "{yield_msg}"
    );
    let join_msg = join_msg.expect("join panicked");
    assert!(join_msg.contains("JoinHandle::join"), "{join_msg}");
    assert_eq!(joined, 6);
}
