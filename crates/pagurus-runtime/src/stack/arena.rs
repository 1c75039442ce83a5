//! Stack arenas: many stacks carved out of a few large mappings, with guard pages that are
//! page-table markers instead of mappings.
//!
//! ```text
//!   one arena region (a single read/write anonymous mapping: one VMA)
//!   low                                                                         high
//!   +--------+-------------+--------+----------------------+--------+-------------+ ..
//!   | guard  |  stack (4K) | guard  |     stack (16K)      | guard  | stack (4K)  |
//!   +--------+-------------+--------+----------------------+--------+-------------+ ..
//!    markers   read/write    markers   read/write            markers
//!   slot = ARENA_GUARD_SIZE + size, carved by a bump pointer; a freed slot goes back to the free
//!   list of its size class, keeping its guard.
//! ```
//!
//! # Why
//!
//! A stack that is its own mapping with an `mprotect`ed guard costs two of the kernel's
//! `vm.max_map_count` entries (65,530 by default): about 32,000 live coroutines is a wall, and
//! walking into it leaves `malloc` unable to map either. Linux 6.13 added
//! `madvise(MADV_GUARD_INSTALL)`: guard markers written into the page tables of an ordinary
//! read/write mapping. A touch faults with SIGSEGV at the touched address (what the growth fault
//! handler expects), the VMA is not split, and `MADV_DONTNEED` keeps the markers. So a million
//! stacks fit in one mapping.
//!
//! The guard is now a page-table cost, one entry per guard page: measured on this class of
//! machine with 100,000 guarded 4 KiB stacks, 16 B per stack with a 4 KiB guard, 133 B with
//! 64 KiB, 8,024 B with 4 MiB. Growth honours a probe loop's bound register wherever it points
//! (`grow::move_stack`), so probed frames of any size grow through a guard of any size; the guard
//! only has to catch frames that are *not* probed: C code called in Direct mode, where glibc
//! reaches about 33 KiB below the stack pointer without touching what lies between. Hence
//! [`ARENA_GUARD_SIZE`] = 64 KiB. An unprobed frame larger than that (C compiled without
//! `-fstack-clash-protection`, called in Direct mode) may skip the guard and write into the slot
//! below: such code must run in Switch or Reserve mode (design.md, section 6).
//!
//! # Layout and placement
//!
//! Slots are carved by a bump pointer, one class per request, keeping one free list per size
//! class and `top mod 1 MiB` (`classes`): a stack a coroutine moves to must have its top at a
//! given residue modulo 1 MiB (`Placement`). A carve for a placed request skips up to 1 MiB less
//! a page so that its top lands where asked; the skipped address space is never touched (it
//! costs no memory, but a moved-to slot alone in its 2 MiB of address space has a page-table
//! page to itself: 4 KiB, while it exists). Fresh stacks (spawns) are carved with no skip, which
//! is what packs a million parked coroutines densely. Stacks larger than [`ARENA_MAX_SIZE`] are
//! mappings of their own: they are few, and a 4 MiB `PROT_NONE` guard costs them nothing.

//! # Fallback
//!
//! On kernels without `MADV_GUARD_INSTALL` (`EINVAL`), or when `PAGURUS_STACK_GUARDS=mprotect`
//! asks for it, each stack is its own mapping with a [`GUARD_SIZE`](super::GUARD_SIZE)
//! `PROT_NONE` guard, as before. Those stop short of the wall: a new stack that would leave less
//! than an eighth of `vm.max_map_count` (read from `/proc/sys/vm/max_map_count` at start) for the
//! rest of the process aborts with a message naming the limit and the sysctl, instead of hanging.
//!
//! # Signal-safe
//!
//! Everything here may run in the SIGSEGV handler (the growth movers take and give back stacks):
//! the arena is a bump pointer and intrusive free lists behind a spin lock, mapped with plain
//! system calls. The lock records its holder; a thread that finds itself holding it (a signal
//! arrived while it was carving) gets `None` and the caller maps a stack of its own instead of
//! deadlocking. Detection reads the environment and `/proc` and logs, so it runs from
//! [`prepare`], in normal context, before the first coroutine: a runtime build or a raw
//! coroutine's creation.

use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};

use super::PAGE_SIZE;

/// `madvise` advice installing guard markers (Linux 6.13+, `include/uapi/asm-generic/mman-common.h`).
/// Not in the `libc` crate at the version we use.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Size of the guard markers under every arena stack (see the module docs for the choice):
/// 64 KiB.
pub const ARENA_GUARD_SIZE: usize = 64 << 10;

