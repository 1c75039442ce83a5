//! Coroutine dumps: what [`dump()`](crate::dump()) returns, and how it reads.
//!
//! This module owns the public shape of a dump ([`Dump`], [`CoroutineSnapshot`], [`Frame`],
//! ...), its Go-style text, and the symbolisation of program counters (`symbolize`). It does
//! not collect anything: the scheduler (`sched::snapshot`) asks each worker for a [`Raw`] copy
//! of its bookkeeping and the raw program counters of its suspended stacks, and hands the
//! copies here, on the dumping thread, to be named. See design.md, "Coroutine dumps".
//!
//! It also keeps the one switch the park path consults: whether parks are time-stamped
//! ([`park_stamps`]), off until a process first asks for a dump.

mod symbolize;

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::panic::Location;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// What a parked coroutine waits for.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// use pagurus::{CoroutineState, WaitReason};
/// assert_eq!(WaitReason::Channel.to_string(), "channel");
/// assert_eq!(CoroutineState::Parked(WaitReason::Sleep).to_string(), "parked: sleep");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WaitReason {
    /// `JoinHandle::join`.
    Join = 1,
    /// A channel send, receive or `select!`.
    Channel,
    /// `sync::Mutex` or `sync::RwLock`.
    Mutex,
    /// `sync::Condvar`.
    Condvar,
    /// `sync::Semaphore`.
    Semaphore,
    /// `sync::WaitGroup`.
    WaitGroup,
    /// `time::sleep` and the other timers.
    Sleep,
    /// A socket waiting for readiness.
    Io,
    /// A call lent to another thread (`offload::run`, `ffi` in `Offload` mode).
    ForeignCall,
    /// `future::block_on` of a future that is not ready.
    Future,
}

impl WaitReason {
    const ALL: [WaitReason; 10] = [
        WaitReason::Join,
        WaitReason::Channel,
        WaitReason::Mutex,
        WaitReason::Condvar,
        WaitReason::Semaphore,
        WaitReason::WaitGroup,
        WaitReason::Sleep,
        WaitReason::Io,
        WaitReason::ForeignCall,
        WaitReason::Future,
    ];

    /// The reason stored as `reason as u8` (0, or anything else: none).
    pub(crate) fn from_u8(value: u8) -> Option<WaitReason> {
        WaitReason::ALL
            .get(usize::from(value).wrapping_sub(1))
            .copied()
    }

    /// The reason's name in dump text (`"channel"`, `"wait group"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Join => "join",
            WaitReason::Channel => "channel",
            WaitReason::Mutex => "mutex",
            WaitReason::Condvar => "condvar",
            WaitReason::Semaphore => "semaphore",
            WaitReason::WaitGroup => "wait group",
            WaitReason::Sleep => "sleep",
            WaitReason::Io => "io",
            WaitReason::ForeignCall => "foreign call",
            WaitReason::Future => "future",
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a coroutine was doing when the dump was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoroutineState {
    /// On a worker's CPU (or the coroutine that took the dump): no frames are read.
    Running,
    /// Suspended and queued to run again (it yielded, or was woken and not resumed yet).
    Ready,
    /// Waiting until something unparks it.
    Parked(WaitReason),
}

impl fmt::Display for CoroutineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoroutineState::Running => f.write_str("running"),
            CoroutineState::Ready => f.write_str("ready"),
            CoroutineState::Parked(reason) => write!(f, "parked: {reason}"),
        }
    }
}

/// A coroutine's stack when the dump was taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StackInfo {
    /// Usable bytes of its stack now; 0 while it is compacted (parked, its live bytes in a heap
    /// image and no stack held: see `Builder::parked_stack_budget`).
    pub size: usize,
    /// Bytes in use: from the saved stack pointer to the top (0 for a running coroutine; the
    /// image's size for a compacted one).
    pub used: usize,
    /// Times it moved to a larger stack.
    pub growths: u64,
    /// Bytes those moves copied.
    pub bytes_copied: u64,
}

