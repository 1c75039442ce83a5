//! Workers: OS threads that run coroutines.
//!
//! # Queues
//!
//! A coroutine that has not started holds nothing but its `Send` closure, so it may run anywhere;
//! once started it stays on its worker for good, because its stack may hold `!Send` values and
//! references into that thread's thread-locals. Each worker therefore has:
//!
//! - `lifo`: the coroutine it spawned last. Not stealable: a spawn followed by a join runs the
//!   child right here, with no cross-thread traffic.
//! - `deque`: older spawns, stealable by idle workers (crossbeam-deque). Spawning into it wakes
//!   an idle worker to come and steal.
//! - `local`: started coroutines of this worker that are ready to run again.
//! - `inbox`: a crossbeam channel carrying cross-thread wake-ups of this worker's coroutines,
//!   and the nudge and shutdown messages.
//! - `timers`: deadlines of this worker's parked coroutines (see `park::park_until`).
//!
//! An idle worker waits in its `mio::Poll` (see `idle_wait`), woken by a `mio::Waker` that every
//! sender fires when the worker is polling, or by the nearest timer.
//!
//! Spawns from outside a worker (a `block_on` thread) go to the runtime's global injector.
//!
//! # Sleeping without losing work
//!
//! An idle worker sets its `sleeping` flag, counts itself in `idle`, then looks for work once more
//! before it blocks in `idle_wait`. A spawner pushes its task, then reads `idle` (both sides with a
//! SeqCst fence between write and read). Either the spawner sees the sleeper and nudges it, or
//! the sleeper's second look finds the task. `searching` counts nudges in flight: while one is,
//! further spawns do not nudge again, so a burst of spawns costs one wake-up, not one each.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*, fence};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use crossbeam_deque::{Steal, Worker as Deque};
use slab::Slab;

use super::Shared;
use super::idle::PollGate;
use super::netpoll::IoDriver;
use super::park::Unparker;
use super::sizing::Start;
use super::task::{Header, Task, TaskRef};
use super::timer::{TimerKey, Timers};
use crate::coroutine::{CANCEL, CANCEL_ATTEMPTS, Context, RESUME, Suspend};
use crate::stack::{self, Placement, StackPool, on_system_stack};
use crate::{fatal, ffi_mode, stats};

/// How often a busy worker looks at its inbox, its stealable deque and the global injector before
/// its local queue, so coroutines that yield to each other cannot starve everyone else.
const FAIRNESS_TICKS: u32 = 61;
/// How long shutdown waits, between cancellation rounds, for wake-ups of coroutines still
/// suspended (at most `CANCEL_ATTEMPTS - 1` times, and only while some are).
const SHUTDOWN_PATIENCE: Duration = Duration::from_millis(10);
/// How many times in a row the `lifo` slot may go first.
const MAX_LIFO_STREAK: u32 = 3;
/// Ticks of the park clock per `Config::idle_compaction`: a coroutine is compacted after
/// between `(AGE_EPOCHS - 1) / AGE_EPOCHS` and `(AGE_EPOCHS + 1) / AGE_EPOCHS` of it.
const AGE_EPOCHS: u32 = 4;

pub(crate) enum Msg {
    /// A coroutine of this worker was woken by another thread.
    Run(TaskRef),
    /// There may be work to steal.
    Nudge,
    /// The runtime is dropping: cancel everything and exit.
    Shutdown,
    /// An unstarted coroutine placed on this worker by another (see `place`); counted in the
    /// receiver's `incoming` until received.
    Start(TaskRef),
    /// A coroutine dump wants this worker's part (see `snapshot`).
    Dump(super::snapshot::Ticket),
}

/// The part of a worker other threads may touch.
pub(crate) struct WorkerHandle {
    inbox: Sender<Msg>,
    /// Counted in `Shared::idle`; cleared by the worker or by the nudger that takes it out.
    sleeping: AtomicBool,
    /// The worker is in (or about to enter) `Poll::poll`: a sender must use `waker`.
    polling: PollGate,
    waker: mio::Waker,
    /// The worker's readiness driver (`None` for a `block_on` thread, whose poller never holds
    /// sockets: it dies when `block_on` returns).
    io: Option<Arc<IoDriver>>,
    /// Started, unfinished coroutines pinned to the worker. Written only by the worker.
    started: AtomicUsize,
    /// Coroutines other workers placed here that it has not received yet.
    incoming: AtomicUsize,
}

/// The poller token of a worker's cross-thread waker. Readiness tokens keep their top bit clear
/// (`netpoll`), so tokens with it set are the worker's own.
const WAKER_TOKEN: mio::Token = mio::Token(usize::MAX);
/// The poller token of a worker's [`WakeTimer`].
const TIMER_TOKEN: mio::Token = mio::Token(usize::MAX - 1);

/// An idle wait shorter than this ends at its deadline to the microsecond (a [`WakeTimer`]);
/// a longer one in epoll's whole milliseconds, rounded up (at most a few percent late).
const PRECISE_WAIT: Duration = Duration::from_millis(20);

/// A `timerfd` in the worker's poller: it ends an idle wait at the next timer's deadline, where
/// epoll's own timeout counts whole milliseconds (a 1 ms sleep took 2 ms with it alone).
struct WakeTimer {
    fd: std::os::fd::OwnedFd,
    /// The deadline it is armed for.
    armed: Cell<Option<Instant>>,
}

impl WakeTimer {
    /// A timer registered in `poll`; `None` when the system will not make one (the waits then
    /// fall back to whole milliseconds).
    fn new(poll: &mio::Poll) -> Option<WakeTimer> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: takes no pointers; the flags are valid.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        poll.registry()
            .register(
                &mut mio::unix::SourceFd(&fd.as_raw_fd()),
                TIMER_TOKEN,
                mio::Interest::READABLE,
            )
            .ok()?;
        Some(WakeTimer {
            fd,
            armed: Cell::new(None),
        })
    }

    /// Makes the timer fire `left` from now, at `deadline`, unless it is armed for that already.
    /// `left` is not zero (that would disarm it). Should the system refuse, the wait ends at its
    /// rounded-up timeout instead.
    fn arm(&self, deadline: Instant, left: Duration) {
        use std::os::fd::AsRawFd;
        if self.armed.get() == Some(deadline) {
            return;
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: left.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec for the call to read; the old value is not asked
        // for (null).
        let ok =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) }
                == 0;
        self.armed.set(ok.then_some(deadline));
    }
}

