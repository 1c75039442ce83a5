//! Tasks: a coroutine plus what the scheduler and its joiner need to know about it.
//!
//! The run-state and join words, and the protocols on them, are in `state.rs` (where loom
//! models check them). The move to `PARKED` is made by the worker after the coroutine has
//! switched away. Only the home worker ever resumes a task, and only from its scheduler loop, so
//! a task never runs twice at once.
//!
//! A detached task whose coroutine completes after its handle is gone drops its output itself,
//! still inside the coroutine (where a destructor may park, join or use channels); if the handle
//! is dropped after completion, the handle's drop does it, wherever the handle was.

use std::cell::{Cell, UnsafeCell};
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;

use super::park::{Parked, Unparker, WaitReason, park, raise_cancelled};
use super::state::{JoinState, RunState};
use super::worker::{WorkerHandle, schedule_woken};
use crate::coroutine::{Body, Cancelled, Context};

pub(crate) type TaskRef = Arc<dyn Task>;

/// The type-erased face of every task, as queues and wakers see it.
///
/// # Safety
/// Implementors are `#[repr(C)]` with a [`Header`] as their first field, so a pointer to the
/// task is a pointer to its header (see [`<dyn Task>::header`]): the scheduler reaches the header
/// of any task without a virtual call.
pub(crate) unsafe trait Task: Send + Sync + 'static {
    /// Completes the task with [`Cancelled`] without running any more of it, dropping its
    /// closure if it never started. (A started task's stack is then freed by the caller without
    /// unwinding: whatever lives on it is leaked.)
    fn abandon(&self);
}

impl dyn Task {
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: every Task implementor starts with its Header (the trait's contract), and the
        // reference lives as long as `self`.
        unsafe { &*(self as *const dyn Task as *const Header) }
    }
}

pub(crate) struct Header {
    pub(crate) id: u64,
    pub(crate) state: RunState,
    join: JoinState,
    /// What the task waits for while parked (a `WaitReason` as `u8`, 0 for nothing); written
    /// by the task itself before it parks, read by dumps.
    pub(crate) wait_reason: std::sync::atomic::AtomicU8,
    /// Home-thread only: the coroutine itself.
    pub(crate) ctx: Context,
    /// The worker the task is pinned to, recorded by that worker when the task first parks
    /// (only parked tasks are ever queued by others), and read by wakers after they see `PARKED`.
    home: UnsafeCell<Option<Arc<WorkerHandle>>>,
    /// Home-thread only: key in the home worker's table of started tasks.
    pub(crate) slot: Cell<usize>,
    /// Home-thread only: a blocking primitive's reusable per-coroutine waiter (channels keep
    /// theirs here; see `park::take_cached_waiter`). Emptied when the coroutine finishes, since
    /// the waiter refers back to the task.
    pub(crate) waiter_cache: Cell<Option<CachedWaiter>>,
    /// The `spawn` (or `block_on`) call that created the task (for dumps and spans).
    pub(crate) spawned_at: &'static std::panic::Location<'static>,
    /// Home-thread only: when the task last parked (`dump::stamp`), 0 for unknown.
    pub(crate) parked_since: Cell<u64>,
    /// Home-thread only: the task's `tracing` span, made when it starts if a subscriber wants
    /// it, and entered around each resume.
    pub(crate) span: std::cell::OnceCell<Box<tracing::Span>>,
    /// Home-thread only: the stack image of a compacted parked coroutine (see `grow::compact`).
    pub(crate) image: Cell<Option<crate::grow::compact::Image>>,
    /// Home-thread only: the usable bytes of the stack this parked coroutine holds, counted in
    /// its worker's parked-stack total (0 when not counted).
    pub(crate) parked_bytes: Cell<usize>,
    /// Home-thread only: counted among its worker's parked coroutines.
    pub(crate) parked: Cell<bool>,
    /// Home-thread only: its worker's park clock when it last parked holding its stack, and
    /// the ticket of its entry in the worker's aging queue (0: none; see
    /// `WorkerCore::release_idle`).
    pub(crate) parked_epoch: Cell<u32>,
    pub(crate) aging_ticket: Cell<u32>,
    /// Home-thread only: its start size came from its spawn site's learned size (or a probe of
    /// it), so its finish teaches the site something (`sched/sizing.rs`).
    pub(crate) sized: Cell<bool>,
    /// Home-thread only: the timer of the `park_until` it is parked in has fired (set by its
    /// worker's `fire_timers`, cleared by the parker when the park returns), so the parker
    /// learns it without looking the timer up (a cold slab entry when thousands sleep).
    pub(crate) timer_fired: Cell<bool>,
}

