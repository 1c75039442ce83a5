//! Futures from coroutines: [`block_on`] runs a future to completion, parking the calling
//! coroutine (or blocking a plain thread) between polls.
//!
//! This makes the runtime-independent parts of the async ecosystem (async-channel, `futures`
//! combinators and channels, `tokio::sync`, event-listener, ...) usable from coroutines: their
//! futures only need a [`Waker`], and ours unparks the waiting coroutine.
//!
//! # The waker
//!
//! An `Arc<Signal>`: the caller's `Unparker` and a `woken` flag (`std::task::Wake`). Waking sets
//! the flag and unparks (once per set: a second wake while the flag is set adds nothing). The
//! caller clears the flag, polls, and parks until it finds the flag set; an unpark is a permit,
//! so a wake that lands between the poll and the park is not lost, and one that lands during the
//! poll makes the loop poll again at once.
//!
//! # Where the future lives, and where it is polled
//!
//! Futures are often registered by address: `tokio::sync` and event-listener link a future's
//! waiter node into an intrusive list owned by the semaphore or channel. A future pinned on a
//! coroutine stack would put a pointer into that stack in the heap, and the stack moves (rule 1
//! of `sync`). So the future is **pinned on the heap** (`Box::pin`), and every poll and its
//! drop run on the thread's **system stack** (`stack::on_system_stack`), which never moves and
//! has room for deep polls. The future may still borrow the caller's locals: those pointers
//! point into the coroutine stack, which cannot move while `block_on` runs, because the only
//! code that runs on it meanwhile is this loop and the park, for which `block_on` reserves
//! `HEADROOM` bytes with `stack::ensure` before the future is boxed. (A later stack compaction
//! must leave coroutines parked in `block_on` where they are, or move them only when their
//! future borrows nothing on their stack.)
//!
//! The price: one allocation per `block_on`, a stack switch per poll (a few nanoseconds), and
//! code inside the future cannot park the coroutine (calling `Mutex::lock` or another
//! `block_on` in a poll panics with a message: await instead).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::task::{Context, Poll, Wake, Waker};

use crate::sched::park::{Parked, Unparker, WaitReason, park, raise_cancelled};
use crate::stack::{ensure, on_system_stack};

/// Stack the caller keeps free for the wait loop, so the coroutine stack never moves while the
/// boxed future may borrow from it.
const HEADROOM: usize = 16 * 1024;

/// Runs `future` to completion and returns its output. Between polls the calling coroutine is
/// parked (its worker runs others) until the future's waker is used; on a plain thread, the
/// thread blocks.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// let answer = pagurus::run(|| {
///     let h = pagurus::spawn(|| pagurus::future::block_on(async { 6 * 7 }));
///     h.join().unwrap()
/// });
/// assert_eq!(answer, 42);
/// ```
///
/// # Panics
///
/// When the future panics (the panic resumes here, after the future is dropped). Unwinds with
/// [`Cancelled`](crate::Cancelled), dropping the future, when the coroutine's runtime is dropped
/// while it waits. Code inside the future must not park the coroutine (it runs on the system
/// stack, where parking panics): await, do not block.
pub fn block_on<F: Future>(future: F) -> F::Output {
    ensure(HEADROOM);
    let mut future = HeapFuture(Some(Box::pin(future)));
    let signal = Arc::new(Signal {
        unparker: Unparker::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    loop {
        let pinned = future.0.as_mut().expect("taken only by drop");
        if let Poll::Ready(output) = on_system_stack(|| poll_once(pinned.as_mut(), &mut cx)) {
            return output;
        }
        while !signal.woken.swap(false, Acquire) {
            if park(WaitReason::Future) == Parked::Cancelled {
                drop(future);
                raise_cancelled();
            }
        }
    }
}

/// One poll, in a frame of its own. `on_system_stack` also has a branch that calls its closure
/// directly (on a plain thread); were the poll inlined into that branch, LLVM would give
/// `block_on`'s own frame the poll's stack slots (large futures have large ones), and the
/// coroutine stack would grow to hold them even though the poll runs elsewhere.
#[inline(never)]
fn poll_once<F: Future>(future: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    future.poll(cx)
}

/// Drops the future, in a frame of its own (see [`poll_once`]).
#[inline(never)]
fn drop_future<F: Future>(future: Pin<Box<F>>) {
    drop(future);
}

/// A boxed, pinned future that is dropped on the system stack, like its polls.
struct HeapFuture<F: Future>(Option<Pin<Box<F>>>);

impl<F: Future> Drop for HeapFuture<F> {
    fn drop(&mut self) {
        if let Some(future) = self.0.take() {
            on_system_stack(move || drop_future(future));
        }
    }
}

/// What the waker of a [`block_on`] holds.
struct Signal {
    unparker: Unparker,
    /// Set by wakes, cleared by the waiting loop before each look.
    woken: AtomicBool,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release: what the waker did before waking is visible to the next poll.
        if !self.woken.swap(true, Release) {
            self.unparker.unpark();
        }
    }
}
