//! Counters behind [`stats()`].
//!
//! Counters that change on every spawn (coroutines created and finished, pooled stack bytes) are
//! kept per worker and per pool, written only by their owning thread with plain loads and stores
//! (no locked instructions on the hot path), and summed when [`stats()`] is read. Rare events
//! (mapping and unmapping a stack) go straight to global atomics. A snapshot taken while
//! coroutines run may mix moments (e.g. `live` read just before a `spawned` increment); once the
//! runtime is quiet, it is exact.

use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

/// A snapshot of the runtime's counters, summed over every [`Runtime`](crate::Runtime) in the
/// process.
///
/// ```
/// # use pagurus_runtime as pagurus;
/// let before = pagurus::stats();
/// pagurus::run(|| pagurus::spawn(|| 1).join().unwrap());
/// let after = pagurus::stats();
/// // The main coroutine and the spawned one.
/// assert!(after.spawned >= before.spawned + 2);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Coroutines created so far (spawned ones and `block_on` main coroutines).
    pub spawned: u64,
    /// Coroutines created and not yet finished or dropped.
    pub live: u64,
    /// Coroutines parked now (waiting on a channel, lock, timer, socket, join, ...), compacted
    /// or not.
    pub parked: u64,
    /// Usable bytes of the stacks that parked coroutines hold now (compacted ones hold none):
    /// what each worker compares with its parked-stack budget.
    pub stack_bytes_parked: usize,
    /// Usable bytes of every stack currently mapped, in use or pooled (guard regions excluded).
    /// Quarantined old stacks are not in use and not reusable: they are counted apart, in
    /// `stack_bytes_quarantined`.
    pub stack_bytes_reserved: usize,
    /// Usable bytes of the stacks sitting in pools, ready for reuse.
    pub stack_bytes_pooled: usize,
    /// Usable bytes of the old stacks coroutines moved out of that sit in the stale-pointer
    /// quarantine (`Builder::stack_quarantine`, on by default in debug builds): still mapped, so
    /// that a stale pointer into them faults, but with their pages released and access revoked,
    /// so they hold no memory. At most the last 64 such stacks of the process; they stay after
    /// every runtime is gone.
    pub stack_bytes_quarantined: usize,
    /// Stack mappings created so far; flat while pools serve every spawn.
    pub stack_maps: u64,
    /// Times a coroutine's stack was moved to a larger one.
    pub growths: u64,
    /// Bytes copied by those moves.
    pub bytes_copied: u64,
    /// How stacks are guarded: arenas with guard markers, or a mapping per stack (see
    /// `stack::guards`).
    pub stack_guards: StackGuards,
    /// Arena regions mapped (each one mapping, holding any number of stacks).
    pub stack_arenas: u64,
    /// Times a parked coroutine's stack was compacted into a heap image.
    pub compactions: u64,
    /// Coroutines compacted now (parked, holding an image instead of a stack).
    pub compacted: u64,
    /// Heap bytes held by those images.
    pub compacted_bytes: usize,
    /// Compacted coroutines restored onto a smaller stack than they had.
    pub shrinks: u64,
    /// Coroutines that started on a stack larger than the runtime's initial size because
    /// coroutines of the same spawn site kept growing to it (adaptive start size).
    pub adaptive_starts: u64,
}

/// How this process guards its coroutine stacks (see `stack`'s arenas).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StackGuards {
    /// No stack made yet.
    #[default]
    Unknown,
    /// Stacks carved out of shared arenas, guards installed with `madvise(MADV_GUARD_INSTALL)`
    /// (Linux 6.13+): a handful of mappings for any number of stacks.
    Madvise,
    /// One mapping per stack with an `mprotect`ed guard (older kernels, or
    /// `PAGURUS_STACK_GUARDS=mprotect`): two `vm.max_map_count` entries per stack.
    Mprotect,
}

static GUARDS: AtomicU8 = AtomicU8::new(0);
static ARENAS: AtomicU64 = AtomicU64::new(0);

