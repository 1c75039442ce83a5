//! Regression tests for hazards found in review: destructors that panic or suspend where the
//! scheduler runs them, and spawns made while a runtime shuts down.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use pagurus::{Cancelled, JoinHandle, Runtime, spawn, yield_now};

fn is_cancelled<T>(r: std::thread::Result<T>) -> bool {
    matches!(r, Err(p) if p.downcast_ref::<Cancelled>().is_some())
}

struct Bomb;
impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("Bomb dropped");
    }
}

/// The last reference to a detached coroutine's output is dropped by its worker; a panicking
/// destructor there must not take the worker down (everything pinned to it would hang).
#[test]
fn panicking_output_destructor_does_not_kill_the_worker() {
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(64 * 1024)
        .build()
        .unwrap();
    let after = rt.block_on(|| {
        spawn(|| {
            // On one worker, the child cannot run before its handle is dropped here, so the
            // worker drops the output.
            drop(spawn(|| Bomb));
            yield_now();
            spawn(|| 42).join().unwrap()
        })
        .join()
        .unwrap()
    });
    assert_eq!(after, 42);
    assert_eq!(
        rt.block_on(|| spawn(|| 7).join().unwrap()),
        7,
        "the worker still runs coroutines"
    );
}

struct JoinOnDrop(Option<JoinHandle<()>>, Arc<AtomicUsize>);
impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let r = h.join(); // parks while the cancellation unwinds
            assert!(is_cancelled(r), "the child was cancelled too");
            self.1.fetch_add(1, SeqCst);
        }
    }
}

/// A destructor that waits for a child while its coroutine is being cancelled must not abort
/// the process ("panic in a destructor during cleanup"): the second cancellation is not raised.
#[test]
fn destructor_that_parks_during_cancellation() {
    let rt = Runtime::builder()
        .workers(2)
        .initial_stack_size(64 * 1024)
        .build()
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let joined = Arc::new(AtomicUsize::new(0));
    let (s, j) = (started.clone(), joined.clone());
    let parent = rt.block_on(move || {
        spawn(move || {
            let child = spawn(|| {
                loop {
                    yield_now()
                }
            });
            let _guard = JoinOnDrop(Some(child), j);
            s.fetch_add(1, SeqCst);
            loop {
                yield_now()
            }
        })
    });
    while started.load(SeqCst) == 0 {
        std::thread::yield_now();
    }
    drop(rt);
    assert!(is_cancelled(parent.join()));
    assert_eq!(joined.load(SeqCst), 1, "the guard's join finished");
}

struct SpawnOnDrop(Arc<Mutex<Option<JoinHandle<u32>>>>);
impl Drop for SpawnOnDrop {
    fn drop(&mut self) {
        *self.0.lock().unwrap() = Some(spawn(|| 7));
    }
}

/// Shutdown drops the closures of coroutines that never started; a closure whose capture spawns
/// in its destructor must not leave a coroutine behind that nobody will ever run or cancel.
#[test]
fn spawn_from_a_destructor_during_shutdown_is_not_lost() {
    let rt = Runtime::builder()
        .workers(1)
        .initial_stack_size(64 * 1024)
        .build()
        .unwrap();
    let slot = Arc::new(Mutex::new(None));
    let go = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));
    let (s, g, r) = (slot.clone(), go.clone(), ready.clone());
    rt.block_on(move || {
        drop(spawn(move || {
            let k = SpawnOnDrop(s);
            drop(spawn(move || drop(k))); // queued in the deque: never runs
            drop(spawn(|| ())); // takes the lifo slot
            r.store(true, SeqCst);
            while !g.load(SeqCst) {
                std::hint::spin_loop();
            }
            loop {
                yield_now()
            }
        }));
    });
    while !ready.load(SeqCst) {
        std::thread::yield_now();
    }
    go.store(true, SeqCst);
    drop(rt);
    let late = slot
        .lock()
        .unwrap()
        .take()
        .expect("the destructor ran and spawned");
    assert!(
        late.is_finished(),
        "the late coroutine was run or cancelled"
    );
    let r = late.join();
    assert!(matches!(r, Ok(7)) || is_cancelled(r));
}

