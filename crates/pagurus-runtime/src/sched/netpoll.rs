//! The netpoller: readiness of file descriptors, delivered to parked coroutines.
//!
//! This file knows nothing of sockets. It offers [`IoSource`], a non-blocking file descriptor
//! plus the machinery to wait for it to become readable or writable: [`IoSource::io`] runs an
//! operation, and when the operation says `WouldBlock` the calling coroutine parks until the
//! descriptor's readiness changes (or a deadline passes). `pagurus::net` builds sockets on it.
//!
//! # Registration
//!
//! ```text
//!   IoSource { fd, registration: OnceLock<Registration> }
//!                                  |
//!   Registration { driver: Arc<IoDriver>, io: Arc<ScheduledIo>, token }
//!                         |                      ^
//!   IoDriver (one per worker poller)             |  one strong reference each
//!     registry: mio::Registry (epoll fd)         |
//!     table: Mutex<Slab<Arc<ScheduledIo>>> ------+
//!
//!   ScheduledIo { readiness: AtomicUsize (flags | tick), waiters: Mutex<readers, writers> }
//! ```
//!
//! A descriptor is registered lazily, the first time an operation on it would block in a
//! coroutine, with the poller of the worker that coroutine runs on (edge-triggered, readable and
//! writable at once). The coroutine that first waits is the likeliest to wait again, and it is
//! pinned to that worker, so its wake-ups stay on one thread. A coroutine on a `block_on` thread
//! registers with one of the runtime's workers instead (chosen round-robin): the poller of a
//! `block_on` thread dies when `block_on` returns, while the socket may live on.
//!
//! The poller token is a slab key plus a generation. When a batch of events comes back from
//! `epoll_wait`, the worker looks each token up in its table under the table's lock and drops
//! events whose key is vacant or whose generation does not match: those belong to a registration
//! that was removed after the kernel queued the event (a socket dropped on another thread while
//! this worker was polling). Memory is never reached through a token, only through the table's
//! `Arc`, so an event can never touch a freed registration. Dropping an `IoSource` deregisters the
//! descriptor from epoll first, removes the table entry second, and closes the descriptor last.
//!
//! # Waiters
//!
//! Each `ScheduledIo` holds the waiting readers and the waiting writers as [`Unparker`]s: task
//! references on the heap, never pointers into a coroutine stack (stacks move). One reader and
//! one writer on the same socket are the normal case (an echo with a writer coroutine), but any
//! number may wait; all waiters of a direction are woken by its readiness and race for it. A
//! waiter may be on any worker: the unpark queues it on its own home worker (`schedule_woken`),
//! so the worker that polls the descriptor need not be the one that runs the coroutine.
//!
//! # No lost wake-ups
//!
//! `readiness` holds the readiness flags in its low bits and a tick in the rest; every event
//! that reaches the registration ORs its flags in and bumps the tick. An operation:
//!
//! 1. reads `readiness` (the snapshot),
//! 2. tries the system call (optimistically: most calls on a busy socket succeed at once),
//! 3. on `WouldBlock`, clears its direction's flags *only if the tick is still the snapshot's*.
//!    If an event arrived since step 1, the clear fails and the operation retries at once,
//! 4. publishes its unparker in the waiter list (under the waiters' lock), re-reads the flags,
//!    and parks only if its direction is still not ready.
//!
//! The dispatcher ORs the flags in first and takes the waiter list (under the same lock)
//! second. So an event that lands after step 3's clear either is seen by step 4's re-read (the
//! dispatcher took the lock first, and the waiter's lock acquisition synchronises with its
//! release) or finds the waiter in the list and unparks it; an unpark that lands before the park
//! leaves a permit, so the park returns at once. Edge triggering then needs no more: the kernel
//! reports a new edge for any readiness that appears after the system call failed, and a
//! registration made after the failed call reports the current state at once (`EPOLL_CTL_ADD`).
//!
//! A stream read that returns less than it asked for drained the socket: it clears the plain
//! readable flag as step 3 would (never an end of stream or error already reported, which no
//! new edge would announce again), and an operation whose direction is known not ready skips
//! step 2 (`IoSource::io_draining`).
//!
//! # Who polls
//!
//! An idle worker blocks in its poller with the nearest timer as timeout and dispatches what it
//! gets. A busy worker polls with a zero timeout on its fairness tick (every `FAIRNESS_TICKS`
//! scheduling decisions) when it has registrations, so CPU-bound coroutines that yield cannot
//! starve I/O. A coroutine that never yields still holds its worker (there is no preemption).
//!
//! # Shutdown, and use outside a runtime
//!
//! When a worker shuts down it first cancels its coroutines (their sockets deregister as they
//! unwind), then closes its driver: the registrations that remain are marked orphaned and their
//! waiters woken. An operation on an orphaned registration, or one made where nothing can park (a
//! plain thread, the system stack), waits in `poll(2)` instead, blocking its thread as a std
//! socket would.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Token};
use slab::Slab;