impl WorkerHandle {
    /// A handle for the worker that will wait in `poll`; `with_io` gives it a readiness driver
    /// (workers have one, `block_on` threads do not).
    pub(crate) fn new(
        inbox: Sender<Msg>,
        poll: &mio::Poll,
        with_io: bool,
    ) -> std::io::Result<WorkerHandle> {
        let io = if with_io {
            Some(Arc::new(IoDriver::new(poll.registry().try_clone()?)))
        } else {
            None
        };
        Ok(WorkerHandle {
            inbox,
            sleeping: AtomicBool::new(false),
            polling: PollGate::new(),
            waker: mio::Waker::new(poll.registry(), WAKER_TOKEN)?,
            io,
            started: AtomicUsize::new(0),
            incoming: AtomicUsize::new(0),
        })
    }

    pub(crate) fn io_driver(&self) -> Option<&Arc<IoDriver>> {
        self.io.as_ref()
    }

    /// How many coroutines are pinned or on their way to the worker: what placement balances.
    fn load(&self) -> usize {
        self.started.load(Relaxed) + self.incoming.load(Relaxed)
    }

    /// Delivers a message, waking the worker if it waits in its poller (see `idle_wait` for why
    /// no wake-up is lost).
    pub(crate) fn send(&self, msg: Msg) {
        // A closed inbox means the worker already exited at shutdown; the message (and any task
        // in it) is dropped, which is all shutdown would have done with it.
        if self.inbox.send(msg).is_err() {
            return;
        }
        if self.polling.must_wake() {
            // A failed wake (the eventfd is full) means a wake-up is already pending.
            let _ = self.waker.wake();
        }
    }
}

/// The calling thread's core, if it is `home`.
#[inline]
pub(crate) fn home_core(home: &Arc<WorkerHandle>) -> Option<&'static WorkerCore> {
    WorkerCore::current().filter(|core| Arc::ptr_eq(&core.handle, home))
}

/// Queues a woken task on its home worker.
#[inline]
pub(crate) fn schedule_woken(home: &Arc<WorkerHandle>, task: TaskRef) {
    match home_core(home) {
        Some(core) => core.push_woken(task),
        None => send_woken(home, task),
    }
}

/// Sends a woken task to its home worker on another thread. Out of line, so that the common
/// wake-up (by the task's own worker) does not pay for this path's frame.
#[cold]
#[inline(never)]
fn send_woken(home: &Arc<WorkerHandle>, task: TaskRef) {
    // A channel send may wake a thread and initialise crossbeam's thread-locals: more stack than
    // a 4 KiB coroutine has to spare.
    on_system_stack(|| home.send(Msg::Run(task)));
}

thread_local! {
    static CORE: Cell<*const WorkerCore> = const { Cell::new(std::ptr::null()) };
}

/// A worker's thread-local state. Also used, without a deque, by a thread inside `block_on`,
/// which runs nothing but its main coroutine.
pub(crate) struct WorkerCore {
    pub(crate) shared: Arc<Shared>,
    /// Index in `shared.workers`, `None` for a `block_on` thread.
    pub(super) index: Option<usize>,
    handle: Arc<WorkerHandle>,
    inbox: Receiver<Msg>,
    deque: Option<Deque<TaskRef>>,
    lifo: Cell<Option<TaskRef>>,
    local: RefCell<VecDeque<TaskRef>>,
    /// Usable bytes of the stacks this worker's parked coroutines hold (compacted ones hold
    /// none); compared with `Config::parked_stack_budget` at each park.
    parked_bytes: Cell<usize>,
    /// Coroutines of this worker parked now (published in `stats`).
    parked_count: Cell<u64>,
    /// Coroutines that parked holding their stack, as (slot in `live`, ticket, park clock at
    /// the park), oldest first: looked at once parked for `Config::idle_compaction`
    /// (`release_idle`). A coroutine has at most one entry (its header holds the ticket), so
    /// one that parks and wakes all the time costs one entry per period, not one per park.
    aging: RefCell<VecDeque<(usize, u32, u32)>>,
    /// The last ticket given to an aging entry (never 0).
    aging_ticket: Cell<u32>,
    /// The park clock: `idle_compaction / AGE_EPOCHS` per tick, counted from `epoch_origin`;
    /// read at fairness ticks, before and after sleeping. `None`: idle compaction is off (or
    /// this is a `block_on` thread).
    epoch_len: Option<Duration>,
    epoch: Cell<u32>,
    epoch_origin: Instant,
    /// Learned start sizes per spawn site.
    start_sizes: RefCell<super::sizing::StartSizes>,
    /// Started, unfinished coroutines of this worker: the ones shutdown must cancel.
    pub(super) live: RefCell<Slab<TaskRef>>,
    /// Stack growth of finished coroutines by spawn site (for dumps).
    pub(super) sites: RefCell<super::snapshot::SiteTable>,
    pool: RefCell<StackPool>,
    /// The coroutine running now (from `Arc::as_ptr` of the `TaskRef` that `run_task` holds
    /// while it is set), and its context.
    current: Cell<Option<NonNull<dyn Task>>>,
    current_ctx: Cell<*const Context>,
    tick: Cell<u32>,
    lifo_streak: Cell<u32>,
    /// Coroutine ids are taken from the process counter in blocks: `next_id..id_end`.
    next_id: Cell<u64>,
    id_end: Cell<u64>,
    stats: stats::Local,
    /// Deadlines of this worker's parked coroutines (`park_until`).
    timers: RefCell<Timers>,
    /// `fire_timers`'s buffer of due coroutines, kept for its allocation.
    due_timers: Cell<Vec<TaskRef>>,
    /// Where the worker waits when it has nothing to run.
    poll: RefCell<mio::Poll>,
    /// Ends idle waits at timer deadlines to the microsecond; made at the first such wait
    /// (`None` inside: the system would not make one, so whole milliseconds).
    wake_timer: std::cell::OnceCell<Option<WakeTimer>>,
    events: RefCell<mio::Events>,
    /// Waiters of ready descriptors, collected under the driver's locks and unparked after.
    io_wakes: RefCell<Vec<Unparker>>,
    /// The task whose `join` the last coroutine to park here waits for (a hint for placement,
    /// compared by address only).
    joining: Cell<*const Header>,
}

/// How many coroutine ids a core takes from the process counter at once.
const ID_BLOCK: u64 = 1024;

