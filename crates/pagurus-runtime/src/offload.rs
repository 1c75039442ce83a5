//! Calls that block, run on a pool of threads while the calling coroutine parks (the `Offload`
//! mode of foreign calls).
//!
//! A coroutine that blocks its worker thread (a C call that sleeps, reads a pipe, waits on a
//! lock) stops every other coroutine pinned to that worker. [`run`] hands the call to a thread of
//! a process-wide pool instead and parks the coroutine; the worker runs the others meanwhile, and
//! the pool thread wakes the coroutine when the call returns.
//!
//! The call may borrow from the coroutine's stack (it is scoped, like `std::thread::scope`):
//! the coroutine cannot finish, move its stack or be unwound before the call returns, since it
//! waits without ever raising `Cancelled`, and its context is pinned meanwhile (`Context::pin`:
//! every mover asserts a context has no pin before it moves its stack). A runtime dropped meanwhile gives up on such a
//! coroutine after its cancellation attempts and leaks its stack rather than free memory the
//! call may still use.
//!
//! Pool threads are started on demand (up to [`MAX_THREADS`]), have 8 MiB stacks like ordinary
//! threads, and exit after [`IDLE_TIMEOUT`] without work.
//!
//! # Handing out calls
//!
//! A call waits in the queue only when the pool is at its cap: calls offloaded together may wait
//! for each other (a read, then the write that feeds it), so below the cap every call must get a
//! thread of its own at once. The pool's state is one small mutex-protected record, `queue` and
//! `idle` (threads waiting for work) among it. A submitter takes the lock and:
//!
//! 1. queues the call and wakes one waiting thread if more threads wait than calls are queued:
//!    each waiting thread takes exactly one queued call, so every queued call has its thread.
//!    (A thread that was handed a call but has not woken yet still counts as waiting, and its
//!    call still counts as queued; comparing the two is what the first version got wrong: it
//!    compared `idle` with zero, so a second call queued behind a first that a not-yet-awake
//!    thread was about to run, and blocked with it);
//! 2. otherwise, below the cap, starts a thread with the call as its first job (the thread is
//!    counted before the lock is released, so concurrent submitters see it);
//! 3. at the cap, queues the call: it waits for a busy thread to finish.
//!
//! When a thread is needed and cannot be started (out of memory, thread limits), the call runs
//! **inline**, on the caller's system stack, and a warning is logged: the caller's worker is held
//! for the call's duration (as in `Switch` mode), which can deadlock only a call that waits for
//! another coroutine of the same worker, where waiting for a thread that may never come could
//! deadlock any call.
//!
//! # errno
//!
//! The call runs on another thread, so the `errno` it leaves is that thread's. The pool thread
//! reads it as the call returns and the caller writes it into its own before `run` returns, as
//! cgo does: `errno` after an offloaded C call is what the call set (tested in every mode).

use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::*};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::Duration;

use crate::coroutine::current_context;
use crate::sched::park::Unparker;
use crate::sched::{can_park, park_uncancellable};
use crate::stack::{SYSTEM_STACK_SIZE, ensure, on_system_stack, prepare_system_stack};

/// Most pool threads alive at once; only calls beyond that wait for a free thread.
pub(crate) const MAX_THREADS: usize = 512;
/// How long an idle pool thread waits for work before it exits.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Stack size of a pool thread: as much as an ordinary thread gets.
const THREAD_STACK: usize = SYSTEM_STACK_SIZE;
/// Coroutine stack `run` makes sure of before it pins the caller's stack: what runs there while
/// it is pinned (the switch to the system stack and back, the park) must not need a growth, since
/// a pinned stack cannot move. Small enough that a fresh 4 KiB coroutine has it (tested at every
/// depth in 64-byte steps, debug and release).
const HEADROOM: usize = 1024;

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Pool {
    state: Mutex<State>,
    /// Signalled once per call queued for a waiting thread.
    work: Condvar,
}

