//! Dropping a runtime: cancellation of suspended and unstarted coroutines.
//!
//! A coroutine spawned just before the drop may not have started yet (then its closure is
//! dropped instead of its stack unwound), so tests that count guards living on coroutine stacks
//! first wait until each coroutine reports that it is running.

mod common;

use std::panic;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};

use common::{BIG_STACK, DropCounter, DropLog, spin_until, wait_for};
use pagurus::raw::Coroutine;
use pagurus::{Cancelled, JoinHandle, Runtime, spawn, yield_now};

/// Makes the dynamic linker bind the unwinder's symbols now, on this thread's large stack.
///
fn cancelled<T: std::fmt::Debug>(result: std::thread::Result<T>) -> bool {
    match result {
        Ok(v) => panic!("expected Cancelled, got Ok({v:?})"),
        Err(payload) => payload.downcast_ref::<Cancelled>().is_some(),
    }
}

/// What the test coroutines share: guard drops, how many are running, a flag never set.
#[derive(Clone, Default)]
struct Ctl {
    drops: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
    never: Arc<AtomicBool>,
}

impl Ctl {
    fn guard(&self) -> DropCounter {
        DropCounter(self.drops.clone())
    }
    fn drops(&self) -> usize {
        self.drops.load(SeqCst)
    }
    fn wait_started(&self, n: usize) {
        wait_for(&self.started, n);
    }
}

/// `depth + 1` frames, each with a guard; the innermost reports it runs, then yields forever.
#[inline(never)]
fn nested_loop(ctl: &Ctl, depth: u32) -> u32 {
    let _guard = ctl.guard();
    if depth == 0 {
        ctl.started.fetch_add(1, SeqCst);
        spin_until(&ctl.never);
        0
    } else {
        nested_loop(ctl, depth - 1) + 1
    }
}

/// Yielding and parked coroutines are unwound (their guards run, innermost first) and their
/// joiners get `Cancelled`.
#[test]
fn dropping_runtime_cancels_suspended_coroutines() {
    let rt = Runtime::builder()
        .workers(2)
        .initial_stack_size(BIG_STACK)
        .build()
        .unwrap();
    let ctl = Ctl::default();
    let log = Arc::new(Mutex::new(Vec::new()));

    let handles: Vec<JoinHandle<u32>> = rt.block_on(|| {
        let mut handles = Vec::new();
        // 20 yielders, 3 guards each.
        for _ in 0..20 {
            let c = ctl.clone();
            handles.push(spawn(move || nested_loop(&c, 2)));
        }
        // 20 coroutines parked joining a yielder (1 guard each), with 1 guard of their own.
        for _ in 0..20 {
            let c = ctl.clone();
            let target = spawn(move || nested_loop(&c, 0));
            let c = ctl.clone();
            handles.push(spawn(move || {
                let _g = c.guard();
                c.started.fetch_add(1, SeqCst);
                let _ = target.join();
                // Reached only if the target's cancellation comes first; wait for our own.
                spin_until(&c.never);
                7
            }));
        }
        // One with ordered guards.
        let (l, c) = (log.clone(), ctl.clone());
        handles.push(spawn(move || {
            let _outer = DropLog("outer", l.clone());
            let _inner = DropLog("inner", l);
            c.started.fetch_add(1, SeqCst);
            spin_until(&c.never);
            9
        }));
        handles
    });
    ctl.wait_started(20 + 20 + 20 + 1);
    assert_eq!(ctl.drops(), 0);
    drop(rt);
    assert_eq!(ctl.drops(), 20 * 3 + 20 * 2);
    assert_eq!(*log.lock().unwrap(), ["inner", "outer"]);
    assert_eq!(handles.len(), 41);
    let cancelled_count = handles
        .into_iter()
        .map(|h| cancelled(h.join()))
        .filter(|&c| c)
        .count();
    assert_eq!(cancelled_count, 41);
}