impl WorkerCore {
    pub(crate) fn new(
        shared: Arc<Shared>,
        index: Option<usize>,
        handle: Arc<WorkerHandle>,
        inbox: Receiver<Msg>,
        deque: Option<Deque<TaskRef>>,
        pool: StackPool,
        poll: mio::Poll,
    ) -> WorkerCore {
        let epoch_len = shared
            .config
            .idle_compaction
            .filter(|_| index.is_some())
            .map(|after| (after / AGE_EPOCHS).max(Duration::from_millis(1)));
        WorkerCore {
            shared,
            index,
            handle,
            inbox,
            deque,
            lifo: Cell::new(None),
            local: RefCell::new(VecDeque::new()),
            parked_bytes: Cell::new(0),
            parked_count: Cell::new(0),
            aging: RefCell::new(VecDeque::new()),
            aging_ticket: Cell::new(0),
            epoch_len,
            epoch: Cell::new(0),
            epoch_origin: Instant::now(),
            start_sizes: RefCell::default(),
            live: RefCell::new(Slab::new()),
            sites: RefCell::default(),
            pool: RefCell::new(pool),
            current: Cell::new(None),
            current_ctx: Cell::new(std::ptr::null()),
            tick: Cell::new(0),
            lifo_streak: Cell::new(0),
            next_id: Cell::new(0),
            id_end: Cell::new(0),
            stats: stats::Local::new(),
            timers: RefCell::new(Timers::new()),
            due_timers: Cell::new(Vec::new()),
            wake_timer: std::cell::OnceCell::new(),
            poll: RefCell::new(poll),
            events: RefCell::new(mio::Events::with_capacity(256)),
            io_wakes: RefCell::new(Vec::new()),
            joining: Cell::new(std::ptr::null()),
        }
    }

    /// This worker's readiness driver (`None` on a `block_on` thread).
    pub(crate) fn io_driver(&self) -> Option<&Arc<IoDriver>> {
        self.handle.io_driver()
    }

    /// Records that the running coroutine is about to park in `join` of `task`.
    pub(crate) fn note_joining(&self, task: &Header) {
        self.joining.set(task);
    }

    /// Counts a new coroutine and returns its id, unique in the process.
    pub(crate) fn new_coroutine_id(&self) -> u64 {
        if self.next_id.get() == self.id_end.get() {
            let first = stats::reserve_ids(ID_BLOCK);
            self.next_id.set(first);
            self.id_end.set(first + ID_BLOCK);
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        self.stats.coroutine_created();
        id
    }

    /// The core of the calling thread, if it is a worker or inside `block_on`.
    #[inline]
    pub(crate) fn current() -> Option<&'static WorkerCore> {
        let core = CORE.with(|c| c.get());
        // SAFETY: CORE is set by `enter` to a core that outlives the guard it returns, and cleared
        // when the guard drops; code running on this thread in between (the only code that can
        // read it) sees a live core. The 'static is a lie confined to this thread's use while
        // entered, which is all callers do with it.
        unsafe { core.as_ref() }
    }

    /// Makes this core the calling thread's core until the guard drops, and registers its stack
    /// pool (with `stack`, for the growth movers) and its runtime's foreign-call mode (with
    /// `ffi_mode`) for as long.
    pub(crate) fn enter(&self) -> EnterGuard {
        crate::grow::fault::prepare_thread();
        CORE.with(|c| {
            assert!(
                c.get().is_null(),
                "a thread can host only one pagurus scheduler at a time"
            );
            c.set(self);
        });
        EnterGuard {
            // SAFETY: the core (and with it the pool and `shared`) outlives the guard, which its
            // callers drop on this thread before the core goes away.
            _pool: unsafe { stack::register_pool(&self.pool) },
            // SAFETY: as above.
            _ffi_mode: unsafe { ffi_mode::register(&self.shared.ffi_mode) },
        }
    }

    /// The running coroutine and its context, when called from it.
    pub(crate) fn current_task(&self) -> Option<TaskRef> {
        let ptr = self.current.get()?.as_ptr();
        // SAFETY: `ptr` came from Arc::as_ptr of a TaskRef that `run_task` keeps alive for as
        // long as `current` holds it; taking one more strong count makes a new owned TaskRef.
        unsafe {
            Arc::increment_strong_count(ptr);
            Some(Arc::from_raw(ptr))
        }
    }

    /// Arms a timer that wakes `task` at `deadline`; the key cancels it.
    pub(crate) fn add_timer(&self, deadline: Instant, task: TaskRef) -> TimerKey {
        self.timers.borrow_mut().arm(deadline, task)
    }

    /// Queues a coroutine this worker woke.
    #[inline]
    pub(crate) fn push_woken(&self, task: TaskRef) {
        self.local.borrow_mut().push_back(task);
    }

    /// Disarms a timer; `false` if it fired already.
    pub(crate) fn cancel_timer(&self, key: TimerKey) -> bool {
        self.timers.borrow_mut().cancel(key)
    }

    /// Wakes the coroutines whose deadlines have passed; returns the nearest deadline left.
    fn fire_timers(&self) -> Option<Instant> {
        if self.timers.borrow().is_empty() {
            return None;
        }
        // The buffer is kept between calls (taken out, so that a wake that drops the last
        // reference to a task, running its destructors, cannot find it borrowed).
        let mut due = self.due_timers.take();
        let next = self
            .timers
            .borrow_mut()
            .fire(Instant::now(), |task| due.push(task));
        // Woken outside the borrow: a wake may drop the last reference to a task.
        let mut woken = due.drain(..);
        while let Some(task) = woken.next() {
            if let Some(ahead) = woken.as_slice().get(3) {
                super::task::prefetch(ahead);
            }
            task.header().timer_fired.set(true);
            super::task::wake_owned(task);
        }
        drop(woken);
        self.due_timers.set(due);
        next
    }

    /// The running coroutine's header, when called from it.
    pub(crate) fn current_header(&self) -> Option<&Header> {
        self.current.get().map(|task| {
            // SAFETY: `current` points into a task kept alive by `run_task` while it is set, and
            // the reference does not outlive the caller's use on this thread (the running
            // coroutine's own code, which `run_task` outlives).
            unsafe { task.as_ref() }.header()
        })
    }

    /// Records what the running coroutine is about to park for.
    pub(crate) fn set_wait_reason(&self, reason: super::park::WaitReason) {
        if let Some(task) = self.current.get() {
            // SAFETY: `current` points into a task kept alive by `run_task` while it is set.
            unsafe { task.as_ref() }
                .header()
                .wait_reason
                .store(reason as u8, Relaxed);
            if crate::dump::park_stamps() {
                // SAFETY: as above.
                let header = unsafe { task.as_ref() }.header();
                header.parked_since.set(crate::dump::stamp(Instant::now()));
            }
        }
    }