use super::park::{Parked, Unparker, WaitReason, park, park_until};
use super::worker::WorkerCore;

/// Which way an operation moves data, and so which readiness it waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

// Readiness flags, in the low bits of `ScheduledIo::readiness`.
const READABLE: usize = 1 << 0;
const WRITABLE: usize = 1 << 1;
const READ_CLOSED: usize = 1 << 2;
const WRITE_CLOSED: usize = 1 << 3;
const ERROR: usize = 1 << 4;
/// The owning worker shut down: nothing will ever dispatch to this registration again. Once set,
/// never cleared.
const ORPHANED: usize = 1 << 5;
/// The tick counts dispatched events, above the flags.
const TICK_ONE: usize = 1 << 8;
const FLAGS: usize = TICK_ONE - 1;

impl Direction {
    fn mask(self) -> usize {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR,
        }
    }
}

/// The tokens of a driver: slab key in the low half, generation in the high half. A generation
/// keeps its top bit clear, so no token has the top bit set (the workers' waker and wake timer
/// tokens do).
const KEY_BITS: u32 = 32;
const GENERATION_MASK: usize = (1 << 31) - 1;

/// The readiness and the waiters of one registered descriptor.
struct ScheduledIo {
    /// Flags (see the constants) and tick. Written by the dispatcher (OR flags, bump tick), by
    /// operations (clear their direction's flags when the tick is unchanged), and by the closing
    /// driver (`ORPHANED`).
    readiness: AtomicUsize,
    /// The generation its token carries.
    generation: usize,
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    readers: Vec<Unparker>,
    writers: Vec<Unparker>,
}

impl Waiters {
    fn of(&mut self, dir: Direction) -> &mut Vec<Unparker> {
        match dir {
            Direction::Read => &mut self.readers,
            Direction::Write => &mut self.writers,
        }
    }
}

/// One worker's poller, as seen by registrations. Lives as long as the worker or the last
/// registration with it, whichever is later.
pub(crate) struct IoDriver {
    registry: mio::Registry,
    table: Mutex<Table>,
    /// Registrations in the table, read without the lock to skip polls when there are none.
    count: AtomicUsize,
}