/// One frame of a suspended coroutine's stack, innermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Frame {
    /// The return address into the frame (the instruction after the call it waits in).
    pub pc: usize,
    /// The demangled function name, without its hash (`my_server::handle_client`), if known.
    /// Inlined functions get a frame each, with the same `pc`.
    pub function: Option<String>,
    /// The source file of the call, if the binary has line tables.
    pub file: Option<String>,
    /// The source line of the call.
    pub line: Option<u32>,
}

/// One coroutine in a [`Dump`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CoroutineSnapshot {
    /// Its id, unique in the process (`JoinHandle::id`).
    pub id: u64,
    /// What it was doing.
    pub state: CoroutineState,
    /// The index of the worker it is pinned to; `None` for a `block_on` main coroutine, and for
    /// one that has not started.
    pub worker: Option<usize>,
    /// The `spawn` (or `block_on`) call that created it.
    pub spawned_at: &'static Location<'static>,
    /// How long it has been parked; `None` unless parked, or when it parked before the process
    /// first asked for a dump (parks are time-stamped only from then on).
    pub parked_for: Option<Duration>,
    /// Its stack.
    pub stack: StackInfo,
    /// Its frames, innermost first, with the runtime's own frames (the switch, the park
    /// machinery, channel and lock internals, the task entry) folded away; empty while running.
    pub frames: Vec<Frame>,
    /// Whether it has run yet. One that has not is still queued, holding only its closure: it
    /// is [`Ready`](CoroutineState::Ready), with no worker (it is not pinned until it starts), no
    /// stack and no frames.
    pub started: bool,
}

/// What one spawn site's coroutines did to their stacks: which sites should start bigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SpawnSite {
    /// The `spawn` call.
    pub location: &'static Location<'static>,
    /// Coroutines it started that finished, plus those alive in the dump.
    pub spawned: u64,
    /// Stack moves of those coroutines.
    pub growths: u64,
    /// Bytes those moves copied.
    pub bytes_copied: u64,
}

/// A snapshot of every live coroutine of every runtime in the process: see
/// [`dump()`](crate::dump()).
///
/// Its [`Display`](fmt::Display) writes Go-style text, one block per coroutine, block by block
/// (formatting into a writer builds no string of the whole dump):
///
/// ```text
/// coroutine 42 [parked: channel, 3.2s] spawned at src/main.rs:17, worker 1, stack 8192 (1904 used, 1 growth)
///   my_server::handle_client at src/main.rs:40
///   my_server::serve::{{closure}} at src/main.rs:18
/// ```
///
/// then one line per spawn site whose coroutines grew their stacks.
#[derive(Clone, Debug, Default)]
pub struct Dump {
    coroutines: Vec<CoroutineSnapshot>,
    sites: Vec<SpawnSite>,
    unanswered: Vec<Option<usize>>,
}

impl Dump {
    /// Every coroutine, by runtime, then worker, then id.
    pub fn coroutines(&self) -> &[CoroutineSnapshot] {
        &self.coroutines
    }

    /// Per spawn site: coroutines spawned, stack growths and bytes copied (finished coroutines
    /// of runtimes still alive, and the live ones), most bytes copied first.
    pub fn spawn_sites(&self) -> &[SpawnSite] {
        &self.sites
    }

    /// Workers that did not answer in time (busy in a coroutine that does not suspend): their
    /// coroutines are missing from the dump. `None` names a `block_on` thread.
    pub fn unanswered_workers(&self) -> &[Option<usize>] {
        &self.unanswered
    }