/// Reliability defect 8: an unstarted coroutine whose closure panics while shutdown drops it
/// still completes: its `join` returns `Err(Cancelled)` instead of waiting for ever.
#[test]
fn closure_panicking_in_drop_at_shutdown_still_completes() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("closure capture panics when dropped");
        }
    }
    let rt = Runtime::builder().workers(1).build().unwrap();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let blocking = Arc::new(AtomicBool::new(false));
    let handle = rt.block_on(|| {
        let capture = PanicOnDrop;
        // The only worker is blocked (its thread, not just a coroutine) until after the runtime's
        // drop has begun, so the coroutine spawned next never starts.
        let b = blocking.clone();
        let blocker = pagurus::spawn(move || {
            b.store(true, SeqCst);
            let _ = release_rx.recv();
        });
        drop(blocker);
        while !blocking.load(SeqCst) {
            std::thread::yield_now();
        }
        pagurus::spawn(move || {
            let _c = &capture;
        })
    });
    // Released only once the drop below is under way (it sends the shutdown first).
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let _ = release_tx.send(());
    });
    drop(rt);
    releaser.join().unwrap();
    // Joined on another thread, so a hang fails the test instead of blocking it.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(is_cancelled(handle.join())).unwrap());
    let cancelled = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("join of a coroutine whose closure panicked in drop never returned");
    assert!(cancelled);
}

/// Reliability defect 9: the result of a detached coroutine is dropped inside that coroutine,
/// so a destructor in it may join other coroutines (it used to run on the bare worker stack and
/// panic with a false message about nested raw coroutines).
#[test]
fn detached_result_whose_drop_joins() {
    struct JoinsOnDrop(Option<pagurus::JoinHandle<u32>>, Arc<AtomicUsize>);
    impl Drop for JoinsOnDrop {
        fn drop(&mut self) {
            let v = self.0.take().unwrap().join().unwrap();
            self.1.fetch_add(v as usize, SeqCst);
        }
    }
    let total = Arc::new(AtomicUsize::new(0));
    let rt = Runtime::builder().workers(2).build().unwrap();
    rt.block_on(|| {
        for i in 0..100u32 {
            let t = total.clone();
            let detached = pagurus::spawn(move || {
                let inner = pagurus::spawn(move || {
                    pagurus::yield_now();
                    i
                });
                JoinsOnDrop(Some(inner), t)
            });
            drop(detached);
        }
        let start = std::time::Instant::now();
        while total.load(SeqCst) < (0..100).sum::<usize>()
            && start.elapsed() < std::time::Duration::from_secs(30)
        {
            pagurus::time::sleep(std::time::Duration::from_millis(1));
        }
    });
    drop(rt);
    assert_eq!(total.load(SeqCst), (0..100).sum::<usize>());
}

/// Reliability defect 15: a worker's thread-local whose destructor joins a coroutine still in
/// the global injector does not deadlock the runtime's drop.
#[test]
fn worker_thread_local_joining_an_injected_task_at_drop() {
    use std::cell::RefCell;
    struct JoinOnExit(RefCell<Option<pagurus::JoinHandle<()>>>);
    impl Drop for JoinOnExit {
        fn drop(&mut self) {
            if let Some(h) = self.0.borrow_mut().take() {
                let _ = h.join();
            }
        }
    }
    thread_local! {
        static PENDING: JoinOnExit = const { JoinOnExit(RefCell::new(None)) };
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = Runtime::builder().workers(1).build().unwrap();
        let (hand_tx, hand_rx) = std::sync::mpsc::channel::<pagurus::JoinHandle<()>>();
        let hand_rx = std::sync::Mutex::new(hand_rx);
        let (stored_tx, stored_rx) = std::sync::mpsc::channel::<()>();
        rt.block_on(|| {
            // The only worker: blocks its thread until it is handed the handle of an injected,
            // not yet started task, keeps it in a thread-local, and lingers (still blocking the
            // thread) so the runtime's drop starts before the worker looks at the injector.
            let stopper = pagurus::spawn(move || {
                let h = hand_rx.lock().unwrap().recv().unwrap();
                PENDING.with(|p| *p.0.borrow_mut() = Some(h));
                stored_tx.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(200));
            });
            drop(stopper);
        });
        let injected = rt.block_on(|| pagurus::spawn(|| ()));
        hand_tx.send(injected).unwrap();
        stored_rx.recv().unwrap();
        drop(rt);
        tx.send(()).unwrap();
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("Runtime::drop deadlocked on a worker thread-local that joins an injected task");
}