struct Table {
    entries: Slab<Arc<ScheduledIo>>,
    next_generation: usize,
    /// The worker has shut down: no more registrations.
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section below completes its update before anything in it can panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl IoDriver {
    /// A driver for the poller whose registry this is (a clone of the worker poller's).
    pub(crate) fn new(registry: mio::Registry) -> IoDriver {
        IoDriver {
            registry,
            table: Mutex::new(Table {
                entries: Slab::new(),
                next_generation: 0,
                closed: false,
            }),
            count: AtomicUsize::new(0),
        }
    }

    /// Whether any descriptor is registered (so a zero-timeout poll may find something).
    pub(crate) fn has_registrations(&self) -> bool {
        self.count.load(Relaxed) != 0
    }

    /// Sets the readiness of the registrations the events name and collects their waiters into
    /// `wake` (to be unparked by the caller, outside the locks). Events of registrations removed
    /// since the kernel queued them, and the waker's token, are skipped.
    pub(crate) fn dispatch(&self, events: &mio::Events, wake: &mut Vec<Unparker>) {
        let mut table = None;
        for event in events.iter() {
            let token = event.token().0;
            if token >> (usize::BITS - 1) != 0 {
                // The worker's own: its waker or its wake timer.
                continue;
            }
            let table = table.get_or_insert_with(|| lock(&self.table));
            let key = token & ((1 << KEY_BITS) - 1);
            let generation = token >> KEY_BITS;
            let Some(io) = table.entries.get(key) else {
                continue;
            };
            if io.generation != generation {
                continue;
            }
            let mut flags = 0;
            if event.is_readable() {
                flags |= READABLE;
            }
            if event.is_writable() {
                flags |= WRITABLE;
            }
            if event.is_read_closed() {
                flags |= READ_CLOSED;
            }
            if event.is_write_closed() {
                flags |= WRITE_CLOSED;
            }
            if event.is_error() {
                flags |= ERROR;
            }
            io.set_ready(flags, wake);
        }
    }

    /// Marks every remaining registration orphaned and collects its waiters: the worker that
    /// polled them is gone. Later registrations fail.
    pub(crate) fn close(&self, wake: &mut Vec<Unparker>) {
        let mut table = lock(&self.table);
        table.closed = true;
        for (_, io) in table.entries.iter() {
            io.set_ready(ORPHANED, wake);
        }
    }

    /// Registers `fd` (edge-triggered, readable and writable). `None` when the driver's worker
    /// has shut down or epoll refuses (the caller then waits in `poll(2)`).
    fn register(self: &Arc<Self>, fd: RawFd) -> Option<Registration> {
        let mut table = lock(&self.table);
        if table.closed {
            return None;
        }
        let generation = table.next_generation;
        table.next_generation = (generation + 1) & GENERATION_MASK;
        let io = Arc::new(ScheduledIo {
            readiness: AtomicUsize::new(0),
            generation,
            waiters: Mutex::new(Waiters::default()),
        });
        let entry = table.entries.vacant_entry();
        let key = entry.key();
        if key >> KEY_BITS != 0 {
            return None;
        }
        let token = Token(key | (generation << KEY_BITS));
        // Under the table lock, so that the event this may trigger at once finds the entry.
        self.registry
            .register(
                &mut SourceFd(&fd),
                token,
                Interest::READABLE | Interest::WRITABLE,
            )
            .ok()?;
        entry.insert(io.clone());
        self.count.fetch_add(1, Relaxed);
        Some(Registration {
            driver: self.clone(),
            io,
            key,
        })
    }
}

impl ScheduledIo {
    /// ORs `flags` in, bumps the tick, and takes the waiters of the directions they concern.
    fn set_ready(&self, flags: usize, wake: &mut Vec<Unparker>) {
        let _ = self.readiness.fetch_update(AcqRel, Acquire, |r| {
            Some(((r & !FLAGS).wrapping_add(TICK_ONE)) | (r & FLAGS) | flags)
        });
        let mut waiters = lock(&self.waiters);
        for dir in [Direction::Read, Direction::Write] {
            if flags & (dir.mask() | ORPHANED) != 0 {
                wake.append(waiters.of(dir));
            }
        }
    }

    /// Clears `dir`'s flags if no event arrived since `snapshot` was read; `false` if one did.
    fn clear(&self, dir: Direction, snapshot: usize) -> bool {
        self.clear_flags(dir.mask(), snapshot)
    }

    /// Clears `flags` if no event arrived since `snapshot` was read; `false` if one did.
    fn clear_flags(&self, flags: usize, snapshot: usize) -> bool {
        self.readiness
            .fetch_update(AcqRel, Acquire, |r| {
                (r & !FLAGS == snapshot & !FLAGS).then_some(r & !flags)
            })
            .is_ok()
    }

    fn is_ready(&self, dir: Direction) -> bool {
        self.readiness.load(Acquire) & (dir.mask() | ORPHANED) != 0
    }

    fn is_orphaned(&self) -> bool {
        self.readiness.load(Acquire) & ORPHANED != 0
    }