/// The pool's bookkeeping, under `Pool::state`.
struct State {
    /// Calls not yet taken by a thread.
    queue: VecDeque<Job>,
    /// Threads waiting for work (including those signalled that have not woken yet).
    idle: usize,
    /// Threads alive, including those being started.
    threads: usize,
    /// Threads started so far, to name them.
    started: usize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            idle: 0,
            threads: 0,
            started: 0,
        }),
        work: Condvar::new(),
    })
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is complete before anything that may panic (jobs run
        // outside the lock and catch their own panics).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `job` to a thread (see the module docs); gives it back when no thread could be
    /// started for it, for the caller to run inline.
    fn submit(&'static self, job: Job) -> Result<(), Job> {
        let mut state = self.lock();
        if state.idle > state.queue.len() {
            state.queue.push_back(job);
            drop(state);
            self.work.notify_one();
            return Ok(());
        }
        if state.threads >= MAX_THREADS {
            state.queue.push_back(job);
            return Ok(());
        }
        state.threads += 1;
        state.started += 1;
        let n = state.started;
        drop(state);
        // The job goes to the new thread through a slot we can take it back from: a closure
        // that fails to start is dropped by `spawn`, job and all.
        let first = Arc::new(Mutex::new(Some(job)));
        let handed = first.clone();
        let started = thread::Builder::new()
            .name(format!("pagurus-offload-{n}"))
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let job = handed.lock().unwrap_or_else(|e| e.into_inner()).take();
                self.work(job)
            });
        match started {
            Ok(_) => Ok(()),
            Err(err) => {
                self.lock().threads -= 1;
                tracing::warn!(
                    %err,
                    "cannot start an offload thread; the call runs inline, holding its worker"
                );
                let job = first.lock().unwrap_or_else(|e| e.into_inner()).take();
                Err(job.expect("a thread that failed to start did not take its job"))
            }
        }
    }

    /// A pool thread: runs `first`, then queued calls, until none comes for `IDLE_TIMEOUT`.
    fn work(&self, first: Option<Job>) {
        // A job catches its own panics (see `run`).
        if let Some(job) = first {
            job();
        }
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queue.pop_front() {
                drop(state);
                job();
                state = self.lock();
                continue;
            }
            state.idle += 1;
            let (next, wait) = self
                .work
                .wait_timeout(state, IDLE_TIMEOUT)
                .unwrap_or_else(|e| e.into_inner());
            state = next;
            state.idle -= 1;
            // A call queued for us is taken even if the wait also timed out.
            if wait.timed_out() && state.queue.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

/// Runs `f` on a thread of the blocking-call pool while the calling coroutine parks, and returns
/// its result (a panic in `f` resumes here) with the `errno` it left. Outside a coroutine that can
/// park (a plain thread, the system stack, a nested raw coroutine) it runs `f` directly; so it
/// does, on the system stack, when no pool thread is free and none can be started.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// let rt = pagurus::Runtime::builder().workers(1).build().unwrap();
/// let (slept, others_ran) = rt.block_on(|| {
///     let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
///     let f = flag.clone();
///     let other = pagurus::spawn(move || f.store(true, std::sync::atomic::Ordering::SeqCst));
///     let mut buf = [0u8; 4]; // borrowed by the offloaded call
///     pagurus::offload::run(|| {
///         std::thread::sleep(std::time::Duration::from_millis(10));
///         buf[0] = 7;
///     });
///     other.join().unwrap();
///     (buf[0], flag.load(std::sync::atomic::Ordering::SeqCst))
/// });
/// assert_eq!((slept, others_ran), (7, true));
/// ```
pub fn run<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    if !can_park() {
        return f();
    }
    // Unparker::current() cannot run on the system stack; the rest of the hand-off can.
    let waiter = Unparker::current();
    // SAFETY: `can_park` checked that we run on the current context's own stack, so it is alive
    // for as long as this frame is.
    let ctx = unsafe { &*current_context() };
    // From the pin on, the stack cannot move: what runs on it until the pin drops (this frame,
    // the switch to the system stack, the park) must fit in what is left. The hand-off itself
    // (allocations, the pool's lock, starting a thread) runs on the system stack, which must
    // therefore exist already (mapping it runs on this stack, and needs more of it).
    prepare_system_stack();
    ensure(HEADROOM);
    // The pool thread gets pointers into this stack: it must not move until the call is over.
    let pinned = ctx.pin();
    let mut out: Option<thread::Result<R>> = None;
    let out_ptr = SendPtr(&raw mut out);
    let done = on_system_stack(move || {
        let done = Arc::new(Done {
            flag: AtomicBool::new(false),
            errno: AtomicI32::new(0),
        });
        let signal = done.clone();
        let job = move || {
            let result = panic::catch_unwind(AssertUnwindSafe(f));
            // Read before anything else can change it: what the call left is what the caller
            // sees.
            // SAFETY: __errno_location returns this thread's errno slot.
            signal
                .errno
                .store(unsafe { *libc::__errno_location() }, Relaxed);
            let out_ptr = out_ptr;
            // SAFETY: the caller's frame owns `out` and does not touch it before `done` is set;
            // it cannot leave that frame earlier (it waits uncancellably), so the slot is alive.
            unsafe { *out_ptr.0 = Some(result) };
            signal.flag.store(true, Release);
            waiter.unpark();
        };
        let job: Box<dyn FnOnce() + Send + '_> = Box::new(job);
        // SAFETY: only the lifetime is erased. Everything the job borrows lives in the caller's
        // frame (or outlives it), and the caller does not return (nor unwind:
        // `park_uncancellable` never raises) before the job has run to completion and set
        // `done`.
        let job: Job = unsafe { std::mem::transmute(job) };
        if let Err(job) = pool().submit(job) {
            job();
        }
        done
    });
    while !done.flag.load(Acquire) {
        park_uncancellable();
    }
    drop(pinned);
    let errno = done.errno.load(Relaxed);
    match out.take() {
        Some(Ok(value)) => {
            // Last, so that nothing between here and the caller changes it.
            // SAFETY: __errno_location returns this thread's errno slot.
            unsafe { *libc::__errno_location() = errno };
            value
        }
        Some(Err(payload)) => panic::resume_unwind(payload),
        None => unreachable!("an offloaded call finished without an output"),
    }
}

/// How the pool thread tells the caller its call is over, and the `errno` it left.
struct Done {
    flag: AtomicBool,
    errno: AtomicI32,
}

/// A raw pointer the job may carry to the pool thread.
struct SendPtr<T>(*mut T);
// SAFETY: the pointee (`Option<thread::Result<R>>` with `R: Send`) is written by exactly one
// thread (the pool thread) and read by the caller only after the Release/Acquire on `done`.
unsafe impl<T: Send> Send for SendPtr<T> {}