    #[inline]
    pub(crate) fn current_ctx(&self) -> *const Context {
        self.current_ctx.get()
    }

    /// Queues a freshly spawned coroutine.
    ///
    /// The common case (the `lifo` slot is free) touches nothing but that slot. Pushing to a
    /// deque or the injector (which may grow them, and crossbeam-epoch's deferred frees need a
    /// 4 KiB frame) and waking a worker run on the thread's system stack.
    pub(crate) fn spawn(&self, task: TaskRef) {
        match &self.deque {
            Some(deque) => {
                if let Some(older) = self.lifo.replace(Some(task)) {
                    on_system_stack(|| {
                        deque.push(older);
                        self.shared.notify_idle();
                    });
                }
            }
            None => on_system_stack(|| {
                self.shared.injector.push(task);
                self.shared.notify_idle();
            }),
        }
    }

    /// Moves the suspended coroutine to the larger stack it asked for with `Suspend::Grow`.
    #[cold]
    fn grow(&self, header: &Header) {
        crate::grow::grow_suspended(&header.ctx);
    }

    /// The worker thread's whole life.
    pub(crate) fn run_worker(&self) {
        let _entered = self.enter();
        tracing::debug!(worker = self.index, "worker started");
        while let Some(task) = self.next_task() {
            let (task, reason) = self.run_task(task, RESUME);
            if reason == Suspend::Yield {
                self.local.borrow_mut().push_back(task);
            } else {
                drop(task);
            }
        }
        self.shutdown();
        tracing::debug!(worker = self.index, "worker stopped");
    }

    /// Runs `main` (already set up as a task) on this `block_on` thread until it finishes.
    pub(crate) fn run_main(&self, main: TaskRef) {
        let _entered = self.enter();
        let mut task = main;
        loop {
            let (t, reason) = self.run_task(task, RESUME);
            match reason {
                Suspend::Done => return,
                Suspend::Yield => {
                    // A main coroutine that only yields still answers dumps: `run_task` returns
                    // here as soon as the inbox holds anything.
                    while let Ok(msg) = self.inbox.try_recv() {
                        match msg {
                            Msg::Dump(ticket) => self.answer_dump(ticket),
                            Msg::Nudge => {}
                            // Left for the park loop, which takes wake-ups from `local` too.
                            Msg::Run(woken) => self.local.borrow_mut().push_back(woken),
                            Msg::Start(_) | Msg::Shutdown => {
                                unreachable!("block_on threads own no queue and are not shut down")
                            }
                        }
                    }
                    task = t;
                }
                Suspend::Grow => unreachable!("run_task serves it itself"),
                Suspend::Park => {
                    drop(t);
                    // Only the main coroutine lives here; it comes back through a wake-up, from
                    // its own timer or from another thread.
                    task = loop {
                        let deadline = self.fire_timers();
                        if let Some(t) = self.local.borrow_mut().pop_front() {
                            break t;
                        }
                        let mut found = None;
                        while let Ok(msg) = self.inbox.try_recv() {
                            match msg {
                                Msg::Run(t) => found = Some(t),
                                Msg::Nudge => {}
                                Msg::Dump(ticket) => self.answer_dump(ticket),
                                Msg::Start(_) => {
                                    unreachable!("coroutines are placed only on workers")
                                }
                                Msg::Shutdown => {
                                    unreachable!(
                                        "a block_on thread is never shut down while it runs"
                                    )
                                }
                            }
                        }
                        if let Some(t) = found {
                            break t;
                        }
                        // Answering a dump may have woken the main coroutine (it took the dump).
                        if !self.local.borrow().is_empty() {
                            continue;
                        }
                        self.publish_parked();
                        self.idle_wait(deadline);
                    };
                }
            }
        }
    }

    /// Resumes `task` with `arg` until it yields, parks for real, or finishes, and settles its
    /// state: a parked task is left to its waker, a finished one gives its stack back.
    #[inline]
    fn run_task(&self, task: TaskRef, arg: usize) -> (TaskRef, Suspend) {
        let header = task.header();
        // Only shutdown resumes a task that is not active: to cancel it where it parked.
        header.state.reactivate();
        if !header.ctx.has_stack() {
            // A parked coroutine without a stack was compacted; any other one never started.
            if header.parked.get() {
                self.restore(header);
            } else {
                self.start(&task);
            }
        }
        if header.parked.get() {
            self.unparked(header);
        }
        self.current_ctx.set(&header.ctx);
        self.current
            .set(NonNull::new(Arc::as_ptr(&task).cast_mut()));
        let span = header.span.get().map(|span| span.enter());
        let mut arg = arg;
        let reason = loop {
            // SAFETY: the task is started (it has a stack), not running (we hold it off every
            // queue), and pinned to this worker, so its context was last suspended on this thread.
            let reason = unsafe { header.ctx.resume(arg) };
            match reason {
                Suspend::Grow => {
                    self.grow(header);
                    arg = RESUME;
                }
                // Nothing else could run: going through the queues would pick this one again.
                Suspend::Yield if arg == RESUME && self.only_runnable() => {}
                Suspend::Park => {
                    // Park for real unless a wake-up arrived since the coroutine last ran. The
                    // Release publishes the saved context, and the home, to the waker that will
                    // queue the task.
                    // SAFETY: this worker runs the task, which is not PARKED yet.
                    unsafe { header.set_home(&self.handle) };
                    if header.state.park() {
                        break reason;
                    }
                }
                _ => break reason,
            }
        };
        drop(span);
        self.current.set(None);
        self.current_ctx.set(std::ptr::null());
        header.ctx.report_growths();
        match reason {
            Suspend::Done => self.finish(&task),
            Suspend::Park => self.parked(header),
            _ => {}
        }
        (task, reason)
    }

    /// Counts the stack of a coroutine that just parked against the worker's parked-stack
    /// budget, or compacts it when the budget is spent (see `grow::compact`).
    #[inline]
    fn parked(&self, header: &Header) {
        header.parked.set(true);
        self.parked_count.set(self.parked_count.get() + 1);
        if let Some(size) = header.ctx.stack_size() {
            let total = self.parked_bytes.get() + size;
            if total <= self.shared.config.parked_stack_budget {
                self.parked_bytes.set(total);
                header.parked_bytes.set(size);
                if self.epoch_len.is_some() {
                    let epoch = self.epoch.get();
                    header.parked_epoch.set(epoch);
                    if header.aging_ticket.get() == 0 {
                        self.enqueue_aging(header, epoch);
                    }
                }
            } else {
                self.compact(header);
            }
        }
    }

