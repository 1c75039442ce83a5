//! Locks and coordination that park only the waiting coroutine: [`Mutex`], [`RwLock`],
//! [`Condvar`], [`WaitGroup`], [`Semaphore`].
//!
//! Each primitive works the same from a coroutine (which parks; its worker runs others) and
//! from a plain OS thread (which blocks), and between the two: a thread may wait for a lock a
//! coroutine holds, a coroutine may wait on a wait group threads count down.
//!
//! # How they are built
//!
//! Every primitive is an atomic state word for the fast paths, plus a FIFO of waiters behind a
//! small internal lock (a `std::sync::Mutex`, held for a few list operations, never across a
//! park) for the slow ones. Waiting is the one parking API of the scheduler
//! (`sched::park`: `Unparker::current`, `park`, `park_until`, `Unparker::unpark`), and nothing
//! else: this module sits above `sched` and `sched` knows nothing of it. Each file holds one
//! primitive and opens with its state word, its fairness rule and its no-lost-wake-up argument;
//! `waiter.rs` holds the waiter and the queue they share.
//!
//! # Rules every primitive keeps
//!
//! 1. **Wait queues hold task references, never pointers into a coroutine stack.** Coroutine
//!    stacks move: they grow by copying, and parked stacks will be compacted. So no waiter node
//!    lives on the waiting coroutine's stack. A waiter is an `Arc<Waiter>` on the heap holding
//!    the `Unparker` of `sched::park` (a reference-counted task pointer, or a thread handle)
//!    and a state atomic; the queue owns `Arc`s in a slab-backed list, and whoever dequeues a
//!    waiter keeps its own `Arc` while it wakes it. What a waker hands over
//!    (a lock, read access, a permit, a notification) is a state change of the waiter or of the
//!    primitive's word, never a write into the waiter's frame.
//! 2. **Fast paths do not touch the queue.** An uncontended lock and unlock is one CAS and one
//!    atomic add (`Mutex`, `RwLock` writers), or one CAS each way (`RwLock` readers, permits);
//!    the queue lock is taken only when the state word says someone waits.
//! 3. **No starvation.** The `Mutex` hands the lock directly to a waiter that has waited a
//!    millisecond (Go's starvation mode); `RwLock` and `Semaphore` serve their queues in order
//!    by hand-off, and newcomers do not overtake queued waiters.
//! 4. **Parks may return spuriously**, and an unpark that comes before the park is a permit
//!    that is not lost: every wait loops on its waiter's state (`Waiter::wait`), and the state
//!    is published under the queue lock before the unpark.
//! 5. **Cancellation loses nothing.** When `park` reports `Cancelled` (the runtime is being
//!    dropped) the waiter takes the queue lock and either removes itself (it was still
//!    queued), or learns what it was handed meanwhile and passes it on: a granted lock or read
//!    access is released, a granted permit returned, a notification or a "your turn" wake-up
//!    given to the next waiter. Then it unwinds with `raise_cancelled`. A wait that has simply
//!    completed (a wait group that reached zero) returns normally and re-arms the cancellation
//!    with `defer_cancel`, so the coroutine unwinds at its next park. A `Condvar` wait that
//!    times out removes itself the same way.
//! 6. No poisoning: a panic while a guard is held releases the lock during the unwind (see
//!    [`Mutex`]).
//!
//! Blocking primitives of std (`std::sync::Mutex` held across a wait, `thread::sleep`) still
//! block the whole worker; use these instead inside coroutines.

mod condvar;
mod mutex;
mod rwlock;
mod semaphore;
mod wait_group;
mod waiter;

pub use condvar::Condvar;
pub use mutex::{Mutex, MutexGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{Semaphore, SemaphorePermit};
pub use wait_group::WaitGroup;