/// The largest stack carved from an arena (1 MiB); larger ones are mappings of their own.
pub const ARENA_MAX_SIZE: usize = KEYED_MAX_SIZE;

/// The first arena region asks for this much address space (no memory: `MAP_NORESERVE`, and a
/// page is backed only once touched); later regions the same. Halved on failure (strict
/// overcommit ignores `MAP_NORESERVE`), down to [`MIN_REGION_BYTES`].
const REGION_BYTES: usize = 1 << 38; // 256 GiB: about 3.8 million 4 KiB slots
const MIN_REGION_BYTES: usize = 64 << 20;

/// Regions a process may map (each one VMA).
const MAX_REGIONS: usize = 64;

/// Where a free slot keeps the address of the next free slot's top: this many bytes below its
/// own top.
const LINK_OFFSET: usize = 16;

use super::Placement;
use super::classes::{KEYED_LISTS, KEYED_MAX_SIZE, Occupancy, list_of};

use crate::stats::{self, StackGuards};

const UNKNOWN: u8 = 0;
const MADVISE: u8 = 1;
const MPROTECT: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNKNOWN);
/// `vm.max_map_count` as read at start (the kernel default until then).
static MAX_MAP_COUNT: AtomicUsize = AtomicUsize::new(65_530);
/// Per-stack mappings alive (fallback mode).
static MAPPED_STACKS: AtomicUsize = AtomicUsize::new(0);

/// How this process guards its stacks.
pub fn guards() -> StackGuards {
    match MODE.load(Relaxed) {
        MADVISE => StackGuards::Madvise,
        MPROTECT => StackGuards::Mprotect,
        _ => StackGuards::Unknown,
    }
}

/// The accepted values of `PAGURUS_STACK_GUARDS`.
const ACCEPTED: &str = "`madvise`, `mprotect`";

/// Chooses how stacks are guarded, once per process: `PAGURUS_STACK_GUARDS` if set (`madvise`,
/// `mprotect`; anything else is `InvalidInput` listing them), else arenas when the kernel
/// supports guard markers; reads `vm.max_map_count`; and says which in a `tracing` event. Called
/// by `Builder::build` and `raw::Coroutine::new`, in normal context; once the mode is chosen it
/// costs one load (a raw coroutine may be created on a small coroutine stack).
pub(crate) fn prepare() -> io::Result<()> {
    if MODE.load(Acquire) != UNKNOWN {
        return Ok(());
    }
    super::on_system_stack(choose_mode)
}

fn choose_mode() -> io::Result<()> {
    let forced = match std::env::var("PAGURUS_STACK_GUARDS") {
        Ok(v) if v.trim().eq_ignore_ascii_case("madvise") => Some(MADVISE),
        Ok(v) if v.trim().eq_ignore_ascii_case("mprotect") => Some(MPROTECT),
        Ok(v) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("PAGURUS_STACK_GUARDS must be one of {ACCEPTED}, got {v:?}"),
            ));
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("PAGURUS_STACK_GUARDS is not valid UTF-8: expected one of {ACCEPTED}"),
            ));
        }
        Err(std::env::VarError::NotPresent) => None,
    };
    if let Some(limit) = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
    {
        MAX_MAP_COUNT.store(limit, Relaxed);
    }
    let supported = kernel_has_guard_markers();
    let mode = match forced {
        Some(MADVISE) if !supported => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "PAGURUS_STACK_GUARDS=madvise: this kernel has no MADV_GUARD_INSTALL (Linux 6.13+)",
            ));
        }
        Some(mode) => mode,
        None if supported => MADVISE,
        None => MPROTECT,
    };
    if MODE
        .compare_exchange(UNKNOWN, mode, AcqRel, Acquire)
        .is_ok()
    {
        stats::set_stack_guards(guards());
        let limit = MAX_MAP_COUNT.load(Relaxed);
        if mode == MADVISE {
            tracing::debug!(
                guard = ARENA_GUARD_SIZE,
                "coroutine stacks: arenas with MADV_GUARD_INSTALL guard pages"
            );
        } else {
            tracing::warn!(
                max_map_count = limit,
                max_stacks = map_budget(limit),
                "coroutine stacks: one mapping per stack (no MADV_GUARD_INSTALL: Linux before \
                 6.13, or PAGURUS_STACK_GUARDS=mprotect); each stack uses two of \
                 vm.max_map_count's entries: raise it (sysctl vm.max_map_count) for more \
                 live coroutines"
            );
        }
    }
    Ok(())
}