    /// Removes `me` from `dir`'s waiters (if still there).
    fn forget_waiter(&self, dir: Direction, me: &Unparker) {
        lock(&self.waiters).of(dir).retain(|w| !w.same_waiter(me));
    }
}

/// A descriptor's entry in a driver. Removed (and deregistered from epoll) by the owning
/// [`IoSource`] before the descriptor is closed.
struct Registration {
    driver: Arc<IoDriver>,
    io: Arc<ScheduledIo>,
    key: usize,
}

/// How a wait for readiness ended.
enum Waited {
    /// The direction is ready (or the wake was spurious): try the operation again.
    Ready,
    TimedOut,
    Cancelled,
    /// The driver is gone: wait in `poll(2)` from now on.
    Orphaned,
}

impl Registration {
    /// Parks the calling coroutine until `dir` is ready, `deadline` passes, or the runtime
    /// cancels it (steps 4 and 5 of the module docs).
    fn wait(&self, dir: Direction, deadline: Option<Instant>) -> Waited {
        let me = Unparker::current();
        {
            let mut waiters = lock(&self.io.waiters);
            let list = waiters.of(dir);
            if !list.iter().any(|w| w.same_waiter(&me)) {
                if list.capacity() == 0 {
                    list.reserve_exact(1);
                }
                list.push(me.clone());
            }
        }
        let parked = if self.io.is_ready(dir) {
            Parked::Woken
        } else {
            match deadline {
                Some(deadline) => park_until(deadline, WaitReason::Io),
                None => park(WaitReason::Io),
            }
        };
        self.io.forget_waiter(dir, &me);
        if parked == Parked::Cancelled {
            return Waited::Cancelled;
        }
        if self.io.is_orphaned() {
            return Waited::Orphaned;
        }
        if !self.io.is_ready(dir) && deadline.is_some_and(|d| Instant::now() >= d) {
            return Waited::TimedOut;
        }
        Waited::Ready
    }

    fn deregister(&self, fd: RawFd) {
        // Fails only if the descriptor is not registered there, which cannot happen; and the
        // table entry must go either way.
        let _ = self.driver.registry.deregister(&mut SourceFd(&fd));
        let mut table = lock(&self.driver.table);
        if table
            .entries
            .get(self.key)
            .is_some_and(|io| Arc::ptr_eq(io, &self.io))
        {
            table.entries.remove(self.key);
            self.driver.count.fetch_sub(1, Relaxed);
        }
    }
}

/// The driver a descriptor used by the calling coroutine registers with: the current worker's,
/// or (on a `block_on` thread) one of the runtime's workers, round-robin. `None` outside a
/// runtime.
fn current_driver() -> Option<Arc<IoDriver>> {
    let core = WorkerCore::current()?;
    if let Some(driver) = core.io_driver() {
        return Some(driver.clone());
    }
    let workers = &core.shared.workers;
    let next = core.shared.next_io_worker.fetch_add(1, Relaxed) % workers.len();
    workers[next].io_driver().cloned()
}

/// Whether the runtime of the calling coroutine is being dropped.
fn runtime_stopping() -> bool {
    WorkerCore::current().is_some_and(|core| core.shared.stopping.load(Relaxed))
}

/// A non-blocking descriptor whose operations park the calling coroutine instead of blocking its
/// worker (and block the thread, through `poll(2)`, where nothing can park).
pub(crate) struct IoSource<S: AsRawFd> {
    source: S,
    registration: OnceLock<Registration>,
}

/// The error of an operation whose deadline passed (`std`'s timeouts report `WouldBlock` on Unix).
pub(crate) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::WouldBlock, "operation timed out")
}