    /// Names the raw copies the workers handed over.
    pub(crate) fn from_raw(raw: Raw) -> Dump {
        let Raw {
            coroutines,
            pcs,
            sites,
            unanswered,
        } = raw;
        let coroutines = symbolize::with_symbolizer(|names| {
            // Most coroutines wait at the same few places, down the same few paths: name and
            // fold each distinct path of return addresses once, then copy its frames.
            let mut paths: HashMap<&[usize], Vec<Frame>> = HashMap::new();
            coroutines
                .into_iter()
                .map(|c| {
                    let path = pcs.get(c.pcs.clone()).unwrap_or(&[]);
                    let frames = paths
                        .entry(path)
                        .or_insert_with(|| {
                            for &pc in path {
                                names.prepare(pc);
                            }
                            let named: Vec<&symbolize::Named> =
                                path.iter().flat_map(|&pc| names.named(pc)).collect();
                            fold_runtime_frames(&named)
                                .iter()
                                .map(|n| n.frame.clone())
                                .collect()
                        })
                        .clone();
                    CoroutineSnapshot {
                        id: c.id,
                        state: c.state,
                        worker: c.worker,
                        spawned_at: c.spawned_at,
                        parked_for: c.parked_for,
                        stack: c.stack,
                        frames,
                        started: c.started,
                    }
                })
                .collect()
        });
        let mut sites = sites;
        sites.sort_by(|a, b| {
            (b.bytes_copied, b.growths, b.spawned).cmp(&(a.bytes_copied, a.growths, a.spawned))
        });
        Dump {
            coroutines,
            sites,
            unanswered,
        }
    }
}

/// Whether a frame is the runtime's own (or the standard library's glue around it), by its
/// name; the symbolizer also looks at its source file.
fn is_internal(frame: &Frame) -> bool {
    let Some(name) = frame.function.as_deref() else {
        return true;
    };
    // A generic runtime function instantiated for user types reads `<T as ...>` or
    // `pagurus_runtime::...<my_crate::Type>`: only the path's start matters.
    let name = name.trim_start_matches('<');
    [
        "pagurus_runtime::",
        "core::",
        "std::",
        "alloc::",
        "crossbeam_",
    ]
    .iter()
    .any(|p| name.starts_with(p))
        || name.starts_with("__rust")
        || name.starts_with("pagurus_coroutine_")
}

/// The frames left once the runtime's frames at both ends of a walk are dropped: the
/// innermost (switch, park, the primitive's internals) and the outermost (task entry,
/// `catch_unwind`). A stack with nothing else keeps its frames, so it still says something.
fn fold_runtime_frames<'a, 'f>(frames: &'a [&'f symbolize::Named]) -> &'a [&'f symbolize::Named] {
    let Some(first) = frames.iter().position(|f| !f.internal) else {
        return frames;
    };
    let last = frames.iter().rposition(|f| !f.internal).unwrap_or(first);
    frames.get(first..=last).unwrap_or(frames)
}

impl fmt::Display for Dump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.coroutines.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{c}")?;
        }
        for worker in &self.unanswered {
            match worker {
                Some(w) => writeln!(f, "\nworker {w} did not answer in time")?,
                None => writeln!(f, "\na block_on thread did not answer in time")?,
            }
            f.write_str(
                "  (it runs a coroutine that does not suspend; its coroutines are not listed)\n",
            )?;
        }
        let grown: Vec<&SpawnSite> = self.sites.iter().filter(|s| s.growths > 0).collect();
        if !grown.is_empty() {
            f.write_str("\nstack growth by spawn site:\n")?;
            for s in grown {
                writeln!(
                    f,
                    "  {}:{}: {} spawned, {} growths, {} bytes copied",
                    s.location.file(),
                    s.location.line(),
                    s.spawned,
                    s.growths,
                    s.bytes_copied
                )?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for CoroutineSnapshot {
    /// One block: the header line, then a line per frame.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "coroutine {} [{}", self.id, self.state)?;
        if let Some(d) = self.parked_for {
            write!(f, ", {}", Seconds(d))?;
        }
        let at = self.spawned_at;
        write!(f, "] spawned at {}:{}", at.file(), at.line())?;
        if !self.started {
            return writeln!(f, ", not started");
        }
        match self.worker {
            Some(w) => write!(f, ", worker {w}")?,
            None => f.write_str(", block_on thread")?,
        }
        let s = &self.stack;
        if s.size == 0 && s.used != 0 {
            write!(f, ", compacted ({} used, {} growth", s.used, s.growths)?;
        } else {
            write!(
                f,
                ", stack {} ({} used, {} growth",
                s.size, s.used, s.growths
            )?;
        }
        writeln!(f, "{})", if s.growths == 1 { "" } else { "s" })?;
        for frame in &self.frames {
            f.write_str("  ")?;
            match &frame.function {
                Some(name) => f.write_str(name)?,
                None => write!(f, "{:#x}", frame.pc)?,
            }
            match (&frame.file, frame.line) {
                (Some(file), Some(line)) => writeln!(f, " at {file}:{line}")?,
                (Some(file), None) => writeln!(f, " at {file}")?,
                _ => writeln!(f)?,
            }
        }
        Ok(())
    }
}

/// A duration as Go prints wait times: `3.2s`, `450ms`, `2m5s`.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d < Duration::from_secs(1) {
            write!(f, "{}ms", d.as_millis())
        } else if d < Duration::from_secs(60) {
            write!(f, "{:.1}s", d.as_secs_f64())
        } else {
            write!(f, "{}m{}s", d.as_secs() / 60, d.as_secs() % 60)
        }
    }
}