    /// Gives back the memory idle coroutines and the idle part of the stack pool hold, and
    /// advances the park clock; returns when to look again (for the idle wait's timeout), if
    /// anything is left to give back.
    ///
    /// A coroutine that has stayed parked on its stack for `Config::idle_compaction` (an idle
    /// connection's, say) is compacted, however far under budget the worker is: the budget
    /// bounds a burst, this returns what idle coroutines hold. One that parks and wakes more
    /// often is never old enough, so it pays only a queue entry per park. At each tick of the
    /// clock the pool unmaps half of what stayed unused in it since the last tick
    /// (`StackPool::trim`), so stacks that compaction or a burst of finished coroutines left
    /// there do not stay resident for good.
    fn release_idle(&self) -> Option<Instant> {
        let len = self.epoch_len?;
        let elapsed = self.epoch_origin.elapsed().as_nanos();
        let len_nanos = len.as_nanos();
        // The clock wraps (after 34 years of quarter seconds); ages are wrapping differences.
        let now = (elapsed / len_nanos) as u32;
        let into_tick = Duration::from_nanos((elapsed % len_nanos) as u64);
        let next_tick = Instant::now() + (len - into_tick);
        let new_tick = now != self.epoch.replace(now);
        let mut aging = self.aging.borrow_mut();
        while let Some(&(slot, ticket, epoch)) = aging.front() {
            if now.wrapping_sub(epoch) < AGE_EPOCHS {
                break;
            }
            aging.pop_front();
            let live = self.live.borrow();
            let Some(task) = live.get(slot) else { continue };
            let header = task.header();
            if header.aging_ticket.get() != ticket {
                continue; // the entry of a coroutine that finished (its slot reused since)
            }
            if !header.parked.get() || header.parked_bytes.get() == 0 {
                // Running or woken, or compacted already: its next park queues it again.
                header.aging_ticket.set(0);
            } else if now.wrapping_sub(header.parked_epoch.get()) >= AGE_EPOCHS {
                header.aging_ticket.set(0);
                self.compact(header);
                // Not compacted (pinned by an offloaded call, or frames that cannot be walked):
                // it still holds its stack and stays counted.
                if !header.ctx.has_stack() {
                    let bytes = header.parked_bytes.replace(0);
                    self.parked_bytes.set(self.parked_bytes.get() - bytes);
                }
            } else {
                // Woken and parked again since: wait for that park to age.
                aging.push_back((slot, ticket, header.parked_epoch.get()));
            }
        }
        let mut pool = self.pool.borrow_mut();
        if new_tick {
            pool.trim();
            stack::trim_arena();
        }
        // The front entry is due AGE_EPOCHS ticks after its own (fewer than that are left).
        let aged = aging.front().map(|&(_, _, oldest)| {
            let left = AGE_EPOCHS - now.wrapping_sub(oldest).min(AGE_EPOCHS - 1);
            next_tick + len * (left - 1)
        });
        // Memory left to give back: look again at the next tick.
        let trimmed =
            (pool.pooled_bytes() != 0 || stack::arena_warm_bytes() != 0).then_some(next_tick);
        match (aged, trimmed) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Gives a coroutine parked at `epoch` its entry in the aging queue.
    #[cold]
    fn enqueue_aging(&self, header: &Header, epoch: u32) {
        let ticket = self.aging_ticket.get().wrapping_add(1).max(1);
        self.aging_ticket.set(ticket);
        header.aging_ticket.set(ticket);
        self.aging
            .borrow_mut()
            .push_back((header.slot.get(), ticket, epoch));
    }

    /// Publishes the parked coroutines' count and stack bytes in `stats` (at every tick of the
    /// fairness counter and before the worker sleeps, not at every park: a gauge a busy worker
    /// updates every few dozen coroutines).
    fn publish_parked(&self) {
        self.stats
            .parked(self.parked_count.get(), self.parked_bytes.get());
    }

    /// Undoes [`WorkerCore::parked`] for a coroutine about to run again.
    #[inline]
    fn unparked(&self, header: &Header) {
        header.parked.set(false);
        self.parked_count.set(self.parked_count.get() - 1);
        let bytes = header.parked_bytes.replace(0);
        self.parked_bytes.set(self.parked_bytes.get() - bytes);
    }

    #[inline(never)]
    fn compact(&self, header: &Header) {
        // SAFETY: the coroutine just parked on this worker, which alone resumes it, and does so
        // only through `run_task`, which restores it first.
        if let Some(image) = unsafe { crate::grow::compact::compact(&header.ctx) } {
            header.image.set(Some(image));
        }
    }

    /// Gives a compacted coroutine a stack again (see `grow::compact`).
    #[cold]
    #[inline(never)]
    fn restore(&self, header: &Header) {
        let image = header
            .image
            .take()
            .expect("a parked coroutine without a stack holds its image");
        // SAFETY: the image was taken from this context by `compact`, and it has not run since: a
        // compacted task runs only through `run_task`, which restores it first.
        unsafe {
            crate::grow::compact::restore(&header.ctx, image, self.shared.config.initial_stack_size)
        };
    }

    /// First run of a task on this worker: give it a stack and record it as live.
    #[inline(never)]
    fn start(&self, task: &TaskRef) {
        let header = task.header();
        let config = &self.shared.config;
        let mut size = config.initial_stack_size;
        if config.adaptive_stacks {
            let start;
            (size, start) = self
                .start_sizes
                .borrow_mut()
                .start_size(header.spawned_at, size);
            if start != Start::Default {
                header.sized.set(true);
                if start == Start::Learned {
                    self.stats.adaptive_start();
                }
            }
        }
        let stack = self
            .pool
            .borrow_mut()
            .take(size, Placement::ANY)
            .unwrap_or_else(|err| fatal::stack_alloc_failed(size, err.raw_os_error().unwrap_or(0)));
        let data = Arc::as_ptr(task) as *const ();
        // SAFETY: the context lives inside the task's Arc allocation, which does not move and is
        // kept alive by `live` until the coroutine is done; `data` is the TaskCell its body
        // expects (every task type's body takes its own cell).
        unsafe {
            header
                .ctx
                .start(stack, data, header.id, self.shared.config.growth_limits())
        };
        if tracing::level_enabled!(tracing::Level::INFO) {
            super::snapshot::make_span(header);
        }
        let mut live = self.live.borrow_mut();
        header.slot.set(live.insert(task.clone()));
        self.handle.started.store(live.len(), Relaxed);
    }

    #[inline(never)]
    fn finish(&self, task: &TaskRef) {
        let header = task.header();
        header.state.finish();
        // The cached waiter refers to the task: break the cycle.
        drop(header.waiter_cache.take());
        let ctx = &header.ctx;
        // Only a coroutine that grew, or that its site's learned size chose, teaches anything.
        if self.shared.config.adaptive_stacks && (ctx.growths() != 0 || header.sized.get()) {
            self.start_sizes.borrow_mut().finished(
                header.spawned_at,
                ctx.growths() != 0,
                || ctx.stack_size().unwrap_or(0),
                self.shared.config.initial_stack_size,
            );
        }
        if let Some(stack) = header.ctx.take_stack() {
            self.pool.borrow_mut().give_back(stack);
        }
        let live = {
            let mut live = self.live.borrow_mut();
            let task = live.remove(header.slot.get());
            self.handle.started.store(live.len(), Relaxed);
            task
        };
        self.sites.borrow_mut().finished(task);
        drop(live);
        self.stats.coroutine_finished();
    }

    /// The unstarted coroutines queued on this worker, for a dump (see `snapshot`).
    ///
    /// First it takes in the inbox's messages behind the dump request, so coroutines another
    /// worker placed here are in `local`; more dump tickets found there are returned to be
    /// answered with the same look, and a shutdown request is sent again, to be seen after the
    /// answer. A worker also moves the global injector's coroutines into its own deque (as a
    /// steal would) so they are listed too, and lets an idle worker know they are there. The
    /// deque is read by popping it empty and pushing everything back in order: only this thread
    /// pushes or pops it, while other workers may still steal from its front.
    pub(super) fn queued_for_dump(&self) -> (Vec<TaskRef>, Vec<super::snapshot::Ticket>) {
        let mut tickets = Vec::new();
        let mut shutdown = false;
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                Msg::Dump(ticket) => tickets.push(ticket),
                Msg::Shutdown => shutdown = true,
                msg => {
                    self.handle_msg(msg);
                }
            }
        }
        if shutdown {
            self.handle.send(Msg::Shutdown);
        }
        // `local` also holds started coroutines woken here (`live` lists those). Read before
        // anything goes back where a thief may take and start it: only this thread may look at
        // a task's context, and only while no other worker can have started it.
        let mut queued: Vec<TaskRef> = self
            .local
            .borrow()
            .iter()
            .filter(|t| !t.header().ctx.has_stack() && !t.header().parked.get())
            .cloned()
            .collect();
        // The lifo slot, the deque and the injector hold only unstarted coroutines.
        let lifo = self.lifo.take();
        queued.extend(lifo.clone());
        self.lifo.set(lifo);
        if let Some(deque) = &self.deque {
            // At most what the injector held when we looked (plus one round), however fast
            // others keep spawning into it.
            for _ in 0..=self.shared.injector.len() {
                match self.shared.injector.steal_batch(deque) {
                    Steal::Success(()) => {}
                    Steal::Empty => break,
                    Steal::Retry => {}
                }
            }
            let from = queued.len();
            queued.extend(std::iter::from_fn(|| deque.pop()));
            for task in &queued[from..] {
                deque.push(task.clone());
            }
            if queued.len() > from {
                // A thief that looked while the deque was empty may have gone to sleep.
                self.shared.notify_idle();
            }
        }
        (queued, tickets)
    }

    /// Abandons the unstarted tasks in this worker's queues (shutdown). Started ones found there
    /// are left to the cancellation rounds, which reach them through `live`.
    fn abandon_queued_unstarted(&self) {
        let mut queued: Vec<TaskRef> = self.local.borrow_mut().drain(..).collect();
        queued.extend(self.lifo.take());
        if let Some(deque) = &self.deque {
            queued.extend(std::iter::from_fn(|| deque.pop()));
        }
        queued.extend(self.inbox.try_iter().filter_map(|msg| match msg {
            Msg::Start(task) => {
                self.handle.incoming.fetch_sub(1, Relaxed);
                Some(task)
            }
            Msg::Run(_) | Msg::Nudge | Msg::Dump(_) => None,
            // Already shutting down: a second request changes nothing.
            Msg::Shutdown => None,
        }));
        for task in queued {
            if !task.header().ctx.has_stack() {
                self.abandon(&task);
            }
        }
    }

    /// Ends one of this worker's tasks that will never run again.
    fn abandon(&self, task: &TaskRef) {
        if abandon(task) && task.header().slot.get() != usize::MAX {
            self.live.borrow_mut().try_remove(task.header().slot.get());
        }
    }

    /// Whether a coroutine that just yielded is the only one this worker could run now (so it
    /// may continue without a trip through the queues). Counts as a scheduling tick, and says no
    /// on the ticks where `next_task` looks further afield.
    #[inline]
    fn only_runnable(&self) -> bool {
        let tick = self.tick.get().wrapping_add(1);
        if tick.is_multiple_of(FAIRNESS_TICKS) {
            return false;
        }
        self.tick.set(tick);
        let lifo = self.lifo.take();
        let lifo_empty = lifo.is_none();
        self.lifo.set(lifo);
        lifo_empty
            && self.local.borrow().is_empty()
            && self.deque.as_ref().is_none_or(Deque::is_empty)
            && self.inbox.is_empty()
            && self.shared.injector.is_empty()
    }

    /// Picks the next coroutine to run; `None` once the runtime shuts down.
    fn next_task(&self) -> Option<TaskRef> {
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        if tick.is_multiple_of(FAIRNESS_TICKS) {
            self.release_idle();
            self.publish_parked();
            self.fire_timers();
            self.poll_io_now();
            if !self.drain_inbox() {
                return None;
            }
            if let Some(task) = self.pop_deque().or_else(|| self.steal_injector())
                && let Some(task) = self.place(task)
            {
                return Some(task);
            }
        }
        loop {
            if self.lifo_streak.get() < MAX_LIFO_STREAK
                && let Some(task) = self.lifo.take()
            {
                self.lifo_streak.set(self.lifo_streak.get() + 1);
                match self.place(task) {
                    Some(task) => return Some(task),
                    None => continue,
                }
            }
            self.lifo_streak.set(0);
            let mut local = self.local.borrow_mut();
            if let Some(task) = local.pop_front() {
                if let Some(next) = local.front() {
                    next.header().ctx.prefetch();
                }
                if let Some(after) = local.get(1) {
                    super::task::prefetch(after);
                }
                return Some(task);
            }
            drop(local);
            if let Some(task) = self.lifo.take().or_else(|| self.pop_deque()) {
                match self.place(task) {
                    Some(task) => return Some(task),
                    None => continue,
                }
            }
            if !self.drain_inbox() {
                return None;
            }
            let next_deadline = self.fire_timers();
            if !self.local.borrow().is_empty() {
                continue;
            }
            if let Some(task) = self.steal_injector() {
                // There may be more where that came from: let another idle worker look too.
                self.shared.notify_idle();
                match self.place(task) {
                    Some(task) => return Some(task),
                    None => continue,
                }
            }
            if let Some(task) = self.steal_others() {
                // There may be more where that came from: let another idle worker look too.
                self.shared.notify_idle();
                return Some(task);
            }
            let next_deadline = match (next_deadline, self.release_idle()) {
                (Some(timer), Some(aging)) => Some(timer.min(aging)),
                (timer, aging) => timer.or(aging),
            };
            self.publish_parked();
            if !self.sleep(next_deadline) {
                return None;
            }
            // Parks from now on read a clock that counted the sleep.
            self.release_idle();
        }
    }

    fn pop_deque(&self) -> Option<TaskRef> {
        self.deque.as_ref()?.pop()
    }

    fn steal_injector(&self) -> Option<TaskRef> {
        let deque = self.deque.as_ref()?;
        loop {
            match self.shared.injector.steal_batch_and_pop(deque) {
                Steal::Success(task) => return Some(task),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }

    fn steal_others(&self) -> Option<TaskRef> {
        let deque = self.deque.as_ref()?;
        let me = self.index?;
        let n = self.shared.stealers.len();
        for i in 1..n {
            let victim = &self.shared.stealers[(me + i) % n];
            loop {
                match victim.steal_batch_and_pop(deque) {
                    Steal::Success(task) => return Some(task),
                    Steal::Empty => break,
                    Steal::Retry => {}
                }
            }
        }
        None
    }

    /// Moves inbox messages into the local queue; `false` on shutdown.
    fn drain_inbox(&self) -> bool {
        while let Ok(msg) = self.inbox.try_recv() {
            if !self.handle_msg(msg) {
                return false;
            }
        }
        true
    }

    fn handle_msg(&self, msg: Msg) -> bool {
        match msg {
            Msg::Run(task) => self.local.borrow_mut().push_back(task),
            Msg::Nudge => {
                self.shared.searching.fetch_sub(1, SeqCst);
            }
            Msg::Shutdown => return false,
            Msg::Start(task) => {
                self.handle.incoming.fetch_sub(1, Relaxed);
                self.local.borrow_mut().push_back(task);
            }
            Msg::Dump(ticket) => self.answer_dump(ticket),
        }
        true
    }

    /// Decides where an unstarted coroutine taken from this worker's own queues starts, since it
    /// stays wherever it starts: here (returns it), or on a less loaded worker (sends it there
    /// and returns `None`).
    ///
    /// It stays when its spawner parked joining it (spawn + join runs on one thread with no
    /// cross-thread traffic), or when no other worker is lighter by two coroutines, or by one
    /// and asleep. The load of a worker is the number of coroutines pinned to it plus those on
    /// their way, so a coroutine that spawns one child at a time and then waits (an accept loop)
    /// deals its children out evenly instead of pinning all of them next to itself. Two rather
    /// than one, so that equal loads do not trade coroutines back and forth.
    #[inline]
    fn place(&self, task: TaskRef) -> Option<TaskRef> {
        let workers = &self.shared.workers;
        if workers.len() == 1 || std::ptr::eq(task.header(), self.joining.get()) {
            return Some(task);
        }
        let mine = self.handle.load();
        let mut best: Option<(&Arc<WorkerHandle>, usize)> = None;
        for worker in workers {
            if Arc::ptr_eq(worker, &self.handle) {
                continue;
            }
            let load = worker.load();
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((worker, load));
            }
        }
        let (target, load) = best?;
        let lighter = load + 2 <= mine || (load < mine && target.sleeping.load(Relaxed));
        if !lighter {
            return Some(task);
        }
        target.incoming.fetch_add(1, Relaxed);
        target.send(Msg::Start(task));
        None
    }

    /// Dispatches readiness events already queued in the poller, without blocking: the busy
    /// worker's look at I/O on its fairness tick.
    fn poll_io_now(&self) {
        if !self.io_driver().is_some_and(|d| d.has_registrations()) {
            return;
        }
        let mut events = self.events.borrow_mut();
        if self
            .poll
            .borrow_mut()
            .poll(&mut events, Some(Duration::ZERO))
            .is_ok()
        {
            self.dispatch_io(&events);
        }
    }

    /// Sets the readiness the events report and wakes the coroutines waiting for it, wherever
    /// they are pinned.
    fn dispatch_io(&self, events: &mio::Events) {
        let Some(driver) = self.io_driver() else {
            return;
        };
        let mut wakes = self.io_wakes.borrow_mut();
        driver.dispatch(events, &mut wakes);
        for waiter in wakes.drain(..) {
            waiter.unpark();
        }
    }

    fn has_work(&self) -> bool {
        !self.inbox.is_empty()
            || !self.shared.injector.is_empty()
            || self.shared.stealers.iter().any(|s| !s.is_empty())
    }

    /// Waits until a message arrives or `deadline` passes; `false` on shutdown.
    fn sleep(&self, deadline: Option<Instant>) -> bool {
        self.handle.sleeping.store(true, SeqCst);
        self.shared.idle.fetch_add(1, SeqCst);
        fence(SeqCst);
        if self.has_work() {
            self.wake_up();
            return true;
        }
        self.idle_wait(deadline);
        self.wake_up();
        self.drain_inbox()
    }

    /// The one place a worker (or a `block_on` thread) blocks: in its poller, until another
    /// thread sends it a message (its `mio::Waker` fires), `deadline` passes, or (later) a
    /// registered source becomes ready. Returns early, spuriously, at most once per stale wake.
    ///
    /// No wake-up is lost: see `idle.rs` for the handshake (`PollGate`) and why.
    fn idle_wait(&self, deadline: Option<Instant>) {
        let block = || {
            let timeout = deadline.map(|d| {
                // Round up to whole milliseconds (epoll's unit) so the deadline has passed when
                // the poller returns, instead of a sub-millisecond busy loop before it. A short
                // wait also arms the wake timer, which returns from the poller at the deadline
                // itself; the rounded timeout stays as a backstop.
                let left = d.saturating_duration_since(Instant::now());
                if !left.is_zero()
                    && left < PRECISE_WAIT
                    && let Some(timer) = self
                        .wake_timer
                        .get_or_init(|| WakeTimer::new(&self.poll.borrow()))
                {
                    timer.arm(d, left);
                }
                let ms = left.as_nanos().div_ceil(1_000_000);
                Duration::from_millis(ms.min(u64::MAX as u128) as u64)
            });
            let mut events = self.events.borrow_mut();
            // An error is EINTR (a signal arrived): return and let the loop look again.
            if self.poll.borrow_mut().poll(&mut events, timeout).is_ok() {
                self.dispatch_io(&events);
            }
        };
        self.handle.polling.wait(|| self.inbox.is_empty(), block);
    }

    /// Leaves the idle set, unless a nudger already took us out of it.
    fn wake_up(&self) {
        if self.handle.sleeping.swap(false, SeqCst) {
            self.shared.idle.fetch_sub(1, SeqCst);
        }
    }

    /// Cancels every coroutine this worker owns, then drops its queues.
    ///
    /// Each started coroutine is resumed with `CANCEL`, which makes its suspension point unwind
    /// its stack (destructors run) up to the task body, which completes with `Cancelled`.
    /// Coroutines that never started just drop their closure. A coroutine that keeps suspending
    /// (it caught the unwind, or a destructor waits on something) is resumed again, up to
    /// `CANCEL_ATTEMPTS` times, then abandoned: completed with `Cancelled` and its stack leaked,
    /// never freed, since live borrows (a scoped thread, say) may still point into it. Built with
    /// `panic = "abort"`, nothing can unwind, so every started coroutine is abandoned that way.
    fn shutdown(&self) {
        let attempts = if cfg!(panic = "unwind") {
            CANCEL_ATTEMPTS
        } else {
            0
        };
        for attempt in 0..attempts {
            let started: Vec<TaskRef> = self.live.borrow().iter().map(|(_, t)| t.clone()).collect();
            if started.is_empty() {
                break;
            }
            // Unstarted coroutines still queued here never run: complete them with `Cancelled`
            // now, so that destructors joining them (in the coroutines cancelled below) see
            // them finish instead of waiting until after the last round.
            self.abandon_queued_unstarted();
            if attempt > 0 {
                // Still suspended after a cancellation: a destructor waits for something, often
                // a coroutine another worker is cancelling right now. Give that worker a moment
                // to finish it (its wake-up ends this wait early) before resuming again.
                self.idle_wait(Some(Instant::now() + SHUTDOWN_PATIENCE));
            }
            for task in started {
                if !task.header().state.is_done() {
                    let (task, _) = self.run_task(task, CANCEL);
                    drop(task);
                }
            }
        }
        let stubborn: Vec<TaskRef> = self.live.borrow().iter().map(|(_, t)| t.clone()).collect();
        for task in stubborn {
            tracing::warn!(
                id = task.header().id,
                "coroutine still suspended after {attempts} cancellations; its stack is leaked"
            );
            self.abandon(&task);
            drop(task);
        }
        // Descriptors still registered here belong to coroutines of other workers or to no
        // coroutine: nothing will poll them again. Their waiters learn it (`netpoll::Waited::Orphaned`).
        if let Some(driver) = self.io_driver() {
            let mut wakes = Vec::new();
            driver.close(&mut wakes);
            for waiter in wakes {
                waiter.unpark();
            }
        }
        // Whatever is still queued either never started or is already done. Dropping a closure
        // may spawn again (its captures' destructors run here), so drain until nothing is left.
        loop {
            let mut queued: Vec<TaskRef> = self.local.borrow_mut().drain(..).collect();
            queued.extend(self.lifo.take());
            if let Some(deque) = &self.deque {
                queued.extend(std::iter::from_fn(|| deque.pop()));
            }
            queued.extend(self.inbox.try_iter().filter_map(|msg| match msg {
                Msg::Run(task) | Msg::Start(task) => Some(task),
                Msg::Nudge | Msg::Shutdown | Msg::Dump(_) => None,
            }));
            if queued.is_empty() {
                break;
            }
            for task in queued {
                self.abandon(&task);
                drop(task);
            }
        }
        // Timers of coroutines that were abandoned instead of finishing.
        let timers = self.timers.borrow_mut().clear();
        drop(timers);
    }
}