/// The mode, detected now (without the environment, without logging) if `prepare` has not run.
/// Async-signal-safe.
fn mode() -> u8 {
    match MODE.load(Acquire) {
        UNKNOWN => {
            let mode = if kernel_has_guard_markers() {
                MADVISE
            } else {
                MPROTECT
            };
            match MODE.compare_exchange(UNKNOWN, mode, AcqRel, Acquire) {
                Ok(_) => {
                    stats::set_stack_guards(guards());
                    mode
                }
                Err(set) => set,
            }
        }
        mode => mode,
    }
}

/// Whether guard markers can be installed: tried once on a scratch mapping. Async-signal-safe.
fn kernel_has_guard_markers() -> bool {
    // SAFETY: a fresh private anonymous mapping of two pages, ours alone; the madvise applies to
    // its first page; it is unmapped before returning.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            2 * PAGE_SIZE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return false;
        }
        let ok = libc::madvise(p, PAGE_SIZE, MADV_GUARD_INSTALL) == 0;
        libc::munmap(p, 2 * PAGE_SIZE);
        ok
    }
}

/// How many per-stack mappings may be alive under `limit`: leave an eighth of the map count (at
/// least 1,024 entries) to the rest of the process, two entries per stack.
fn map_budget(limit: usize) -> usize {
    limit.saturating_sub((limit / 8).max(1024)) / 2
}

/// Whether new stacks come from arenas. Async-signal-safe.
pub(crate) fn uses_arenas() -> bool {
    mode() == MADVISE
}

/// Counts a new per-stack mapping, or aborts when it would come too close to `vm.max_map_count`.
/// Async-signal-safe.
pub(crate) fn admit_mapping() {
    let limit = MAX_MAP_COUNT.load(Relaxed);
    let budget = map_budget(limit);
    let live = MAPPED_STACKS.fetch_add(1, Relaxed);
    if live >= budget {
        MAPPED_STACKS.fetch_sub(1, Relaxed);
        crate::fatal::map_count_exhausted(live, limit);
    }
}

/// A per-stack mapping was unmapped. Async-signal-safe.
pub(crate) fn mapping_gone() {
    MAPPED_STACKS.fetch_sub(1, Relaxed);
}

/// The arena state, behind [`Arena::lock`].
struct State {
    /// Next unused address of the current region, and its end.
    bump: usize,
    end: usize,
    /// Top address of the first free slot of each list (`classes::list_of`; 0: none); each free
    /// slot holds the next one's top `LINK_OFFSET` bytes below its own.
    free: [usize; KEYED_LISTS],
    /// Which lists are non-empty.
    occupied: Occupancy,
    /// Usable bytes of the slots in `free` (their pages may be resident), and the least of it
    /// since the last [`trim`].
    warm_bytes: usize,
    warm_low: usize,
    /// Released free slots, per list as `free`: their pages were given back to the system, so
    /// each keeps its link in its region's link array instead of its own memory.
    cold: [usize; KEYED_LISTS],
    cold_occupied: Occupancy,
    /// Regions mapped: (start, len), and each one's link array: a word per page of the region
    /// (a `MAP_NORESERVE` mapping, backed only where cold slots' links are written).
    regions: [(usize, usize); MAX_REGIONS],
    links: [usize; MAX_REGIONS],
    region_count: usize,
}

impl State {
    /// Where the cold slot of `top` keeps its link: its region's link array, at the word of its
    /// top page.
    fn link_of(&self, top: usize) -> *mut usize {
        let i = (0..self.region_count)
            .find(|&i| {
                let (start, len) = self.regions[i];
                top.wrapping_sub(start).wrapping_sub(1) < len
            })
            .expect("a slot lies in a region");
        let (start, _) = self.regions[i];
        (self.links[i] + (top - 1 - start) / PAGE_SIZE * size_of::<usize>()) as *mut usize
    }
}

struct Arena {
    /// 0 when free, else the holder's token (the address of a thread-local).
    lock: AtomicUsize,
    state: UnsafeCell<State>,
    /// Regions mapped so far, for `stats()`.
    regions: AtomicUsize,
}

