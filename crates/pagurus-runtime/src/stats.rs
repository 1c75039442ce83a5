//! Process-wide counters behind [`stats()`].
//!
//! They are plain relaxed atomics: each is exact on its own, but a snapshot taken while
//! coroutines run may mix moments (e.g. `live` read just before a `spawned` increment).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

/// A snapshot of the runtime's counters, summed over every [`Runtime`](crate::Runtime) in the
/// process.
///
/// ```
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
    /// Usable bytes of every stack currently mapped, in use or pooled (guard regions excluded).
    pub stack_bytes_reserved: usize,
    /// Usable bytes of the stacks sitting in pools, ready for reuse.
    pub stack_bytes_pooled: usize,
    /// Stack mappings created so far; flat while pools serve every spawn.
    pub stack_maps: u64,
}

struct Counters {
    spawned: CachePadded<AtomicU64>,
    finished: CachePadded<AtomicU64>,
    reserved: AtomicUsize,
    pooled: AtomicUsize,
    maps: AtomicU64,
}

static COUNTERS: Counters = Counters {
    spawned: CachePadded::new(AtomicU64::new(0)),
    finished: CachePadded::new(AtomicU64::new(0)),
    reserved: AtomicUsize::new(0),
    pooled: AtomicUsize::new(0),
    maps: AtomicU64::new(0),
};

/// Reads the process-wide counters.
pub fn stats() -> Stats {
    let finished = COUNTERS.finished.load(Relaxed);
    let spawned = COUNTERS.spawned.load(Relaxed);
    Stats {
        spawned,
        live: spawned.saturating_sub(finished),
        stack_bytes_reserved: COUNTERS.reserved.load(Relaxed),
        stack_bytes_pooled: COUNTERS.pooled.load(Relaxed),
        stack_maps: COUNTERS.maps.load(Relaxed),
    }
}

/// Counts a new coroutine and returns its id (1, 2, ... in the process).
pub(crate) fn coroutine_created() -> u64 {
    COUNTERS.spawned.fetch_add(1, Relaxed) + 1
}

pub(crate) fn coroutine_finished() {
    COUNTERS.finished.fetch_add(1, Relaxed);
}

pub(crate) fn stack_mapped(size: usize) {
    COUNTERS.maps.fetch_add(1, Relaxed);
    COUNTERS.reserved.fetch_add(size, Relaxed);
}

pub(crate) fn stack_unmapped(size: usize) {
    COUNTERS.reserved.fetch_sub(size, Relaxed);
}

pub(crate) fn stack_pooled(size: usize) {
    COUNTERS.pooled.fetch_add(size, Relaxed);
}

pub(crate) fn stack_unpooled(size: usize) {
    COUNTERS.pooled.fetch_sub(size, Relaxed);
}
