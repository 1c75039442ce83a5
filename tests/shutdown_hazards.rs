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