// SAFETY: `state` is only touched by the thread holding `lock` (see `Arena::with`).
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena {
    lock: AtomicUsize::new(0),
    state: UnsafeCell::new(State {
        bump: 0,
        end: 0,
        free: [0; KEYED_LISTS],
        occupied: Occupancy::new(),
        warm_bytes: 0,
        warm_low: 0,
        cold: [0; KEYED_LISTS],
        cold_occupied: Occupancy::new(),
        regions: [(0, 0); MAX_REGIONS],
        links: [0; MAX_REGIONS],
        region_count: 0,
    }),
    regions: AtomicUsize::new(0),
};

thread_local! {
    /// Its address identifies the thread holding the arena lock.
    static TOKEN: u8 = const { 0 };
}

impl Arena {
    /// Runs `f` with the state locked; `None` if this thread already holds the lock (a signal
    /// interrupted it mid-operation). Async-signal-safe.
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        let me = TOKEN.with(|t| t as *const u8 as usize);
        loop {
            match self.lock.compare_exchange_weak(0, me, Acquire, Relaxed) {
                Ok(_) => break,
                Err(holder) if holder == me => return None,
                Err(_) => std::hint::spin_loop(),
            }
        }
        // SAFETY: we hold the lock, so nobody else touches the state until we release it.
        let r = f(unsafe { &mut *self.state.get() });
        self.lock.store(0, Release);
        Some(r)
    }
}

/// The top of a slot with `size` usable bytes (at most [`ARENA_MAX_SIZE`]) above an
/// [`ARENA_GUARD_SIZE`] guard, where `placement` asks: a free one, or a new one carved from the
/// current region (mapping a new region when it is used up). `None` when no memory could be
/// mapped or this thread is already inside the arena. Async-signal-safe.
pub(crate) fn take(size: usize, placement: Placement) -> Option<usize> {
    debug_assert!(size <= ARENA_MAX_SIZE);
    ARENA
        .with(|st| {
            if let Some(list) = st.occupied.find(size, placement) {
                let top = pop_warm(st, list);
                st.warm_bytes -= size;
                st.warm_low = st.warm_low.min(st.warm_bytes);
                WARM_BYTES.store(st.warm_bytes, Relaxed);
                return Some(top);
            }
            if let Some(list) = st.cold_occupied.find(size, placement) {
                let top = st.cold[list];
                // SAFETY: `release` wrote the link of this cold slot there, and the link array
                // is mapped for as long as its region.
                let next = unsafe { st.link_of(top).read() };
                st.cold[list] = next;
                st.cold_occupied.set(list, next != 0);
                return Some(top);
            }
            let top = match carve(st, size, placement) {
                Some(top) => top,
                None => {
                    // Room for the guard, the stack and the skip that places its top.
                    map_region(st, ARENA_GUARD_SIZE + size + placement.modulus)?;
                    carve(st, size, placement)?
                }
            };
            let start = top - size - ARENA_GUARD_SIZE;
            // SAFETY: [start, start + guard) lies in a region we mapped and nothing uses it.
            let rc = unsafe {
                libc::madvise(
                    start as *mut libc::c_void,
                    ARENA_GUARD_SIZE,
                    MADV_GUARD_INSTALL,
                )
            };
            if rc != 0 {
                return None;
            }
            st.bump = top;
            Some(top)
        })
        .flatten()
}

/// Takes the first slot of warm list `list` (non-empty).
fn pop_warm(st: &mut State, list: usize) -> usize {
    let top = st.free[list];
    // SAFETY: a free slot's link word lies in its own top page, which `give_back` wrote and
    // nobody touched since.
    let next = unsafe { ((top - LINK_OFFSET) as *const usize).read() };
    st.free[list] = next;
    st.occupied.set(list, next != 0);
    top
}

/// Where the next slot of `size` goes in the current region: the lowest top where `placement`
/// asks, above a guard and the usable part; `None` when the region has no room for it.
fn carve(st: &State, size: usize, placement: Placement) -> Option<usize> {
    let modulus = placement.modulus;
    let lowest = st.bump.checked_add(ARENA_GUARD_SIZE + size)?;
    let top = lowest + (placement.residue.wrapping_sub(lowest) & (modulus - 1));
    (st.bump != 0 && top <= st.end).then_some(top)
}

