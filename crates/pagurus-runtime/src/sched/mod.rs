//! The scheduler: runtimes, workers, spawning, yielding and parking.
//!
//! A [`Runtime`] owns `workers` OS threads (see `worker` for their queues and sleep protocol).
//! [`Runtime::block_on`] runs its closure as the *main coroutine* on the calling thread, which
//! does nothing else meanwhile: the closure need not be `Send` or `'static`, because it never
//! leaves that thread and `block_on` does not return before it finishes.
//!
//! # Soundness of pinning
//!
//! A coroutine's stack may hold `!Send` values and references into its thread's thread-locals
//! (the compiler may even cache a thread-local's address in a register across a suspension).
//! So a coroutine must run on one thread for its whole life. The scheduler guarantees it: a task
//! is pinned to the worker that first runs it (`Header::set_home`), every later wake-up queues it
//! on that worker (`schedule_woken`), and only that worker's loop resumes it. What may move
//! between threads before the first run is only the `Send` closure.
//!
//! # Shutdown
//!
//! `block_on` returns as soon as its closure does; coroutines it spawned keep running on the
//! workers while the `Runtime` lives, and a later `block_on` may join them. Dropping the runtime
//! cancels what is left: a suspended coroutine is resumed one last time to unwind its stack (its
//! destructors run, its `join` gets [`Cancelled`](crate::Cancelled)), an unstarted one drops its
//! closure. Every stack is then unmapped or pooled, and the pools go with the workers. A coroutine
//! that is running when the drop starts (say, in a loop that never yields) delays the drop until
//! it suspends.

mod dump_signal;
mod idle;
pub(crate) mod netpoll;
pub(crate) mod park;
mod sizing;
mod snapshot;
mod state;
mod task;
mod timer;
mod worker;

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crossbeam_deque::{Injector, Steal, Stealer, Worker as Deque};

pub use snapshot::dump;
pub use task::JoinHandle;
use task::{Header, Task, TaskCell, TaskRef};
use worker::{Msg, WorkerCore, WorkerHandle};

use crate::coroutine::{Cancelled, Context, Suspend, current_context, suspend};
use crate::ffi_mode::{AtomicMode, Mode};
use crate::stack::{
    DEFAULT_MAX_STACK_SIZE, DEFAULT_POOL_BYTES, MAX_STACK_SIZE_LIMIT, PAGE_SIZE, StackPool,
    validate_stack_size,
};

/// The most worker threads a runtime accepts. Each is an OS thread with its own poller, queues
/// and stack pool; far beyond any machine's useful parallelism, far below what exhausts memory
/// (`workers(1 << 28)` once aborted allocating its queues).
pub const MAX_WORKERS: usize = 1024;

/// Settings fixed when a runtime is built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) initial_stack_size: usize,
    pub(crate) max_stack_size: usize,
    pub(crate) stack_pool_bytes: usize,
    pub(crate) stack_quarantine: bool,
    /// Usable stack bytes a worker's parked coroutines may hold before the next one to park is
    /// compacted; `usize::MAX` turns compaction off.
    pub(crate) parked_stack_budget: usize,
    /// Whether spawn sites learn their coroutines' start size (`sched/sizing.rs`).
    pub(crate) adaptive_stacks: bool,
    /// How long a coroutine stays parked on its stack before it is compacted however much
    /// budget is left; `None`: only the budget compacts.
    pub(crate) idle_compaction: Option<Duration>,
}

impl Config {
    pub(crate) fn growth_limits(&self) -> crate::coroutine::GrowthLimits {
        crate::coroutine::GrowthLimits {
            max_size: self.max_stack_size,
            quarantine: self.stack_quarantine,
        }
    }
}