/// What [`Header::waiter_cache`] holds: the primitive's own type, behind `Any` (primitives live
/// above the scheduler).
pub(crate) type CachedWaiter = Arc<dyn std::any::Any + Send + Sync>;

impl Header {
    /// A header for a task created by the caller's `#[track_caller]` chain (`spawn`,
    /// `block_on`): that call is its spawn site.
    #[track_caller]
    pub(crate) fn new(id: u64, body: Body) -> Header {
        Header {
            id,
            state: RunState::new(),
            join: JoinState::new(),
            wait_reason: std::sync::atomic::AtomicU8::new(0),
            ctx: Context::new(body),
            home: UnsafeCell::new(None),
            slot: Cell::new(usize::MAX),
            waiter_cache: Cell::new(None),
            spawned_at: std::panic::Location::caller(),
            parked_since: Cell::new(0),
            span: std::cell::OnceCell::new(),
            image: Cell::new(None),
            parked_bytes: Cell::new(0),
            parked: Cell::new(false),
            parked_epoch: Cell::new(0),
            aging_ticket: Cell::new(0),
            sized: Cell::new(false),
            timer_fired: Cell::new(false),
        }
    }

    #[inline]
    /// Records the worker the task is pinned to, unless already recorded.
    ///
    /// # Safety
    /// Called by that worker, while the task is not `PARKED`.
    pub(crate) unsafe fn set_home(&self, home: &Arc<WorkerHandle>) {
        // SAFETY: wakers read `home` only after seeing PARKED (Acquire), which the worker stores
        // (Release) after this write; before that, only this worker touches it.
        // Only the check goes through a shared read: a `&mut` is made only to fill an empty
        // slot, which no waker can be reading (they read it only after PARKED).
        if unsafe { (*self.home.get()).is_none() } {
            // SAFETY: as above: empty, so unobserved.
            unsafe { *self.home.get() = Some(home.clone()) };
        }
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.join.is_complete()
    }

    /// Marks the output written and wakes the joiner, if one is waiting. Returns `true` when the
    /// handle was dropped first: nobody will take the output, and the caller must drop it.
    ///
    /// # Safety
    /// The output must be written, and this called once.
    #[must_use = "an orphaned output must be dropped by the completer"]
    pub(crate) unsafe fn complete(&self) -> bool {
        // SAFETY: forwarded contract.
        unsafe { self.join.complete() }
    }

    /// Blocks the caller (parks the calling coroutine, or the OS thread outside coroutines) until
    /// [`Header::complete`] has run.
    pub(crate) fn wait_complete(&self) {
        if self.is_complete() {
            return;
        }
        // SAFETY: one joiner per task (`join` consumes its handle, so it never detaches either).
        if !unsafe { self.join.register(Unparker::current()) } {
            return;
        }
        if let Some(core) = super::worker::WorkerCore::current() {
            core.note_joining(self);
        }
        while !self.is_complete() {
            if park(WaitReason::Join) == Parked::Cancelled {
                // The completer may still take and wake the waiter; it only reads the slot.
                raise_cancelled();
            }
        }
    }
}

/// Makes a parked task runnable on its home worker, or leaves a permit for its next park.
pub(crate) fn wake(task: &TaskRef) {
    if task.header().state.wake() {
        // SAFETY: this wake just moved the task out of PARKED.
        schedule_woken(unsafe { woken_home(task.header()) }, task.clone());
    }
}

/// [`wake`] for a caller that gives up its reference (a fired timer): saves the count's
/// increment and decrement when the caller is the task's home worker (always, for a timer).
#[inline]
pub(crate) fn wake_owned(task: TaskRef) {
    if !task.header().state.wake() {
        return;
    }
    // SAFETY: this wake just moved the task out of PARKED.
    let home = unsafe { woken_home(task.header()) };
    match super::worker::home_core(home) {
        Some(core) => core.push_woken(task),
        // `home` borrows from `task`, so the queued reference is a clone.
        None => schedule_woken(home, task.clone()),
    }
}

/// The home worker of a task a wake has just moved out of PARKED.
///
/// # Safety
/// The caller's `RunState::wake` on this task returned `true` (it found the task PARKED).
#[inline]
unsafe fn woken_home(header: &Header) -> &Arc<WorkerHandle> {
    // SAFETY: per the contract the task was PARKED, so its home worker set `home` before
    // storing PARKED (Release), which the wake's Acquire synchronises with; nothing writes it
    // again while the task is queued.
    match unsafe { (*header.home.get()).as_ref() } {
        Some(home) => home,
        None => unreachable!("a parked task always has a home worker"),
    }
}

