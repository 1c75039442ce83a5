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

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::coroutine::current_context;
use crate::sched::park::Unparker;
use crate::sched::{can_park, park_uncancellable};
use crate::stack::{SYSTEM_STACK_SIZE, on_system_stack};

/// Most pool threads alive at once; calls beyond that wait for a free thread.
pub(crate) const MAX_THREADS: usize = 512;
/// How long an idle pool thread waits for work before it exits.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Stack size of a pool thread: as much as an ordinary thread gets.
const THREAD_STACK: usize = SYSTEM_STACK_SIZE;
/// Stack headroom secured before an offloaded job takes pointers into the caller's frame:
/// enough for the submission's switch and the park.
const OFFLOAD_HEADROOM: usize = 1 << 10;

type Job = Box<dyn FnOnce() + Send + 'static>;

struct Pool {
    jobs: Sender<Job>,
    queue: Receiver<Job>,
    idle: AtomicUsize,
    threads: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (jobs, queue) = crossbeam_channel::unbounded();
        Pool {
            jobs,
            queue,
            idle: AtomicUsize::new(0),
            threads: AtomicUsize::new(0),
        }
    })
}

impl Pool {
    fn submit(&'static self, job: Job) {
        if self.idle.load(SeqCst) == 0 && self.threads.fetch_add(1, SeqCst) < MAX_THREADS {
            let n = self.threads.load(Relaxed);
            let started = thread::Builder::new()
                .name(format!("pagurus-offload-{n}"))
                .stack_size(THREAD_STACK)
                .spawn(move || self.work());
            if let Err(err) = started {
                self.threads.fetch_sub(1, SeqCst);
                tracing::warn!(%err, "cannot start an offload thread; the call waits for a busy one");
            }
        } else if self.threads.load(SeqCst) > MAX_THREADS {
            self.threads.fetch_sub(1, SeqCst);
        }
        // The pool owns both channel ends, so the send cannot fail.
        let _ = self.jobs.send(job);
    }

    fn work(&self) {
        loop {
            self.idle.fetch_add(1, SeqCst);
            let job = self.queue.recv_timeout(IDLE_TIMEOUT);
            self.idle.fetch_sub(1, SeqCst);
            match job {
                // A job catches its own panics (see `run`).
                Ok(job) => job(),
                Err(_) => break,
            }
        }
        self.threads.fetch_sub(1, SeqCst);
    }
}

/// Runs `f` on a thread of the blocking-call pool while the calling coroutine parks, and returns
/// its result (a panic in `f` resumes here). Outside a coroutine that can park (a plain thread,
/// the system stack, a nested raw coroutine) it runs `f` directly.
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
    // The job below holds pointers into this frame (`out`, and whatever `f` borrows) on the
    // heap, where a stack move cannot fix them: the stack must not move from the moment the job
    // is submitted until it is done. Growth faults could come from mapping this thread's system
    // stack on first use (deep, in memmap2) and from the suspension: map the system stack now,
    // before any pointer is taken, and secure the few hundred bytes the suspension needs.
    on_system_stack(|| ());
    crate::stack::ensure(OFFLOAD_HEADROOM);
    let waiter = Unparker::current();
    // SAFETY: `can_park` checked that we run on the current context's own stack, so it is alive
    // for as long as this frame is.
    let ctx = unsafe { &*current_context() };
    // The pool thread gets pointers into this stack: it must not move until the call is over.
    let pinned = ctx.pin();
    let done = Arc::new(AtomicBool::new(false));
    let mut out: Option<thread::Result<R>> = None;
    let out_ptr = SendPtr(&raw mut out);
    let signal = done.clone();
    let job = move || {
        let result = panic::catch_unwind(AssertUnwindSafe(f));
        let out_ptr = out_ptr;
        // SAFETY: the caller's frame owns `out` and does not touch it before `done` is set; it
        // cannot leave that frame earlier (it waits uncancellably), so the slot is alive.
        unsafe { *out_ptr.0 = Some(result) };
        signal.store(true, Release);
        waiter.unpark();
    };
    let job: Box<dyn FnOnce() + Send + '_> = Box::new(job);
    // SAFETY: only the lifetime is erased. Everything the job borrows lives in the caller's frame
    // (or outlives it), and the caller does not return (nor unwind: `park_uncancellable` never
    // raises) before the job has run to completion and set `done`.
    let job: Job = unsafe { std::mem::transmute(job) };
    on_system_stack(|| pool().submit(job));
    while !done.load(Acquire) {
        park_uncancellable();
    }
    drop(pinned);
    match out.take() {
        Some(Ok(value)) => value,
        Some(Err(payload)) => panic::resume_unwind(payload),
        None => unreachable!("an offloaded call finished without an output"),
    }
}

/// A raw pointer the job may carry to the pool thread.
struct SendPtr<T>(*mut T);
// SAFETY: the pointee (`Option<thread::Result<R>>` with `R: Send`) is written by exactly one
// thread (the pool thread) and read by the caller only after the Release/Acquire on `done`.
unsafe impl<T: Send> Send for SendPtr<T> {}