/// What the workers copy for a dump, before symbolisation.
#[derive(Default)]
pub(crate) struct Raw {
    pub(crate) coroutines: Vec<RawCoroutine>,
    /// The return addresses of every walked stack; each coroutine owns a range.
    pub(crate) pcs: Vec<usize>,
    pub(crate) sites: Vec<SpawnSite>,
    pub(crate) unanswered: Vec<Option<usize>>,
}

impl Raw {
    /// Appends `other`, rebasing its coroutines' frame ranges and merging its sites.
    pub(crate) fn append(&mut self, other: Raw) {
        let base = self.pcs.len();
        self.pcs.extend_from_slice(&other.pcs);
        self.coroutines
            .extend(other.coroutines.into_iter().map(|mut c| {
                c.pcs = c.pcs.start + base..c.pcs.end + base;
                c
            }));
        for site in other.sites {
            self.add_site(site);
        }
        self.unanswered.extend(other.unanswered);
    }

    /// Adds a site's counts to its entry (sites compare by location).
    pub(crate) fn add_site(&mut self, site: SpawnSite) {
        match self.sites.iter_mut().find(|s| s.location == site.location) {
            Some(s) => {
                s.spawned += site.spawned;
                s.growths += site.growths;
                s.bytes_copied += site.bytes_copied;
            }
            None => self.sites.push(site),
        }
    }
}

/// One coroutine as its worker copied it.
pub(crate) struct RawCoroutine {
    pub(crate) id: u64,
    pub(crate) state: CoroutineState,
    pub(crate) worker: Option<usize>,
    pub(crate) spawned_at: &'static Location<'static>,
    pub(crate) parked_for: Option<Duration>,
    pub(crate) stack: StackInfo,
    /// Its return addresses in [`Raw::pcs`], innermost first.
    pub(crate) pcs: Range<usize>,
    /// Whether it has run yet (see [`CoroutineSnapshot::started`]).
    pub(crate) started: bool,
}

static PARK_STAMPS: AtomicBool = AtomicBool::new(false);

/// Whether parks record when they started (for [`CoroutineSnapshot::parked_for`]): off until the
/// process first takes a dump or builds a runtime with a dump signal, so a program that never
/// dumps never reads the clock on a park.
#[inline]
pub(crate) fn park_stamps() -> bool {
    PARK_STAMPS.load(Relaxed)
}

/// Turns the park time stamps on, for good.
pub(crate) fn enable_park_stamps() {
    EPOCH.get_or_init(Instant::now);
    PARK_STAMPS.store(true, Relaxed);
}

/// What park time stamps count from (set before stamps are turned on).
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// `at` as a park time stamp: nanoseconds since [`EPOCH`], plus one (0 means no stamp). One word
/// in the task header instead of an `Option<Instant>`'s two.
pub(crate) fn stamp(at: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    let nanos = at.saturating_duration_since(epoch).as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1
}

/// How long before `now` the park stamped `stamp` (nonzero) was.
pub(crate) fn since(stamp: u64, now: Instant) -> Duration {
    let epoch = *EPOCH.get_or_init(Instant::now);
    let at = epoch + Duration::from_nanos(stamp - 1);
    now.saturating_duration_since(at)
}