/// What the workers of one runtime share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) workers: Vec<Arc<WorkerHandle>>,
    pub(crate) stealers: Vec<Stealer<TaskRef>>,
    /// Spawns from threads that are not workers.
    pub(crate) injector: Injector<TaskRef>,
    /// Workers asleep in their poller (`idle_wait`).
    pub(crate) idle: AtomicUsize,
    /// Nudges sent and not yet received.
    pub(crate) searching: AtomicUsize,
    /// Stack pools of `block_on` threads, kept between calls.
    main_pools: Mutex<Vec<StackPool>>,
    /// How foreign calls made in this runtime run (see `pagurus::ffi`).
    pub(crate) ffi_mode: AtomicMode,
    /// Round-robin choice of the worker poller that descriptors used on `block_on` threads
    /// register with (see `io`).
    pub(crate) next_io_worker: AtomicUsize,
    /// Set when the runtime starts dropping, before any worker is told to shut down.
    pub(crate) stopping: AtomicBool,
}

impl Shared {
    /// Completes every task in the injector with `Cancelled` (they never started).
    fn abandon_injected(&self) {
        loop {
            match self.injector.steal() {
                Steal::Success(task) => {
                    worker::abandon(&task);
                }
                Steal::Retry => {}
                Steal::Empty => break,
            }
        }
    }
}

/// Configures and builds a [`Runtime`].
///
/// # Accepted ranges
///
/// [`build`](Builder::build) checks every setting and fails with
/// [`io::ErrorKind::InvalidInput`], naming the parameter and its range, when one is out of it:
///
/// | setting | accepted | default |
/// |---|---|---|
/// | [`workers`](Builder::workers) | 1 to [`MAX_WORKERS`] (1024) | available parallelism, at most 1024 |
/// | [`initial_stack_size`](Builder::initial_stack_size) | a power of two from 4096 to [`MAX_STACK_SIZE_LIMIT`](crate::stack::MAX_STACK_SIZE_LIMIT) (2^44, 16 TiB) | 4096 |
/// | [`max_stack_size`](Builder::max_stack_size) | a power of two from `initial_stack_size` to 16 TiB | 1 GiB |
/// | [`stack_pool_bytes`](Builder::stack_pool_bytes) | any | 16 MiB |
/// | [`ffi_mode`](Builder::ffi_mode) | any mode; `Reserve { bytes }` at most half of `max_stack_size` | `PAGURUS_FFI_MODE`, else `Switch` |
/// | [`dump_on_signal`](Builder::dump_on_signal) | `None`, or a signal other than `SIGSEGV`, `SIGBUS`, `SIGKILL`, `SIGSTOP` | `PAGURUS_DUMP_SIGNAL`, else `None` |
///
/// Stacks are reserved whole in the address space (128 TiB per process; untouched pages cost no
/// memory), which is what bounds the stack sizes: every live coroutine holds `initial_stack_size`
/// of it at least, and a growth holds the old and the new stack for a moment. The environment
/// variables the runtime reads (`PAGURUS_FFI_MODE`, `PAGURUS_STACK_QUARANTINE`,
/// `PAGURUS_DUMP_SIGNAL`) are checked the
/// same way when they are consulted: an invalid value fails `build` with `InvalidInput` listing
/// the accepted values.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// let rt = pagurus::Runtime::builder()
///     .workers(2)
///     .initial_stack_size(16 * 1024)
///     .build()
///     .unwrap();
/// assert_eq!(rt.block_on(|| pagurus::spawn(|| 2 + 2).join().unwrap()), 4);
///
/// let err = pagurus::Runtime::builder().initial_stack_size(5000).build().unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// assert!(err.to_string().contains("initial_stack_size"));
/// let err = pagurus::Runtime::builder().workers(1 << 20).build().unwrap_err();
/// assert!(err.to_string().contains("workers must be from 1 to 1024"));
/// ```
#[derive(Clone, Debug)]
#[must_use = "a Builder does nothing until `build` is called"]
pub struct Builder {
    workers: Option<usize>,
    initial_stack_size: usize,
    max_stack_size: usize,
    stack_pool_bytes: usize,
    stack_quarantine: Option<bool>,
    ffi_mode: Option<Mode>,
    dump_signal: Option<Option<libc::c_int>>,
    parked_stack_budget: Option<usize>,
    idle_compaction: Option<Duration>,
    adaptive_stacks: Option<bool>,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            workers: None,
            initial_stack_size: PAGE_SIZE,
            max_stack_size: DEFAULT_MAX_STACK_SIZE,
            stack_pool_bytes: DEFAULT_POOL_BYTES,
            stack_quarantine: None,
            ffi_mode: None,
            dump_signal: None,
            parked_stack_budget: None,
            idle_compaction: Some(DEFAULT_IDLE_COMPACTION),
            adaptive_stacks: None,
        }
    }
}