impl<S: AsRawFd> IoSource<S> {
    /// Wraps `source`, which must already be in non-blocking mode.
    pub(crate) fn new(source: S) -> IoSource<S> {
        IoSource {
            source,
            registration: OnceLock::new(),
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.source
    }

    /// Runs `op` until it does not report `WouldBlock`, waiting for `dir`'s readiness in between
    /// (see the module docs for the protocol). After `timeout`, measured from the first
    /// `WouldBlock`, returns [`timed_out`]. Unwinds with `Cancelled` when the runtime is dropped
    /// while the coroutine waits.
    pub(crate) fn io<R>(
        &self,
        dir: Direction,
        timeout: Option<std::time::Duration>,
        op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        self.io_draining(dir, timeout, op, |_| false)
    }

    /// [`IoSource::io`] for an operation that can tell from its result that it emptied the
    /// descriptor (`drained`: a stream read that returned less than it asked for). Then the
    /// direction's readiness is cleared as after a `WouldBlock` (if no event arrived since the
    /// snapshot), so the next operation parks without first making a system call that would
    /// fail. An operation whose direction is known not ready skips its system call the same
    /// way: the edge that makes it ready again sets the flag (module docs, "No lost wake-ups").
    pub(crate) fn io_draining<R>(
        &self,
        dir: Direction,
        timeout: Option<std::time::Duration>,
        mut op: impl FnMut(&S) -> io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> io::Result<R> {
        let mut deadline: Option<Option<Instant>> = None;
        loop {
            let registered = self.registration.get();
            let snapshot = registered.map_or(0, |r| r.io.readiness.load(Acquire));
            // An orphaned registration has ORPHANED in every direction's view; where nothing can
            // park, the operation is tried and waited for in poll(2) as before. (`can_park`, a
            // thread-local read, only on this path.)
            let known_not_ready = registered.is_some()
                && snapshot & (dir.mask() | ORPHANED) == 0
                && super::can_park();
            if !known_not_ready {
                match op(&self.source) {
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    Ok(done) => {
                        if let Some(registration) = registered
                            && drained(&done)
                        {
                            // Only the plain readiness: an end of stream or an error already
                            // reported stays (the read after the data returns it at once, and
                            // no new edge would announce it again).
                            let plain = dir.mask() & !(READ_CLOSED | WRITE_CLOSED | ERROR);
                            registration.io.clear_flags(plain, snapshot);
                        }
                        return Ok(done);
                    }
                    Err(err) => return Err(err),
                }
            }
            let deadline = *deadline
                .get_or_insert_with(|| timeout.and_then(|t| Instant::now().checked_add(t)));
            let registration = if super::can_park() {
                self.registration()
            } else {
                None
            };
            let Some(registration) = registration else {
                wait_fd(self.source.as_raw_fd(), dir, deadline)?;
                continue;
            };
            if !registration.io.clear(dir, snapshot) {
                continue;
            }
            match registration.wait(dir, deadline) {
                Waited::Ready => {}
                Waited::TimedOut => return Err(timed_out()),
                Waited::Cancelled => super::park::raise_cancelled(),
                Waited::Orphaned if runtime_stopping() => {
                    // Our own runtime is being dropped and the worker that polled this
                    // descriptor is gone: wait for the cancellation that is on its way, rather
                    // than block this worker in poll(2) and hold up its shutdown.
                    if park(WaitReason::Io) == Parked::Cancelled {
                        super::park::raise_cancelled();
                    }
                }
                Waited::Orphaned => wait_fd(self.source.as_raw_fd(), dir, deadline)?,
            }
        }
    }

    /// The registration, made now with the calling coroutine's driver if there is none yet.
    fn registration(&self) -> Option<&Registration> {
        if let Some(registration) = self.registration.get() {
            return (!registration.io.is_orphaned()).then_some(registration);
        }
        let fd = self.source.as_raw_fd();
        // Registering may map memory and take locks: do it on the worker's own stack.
        let made = crate::stack::on_system_stack(|| current_driver()?.register(fd));
        if let Some(made) = made
            && let Err(lost) = self.registration.set(made)
        {
            // Another thread registered meanwhile (with another driver; the same one refuses
            // a second registration of a descriptor): keep theirs.
            crate::stack::on_system_stack(|| lost.deregister(fd));
        }
        self.registration.get().filter(|r| !r.io.is_orphaned())
    }

    /// Deregisters (if registered) and returns the source, whose descriptor stays open.
    pub(crate) fn into_inner(mut self) -> S {
        if let Some(registration) = self.registration.take() {
            registration.deregister(self.source.as_raw_fd());
        }
        // SAFETY: `self` is forgotten right after, so `source` is moved out exactly once and
        // never dropped in place; the registration was taken above, and the OnceLock left
        // behind is empty and needs no drop.
        let source = unsafe { std::ptr::read(&self.source) };
        std::mem::forget(self);
        source
    }
}

impl<S: AsRawFd> Drop for IoSource<S> {
    /// Deregisters before the descriptor closes (the source drops after this body), so that a
    /// descriptor number reused by a new socket can never receive the old registration's events.
    fn drop(&mut self) {
        if let Some(registration) = self.registration.take() {
            registration.deregister(self.source.as_raw_fd());
        }
    }
}

impl<S: AsRawFd + std::fmt::Debug> std::fmt::Debug for IoSource<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

/// Blocks the thread in `poll(2)` until `fd` is ready for `dir` or `deadline` passes
/// ([`timed_out`]).
fn wait_fd(fd: RawFd, dir: Direction, deadline: Option<Instant>) -> io::Result<()> {
    let events = match dir {
        Direction::Read => libc::POLLIN,
        Direction::Write => libc::POLLOUT,
    };
    loop {
        let timeout_ms = match deadline {
            None => -1,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(timed_out());
                }
                left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
            }
        };
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd array of length one for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        match n {
            n if n > 0 => return Ok(()),
            0 => {}
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}
