//! `Runtime::block_on` and `run`: borrowing closures, several callers, work outliving a call.
//!
//! Runtimes whose main coroutines spawn through iterator chains use 16 KiB stacks: in
//! unoptimised builds the spawn path can overflow the default 4 KiB when it wakes a sleeping
//! worker (see `tests/spawn_wakes_worker_default_stack.rs`).

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, mpsc};
use std::thread;

use pagurus::{JoinHandle, Runtime, spawn, yield_now};

/// The main coroutine's closure is neither `Send` nor `'static`: it borrows and mutates the
/// caller's locals, including an `Rc<RefCell<..>>`, and the caller sees the changes.
#[test]
fn block_on_borrows_caller_locals() {
    let rt = Runtime::builder()
        .workers(2)
        .initial_stack_size(16 * 1024)
        .build()
        .unwrap();
    let mut squares: Vec<u64> = Vec::new();
    let shared = Rc::new(RefCell::new(String::from("start")));
    let mut counter = 0u32;
    let borrowed = &mut counter;

    let returned = rt.block_on(|| {
        // Results computed on workers, stored through the borrow.
        let handles: Vec<JoinHandle<u64>> = (1..=10u64).map(|i| spawn(move || i * i)).collect();
        for h in handles {
            squares.push(h.join().unwrap());
        }
        shared.borrow_mut().push_str("+main");
        yield_now();
        shared.borrow_mut().push_str("+again");
        *borrowed += 5;
        Rc::strong_count(&shared)
    });

    assert_eq!(squares, (1..=10u64).map(|i| i * i).collect::<Vec<_>>());
    assert_eq!(*shared.borrow(), "start+main+again");
    assert_eq!(counter, 5);
    assert_eq!(returned, 1);

    // A second call borrows the same locals again.
    let sum: u64 = rt.block_on(|| squares.iter().sum());
    assert_eq!(sum, 385);
    rt.block_on(|| shared.borrow_mut().clear());
    assert!(shared.borrow().is_empty());
}

/// Eight plain threads share one runtime and call `block_on` on it at the same time, repeatedly.
#[test]
fn many_threads_call_block_on_concurrently() {
    const THREADS: u64 = 8;
    const CALLS: u64 = 20;
    const CHILDREN: u64 = 50;
    let rt = Runtime::builder()
        .workers(2)
        .initial_stack_size(16 * 1024)
        .build()
        .unwrap();
    let rt_ref = &rt;
    let totals: Vec<(u64, Vec<u64>)> = thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                scope.spawn(move || {
                    let per_call: Vec<u64> = (0..CALLS)
                        .map(|c| {
                            rt_ref.block_on(|| {
                                let handles: Vec<JoinHandle<u64>> = (0..CHILDREN)
                                    .map(|k| {
                                        spawn(move || {
                                            if k % 2 == 0 {
                                                yield_now();
                                            }
                                            t * 1_000_000 + c * 1000 + k
                                        })
                                    })
                                    .collect();
                                handles.into_iter().map(|h| h.join().unwrap()).sum()
                            })
                        })
                        .collect();
                    (t, per_call)
                })
            })
            .collect();
        threads.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (t, per_call) in totals {
        let expected: Vec<u64> = (0..CALLS)
            .map(|c| (0..CHILDREN).map(|k| t * 1_000_000 + c * 1000 + k).sum())
            .collect();
        assert_eq!(per_call, expected, "thread {t}");
    }
}

/// Coroutines spawned by one `block_on` keep running after it returns; a later `block_on` (or a
/// plain thread) joins them.
#[test]
fn spawned_coroutines_outlive_block_on() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let go = Arc::new(AtomicBool::new(false));
    let ran_after = Arc::new(AtomicUsize::new(0));
    let (g, r) = (go.clone(), ran_after.clone());
    let (waiting, quick) = rt.block_on(move || {
        let waiting = spawn(move || {
            // Only gets past this once the first block_on has returned.
            while !g.load(SeqCst) {
                yield_now();
            }
            r.fetch_add(1, SeqCst);
            "finished later"
        });
        let quick = spawn(|| 3 * 14);
        (waiting, quick)
    });
    assert_eq!(ran_after.load(SeqCst), 0);
    go.store(true, SeqCst);
    // The second call joins a coroutine that finished (or finishes) after the first call ended.
    let msg = rt.block_on(|| waiting.join().unwrap());
    assert_eq!(msg, "finished later");
    assert_eq!(ran_after.load(SeqCst), 1);
    // A plain thread joins the other.
    assert_eq!(quick.join().unwrap(), 42);

    // A detached coroutine (handle dropped) keeps running too and reports through a channel.
    let (tx, rx) = mpsc::channel();
    rt.block_on(|| {
        drop(spawn(move || {
            for _ in 0..10 {
                yield_now();
            }
            tx.send(17u8).unwrap();
        }));
    });
    assert_eq!(rx.recv().unwrap(), 17);
}

/// The main coroutine may yield while it waits for workers, and `run` returns the closure's
/// value after shutting its runtime down.
#[test]
fn main_coroutine_yields_and_run_returns() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let yields = rt.block_on(|| {
        let f = flag.clone();
        let h = spawn(move || f.store(true, SeqCst));
        let mut yields = 0u32;
        while !flag.load(SeqCst) {
            yield_now();
            yields = yields.saturating_add(1);
        }
        h.join().unwrap();
        yields
    });
    assert!(flag.load(SeqCst));
    let _ = yields; // how many turns it took depends on the OS scheduler

    let answer = pagurus::run(|| {
        let handles: Vec<JoinHandle<u64>> = (0..100u64).map(|i| spawn(move || i)).collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(answer, 4950);
}