/// Ends a task that will never run again (see [`Task::abandon`]): completes it with
/// `Cancelled`. A started task's stack is leaked, not unmapped: the coroutine is stopped in the
/// middle of its code, and borrows of its stack data (a scoped thread, a raw coroutine's caller)
/// may still be in use. Returns whether it was not done already.
pub(crate) fn abandon(task: &TaskRef) -> bool {
    let header = task.header();
    if !header.state.abandon() {
        return false;
    }
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| task.abandon())) {
        tracing::error!("dropping an abandoned coroutine's closure panicked");
        std::mem::forget(payload);
    }
    if let Some(stack) = header.ctx.take_stack() {
        std::mem::forget(stack);
    }
    stats::coroutine_finished_elsewhere();
    true
}

impl WorkerCore {
    /// The stack pool, handed back by a finished `block_on` for the next one.
    pub(crate) fn into_pool(self) -> StackPool {
        // Started coroutines would still own stacks; a finished main coroutine left none.
        debug_assert!(self.live.borrow().is_empty());
        self.pool.replace(StackPool::new(0))
    }
}

impl Shared {
    /// Wakes one idle worker to look for work to steal, unless one is already on its way.
    pub(crate) fn notify_idle(&self) {
        fence(SeqCst);
        if self.idle.load(SeqCst) == 0 || self.searching.load(SeqCst) != 0 {
            return;
        }
        for worker in &self.workers {
            if worker.sleeping.load(Relaxed)
                && worker
                    .sleeping
                    .compare_exchange(true, false, SeqCst, Relaxed)
                    .is_ok()
            {
                self.idle.fetch_sub(1, SeqCst);
                self.searching.fetch_add(1, SeqCst);
                worker.send(Msg::Nudge);
                return;
            }
        }
    }
}

/// Clears the thread's core pointer, and unregisters its pool and mode, when a worker or
/// `block_on` leaves.
pub(crate) struct EnterGuard {
    _pool: stack::Registration,
    _ffi_mode: ffi_mode::Registration,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        CORE.with(|c| c.set(std::ptr::null()));
    }
}