/// Maps a new region with room for at least `slot` bytes and makes it current.
fn map_region(st: &mut State, slot: usize) -> Option<()> {
    if st.region_count == MAX_REGIONS {
        return None;
    }
    let mut len = REGION_BYTES.max(slot.next_multiple_of(MIN_REGION_BYTES));
    loop {
        // SAFETY: a fresh anonymous mapping; MAP_STACK keeps transparent huge pages off it on
        // recent kernels (a 2 MiB page would back dozens of small stacks' untouched pages), and
        // MAP_NORESERVE keeps the address space from being charged against overcommit.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            // SAFETY: the region just mapped is ours; the advice only affects how it is backed.
            unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
            // The region's link array: a word per page, touched only where cold slots link.
            // SAFETY: a fresh anonymous mapping, ours alone.
            let links = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len / PAGE_SIZE * size_of::<usize>(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if links == libc::MAP_FAILED {
                // SAFETY: the region just mapped, unused.
                unsafe { libc::munmap(p, len) };
                return None;
            }
            st.regions[st.region_count] = (p as usize, len);
            st.links[st.region_count] = links as usize;
            st.region_count += 1;
            ARENA.regions.fetch_add(1, Release);
            stats::arena_mapped();
            st.bump = p as usize;
            st.end = p as usize + len;
            return Some(());
        }
        if len / 2 < slot.max(MIN_REGION_BYTES) {
            return None;
        }
        len /= 2;
    }
}

/// Returns the slot of `top` with `size` usable bytes: its pages are released (all but the top
/// one, which holds the free-list link) and it joins its class's free list. Async-signal-safe.
/// Returns `false` if this thread is already inside the arena (the slot is then leaked: the
/// caller is a signal handler that interrupted the arena, which never happens in practice: the
/// arena is not reached from coroutine code that can fault).
///
/// # Safety
/// `top` and `size` describe a slot handed out by [`take`], not used by anyone any more.
pub(crate) unsafe fn give_back(top: usize, size: usize) -> bool {
    if size > PAGE_SIZE {
        // SAFETY: per the contract the slot's usable part is ours and unused; the guard markers
        // below it survive MADV_DONTNEED.
        unsafe {
            libc::madvise(
                (top - size) as *mut libc::c_void,
                size - PAGE_SIZE,
                libc::MADV_DONTNEED,
            )
        };
    }
    let list = list_of(size, top);
    ARENA
        .with(|st| {
            // SAFETY: the link word lies in the slot's top page, ours per the contract.
            unsafe { ((top - LINK_OFFSET) as *mut usize).write(st.free[list]) };
            st.free[list] = top;
            st.occupied.set(list, true);
            st.warm_bytes += size;
            WARM_BYTES.store(st.warm_bytes, Relaxed);
        })
        .is_some()
}

/// Returns the slot of `top` with `size` usable bytes with all of its pages released: it joins
/// the cold free lists, its link kept in the region's link array. Slower than [`give_back`] (a
/// system call), for stacks nobody is expected to need soon. Returns `false` if this thread is
/// already inside the arena (the slot is then leaked, as for `give_back`).
///
/// # Safety
/// As for [`give_back`].
pub(crate) unsafe fn release(top: usize, size: usize) -> bool {
    // SAFETY: per the contract the slot's usable part is ours and unused; the guard markers
    // below it survive MADV_DONTNEED.
    unsafe { libc::madvise((top - size) as *mut libc::c_void, size, libc::MADV_DONTNEED) };
    push_cold(top, size)
}

fn push_cold(top: usize, size: usize) -> bool {
    let list = list_of(size, top);
    ARENA
        .with(|st| {
            // SAFETY: the link array of the slot's region is mapped, and its word for this slot
            // belongs to this slot alone (one word per page, and no other slot has this top).
            unsafe { st.link_of(top).write(st.cold[list]) };
            st.cold[list] = top;
            st.cold_occupied.set(list, true);
        })
        .is_some()
}

/// Usable bytes of the warm free slots (their pages may still be resident).
pub(crate) fn warm_bytes() -> usize {
    WARM_BYTES.load(Relaxed)
}

/// [`State::warm_bytes`], readable without the lock.
static WARM_BYTES: AtomicUsize = AtomicUsize::new(0);

/// When the arena was last trimmed (`TRIM_PERIOD`s since the first trim), so that many workers
/// trimming at their own ticks trim it once per period.
static LAST_TRIM: AtomicUsize = AtomicUsize::new(0);
static TRIM_ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
const TRIM_PERIOD: std::time::Duration = std::time::Duration::from_millis(200);

