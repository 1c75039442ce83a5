//! Loom models of the task's run-state and join words (`RUSTFLAGS="--cfg loom"`).
//!
//! Each model drives the real [`RunState`]/[`JoinState`] from loom threads playing the parts
//! of the runtime: the home worker (park, resume, finish, shutdown), wakers on other threads,
//! the joiner and the completer. A lost wake-up shows as a deadlock, which loom reports.

use loom::sync::{Condvar, Mutex};
use loom::thread;

use super::{JoinState, RunState};
use crate::loom::{Arc, AtomicBool, AtomicUsize, Ordering::*, Unparker, UnsafeCell};

/// A task as its home worker and its wakers see it: the run state, and the home worker's queue
/// of woken tasks (a count: there is one task), which the worker blocks on while it is idle.
struct Task {
    state: RunState,
    queued: Mutex<usize>,
    queue_cv: Condvar,
}

impl Task {
    fn new() -> Arc<Task> {
        Arc::new(Task {
            state: RunState::new(),
            queued: Mutex::new(0),
            queue_cv: Condvar::new(),
        })
    }

    /// `task::wake`: queue the task on its home worker if the wake moved it out of PARKED.
    fn wake(&self) {
        if self.state.wake() {
            let mut q = self.queued.lock().unwrap();
            *q += 1;
            assert_eq!(*q, 1, "a task is queued twice");
            self.queue_cv.notify_one();
        }
    }

    /// The idle home worker: waits until the task is queued, and takes it off the queue.
    fn wait_queued(&self) {
        let mut q = self.queued.lock().unwrap();
        while *q == 0 {
            q = self.queue_cv.wait(q).unwrap();
        }
        *q -= 1;
    }
}

/// Runs the coroutine of `task` on its home worker until `done()`: each time the condition is
/// false the coroutine suspends to park, and the worker parks it for real (then waits for a waker
/// to queue it) or resumes it at once (a permit was left).
fn run_until(task: &Task, done: impl Fn() -> bool) {
    while !done() {
        if task.state.park() {
            task.wait_queued();
        }
    }
    task.state.finish();
}

/// A coroutine waits for two events, each posted by its own waker thread (a plain store, then a
/// wake). Whatever the interleaving, the coroutine sees both (no wake is lost: a lost one
/// deadlocks the worker), the task is never queued twice, and nothing stays queued at the end.
///
/// This is the model that found the lost wake-up fixed in `RunState::wake`: a second wake that
/// only read `NOTIFIED` (set by the first) and returned, while the worker consumed the bit, left
/// the coroutine re-checking without seeing the second event, and parked for good.
#[test]
fn loom_second_wake_is_not_lost() {
    loom::model(|| {
        let task = Task::new();
        let events = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
        let wakers: Vec<_> = (0..2)
            .map(|i| {
                let (task, events) = (task.clone(), events.clone());
                thread::spawn(move || {
                    events[i].store(true, Release);
                    task.wake();
                })
            })
            .collect();
        run_until(&task, || events.iter().all(|e| e.load(Acquire)));
        for w in wakers {
            w.join().unwrap();
        }
        assert!(task.state.is_done());
        assert_eq!(
            *task.queued.lock().unwrap(),
            0,
            "a finished task is still queued"
        );
    });
}

/// Shutdown cancels a parked task while a waker wakes it: the worker makes it active again and
/// resumes it (it finishes, cancelled), the waker either queued it first or only left a permit.
/// A reference still queued then finds the task done (`abandon` says it was done already), and
/// no wake after the finish queues it.
#[test]
fn loom_cancel_races_wake() {
    loom::model(|| {
        let task = Task::new();
        let waker = {
            let task = task.clone();
            thread::spawn(move || task.wake())
        };
        // The coroutine parks (or, woken already, is resumed and parks again: the model's
        // coroutine has nothing to wait for but the cancellation).
        while !task.state.park() {}
        // Shutdown: reactivate and resume it with CANCEL; it unwinds and finishes.
        task.state.reactivate();
        task.state.finish();
        waker.join().unwrap();
        let queued = *task.queued.lock().unwrap();
        assert!(queued <= 1);
        if queued == 1 {
            assert!(!task.state.abandon(), "the queued reference finds it done");
        }
        task.wake();
        assert_eq!(
            *task.queued.lock().unwrap(),
            queued,
            "a done task is queued"
        );
    });
}