/// How stacks are guarded in this process.
pub fn stack_guards() -> StackGuards {
    match GUARDS.load(Relaxed) {
        1 => StackGuards::Madvise,
        2 => StackGuards::Mprotect,
        _ => StackGuards::Unknown,
    }
}

/// Records how stacks are guarded. Async-signal-safe.
pub(crate) fn set_stack_guards(guards: StackGuards) {
    let code = match guards {
        StackGuards::Unknown => 0,
        StackGuards::Madvise => 1,
        StackGuards::Mprotect => 2,
    };
    GUARDS.store(code, Relaxed);
}

/// An arena region was mapped. Async-signal-safe.
pub(crate) fn arena_mapped() {
    ARENAS.fetch_add(1, Relaxed);
}

/// Counters of one owner (a worker, a `block_on` call, a stack pool). Only the owner's thread
/// writes them.
#[derive(Default)]
struct Counters {
    spawned: AtomicU64,
    finished: AtomicU64,
    pooled: AtomicUsize,
    parked: AtomicU64,
    parked_bytes: AtomicUsize,
    adaptive_starts: AtomicU64,
}

/// Totals of owners that are gone, and the counters of rare events.
static RETIRED: Counters = Counters {
    spawned: AtomicU64::new(0),
    finished: AtomicU64::new(0),
    pooled: AtomicUsize::new(0),
    parked: AtomicU64::new(0),
    parked_bytes: AtomicUsize::new(0),
    adaptive_starts: AtomicU64::new(0),
};
static RESERVED: AtomicUsize = AtomicUsize::new(0);
static QUARANTINED: AtomicUsize = AtomicUsize::new(0);
static MAPS: AtomicU64 = AtomicU64::new(0);
static IDS: AtomicU64 = AtomicU64::new(0);
static GROWTHS: AtomicU64 = AtomicU64::new(0);
static BYTES_COPIED: AtomicU64 = AtomicU64::new(0);
static LIVE_COUNTERS: Mutex<Vec<Arc<Counters>>> = Mutex::new(Vec::new());

fn cells() -> MutexGuard<'static, Vec<Arc<Counters>>> {
    // A panic while holding the lock leaves the list consistent (pushes and removes are whole).
    LIVE_COUNTERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads the process-wide counters.
pub fn stats() -> Stats {
    let cells = cells();
    let sum = |f: fn(&Counters) -> u64| f(&RETIRED) + cells.iter().map(|c| f(c)).sum::<u64>();
    let spawned = sum(|c| c.spawned.load(Relaxed));
    let finished = sum(|c| c.finished.load(Relaxed));
    Stats {
        spawned,
        live: spawned.saturating_sub(finished),
        parked: sum(|c| c.parked.load(Relaxed)),
        stack_bytes_parked: sum(|c| c.parked_bytes.load(Relaxed) as u64) as usize,
        stack_bytes_reserved: RESERVED.load(Relaxed),
        stack_bytes_pooled: sum(|c| c.pooled.load(Relaxed) as u64) as usize,
        stack_bytes_quarantined: QUARANTINED.load(Relaxed),
        stack_maps: MAPS.load(Relaxed),
        growths: GROWTHS.load(Relaxed),
        bytes_copied: BYTES_COPIED.load(Relaxed),
        stack_guards: stack_guards(),
        stack_arenas: ARENAS.load(Relaxed),
        compactions: COMPACTIONS.load(Relaxed),
        compacted: COMPACTED.load(Relaxed) as u64,
        compacted_bytes: COMPACTED_BYTES.load(Relaxed),
        shrinks: SHRINKS.load(Relaxed),
        adaptive_starts: sum(|c| c.adaptive_starts.load(Relaxed)),
    }
}

/// The counters of one owner; folded into the process totals when dropped.
pub(crate) struct Local(Arc<Counters>);

impl Local {
    pub(crate) fn new() -> Local {
        let cell = Arc::new(Counters::default());
        cells().push(cell.clone());
        Local(cell)
    }