impl Builder {
    /// Number of worker threads, from 1 to [`MAX_WORKERS`] (1024); default: the machine's
    /// available parallelism (at most 1024).
    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = Some(n);
        self
    }

    /// Usable bytes of a new coroutine's stack: a power of two from 4096 (the default) to 16 TiB.
    pub fn initial_stack_size(mut self, bytes: usize) -> Builder {
        self.initial_stack_size = bytes;
        self
    }

    /// Largest size a coroutine's stack may grow to: a power of two from the initial size to
    /// 16 TiB. Default: 1 GiB.
    pub fn max_stack_size(mut self, bytes: usize) -> Builder {
        self.max_stack_size = bytes;
        self
    }

    /// Usable bytes of finished coroutines' stacks each worker keeps mapped for reuse
    /// (default 16 MiB; 0 unmaps every stack as soon as its coroutine finishes).
    pub fn stack_pool_bytes(mut self, bytes: usize) -> Builder {
        self.stack_pool_bytes = bytes;
        self
    }

    /// Quarantine the stacks coroutines move out of when they grow: instead of being reused, an
    /// old stack's memory is released and its mapping made inaccessible, so a stale pointer into
    /// it (one kept in the heap, a global or another thread, which the move cannot fix) faults
    /// and is reported with the coroutine and the instruction, instead of reading whatever reused
    /// the memory. Default: on in debug builds, off in release; the environment variable
    /// `PAGURUS_STACK_QUARANTINE` (`1`, `0`, `true`, `false`, `on`, `off`) overrides the default,
    /// and any other value makes `build` fail with `InvalidInput`.
    pub fn stack_quarantine(mut self, on: bool) -> Builder {
        self.stack_quarantine = Some(on);
        self
    }

    /// Usable stack bytes each worker's parked coroutines may hold. When a coroutine parks and
    /// the stacks of its worker's parked coroutines already add up to this, its live bytes are
    /// copied into an exactly sized heap buffer and its stack is given back (it is **compacted**;
    /// it gets a stack again, possibly a smaller one, when it is woken). 0 compacts every parked
    /// coroutine. Default: 16 MiB, or the `PAGURUS_PARKED_STACK_BUDGET` environment variable
    /// (bytes, or `off`). See [`Builder::compaction`] to turn it off.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let rt = pagurus::Runtime::builder().parked_stack_budget(0).build().unwrap();
    /// let before = pagurus::stats().compactions;
    /// rt.block_on(|| pagurus::time::sleep(std::time::Duration::from_millis(1)));
    /// assert!(pagurus::stats().compactions > before);
    /// ```
    pub fn parked_stack_budget(mut self, bytes: usize) -> Builder {
        self.parked_stack_budget = Some(bytes);
        self
    }

    /// How long a coroutine may stay parked on its stack before it is compacted even when its
    /// worker is under [budget](Builder::parked_stack_budget): an idle connection's coroutine
    /// then holds a heap image of its live bytes (a few hundred bytes) instead of a stack, while
    /// coroutines that park and wake more often than this never pay for compaction. Checked a
    /// few times per period, so it happens after between three quarters and one and a quarter
    /// of it. Default: one second; `None` leaves compaction to the budget alone. Off, like the
    /// budget, when [`compaction`](Builder::compaction) is off.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// use std::time::Duration;
    /// let rt = pagurus::Runtime::builder()
    ///     .workers(1)
    ///     .idle_compaction(Some(Duration::from_millis(20)))
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(|| {
    ///     // Far under the budget, but parked for longer than 20 ms.
    ///     let h = pagurus::spawn(|| pagurus::time::sleep(Duration::from_millis(500)));
    ///     loop {
    ///         let dump = pagurus::dump();
    ///         let c = dump.coroutines().iter().find(|c| c.id == h.id());
    ///         let c = c.expect("still sleeping: it should have been compacted by now");
    ///         if c.stack.size == 0 && c.stack.used > 0 {
    ///             break; // compacted: its live bytes in a heap image, no stack held
    ///         }
    ///         pagurus::time::sleep(Duration::from_millis(5));
    ///     }
    ///     h.join().unwrap();
    /// });
    /// ```
    pub fn idle_compaction(mut self, after: Option<Duration>) -> Builder {
        self.idle_compaction = after;
        self
    }

    /// Whether a spawn site whose coroutines keep growing starts its next ones on the size they
    /// grew to (learned per worker and per `spawn` call, at most 256 KiB; every 64th coroutine
    /// of such a site starts small again to see whether the site still needs it). Default: on,
    /// or the `PAGURUS_ADAPTIVE_STACKS` environment variable (`1`, `0`, `true`, `false`, `on`,
    /// `off`). `stats().adaptive_starts` counts the coroutines that started larger.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let rt = pagurus::Runtime::builder().adaptive_stack_size(false).build().unwrap();
    /// let sizes: Vec<usize> = rt.block_on(|| {
    ///     (0..8)
    ///         .map(|_| {
    ///             pagurus::spawn(|| {
    ///                 let start = pagurus::stack::current().unwrap().size;
    ///                 pagurus::stack::ensure(32 << 10); // needs 32 KiB every time
    ///                 start
    ///             })
    ///             .join()
    ///             .unwrap()
    ///         })
    ///         .collect()
    /// });
    /// assert!(sizes.iter().all(|&s| s == 4096), "always the initial size: {sizes:?}");
    /// ```
    pub fn adaptive_stack_size(mut self, on: bool) -> Builder {
        self.adaptive_stacks = Some(on);
        self
    }

    /// Whether parked coroutines may be compacted at all (see
    /// [`Builder::parked_stack_budget`]); `false` keeps every parked coroutine on its stack.
    pub fn compaction(mut self, on: bool) -> Builder {
        self.parked_stack_budget = Some(if on {
            self.parked_stack_budget
                .filter(|&b| b != usize::MAX)
                .unwrap_or(DEFAULT_PARKED_STACK_BUDGET)
        } else {
            usize::MAX
        });
        self
    }

    /// How foreign calls (`pagurus::ffi::call`) run in this runtime until changed with
    /// `pagurus::ffi::set_default_mode`. Default: the `PAGURUS_FFI_MODE` environment variable
    /// (`switch`, `direct`, `reserve:<size>` such as `reserve:256k`, or `offload`) if set, else
    /// `Switch`. A `Reserve` may ask for at most half of `max_stack_size`, so that the reserve
    /// and the caller's frames fit in a stack of the largest size.
    pub fn ffi_mode(mut self, mode: Mode) -> Builder {
        self.ffi_mode = Some(mode);
        self
    }

    /// Prints a coroutine dump ([`dump()`]) to stderr whenever the process receives `signal`
    /// (`None`: never; the default is the `PAGURUS_DUMP_SIGNAL` environment variable, `SIGUSR1`,
    /// `SIGQUIT` or `off`, and any other value makes `build` fail with `InvalidInput`). The
    /// signal handler only wakes a thread of the runtime (`pagurus-dump`), which takes the dump
    /// and prints it; the handler stays installed for the life of the process. `SIGSEGV` and
    /// `SIGBUS` (the stack growth handler's), `SIGKILL` and `SIGSTOP` are refused.
    ///
    /// ```
    /// # use pagurus_runtime as pagurus;
    /// let rt = pagurus::Runtime::builder().dump_on_signal(Some(libc::SIGUSR1)).build();
    /// assert!(rt.is_ok());
    /// let err = pagurus::Runtime::builder().dump_on_signal(Some(libc::SIGSEGV)).build();
    /// assert_eq!(err.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    /// ```
    pub fn dump_on_signal(mut self, signal: Option<libc::c_int>) -> Builder {
        self.dump_signal = Some(signal);
        self
    }

    /// Starts the worker threads.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] naming the parameter when a setting is out of
    /// range, or with the OS error when a thread cannot be started.
    pub fn build(self) -> io::Result<Runtime> {
        let workers = match self.workers {
            Some(n) if (1..=MAX_WORKERS).contains(&n) => n,
            Some(n) => {
                return Err(invalid(
                    "workers",
                    &format!("must be from 1 to {MAX_WORKERS}, got {n}"),
                ));
            }
            None => thread::available_parallelism().map_or(1, |n| n.get().min(MAX_WORKERS)),
        };
        validate_stack_size("initial_stack_size", self.initial_stack_size)?;
        validate_stack_size("max_stack_size", self.max_stack_size)?;
        if self.max_stack_size < self.initial_stack_size {
            return Err(invalid(
                "max_stack_size",
                &format!(
                    "must be a power of two from initial_stack_size ({} bytes) to \
                     {MAX_STACK_SIZE_LIMIT} (16 TiB) bytes, got {}",
                    self.initial_stack_size, self.max_stack_size
                ),
            ));
        }
        let ffi_mode = match self.ffi_mode {
            Some(mode) => AtomicMode::new(mode, self.max_stack_size)
                .map_err(|e| invalid("ffi_mode", &e.to_string()))?,
            None => AtomicMode::new(crate::ffi_mode::mode_from_env()?, self.max_stack_size)
                .map_err(|e| invalid("PAGURUS_FFI_MODE:", &e.to_string()))?,
        };
        let stack_quarantine = match self.stack_quarantine {
            Some(on) => on,
            None => crate::grow::quarantine::default_enabled()?,
        };
        let dump_signal = match self.dump_signal {
            Some(signal) => signal,
            None => dump_signal::signal_from_env()?,
        };
        if let Some(signal) = dump_signal {
            dump_signal::validate(signal)?;
        }
        let config = Config {
            initial_stack_size: self.initial_stack_size,
            max_stack_size: self.max_stack_size,
            stack_pool_bytes: self.stack_pool_bytes,
            stack_quarantine,
            parked_stack_budget: match self.parked_stack_budget {
                Some(bytes) => bytes,
                None => parked_stack_budget_from_env()?,
            },
            adaptive_stacks: match self.adaptive_stacks {
                Some(on) => on,
                None => crate::env::flag("PAGURUS_ADAPTIVE_STACKS", true, "on")?,
            },
            idle_compaction: self.idle_compaction.filter(|after| !after.is_zero()),
        };
        let config = Config {
            idle_compaction: config
                .idle_compaction
                .filter(|_| config.parked_stack_budget != usize::MAX),
            ..config
        };
        // Code loaded since the last runtime started needs its unwind information known before
        // a coroutine may grow through its frames (the fault handler cannot look it up).
        crate::grow::frames::refresh_objects();
        crate::stack::prepare()?;
        let deques: Vec<Deque<TaskRef>> = (0..workers).map(|_| Deque::new_fifo()).collect();
        let (senders, inboxes): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| crossbeam_channel::unbounded::<Msg>())
            .unzip();
        let polls = (0..workers)
            .map(|_| mio::Poll::new())
            .collect::<io::Result<Vec<_>>>()?;
        let handles = senders
            .into_iter()
            .zip(&polls)
            .map(|(tx, poll)| WorkerHandle::new(tx, poll, true).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            config,
            workers: handles,
            stealers: deques.iter().map(Deque::stealer).collect(),
            injector: Injector::new(),
            idle: AtomicUsize::new(0),
            searching: AtomicUsize::new(0),
            main_pools: Mutex::new(Vec::new()),
            ffi_mode,
            next_io_worker: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
        });
        let mut runtime = Runtime {
            shared: shared.clone(),
            threads: Vec::with_capacity(workers),
        };
        for (index, ((deque, inbox), poll)) in
            deques.into_iter().zip(inboxes).zip(polls).enumerate()
        {
            let shared = shared.clone();
            let thread = thread::Builder::new()
                .name(format!("pagurus-worker-{index}"))
                .spawn(move || {
                    let handle = shared.workers[index].clone();
                    let pool = StackPool::new(shared.config.stack_pool_bytes);
                    WorkerCore::new(shared, Some(index), handle, inbox, Some(deque), pool, poll)
                        .run_worker();
                })?;
            runtime.threads.push(thread);
        }
        for (index, worker) in shared.workers.iter().enumerate() {
            snapshot::register(worker, Some(index));
        }
        if let Some(signal) = dump_signal {
            dump_signal::install(signal)?;
        }
        tracing::debug!(workers, ?config, "runtime started");
        Ok(runtime)
    }
}