/// A task output whose drops are counted.
struct Output {
    value: usize,
    drops: Arc<AtomicUsize>,
}

impl Drop for Output {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Relaxed);
    }
}

/// The join side of a task cell: its join word and its output slot (`TaskCell::stage`).
struct Cell {
    join: JoinState,
    output: UnsafeCell<Option<Output>>,
}

// SAFETY: the output slot is accessed following the join protocol under test; loom's UnsafeCell
// reports any access that the protocol fails to order.
unsafe impl Sync for Cell {}
// SAFETY: as above.
unsafe impl Send for Cell {}

impl Cell {
    fn new() -> Arc<Cell> {
        Arc::new(Cell {
            join: JoinState::new(),
            output: UnsafeCell::new(None),
        })
    }

    /// `TaskCell::run_body`'s end: write the output, complete, drop it if detached.
    fn complete(&self, drops: &Arc<AtomicUsize>) {
        let output = Output {
            value: 42,
            drops: drops.clone(),
        };
        // SAFETY: the task owns the slot until it completes.
        self.output.with_mut(|slot| unsafe { *slot = Some(output) });
        // SAFETY: written, and called once.
        if unsafe { self.join.complete() } {
            self.take();
        }
    }

    fn take(&self) -> Option<Output> {
        // SAFETY: per the join protocol, whoever calls this is the only one touching the slot.
        self.output.with_mut(|slot| unsafe { (*slot).take() })
    }

    /// `Header::wait_complete` with `park` as loom's thread park (the model joins from a thread).
    fn wait_complete(&self) {
        if self.join.is_complete() {
            return;
        }
        // SAFETY: the one joiner, and the handle is not detached.
        if !unsafe { self.join.register(Unparker::current()) } {
            return;
        }
        while !self.join.is_complete() {
            thread::park();
        }
    }
}

/// A joiner and the completing task race: the joiner gets the output exactly once, written
/// before it looks (loom checks the slot for data races), and is woken (a lost wake deadlocks).
#[test]
fn loom_join_gets_output_once() {
    loom::model(|| {
        let cell = Cell::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let completer = {
            let (cell, drops) = (cell.clone(), drops.clone());
            thread::spawn(move || cell.complete(&drops))
        };
        cell.wait_complete();
        let output = cell.take().expect("the joiner finds the output");
        assert_eq!(output.value, 42);
        drop(output);
        completer.join().unwrap();
        assert_eq!(drops.load(Relaxed), 1);
        assert!(cell.take().is_none());
    });
}

/// The handle is dropped (detached) while the task completes: exactly one of them drops the
/// output, once, and neither touches the slot while the other writes it.
#[test]
fn loom_detach_races_complete() {
    loom::model(|| {
        let cell = Cell::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let completer = {
            let (cell, drops) = (cell.clone(), drops.clone());
            thread::spawn(move || cell.complete(&drops))
        };
        // SAFETY: the one handle, never joined.
        if unsafe { cell.join.detach() } {
            drop(cell.take());
        }
        completer.join().unwrap();
        assert_eq!(drops.load(Relaxed), 1, "the output is dropped exactly once");
    });
}

/// A joiner that registers its waiter and is then cancelled (it unwinds without taking the
/// output) while the task completes: the completer wakes a waiter that is gone, harmlessly, and
/// the output is dropped once, with the cell (`TaskCell::drop`).
#[test]
fn loom_cancelled_joiner() {
    loom::model(|| {
        let cell = Cell::new();
        let drops = Arc::new(AtomicUsize::new(0));
        let completer = {
            let (cell, drops) = (cell.clone(), drops.clone());
            thread::spawn(move || cell.complete(&drops))
        };
        let joiner = {
            let cell = cell.clone();
            thread::spawn(move || {
                if !cell.join.is_complete() {
                    // SAFETY: the one joiner.
                    let _ = unsafe { cell.join.register(Unparker::current()) };
                }
                // Cancelled here: `raise_cancelled` unwinds, the joiner's reference goes.
            })
        };
        joiner.join().unwrap();
        completer.join().unwrap();
        assert_eq!(drops.load(Relaxed), 0, "nobody took the output");
        let cell = Arc::try_unwrap(cell).ok().expect("the last reference");
        drop(cell.take());
        assert_eq!(drops.load(Relaxed), 1);
    });
}
