//! Panics: payloads through `join`, unwinding of coroutine stacks, misuse that panics.

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use common::{BIG_STACK, DropCounter, DropLog, panic_message};
use pagurus::{Runtime, spawn, yield_now};

fn big_runtime(workers: usize) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .initial_stack_size(BIG_STACK)
        .build()
        .unwrap()
}

/// `panic!` with format arguments unwinds with a `String` payload.
#[test]
fn panic_payload_string() {
    let rt = big_runtime(2);
    let result = rt.block_on(|| {
        spawn(|| -> u32 {
            let n = std::hint::black_box(42);
            panic!("coroutine failed with code {n} ({})", "formatted")
        })
        .join()
    });
    let payload = result.unwrap_err();
    let msg = payload.downcast::<String>().expect("a String payload");
    assert_eq!(*msg, "coroutine failed with code 42 (formatted)");
}

/// `panic!` with a literal unwinds with a `&'static str` payload.
#[test]
fn panic_payload_str() {
    let rt = big_runtime(2);
    let result = rt.block_on(|| {
        spawn(|| -> u32 {
            yield_now();
            panic!("a literal panic message")
        })
        .join()
    });
    let payload = result.unwrap_err();
    assert!(payload.downcast_ref::<String>().is_none());
    let msg = payload.downcast::<&'static str>().expect("a &str payload");
    assert_eq!(*msg, "a literal panic message");
}

/// Any payload type survives the trip, and a panicking coroutine leaves its siblings alone.
#[test]
fn custom_payload_and_siblings_unaffected() {
    #[derive(Debug, PartialEq)]
    struct Custom(u64, &'static str);
    let rt = big_runtime(2);
    let (bad, good) = rt.block_on(|| {
        let bad = spawn(|| -> u8 { panic::panic_any(Custom(7, "seven")) });
        let good: Vec<_> = (0..20u64)
            .map(|i| {
                spawn(move || {
                    yield_now();
                    i * 10
                })
            })
            .collect();
        let bad = bad.join();
        let good: Vec<u64> = good.into_iter().map(|h| h.join().unwrap()).collect();
        (bad, good)
    });
    let payload = bad.unwrap_err();
    assert_eq!(payload.downcast_ref::<Custom>(), Some(&Custom(7, "seven")));
    assert_eq!(good, (0..20u64).map(|i| i * 10).collect::<Vec<_>>());
}

#[inline(never)]
fn level_three(drops: &Arc<AtomicUsize>, log: &Arc<Mutex<Vec<&'static str>>>) -> u32 {
    let _c = DropCounter(drops.clone());
    let _l = DropLog("three", log.clone());
    yield_now();
    if std::hint::black_box(true) {
        panic!("deep panic at level {}", 3);
    }
    3
}

#[inline(never)]
fn level_two(drops: &Arc<AtomicUsize>, log: &Arc<Mutex<Vec<&'static str>>>) -> u32 {
    let _c = DropCounter(drops.clone());
    let _l = DropLog("two", log.clone());
    let boxed = Box::new(DropCounter(drops.clone())); // a heap value owned by the frame
    yield_now();
    let r = level_three(drops, log);
    drop(boxed);
    r + 2
}

#[inline(never)]
fn level_one(drops: &Arc<AtomicUsize>, log: &Arc<Mutex<Vec<&'static str>>>) -> u32 {
    let _c = DropCounter(drops.clone());
    let _l = DropLog("one", log.clone());
    level_two(drops, log) + 1
}

/// Drop guards in every frame of a panicking coroutine run, innermost first, before `join`
/// reports the panic.
#[test]
fn destructors_run_on_panic() {
    let rt = big_runtime(2);
    let drops = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (d, l) = (drops.clone(), log.clone());
    let (result, drops_seen_by_joiner) = rt.block_on(move || {
        let h = spawn(move || {
            let _outer = DropCounter(d.clone());
            let _outer_log = DropLog("closure", l.clone());
            level_one(&d, &l)
        });
        let result = h.join();
        (result, drops.load(SeqCst))
    });
    let payload = result.unwrap_err();
    assert_eq!(
        panic_message(&*payload).as_deref(),
        Some("deep panic at level 3")
    );
    // level_three 1 + level_two 2 (local and boxed) + level_one 1 + closure 1.
    assert_eq!(
        drops_seen_by_joiner, 5,
        "all guards ran before join returned"
    );
    assert_eq!(
        *log.lock().unwrap(),
        ["three", "two", "one", "closure"],
        "unwound innermost frame first"
    );
}

/// A panic in the main coroutine resumes on the `block_on` caller, and the runtime stays usable.
#[test]
fn main_coroutine_panic_resumes_on_caller() {
    let rt = big_runtime(1);
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let caught = panic::catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(|| {
            let _guard = DropCounter(d);
            let v = spawn(|| 5).join().unwrap();
            if v == 5 {
                panic!("main coroutine gives up after {v}");
            }
        })
    }));
    let payload = caught.unwrap_err();
    assert_eq!(
        panic_message(&*payload).as_deref(),
        Some("main coroutine gives up after 5")
    );
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(rt.block_on(|| spawn(|| 6).join().unwrap()), 6);
}

/// `pagurus::spawn` on a plain thread panics and says why.
#[test]
fn spawn_outside_runtime_panics() {
    let caught = panic::catch_unwind(|| pagurus::spawn(|| 1));
    let payload = caught.unwrap_err();
    let msg = panic_message(&*payload).expect("a string payload");
    assert!(msg.contains("outside a pagurus runtime"), "message: {msg}");

    // The same from a thread that has a runtime but is not inside it.
    let rt = Runtime::builder().workers(1).build().unwrap();
    let caught = std::thread::spawn(|| panic::catch_unwind(|| pagurus::spawn(|| 1)).is_err())
        .join()
        .unwrap();
    assert!(caught);
    drop(rt);
}

/// `block_on` from inside a spawned coroutine panics (it would block the worker); the panic is
/// the coroutine's and reaches its joiner.
#[test]
fn block_on_inside_coroutine_panics() {
    let rt = Arc::new(big_runtime(1));
    let inner = rt.clone();
    let result = rt.block_on(move || spawn(move || inner.block_on(|| 1)).join());
    let payload = result.unwrap_err();
    let msg = panic_message(&*payload).expect("a string payload");
    assert!(
        msg.contains("Runtime::block_on called from inside a pagurus coroutine"),
        "message: {msg}"
    );
    // Nested inside the main coroutine, too.
    let caught = panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(|| rt.block_on(|| 2))));
    let msg = panic_message(&*caught.unwrap_err()).expect("a string payload");
    assert!(
        msg.contains("from inside a pagurus coroutine"),
        "message: {msg}"
    );
}