    pub(crate) fn coroutine_created(&self) {
        bump(&self.0.spawned, 1);
    }

    pub(crate) fn coroutine_finished(&self) {
        bump(&self.0.finished, 1);
    }

    pub(crate) fn pooled(&self, bytes: usize) {
        self.0.pooled.store(bytes, Relaxed);
    }

    /// This owner's parked coroutines now, and the stack bytes they hold.
    pub(crate) fn parked(&self, count: u64, bytes: usize) {
        self.0.parked.store(count, Relaxed);
        self.0.parked_bytes.store(bytes, Relaxed);
    }

    pub(crate) fn adaptive_start(&self) {
        bump(&self.0.adaptive_starts, 1);
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let mut cells = cells();
        RETIRED
            .spawned
            .fetch_add(self.0.spawned.load(Relaxed), Relaxed);
        RETIRED
            .finished
            .fetch_add(self.0.finished.load(Relaxed), Relaxed);
        RETIRED
            .adaptive_starts
            .fetch_add(self.0.adaptive_starts.load(Relaxed), Relaxed);
        cells.retain(|c| !Arc::ptr_eq(c, &self.0));
    }
}

/// Adds to a counter only its owner writes: a plain load and store, no locked instruction.
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed) + n, Relaxed);
}

/// Reserves `n` coroutine ids and returns the first (ids start at 1).
pub(crate) fn reserve_ids(n: u64) -> u64 {
    IDS.fetch_add(n, Relaxed) + 1
}

/// A coroutine finished on a thread that owns no counters (a runtime drop abandoning tasks).
pub(crate) fn coroutine_finished_elsewhere() {
    RETIRED.finished.fetch_add(1, Relaxed);
}

pub(crate) fn stack_mapped(size: usize) {
    MAPS.fetch_add(1, Relaxed);
    RESERVED.fetch_add(size, Relaxed);
}

pub(crate) fn stack_unmapped(size: usize) {
    RESERVED.fetch_sub(size, Relaxed);
}

/// A stack moved out of went to the quarantine: no longer reserved, counted apart.
/// Async-signal-safe (relaxed atomics).
pub(crate) fn stack_quarantined(size: usize) {
    RESERVED.fetch_sub(size, Relaxed);
    QUARANTINED.fetch_add(size, Relaxed);
}

/// A quarantined stack was evicted and unmapped. Async-signal-safe.
pub(crate) fn quarantined_stack_unmapped(size: usize) {
    QUARANTINED.fetch_sub(size, Relaxed);
}

static COMPACTIONS: AtomicU64 = AtomicU64::new(0);
static COMPACTED: AtomicUsize = AtomicUsize::new(0);
static COMPACTED_BYTES: AtomicUsize = AtomicUsize::new(0);
static SHRINKS: AtomicU64 = AtomicU64::new(0);

/// A parked stack was compacted into an image of `bytes`.
pub(crate) fn stack_compacted(bytes: usize) {
    COMPACTIONS.fetch_add(1, Relaxed);
    COMPACTED.fetch_add(1, Relaxed);
    COMPACTED_BYTES.fetch_add(bytes, Relaxed);
}

/// A compacted coroutine's image of `bytes` was freed (restored onto a stack, or dropped with
/// its task).
pub(crate) fn image_freed(bytes: usize) {
    COMPACTED.fetch_sub(1, Relaxed);
    COMPACTED_BYTES.fetch_sub(bytes, Relaxed);
}

/// A compacted coroutine was restored onto a smaller stack than it had.
pub(crate) fn stack_shrunk() {
    SHRINKS.fetch_add(1, Relaxed);
}

/// A stack moved, copying `bytes`. Async-signal-safe (two relaxed atomic adds).
pub(crate) fn stack_grew(bytes: usize) {
    GROWTHS.fetch_add(1, Relaxed);
    BYTES_COPIED.fetch_add(bytes as u64, Relaxed);
}