/// Parked-stack budget per worker when neither the builder nor the environment says: 16 MiB.
const DEFAULT_PARKED_STACK_BUDGET: usize = 16 << 20;

/// How long a coroutine stays parked on its stack, by default, before it is compacted anyway.
const DEFAULT_IDLE_COMPACTION: Duration = Duration::from_secs(1);

/// `PAGURUS_PARKED_STACK_BUDGET`: bytes, or `off`; the default when unset.
fn parked_stack_budget_from_env() -> io::Result<usize> {
    const VAR: &str = "PAGURUS_PARKED_STACK_BUDGET";
    match std::env::var(VAR) {
        Err(std::env::VarError::NotPresent) => Ok(DEFAULT_PARKED_STACK_BUDGET),
        Ok(v) if v.trim().eq_ignore_ascii_case("off") => Ok(usize::MAX),
        Ok(v) => v.trim().parse::<usize>().map_err(|_| {
            invalid(
                VAR,
                &format!("must be a number of bytes or `off`, got {v:?}"),
            )
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(invalid(
            VAR,
            "is not valid UTF-8: expected a number of bytes or `off`",
        )),
    }
}

fn invalid(param: &str, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("{param} {what}"))
}

/// A pool of worker threads running coroutines.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// let rt = pagurus::Runtime::new().unwrap();
/// let mut total = 0; // borrowed by the main coroutine: block_on needs neither Send nor 'static
/// rt.block_on(|| {
///     let handles: Vec<_> = (1..=10).map(|i| pagurus::spawn(move || i * i)).collect();
///     total = handles.into_iter().map(|h| h.join().unwrap()).sum();
/// });
/// assert_eq!(total, 385);
/// ```
pub struct Runtime {
    shared: Arc<Shared>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Runtime {
    /// A runtime with the default settings (see [`Builder`]).
    pub fn new() -> io::Result<Runtime> {
        Builder::default().build()
    }

    /// A builder to configure a runtime.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Runs `f` as a coroutine on the calling thread, with this runtime's workers available to
    /// the coroutines it spawns, and returns what `f` returns. A panic in `f` resumes here.
    ///
    /// Several threads may call `block_on` on one runtime at once.
    ///
    /// # Panics
    ///
    /// When called from inside a coroutine: it would block that coroutine's worker thread.
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T,
    {
        assert!(
            WorkerCore::current().is_none(),
            "Runtime::block_on called from inside a pagurus coroutine; \
             spawn the work and join it instead"
        );
        let (tx, inbox) = crossbeam_channel::unbounded();
        let poll = mio::Poll::new()
            .unwrap_or_else(|err| panic!("Runtime::block_on: cannot create a poller: {err}"));
        let handle = WorkerHandle::new(tx, &poll, false)
            .unwrap_or_else(|err| panic!("Runtime::block_on: cannot create a poller waker: {err}"));
        let config = self.shared.config;
        let pool = lock(&self.shared.main_pools)
            .pop()
            .unwrap_or_else(|| StackPool::new(config.stack_pool_bytes));
        let handle = Arc::new(handle);
        snapshot::register(&handle, None);
        let core = WorkerCore::new(self.shared.clone(), None, handle, inbox, None, pool, poll);
        let mut slot = MainSlot {
            f: Some(f),
            output: None,
        };
        let main = MainTask {
            header: Header::new(core.new_coroutine_id(), run_main::<F, T>),
            slot: (&raw mut slot).cast(),
        };
        core.run_main(Arc::new(main));
        lock(&self.shared.main_pools).push(core.into_pool());
        match slot.output.take() {
            Some(Ok(value)) => value,
            Some(Err(payload)) => panic::resume_unwind(payload),
            None => unreachable!("the main coroutine finished without an output"),
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for worker in &self.shared.workers {
            worker.send(Msg::Shutdown);
        }
        // Tasks still in the injector never started and never will: complete them with
        // `Cancelled` now, before waiting for the workers, whose exit (thread-local destructors)
        // may join them. Anything injected while the workers stop is abandoned afterwards.
        self.shared.abandon_injected();
        let me = thread::current().id();
        for thread in self.threads.drain(..) {
            // Dropped by one of its own coroutines: that worker shuts down when it gets back to
            // its loop; joining it from here would wait for ourselves.
            if thread.thread().id() != me {
                let _ = thread.join();
            }
        }
        self.shared.abandon_injected();
        tracing::debug!("runtime stopped");
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.threads.len())
            .field("config", &self.shared.config)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The pools stay consistent even if a holder panicked: every operation on them is complete
    // before it can panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The closure and output of a main coroutine, on the `block_on` caller's stack.
struct MainSlot<F, T> {
    f: Option<F>,
    output: Option<thread::Result<T>>,
}

/// The task of a main coroutine.
#[repr(C)]
struct MainTask {
    header: Header,
    /// The `MainSlot<F, T>` in `block_on`'s frame.
    slot: *mut (),
}

// SAFETY: `slot` is dereferenced only by `run_main`, on the `block_on` thread, while `block_on`'s
// frame (which owns the slot) is alive; other threads only touch the header, which follows the
// rules in `task`.
unsafe impl Send for MainTask {}
// SAFETY: as above.
unsafe impl Sync for MainTask {}

// SAFETY: MainTask is repr(C) with the header first.
unsafe impl Task for MainTask {
    /// Never called: a main coroutine runs on its `block_on` thread, never on a worker that
    /// shuts down, and `block_on` waits for it to finish.
    fn abandon(&self) {}
}

/// The body of a main coroutine.
///
/// # Safety
/// `data` is the `MainTask` of a `block_on::<F, T>` call still in progress on this thread.
unsafe fn run_main<F: FnOnce() -> T, T>(data: *const ()) {
    // SAFETY: per the contract, the task and its slot are alive and only this coroutine uses the
    // slot until it finishes.
    let slot = unsafe { &mut *(*(data as *const MainTask)).slot.cast::<MainSlot<F, T>>() };
    if let Some(f) = slot.f.take() {
        slot.output = Some(panic::catch_unwind(AssertUnwindSafe(f)));
    }
}

/// Runs `f` as the main coroutine of a runtime with the default settings, then shuts it down.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// let answer = pagurus::run(|| pagurus::spawn(|| 42).join().unwrap());
/// assert_eq!(answer, 42);
/// ```
///
/// # Panics
///
/// When the runtime cannot start (no threads or memory), or when `f` panics.
#[track_caller]
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T,
{
    let runtime = Runtime::new()
        .unwrap_or_else(|err| panic!("pagurus::run: cannot start the runtime: {err}"));
    runtime.block_on(f)
}

/// Starts `f` as a new coroutine and returns a handle to join it.
///
/// The coroutine may start on any worker; once started it stays there.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// pagurus::run(|| {
///     let h = pagurus::spawn(|| "hello from a coroutine".len());
///     assert_eq!(h.join().unwrap(), 22);
/// });
/// ```
///
/// # Panics
///
/// When called outside a runtime (from a thread that is neither a worker nor inside
/// [`Runtime::block_on`]).
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let Some(core) = WorkerCore::current() else {
        panic!(
            "pagurus::spawn called outside a pagurus runtime: \
             call it from inside Runtime::block_on or pagurus::run"
        )
    };
    let task = Arc::new(TaskCell::new(core.new_coroutine_id(), f));
    core.spawn(task.clone());
    JoinHandle::new(task)
}

/// Lets the worker run its other coroutines, then continues. Outside a coroutine it yields the
/// OS thread.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// pagurus::Runtime::builder().workers(1).build().unwrap().block_on(|| {
///     let flag = Arc::new(AtomicBool::new(false));
///     let f = flag.clone();
///     let h = pagurus::spawn(move || f.store(true, Ordering::Release));
///     while !flag.load(Ordering::Acquire) {
///         pagurus::yield_now();
///     }
///     h.join().unwrap();
/// });
/// ```
#[inline] // keeps the switch in the caller's frame; see arch::x86_64 on return prediction
pub fn yield_now() {
    if WorkerCore::current().is_none() {
        thread::yield_now();
        return;
    }
    suspend_scheduled("pagurus::yield_now", Suspend::Yield);
}

/// Switches from the running scheduled coroutine to its worker, raising [`Cancelled`] when the
/// worker resumes it only to shut it down.
#[inline]
fn suspend_scheduled(what: &str, reason: Suspend) {
    let ctx = scheduled_context(what);
    // SAFETY: `scheduled_context` checked that we run on the stack of the worker's current
    // coroutine, which is the innermost context of this thread (so it is alive).
    let ctx = unsafe { &*ctx };
    // SAFETY: as above: we are that context's coroutine, on its stack.
    let arg = unsafe { suspend(ctx, reason) };
    if ctx.should_raise_cancel(arg) {
        panic::resume_unwind(Box::new(Cancelled));
    }
}

/// How panics about misplaced waits name the call (the park API serves them all).
pub(crate) const BLOCKING_CALL: &str =
    "a blocking pagurus call (JoinHandle::join, a channel, lock, timer, socket or offload)";

/// The context of the scheduled coroutine the caller runs on.
#[inline]
fn scheduled_context(what: &str) -> *const Context {
    if crate::stack::on_system_stack_active() {
        panic!(
            "{what} called on the system stack (inside a foreign call in Switch mode, or \
             pagurus::stack::on_system_stack): code there cannot suspend, since it does not run \
             on the coroutine's own stack; suspend before the call or after it returns"
        );
    }
    let ctx = WorkerCore::current().map_or(ptr::null(), WorkerCore::current_ctx);
    assert!(
        !ctx.is_null(),
        "{what} called on a pagurus worker thread outside any coroutine (from a \
         destructor or thread-local the scheduler itself runs): nothing there can wait; \
         do the waiting in a coroutine"
    );
    assert!(
        ptr::eq(ctx, current_context()),
        "{what} called from a raw coroutine nested inside a scheduled one; \
         only the scheduled coroutine itself can suspend"
    );
    ctx
}

/// Parks the calling scheduled coroutine without ever raising `Cancelled`: for waits that must
/// not end early because another thread still uses the caller's stack (`offload::run`).
pub(crate) fn park_uncancellable() {
    let ctx = scheduled_context(BLOCKING_CALL);
    if let Some(core) = WorkerCore::current() {
        core.set_wait_reason(park::WaitReason::ForeignCall);
    }
    // SAFETY: `scheduled_context` checked that we are on this context's stack, and it is alive.
    unsafe { suspend(&*ctx, Suspend::Park) };
}

/// Whether the caller can park: it runs on a scheduled coroutine's own stack.
pub(crate) fn can_park() -> bool {
    !crate::stack::on_system_stack_active()
        && WorkerCore::current().is_some_and(|core| {
            let ctx = core.current_ctx();
            !ctx.is_null() && ptr::eq(ctx, current_context())
        })
}

/// The running scheduled coroutine, `None` on a plain thread.
pub(crate) fn current_task() -> Option<TaskRef> {
    let core = WorkerCore::current()?;
    scheduled_context(BLOCKING_CALL);
    core.current_task()
}