/// Cache lines the reference counts and the header span (a line more when the allocation is not
/// line-aligned).
const HEADER_LINES: usize =
    (2 * std::mem::size_of::<usize>() + std::mem::size_of::<Header>()).div_ceil(64);

/// Starts loading the task's header into the cache, before a batch of wake-ups or resumes gets
/// to it.
#[inline]
pub(crate) fn prefetch(task: &TaskRef) {
    // The allocation starts with the two reference counts.
    let start = Arc::as_ptr(task) as *const u8 as usize - 2 * std::mem::size_of::<usize>();
    crate::arch::prefetch::<HEADER_LINES>(start);
}

/// What a spawned closure turns into.
enum Stage<F, T> {
    Pending(F),
    Running,
    Finished(thread::Result<T>),
    Taken,
}

/// A spawned task: header and closure/output in one allocation.
#[repr(C)]
pub(crate) struct TaskCell<F, T> {
    header: Header,
    stage: UnsafeCell<Stage<F, T>>,
}

// SAFETY: `stage` is touched by the home worker while the task runs, and by the joiner only after
// COMPLETE (Acquire), which the task sets after its last touch (Release); the header's
// non-atomic parts are home-thread only (see `Header`). F and T cross threads, so they must be
// Send.
unsafe impl<F: Send, T: Send> Send for TaskCell<F, T> {}
// SAFETY: as above; shared references from several threads only use the atomics and follow the
// protocol above for everything else.
unsafe impl<F: Send, T: Send> Sync for TaskCell<F, T> {}

impl<F, T> TaskCell<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    #[track_caller]
    pub(crate) fn new(id: u64, f: F) -> TaskCell<F, T> {
        TaskCell {
            header: Header::new(id, Self::run_body),
            stage: UnsafeCell::new(Stage::Pending(f)),
        }
    }

    /// The body of the task's coroutine.
    ///
    /// # Safety
    /// `data` is the `TaskCell<F, T>` whose coroutine is running, and this runs once.
    unsafe fn run_body(data: *const ()) {
        // SAFETY: per the contract.
        let cell = unsafe { &*(data as *const TaskCell<F, T>) };
        // SAFETY: the task is running on its home worker: nobody else touches `stage` now.
        let stage = unsafe { mem::replace(&mut *cell.stage.get(), Stage::Running) };
        let Stage::Pending(f) = stage else {
            unreachable!("a task body runs once")
        };
        let output = panic::catch_unwind(AssertUnwindSafe(f));
        // SAFETY: as above; the joiner reads it only after `complete`.
        unsafe { *cell.stage.get() = Stage::Finished(output) };
        // SAFETY: the output is written; this is the only call.
        if unsafe { cell.header.complete() } {
            cell.drop_orphaned_output();
        }
    }

    /// Drops the output of a detached task, inside its coroutine, where its destructor may park.
    /// Out of line: the body's frame stays small (it is the first frame on a 4 KiB stack).
    #[cold]
    #[inline(never)]
    fn drop_orphaned_output(&self) {
        // SAFETY: complete and detached: the handle is gone, so nobody else touches `stage`.
        let stage = unsafe { mem::replace(&mut *self.stage.get(), Stage::Taken) };
        drop_logging_panics(self.header.id, stage);
    }

    /// The output, once complete.
    ///
    /// # Safety
    /// `is_complete()` must have returned true, and this is called once.
    unsafe fn take_output(&self) -> thread::Result<T> {
        // SAFETY: complete, so the task no longer touches `stage` (see the Send impl).
        match unsafe { mem::replace(&mut *self.stage.get(), Stage::Taken) } {
            Stage::Finished(output) => output,
            _ => unreachable!("output taken before completion or twice"),
        }
    }
}

// SAFETY: TaskCell is repr(C) with the header first.
unsafe impl<F, T> Task for TaskCell<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn abandon(&self) {
        // SAFETY: the caller is the home worker (or, for a task that never started, the scheduler
        // that holds it), and the coroutine will not run again, so nothing else touches `stage`.
        let stage = unsafe { &mut *self.stage.get() };
        if !matches!(stage, Stage::Pending(_) | Stage::Running) {
            return;
        }
        // The closure is dropped only after the task is complete: a destructor that panics must
        // not leave its joiner waiting for ever.
        let closure = mem::replace(stage, Stage::Finished(Err(Box::new(Cancelled))));
        // SAFETY: the output is written; Pending or Running means `complete` never ran.
        if unsafe { self.header.complete() } {
            // SAFETY: detached and complete: nobody else touches `stage`.
            let output = unsafe { mem::replace(&mut *self.stage.get(), Stage::Taken) };
            drop(output);
        }
        drop_logging_panics(self.header.id, closure);
    }
}