/// Slots one call releases at most: a trim is a few milliseconds of system calls, not a stall.
const TRIM_MAX_SLOTS: usize = 4096;

/// Releases about half of the warm free slots that stayed free since the last trim (their
/// pages resident since they were given back) and starts the next period: called by workers a
/// few times a second, like `StackPool::trim`, and done at most once per [`TRIM_PERIOD`] for
/// the process, at most [`TRIM_MAX_SLOTS`] slots at a time. Returns the usable bytes released.
/// Normal context only (not the fault handler): one `madvise` per slot, outside the lock.
pub(crate) fn trim() -> usize {
    if warm_bytes() == 0 {
        return 0;
    }
    let origin = *TRIM_ORIGIN.get_or_init(std::time::Instant::now);
    let period = (origin.elapsed().as_millis() / TRIM_PERIOD.as_millis()) as usize + 1;
    let last = LAST_TRIM.load(Relaxed);
    if last >= period
        || LAST_TRIM
            .compare_exchange(last, period, Relaxed, Relaxed)
            .is_err()
    {
        return 0;
    }
    let excess = ARENA
        .with(|st| {
            let excess = st.warm_low / 2;
            st.warm_low = st.warm_bytes;
            excess
        })
        .unwrap_or(0);
    let mut released = 0;
    let mut slots = 0;
    while released < excess && slots < TRIM_MAX_SLOTS {
        slots += 1;
        let slot = ARENA.with(|st| {
            let list = st.occupied.first_set(0, KEYED_LISTS)?;
            let top = pop_warm(st, list);
            let size = super::classes::size_of_list(list);
            st.warm_bytes -= size;
            st.warm_low = st.warm_low.min(st.warm_bytes);
            WARM_BYTES.store(st.warm_bytes, Relaxed);
            Some((top, size))
        });
        let Some(Some((top, size))) = slot else { break };
        // SAFETY: a free slot just taken off its list: ours alone, unused.
        unsafe { libc::madvise((top - size) as *mut libc::c_void, size, libc::MADV_DONTNEED) };
        push_cold(top, size);
        released += size;
    }
    released
}

/// Whether `addr` lies in an arena region. Async-signal-safe (reads without the lock: regions
/// are only ever added, and a torn read of a new entry is just "not found").
pub(crate) fn contains(addr: usize) -> bool {
    let count = ARENA.regions.load(Acquire).min(MAX_REGIONS);
    let regions = ARENA.state.get().cast_const();
    (0..count).any(|i| {
        // SAFETY: entries below `count` were written before `regions` was incremented (Release
        // there, Acquire above) and are never written again, so reading one through a raw
        // pointer races with nothing, whatever the lock holder does to the other fields.
        let (start, len) = unsafe { (&raw const (*regions).regions[i]).read() };
        addr.wrapping_sub(start) < len
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_budget_leaves_an_eighth() {
        assert_eq!(map_budget(65_530), (65_530 - 8_191) / 2);
        assert_eq!(map_budget(2_000), (2_000 - 1_024) / 2);
        assert_eq!(map_budget(100), 0);
    }

    #[test]
    fn slots_are_placed_reused_and_writable() {
        if !uses_arenas() {
            return;
        }
        // Other tests of this process use the arena at the same time, so a freed slot may be
        // taken by one of them: assert where slots lie, not which slot comes back.
        let a = take(PAGE_SIZE, Placement::ANY).unwrap();
        let want = Placement {
            modulus: 64 << 10,
            residue: 0x3000,
        };
        let b = take(64 << 10, want).unwrap();
        assert!(want.accepts(b), "{b:#x}");
        assert!(contains(a - 1) && contains(b - 1) && !contains(0x1000));
        // SAFETY: both are ours and unused.
        unsafe {
            assert!(give_back(a, PAGE_SIZE));
            assert!(give_back(b, 64 << 10));
        }
        let c = take(64 << 10, want).unwrap();
        assert!(want.accepts(c), "{c:#x}");
        // The slot is writable end to end, and its guard faults (checked by tests/stack_guards.rs
        // in a child process).
        for addr in (c - (64 << 10)..c).step_by(8) {
            // SAFETY: inside the usable part of a slot we own.
            unsafe { (addr as *mut u64).write_volatile(1) };
        }
        // SAFETY: ours and unused.
        unsafe { assert!(give_back(c, 64 << 10)) };
    }
}