/// Coroutines that never started are dropped without running: their closures (and what they
/// captured) are dropped, and their joiners get `Cancelled`.
#[test]
fn dropping_runtime_drops_unstarted_closures() {
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(64 * 1024)
        .build()
        .unwrap();
    let ctl = Ctl::default();
    let ran = Arc::new(AtomicUsize::new(0));
    let (block_tx, block_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (blocker, queued) = rt.block_on(|| {
        // Occupies the only worker until released, so the coroutines below stay queued.
        let blocker = spawn(move || {
            started_tx.send(()).unwrap();
            block_rx.recv().unwrap();
            "released"
        });
        started_rx.recv().unwrap();
        let queued: Vec<JoinHandle<u32>> = (0..5)
            .map(|_| {
                let guard = ctl.guard();
                let ran = ran.clone();
                spawn(move || {
                    let _guard = guard;
                    ran.fetch_add(1, SeqCst);
                    1
                })
            })
            .collect();
        (blocker, queued)
    });
    // Releasing the blocker lets the worker run the queued ones, unless it sees the shutdown
    // first: either way each closure is dropped exactly once, and any that ran returned 1.
    block_tx.send(()).unwrap();
    drop(rt);
    assert_eq!(blocker.join().unwrap(), "released");
    assert_eq!(ctl.drops(), 5);
    let mut ok = 0;
    let mut cancelled_count = 0;
    for h in queued {
        match h.join() {
            Ok(v) => {
                assert_eq!(v, 1);
                ok += 1;
            }
            Err(p) => {
                assert!(p.downcast_ref::<Cancelled>().is_some());
                cancelled_count += 1;
            }
        }
    }
    assert_eq!(ok, ran.load(SeqCst));
    assert_eq!(ok + cancelled_count, 5);
}

/// `run` shuts its runtime down on return, cancelling detached and kept coroutines alike.
#[test]
fn run_cancels_leftover_coroutines() {
    let ctl = Ctl::default();
    let kept = pagurus::run(|| {
        let c = ctl.clone();
        drop(spawn(move || nested_loop(&c, 0)));
        let c = ctl.clone();
        let kept = spawn(move || nested_loop(&c, 1));
        // Both are running (suspended in their loops) before run returns.
        while ctl.started.load(SeqCst) < 2 {
            yield_now();
        }
        kept
    });
    assert_eq!(ctl.drops(), 3);
    assert!(kept.is_finished());
    assert!(cancelled(kept.join()));
}

/// A runtime dropped by one of its own coroutines: the coroutines still queued in the injector
/// never start (their closures are dropped, their joiners get `Cancelled`), and the worker cancels
/// its suspended coroutines once it gets back to its loop.
#[test]
fn runtime_dropped_by_its_own_coroutine() {
    const UNSTARTED: usize = 25;
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(256 * 1024)
        .build()
        .unwrap();
    let slot: Arc<Mutex<Option<Runtime>>> = Arc::new(Mutex::new(None));
    let ctl = Ctl::default();
    let ran = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();

    let (yielder, dropper, unstarted) = rt.block_on(|| {
        let c = ctl.clone();
        let yielder = spawn(move || nested_loop(&c, 1));
        ctl.wait_started(1);
        let (s, c) = (slot.clone(), ctl.clone());
        let dropper = spawn(move || {
            started_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            let rt = s.lock().unwrap().take().expect("the runtime");
            drop(rt);
            // The worker is still running this coroutine: the yielder is not cancelled yet.
            c.drops()
        });
        // The only worker is now blocked inside `dropper`: nothing spawned from here can start.
        started_rx.recv().unwrap();
        let unstarted: Vec<JoinHandle<u32>> = (0..UNSTARTED)
            .map(|_| {
                let guard = ctl.guard();
                let ran = ran.clone();
                spawn(move || {
                    let _guard = guard;
                    ran.fetch_add(1, SeqCst);
                    1
                })
            })
            .collect();
        (yielder, dropper, unstarted)
    });
    *slot.lock().unwrap() = Some(rt);
    go_tx.send(()).unwrap();

    // Dropped inside `Runtime::drop`, before `dropper` returned.
    assert_eq!(dropper.join().unwrap(), UNSTARTED);
    assert!(unstarted.iter().all(JoinHandle::is_finished));
    assert!(unstarted.into_iter().all(|h| cancelled(h.join())));
    assert_eq!(
        ran.load(SeqCst),
        0,
        "a queued coroutine started after its runtime dropped"
    );
    // The worker cancels the yielder when it gets back to its loop.
    assert!(cancelled(yielder.join()));
    assert_eq!(ctl.drops(), UNSTARTED + 2);
}

/// A coroutine that catches its cancellation and keeps suspending does not hang the drop: the
/// runtime gives up on it after a bounded number of attempts, and its joiner gets `Cancelled`.
#[test]
fn stubborn_coroutine_does_not_hang_drop() {
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(BIG_STACK)
        .build()
        .unwrap();
    let caught = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (c, s) = (caught.clone(), started.clone());
    let handle = rt.block_on(|| {
        spawn(move || -> u32 {
            s.fetch_add(1, SeqCst);
            loop {
                if panic::catch_unwind(yield_now).is_err() {
                    c.fetch_add(1, SeqCst);
                }
            }
        })
    });
    wait_for(&started, 1);
    drop(rt);
    assert!(
        caught.load(SeqCst) >= 1,
        "it was asked to unwind at least once"
    );
    assert!(cancelled(handle.join()));
}

/// Cancelling a scheduled coroutine unwinds a raw coroutine suspended on its stack, and the
/// guards on the raw coroutine's own stack run too.
#[test]
fn cancellation_unwinds_nested_raw_coroutine() {
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(BIG_STACK)
        .build()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let started = Arc::new(AtomicUsize::new(0));
    let (l, s) = (log.clone(), started.clone());
    let handle = rt.block_on(|| {
        spawn(move || -> u32 {
            let _outer = DropLog("scheduled", l.clone());
            let l2 = l.clone();
            let mut co = Coroutine::new(256 * 1024, move |s| {
                let _g = DropLog("raw", l2);
                loop {
                    s.suspend();
                }
            })
            .unwrap();
            assert!(co.resume());
            s.fetch_add(1, SeqCst);
            loop {
                yield_now();
            }
        })
    });
    wait_for(&started, 1);
    drop(rt);
    assert!(cancelled(handle.join()));
    assert_eq!(*log.lock().unwrap(), ["raw", "scheduled"]);
}

#[test]
fn cancelled_payload_describes_itself() {
    let msg = Cancelled.to_string();
    assert!(msg.contains("cancelled"), "{msg}");
    assert_eq!(format!("{Cancelled:?}"), "Cancelled");
    // The payload is an ordinary value that can be matched on after `join`.
    let rt = Runtime::builder().workers(1).build().unwrap();
    let h = rt.block_on(|| {
        spawn(|| {
            loop {
                yield_now()
            }
        })
    });
    drop(rt);
    let payload = h.join().unwrap_err();
    assert_eq!(
        payload.downcast::<Cancelled>().map(|b| *b).ok(),
        Some(Cancelled)
    );
}