impl<F, T> Drop for TaskCell<F, T> {
    /// The last reference to a task may be dropped by the scheduler, on a worker's own stack: a
    /// closure or output whose destructor panics there must not take the worker down (everything
    /// pinned to it would hang). The panic is caught and logged.
    fn drop(&mut self) {
        let stage = mem::replace(self.stage.get_mut(), Stage::Taken);
        drop_logging_panics(self.header.id, stage);
    }
}

/// Drops a task's closure or output, catching and logging a panic from its destructor (the
/// scheduler may be the one dropping it, on a worker's own stack).
fn drop_logging_panics<F, T>(id: u64, stage: Stage<F, T>) {
    if matches!(stage, Stage::Running | Stage::Taken) {
        return;
    }
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(stage))) {
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("<non-string payload>");
        tracing::error!(
            id,
            "dropping a coroutine's closure or result panicked: {msg}"
        );
        // The payload itself may panic when dropped; leak it rather than risk that.
        mem::forget(payload);
    }
}

/// Typed access to a task's output, for [`JoinHandle`].
trait Output<T>: Task {
    /// # Safety
    /// As [`TaskCell::take_output`].
    unsafe fn take(&self) -> thread::Result<T>;
}

impl<F, T> Output<T> for TaskCell<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    /// # Safety
    /// As [`TaskCell::take_output`].
    unsafe fn take(&self) -> thread::Result<T> {
        // SAFETY: forwarded contract.
        unsafe { self.take_output() }
    }
}

/// An owned permission to wait for a spawned coroutine and take its result.
///
/// Dropping the handle detaches the coroutine: it keeps running, and its result is dropped when
/// it finishes.
pub struct JoinHandle<T: 'static> {
    task: Arc<dyn Output<T>>,
}

impl<T: Send + 'static> JoinHandle<T> {
    pub(crate) fn new<F>(task: Arc<TaskCell<F, T>>) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
    {
        JoinHandle { task }
    }

    /// Waits for the coroutine to finish and returns its result, or the panic payload it
    /// unwound with (or [`Cancelled`] if its runtime shut down first).
    ///
    /// Inside a coroutine this parks the caller, letting its worker run others. Outside any
    /// coroutine it blocks the OS thread.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// pagurus::run(|| {
    ///     let ok = pagurus::spawn(|| 6 * 7);
    ///     assert_eq!(ok.join().unwrap(), 42);
    ///     let boom = pagurus::spawn(|| -> u32 { std::panic::resume_unwind(Box::new("boom")) });
    ///     assert_eq!(*boom.join().unwrap_err().downcast::<&str>().unwrap(), "boom");
    /// });
    /// ```
    pub fn join(self) -> thread::Result<T> {
        let this = mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never used or dropped again, so the Arc is moved out exactly once.
        let task = unsafe { std::ptr::read(&this.task) };
        let header = (&*task as &dyn Task).header();
        header.wait_complete();
        // SAFETY: complete; `join` consumes the only handle, so this is the only take.
        unsafe { task.take() }
    }

    /// Whether the coroutine has finished (its result is ready for [`JoinHandle::join`]).
    pub fn is_finished(&self) -> bool {
        self.header().is_complete()
    }

    /// The coroutine's id, unique in the process.
    pub fn id(&self) -> u64 {
        self.header().id
    }
}

impl<T: 'static> JoinHandle<T> {
    fn header(&self) -> &Header {
        (&*self.task as &dyn Task).header()
    }
}

impl<T: 'static> Drop for JoinHandle<T> {
    /// Detaches the coroutine. If it has finished already, its result is dropped here; otherwise
    /// the coroutine drops it itself when it finishes.
    fn drop(&mut self) {
        // SAFETY: one handle per task, dropped once, and a joined handle is not dropped.
        if unsafe { self.header().join.detach() } {
            // SAFETY: complete (Acquire in `detach`), and the handle was never joined (join does
            // not drop it), so the output is still there and this is the only take.
            drop(unsafe { self.task.take() });
        }
    }
}

impl<T: 'static> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header = self.header();
        f.debug_struct("JoinHandle")
            .field("id", &header.id)
            .field("finished", &header.is_complete())
            .finish()
    }
}
